//! The device WebSocket, driven with raw frames against an in-process relay.

mod common;

use std::time::Duration;

use cascade_protocol::frames::{
    ItemKind, Notice, Push, Request, Response, ServerFrame, StopReason,
};
use cascade_protocol::limits::{
    KEY_PACKAGE_LOW_WATER, MAX_FRAME_BYTES, MAX_KEY_PACKAGE_UPLOAD, MAX_QUEUE_LEN, PROTOCOL_VERSION,
};
use cascade_protocol::{limits, DeviceId, GroupId, ProtocolError, UserId};
use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

fn malformed(e: &Result<Response, ProtocolError>) -> bool {
    matches!(e, Err(ProtocolError::Malformed { .. }))
}

#[tokio::test]
async fn requests_before_authentication_are_refused_and_the_connection_carries_on() {
    let relay = start().await;
    let alice = relay.device_uncertified("alice@north");
    let mut client = Client::connect(&relay.server.ws_url()).await;
    let answer = client
        .request(Request::GetUser {
            user_id: alice.user_id.clone(),
        })
        .await;
    assert_eq!(answer, Err(ProtocolError::Unauthenticated));
    assert_eq!(
        client.request(Request::Ping).await,
        Err(ProtocolError::Unauthenticated)
    );

    let answer = client.authenticate(&alice).await;
    assert_eq!(
        answer,
        Ok(Response::Authenticated {
            user_id: alice.user_id.clone(),
            key_package_stock: 0,
            has_last_resort: false,
            certificate: None,
        })
    );
    assert_eq!(client.push().await, Push::QueueDrained);
    assert_eq!(client.push().await, Push::KeyPackagesLow { stock: 0 });
    assert_eq!(client.request(Request::Ping).await, Ok(Response::Pong));
    assert!(malformed(&client.authenticate(&alice).await), "only once");
    assert_eq!(client.request(Request::Ping).await, Ok(Response::Pong));
}

#[tokio::test]
async fn a_bad_signature_fails_authentication_and_closes() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let mallory = relay.device("mallory@north");

    // Alice's id, Mallory's key.
    let mut client = Client::connect(&relay.server.ws_url()).await;
    let impostor = TestDevice {
        key: mallory.key.clone(),
        ..alice.clone()
    };
    assert_eq!(
        client.authenticate(&impostor).await,
        Err(ProtocolError::AuthenticationFailed)
    );
    assert_eq!(client.closed().await, Some(1008));

    // A signature over another connection's nonce.
    let mut first = Client::connect(&relay.server.ws_url()).await;
    let mut second = Client::connect(&relay.server.ws_url()).await;
    second.nonce = first.nonce.clone();
    assert_eq!(
        second.authenticate(&alice).await,
        Err(ProtocolError::AuthenticationFailed)
    );
    assert!(matches!(
        first.authenticate(&alice).await,
        Ok(Response::Authenticated { .. })
    ));

    // Unknown and revoked devices.
    let mut client = Client::connect(&relay.server.ws_url()).await;
    let unknown = TestDevice {
        device_id: DeviceId([7; 16]),
        ..alice.clone()
    };
    assert_eq!(
        client.authenticate(&unknown).await,
        Err(ProtocolError::AuthenticationFailed)
    );
    relay
        .server
        .state()
        .store()
        .revoke_device(&mallory.device_id)
        .expect("revoke");
    let mut client = Client::connect(&relay.server.ws_url()).await;
    assert_eq!(
        client.authenticate(&mallory).await,
        Err(ProtocolError::AuthenticationFailed)
    );
    assert_eq!(client.closed().await, Some(1008));
}

#[tokio::test]
async fn malformed_frames_are_rejected_and_the_connection_carries_on() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let (mut client, _) = relay.online(&alice).await;
    let _low = client.push().await;

    client.send_raw(vec![0xff, 0x00, 0x13]).await;
    assert!(matches!(
        client.frame().await,
        ServerFrame::Rejected(ProtocolError::Malformed { .. })
    ));

    // A readable envelope with a body of the wrong shape is answered by id.
    let mut bytes = Vec::new();
    let bad = serde_json::json!({"v": PROTOCOL_VERSION, "id": 42, "req": {"Nonsense": 1}});
    ciborium::into_writer(&bad, &mut bytes).expect("cbor");
    client.send_raw(bytes).await;
    assert!(malformed(&client.response(42).await));

    client
        .ws
        .send(Message::Text("{\"hello\": 1}".into()))
        .await
        .expect("send text");
    assert!(matches!(
        client.frame().await,
        ServerFrame::Rejected(ProtocolError::Malformed { .. })
    ));

    // An MLS message that does not parse.
    let group = GroupId([1; 16]);
    let answer = client
        .request(Request::CreateGroup {
            group_id: group,
            group_info: cascade_protocol::frames::Bytes::from(vec![1, 2, 3]),
        })
        .await;
    assert!(malformed(&answer));
    assert_eq!(client.request(Request::Ping).await, Ok(Response::Pong));
}

#[tokio::test]
async fn an_oversized_frame_is_rejected_and_the_connection_carries_on() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let (mut client, _) = relay.online(&alice).await;
    let _low = client.push().await;
    client.send_raw(vec![0u8; MAX_FRAME_BYTES + 1]).await;
    assert_eq!(
        client.frame().await,
        ServerFrame::Rejected(ProtocolError::TooLarge {
            limit: MAX_FRAME_BYTES as u64
        })
    );
    assert_eq!(client.request(Request::Ping).await, Ok(Response::Pong));
}

