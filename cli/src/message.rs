//! One message: `cascade edit`, `delete`, `react`, `versions`, and the
//! message a `send --reply-to` answers.
//!
//! A message is named by its id as `cascade history` shows it, or by the
//! first characters of it (at least 8) when they name one message among
//! the conversation's last 1,000.

use std::time::Duration;

use anyhow::{bail, Result};
use cascade_core::{Client, GroupId, MessageId};
use serde_json::json;

use crate::conversation::resolve;
use crate::output::say;
use crate::synced;

/// The fewest hex digits of an id prefix.
const MIN_PREFIX: usize = 8;

/// How far back a prefix is looked for.
const PREFIX_WINDOW: u32 = 1000;

/// The message `reference` (an id, or a unique prefix of one) names in the
/// conversation.
pub async fn resolve_message(
    client: &Client,
    group: GroupId,
    reference: &str,
) -> Result<MessageId> {
    let reference = reference.trim().to_ascii_lowercase();
    if let Ok(id) = reference.parse::<MessageId>() {
        return Ok(id);
    }
    if reference.len() < MIN_PREFIX || !reference.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{reference:?} is not a message id (or its first {MIN_PREFIX} or more hex digits)");
    }
    let found: Vec<MessageId> = client
        .history(group, None, PREFIX_WINDOW)
        .await?
        .into_iter()
        .map(|m| m.id)
        .filter(|id| id.to_string().starts_with(&reference))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no message in this conversation starts with {reference}"),
        _ => bail!("several messages start with {reference}; give more of the id"),
    }
}

/// `cascade edit`.
pub async fn edit(
    client: &Client,
    conversation: &str,
    message: &str,
    text: &str,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let id = resolve_message(client, group, message).await?;
    client.edit_message(group, id, text).await?;
    synced(client, timeout).await?;
    say(
        json,
        json!({ "message_id": id.to_string(), "edited": true }),
        || format!("Edited {id}"),
    );
    Ok(())
}

/// `cascade delete`.
pub async fn delete(
    client: &Client,
    conversation: &str,
    message: &str,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let id = resolve_message(client, group, message).await?;
    client.delete_message(group, id).await?;
    synced(client, timeout).await?;
    say(
        json,
        json!({ "message_id": id.to_string(), "deleted": true }),
        || format!("Deleted {id} for everyone"),
    );
    Ok(())
}

/// `cascade react` (and `--remove`).
pub async fn react(
    client: &Client,
    conversation: &str,
    message: &str,
    emoji: &str,
    remove: bool,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let id = resolve_message(client, group, message).await?;
    if remove {
        client.unreact(group, id, emoji).await?;
    } else {
        client.react(group, id, emoji).await?;
    }
    synced(client, timeout).await?;
    let m = client.message(group, id).await?;
    say(
        json,
        json!({ "message_id": id.to_string(), "reactions": m.reactions }),
        || {
            if remove {
                format!("Took back {emoji}")
            } else {
                format!("Reacted {emoji}")
            }
        },
    );
    Ok(())
}

/// `cascade versions`: what an edited message said before, oldest first,
/// then what it says now.
pub async fn versions(
    client: &Client,
    conversation: &str,
    message: &str,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let id = resolve_message(client, group, message).await?;
    let earlier = client.message_versions(group, id).await?;
    let now = client.message(group, id).await?;
    if json {
        println!(
            "{}",
            json!({ "message_id": id.to_string(), "earlier": earlier, "now": now.text })
        );
    } else {
        for v in &earlier {
            println!("{}\t{}", crate::output::time(v.at), v.text);
        }
        match (now.text, now.edited_at) {
            (Some(text), Some(at)) => println!("{}\t{text}\t(now)", crate::output::time(at)),
            (Some(text), None) => println!(
                "{}\t{text}\t(never edited)",
                crate::output::time(now.sent_at)
            ),
            (None, _) => println!("(deleted)"),
        }
    }
    Ok(())
}

/// `cascade search`: this device's history, newest first; works offline.
#[allow(clippy::too_many_arguments)]
pub async fn search(
    client: &Client,
    text: &str,
    conversation: Option<&str>,
    from: Option<cascade_core::UserId>,
    since: Option<&str>,
    until: Option<&str>,
    limit: u32,
    json: bool,
) -> Result<()> {
    let group = match conversation {
        Some(c) => Some(resolve(client, c).await?),
        None => None,
    };
    let query = cascade_core::SearchQuery {
        text: text.to_owned(),
        group,
        sender: from,
        since: since.map(day_start).transpose()?,
        until: until
            .map(|d| day_start(d).map(|t| t + DAY_MS))
            .transpose()?,
        limit,
    };
    let hits = client.search(query).await?;
    if json {
        println!("{}", serde_json::to_string(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("Nothing found");
    }
    for h in hits {
        let text = h.message.text.clone().unwrap_or_default();
        // The matches between » and «, for a terminal without colour.
        let mut shown = String::new();
        let mut at = 0;
        for (a, b) in &h.matches {
            shown.push_str(&text[at..*a]);
            shown.push('»');
            shown.push_str(&text[*a..*b]);
            shown.push('«');
            at = *b;
        }
        shown.push_str(&text[at..]);
        println!(
            "{} {} [{}] {}: {shown}",
            h.message.id,
            h.conversation,
            crate::output::time(h.message.sent_at),
            h.message.sender
        );
    }
    Ok(())
}

const DAY_MS: u64 = 24 * 3600 * 1000;

/// Midnight (UTC) at the start of `day` (`YYYY-MM-DD`), in ms.
fn day_start(day: &str) -> Result<u64> {
    let parts: Vec<&str> = day.split('-').collect();
    let date = match parts.as_slice() {
        [y, m, d] => y
            .parse::<i32>()
            .ok()
            .zip(
                m.parse::<u8>()
                    .ok()
                    .and_then(|m| time::Month::try_from(m).ok()),
            )
            .zip(d.parse::<u8>().ok())
            .and_then(|((y, m), d)| time::Date::from_calendar_date(y, m, d).ok()),
        _ => None,
    };
    let Some(date) = date else {
        bail!("{day:?} is not a date: use YYYY-MM-DD");
    };
    let secs = date.midnight().assume_utc().unix_timestamp();
    u64::try_from(secs)
        .map(|s| s * 1000)
        .map_err(|_| anyhow::anyhow!("{day:?} is before 1970"))
}
