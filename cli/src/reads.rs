//! Read receipts: `cascade receipts` (who received and read a message of
//! yours) and `cascade read-receipts` (whether you send them); and
//! `cascade mute`.

use std::time::Duration;

use anyhow::Result;
use cascade_core::Client;
use serde_json::json;

use crate::conversation::resolve;
use crate::message::resolve_message;
use crate::output::{say, time};
use crate::synced;

/// `cascade receipts <conversation> <message>`: "Delivered to 2 of 3,
/// read by 1", then each person who received it, with when they read it.
pub async fn receipts(
    client: &Client,
    conversation: &str,
    message: &str,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let id = resolve_message(client, group, message).await?;
    let r = client.receipts(group, id).await?;
    if json {
        let people = |v: &[(cascade_core::UserId, u64)]| {
            v.iter()
                .map(|(u, at)| json!({ "user_id": u, "at": at }))
                .collect::<Vec<_>>()
        };
        println!(
            "{}",
            json!({
                "message_id": id.to_string(),
                "recipients": r.recipients,
                "delivered": people(&r.delivered),
                "read": people(&r.read),
                "per_person_delivery": r.per_person_delivery,
            })
        );
        return Ok(());
    }
    if r.per_person_delivery {
        println!(
            "Delivered to {} of {}, read by {}",
            r.delivered.len(),
            r.recipients,
            r.read.len()
        );
    } else {
        println!("Read by {} of {}", r.read.len(), r.recipients);
    }
    for (user, at) in &r.delivered {
        match r.read.iter().find(|(u, _)| u == user) {
            Some((_, read)) => println!("{user}\tread {}", time(*read)),
            None => println!("{user}\tdelivered {}", time(*at)),
        }
    }
    Ok(())
}

/// `cascade read-receipts [on|off]`: shows or sets whether others see
/// when you have read their messages. Your own devices always do.
pub async fn setting(client: &Client, set: Option<bool>, json: bool) -> Result<()> {
    if let Some(on) = set {
        client.set_read_receipts(on).await?;
    }
    let on = client.read_receipts().await?;
    say(json, json!({ "read_receipts": on }), || {
        format!("Read receipts: {}", if on { "on" } else { "off" })
    });
    Ok(())
}

/// `cascade mute <conversation> [on|off]`: mutes a conversation on this
/// device (its messages raise no notification), or unmutes it.
pub async fn mute(
    client: &Client,
    conversation: &str,
    on: bool,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    client.set_muted(group, on).await?;
    say(json, json!({ "group_id": group, "muted": on }), || {
        if on {
            format!("Muted {conversation}")
        } else {
            format!("Unmuted {conversation}")
        }
    });
    Ok(())
}

/// `on` or `off`.
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{s:?}: say on or off")),
    }
}