#[tokio::test]
async fn only_members_post_and_the_sender_gets_no_copy() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let eve = relay.device("eve@south");
    let (mut a, _) = relay.online(&alice).await;
    let (mut b, _) = relay.online(&bob).await;
    let (mut e, _) = relay.online(&eve).await;
    let group = GroupId([1; 16]);
    a.create_group(group).await;
    assert_eq!(
        a.commit(bundle(group, 0, &[&bob], &[])).await,
        Ok(Response::CommitAccepted { epoch: 1, seq: 1 })
    );
    let _low = a.push().await;
    let echo = a.delivery().await;
    assert_eq!(
        (echo.kind, echo.seq, echo.sender),
        (ItemKind::Commit, 1, alice.device_id)
    );
    let _low = b.push().await;
    let welcome = b.delivery().await;
    assert_eq!((welcome.kind, welcome.seq), (ItemKind::Welcome, 1));

    let _low = e.push().await;
    assert_eq!(
        e.send_message(group, 1, b"let me in").await,
        Err(ProtocolError::NotMember)
    );
    assert_eq!(
        e.request(Request::GetGroupInfo { group_id: group }).await,
        Err(ProtocolError::NotMember)
    );
    assert_eq!(
        e.send_message(GroupId([9; 16]), 0, b"x").await,
        Err(ProtocolError::UnknownGroup)
    );
    // The header must say application message of this group.
    let wrong_group = private_message(GroupId([2; 16]), 1, b"x");
    assert!(malformed(
        &a.request(Request::SendMessage {
            group_id: group,
            message: wrong_group,
            to: vec![],
        })
        .await
    ));
    let commit_as_message = commit_message(group, 1);
    assert!(malformed(
        &a.request(Request::SendMessage {
            group_id: group,
            message: commit_as_message,
            to: vec![],
        })
        .await
    ));

    assert_eq!(
        a.send_message(group, 1, b"hello bob").await,
        Ok(Response::MessageAccepted { seq: 2 })
    );
    let item = b.delivery().await;
    assert_eq!(
        (item.kind, item.seq, item.sender),
        (ItemKind::Application, 2, alice.device_id)
    );
    assert_eq!(item.payload, private_message(group, 1, b"hello bob"));
    // Nothing was queued for the sender (beyond its commit's echo) or the
    // outsider: decided when the message was accepted. And nothing arrives
    // live either.
    let store = relay.server.state().store();
    assert_eq!(store.queue_len(&alice.device_id).expect("len"), 1);
    assert_eq!(store.queue_len(&eve.device_id).expect("len"), 0);
    a.assert_quiet().await;
    e.assert_quiet().await;
}

/// A message addressed to some users reaches their member devices alone,
/// live and from the backlog: a read report for a sender and the reader's
/// other device. A proposal must go to everyone, and the list is bounded.
#[tokio::test]
async fn a_message_to_some_users_reaches_only_their_devices() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let alice_phone = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let carol = relay.device("carol@north");
    let (mut a, _) = relay.online(&alice).await;
    let (mut c, _) = relay.online(&carol).await;
    let group = GroupId([3; 16]);
    a.create_group(group).await;
    a.commit(bundle(group, 0, &[&alice_phone, &bob, &carol], &[]))
        .await
        .expect("add");
    let _low = a.push().await;
    let _echo = a.delivery().await;
    let _low = c.push().await;
    let _welcome = c.delivery().await;
    let (mut b, _) = relay.online(&bob).await;
    assert_eq!(b.push().await, Push::KeyPackagesLow { stock: 0 });
    let to = vec![bob.user_id.clone(), alice.user_id.clone()];
    assert_eq!(
        a.request(Request::SendMessage {
            group_id: group,
            message: private_message(group, 1, b"read up to 7"),
            to: to.clone(),
        })
        .await,
        Ok(Response::MessageAccepted { seq: 2 })
    );
    assert_eq!(
        a.send_message(group, 1, b"for everyone").await,
        Ok(Response::MessageAccepted { seq: 3 })
    );
    // Bob, live, gets both, the first marked as addressed to some.
    let live: Vec<(u64, bool)> = [b.delivery().await, b.delivery().await]
        .iter()
        .map(|i| (i.seq, i.addressed))
        .collect();
    assert_eq!(live, vec![(2, true), (3, false)]);
    drop(b);
    // Carol, live, gets only the message for everyone.
    let item = c.delivery().await;
    assert_eq!((item.seq, item.addressed), (3, false));
    c.assert_quiet().await;
    drop(c);
    // Bob and Alice's phone, from their backlog, get both.
    for device in [&bob, &alice_phone] {
        let (_client, backlog) = relay.online(device).await;
        let seqs: Vec<u64> = backlog.iter().map(|i| i.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3], "{}", device.user_id);
        assert_eq!(
            backlog[1].payload,
            private_message(group, 1, b"read up to 7")
        );
        assert!(backlog[1].addressed && !backlog[2].addressed);
    }
    let (_carol_again, backlog) = relay.online(&carol).await;
    let seqs: Vec<u64> = backlog.iter().map(|i| i.seq).collect();
    assert_eq!(seqs, vec![1, 3]);

    // A request to leave is for every member.
    assert!(malformed(
        &a.request(Request::SendMessage {
            group_id: group,
            message: proposal_message(group, 1),
            to: to.clone(),
        })
        .await
    ));
    let many: Vec<UserId> = (0..=limits::MAX_TARGET_USERS)
        .map(|i| UserId::new(format!("u{i}@north")).expect("valid"))
        .collect();
    assert_eq!(
        a.request(Request::SendMessage {
            group_id: group,
            message: private_message(group, 1, b"x"),
            to: many,
        })
        .await,
        Err(ProtocolError::TooLarge {
            limit: limits::MAX_TARGET_USERS as u64
        })
    );
    a.assert_quiet().await;
}

