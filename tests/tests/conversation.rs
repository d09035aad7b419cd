//! Multi-party stories against a real relay process.

use anyhow::Result;
use cascade_core::{DeliveryState, Event};
use cascade_protocol::{ItemKind, ProtocolError, Response};
use cascade_tests::raw::RawConn;
use cascade_tests::*;

/// Two organisations, three users, one group spanning both; messages flow
/// both ways and arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_organisations_converse_in_order() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let bob = relay
        .user("bob@north-trust", "Bob Singh", "Junior Doctor")
        .await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol Hughes", "Paramedic")
        .await?;
    for p in [&alice, &bob, &carol] {
        p.sync().await?;
    }

    let group = alice
        .create_group_with("Bed 12 transfer", &[&bob, &carol])
        .await?;
    let everyone = vec![alice.user(), bob.user(), carol.user()];
    for p in [&alice, &bob, &carol] {
        assert_eq!(p.member_users(group).await?, {
            let mut e = everyone.clone();
            e.sort();
            e
        });
    }
    // The group's name reached the new members inside MLS.
    bob.until("the group name", || async {
        Ok(bob.client.conversation(group).await?.name == "Bed 12 transfer")
    })
    .await?;

    for i in 0..5 {
        alice.client.send_text(group, &format!("alice {i}")).await?;
        carol.client.send_text(group, &format!("carol {i}")).await?;
    }
    bob.client.send_text(group, "bob here").await?;
    for p in [&alice, &bob, &carol] {
        p.sync().await?;
    }
    for p in [&alice, &bob, &carol] {
        let msgs = p.messages(group, 11).await?;
        assert_eq!(msgs.len(), 11, "every message exactly once");
        // Each sender's messages in the order sent.
        for who in ["alice", "carol"] {
            let mine: Vec<_> = msgs
                .iter()
                .filter_map(|m| m.text.clone())
                .filter(|t| t.starts_with(who))
                .collect();
            let want: Vec<_> = (0..5).map(|i| format!("{who} {i}")).collect();
            assert_eq!(mine, want, "{who}'s messages in order");
        }
    }
    // Sender-side delivery state: accepted by the relay at least, and
    // delivered once both others' receipts are in.
    alice
        .until("Bob's and Carol's receipts", || async {
            Ok(alice
                .client
                .history(group, None, 100)
                .await?
                .iter()
                .filter(|m| m.sender == alice.user())
                .all(|m| m.state == DeliveryState::Delivered))
        })
        .await?;
    // Everyone is at the same epoch.
    let e = alice.client.epoch(group).await?;
    assert_eq!(bob.client.epoch(group).await?, e);
    assert_eq!(carol.client.epoch(group).await?, e);
    Ok(())
}

/// A member is offline while others send, commit and add someone; when it
/// comes back it converges: same epoch, same members, every message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_member_converges() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol", "Paramedic")
        .await?;
    let dave = relay
        .user("dave@east-ambulance", "Dave", "Dispatcher")
        .await?;
    let group = alice
        .create_group_with("Night shift", &[&bob, &carol])
        .await?;
    bob.sync().await?;

    // Bob goes offline (the app is closed).
    let bob_dir = bob.close().await;

    alice.client.send_text(group, "one").await?;
    carol.client.send_text(group, "two").await?;
    alice.sync().await?;
    carol.sync().await?;
    alice.client.add_members(group, vec![dave.user()]).await?;
    alice.sync().await?;
    dave.joined(group).await?;
    // Carol (of the other organisation) is made an admin, and removes Dave.
    alice
        .client
        .set_role(group, carol.user(), cascade_core::Role::Admin)
        .await?;
    alice.sync().await?;
    carol
        .until("Carol is an admin", || async {
            Ok(carol
                .client
                .room_details(group)
                .await?
                .is_some_and(|d| d.my_role == cascade_core::Role::Admin))
        })
        .await?;
    carol
        .client
        .remove_members(group, vec![dave.user()])
        .await?;
    carol.sync().await?;
    alice.client.send_text(group, "three").await?;
    alice.sync().await?;

    // Bob comes back.
    let bob = Peer::open(bob_dir).await?;
    bob.sync().await?;
    let want_epoch = alice.client.epoch(group).await?;
    bob.until("the current epoch", || async {
        Ok(bob.client.epoch(group).await? == want_epoch)
    })
    .await?;
    assert_eq!(
        bob.member_users(group).await?,
        alice.member_users(group).await?
    );
    // The role change, made while he was away, is a line in his history too.
    assert_eq!(
        bob.texts(group).await?,
        vec!["one", "two", "Alice made Carol an admin", "three"]
    );
    // And the group still works both ways.
    bob.client.send_text(group, "back online").await?;
    bob.sync().await?;
    // Alice's history also holds the line of her own role change: wait for
    // the text itself, not for a count.
    alice
        .until("Bob's message", || async {
            Ok(alice.texts(group).await?.last().map(String::as_str) == Some("back online"))
        })
        .await?;
    Ok(())
}

