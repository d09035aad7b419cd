//! Deterministic tests of the sans-IO engine: frames in, frames and events
//! out, time passed in. The test itself carries frames between engines and
//! answers their requests the way DESIGN.md's delivery rules say the relay
//! does, one step at a time, so every interleaving here is exact.

use cascade_admin::OrgCa;
use cascade_core::engine::{ConnectionState, Engine, Event, RECEIPT_DELAY_MS};
use cascade_core::identity::DeviceClaims;
use cascade_core::store::SqliteStore as Store;
use cascade_core::{DeliveryState, GroupId};
use cascade_protocol::http::EnrolResponse;
use cascade_protocol::*;

const T0: u64 = 1_700_000_000_000;

thread_local! {
    /// One CA per organisation, as its admins hold it.
    static CAS: std::cell::RefCell<std::collections::HashMap<String, std::rc::Rc<OrgCa>>> =
        Default::default();
}

fn ca(org: &OrgId) -> std::rc::Rc<OrgCa> {
    CAS.with(|c| {
        c.borrow_mut()
            .entry(org.to_string())
            .or_insert_with(|| {
                std::rc::Rc::new(
                    OrgCa::generate(org, "Test Org", (T0 / 1000) as i64, 10).expect("CA"),
                )
            })
            .clone()
    })
}

/// An enrolled engine and its device id. The device's certificate is
/// issued by its organisation's CA; the engine learns it when it connects
/// (see `connect`), as from the relay.
fn enrolled(store: Store, user: &str) -> (Engine, DeviceId) {
    let org = UserId::new(user).expect("valid").org();
    enrolled_with(store, user, &ca(&org))
}

/// Like `enrolled`, with a given CA (a forger's, say) as the device's
/// anchor and issuer.
fn enrolled_with(store: Store, user: &str, ca: &OrgCa) -> (Engine, DeviceId) {
    let mut e = Engine::new(store).expect("engine");
    let pk = e.begin_enrolment().expect("keys");
    assert_eq!(pk.len(), 32, "an Ed25519 public key");
    let device = DeviceId::random();
    let user = UserId::new(user).expect("valid");
    e.complete_enrolment(
        "http://relay.test",
        EnrolResponse {
            device_id: device,
            org_id: user.org(),
            user_id: user.clone(),
            display_name: "Test".into(),
            role: "Tester".into(),
        },
        ca.cert_der(),
    )
    .expect("enrolled");
    let cert = ca
        .issue_device(
            &DeviceClaims {
                user,
                device,
                display_name: "Test".into(),
                role: "Tester".into(),
            },
            &pk,
            (T0 / 1000) as i64,
            10,
        )
        .expect("issued");
    CERTS.with(|c| c.borrow_mut().insert(device, cert));
    (e, device)
}

thread_local! {
    static CERTS: std::cell::RefCell<std::collections::HashMap<DeviceId, Vec<u8>>> =
        Default::default();
}

fn cert_of(device: DeviceId) -> Vec<u8> {
    CERTS.with(|c| c.borrow().get(&device).cloned().expect("issued"))
}

/// Answers pending `GetTrustList` and `GetRevocations` requests (if any)
/// with no list; returns the other frames.
fn answer_trust(e: &mut Engine) -> Vec<ClientFrame> {
    let frames = sent(e);
    answer_requests(e, frames)
}

/// Like `answer_trust`, for frames already taken from the engine.
fn answer_requests(e: &mut Engine, frames: Vec<ClientFrame>) -> Vec<ClientFrame> {
    let mut pending = frames;
    let mut rest = Vec::new();
    while !pending.is_empty() {
        let mut next = Vec::new();
        for f in pending {
            match f.req {
                Request::GetTrustList { .. } => {
                    respond(e, f.id, Ok(Response::TrustList { document: None }));
                    next.extend(sent(e));
                }
                Request::GetRevocations { .. } => {
                    respond(e, f.id, Ok(Response::Revocations { document: None }));
                    next.extend(sent(e));
                }
                _ => rest.push(f),
            }
        }
        pending = next;
    }
    rest
}

fn server(frame: ServerFrame) -> Vec<u8> {
    encode_server_frame(&frame)
}

fn sent(e: &mut Engine) -> Vec<ClientFrame> {
    std::iter::from_fn(|| e.poll_transmit())
        .map(|b| decode_client_frame(&b).expect("engine sends valid frames"))
        .collect()
}

