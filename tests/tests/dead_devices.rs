//! A device that stays away past the relay's queue expiry: the relay drops
//! its queue and stops delivering its conversations to it, and every member
//! sees that in the conversation; the device, back online, says what
//! happened and rejoins by itself. Devices that stay connected for longer
//! than the expiry are not touched.
//!
//! The expiry is 30 days in service; here it is 0.00005 days (4.3 s), the
//! same flag an operator sets (`--queue-expiry-days`).

use anyhow::Result;
use cascade_core::engine::{REJOINED_TEXT, STOPPED_HERE_TEXT, STOPPED_TEXT};
use cascade_core::ConversationState;
use cascade_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_away_past_the_expiry_is_dropped_then_rejoins() -> Result<()> {
    let relay = Relay::start_with(&["--queue-expiry-days", "0.00005"]).await?;
    relay.org("north-trust").await?;
    relay.org("south-care").await?;
    relay.trust_each_other("north-trust", "south-care").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let laptop = relay.user("bob@south-care", "Bob", "Paramedic").await?;
    let phone = relay.device("bob@south-care", "phone").await?;
    let group = alice.create_group_with("Transfer", &[&laptop]).await?;
    phone.joined(group).await?;

    // Bob's phone goes into a drawer. What Alice writes now waits for it,
    // until the expiry drops it.
    let dir = phone.close().await;
    alice.client.send_text(group, "bed 4 is ready").await?;
    alice.sync().await?;
    for peer in [&alice, &laptop] {
        peer.until("the line saying the phone is dropped", || async {
            Ok(peer
                .texts(group)
                .await?
                .iter()
                .any(|t| t.starts_with("Bob (bob@south-care)") && t.contains(STOPPED_TEXT)))
        })
        .await?;
    }
    let line = alice
        .texts(group)
        .await?
        .into_iter()
        .find(|t| t.contains(STOPPED_TEXT))
        .expect("found above");
    assert!(line.contains("it had not connected for"), "{line}");

    // Alice and the laptop were connected all along, for longer than the
    // expiry: still delivered to, still in step.
    alice.client.send_text(group, "bed 5 is ready").await?;
    alice.sync().await?;
    laptop
        .until("bed 5", || async {
            Ok(laptop
                .texts(group)
                .await?
                .contains(&"bed 5 is ready".into()))
        })
        .await?;
    for peer in [&alice, &laptop] {
        assert_eq!(
            peer.client.conversation(group).await?.state,
            ConversationState::Active
        );
        assert!(!peer
            .texts(group)
            .await?
            .iter()
            .any(|t| t.starts_with(STOPPED_HERE_TEXT)));
    }

    // The phone comes back: it says it stopped receiving, rejoins, and is
    // in the conversation again; what was written while it was dropped
    // is not there.
    let phone = Peer::open(dir).await?;
    phone
        .until("the rejoin", || async {
            let texts = phone.texts(group).await?;
            Ok(texts.iter().any(|t| t.starts_with(STOPPED_HERE_TEXT))
                && texts.iter().any(|t| t == REJOINED_TEXT)
                && phone.client.conversation(group).await?.state == ConversationState::Active)
        })
        .await?;
    let texts = phone.texts(group).await?;
    assert!(
        !texts.contains(&"bed 5 is ready".into()),
        "sent while it was dropped: {texts:?}"
    );
    let here = texts
        .iter()
        .find(|t| t.starts_with(STOPPED_HERE_TEXT))
        .expect("found above");
    assert!(here.contains("it had not connected for"), "{here}");

    // Everyone is in step again, in both directions.
    alice
        .client
        .send_text(group, "ambulance at the door")
        .await?;
    alice.sync().await?;
    phone
        .until("Alice's message", || async {
            Ok(phone
                .texts(group)
                .await?
                .contains(&"ambulance at the door".into()))
        })
        .await?;
    phone.client.send_text(group, "on my way").await?;
    phone.sync().await?;
    for peer in [&alice, &laptop] {
        peer.until("the phone's message", || async {
            Ok(peer.texts(group).await?.contains(&"on my way".into()))
        })
        .await?;
    }
    let epoch = alice.client.epoch(group).await?;
    assert_eq!(laptop.client.epoch(group).await?, epoch);
    assert_eq!(phone.client.epoch(group).await?, epoch);
    Ok(())
}
