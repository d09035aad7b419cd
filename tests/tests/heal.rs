//! A device that falls out of step with a conversation heals itself: Alice's
//! phone is restored from a backup taken before she added Carol, so it
//! holds the conversation as it was an epoch ago. The next message it
//! cannot read makes it rejoin by external commit, through the real relay;
//! it says so in its history, and everyone is in step again.

use anyhow::Result;
use cascade_core::engine::REJOINED_TEXT;
use cascade_core::ConversationState;
use cascade_tests::*;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_restored_from_an_old_backup_rejoins_and_carries_on() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Porter").await?;
    let carol = relay.user("carol@north-trust", "Carol", "Doctor").await?;
    let group = alice.create_group_with("Ward 7", &[&bob]).await?;

    // A backup of Alice's phone, then she adds Carol.
    let dir = alice.close().await;
    let backup = tempfile::tempdir()?;
    copy_dir(&dir, backup.path())?;
    let alice = Peer::open(dir).await?;
    alice.sync().await?;
    alice.client.add_members(group, vec![carol.user()]).await?;
    alice.sync().await?;
    carol.joined(group).await?;

    // The phone is restored from the backup: an epoch behind, and the
    // commit that moved the group on was acknowledged long ago.
    let dir = alice.close().await;
    std::fs::remove_dir_all(&dir)?;
    copy_dir(backup.path(), &dir)?;
    let mut alice = Peer::open(dir).await?;
    alice.sync().await?;
    bob.client.send_text(group, "who is on tonight?").await?;
    bob.sync().await?;

    alice
        .wait_event(
            "the rejoin line",
            |e| matches!(e, cascade_core::Event::Message(m) if m.kind == "system"),
        )
        .await?;
    alice
        .until("back in step", || async {
            Ok(alice.client.conversation(group).await?.state == ConversationState::Active)
        })
        .await?;
    let history = alice.client.history(group, None, 50).await?;
    assert!(history
        .iter()
        .any(|m| m.kind == "system" && m.text.as_deref() == Some(REJOINED_TEXT)));
    assert_eq!(
        alice.member_users(group).await?,
        [alice.user(), bob.user(), carol.user()]
    );

    alice.client.send_text(group, "I am, from my phone").await?;
    alice.sync().await?;
    for peer in [&bob, &carol] {
        peer.until("Alice's message", || async {
            Ok(peer
                .texts(group)
                .await?
                .contains(&"I am, from my phone".to_owned()))
        })
        .await?;
    }
    let epoch = alice.client.epoch(group).await?;
    assert_eq!(bob.client.epoch(group).await?, epoch);
    assert_eq!(carol.client.epoch(group).await?, epoch);
    Ok(())
}
