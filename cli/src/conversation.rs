//! Conversations: `cascade conversations`, `create`, `add`, `remove`,
//! `leave`, `members`, `send`, `history`, `safety-number`.
//!
//! Each command first syncs, so it acts on the conversation as the relay
//! has it, and commands that change something sync again so the change is
//! on the relay before the command exits.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use cascade_core::{Client, Conversation, DeliveryState, GroupId, UserId};
use serde_json::json;

use crate::message::resolve_message;
use crate::output::{print_history_line, say};
use crate::synced;

/// A conversation given by id or by name (which must be unique).
pub async fn resolve(client: &Client, reference: &str) -> Result<GroupId> {
    if let Ok(id) = reference.parse::<GroupId>() {
        return Ok(id);
    }
    let convs = client.conversations().await?;
    let matches: Vec<&Conversation> = convs.iter().filter(|c| c.name == reference).collect();
    match matches.as_slice() {
        [one] => Ok(one.group_id),
        [] => bail!("no conversation named {reference:?}"),
        _ => bail!("several conversations are named {reference:?}; use the id"),
    }
}

/// The users of `wanted` who are not members of the conversation.
async fn not_members<'a>(
    client: &Client,
    group: GroupId,
    wanted: &'a [UserId],
) -> Result<Vec<&'a UserId>> {
    let got = client.members(group).await?;
    Ok(wanted
        .iter()
        .filter(|u| !got.iter().any(|m| &m.user_id == *u))
        .collect())
}

/// `cascade conversations`.
pub async fn list(client: &Client, json: bool, timeout: Duration) -> Result<()> {
    synced(client, timeout).await?;
    let convs = client.conversations().await?;
    if json {
        println!("{}", serde_json::to_string(&convs)?);
    } else {
        for c in convs {
            let orgs: Vec<&str> = c.orgs.iter().map(|o| o.as_str()).collect();
            let muted = if c.muted { "\tmuted" } else { "" };
            println!(
                "{}\t{}\t{}\t{} people ({})\tepoch {}\t{} unread{muted}",
                c.group_id,
                c.name,
                c.state.as_str(),
                c.people,
                orgs.join(", "),
                c.epoch,
                c.unread
            );
        }
    }
    Ok(())
}

/// `cascade create`: fails if a member could not be added (the
/// conversation exists then, and its id is in the error).
pub async fn create(
    client: &Client,
    name: &str,
    members: Vec<UserId>,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = client.create_group(name).await?;
    if !members.is_empty() {
        client.add_members(group, members.clone()).await?;
    }
    synced(client, timeout).await?;
    let missing = not_members(client, group, &members).await?;
    if !missing.is_empty() {
        bail!("conversation {group} created, but these users could not be added: {missing:?}");
    }
    say(json, json!({ "group_id": group, "name": name }), || {
        format!("{group}")
    });
    Ok(())
}

/// `cascade add`.
pub async fn add(
    client: &Client,
    conversation: &str,
    users: Vec<UserId>,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    client.add_members(group, users.clone()).await?;
    synced(client, timeout).await?;
    let missing = not_members(client, group, &users).await?;
    if !missing.is_empty() {
        bail!("could not add {missing:?}");
    }
    say(json, json!({ "group_id": group, "added": users }), || {
        "Added".into()
    });
    Ok(())
}

/// `cascade remove`.
pub async fn remove(
    client: &Client,
    conversation: &str,
    users: Vec<UserId>,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    client.remove_members(group, users.clone()).await?;
    synced(client, timeout).await?;
    say(json, json!({ "group_id": group, "removed": users }), || {
        "Removed".into()
    });
    Ok(())
}

/// `cascade leave`.
pub async fn leave(
    client: &Client,
    conversation: &str,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    client.leave(group).await?;
    synced(client, timeout).await?;
    say(json, json!({ "group_id": group, "left": true }), || {
        "Leave requested".into()
    });
    Ok(())
}

/// `cascade members`.
pub async fn members(
    client: &Client,
    conversation: &str,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let members = client.members(group).await?;
    let admins = client
        .room_details(group)
        .await?
        .map(|d| d.admins)
        .unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string(&members)?);
    } else {
        for m in members {
            println!(
                "{}\t{}\t{}\t[{}]\tdevice {}{}{}",
                m.display_name,
                m.role,
                m.user_id,
                m.org_id,
                m.device_id,
                if admins.contains(&m.user_id) {
                    "\tadmin"
                } else {
                    ""
                },
                if m.is_self { "\t(this device)" } else { "" }
            );
        }
    }
    Ok(())
}

/// `cascade send` (with `--reply-to`, an answer to a message): succeeds
/// only once the relay has accepted the message.
pub async fn send(
    client: &Client,
    conversation: &str,
    text: &str,
    reply_to: Option<&str>,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let id = match reply_to {
        Some(original) => {
            let original = resolve_message(client, group, original).await?;
            client.send_reply(group, text, original).await?
        }
        None => client.send_text(group, text).await?,
    };
    synced(client, timeout).await?;
    let state = client
        .message(group, id)
        .await
        .map(|m| m.state)
        .map_err(|_| anyhow!("sent message not in history"))?;
    if !matches!(state, DeliveryState::Sent | DeliveryState::Delivered) {
        bail!("the relay did not accept the message ({state:?})");
    }
    say(
        json,
        json!({ "message_id": id.to_string(), "state": state }),
        || format!("Sent {id}"),
    );
    Ok(())
}

/// `cascade history`: the last `limit` messages, and marks them read.
pub async fn history(
    client: &Client,
    conversation: &str,
    limit: u32,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let msgs = client.history(group, None, limit).await?;
    // Read here: the other devices and the senders are told before exit.
    client.mark_read(group).await?;
    synced(client, timeout).await?;
    if json {
        println!("{}", serde_json::to_string(&msgs)?);
    } else {
        let me = &client.identity().user_id;
        for m in msgs {
            print_history_line(&m, me);
        }
    }
    Ok(())
}

/// `cascade safety-number`.
pub async fn safety_number(
    client: &Client,
    conversation: &str,
    user: UserId,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let number = client.safety_number(group, user.clone()).await?;
    say(
        json,
        json!({ "user_id": user, "safety_number": number }),
        || number.clone(),
    );
    Ok(())
}