fn events(e: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

fn respond(e: &mut Engine, id: u64, result: Result<Response, ProtocolError>) {
    e.handle_frame(&server(ServerFrame::Response { id, result }), T0)
        .expect("response handled");
}

fn push(e: &mut Engine, p: Push) {
    e.handle_frame(&server(ServerFrame::Push(p)), T0)
        .expect("push handled");
}

/// Connects: challenge, authentication, KeyPackage upload, empty backlog.
/// Returns the KeyPackages the engine uploaded.
fn connect(e: &mut Engine, device: DeviceId, user: &str) -> Vec<Bytes> {
    connect_with_groups(e, device, user, vec![])
}

/// Like [`connect`], with the relay listing `groups` as the user's.
fn connect_with_groups(
    e: &mut Engine,
    device: DeviceId,
    user: &str,
    groups: Vec<GroupId>,
) -> Vec<Bytes> {
    e.handle_connected();
    push(
        e,
        Push::Challenge {
            nonce: Bytes::from(vec![7; 32]),
        },
    );
    let frames = sent(e);
    let [ClientFrame {
        id,
        req: Request::Authenticate {
            device_id,
            signature,
        },
        ..
    }] = frames.as_slice()
    else {
        panic!("expected one Authenticate, got {frames:?}");
    };
    assert_eq!(*device_id, device);
    assert_eq!(signature.len(), 64);
    respond(
        e,
        *id,
        Ok(Response::Authenticated {
            user_id: UserId::new(user).expect("valid"),
            key_package_stock: 0,
            has_last_resort: false,
            certificate: Some(Bytes::from(cert_of(device))),
        }),
    );
    let frames = answer_trust(e);
    let [ClientFrame {
        id,
        req:
            Request::UploadKeyPackages {
                key_packages,
                last_resort,
            },
        ..
    }] = frames.as_slice()
    else {
        panic!("expected a KeyPackage upload, got {frames:?}");
    };
    assert_eq!(key_packages.len(), limits::KEY_PACKAGE_BATCH as usize);
    assert!(last_resort.is_some());
    for kp in key_packages {
        assert_eq!(
            mls_header::wire_format(kp),
            Ok(mls_header::WireFormat::KeyPackage)
        );
    }
    let kps = key_packages.clone();
    respond(e, *id, Ok(Response::KeyPackagesStored { stock: 20 }));
    push(e, Push::QueueDrained);
    assert!(e.is_online());
    answer_list_groups(e, groups);
    kps
}

/// A device asks once, after its first catch-up, for its user's groups (to
/// join them by external commit); answers with `groups`.
fn answer_list_groups(e: &mut Engine, groups: Vec<GroupId>) {
    let frames = sent(e);
    let [ClientFrame {
        id,
        req: Request::ListGroups,
        ..
    }] = frames.as_slice()
    else {
        panic!("expected ListGroups, got {frames:?}");
    };
    respond(e, *id, Ok(Response::Groups { group_ids: groups }));
}

/// Reconnects an engine that already has its KeyPackages and certificate on
/// the relay: challenge, authentication. Returns what the engine sends next
/// (trust and revocation list requests), unanswered.
fn reauthenticate(e: &mut Engine, device: DeviceId, user: &str, nonce: u8) -> Vec<ClientFrame> {
    e.handle_connected();
    push(
        e,
        Push::Challenge {
            nonce: Bytes::from(vec![nonce; 32]),
        },
    );
    let f = sent(e);
    respond(
        e,
        f[0].id,
        Ok(Response::Authenticated {
            user_id: UserId::new(user).expect("valid"),
            key_package_stock: 20,
            has_last_resort: true,
            certificate: Some(Bytes::from(cert_of(device))),
        }),
    );
    sent(e)
}

/// Creates a conversation on a connected engine and lets the relay accept
/// its registration and its name message (seq 1).
fn registered_group(e: &mut Engine, name: &str) -> GroupId {
    let group = e.create_group(name, T0).expect("group");
    let f = sent(e);
    respond(e, f[0].id, Ok(Response::GroupCreated));
    let f = sent(e);
    respond(e, f[0].id, Ok(Response::MessageAccepted { seq: 1 }));
    group
}

#[test]
fn authentication_signs_the_challenge_with_the_device_key() {
    let (mut e, device) = enrolled(Store::in_memory().expect("store"), "alice@north");
    connect(&mut e, device, "alice@north");
    let evs = events(&mut e);
    assert!(evs.contains(&Event::Connection(ConnectionState::Online)));
    assert!(evs.contains(&Event::Synced));
}

#[test]
fn messages_wait_in_the_outbox_until_online() {
    let (mut e, device) = enrolled(Store::in_memory().expect("store"), "alice@north");
    // Without a certificate the device cannot start a conversation.
    assert!(matches!(
        e.create_group("Ward 7", T0),
        Err(cascade_core::CoreError::CertificatePending)
    ));
    connect(&mut e, device, "alice@north");
    e.handle_disconnected();
    let group = e.create_group("Ward 7", T0).expect("group");
    let id = e.send_text(&group, "hello", T0).expect("queued");
    assert!(sent(&mut e).is_empty(), "nothing goes out while offline");
    assert_eq!(e.outbox_len().expect("outbox"), 3, "create, name, message");

    let f = reauthenticate(&mut e, device, "alice@north", 2);
    assert!(answer_requests(&mut e, f).is_empty());
    push(&mut e, Push::QueueDrained);
    // Operations go out one at a time, in order.
    let f = sent(&mut e);
    assert!(
        matches!(f.as_slice(), [ClientFrame { req: Request::CreateGroup { group_id, .. }, .. }] if *group_id == group)
    );
    respond(&mut e, f[0].id, Ok(Response::GroupCreated));
    let f = sent(&mut e);
    assert!(matches!(
        f.as_slice(),
        [ClientFrame {
            req: Request::SendMessage { .. },
            ..
        }]
    ));
    respond(&mut e, f[0].id, Ok(Response::MessageAccepted { seq: 1 }));
    let f = sent(&mut e);
    let [ClientFrame {
        id: rid,
        req: Request::SendMessage { message, .. },
        ..
    }] = f.as_slice()
    else {
        panic!("expected the message, got {f:?}");
    };
    let h = mls_header::framing_header(message).expect("MLS");
    assert_eq!(h.content_type, mls_header::ContentType::Application);
    assert!(
        !message.windows(5).any(|w| w == b"hello"),
        "the text is encrypted"
    );
    respond(&mut e, *rid, Ok(Response::MessageAccepted { seq: 2 }));
    assert!(events(&mut e).contains(&Event::DeliveryState {
        group_id: group,
        message_id: id,
        state: DeliveryState::Sent
    }));
    assert_eq!(e.outbox_len().expect("outbox"), 0);
    let h = e.history(&group, None, 10).expect("history");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].seq, Some(2));
}