#[tokio::test]
async fn a_commit_at_a_stale_epoch_gets_wrong_epoch() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let (mut a, _) = relay.online(&alice).await;
    let group = GroupId([1; 16]);
    a.create_group(group).await;
    assert_eq!(
        a.commit(bundle(group, 0, &[&bob], &[])).await,
        Ok(Response::CommitAccepted { epoch: 1, seq: 1 })
    );
    assert_eq!(
        a.commit(bundle(group, 0, &[], &[])).await,
        Err(ProtocolError::WrongEpoch { current: 1 })
    );
    // The bundle's epoch must match the commit's header.
    let mut mismatched = bundle(group, 1, &[], &[]);
    mismatched.commit = commit_message(group, 0);
    assert!(malformed(&a.commit(mismatched).await));
    // A Welcome exactly when devices are added.
    let mut no_welcome = bundle(group, 1, &[], &[]);
    no_welcome.added = vec![relay.device("carol@north").device_id];
    assert!(malformed(&a.commit(no_welcome).await));
    let mut unknown = bundle(group, 1, &[], &[]);
    unknown.added = vec![DeviceId([5; 16])];
    unknown.welcome = Some(welcome());
    assert_eq!(a.commit(unknown).await, Err(ProtocolError::UnknownDevice));
    assert_eq!(
        a.commit(bundle(group, 1, &[], &[&bob])).await,
        Ok(Response::CommitAccepted { epoch: 2, seq: 2 })
    );
    assert_eq!(
        a.commit(bundle(GroupId([3; 16]), 0, &[], &[])).await,
        Err(ProtocolError::UnknownGroup)
    );
}

#[tokio::test]
async fn of_two_concurrent_commits_for_one_epoch_exactly_one_is_accepted() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let (mut a, _) = relay.online(&alice).await;
    let (mut b, _) = relay.online(&bob).await;
    let group = GroupId([1; 16]);
    a.create_group(group).await;
    a.commit(bundle(group, 0, &[&bob], &[]))
        .await
        .expect("add bob");

    for round in 1..=5u64 {
        let epoch = round;
        let id_a = a
            .send(Request::Commit(bundle(group, epoch, &[], &[])))
            .await;
        let id_b = b
            .send(Request::Commit(bundle(group, epoch, &[], &[])))
            .await;
        let (ra, rb) = tokio::join!(a.response(id_a), b.response(id_b));
        let accepted = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Ok(Response::CommitAccepted { .. })))
            .count();
        assert_eq!(accepted, 1, "round {round}: {ra:?} {rb:?}");
        let loser = if ra.is_ok() { rb } else { ra };
        assert_eq!(loser, Err(ProtocolError::WrongEpoch { current: epoch + 1 }));
    }
    let group_state = relay
        .server
        .state()
        .store()
        .get_group(&group)
        .expect("read")
        .expect("exists");
    assert_eq!(group_state.epoch, 6);
}

#[tokio::test]
async fn a_removed_device_can_no_longer_post_commit_or_read_and_gets_nothing_more() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let carol = relay.device("carol@north");
    let (mut a, _) = relay.online(&alice).await;
    let group = GroupId([1; 16]);
    a.create_group(group).await;
    a.commit(bundle(group, 0, &[&bob, &carol], &[]))
        .await
        .expect("add bob and carol");
    let (mut b, backlog) = relay.online(&bob).await;
    assert_eq!(
        backlog.iter().map(|i| (i.kind, i.seq)).collect::<Vec<_>>(),
        vec![(ItemKind::Welcome, 1)]
    );
    b.ack(backlog.iter().map(|i| i.queue_id).collect()).await;

    // Bob is removed; he learns of it (the commit is queued for him too).
    assert_eq!(
        a.commit(bundle(group, 1, &[], &[&bob])).await,
        Ok(Response::CommitAccepted { epoch: 2, seq: 2 })
    );
    let _low = b.push().await;
    let removal = b.delivery().await;
    assert_eq!((removal.kind, removal.seq), (ItemKind::Commit, 2));
    b.ack(vec![removal.queue_id]).await;

    // From now on he is not a member: he cannot post, commit (at the
    // group's current epoch) or read the GroupInfo.
    assert_eq!(
        b.send_message(group, 2, b"still here?").await,
        Err(ProtocolError::NotMember)
    );
    assert_eq!(
        b.commit(bundle(group, 2, &[], &[])).await,
        Err(ProtocolError::NotMember)
    );
    assert_eq!(
        b.request(Request::GetGroupInfo { group_id: group }).await,
        Err(ProtocolError::NotMember)
    );
    assert_eq!(
        b.request(Request::ListGroups).await,
        Ok(Response::Groups { group_ids: vec![] })
    );

    // Nothing that follows is queued for him: not a message, not a commit.
    assert_eq!(
        a.send_message(group, 2, b"after bob left").await,
        Ok(Response::MessageAccepted { seq: 3 })
    );
    assert_eq!(
        a.commit(bundle(group, 2, &[], &[])).await,
        Ok(Response::CommitAccepted { epoch: 3, seq: 4 })
    );
    let (_c, backlog) = relay.online(&carol).await;
    assert_eq!(
        backlog.iter().map(|i| i.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4],
        "carol, still a member, has everything"
    );
    drop(b);
    let (_b, backlog) = relay.online(&bob).await;
    assert_eq!(backlog, vec![], "nothing was queued for bob");
    assert_eq!(
        relay
            .server
            .state()
            .store()
            .queue_len(&bob.device_id)
            .expect("len"),
        0
    );
}

