//! Linking a new device with its history, between real clients on a real
//! relay: Alice's desktop has 1,000 messages with Carol of another
//! organisation; her new laptop shows a code, the desktop answers, both
//! show the same digits, Alice types the laptop's digits into the desktop,
//! and the laptop then shows the same history and takes part. A wrong
//! code, another user's device and mistyped digits send nothing.

use std::time::Duration;

use anyhow::{ensure, Result};
use cascade_core::link::LinkError;
use cascade_core::{CoreError, Message};
use cascade_tests::*;

const WAIT: Duration = Duration::from_secs(30);

fn shown(history: &[Message]) -> Vec<String> {
    history
        .iter()
        .map(|m| {
            format!(
                "{} {}: {}{} {:?}",
                m.id,
                m.sender,
                m.text.as_deref().unwrap_or("-"),
                if m.edited_at.is_some() {
                    " (edited)"
                } else {
                    ""
                },
                m.reactions
                    .iter()
                    .map(|r| (r.emoji.clone(), r.users.len()))
                    .collect::<Vec<_>>()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_device_gets_the_history_and_takes_part() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let desktop = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol Hughes", "Paramedic")
        .await?;
    let group = desktop.create_group_with("Transfers", &[&carol]).await?;
    carol.sync().await?;
    let mut first = None;
    for i in 0..1_000 {
        let id = desktop
            .client
            .send_text(group, &format!("Transfer note {i:04}"))
            .await?;
        first.get_or_insert(id);
    }
    desktop.sync().await?;
    let first = first.expect("sent");
    carol.messages(group, 1_000).await?;
    carol.client.react(group, first, "✅").await?;
    carol.sync().await?;
    desktop
        .until("the reaction", || async {
            Ok(!desktop
                .client
                .message(group, first)
                .await?
                .reactions
                .is_empty())
        })
        .await?;
    desktop.client.mark_read(group).await?;
    desktop.sync().await?;

    let laptop = relay.device("alice@north-trust", "laptop").await?;
    laptop.sync().await?;

    // A code nobody offered, and the laptop's code typed by another user:
    // nothing is found, nothing is sent.
    let offer = laptop.client.link_start().await?;
    ensure!(
        offer.code.len() == 9 && offer.qr.starts_with("cascade-link:1:"),
        "{offer:?}"
    );
    ensure!(matches!(
        desktop.client.link_approve("0000 0000").await,
        Err(CoreError::Link(LinkError::NoSuchCode))
    ));
    ensure!(matches!(
        carol.client.link_approve(&offer.code).await,
        Err(CoreError::Link(LinkError::NoSuchCode))
    ));
    ensure!(matches!(
        laptop.client.link_approve(&offer.code).await,
        Err(CoreError::Link(LinkError::OwnCode))
    ));

    // Mistyped digits: nothing is sent, and the link ends on the desktop.
    let theirs = desktop.client.link_approve(&offer.code).await?;
    let mine = laptop.client.link_wait(WAIT).await?;
    ensure!(theirs.digits == mine.digits, "{theirs:?} {mine:?}");
    ensure!(theirs.device_id == laptop.client.identity().device_id);
    ensure!(mine.device_id == desktop.client.identity().device_id);
    ensure!(mine.display_name == "Alice Okafor");
    let wrong = if mine.digits == "000 000" {
        "111 111"
    } else {
        "000 000"
    };
    ensure!(matches!(
        desktop.client.link_send(wrong).await,
        Err(CoreError::Link(LinkError::WrongDigits))
    ));
    ensure!(matches!(
        desktop.client.link_send(&mine.digits).await,
        Err(CoreError::Link(LinkError::NotStarted))
    ));
    ensure!(matches!(
        laptop.client.link_receive(Duration::from_secs(2)).await,
        Err(CoreError::Link(LinkError::TimedOut))
    ));

    // Again, scanning the QR code, and with the right digits.
    let offer = laptop.client.link_start().await?;
    let theirs = desktop.client.link_approve(&offer.qr).await?;
    let mine = laptop.client.link_wait(WAIT).await?;
    ensure!(theirs.digits == mine.digits);
    let sent = desktop.client.link_send(&mine.digits).await?;
    ensure!(sent.messages >= 1_000, "{sent:?}");
    let got = laptop.client.link_receive(WAIT).await?;
    ensure!(got.messages >= 1_000, "{got:?}");

    laptop.joined(group).await?;
    let want = desktop.client.history(group, None, 2_000).await?;
    let have = laptop.client.history(group, None, 2_000).await?;
    ensure!(want.len() >= 1_000);
    assert_eq!(shown(&have), shown(&want), "the same history");
    let conversation = laptop.client.conversation(group).await?;
    ensure!(
        conversation.name == "Transfers" && conversation.unread == 0,
        "{conversation:?}"
    );
    // The sealed history is gone from the relay's disk.
    let blobs = relay.data_dir().join("blobs");
    let left: Vec<_> = std::fs::read_dir(&blobs)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    ensure!(left.is_empty(), "blobs left at the relay: {left:?}");

    // The laptop takes part.
    laptop.client.send_text(group, "From my laptop").await?;
    laptop.sync().await?;
    carol
        .until("the laptop's message", || async {
            Ok(carol.texts(group).await?.last().map(String::as_str) == Some("From my laptop"))
        })
        .await?;
    Ok(())
}
