//! Conversation roles and policy against a real relay: two organisations,
//! an admin of the other organisation, a device offline while roles change,
//! a member whose modified client tries what the policy forbids (the relay
//! refuses it: the room change in the GroupInfo, the removal in the roster
//! change; `client-core/tests/roles.rs` plays the same against receivers),
//! the conversation going on after both, and a member's leave committed by
//! another member while every admin is offline.

use anyhow::{ensure, Result};
use cascade_core::{Action, Event, Role, RoomChange};
use cascade_tests::*;

async fn admins_seen_by(peer: &Peer, group: cascade_core::GroupId) -> Result<Vec<String>> {
    Ok(peer
        .client
        .room_details(group)
        .await?
        .map(|d| d.admins.iter().map(|u| u.to_string()).collect())
        .unwrap_or_default())
}

async fn wait_admins(peer: &Peer, group: cascade_core::GroupId, want: &[&str]) -> Result<()> {
    peer.until(&format!("admins {want:?}"), || async {
        Ok(admins_seen_by(peer, group).await? == want)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_across_organisations_and_a_hostile_member_refused_by_the_relay() -> Result<()> {
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
    let mut bob = relay
        .user("bob@north-trust", "Bob Jones", "Staff Nurse")
        .await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol Hughes", "Paramedic")
        .await?;
    let group = alice.create_group_with("Transfer", &[&bob, &carol]).await?;
    alice_phone.joined(group).await?;
    for p in [&alice, &alice_phone, &bob, &carol] {
        wait_admins(p, group, &["alice@north-trust"]).await?;
    }

    // Alice's phone is offline while she makes Carol (of the ambulance
    // service) an admin and lets only admins rename the conversation.
    alice_phone.client.pause()?;
    alice
        .client
        .set_role(group, carol.user(), Role::Admin)
        .await?;
    alice
        .client
        .set_policy(group, Action::Rename, Role::Admin)
        .await?;
    alice.sync().await?;
    for p in [&alice, &bob, &carol] {
        wait_admins(p, group, &["alice@north-trust", "carol@east-ambulance"]).await?;
    }
    alice_phone.client.resume()?;
    wait_admins(
        &alice_phone,
        group,
        &["alice@north-trust", "carol@east-ambulance"],
    )
    .await?;
    let details = alice_phone.client.room_details(group).await?.expect("room");
    ensure!(details.policy.rename == Role::Admin, "{details:?}");

    // Bob is a member: his own device will not rename or make him an admin.
    ensure!(bob.client.rename(group, "Bob's").await.is_err());
    ensure!(bob
        .client
        .set_role(group, bob.user(), Role::Admin)
        .await
        .is_err());
    // His modified client sends the commit anyway: the relay sees the room
    // change in its GroupInfo and refuses it, so nothing is sequenced.
    let epoch = alice.client.epoch(group).await?;
    bob.forget_events();
    bob.client
        .change_room_unchecked(
            group,
            RoomChange::Role {
                user: bob.user(),
                role: Role::Admin,
            },
        )
        .await?;
    bob.wait_event("the relay's refusal", |e| {
        matches!(e, Event::OperationFailed { reason, .. }
            if reason.contains("forbidden by the conversation's policy")
                && reason.contains("only a conversation admin may change roles"))
    })
    .await?;
    ensure!(alice.client.epoch(group).await? == epoch, "not sequenced");
    ensure!(admins_seen_by(&bob, group).await? == ["alice@north-trust", "carol@east-ambulance"]);

    // The conversation is not held up: Carol, an admin of the other
    // organisation, renames it and makes Bob an admin after all.
    carol.client.rename(group, "Transfer bay 3").await?;
    carol
        .client
        .set_role(group, bob.user(), Role::Admin)
        .await?;
    carol.sync().await?;
    for p in [&alice, &alice_phone, &bob, &carol] {
        wait_admins(
            p,
            group,
            &[
                "alice@north-trust",
                "bob@north-trust",
                "carol@east-ambulance",
            ],
        )
        .await?;
        p.until("the new name", || async {
            Ok(p.client.conversation(group).await?.name == "Transfer bay 3")
        })
        .await?;
    }
    let lines: Vec<String> = alice
        .client
        .history(group, None, 100)
        .await?
        .into_iter()
        .filter(|m| m.kind == cascade_core::content::SYSTEM_KIND)
        .filter_map(|m| m.text)
        .collect();
    ensure!(
        lines.contains(&"Carol Hughes made Bob Jones an admin".to_owned()),
        "{lines:?}"
    );

    // Demoted again, Bob's modified client removes Carol: the relay sees
    // the roster change and refuses it, so Carol stays and keeps receiving.
    alice
        .client
        .set_role(group, bob.user(), Role::Member)
        .await?;
    alice.sync().await?;
    wait_admins(&bob, group, &["alice@north-trust", "carol@east-ambulance"]).await?;
    bob.forget_events();
    bob.client
        .remove_members_unchecked(group, vec![carol.user()])
        .await?;
    bob.wait_event("the relay's refusal of the removal", |e| {
        matches!(e, Event::OperationFailed { reason, .. }
            if reason.contains("only a conversation admin may remove others"))
    })
    .await?;
    alice
        .client
        .send_text(group, "Carol, still with us?")
        .await?;
    alice.sync().await?;
    carol
        .until("Alice's message", || async {
            Ok(carol
                .texts(group)
                .await?
                .contains(&"Carol, still with us?".to_owned()))
        })
        .await?;
    ensure!(carol.member_users(group).await?.contains(&carol.user()));

    // Leaving needs no role: with every admin offline, Dave leaves and Bob,
    // a member, commits it; the relay lets him (Dave asked).
    let dave = relay
        .user("dave@north-trust", "Dave Evans", "Porter")
        .await?;
    alice.client.add_members(group, vec![dave.user()]).await?;
    alice.sync().await?;
    dave.joined(group).await?;
    bob.until("Dave in", || async {
        Ok(bob.member_users(group).await?.contains(&dave.user()))
    })
    .await?;
    for p in [&alice, &alice_phone, &carol] {
        p.client.pause()?;
    }
    dave.client.leave(group).await?;
    dave.sync().await?;
    bob.until("Dave gone", || async {
        Ok(!bob.member_users(group).await?.contains(&dave.user()))
    })
    .await?;
    for p in [&alice, &alice_phone, &carol] {
        p.client.resume()?;
        p.until("Dave gone", || async {
            Ok(!p.member_users(group).await?.contains(&dave.user()))
        })
        .await?;
    }
    Ok(())
}
