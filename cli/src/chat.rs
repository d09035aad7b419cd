//! Live conversation: `cascade follow` and `cascade chat`.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Result;
use cascade_core::{Client, DeliveryState, Event, Message, MessageChange};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::conversation::resolve;
use crate::output::{print_message, say, text_of};
use crate::synced;

/// `cascade follow`: prints messages as they arrive (and edits, deletes
/// and reactions), until Ctrl-C.
pub async fn follow(client: &Client, json: bool) -> Result<()> {
    let mut events = client.subscribe();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            ev = events.recv() => match ev {
                Ok(Event::Message(m)) => print_message(json, &m),
                Ok(Event::MessageChanged { message, change }) => print_change(json, &message, change),
                Ok(Event::Typing { group_id, user_id, until }) => {
                    let typing = until > 0;
                    say(json, json!({ "typing": { "group_id": group_id, "user_id": user_id, "typing": typing } }), || {
                        let what = if typing { "typing" } else { "stopped typing" };
                        format!("{group_id} [{what}] {user_id}")
                    });
                }
                Ok(Event::Connection(state)) if !json => eprintln!("[{state:?}]"),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        std::io::stdout().flush()?;
    }
    Ok(())
}

/// `cascade typing`: tells the conversation's connected members that this
/// user is typing, and waits until the relay has passed it on.
pub async fn typing(
    client: &Client,
    conversation: &str,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    client.set_typing(group, true).await?;
    synced(client, timeout).await?;
    say(json, json!({ "group_id": group, "typing": true }), || {
        format!("Told {conversation} you are typing")
    });
    Ok(())
}

/// A message edited, deleted or reacted to: one JSON object
/// `{"change": …, "message": …}`, or `<conversation> [<change>] <sender>:
/// <text>`.
fn print_change(json: bool, m: &Message, change: MessageChange) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "change": change.as_str(), "message": m })
        );
    } else {
        println!(
            "{} [{}] {}: {}",
            m.group_id,
            change.as_str(),
            m.sender,
            text_of(m)
        );
    }
}

/// One line of the interactive chat: who and what, without ids.
fn print_chat_line(m: &Message) {
    if m.kind == cascade_core::content::SYSTEM_KIND {
        println!("— {}", text_of(m));
        return;
    }
    let mark = match m.state {
        DeliveryState::Failed => " [not delivered]",
        DeliveryState::Sending => " [sending]",
        _ => "",
    };
    println!("{}: {}{mark}", m.sender, text_of(m));
}

/// `cascade chat`: shows the last 20 messages, sends each line typed, and
/// prints what arrives, until end of input (Ctrl-D); then waits until what
/// was typed is on the relay.
pub async fn chat(client: &Client, conversation: &str, timeout: Duration) -> Result<()> {
    let mut events = client.subscribe();
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let conv = client.conversation(group).await?;
    println!(
        "— {} — type a message and press Enter; Ctrl-D to quit",
        conv.name
    );
    for m in client.history(group, None, 20).await? {
        print_chat_line(&m);
    }
    client.mark_read(group).await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                None => break,
                Some(l) if l.trim().is_empty() => {}
                Some(l) => { client.send_text(group, &l).await?; }
            },
            ev = events.recv() => match ev {
                Ok(Event::Message(m)) if m.group_id == group && m.state == DeliveryState::Received => print_chat_line(&m),
                Ok(Event::DeliveryState { state: DeliveryState::Failed, .. }) => eprintln!("[a message could not be delivered]"),
                Ok(Event::Connection(state)) => eprintln!("[{state:?}]"),
                _ => {}
            }
        }
        std::io::stdout().flush()?;
    }
    synced(client, timeout).await
}