/// Two members commit at the same epoch: exactly one wins, the other
/// retries after processing the winner, and nobody forks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_do_not_fork() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let carol = relay
        .user("carol@north-trust", "Carol", "Pharmacist")
        .await?;
    let dave = relay.user("dave@north-trust", "Dave", "Porter").await?;
    let group = alice.create_group_with("Pharmacy", &[&bob]).await?;
    bob.sync().await?;
    let before = alice.client.epoch(group).await?;

    // Both commit at the same epoch, concurrently.
    let (a, b) = tokio::join!(
        alice.client.add_members(group, vec![carol.user()]),
        bob.client.add_members(group, vec![dave.user()]),
    );
    a?;
    b?;
    alice.sync().await?;
    bob.sync().await?;
    carol.joined(group).await?;
    dave.joined(group).await?;
    for p in [&alice, &bob] {
        p.until("both additions", || async {
            Ok(p.member_users(group).await?.len() == 4)
        })
        .await?;
    }
    let epoch = alice.client.epoch(group).await?;
    assert_eq!(epoch, before + 2, "two commits, one after the other");
    for p in [&bob, &carol, &dave] {
        p.until("the same epoch", || async {
            Ok(p.client.epoch(group).await? == epoch)
        })
        .await?;
    }
    // No fork: a message from each is readable by all others.
    for (i, p) in [&alice, &bob, &carol, &dave].iter().enumerate() {
        p.client.send_text(group, &format!("from {i}")).await?;
        p.sync().await?;
    }
    for p in [&alice, &bob, &carol, &dave] {
        p.until("all four messages", || async {
            Ok(p.texts(group)
                .await?
                .iter()
                .filter(|t| t.starts_with("from "))
                .count()
                == 4)
        })
        .await?;
    }
    Ok(())
}

/// After a conversation, nothing the users wrote is anywhere in the relay's
/// data directory, while what the relay does keep in clear (the directory's
/// names and roles) is found by the same scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_store_holds_no_plaintext() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let directory_role = "DIRECTORY-ROLE-2093";
    let alice = relay
        .user("alice@north-trust", "Alice", directory_role)
        .await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let marker_name = "ZEBRA-GROUP-NAME-7731";
    let marker_text = "PLAINTEXT-MARKER-4471 patient in bed 12";
    let group = alice.client.create_group(marker_name).await?;
    alice.client.add_members(group, vec![bob.user()]).await?;
    alice.sync().await?;
    bob.joined(group).await?;
    for _ in 0..20 {
        bob.client.send_text(group, marker_text).await?;
    }
    bob.sync().await?;
    alice.messages(group, 20).await?;
    alice.sync().await?;
    drop(alice);
    drop(bob);
    let mut stack = vec![relay.data_dir().to_path_buf()];
    let mut directory_role_found = false;
    while let Some(p) = stack.pop() {
        for entry in std::fs::read_dir(&p)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path)?;
                let holds =
                    |marker: &str| bytes.windows(marker.len()).any(|w| w == marker.as_bytes());
                for marker in [marker_name, "PLAINTEXT-MARKER-4471"] {
                    assert!(!holds(marker), "{marker} found in {}", path.display());
                }
                directory_role_found |= holds(directory_role);
            }
        }
    }
    assert!(
        directory_role_found,
        "the scan sees what the relay stores in clear"
    );
    Ok(())
}

