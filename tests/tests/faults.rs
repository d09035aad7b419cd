//! Fault injection: the relay and clients are killed mid-work.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Result;
use cascade_core::{DeliveryState, Event};
use cascade_tests::*;
use tokio::io::AsyncWriteExt;

/// The relay is SIGKILLed while a member sends a stream of messages to an
/// offline colleague: some of the stream is acknowledged, the rest is not.
/// After a restart, every message the relay acknowledged is delivered, and
/// every message arrives exactly once, in order; the group is not forked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_sigkill_loses_nothing_acknowledged() -> Result<()> {
    let mut relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let mut alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let group = alice.create_group_with("Resus", &[&bob]).await?;
    bob.sync().await?;
    let bob_dir = bob.close().await;

    // The whole stream is written while Alice is offline, so that it goes
    // out at the relay's pace once she connects.
    const N: usize = 120;
    alice.client.pause()?;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(
            alice
                .client
                .send_text(group, &format!("msg {i:03}"))
                .await?,
        );
    }
    alice.client.resume()?;
    // Kill the relay once a good part of the stream has been acknowledged.
    let mut acks = 0;
    while acks < N / 3 {
        alice
            .wait_event("acks", |e| {
                matches!(
                    e,
                    Event::DeliveryState {
                        state: DeliveryState::Sent,
                        ..
                    }
                )
            })
            .await?;
        acks += 1;
    }
    relay.kill9().await?;
    // Once Alice has read all the relay sent before it died, her history
    // says which messages it acknowledged; nothing can change that now.
    alice
        .until("noticing the relay is gone", || async {
            Ok(!alice.client.is_online().await?)
        })
        .await?;
    let history = alice.client.history(group, None, 10_000).await?;
    let acked: HashSet<_> = history
        .iter()
        .filter(|m| m.state != DeliveryState::Sending)
        .map(|m| m.id)
        .collect();
    eprintln!("{} of {N} acknowledged before the kill", acked.len());
    assert!(
        acked.len() >= N / 3 && acked.len() < N,
        "killed mid-stream: {} of {N} acknowledged",
        acked.len()
    );
    relay.restart().await?;

    alice.sync().await?;
    let bob = Peer::open(bob_dir).await?;
    bob.sync().await?;
    let msgs = bob.messages(group, N).await?;
    let got: HashSet<_> = msgs.iter().map(|m| m.id).collect();
    assert!(
        acked.iter().all(|id| got.contains(id)),
        "every acknowledged message"
    );
    assert!(ids.iter().all(|id| got.contains(id)), "and every other one");
    // The group still works after the crash, both ways; and as each side
    // reads the other's messages in order, what came before is complete.
    bob.client.send_text(group, "after the crash").await?;
    bob.sync().await?;
    alice
        .until("Bob's reply", || async {
            Ok(alice.texts(group).await?.last().map(String::as_str) == Some("after the crash"))
        })
        .await?;
    alice.client.send_text(group, "received").await?;
    alice.sync().await?;
    bob.until("Alice's answer", || async {
        Ok(bob.texts(group).await?.last().map(String::as_str) == Some("received"))
    })
    .await?;
    let mut want: Vec<_> = (0..N).map(|i| format!("msg {i:03}")).collect();
    want.extend(["after the crash".to_owned(), "received".to_owned()]);
    assert_eq!(
        bob.texts(group).await?,
        want,
        "all messages, once each, in order"
    );
    assert_eq!(alice.texts(group).await?, want, "the same on both sides");
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
        .envs(CLI_ENV)
        .arg("--data-dir")
        .arg(&alice_dir)
        .args(["chat", &group.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    // Lines arrive as if typed quickly, so the client is still sending
    // when it dies however fast this machine is.
    let typist = tokio::spawn(async move {
        for i in 0..300 {
            if stdin
                .write_all(format!("line {i:03}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            let _ = stdin.flush().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // Let it get part of the way; then hold the relay's answers back
    // while the client records more, and kill it without warning with
    // those recorded but not acknowledged.
    bob.until("some messages", || async {
        Ok(bob.texts(group).await?.len() >= 20)
    })
    .await?;
    relay.pause()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.start_kill()?;
    child.wait().await?;
    typist.abort();
    relay.resume()?;

    // What the device had recorded, and not yet had acknowledged, when it
    // was killed.
    let unsent = {
        let engine = cascade_core::Engine::new(cascade_core::SqliteStore::open(
            &alice_dir.join(cascade_core::client::DB_FILE),
            &store_key(),
        )?)?;
        engine
            .history(&group, None, 10_000)?
            .into_iter()
            .filter(|m| m.state == DeliveryState::Sending)
            .count()
    };
    eprintln!("{unsent} recorded lines not yet acknowledged");
    assert!(
        unsent > 0,
        "killed mid-send, with recorded lines still to go"
    );
    // Restart the device; it finishes what it had recorded.
    let alice = Peer::open(alice_dir).await?;
    alice.sync().await?;
    let recorded = alice.texts(group).await?;
    eprintln!("recorded {} of 300 lines before the kill", recorded.len());
    assert!(
        recorded.len() >= 20 && recorded.len() < 300,
        "killed part of the way: recorded {} lines",
        recorded.len()
    );
    let history = alice.client.history(group, None, 10_000).await?;
    assert!(history
        .iter()
        .all(|m| matches!(m.state, DeliveryState::Sent | DeliveryState::Delivered)));
    // The group is not forked; and as Bob reads Alice's messages in order,
    // once he has this one he has everything she sent before it.
    alice.client.send_text(group, "still here").await?;
    alice.sync().await?;
    bob.until("the next message", || async {
        Ok(bob.texts(group).await?.last().map(String::as_str) == Some("still here"))
    })
    .await?;
    let mut want = recorded.clone();
    want.push("still here".to_owned());
    assert_eq!(
        bob.texts(group).await?,
        want,
        "exactly what was recorded, once, in order"
    );
    let typed: Vec<_> = (0..recorded.len())
        .map(|i| format!("line {i:03}"))
        .collect();
    assert_eq!(recorded, typed, "a prefix of what was typed, in order");
    Ok(())
}

/// One device's data is used by one program at a time: a second client on
/// the same directory (the CLI while the desktop app has it open, say)
/// is refused with a clear message instead of processing the same
/// messages a second time and forking the conversations; once the first
/// closes, the second opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_program_on_the_same_device_data_is_refused() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Porter").await?;
    let group = alice.create_group_with("Ward 7", &[&bob]).await?;

    assert!(matches!(
        cascade_core::Client::open(&bob.dir, &store_key()).await,
        Err(cascade_core::CoreError::InUse)
    ));
    let out = std::process::Command::new(bin_dir().join("cascade"))
        .envs(CLI_ENV)
        .arg("--data-dir")
        .arg(&bob.dir)
        .args(["conversations"])
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("open in another Cascade program"),
        "{stderr}"
    );

    // Bob's app closes; the CLI opens his data and reads the conversation.
    let dir = bob.close().await;
    alice.client.send_text(group, "are you there?").await?;
    alice.sync().await?;
    let out = std::process::Command::new(bin_dir().join("cascade"))
        .envs(CLI_ENV)
        .arg("--data-dir")
        .arg(&dir)
        .args(["conversations"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Ward 7"));
    Ok(())
}