#[test]
fn a_refused_message_is_marked_failed_not_retried() {
    let (mut e, device) = enrolled(Store::in_memory().expect("store"), "alice@north");
    connect(&mut e, device, "alice@north");
    let group = registered_group(&mut e, "Ward 7");
    let id = e.send_text(&group, "hello", T0).expect("queued");
    let f = sent(&mut e);
    respond(&mut e, f[0].id, Err(ProtocolError::NotMember));
    assert!(events(&mut e).contains(&Event::DeliveryState {
        group_id: group,
        message_id: id,
        state: DeliveryState::Failed
    }));
    assert!(sent(&mut e).is_empty());
}

#[test]
fn a_failed_message_retried_goes_out_again_with_its_id() {
    let (mut e, device) = enrolled(Store::in_memory().expect("store"), "alice@north");
    connect(&mut e, device, "alice@north");
    let group = registered_group(&mut e, "Ward 7");
    let id = e.send_text(&group, "hello", T0).expect("queued");
    let f = sent(&mut e);
    respond(
        &mut e,
        f[0].id,
        Err(ProtocolError::RateLimited { retry_after_ms: 0 }),
    );
    // A transient refusal is retried by the engine itself; a final one is not.
    e.handle_timeout(T0 + 60_000).expect("timer");
    let f = sent(&mut e);
    respond(&mut e, f[0].id, Err(ProtocolError::NotMember));
    events(&mut e);
    let other = e.send_text(&group, "second", T0).expect("queued");
    let f = sent(&mut e);
    respond(&mut e, f[0].id, Ok(Response::MessageAccepted { seq: 2 }));
    assert!(
        e.retry_message(&group, &other, T0).is_err(),
        "a sent message cannot be retried"
    );

    e.retry_message(&group, &id, T0).expect("retry");
    assert!(events(&mut e).contains(&Event::DeliveryState {
        group_id: group,
        message_id: id,
        state: DeliveryState::Sending
    }));
    let f = sent(&mut e);
    let [ClientFrame {
        id: rid,
        req: Request::SendMessage { .. },
        ..
    }] = f.as_slice()
    else {
        panic!("expected the message again, got {f:?}");
    };
    respond(&mut e, *rid, Ok(Response::MessageAccepted { seq: 3 }));
    assert!(events(&mut e).contains(&Event::DeliveryState {
        group_id: group,
        message_id: id,
        state: DeliveryState::Sent
    }));
    let h = e.history(&group, None, 10).expect("history");
    assert_eq!(
        h.iter().filter(|m| m.id == id).count(),
        1,
        "one entry, not two"
    );
}