/// A real race, made deterministic: Bob does not see Alice's commit before
/// making his own for the same epoch. The relay refuses his with
/// `WrongEpoch`; he processes Alice's, retries, and both land. No fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_commit_is_refused_then_retried() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let carol = relay
        .user("carol@north-trust", "Carol", "Pharmacist")
        .await?;
    let dave = relay.user("dave@north-trust", "Dave", "Porter").await?;
    let group = alice.create_group_with("Race", &[&bob]).await?;
    bob.sync().await?;
    let start = alice.client.epoch(group).await?;
    let bob_dir = bob.close().await;
    let proxy = cascade_tests::proxy::Proxy::start(&relay.url).await?;
    let bob = Peer::open_via(bob_dir, Some(&proxy.url)).await?;
    bob.sync().await?;

    proxy.hold_deliveries().await;
    alice.client.add_members(group, vec![carol.user()]).await?;
    alice.sync().await?;
    assert_eq!(alice.client.epoch(group).await?, start + 1);
    bob.client.add_members(group, vec![dave.user()]).await?;
    // Bob's commit is for the old epoch: refused, and his op waits.
    proxy
        .refused(
            "WrongEpoch",
            |e| matches!(e, ProtocolError::WrongEpoch { current } if *current == start + 1),
        )
        .await?;
    assert_eq!(
        bob.client.epoch(group).await?,
        start,
        "Bob has not seen Alice's commit"
    );
    assert_eq!(
        bob.client.outbox_len().await?,
        1,
        "Bob's add is still pending"
    );
    assert_eq!(
        alice.member_users(group).await?.len(),
        3,
        "Bob's stale commit did not land"
    );

    proxy.release().await;
    bob.sync().await?;
    dave.joined(group).await?;
    let end = start + 2;
    for p in [&alice, &bob, &carol, &dave] {
        p.until("the final epoch", || async {
            Ok(p.client.epoch(group).await? == end)
        })
        .await?;
        assert_eq!(p.member_users(group).await?.len(), 4);
    }
    for (i, p) in [&alice, &bob, &carol, &dave].iter().enumerate() {
        p.client.send_text(group, &format!("from {i}")).await?;
        p.sync().await?;
    }
    for p in [&alice, &bob, &carol, &dave] {
        p.until("all four messages", || async {
            Ok(p.texts(group)
                .await?
                .iter()
                .filter(|t| t.starts_with("from "))
                .count()
                == 4)
        })
        .await?;
    }
    Ok(())
}

/// A ciphertext replayed on the network reaches the recipient twice (the
/// relay cannot tell) and is shown once, without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_message_is_shown_once() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let mut bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let group = alice.create_group_with("Replay", &[&bob]).await?;
    let alice_dir = alice.close().await;
    let proxy = cascade_tests::proxy::Proxy::start(&relay.url).await?;
    let alice = Peer::open_via(alice_dir, Some(&proxy.url)).await?;
    alice.sync().await?;

    proxy.replay_next_send().await;
    alice.client.send_text(group, "say it once").await?;
    alice.sync().await?;
    alice.client.send_text(group, "and then this").await?;
    alice.sync().await?;
    assert_eq!(proxy.replayed().await, 1);
    // The relay sequenced the replay before the second message, and Bob
    // processes the conversation in order: once he shows the second
    // message, he has dealt with the replay, and reported any failure.
    let mut failures = Vec::new();
    bob.wait_event("the second message", |e| match e {
        Event::OperationFailed { reason, .. } => {
            failures.push(reason.clone());
            false
        }
        Event::Message(m) => m.text.as_deref() == Some("and then this"),
        _ => false,
    })
    .await?;
    assert_eq!(
        bob.texts(group).await?,
        vec!["say it once", "and then this"]
    );
    assert_eq!(failures, Vec::<String>::new(), "no failure for the replay");
    Ok(())
}

/// A person with two devices leaves on one: the other follows, so the
/// person is gone from the conversation, not half in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_on_one_device_takes_the_others_out_too() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let desk = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let phone = relay.device("alice@north-trust", "phone").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    phone.sync().await?;
    let group = desk.create_group_with("Ward 7", &[&bob]).await?;
    phone.joined(group).await?;
    bob.until("both of Alice's devices", || async {
        Ok(bob.client.members(group).await?.len() == 3)
    })
    .await?;

    desk.client.leave(group).await?;
    for (name, device) in [("desk", &desk), ("phone", &phone)] {
        device
            .until(name, || async {
                Ok(device.client.conversation(group).await?.state
                    == cascade_core::ConversationState::Left)
            })
            .await?;
    }
    bob.until("Alice's removal", || async {
        Ok(bob.member_users(group).await? == vec![bob.user()])
    })
    .await?;
    Ok(())
}