#[tokio::test]
async fn messages_queued_while_offline_are_drained_in_order_then_acked() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let (mut a, _) = relay.online(&alice).await;
    let group = GroupId([1; 16]);
    a.create_group(group).await;
    a.commit(bundle(group, 0, &[&bob], &[]))
        .await
        .expect("add bob");
    for i in 0..5u8 {
        assert_eq!(
            a.send_message(group, 1, &[i]).await,
            Ok(Response::MessageAccepted {
                seq: 2 + u64::from(i)
            })
        );
    }

    let (mut b, backlog) = relay.online(&bob).await;
    let seen: Vec<(ItemKind, u64)> = backlog.iter().map(|i| (i.kind, i.seq)).collect();
    assert_eq!(
        seen,
        vec![
            (ItemKind::Welcome, 1),
            (ItemKind::Application, 2),
            (ItemKind::Application, 3),
            (ItemKind::Application, 4),
            (ItemKind::Application, 5),
            (ItemKind::Application, 6),
        ]
    );
    assert_eq!(backlog[1].payload, private_message(group, 1, &[0]));
    assert!(backlog.windows(2).all(|w| w[0].queue_id < w[1].queue_id));
    assert_eq!(b.push().await, Push::KeyPackagesLow { stock: 0 });

    // Live items follow; acked items are gone on the next connection.
    assert_eq!(
        a.send_message(group, 1, b"live").await,
        Ok(Response::MessageAccepted { seq: 7 })
    );
    let live = b.delivery().await;
    assert_eq!(live.seq, 7);
    b.ack(backlog[..4].iter().map(|i| i.queue_id).collect())
        .await;
    drop(b);

    let (_b, backlog2) = relay.online(&bob).await;
    let seqs: Vec<u64> = backlog2.iter().map(|i| i.seq).collect();
    assert_eq!(seqs, vec![5, 6, 7]);
    assert_eq!(
        relay
            .server
            .state()
            .store()
            .queue_len(&bob.device_id)
            .expect("len"),
        3
    );
}

#[tokio::test]
async fn a_newer_connection_of_a_device_replaces_the_older() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let (mut old, _) = relay.online(&bob).await;
    let (mut new, _) = relay.online(&bob).await;
    assert_eq!(old.push().await, Push::KeyPackagesLow { stock: 0 });
    assert_eq!(old.closed().await, Some(1008));
    let _low = new.push().await;

    let (mut a, _) = relay.online(&alice).await;
    let group = GroupId([1; 16]);
    a.create_group(group).await;
    a.commit(bundle(group, 0, &[&bob], &[]))
        .await
        .expect("add bob");
    assert_eq!(new.delivery().await.kind, ItemKind::Welcome);
}

#[tokio::test]
async fn key_packages_are_claimed_one_per_device_and_low_stock_is_pushed() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob_phone = relay.device("bob@north");
    let bob_desk = relay.device("bob@north");
    let (mut a, _) = relay.online(&alice).await;
    let (mut phone, _) = relay.online(&bob_phone).await;
    assert_eq!(phone.push().await, Push::KeyPackagesLow { stock: 0 });

    let packages: Vec<_> = (0..=KEY_PACKAGE_LOW_WATER as u8).map(key_package).collect();
    assert_eq!(
        phone
            .request(Request::UploadKeyPackages {
                key_packages: packages.clone(),
                last_resort: Some(key_package(99)),
            })
            .await,
        Ok(Response::KeyPackagesStored {
            stock: KEY_PACKAGE_LOW_WATER + 1
        })
    );
    // Invalid uploads store nothing.
    let not_a_kp = vec![welcome()];
    assert!(malformed(
        &phone
            .request(Request::UploadKeyPackages {
                key_packages: not_a_kp,
                last_resort: None
            })
            .await
    ));
    let too_many = vec![key_package(1); MAX_KEY_PACKAGE_UPLOAD + 1];
    assert_eq!(
        phone
            .request(Request::UploadKeyPackages {
                key_packages: too_many,
                last_resort: None
            })
            .await,
        Err(ProtocolError::TooLarge {
            limit: MAX_KEY_PACKAGE_UPLOAD as u64
        })
    );

    let _low = a.push().await;
    let claim = Request::ClaimKeyPackages {
        user_id: bob_phone.user_id.clone(),
    };
    let Ok(Response::KeyPackages { devices }) = a.request(claim.clone()).await else {
        panic!("expected KeyPackages");
    };
    assert_eq!(devices.len(), 1, "bob's desk has none and is skipped");
    assert_eq!(devices[0].device_id, bob_phone.device_id);
    assert_eq!(devices[0].key_package, packages[0]);
    assert_eq!(
        phone.push().await,
        Push::KeyPackagesLow {
            stock: KEY_PACKAGE_LOW_WATER
        }
    );

    // Drain the single-use stock; then the last resort, again and again.
    for expected in &packages[1..] {
        let Ok(Response::KeyPackages { devices }) = a.request(claim.clone()).await else {
            panic!("expected KeyPackages");
        };
        assert_eq!(&devices[0].key_package, expected);
        let _low = phone.push().await;
    }
    for _ in 0..2 {
        let Ok(Response::KeyPackages { devices }) = a.request(claim.clone()).await else {
            panic!("expected KeyPackages");
        };
        assert_eq!(devices[0].key_package, key_package(99));
        assert_eq!(phone.push().await, Push::KeyPackagesLow { stock: 0 });
    }

    // A device never claims its own KeyPackage; a user without any has none.
    let (mut desk, _) = relay.online(&bob_desk).await;
    let _low = desk.push().await;
    let Ok(Response::KeyPackages { devices }) = desk.request(claim.clone()).await else {
        panic!("expected KeyPackages");
    };
    assert_eq!(devices[0].device_id, bob_phone.device_id);
    assert_eq!(
        phone
            .request(Request::ClaimKeyPackages {
                user_id: alice.user_id.clone()
            })
            .await,
        Err(ProtocolError::NoKeyPackages)
    );
    assert_eq!(
        a.request(Request::ClaimKeyPackages {
            user_id: cascade_protocol::UserId::new("nobody@north").expect("valid"),
        })
        .await,
        Err(ProtocolError::UnknownUser)
    );
}