/// Carries a commit bundle from the committer to the joiner as the relay
/// would, and checks the joiner ends up in the group.
#[test]
fn add_commit_welcome_and_a_message_across_two_engines() {
    let (mut a, da) = enrolled(Store::in_memory().expect("store"), "alice@north");
    let (mut b, db) = enrolled(Store::in_memory().expect("store"), "bob@north");
    connect(&mut a, da, "alice@north");
    let b_kps = connect(&mut b, db, "bob@north");

    let group = registered_group(&mut a, "Transfer");
    a.add_members(&group, vec![UserId::new("bob@north").expect("valid")], T0)
        .expect("queued");
    let f = answer_trust(&mut a);
    assert!(
        matches!(&f[0].req, Request::ClaimKeyPackages { user_id } if user_id.as_str() == "bob@north")
    );
    respond(
        &mut a,
        f[0].id,
        Ok(Response::KeyPackages {
            devices: vec![ClaimedKeyPackage {
                device_id: db,
                key_package: b_kps[0].clone(),
            }],
        }),
    );
    let f = sent(&mut a);
    let [ClientFrame {
        id: cid,
        req: Request::Commit(bundle),
        ..
    }] = f.as_slice()
    else {
        panic!("expected a commit, got {f:?}");
    };
    assert_eq!(bundle.epoch, 0);
    assert_eq!(bundle.added, vec![db]);
    let welcome = bundle.welcome.clone().expect("a Welcome for Bob");

    // Before the relay answers, Alice has not merged.
    assert_eq!(a.epoch(&group).expect("epoch"), 0);
    respond(
        &mut a,
        *cid,
        Ok(Response::CommitAccepted { epoch: 1, seq: 2 }),
    );
    assert_eq!(a.epoch(&group).expect("epoch"), 1);

    push(
        &mut b,
        Push::Deliver(QueueItem {
            queue_id: 1,
            group_id: group,
            seq: 2,
            sender: da,
            kind: ItemKind::Welcome,
            payload: welcome,
        }),
    );
    assert_eq!(b.epoch(&group).expect("Bob joined"), 1);
    assert_eq!(b.members(&group).expect("members").len(), 2);
    // Bob acks the Welcome.
    let f = sent(&mut b);
    assert!(f
        .iter()
        .any(|c| matches!(&c.req, Request::Ack { queue_ids } if queue_ids == &vec![1])));

    // Alice sends the group name and a message; Bob reads them.
    a.send_text(&group, "bed 12 is ready", T0).expect("queued");
    // The group-name message gets seq 3 (queue id 2), the text seq 4 (3).
    let mut text_request = 0;
    for (seq, qid) in [(3, 2), (4, 3)] {
        let f = sent(&mut a);
        let [ClientFrame {
            id,
            req: Request::SendMessage { message, .. },
            ..
        }] = f.as_slice()
        else {
            panic!("expected a message, got {f:?}");
        };
        if seq == 3 {
            respond(&mut a, *id, Ok(Response::MessageAccepted { seq }));
        } else {
            // The relay's answer to the text is held back (a lost answer):
            // Bob's receipt will come first.
            text_request = *id;
        }
        let item = QueueItem {
            queue_id: qid,
            group_id: group,
            seq,
            sender: da,
            kind: ItemKind::Application,
            payload: message.clone(),
        };
        push(&mut b, Push::Deliver(item.clone()));
        // The same item again (at-least-once delivery): dropped by seq.
        push(&mut b, Push::Deliver(item));
    }
    assert_eq!(b.conversation(&group).expect("conv").name, "Transfer");
    let h = b.history(&group, None, 10).expect("history");
    assert_eq!(h.len(), 1, "the duplicate was dropped");
    assert_eq!(h[0].text.as_deref(), Some("bed 12 is ready"));
    assert_eq!(h[0].state, DeliveryState::Received);
    let id = h[0].id;

    // Bob confirms delivery after a short wait (a burst shares one
    // receipt), not at once.
    assert!(
        sent(&mut b)
            .iter()
            .all(|f| !matches!(f.req, Request::SendMessage { .. })),
        "no receipt before the delay"
    );
    assert_eq!(b.poll_timeout(), Some(T0 + RECEIPT_DELAY_MS));
    b.handle_timeout(T0 + RECEIPT_DELAY_MS).expect("timer");
    let f = sent(&mut b);
    let [ClientFrame {
        id: rid,
        req: Request::SendMessage { message, .. },
        ..
    }] = f.as_slice()
    else {
        panic!("expected one receipt, got {f:?}");
    };
    respond(&mut b, *rid, Ok(Response::MessageAccepted { seq: 5 }));
    assert_eq!(b.history(&group, None, 10).expect("history").len(), 1);

    // The receipt reaches Alice before the relay's answer to her message:
    // it is kept, and counts once the answer makes the message sent.
    events(&mut a);
    push(
        &mut a,
        Push::Deliver(QueueItem {
            queue_id: 9,
            group_id: group,
            seq: 5,
            sender: db,
            kind: ItemKind::Application,
            payload: message.clone(),
        }),
    );
    assert!(events(&mut a).is_empty(), "not delivered before it is sent");
    respond(
        &mut a,
        text_request,
        Ok(Response::MessageAccepted { seq: 4 }),
    );
    let states: Vec<DeliveryState> = events(&mut a)
        .into_iter()
        .filter_map(|e| match e {
            Event::DeliveryState {
                message_id, state, ..
            } if message_id == id => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(states, [DeliveryState::Sent, DeliveryState::Delivered]);
    let h = a.history(&group, None, 10).expect("history");
    assert_eq!(h.len(), 1, "a receipt is not a message");
    assert_eq!(h[0].state, DeliveryState::Delivered);
}

/// Runs `committer`'s queued add of `user` up to the commit bundle: answers
/// the claim with `kp` and returns the commit request's id and bundle.
fn claim_and_commit(
    committer: &mut Engine,
    user: &str,
    device: DeviceId,
    kp: &Bytes,
) -> (u64, CommitBundle) {
    let f: Vec<_> = answer_trust(committer)
        .into_iter()
        .filter(|f| !matches!(f.req, Request::Ack { .. }))
        .collect();
    let [ClientFrame {
        id,
        req: Request::ClaimKeyPackages { user_id },
        ..
    }] = f.as_slice()
    else {
        panic!("expected a claim, got {f:?}");
    };
    assert_eq!(user_id.as_str(), user);
    respond(
        committer,
        *id,
        Ok(Response::KeyPackages {
            devices: vec![ClaimedKeyPackage {
                device_id: device,
                key_package: kp.clone(),
            }],
        }),
    );
    let f = sent(committer);
    let [ClientFrame {
        id,
        req: Request::Commit(bundle),
        ..
    }] = f.as_slice()
    else {
        panic!("expected a commit, got {f:?}");
    };
    (*id, bundle.clone())
}

/// Two members commit at the same epoch. The relay accepts Alice's and
/// answers Bob's with `WrongEpoch`: Bob discards his pending commit, does
/// not retry until he has processed Alice's, then retries at the new epoch.
#[test]
fn wrong_epoch_discards_and_retries_after_catching_up() {
    let (mut a, da) = enrolled(Store::in_memory().expect("store"), "alice@north");
    let (mut b, db) = enrolled(Store::in_memory().expect("store"), "bob@north");
    let (mut c, dc) = enrolled(Store::in_memory().expect("store"), "carol@north");
    let (mut d, dd) = enrolled(Store::in_memory().expect("store"), "dave@north");
    connect(&mut a, da, "alice@north");
    let b_kps = connect(&mut b, db, "bob@north");
    let c_kps = connect(&mut c, dc, "carol@north");
    let d_kps = connect(&mut d, dd, "dave@north");
    let group = registered_group(&mut a, "Race");

    // Alice adds Bob (epoch 0 -> 1).
    a.add_members(&group, vec![UserId::new("bob@north").expect("valid")], T0)
        .expect("queued");
    let (id, bundle) = claim_and_commit(&mut a, "bob@north", db, &b_kps[0]);
    respond(
        &mut a,
        id,
        Ok(Response::CommitAccepted { epoch: 1, seq: 2 }),
    );
    let welcome = bundle.welcome.expect("welcome");
    push(
        &mut b,
        Push::Deliver(QueueItem {
            queue_id: 1,
            group_id: group,
            seq: 2,
            sender: da,
            kind: ItemKind::Welcome,
            payload: welcome,
        }),
    );
    assert_eq!(b.epoch(&group).expect("joined"), 1);
    let f = sent(&mut a); // Alice's group-name message; the relay takes it
    respond(&mut a, f[0].id, Ok(Response::MessageAccepted { seq: 3 }));

    // Both commit at epoch 1.
    a.add_members(&group, vec![UserId::new("carol@north").expect("valid")], T0)
        .expect("queued");
    b.add_members(&group, vec![UserId::new("dave@north").expect("valid")], T0)
        .expect("queued");
    let (a_id, a_bundle) = claim_and_commit(&mut a, "carol@north", dc, &c_kps[0]);
    let (b_id, b_bundle) = claim_and_commit(&mut b, "dave@north", dd, &d_kps[0]);
    assert_eq!((a_bundle.epoch, b_bundle.epoch), (1, 1));
    respond(
        &mut a,
        a_id,
        Ok(Response::CommitAccepted { epoch: 2, seq: 4 }),
    );
    respond(&mut b, b_id, Err(ProtocolError::WrongEpoch { current: 2 }));
    assert!(
        sent(&mut b)
            .iter()
            .all(|f| matches!(f.req, Request::Ack { .. })),
        "no retry yet"
    );
    assert_eq!(
        b.epoch(&group).expect("epoch"),
        1,
        "Bob's own commit was not merged"
    );
    b.handle_timeout(T0 + 30_000).expect("timeout");
    assert!(
        sent(&mut b).is_empty(),
        "time alone does not trigger the retry"
    );

    // The relay delivers Alice's group-name message and her commit to Bob.
    push(
        &mut b,
        Push::Deliver(QueueItem {
            queue_id: 2,
            group_id: group,
            seq: 4,
            sender: da,
            kind: ItemKind::Commit,
            payload: a_bundle.commit.clone(),
        }),
    );
    assert_eq!(b.epoch(&group).expect("epoch"), 2);
    // Now Bob retries, at epoch 2, adding Dave with the KeyPackage he claimed.
    let f = sent(&mut b);
    let Some(ClientFrame {
        id: retry_id,
        req: Request::Commit(retry),
        ..
    }) = f.iter().find(|f| matches!(f.req, Request::Commit(_)))
    else {
        panic!("expected the retried commit, got {f:?}");
    };
    assert_eq!(retry.epoch, 2);
    assert_eq!(retry.added, vec![dd]);
    respond(
        &mut b,
        *retry_id,
        Ok(Response::CommitAccepted { epoch: 3, seq: 5 }),
    );
    assert_eq!(b.epoch(&group).expect("epoch"), 3);
    // Alice processes Bob's retried commit: same epoch, same members.
    push(
        &mut a,
        Push::Deliver(QueueItem {
            queue_id: 9,
            group_id: group,
            seq: 5,
            sender: db,
            kind: ItemKind::Commit,
            payload: retry.commit.clone(),
        }),
    );
    assert_eq!(a.epoch(&group).expect("epoch"), 3);
    let members = |e: &Engine| {
        let mut m: Vec<_> = e
            .members(&group)
            .expect("members")
            .into_iter()
            .map(|m| m.device_id)
            .collect();
        m.sort();
        m
    };
    assert_eq!(members(&a), members(&b));
    assert_eq!(members(&a).len(), 4);
}

/// A message prepared (encrypted) before a crash is resent with exactly
/// the same bytes after the restart, so receivers see one message.
#[test]
fn a_prepared_message_survives_a_restart_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("db");
    let (mut e, device) = enrolled(Store::open(&path).expect("store"), "alice@north");
    connect(&mut e, device, "alice@north");
    let group = registered_group(&mut e, "Ward 7");
    e.send_text(&group, "survive", T0).expect("queued");
    let f = sent(&mut e);
    let Request::SendMessage {
        message: before, ..
    } = &f[0].req
    else {
        panic!("expected the message");
    };
    let before = before.clone();
    drop(e); // crash: no answer ever came

    let mut e = Engine::new(Store::open(&path).expect("reopen")).expect("engine");
    assert_eq!(e.outbox_len().expect("outbox"), 1);
    // Reconnect (the relay still has our KeyPackages this time).
    let f = reauthenticate(&mut e, device, "alice@north", 1);
    assert!(
        answer_requests(&mut e, f).is_empty(),
        "nothing before the backlog is processed"
    );
    push(&mut e, Push::QueueDrained);
    let f = sent(&mut e);
    let Request::SendMessage { message: after, .. } = &f[0].req else {
        panic!("expected the message again, got {f:?}");
    };
    assert_eq!(after, &before, "the same ciphertext, not a re-encryption");
    respond(&mut e, f[0].id, Ok(Response::MessageAccepted { seq: 2 }));
    assert_eq!(
        e.history(&group, None, 5).expect("history")[0].state,
        DeliveryState::Sent
    );
}

/// A relay that colludes with a forger serves a KeyPackage whose
/// certificate claims a colleague but is signed by another key: the engine
/// refuses to add it, names the reason, and sends no commit.
#[test]
fn a_forged_member_is_refused_when_claimed() {
    let (mut a, da) = enrolled(Store::in_memory().expect("store"), "alice@north");
    let north = UserId::new("alice@north").expect("valid").org();
    let forger = OrgCa::generate(&north, "Not North", (T0 / 1000) as i64, 10).expect("CA");
    let (mut m, dm) = enrolled_with(Store::in_memory().expect("store"), "bob@north", &forger);
    connect(&mut a, da, "alice@north");
    let m_kps = connect(&mut m, dm, "bob@north");
    let group = registered_group(&mut a, "Ward");
    a.add_members(&group, vec![UserId::new("bob@north").expect("valid")], T0)
        .expect("queued");
    let f = answer_trust(&mut a);
    assert_claim_refused(
        &mut a,
        f[0].id,
        dm,
        &m_kps[0],
        T0,
        "not signed by its organisation",
    );
    assert_eq!(a.members(&group).expect("members").len(), 1);
}

/// A trust list altered by the relay is refused; the device keeps trusting
/// only what its organisation signed.
#[test]
fn a_tampered_trust_list_is_refused() {
    let (mut a, da) = enrolled(Store::in_memory().expect("store"), "alice@north");
    a.handle_connected();
    push(
        &mut a,
        Push::Challenge {
            nonce: Bytes::from(vec![3; 32]),
        },
    );
    let f = sent(&mut a);
    respond(
        &mut a,
        f[0].id,
        Ok(Response::Authenticated {
            user_id: UserId::new("alice@north").expect("valid"),
            key_package_stock: 20,
            has_last_resort: true,
            certificate: Some(Bytes::from(cert_of(da))),
        }),
    );
    let f = sent(&mut a);
    let trust_req = f
        .iter()
        .find(|f| matches!(f.req, Request::GetTrustList { .. }))
        .expect("the engine fetches its organisation's trust list");
    let north = ca(&UserId::new("alice@north").expect("valid").org());
    let east = ca(&OrgId::new("east").expect("valid"));
    let mallory = ca(&OrgId::new("mallory").expect("valid"));
    let mut doc = north
        .sign_trust_list(&[east.cert_der().to_vec()], 1, (T0 / 1000) as i64)
        .expect("signed");
    // The relay swaps east for its own accomplice.
    let mallorys = mallory
        .sign_trust_list(&[east.cert_der().to_vec()], 1, (T0 / 1000) as i64)
        .expect("signed");
    doc.body = mallorys.body.clone();
    respond(
        &mut a,
        trust_req.id,
        Ok(Response::TrustList {
            document: Some(doc),
        }),
    );
    let evs = events(&mut a);
    assert!(
        evs.iter().any(|e| matches!(e,
            Event::OperationFailed { reason, .. } if reason.contains("trust list was refused")
        )),
        "{evs:?}"
    );
    assert_eq!(a.trusted_orgs(), vec![OrgId::new("north").expect("valid")]);

    // The genuine list is accepted.
    a.handle_disconnected();
    a.handle_connected();
    push(
        &mut a,
        Push::Challenge {
            nonce: Bytes::from(vec![4; 32]),
        },
    );
    let f = sent(&mut a);
    respond(
        &mut a,
        f[0].id,
        Ok(Response::Authenticated {
            user_id: UserId::new("alice@north").expect("valid"),
            key_package_stock: 20,
            has_last_resort: true,
            certificate: None,
        }),
    );
    let f = sent(&mut a);
    let trust_req = f
        .iter()
        .find(|f| matches!(f.req, Request::GetTrustList { .. }))
        .expect("fetched again");
    let genuine = north
        .sign_trust_list(&[east.cert_der().to_vec()], 2, (T0 / 1000) as i64)
        .expect("signed");
    respond(
        &mut a,
        trust_req.id,
        Ok(Response::TrustList {
            document: Some(genuine),
        }),
    );
    assert_eq!(
        a.trusted_orgs(),
        vec![
            OrgId::new("north").expect("valid"),
            OrgId::new("east").expect("valid")
        ]
    );
}

/// A device its organisation revoked is refused when a colleague claims
/// its KeyPackage, even if a relay still hands it out.
#[test]
fn a_revoked_member_is_refused_when_claimed() {
    let (mut a, da) = enrolled(Store::in_memory().expect("store"), "alice@north");
    let (mut b, db) = enrolled(Store::in_memory().expect("store"), "bob@north");
    let b_kps = connect(&mut b, db, "bob@north");
    // Alice connects; her organisation's revocation list names Bob's device.
    a.handle_connected();
    push(
        &mut a,
        Push::Challenge {
            nonce: Bytes::from(vec![5; 32]),
        },
    );
    let f = sent(&mut a);
    respond(
        &mut a,
        f[0].id,
        Ok(Response::Authenticated {
            user_id: UserId::new("alice@north").expect("valid"),
            key_package_stock: 20,
            has_last_resort: true,
            certificate: Some(Bytes::from(cert_of(da))),
        }),
    );
    let north = ca(&OrgId::new("north").expect("valid"));
    let revocations = north
        .sign_revocations(&[db], 1, (T0 / 1000) as i64)
        .expect("signed");
    let mut pending = sent(&mut a);
    while let Some(f) = pending.pop() {
        match f.req {
            Request::GetTrustList { .. } => {
                respond(&mut a, f.id, Ok(Response::TrustList { document: None }));
                pending.extend(sent(&mut a));
            }
            Request::GetRevocations { .. } => {
                respond(
                    &mut a,
                    f.id,
                    Ok(Response::Revocations {
                        document: Some(revocations.clone()),
                    }),
                );
                pending.extend(sent(&mut a));
            }
            _ => {}
        }
    }
    push(&mut a, Push::QueueDrained);
    answer_list_groups(&mut a, vec![]);
    let group = registered_group(&mut a, "Ward");
    a.add_members(&group, vec![UserId::new("bob@north").expect("valid")], T0)
        .expect("queued");
    let f = answer_trust(&mut a);
    assert_claim_refused(&mut a, f[0].id, db, &b_kps[0], T0, "revoked");
}

/// A KeyPackage whose certificate has expired is refused with the reason.
#[test]
fn an_expired_member_is_refused_when_claimed() {
    let (mut a, da) = enrolled(Store::in_memory().expect("store"), "alice@north");
    let (mut b, db) = enrolled(Store::in_memory().expect("store"), "bob@north");
    connect(&mut a, da, "alice@north");
    let b_kps = connect(&mut b, db, "bob@north");
    let group = registered_group(&mut a, "Ward");
    a.add_members(&group, vec![UserId::new("bob@north").expect("valid")], T0)
        .expect("queued");
    let f = answer_trust(&mut a);
    // The certificates were issued for 10 days; eleven days later:
    let later = T0 + 11 * 86_400 * 1000;
    assert_claim_refused(&mut a, f[0].id, db, &b_kps[0], later, "expired");
}

/// Answers `e`'s KeyPackage claim `claim` with `device`'s KeyPackage at
/// time `now`, and checks that no commit adds it and the failure names
/// `reason`.
fn assert_claim_refused(
    e: &mut Engine,
    claim: u64,
    device: DeviceId,
    key_package: &Bytes,
    now: u64,
    reason: &str,
) {
    e.handle_frame(
        &server(ServerFrame::Response {
            id: claim,
            result: Ok(Response::KeyPackages {
                devices: vec![ClaimedKeyPackage {
                    device_id: device,
                    key_package: key_package.clone(),
                }],
            }),
        }),
        now,
    )
    .expect("handled");
    assert!(
        sent(e).iter().all(|f| !matches!(f.req, Request::Commit(_))),
        "no commit adds the refused member"
    );
    let evs = events(e);
    assert!(
        evs.iter().any(|ev| matches!(ev,
            Event::OperationFailed { reason: r, .. } if r.contains(reason))),
        "{evs:?}"
    );
}

/// If the commits that would bring the device to the relay's epoch never
/// come, the refused operation gives up instead of blocking the outbox.
#[test]
fn a_refused_commit_gives_up_when_the_epoch_never_comes() {
    let (mut a, da) = enrolled(Store::in_memory().expect("store"), "alice@north");
    let (mut b, db) = enrolled(Store::in_memory().expect("store"), "bob@north");
    connect(&mut a, da, "alice@north");
    let b_kps = connect(&mut b, db, "bob@north");
    let group = registered_group(&mut a, "Ward");
    a.add_members(&group, vec![UserId::new("bob@north").expect("valid")], T0)
        .expect("queued");
    let (id, _) = claim_and_commit(&mut a, "bob@north", db, &b_kps[0]);
    respond(&mut a, id, Err(ProtocolError::WrongEpoch { current: 7 }));
    assert_eq!(a.outbox_len().expect("outbox"), 1);
    assert!(a.poll_timeout().is_some(), "the engine asks to be woken");
    let _ = events(&mut a);
    a.handle_timeout(T0 + 61_000).expect("timeout");
    let evs = events(&mut a);
    assert!(
        evs.iter().any(|e| matches!(e,
            Event::OperationFailed { reason, .. } if reason.contains("out of step"))),
        "{evs:?}"
    );
    assert_eq!(a.outbox_len().expect("outbox"), 0, "the outbox moves on");
    // The group still works for what the relay accepts.
    a.send_text(&group, "still here", T0 + 62_000)
        .expect("queued");
    assert!(sent(&mut a)
        .iter()
        .any(|f| matches!(f.req, Request::SendMessage { .. })));
}

/// A commit whose answer was lost is resent byte for byte after the
/// reconnection, never rebuilt: when the relay had in fact applied it, its
/// echo merges the very commit the others have, and nobody forks.
#[test]
fn a_commit_whose_answer_was_lost_is_resent_identically() {
    let (mut a, da) = enrolled(Store::in_memory().expect("store"), "alice@north");
    let (mut b, db) = enrolled(Store::in_memory().expect("store"), "bob@north");
    connect(&mut a, da, "alice@north");
    let b_kps = connect(&mut b, db, "bob@north");
    let group = registered_group(&mut a, "Ward");
    a.add_members(&group, vec![UserId::new("bob@north").expect("valid")], T0)
        .expect("queued");
    let (_, first) = claim_and_commit(&mut a, "bob@north", db, &b_kps[0]);

    // The connection drops before the answer; the relay had applied it.
    a.handle_disconnected();
    let f = reauthenticate(&mut a, da, "alice@north", 9);
    assert!(answer_requests(&mut a, f).is_empty());
    push(&mut a, Push::QueueDrained);
    let f = sent(&mut a);
    let Some(ClientFrame {
        id,
        req: Request::Commit(again),
        ..
    }) = f.iter().find(|f| matches!(f.req, Request::Commit(_)))
    else {
        panic!("expected the commit again, got {f:?}");
    };
    assert_eq!(again, &first, "the same bundle, byte for byte");
    respond(&mut a, *id, Err(ProtocolError::WrongEpoch { current: 1 }));
    assert_eq!(a.epoch(&group).expect("epoch"), 0);
    // The echo of the commit the relay applied arrives: it is ours.
    push(
        &mut a,
        Push::Deliver(QueueItem {
            queue_id: 5,
            group_id: group,
            seq: 2,
            sender: da,
            kind: ItemKind::Commit,
            payload: first.commit.clone(),
        }),
    );
    assert_eq!(a.epoch(&group).expect("epoch"), 1, "merged, no fork");
    assert_eq!(a.members(&group).expect("members").len(), 2);
    // Bob joins from the Welcome of that same commit: both are in step.
    push(
        &mut b,
        Push::Deliver(QueueItem {
            queue_id: 1,
            group_id: group,
            seq: 2,
            sender: da,
            kind: ItemKind::Welcome,
            payload: first.welcome.clone().expect("welcome"),
        }),
    );
    assert_eq!(b.epoch(&group).expect("joined"), 1);
}

/// Runs a device's join by external commit up to its Commit request, the
/// relay serving `group_info`; returns the request id and bundle.
fn external_join(
    e: &mut Engine,
    device: DeviceId,
    user: &str,
    group: GroupId,
    group_info: &Bytes,
) -> (u64, CommitBundle) {
    connect_with_groups(e, device, user, vec![group]);
    let f = sent(e);
    let [ClientFrame {
        id,
        req: Request::GetGroupInfo { group_id },
        ..
    }] = f.as_slice()
    else {
        panic!("expected GetGroupInfo, got {f:?}");
    };
    assert_eq!(*group_id, group);
    respond(
        e,
        *id,
        Ok(Response::GroupInfo {
            epoch: 0,
            group_info: group_info.clone(),
        }),
    );
    let f = sent(e);
    let [ClientFrame {
        id,
        req: Request::Commit(bundle),
        ..
    }] = f.as_slice()
    else {
        panic!("expected the external commit, got {f:?}");
    };
    assert_eq!(bundle.added, vec![device]);
    assert!(bundle.welcome.is_none());
    (*id, bundle.clone())
}

/// A user's new device joins by external commit and the members accept it;
/// the same commit from someone who is not in the conversation is refused.
#[test]
fn a_users_new_device_joins_by_external_commit_and_no_one_else_may() {
    let (mut a, da) = enrolled(Store::in_memory().expect("store"), "alice@north");
    connect(&mut a, da, "alice@north");
    let group = a.create_group("Ward", T0).expect("group");
    let f = sent(&mut a);
    let [ClientFrame {
        id,
        req: Request::CreateGroup { group_info, .. },
        ..
    }] = f.as_slice()
    else {
        panic!("expected CreateGroup, got {f:?}");
    };
    let group_info = group_info.clone();
    respond(&mut a, *id, Ok(Response::GroupCreated));
    let f = sent(&mut a);
    respond(&mut a, f[0].id, Ok(Response::MessageAccepted { seq: 1 }));

    // Carol is not in the conversation: her external commit is refused.
    let (mut c, dc) = enrolled(Store::in_memory().expect("store"), "carol@north");
    let (_, carols) = external_join(&mut c, dc, "carol@north", group, &group_info);
    events(&mut a);
    push(
        &mut a,
        Push::Deliver(QueueItem {
            queue_id: 1,
            group_id: group,
            seq: 2,
            sender: dc,
            kind: ItemKind::Commit,
            payload: carols.commit.clone(),
        }),
    );
    assert!(events(&mut a).iter().any(|e| matches!(e,
        Event::OperationFailed { reason, .. } if reason.contains("not in the conversation"))));
    assert_eq!(a.epoch(&group).expect("epoch"), 0);
    assert_eq!(a.members(&group).expect("members").len(), 1);

    // Alice's own new device may.
    let (mut a2, da2) = enrolled(Store::in_memory().expect("store"), "alice@north");
    let (rid, bundle) = external_join(&mut a2, da2, "alice@north", group, &group_info);
    assert_eq!(bundle.epoch, 0);
    respond(
        &mut a2,
        rid,
        Ok(Response::CommitAccepted { epoch: 1, seq: 3 }),
    );
    assert!(events(&mut a2).contains(&Event::ConversationUpdated(group)));
    assert_eq!(a2.epoch(&group).expect("joined"), 1);
    push(
        &mut a,
        Push::Deliver(QueueItem {
            queue_id: 2,
            group_id: group,
            seq: 3,
            sender: da2,
            kind: ItemKind::Commit,
            payload: bundle.commit.clone(),
        }),
    );
    assert_eq!(a.epoch(&group).expect("epoch"), 1);
    assert_eq!(a.members(&group).expect("members").len(), 2);
    assert!(events(&mut a).contains(&Event::MembershipChanged {
        group_id: group,
        added: vec![UserId::new("alice@north").expect("valid")],
        removed: vec![],
    }));
    // Alice's first device tells the new one the conversation's name.
    let f: Vec<_> = sent(&mut a)
        .into_iter()
        .filter(|f| matches!(f.req, Request::SendMessage { .. }))
        .collect();
    let [ClientFrame {
        req: Request::SendMessage { message, .. },
        ..
    }] = f.as_slice()
    else {
        panic!("expected the name message, got {f:?}");
    };
    push(
        &mut a2,
        Push::Deliver(QueueItem {
            queue_id: 1,
            group_id: group,
            seq: 4,
            sender: da,
            kind: ItemKind::Application,
            payload: message.clone(),
        }),
    );
    assert_eq!(a2.conversation(&group).expect("conv").name, "Ward");
}