/// A member leaves: the remaining members commit the removal, the leaver's
/// conversation ends, and nothing sent afterwards reaches the leaver: the
/// relay queues nothing of the conversation for the leaver's device (its
/// app would ignore it anyway; `server/tests/ws.rs` has the relay's side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_conversation() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol", "Paramedic")
        .await?;
    let group = alice.create_group_with("Transfer", &[&bob, &carol]).await?;
    bob.sync().await?;

    bob.client.leave(group).await?;
    bob.until("leaving", || async {
        Ok(bob.client.conversation(group).await?.state == cascade_core::ConversationState::Left)
    })
    .await?;
    for p in [&alice, &carol] {
        p.until("Bob's removal", || async {
            Ok(p.member_users(group).await? == vec![alice.user(), carol.user()])
        })
        .await?;
    }
    assert!(matches!(
        bob.client.send_text(group, "still there?").await,
        Err(cascade_core::CoreError::NotActive)
    ));
    // Bob's app is closed, so that whatever the relay queues for his device
    // stays there (his app would take and drop it).
    bob.sync().await?;
    let bob_dir = bob.close().await;
    alice.client.send_text(group, "after Bob left").await?;
    alice.sync().await?;
    carol.messages(group, 1).await?;
    // The relay holds nothing of the conversation for Bob's device but,
    // perhaps, his removal (if his ack of it was still on its way).
    let (mut raw, login) = RawConn::login_as(&relay.url, &bob_dir).await?;
    assert!(
        matches!(login, Ok(Response::Authenticated { .. })),
        "{login:?}"
    );
    let queued: Vec<_> = raw
        .backlog()
        .await?
        .into_iter()
        .filter(|i| i.group_id == group)
        .map(|i| i.kind)
        .collect();
    assert!(
        queued.is_empty() || queued == [ItemKind::Commit],
        "nothing after the removal reaches Bob: {queued:?}"
    );
    drop(raw);
    let bob = Peer::open(bob_dir).await?;
    bob.sync().await?;
    assert!(
        bob.texts(group).await?.is_empty(),
        "the leaver shows nothing after leaving"
    );
    let e = alice.client.epoch(group).await?;
    assert_eq!(carol.client.epoch(group).await?, e);
    Ok(())
}

/// Adding a user adds every one of their devices; each device reads the
/// conversation, and a message from one device reaches the user's others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_user_adds_all_their_devices() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob_desk = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let bob_phone = relay.device("bob@north-trust", "phone").await?;
    bob_phone.sync().await?;
    bob_desk.sync().await?;
    let group = alice.client.create_group("On call").await?;
    alice
        .client
        .add_members(group, vec![bob_desk.user()])
        .await?;
    alice.sync().await?;
    bob_desk.joined(group).await?;
    bob_phone.joined(group).await?;
    assert_eq!(
        alice.client.members(group).await?.len(),
        3,
        "one leaf per device"
    );
    bob_phone.client.send_text(group, "from the phone").await?;
    bob_phone.sync().await?;
    alice.messages(group, 1).await?;
    bob_desk.messages(group, 1).await?;
    assert_eq!(bob_desk.texts(group).await?, vec!["from the phone"]);
    Ok(())
}

