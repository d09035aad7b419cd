//! The app lock through the real relay: a locked client answers nothing
//! that shows content, keeps receiving underneath, and unlocks only with
//! its own passphrase; the organisation's idle period locks it by itself.

use std::time::Duration;

use anyhow::Result;
use cascade_core::{CoreError, Event, StoreKey};
use cascade_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_client_shows_nothing_keeps_receiving_and_unlocks_with_its_passphrase(
) -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let mut alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let group = bob.create_group_with("Ward 7", &[&alice]).await?;
    alice.joined(group).await?;

    alice.client.lock();
    alice
        .wait_event("the lock", |e| matches!(e, Event::Locked))
        .await?;
    assert!(alice.client.is_locked());
    let locked = |r: Result<_, CoreError>| matches!(r, Err(CoreError::Locked));
    assert!(locked(alice.client.conversations().await.map(|_| ())));
    assert!(locked(
        alice.client.history(group, None, 10).await.map(|_| ())
    ));
    assert!(locked(alice.client.members(group).await.map(|_| ())));
    assert!(locked(alice.client.send_text(group, "x").await.map(|_| ())));
    assert!(locked(
        alice.client.search_directory("bob").await.map(|_| ())
    ));
    assert!(locked(alice.client.create_group("New").await.map(|_| ())));
    // What shows no content still answers.
    assert!(alice.client.is_online().await.is_ok());

    // Bob writes while she is locked: her device receives it underneath.
    bob.client.send_text(group, "Bed 9 needs a review").await?;
    alice
        .wait_event(
            "the message, received while locked",
            |e| matches!(e, Event::Message(m) if m.text.as_deref() == Some("Bed 9 needs a review")),
        )
        .await?;

    // Another passphrase does not unlock it.
    let wrong = StoreKey::passphrase_with(
        "ward seven day shift",
        cascade_core::KdfCost::InsecureForTests,
    );
    assert!(matches!(
        alice.client.unlock(wrong).await,
        Err(CoreError::WrongKey)
    ));
    assert!(alice.client.is_locked());
    alice.client.unlock(store_key()).await?;
    alice
        .wait_event("the unlock", |e| matches!(e, Event::Unlocked))
        .await?;
    assert_eq!(alice.texts(group).await?, ["Bed 9 needs a review"]);
    Ok(())
}

/// The organisation's one-minute idle lock locks a client nobody uses, and
/// input puts it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organisations_idle_period_locks_an_unused_client() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let mut alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    relay.set_idle_lock("north-trust", 1).await?;
    alice
        .wait_event("the new policy", |e| matches!(e, Event::PolicyUpdated(_)))
        .await?;
    let started = tokio::time::Instant::now();
    // Used for 40 seconds: not locked.
    while started.elapsed() < Duration::from_secs(40) {
        alice.client.input();
        assert!(!alice.client.is_locked(), "locked while in use");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Then left alone: it locks within about a minute of the last input.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !alice.client.is_locked() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not locked 90 s after the last input"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(95),
        "locked {:?} after the start, under a minute after the last input",
        started.elapsed()
    );
    Ok(())
}

/// A changed passphrase: the old one is refused (to unlock and to open),
/// the new one does both, the conversation goes on, and the files on disk
/// show no message text. A wrong current passphrase, a short new one and
/// a keystore's key instead change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_passphrase_replaces_the_old_one_and_the_conversation_goes_on() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let group = bob.create_group_with("Ward 7", &[&alice]).await?;
    alice.joined(group).await?;
    bob.client.send_text(group, "Bed 9 needs a review").await?;
    alice
        .until("the first message", || async {
            Ok(alice.texts(group).await? == ["Bed 9 needs a review"])
        })
        .await?;

    let weak = |p: &str| StoreKey::passphrase_with(p, cascade_core::KdfCost::InsecureForTests);
    let new = "night shift handover 7";
    assert!(matches!(
        alice
            .client
            .change_key(weak("not the passphrase"), weak(new))
            .await,
        Err(CoreError::WrongKey)
    ));
    assert!(matches!(
        alice.client.change_key(store_key(), weak("short")).await,
        Err(CoreError::Invalid(
            cascade_core::InvalidInput::PassphraseTooShort { .. }
        ))
    ));
    assert!(matches!(
        alice
            .client
            .change_key(store_key(), StoreKey::key([9; 32]))
            .await,
        Err(CoreError::Invalid(
            cascade_core::InvalidInput::KeyKindChange
        ))
    ));
    alice.client.change_key(store_key(), weak(new)).await?;

    // Unlocking takes the new passphrase only.
    alice.client.lock();
    assert!(matches!(
        alice.client.unlock(store_key()).await,
        Err(CoreError::WrongKey)
    ));
    alice.client.unlock(weak(new)).await?;

    // The conversation goes on, and the store is written under the new key.
    bob.client.send_text(group, "Bed 10 is ready").await?;
    alice
        .until("the second message", || async {
            Ok(alice.texts(group).await?.len() == 2)
        })
        .await?;
    let dir = alice.close().await;
    for text in ["Bed 9 needs a review", "Bed 10 is ready"] {
        assert!(!dir_contains(&dir, text.as_bytes())?, "{text:?} on disk");
    }
    assert!(matches!(
        Peer::open_with(dir.clone(), None, &store_key()).await,
        Err(e) if matches!(e.downcast_ref(), Some(CoreError::WrongKey))
    ));
    let alice = Peer::open_with(dir, None, &weak(new)).await?;
    assert_eq!(
        alice.texts(group).await?,
        ["Bed 9 needs a review", "Bed 10 is ready"]
    );
    Ok(())
}
