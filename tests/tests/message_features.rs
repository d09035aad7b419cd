//! Replies, edits, deletes for everyone and reactions against a real
//! relay: two organisations, one user on two devices, one device offline
//! while it all happens and catching up after.

use anyhow::{ensure, Result};
use cascade_core::{CoreError, Event, InvalidInput, MessageChange};
use cascade_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_edits_reactions_and_deletes_reach_every_device_across_organisations() -> Result<()>
{
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let alice_phone = relay.device("alice@north-trust", "phone").await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol Hughes", "Paramedic")
        .await?;
    let group = alice.create_group_with("Transfer", &[&carol]).await?;
    alice_phone.joined(group).await?;

    let handover = alice
        .client
        .send_text(group, "Patient in bay 3 ready for transfer at 14:00")
        .await?;
    carol.messages(group, 1).await?;

    // Alice's phone goes offline; everything below happens without it.
    alice_phone.client.pause()?;

    // Carol answers the handover; Alice corrects the time.
    let answer = carol
        .client
        .send_reply(group, "Crew assigned", handover)
        .await?;
    carol.sync().await?;
    alice
        .until("Carol's answer", || async {
            Ok(alice.client.message(group, answer).await.is_ok())
        })
        .await?;
    let got = alice.client.message(group, answer).await?;
    let quote = got.reply_to.expect("a reply");
    ensure!(quote.id == handover && quote.sender == Some(alice.user()));
    alice
        .client
        .edit_message(
            group,
            handover,
            "Patient in bay 3 ready for transfer at 15:00",
        )
        .await?;
    alice.sync().await?;
    carol
        .until("the edit", || async {
            Ok(carol
                .client
                .message(group, handover)
                .await?
                .edited_at
                .is_some())
        })
        .await?;
    ensure!(
        carol
            .client
            .message(group, answer)
            .await?
            .reply_to
            .and_then(|q| q.text)
            == Some("Patient in bay 3 ready for transfer at 15:00".into()),
        "the quote shows the text as it now is"
    );
    ensure!(
        carol
            .client
            .message_versions(group, handover)
            .await?
            .iter()
            .map(|v| v.text.as_str())
            .collect::<Vec<_>>()
            == ["Patient in bay 3 ready for transfer at 14:00"]
    );
    // Carol cannot edit Alice's message.
    ensure!(matches!(
        carol.client.edit_message(group, handover, "whenever").await,
        Err(CoreError::Invalid(InvalidInput::NotYours))
    ));

    // Reactions from both organisations.
    carol.client.react(group, handover, "👍").await?;
    alice.client.react(group, answer, "🙏").await?;
    carol.sync().await?;
    alice.sync().await?;
    alice
        .until("Carol's reaction", || async {
            Ok(!alice
                .client
                .message(group, handover)
                .await?
                .reactions
                .is_empty())
        })
        .await?;

    // A message with patient details posted by mistake; Alice deletes it.
    let mistake = alice
        .client
        .send_text(group, "NHS number 943 476 5919")
        .await?;
    alice.sync().await?;
    carol
        .until("the mistake", || async {
            Ok(carol.client.message(group, mistake).await.is_ok())
        })
        .await?;
    alice.client.delete_message(group, mistake).await?;
    alice.sync().await?;
    carol
        .until("the delete", || async {
            Ok(carol
                .client
                .message(group, mistake)
                .await?
                .deleted_by
                .is_some())
        })
        .await?;

    // Alice's phone comes back and catches up: every change is there.
    alice_phone.client.resume()?;
    alice_phone.sync().await?;
    for peer in [&alice, &alice_phone, &carol] {
        let h = peer.client.message(group, handover).await?;
        ensure!(
            h.text.as_deref() == Some("Patient in bay 3 ready for transfer at 15:00")
                && h.edited_at.is_some(),
            "{}: {h:?}",
            peer.user()
        );
        ensure!(
            h.reactions.len() == 1 && h.reactions[0].users == [carol.user()],
            "{}: {:?}",
            peer.user(),
            h.reactions
        );
        let a = peer.client.message(group, answer).await?;
        ensure!(a.reactions.len() == 1 && a.reactions[0].users == [alice.user()]);
        let m = peer.client.message(group, mistake).await?;
        ensure!(
            m.text.is_none() && m.deleted_by == Some(alice.user()),
            "{}: {m:?}",
            peer.user()
        );
    }
    // (That no table of a device's database still holds the text is
    // checked in client-core/tests/features.rs, where the test has the
    // raw key.)
    Ok(())
}

/// Carol's device shows edits, deletes and reactions as events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_arrive_as_events() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let mut bob = relay
        .user("bob@north-trust", "Bob Singh", "Junior Doctor")
        .await?;
    let group = alice.create_group_with("Ward 7", &[&bob]).await?;
    let id = alice.client.send_text(group, "Bed 4 obs at 14:00").await?;
    bob.messages(group, 1).await?;
    bob.forget_events();
    alice
        .client
        .edit_message(group, id, "Bed 4 obs at 15:00")
        .await?;
    bob.client.react(group, id, "✅").await?;
    alice.client.delete_message(group, id).await?;
    alice.sync().await?;
    bob.sync().await?;
    bob.until("the delete", || async {
        Ok(bob.client.message(group, id).await?.deleted_by.is_some())
    })
    .await?;
    let changes: Vec<MessageChange> = bob
        .events_so_far()
        .into_iter()
        .filter_map(|e| match e {
            Event::MessageChanged { message, change } if message.id == id => Some(change),
            _ => None,
        })
        .collect();
    ensure!(
        changes.contains(&MessageChange::Edited)
            && changes.contains(&MessageChange::Reactions)
            && changes.contains(&MessageChange::Deleted),
        "{changes:?}"
    );
    Ok(())
}