/// A conversation started on one of a user's devices reaches their other
/// devices too: what Alice starts on her desktop she can go on with on her
/// phone, and what Bob writes reaches both. A user with one device creates
/// a conversation without any failure reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_started_on_one_device_reaches_the_users_others() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let mut alice_desk = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let alice_phone = relay.device("alice@north-trust", "phone").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    alice_phone.sync().await?;

    let group = alice_desk.create_group_with("Ward 7", &[&bob]).await?;
    alice_phone.joined(group).await?;
    alice_phone
        .until("the conversation's name", || async {
            Ok(alice_phone.client.conversation(group).await?.name == "Ward 7")
        })
        .await?;
    bob.client.send_text(group, "Bed 4 needs obs").await?;
    alice_phone.messages(group, 1).await?;
    alice_phone.client.send_text(group, "On my way").await?;
    bob.messages(group, 2).await?;
    alice_desk.messages(group, 2).await?;
    assert_eq!(
        alice_desk.texts(group).await?,
        ["Bed 4 needs obs", "On my way"]
    );
    assert_eq!(alice_desk.client.members(group).await?.len(), 3);
    let failures = |peer: &mut Peer| {
        peer.events_so_far()
            .into_iter()
            .filter(|e| matches!(e, Event::OperationFailed { .. }))
            .count()
    };
    assert_eq!(failures(&mut alice_desk), 0, "nothing reported as failed");

    // Carol alone on one device: nothing to add, nothing reported.
    let mut solo = relay.user("carol@north-trust", "Carol", "Porter").await?;
    let own = solo.client.create_group("Notes").await?;
    solo.sync().await?;
    assert_eq!(solo.client.members(own).await?.len(), 1);
    assert_eq!(failures(&mut solo), 0, "nothing reported as failed");
    Ok(())
}

/// Adding several users where one cannot be added (no enrolled device):
/// the others are added, and the failure is reported for that user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_devices_is_reported_and_the_rest_added() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let mut alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Doctor").await?;
    let ghost = uid("ghost@north-trust");
    relay
        .add_user("ghost@north-trust", "Ghost", "Locum")
        .await?;
    let group = alice.client.create_group("Mixed").await?;
    alice
        .client
        .add_members(group, vec![ghost.clone(), bob.user()])
        .await?;
    let ev = alice
        .wait_event("the failure for ghost", |e| {
            matches!(e, Event::OperationFailed { reason, .. } if reason.contains("ghost@north-trust"))
        })
        .await?;
    assert!(matches!(ev, Event::OperationFailed { group_id: Some(g), .. } if g == group));
    alice.sync().await?;
    bob.joined(group).await?;
    assert_eq!(
        alice.member_users(group).await?,
        vec![alice.user(), bob.user()]
    );
    Ok(())
}

/// Alice, Bob and Carol share "Night shift"; Carol is offline; Alice sent
/// `text` and Bob has confirmed it.
struct NightShift {
    alice: Peer,
    bob: Peer,
    carol: Peer,
    group: cascade_core::GroupId,
    id: cascade_core::MessageId,
}

async fn night_shift(relay: &Relay, text: &str) -> Result<NightShift> {
    relay.org("north-trust").await?;
    let alice = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let bob = relay
        .user("bob@north-trust", "Bob Singh", "Junior Doctor")
        .await?;
    let carol = relay
        .user("carol@north-trust", "Carol Hughes", "Porter")
        .await?;
    let group = alice
        .create_group_with("Night shift", &[&bob, &carol])
        .await?;
    carol.sync().await?;
    carol.client.pause()?;
    let id = alice.client.send_text(group, text).await?;
    bob.messages(group, 1).await?;
    bob.sync().await?; // Bob's receipt is out
    Ok(NightShift {
        alice,
        bob,
        carol,
        group,
        id,
    })
}

/// A message is "delivered" only when every other member's device has
/// confirmed it: Bob's receipt alone is not enough while Carol is offline;
/// hers, sent when she comes back, completes it. Receipts never show up
/// in anyone's history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_means_every_other_member_has_it() -> Result<()> {
    let relay = Relay::start().await?;
    let NightShift {
        mut alice,
        bob,
        carol,
        group,
        id,
    } = night_shift(&relay, "Bay 3 needs a porter").await?;
    // Bob answers after his receipt went out: once Alice reads his answer,
    // she has processed his receipt (she reads the conversation in order).
    bob.client.send_text(group, "on my way").await?;
    bob.sync().await?;
    alice
        .until("Bob's answer", || async {
            Ok(alice.texts(group).await?.last().map(String::as_str) == Some("on my way"))
        })
        .await?;
    let state = |p: &Peer| {
        let c = p.client.clone();
        async move {
            Ok::<_, anyhow::Error>(
                c.history(group, None, 10)
                    .await?
                    .into_iter()
                    .find(|m| m.id == id)
                    .map(|m| m.state),
            )
        }
    };
    assert_eq!(
        state(&alice).await?,
        Some(DeliveryState::Sent),
        "Carol has not got it"
    );

    carol.client.resume()?;
    carol.messages(group, 2).await?;
    alice
        .wait_event("delivered", |e| {
            matches!(e, Event::DeliveryState { message_id, state: DeliveryState::Delivered, .. } if *message_id == id)
        })
        .await?;
    assert_eq!(state(&alice).await?, Some(DeliveryState::Delivered));
    for p in [&alice, &bob, &carol] {
        p.sync().await?;
        assert_eq!(
            p.texts(group).await?,
            ["Bay 3 needs a porter", "on my way"],
            "receipts are not messages"
        );
    }
    Ok(())
}

