//! Files: `cascade send-file` and `cascade save`. The file is sealed on
//! this device and only its ciphertext goes to the relay; progress goes to
//! standard error.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use cascade_core::{Client, Event};
use serde_json::json;

use crate::conversation::resolve;
use crate::message::resolve_message;
use crate::output::say;
use crate::synced;

/// Prints transfer progress to standard error (a line per tenth) until
/// the returned task is stopped.
fn show_progress(client: &Client, json: bool) -> tokio::task::JoinHandle<()> {
    let mut events = client.subscribe();
    tokio::spawn(async move {
        let mut shown = u64::MAX;
        while let Ok(ev) = events.recv().await {
            if let Event::Transfer {
                name, done, total, ..
            } = ev
            {
                let tenth = done.saturating_mul(10) / total.max(1);
                if tenth != shown && !json {
                    shown = tenth;
                    eprintln!("{name}: {}%", tenth * 10);
                }
            }
        }
    })
}

/// `cascade send-file`.
pub async fn send_file(
    client: &Client,
    conversation: &str,
    path: &Path,
    caption: &str,
    media_type: Option<&str>,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let progress = show_progress(client, json);
    let sent = client.send_file(group, path, media_type, caption).await;
    progress.abort();
    let id = sent?;
    synced(client, timeout).await?;
    say(json, json!({ "message_id": id.to_string() }), || {
        format!("Sent {id}")
    });
    Ok(())
}

/// `cascade save`.
pub async fn save(
    client: &Client,
    conversation: &str,
    message: &str,
    to: &Path,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let id = resolve_message(client, group, message).await?;
    let progress = show_progress(client, json);
    let saved = client.save_attachment(group, id, to).await;
    progress.abort();
    let size = saved?;
    say(
        json,
        json!({ "message_id": id.to_string(), "path": to, "size": size }),
        || format!("Saved {} ({size} bytes)", to.display()),
    );
    Ok(())
}