#[tokio::test]
async fn a_new_device_joins_by_external_commit() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let alice_tablet = relay.device("alice@north");
    let (mut a, _) = relay.online(&alice).await;
    let (mut b, _) = relay.online(&bob).await;
    let group = GroupId([1; 16]);
    a.create_group(group).await;
    a.commit(bundle(group, 0, &[&bob], &[]))
        .await
        .expect("add bob");

    let (mut t, _) = relay.online(&alice_tablet).await;
    // The tablet learns which groups its user is in; Bob's other groups and
    // other users' groups are not listed.
    let other = GroupId([2; 16]);
    b.create_group(other).await;
    assert_eq!(
        t.request(Request::ListGroups).await,
        Ok(Response::Groups {
            group_ids: vec![group]
        })
    );
    assert_eq!(
        b.request(Request::ListGroups).await,
        Ok(Response::Groups {
            group_ids: vec![group, other]
        })
    );
    let Ok(Response::GroupInfo {
        epoch,
        group_info: info,
    }) = t.request(Request::GetGroupInfo { group_id: group }).await
    else {
        panic!("expected the GroupInfo");
    };
    assert_eq!((epoch, info), (1, group_info()));

    let external = cascade_protocol::frames::CommitBundle {
        group_id: group,
        epoch: 1,
        commit: external_commit_message(group, 1),
        welcome: None,
        group_info: group_info(),
        added: vec![alice_tablet.device_id],
        removed: vec![],
    };
    assert_eq!(
        t.commit(external.clone()).await,
        Ok(Response::CommitAccepted { epoch: 2, seq: 2 })
    );
    let _low = t.push().await;
    let echo = t.delivery().await;
    assert_eq!((echo.kind, echo.seq), (ItemKind::Commit, 2));
    let _ = a.push().await; // low stock
    assert_eq!(a.delivery().await.kind, ItemKind::Commit); // bob's add
    assert_eq!(a.delivery().await.seq, 2);
    let _ = b.push().await; // low stock
    assert_eq!(b.delivery().await.kind, ItemKind::Welcome);
    assert_eq!(b.delivery().await.seq, 2);

    // Someone with no device in the group cannot join this way.
    let eve = relay.device("eve@south");
    let (mut e, _) = relay.online(&eve).await;
    let mut by_eve = external;
    by_eve.epoch = 2;
    by_eve.commit = external_commit_message(group, 2);
    by_eve.added = vec![eve.device_id];
    assert_eq!(e.commit(by_eve).await, Err(ProtocolError::NotMember));
    assert_eq!(
        t.send_message(group, 2, b"from the tablet").await,
        Ok(Response::MessageAccepted { seq: 3 })
    );
}

/// A member device that fell out of step rejoins by external commit: the
/// relay sequences it like any commit and keeps the roster as it is; a
/// rejoin that removes anyone is refused.
#[tokio::test]
async fn a_member_rejoins_by_external_commit_keeping_its_place() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let (mut a, _) = relay.online(&alice).await;
    let (mut b, _) = relay.online(&bob).await;
    let group = GroupId([3; 16]);
    a.create_group(group).await;
    a.commit(bundle(group, 0, &[&bob], &[]))
        .await
        .expect("add bob");
    let rejoin = cascade_protocol::frames::CommitBundle {
        group_id: group,
        epoch: 1,
        commit: external_commit_message(group, 1),
        welcome: None,
        group_info: group_info(),
        added: vec![bob.device_id],
        removed: vec![alice.device_id],
    };
    assert!(matches!(
        b.commit(rejoin.clone()).await,
        Err(ProtocolError::Malformed { .. })
    ));
    let rejoin = cascade_protocol::frames::CommitBundle {
        removed: vec![],
        ..rejoin
    };
    assert_eq!(
        b.commit(rejoin).await,
        Ok(Response::CommitAccepted { epoch: 2, seq: 2 })
    );
    // Bob is still a member: he posts, and Alice gets his commit and post.
    assert_eq!(
        b.send_message(group, 2, b"back in step").await,
        Ok(Response::MessageAccepted { seq: 3 })
    );
    let _ = a.push().await; // low stock
    assert_eq!(a.delivery().await.kind, ItemKind::Commit); // bob's add
    let rejoined = a.delivery().await;
    assert_eq!((rejoined.kind, rejoined.seq), (ItemKind::Commit, 2));
    assert_eq!(a.delivery().await.seq, 3);
}

