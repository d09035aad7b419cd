//! Fault injection: the relay and clients are killed mid-work.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Result;
use cascade_core::{DeliveryState, Event};
use cascade_tests::*;
use tokio::io::AsyncWriteExt;

/// The relay is SIGKILLed while a member sends a stream of messages to an
/// offline colleague. After a restart, every message the relay acknowledged
/// is delivered, every message arrives exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_sigkill_loses_nothing_acknowledged() -> Result<()> {
    let mut relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let mut alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let group = alice.create_group_with("Resus", &[&bob]).await?;
    bob.sync().await?;
    let bob_dir = bob.close().await;

    const N: usize = 120;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(
            alice
                .client
                .send_text(group, &format!("msg {i:03}"))
                .await?,
        );
    }
    // Kill the relay once a good part of the stream has been acknowledged.
    let mut acked = HashSet::new();
    while acked.len() < N / 3 {
        if let Event::DeliveryState {
            message_id,
            state: DeliveryState::Sent,
            ..
        } = alice
            .wait_event("acks", |e| matches!(e, Event::DeliveryState { .. }))
            .await?
        {
            acked.insert(message_id);
        }
    }
    relay.kill9().await?;
    assert!(acked.len() < N, "killed mid-stream");
    eprintln!("{} of {N} acknowledged before the kill", acked.len());
    relay.restart().await?;

    alice.sync().await?;
    let bob = Peer::open(bob_dir).await?;
    bob.sync().await?;
    let msgs = bob.messages(group, N).await?;
    let texts: Vec<_> = msgs.iter().filter_map(|m| m.text.clone()).collect();
    let want: Vec<_> = (0..N).map(|i| format!("msg {i:03}")).collect();
    assert_eq!(texts, want, "all messages, once each, in order");
    let got: HashSet<_> = msgs.iter().map(|m| m.id).collect();
    assert!(acked.iter().all(|id| got.contains(id)));
    assert!(ids.iter().all(|id| got.contains(id)));
    // The group still works after the crash, both ways.
    bob.client.send_text(group, "after the crash").await?;
    bob.sync().await?;
    alice.messages(group, N + 1).await?;
    Ok(())
}

/// A client process is SIGKILLed while it sends; restarted, it delivers
/// exactly what it had recorded, once each, and the group is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_send_loses_and_doubles_nothing() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let group = alice.create_group_with("Theatre list", &[&bob]).await?;
    let alice_dir = alice.close().await;

    // The terminal client reads lines from stdin and sends each one.
    let cli = bin_dir().join("cascade");
    let mut child = tokio::process::Command::new(&cli)
        .arg("--data-dir")
        .arg(&alice_dir)
        .args(["chat", &group.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let lines: String = (0..300).map(|i| format!("line {i:03}\n")).collect();
    stdin.write_all(lines.as_bytes()).await?;
    stdin.flush().await?;
    // Let it get part of the way, then kill it without warning.
    bob.until("some messages", || async {
        Ok(bob.texts(group).await?.len() >= 20)
    })
    .await?;
    child.start_kill()?;
    child.wait().await?;

    // Restart the device; it finishes what it had recorded.
    let alice = Peer::open(alice_dir).await?;
    alice.sync().await?;
    let recorded = alice.texts(group).await?;
    eprintln!("recorded {} of 300 lines before the kill", recorded.len());
    assert!(recorded.len() >= 20, "recorded {} lines", recorded.len());
    let history = alice.client.history(group, None, 10_000).await?;
    assert!(history
        .iter()
        .all(|m| matches!(m.state, DeliveryState::Sent | DeliveryState::Delivered)));
    bob.until("every recorded line", || async {
        Ok(bob.texts(group).await?.len() >= recorded.len())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = bob.texts(group).await?;
    assert_eq!(
        received, recorded,
        "exactly what was recorded, once, in order"
    );
    let want: Vec<_> = (0..recorded.len())
        .map(|i| format!("line {i:03}"))
        .collect();
    assert_eq!(recorded, want, "a prefix of what was typed, in order");
    // The group is not forked.
    alice.client.send_text(group, "still here").await?;
    alice.sync().await?;
    bob.until("the next message", || async {
        Ok(bob.texts(group).await?.last().map(String::as_str) == Some("still here"))
    })
    .await?;
    Ok(())
}
