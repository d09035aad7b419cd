//! Typing indicators against a real relay: between two organisations, live
//! only (a device offline never gets one), and the relay's checks on what a
//! client sends (size, membership, epoch, rate).

use anyhow::{ensure, Result};
use cascade_core::Event;
use cascade_protocol::limits::{MAX_TYPING_BYTES, TYPING_PER_WINDOW};
use cascade_protocol::*;
use cascade_tests::raw::{mls, RawConn, RawDevice};
use cascade_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_crosses_organisations_live_and_is_never_kept() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let mut bob = relay
        .user("bob@north-trust", "Bob Jones", "Staff Nurse")
        .await?;
    let mut carol = relay
        .user("carol@east-ambulance", "Carol Hughes", "Paramedic")
        .await?;
    let group = alice.create_group_with("Transfer", &[&bob, &carol]).await?;
    bob.sync().await?;
    carol.sync().await?;

    // Bob is offline while Alice types.
    bob.client.pause()?;
    alice.client.set_typing(group, true).await?;
    alice.sync().await?;
    let seen = carol
        .wait_event("Alice typing", |e| {
            matches!(e, Event::Typing { group_id, until, .. } if *group_id == group && *until > 0)
        })
        .await?;
    ensure!(
        matches!(&seen, Event::Typing { user_id, .. } if *user_id == alice.user()),
        "{seen:?}"
    );
    ensure!(carol.client.typing(group).await? == vec![alice.user()]);

    // Her message ends it for Carol; Bob, back, gets the message and never
    // the indicator.
    bob.forget_events();
    bob.client.resume()?;
    alice.client.send_text(group, "Crew to bay 3").await?;
    alice.sync().await?;
    carol
        .wait_event(
            "Alice stopped",
            |e| matches!(e, Event::Typing { group_id, until: 0, .. } if *group_id == group),
        )
        .await?;
    ensure!(carol.client.typing(group).await?.is_empty());
    let mut typing_seen = false;
    bob.wait_event("Alice's message", |e| {
        typing_seen |= matches!(e, Event::Typing { .. });
        matches!(e, Event::Message(m) if m.text.as_deref() == Some("Crew to bay 3"))
    })
    .await?;
    ensure!(
        !typing_seen,
        "an indicator reached a device that was offline"
    );
    ensure!(bob.client.typing(group).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_checks_size_membership_epoch_and_rate() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let owner = RawDevice::enrol_certified(&relay, "alice@north-trust").await?;
    let outsider = RawDevice::enrol_certified(&relay, "mallory@north-trust").await?;
    let mut a = RawConn::authenticated(&relay, &owner).await?;
    let mut m = RawConn::authenticated(&relay, &outsider).await?;
    let g = GroupId::random();
    assert_eq!(
        a.call(Request::CreateGroup {
            group_id: g,
            group_info: Bytes::from(mls::group_info()),
        })
        .await?,
        Ok(Response::GroupCreated)
    );
    let typing = |group_id, epoch, len| Request::Typing {
        group_id,
        epoch,
        payload: Bytes::from(vec![7u8; len]),
    };
    assert_eq!(
        a.call(typing(g, 0, MAX_TYPING_BYTES + 1)).await?,
        Err(ProtocolError::TooLarge {
            limit: MAX_TYPING_BYTES as u64
        })
    );
    assert_eq!(
        m.call(typing(g, 0, 101)).await?,
        Err(ProtocolError::NotMember)
    );
    assert_eq!(
        a.call(typing(GroupId::random(), 0, 101)).await?,
        Err(ProtocolError::UnknownGroup)
    );
    assert_eq!(
        a.call(typing(g, 4, 101)).await?,
        Err(ProtocolError::WrongEpoch { current: 0 })
    );
    for _ in 0..TYPING_PER_WINDOW {
        assert_eq!(
            a.call(typing(g, 0, 101)).await?,
            Ok(Response::TypingRelayed)
        );
    }
    let r = a.call(typing(g, 0, 101)).await?;
    assert!(
        matches!(
            r,
            Err(ProtocolError::RateLimited {
                retry_after_ms,
                scope: Some(RateScope::Typing)
            }) if retry_after_ms <= 10_000
        ),
        "{r:?}"
    );
    // The connection carries on, and nothing was queued.
    assert_eq!(a.call(Request::Ping).await?, Ok(Response::Pong));
    let mut again = RawConn::authenticated(&relay, &owner).await?;
    assert!(again.backlog().await?.is_empty());
    Ok(())
}