/// A message must be readable by every member: encrypted in the group's
/// epoch or at most `MAX_MESSAGE_EPOCH_LAG` before it, never after.
#[tokio::test]
async fn messages_from_too_old_or_future_epochs_are_refused() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let (mut a, _) = relay.online(&alice).await;
    let group = GroupId([4; 16]);
    a.create_group(group).await;
    let lag = cascade_protocol::limits::MAX_MESSAGE_EPOCH_LAG;
    for epoch in 0..lag + 2 {
        a.commit(bundle(group, epoch, &[], &[]))
            .await
            .expect("self-update");
    }
    let now = lag + 2;
    assert_eq!(
        a.send_message(group, 1, b"too old").await,
        Err(ProtocolError::WrongEpoch { current: now })
    );
    assert_eq!(
        a.send_message(group, now + 1, b"from the future").await,
        Err(ProtocolError::WrongEpoch { current: now })
    );
    assert!(matches!(
        a.send_message(group, now - lag, b"late but readable").await,
        Ok(Response::MessageAccepted { .. })
    ));
    assert!(matches!(
        a.send_message(group, now, b"current").await,
        Ok(Response::MessageAccepted { .. })
    ));
    // Bob joins at the next epoch: a message from the epoch before, which
    // he has no secrets of, is refused even though it is recent.
    let bob = relay.device("bob@north");
    a.commit(bundle(group, now, &[&bob], &[]))
        .await
        .expect("add bob");
    assert_eq!(
        a.send_message(group, now, b"before bob joined").await,
        Err(ProtocolError::WrongEpoch { current: now + 1 })
    );
    assert!(matches!(
        a.send_message(group, now + 1, b"bob reads this").await,
        Ok(Response::MessageAccepted { .. })
    ));
}

#[tokio::test]
async fn shutdown_closes_connections_and_returns() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let (mut a, _) = relay.online(&alice).await;
    let _low = a.push().await;
    let common::Relay { server, dir, .. } = relay;
    let stopping = tokio::spawn(server.shutdown());
    assert_eq!(a.closed().await, Some(1001));
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("stops within the grace period")
        .expect("task")
        .expect("clean shutdown");
    drop(dir);
}

/// Many senders in one group at once: their writes share flushes and the
/// group's lock is not held through them, yet a member who only listens
/// gets every accepted message once, live, in `seq` order, and each
/// sender's answers carry the `seq` the listener saw for its message.
#[tokio::test]
async fn concurrent_senders_in_one_group_are_delivered_live_in_seq_order() {
    const SENDERS: usize = 6;
    const EACH: u8 = 25;
    let relay = start().await;
    let listener = relay.device("listener@north");
    let senders: Vec<TestDevice> = (0..SENDERS)
        .map(|i| relay.device(&format!("sender{i}@north")))
        .collect();
    let group = GroupId([7; 16]);
    let (mut owner, _) = relay.online(&senders[0]).await;
    owner.create_group(group).await;
    let others: Vec<&TestDevice> = senders[1..].iter().chain([&listener]).collect();
    owner
        .commit(bundle(group, 0, &others, &[]))
        .await
        .expect("add everyone");
    drop(owner);
    let (mut listen, backlog) = relay.online(&listener).await;
    assert_eq!(backlog.len(), 1, "the Welcome");

    let mut tasks = Vec::new();
    for (i, device) in senders.iter().enumerate() {
        let (mut client, _) = relay.online(device).await;
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for n in 0..EACH {
                match client.send_message(group, 1, &[i as u8, n]).await {
                    Ok(Response::MessageAccepted { seq }) => accepted.push((seq, [i as u8, n])),
                    other => panic!("send refused: {other:?}"),
                }
            }
            accepted
        }));
    }
    let mut expected = std::collections::BTreeMap::new();
    for t in tasks {
        for (seq, body) in t.await.expect("sender") {
            assert!(
                expected.insert(seq, body).is_none(),
                "seq {seq} given twice"
            );
        }
    }
    let mut seen = Vec::new();
    while seen.len() < SENDERS * usize::from(EACH) {
        match listen.push().await {
            Push::Deliver(item) => seen.push(item),
            Push::KeyPackagesLow { .. } => {}
            other => panic!("unexpected push {other:?}"),
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0].seq < w[1].seq),
        "live items arrive in seq order: {:?}",
        seen.iter().map(|i| i.seq).collect::<Vec<_>>()
    );
    for item in &seen {
        let body = expected.get(&item.seq).expect("an accepted seq");
        assert_eq!(item.payload, private_message(group, 1, body));
    }
    listen.assert_quiet().await;
}

