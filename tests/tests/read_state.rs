//! Read state and read receipts against a real relay: two organisations,
//! one user on two devices with the phone offline while the desk reads,
//! and the relay addressing each read report to the reader's devices and
//! the senders only.

use anyhow::{ensure, Result};
use cascade_core::{Event, GroupId};
use cascade_tests::*;

async fn unread(peer: &Peer, group: GroupId) -> Result<u64> {
    Ok(peer
        .client
        .conversations()
        .await?
        .into_iter()
        .find(|c| c.group_id == group)
        .map(|c| c.unread)
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_on_the_desk_clears_the_phone_and_tells_the_senders() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let mut alice_phone = relay.device("alice@north-trust", "phone").await?;
    let bob = relay
        .user("bob@north-trust", "Bob Jones", "Staff Nurse")
        .await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol Hughes", "Paramedic")
        .await?;
    let group = alice.create_group_with("Transfer", &[&bob, &carol]).await?;
    alice_phone.joined(group).await?;
    bob.joined(group).await?;

    let eta = carol
        .client
        .send_text(group, "Crew at the front door in 10 minutes")
        .await?;
    let bay = carol.client.send_text(group, "Which bay?").await?;
    carol.sync().await?;
    alice.messages(group, 2).await?;
    alice_phone.messages(group, 2).await?;
    bob.messages(group, 2).await?;
    ensure!(unread(&alice_phone, group).await? == 2);

    // The phone is offline while Alice reads on the desk.
    alice_phone.client.pause()?;
    alice.client.mark_read(group).await?;
    alice.sync().await?;
    ensure!(unread(&alice, group).await? == 0);
    carol
        .until("Alice's read report", || async {
            Ok(carol.client.message(group, bay).await?.read_by == 1)
        })
        .await?;
    // One report covered both of Carol's messages.
    ensure!(carol.client.message(group, eta).await?.read_by == 1);
    let r = carol.client.receipts(group, eta).await?;
    ensure!(r.recipients == 2, "Alice and Bob: {r:?}");
    ensure!(r.read.len() == 1 && r.read[0].0 == alice.user(), "{r:?}");
    ensure!(r.delivered.len() == 2, "both received it: {r:?}");

    // Back online, the phone learns it was read and clears notifications.
    alice_phone.forget_events();
    alice_phone.client.resume()?;
    alice_phone
        .wait_event(
            "read elsewhere",
            |e| matches!(e, Event::ReadElsewhere { group_id } if *group_id == group),
        )
        .await?;
    ensure!(unread(&alice_phone, group).await? == 0);

    // Bob turns read receipts off: his report goes to his own devices
    // alone. Alice's next message is sequenced after it, so once Carol has
    // that, she would have had Bob's report too.
    bob.client.set_read_receipts(false).await?;
    ensure!(!bob.client.read_receipts().await?);
    bob.client.mark_read(group).await?;
    bob.sync().await?;
    let after = alice.client.send_text(group, "Bay 3").await?;
    alice.sync().await?;
    carol
        .until("Alice's message after Bob's report", || async {
            Ok(carol.client.message(group, after).await.is_ok())
        })
        .await?;
    ensure!(carol.client.message(group, bay).await?.read_by == 1);
    ensure!(carol.client.receipts(group, bay).await?.read.len() == 1);
    Ok(())
}