/// A member who leaves without confirming no longer holds a message back
/// from "delivered"; someone added later is not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_waits_only_for_those_who_were_there() -> Result<()> {
    let relay = Relay::start().await?;
    let NightShift {
        mut alice,
        bob: _bob,
        carol,
        group,
        id,
    } = night_shift(&relay, "Pharmacy closes at 22:00").await?;
    let dave = relay
        .user("dave@north-trust", "Dave Evans", "Pharmacist")
        .await?;
    // Dave joins after the message was sent: he cannot read it, so he is
    // not waited for.
    alice.client.add_members(group, vec![dave.user()]).await?;
    dave.joined(group).await?;
    alice.sync().await?;
    alice
        .client
        .remove_members(group, vec![carol.user()])
        .await?;
    alice
        .wait_event("delivered once Carol is gone", |e| {
            matches!(e, Event::DeliveryState { message_id, state: DeliveryState::Delivered, .. } if *message_id == id)
        })
        .await?;
    Ok(())
}

/// A user's new device joins the conversations the user is already in, by
/// external commit: it learns the name from the user's other device, reads
/// what is sent from then on, and its messages reach everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_joins_its_users_conversations() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let phone = relay
        .user("alice@north-trust", "Alice Okafor", "Ward Sister")
        .await?;
    let bob = relay
        .user("bob@north-trust", "Bob Singh", "Junior Doctor")
        .await?;
    let group = phone.create_group_with("Ward 7", &[&bob]).await?;
    phone.client.send_text(group, "before the desktop").await?;
    bob.messages(group, 1).await?;

    let desktop = relay.device("alice@north-trust", "desktop").await?;
    desktop.joined(group).await?;
    desktop
        .until("the name from Alice's phone", || async {
            Ok(desktop.client.conversation(group).await?.name == "Ward 7")
        })
        .await?;
    assert!(
        desktop.texts(group).await?.is_empty(),
        "earlier messages stay unreadable to the new device"
    );

    bob.client.send_text(group, "hello both devices").await?;
    desktop.messages(group, 1).await?;
    phone.messages(group, 2).await?;
    desktop.client.send_text(group, "from the desktop").await?;
    bob.messages(group, 3).await?;
    phone.messages(group, 3).await?;
    assert_eq!(
        bob.texts(group).await?,
        [
            "before the desktop",
            "hello both devices",
            "from the desktop"
        ]
    );
    for p in [&phone, &bob, &desktop] {
        p.sync().await?;
    }
    let e = phone.client.epoch(group).await?;
    assert_eq!(bob.client.epoch(group).await?, e);
    assert_eq!(desktop.client.epoch(group).await?, e);
    assert_eq!(
        bob.client.members(group).await?.len(),
        3,
        "two devices of Alice's and Bob's"
    );
    Ok(())
}

/// The last member to leave a conversation closes it at the relay: nobody
/// is left to commit the removal, and a new device of the same person must
/// not find it and join it again (found by the `groups` fuzz target; its
/// input is in `fuzz/corpus/groups/`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_member_to_leave_closes_the_conversation() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let notes = alice.client.create_group("Notes").await?;
    let kept = alice.client.create_group("Kept").await?;
    alice.sync().await?;

    alice.client.leave(notes).await?;
    alice
        .until("leaving", || async {
            Ok(alice.client.conversation(notes).await?.state
                == cascade_core::ConversationState::Left)
        })
        .await?;
    alice.sync().await?;

    // Alice's new tablet joins what she is still in, not what she left.
    let tablet = relay.device("alice@north-trust", "tablet").await?;
    tablet.joined(kept).await?;
    tablet.sync().await?;
    assert!(
        tablet.client.conversation(notes).await.is_err(),
        "the closed conversation is not joined"
    );
    Ok(())
}