/// A device that pipelines its messages (sends many without waiting) gets
/// them sequenced in the order it sent them, sharing flushes, and every
/// answer in request order; a read sent behind them is answered after them and sees their
/// effect; a refused write in the middle changes nothing for the others.
#[tokio::test]
async fn pipelined_writes_keep_their_order_and_answers_come_in_request_order() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let group = GroupId([9; 16]);
    let (mut a, _) = relay.online(&alice).await;
    a.create_group(group).await;
    a.commit(bundle(group, 0, &[&bob], &[]))
        .await
        .expect("add bob");
    let (mut b, backlog) = relay.online(&bob).await;
    assert_eq!(backlog.len(), 1, "the Welcome");

    let flushes_before = relay.server.state().flush_count();
    let mut ids = Vec::new();
    for n in 0..40u8 {
        let message = if n == 20 {
            // From an epoch that does not exist: refused.
            private_message(group, 7, &[n])
        } else {
            private_message(group, 1, &[n])
        };
        ids.push(
            a.send(Request::SendMessage {
                group_id: group,
                message,
                to: vec![],
            })
            .await,
        );
    }
    let info = a.send(Request::GetGroupInfo { group_id: group }).await;
    let mut seqs = Vec::new();
    for (n, id) in ids.into_iter().enumerate() {
        match a.response(id).await {
            Ok(Response::MessageAccepted { seq }) => seqs.push(seq),
            Err(ProtocolError::WrongEpoch { current: 1 }) => assert_eq!(n, 20),
            other => panic!("message {n}: {other:?}"),
        }
    }
    assert_eq!(
        seqs,
        (2..41).collect::<Vec<u64>>(),
        "sequenced in sending order"
    );
    let flushes = relay.server.state().flush_count() - flushes_before;
    assert!(
        flushes < 39,
        "pipelined messages share flushes: {flushes} for 39 messages"
    );
    assert!(matches!(
        a.response(info).await,
        Ok(Response::GroupInfo { epoch: 1, .. })
    ));

    let mut received = Vec::new();
    while received.len() < 39 {
        match b.push().await {
            Push::Deliver(item) => received.push(item.payload),
            Push::KeyPackagesLow { .. } => {}
            other => panic!("unexpected push {other:?}"),
        }
    }
    let expected: Vec<_> = (0..40u8)
        .filter(|n| *n != 20)
        .map(|n| private_message(group, 1, &[n]))
        .collect();
    assert_eq!(
        received, expected,
        "bob reads them in the order alice wrote"
    );
}

/// Issue 11's freeze attack, as an attacker would run it: a device of an
/// organisation adds an offline victim to a group of its own and floods it.
/// An organisation the victim's does not trust cannot add it at all; a
/// trusted partner turned hostile can, and then nothing stops: when the
/// victim falls `MAX_QUEUE_LEN` behind, the relay stops delivering that
/// group to it with a notice every member sees, and takes the flood on. The
/// victim's queue holds its own conversation and the notice, not the flood;
/// its conversation with a colleague goes on; it comes back into the spam
/// group only by rejoining.
#[tokio::test]
async fn a_device_flooded_in_one_group_is_dropped_from_it_and_nothing_stops() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let victim = relay.device("victim@north");
    let mallory = relay.device("mallory@hostile");
    let ward = GroupId([1; 16]);
    let spam = GroupId([2; 16]);
    let (mut a, _) = relay.online(&alice).await;
    a.create_group(ward).await;
    a.commit(bundle(ward, 0, &[&victim], &[]))
        .await
        .expect("alice adds the victim");
    let (mut m, _) = relay.online(&mallory).await;
    m.create_group(spam).await;
    assert_eq!(
        m.commit(bundle(spam, 0, &[&victim], &[])).await,
        Err(ProtocolError::UnknownDevice),
        "north does not pin hostile"
    );
    relay.trust("north", "hostile");
    m.commit(bundle(spam, 0, &[&victim], &[]))
        .await
        .expect("a trusted partner adds the victim");
    // Mallory reads its own echo, as any client does.
    loop {
        match m.push().await {
            Push::Deliver(echo) => {
                m.ack(vec![echo.queue_id]).await;
                break;
            }
            _ => continue,
        }
    }

    // The victim's lag starts at its Welcome (seq 1). Every message is
    // accepted; the one that would take it past the limit stops the
    // group's delivery to it first.
    let total = MAX_QUEUE_LEN + 100;
    let mut ids = Vec::new();
    for n in 0..total {
        ids.push(
            m.send(Request::SendMessage {
                group_id: spam,
                message: private_message(spam, 1, &n.to_be_bytes()),
                to: vec![],
            })
            .await,
        );
    }
    for id in ids {
        assert!(
            matches!(m.response(id).await, Ok(Response::MessageAccepted { .. })),
            "every message is accepted"
        );
    }
    let notice = loop {
        match m.push().await {
            Push::Deliver(item) if item.kind == ItemKind::Notice => break item,
            _ => continue,
        }
    };
    assert_eq!(
        (notice.group_id, notice.sender),
        (spam, victim.device_id),
        "mallory's group is told whose delivery stopped"
    );
    assert_eq!(
        Notice::decode(&notice.payload),
        Some(Notice::DeliveryStopped {
            reason: StopReason::QueueFull {
                limit: MAX_QUEUE_LEN
            }
        })
    );
    // Its lag counts from its Welcome (seq 1): the write that would have
    // been MAX_QUEUE_LEN + 1 behind gets the notice's seq.
    assert_eq!(notice.seq, MAX_QUEUE_LEN + 2);
    let state = relay.server.state();
    let metrics = state.metrics().render(state);
    assert!(
        metrics.contains("cascade_delivery_stopped_total{kind=\"queue_full\"} 1"),
        "{metrics}"
    );

    // Alice and the victim's conversation is not held up.
    assert!(matches!(
        a.send_message(ward, 1, b"handover at 8").await,
        Ok(Response::MessageAccepted { .. })
    ));

    // The victim comes online: its ward Welcome and message, and of the
    // spam group its Welcome and the notice. Not the flood.
    let (mut v, backlog) = relay.online(&victim).await;
    let kinds: Vec<_> = backlog
        .iter()
        .map(|i| (i.group_id, i.kind, i.seq))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ward, ItemKind::Welcome, 1),
            (spam, ItemKind::Welcome, 1),
            (spam, ItemKind::Notice, MAX_QUEUE_LEN + 2),
            (ward, ItemKind::Application, 2),
        ],
        "the backlog"
    );
    v.ack(backlog.iter().map(|i| i.queue_id).collect()).await;
    // Stopped, it cannot post to the spam group or commit to it.
    assert_eq!(
        v.send_message(spam, 1, b"hello?").await,
        Err(ProtocolError::NotMember)
    );
    assert_eq!(
        v.commit(bundle(spam, 1, &[], &[&mallory])).await,
        Err(ProtocolError::NotMember)
    );
    // It rejoins by external commit, and the group is delivered to it
    // again from there.
    let rejoin = cascade_protocol::frames::CommitBundle {
        group_id: spam,
        epoch: 1,
        commit: external_commit_message(spam, 1),
        welcome: None,
        group_info: group_info(),
        added: vec![victim.device_id],
        removed: vec![],
    };
    let Ok(Response::CommitAccepted { seq, .. }) = v.commit(rejoin).await else {
        panic!("the rejoin is accepted");
    };
    assert_eq!(
        m.send_message(spam, 2, b"welcome back").await,
        Ok(Response::MessageAccepted { seq: seq + 1 })
    );
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Push::Deliver(item) = v.push().await {
            got.push((item.kind, item.seq));
        }
    }
    assert_eq!(
        got,
        vec![(ItemKind::Commit, seq), (ItemKind::Application, seq + 1)]
    );
    // And alice can still remove it from the ward, as always.
    assert!(matches!(
        a.commit(bundle(ward, 1, &[], &[&victim])).await,
        Ok(Response::CommitAccepted { epoch: 2, .. })
    ));
}

/// The queue expiry: time before the relay started does not count (a
/// device enrolled long ago, never seen since, is not stopped at once); a
/// connected device is never stopped, however long ago it connected; an
/// offline one is stopped in every group it is in, with an `Expired`
/// notice, once.
#[tokio::test]
async fn the_queue_expiry_stops_offline_devices_only_and_counts_from_the_start() {
    use cascade_server::ds::expire_idle_devices;
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north"); // enrolled "at 0", never seen
    let (ward, rota) = (GroupId([5; 16]), GroupId([6; 16]));
    let (mut a, _) = relay.online(&alice).await;
    for group in [ward, rota] {
        a.create_group(group).await;
        a.commit(bundle(group, 0, &[&bob], &[]))
            .await
            .expect("alice adds bob");
    }
    let state = relay.server.state();
    // Seconds are whole (a sweep just after a second's boundary counts one
    // more), and a loaded machine starts slowly: an expiry of several
    // seconds keeps "just started" true.
    let expiry = Duration::from_secs(5);
    assert_eq!(
        expire_idle_devices(state, expiry).await.expect("sweep"),
        0,
        "the relay has just started"
    );
    tokio::time::sleep(Duration::from_millis(6100)).await;
    assert_eq!(
        expire_idle_devices(state, expiry).await.expect("sweep"),
        2,
        "bob, in both groups; not alice, connected all along"
    );
    assert_eq!(
        expire_idle_devices(state, expiry).await.expect("sweep"),
        0,
        "once"
    );
    let mut notices = Vec::new();
    while notices.len() < 2 {
        if let Push::Deliver(item) = a.push().await {
            if item.kind == ItemKind::Notice {
                notices.push(item);
            }
        }
    }
    for notice in &notices {
        assert_eq!(notice.sender, bob.device_id);
        let Some(Notice::DeliveryStopped {
            reason: StopReason::Expired { idle_secs },
        }) = Notice::decode(&notice.payload)
        else {
            panic!("an Expired notice: {notice:?}");
        };
        assert!(
            (6..60).contains(&idle_secs),
            "counted from the start: {idle_secs}"
        );
    }
    // Bob comes back: in each group his Welcome, then the notice.
    let (_b, backlog) = relay.online(&bob).await;
    let got: Vec<_> = backlog.iter().map(|i| (i.group_id, i.kind)).collect();
    assert_eq!(
        got,
        vec![
            (ward, ItemKind::Welcome),
            (rota, ItemKind::Welcome),
            (ward, ItemKind::Notice),
            (rota, ItemKind::Notice),
        ]
    );
}

/// `CloseGroup`: only the last device in a group may close it, and then the
/// group is gone: no GroupInfo, not listed, its id free again.
#[tokio::test]
async fn the_last_device_closes_its_group() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let bob = relay.device("bob@north");
    let group = GroupId([7; 16]);
    let (mut a, _) = relay.online(&alice).await;
    let (mut b, _) = relay.online(&bob).await;
    a.create_group(group).await;
    a.commit(bundle(group, 0, &[&bob], &[]))
        .await
        .expect("add bob");
    assert_eq!(
        a.request(Request::CloseGroup { group_id: group }).await,
        Err(ProtocolError::Malformed {
            reason: "other devices are in the group: leave with a self-remove proposal".into()
        }),
        "not while bob is in it"
    );
    a.commit(bundle(group, 1, &[], &[&bob]))
        .await
        .expect("remove bob");
    assert_eq!(
        b.request(Request::CloseGroup { group_id: group }).await,
        Err(ProtocolError::NotMember),
        "bob is out"
    );
    assert_eq!(
        a.request(Request::CloseGroup { group_id: group }).await,
        Ok(Response::GroupClosed)
    );
    assert_eq!(
        a.request(Request::GetGroupInfo { group_id: group }).await,
        Err(ProtocolError::UnknownGroup)
    );
    assert_eq!(
        a.request(Request::ListGroups).await,
        Ok(Response::Groups { group_ids: vec![] })
    );
    assert_eq!(
        a.request(Request::CloseGroup { group_id: group }).await,
        Err(ProtocolError::UnknownGroup),
        "closing again: gone already"
    );
    a.create_group(group).await;
}
