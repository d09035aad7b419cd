//! Deterministic tests of the sans-IO engine against the simulated relay
//! (`sim/`): real engines over real SQLite files; the test decides which
//! frame moves next, when time passes, and when a device drops or crashes.

mod sim;

use cascade_core::{CoreError, DeliveryState, Event, InvalidInput};
use cascade_protocol::mls_header::{framing_header, ContentType};
use cascade_protocol::*;
use sim::*;

fn uid(s: &str) -> UserId {
    UserId::new(s).expect("valid")
}

#[test]
fn a_device_signs_the_challenge_and_comes_online_with_its_key_packages() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let evs = sim.events(a);
    assert!(evs.contains(&Event::Connection(cascade_core::ConnectionState::Online)));
    assert!(evs.contains(&Event::Synced));
    assert!(evs.contains(&Event::CertificateReceived));
    assert!(sim.engine(a).is_idle().expect("idle"));
    // A batch of single-use KeyPackages and a last-resort one.
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(b, "Ward", &[a]);
    assert_eq!(sim.engine(a).members(&g).expect("members").len(), 2);
}

#[test]
fn messages_wait_in_the_outbox_until_online_then_go_out_in_order() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    sim.disconnect(a);
    let now = sim.now;
    let g = sim.engine(a).create_group("Ward 7", now).expect("group");
    for i in 0..5 {
        sim.send(a, g, &format!("hello {i}"));
    }
    assert_eq!(
        sim.engine(a).outbox_len().expect("outbox"),
        8,
        "create, name, the user's other devices, five messages"
    );
    assert_eq!(sim.pending_up(a).len(), 0, "nothing goes out while offline");
    sim.connect(a);
    sim.settle();
    assert_eq!(sim.engine(a).outbox_len().expect("outbox"), 0);
    let h = sim.engine(a).history(&g, None, 10).expect("history");
    assert_eq!(
        h.iter()
            .map(|m| (m.text.clone().expect("text"), m.state, m.seq))
            .collect::<Vec<_>>(),
        (0..5)
            .map(|i| (format!("hello {i}"), DeliveryState::Sent, Some(i + 2)))
            .collect::<Vec<_>>(),
        "sent in the order written, after the name (seq 1)"
    );
}

#[test]
fn messages_of_a_conversation_are_pipelined_and_a_commit_waits_for_them() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let c = sim.device("carol@north", "Carol");
    let g = sim.group(a, "Ward", &[b]);
    for i in 0..100 {
        sim.send(a, g, &format!("plaintext-marker m{i}"));
    }
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("carol@north")], now)
        .expect("queued");
    sim.send(a, g, "after the add");
    // Many messages are out at once, none answered yet; the add waits.
    let up = sim.pending_up(a);
    assert!(up.len() >= 50, "a window of messages, got {}", up.len());
    assert!(up
        .iter()
        .all(|f| matches!(f.req, Request::SendMessage { .. })));
    for f in &up {
        let Request::SendMessage { message, .. } = &f.req else {
            unreachable!()
        };
        let h = framing_header(message).expect("MLS");
        assert_eq!(h.content_type, ContentType::Application);
        assert!(
            !message.windows(16).any(|w| w == b"plaintext-marker"),
            "encrypted"
        );
    }
    sim.settle();
    let texts = sim.texts(b, g);
    assert_eq!(texts.len(), 101);
    assert_eq!(
        texts[..100],
        (0..100)
            .map(|i| format!("plaintext-marker m{i}"))
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(texts[100], "after the add");
    // Carol was added after the hundred and before the last one.
    assert_eq!(sim.texts(c, g), ["after the add"]);
    let epoch = sim.epoch(a, g);
    assert_eq!((sim.epoch(b, g), sim.epoch(c, g)), (epoch, epoch));
}

#[test]
fn a_slow_operation_in_one_conversation_does_not_hold_up_another() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g1 = sim.group(a, "One", &[b]);
    let g2 = sim.group(a, "Two", &[b]);
    // An add in the first conversation whose claim the relay never answers.
    sim.answer_next(a, is_claim, Err(ProtocolError::Internal));
    let now = sim.now;
    let c = sim.device("carol@north", "Carol");
    sim.engine(a)
        .add_members(&g1, vec![uid("carol@north")], now)
        .expect("queued");
    sim.send(a, g1, "behind the add");
    sim.send(a, g2, "in the other conversation");
    sim.run();
    assert_eq!(sim.texts(b, g2), ["in the other conversation"]);
    assert!(
        sim.texts(b, g1).is_empty(),
        "the first lane waits for its add"
    );
    sim.settle();
    assert_eq!(sim.texts(b, g1), ["behind the add"]);
    assert_eq!(sim.texts(c, g1), ["behind the add"]);
}

/// A claim the relay's rate limit refuses for minutes (someone added the
/// same colleague over and over) does not hold the conversation: that
/// user's add is reported, the other users are added, and the messages
/// queued behind the add go out at once. A short wait is waited for.
#[test]
fn a_long_rate_limit_on_a_claim_fails_that_add_and_releases_the_conversation() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let c = sim.device("carol@north", "Carol");
    let d = sim.device("dave@north", "Dave");
    let g = sim.group(a, "Ward", &[b]);
    sim.answer_next(
        a,
        is_claim,
        Err(ProtocolError::RateLimited {
            retry_after_ms: 540_000,
            scope: Some(RateScope::User),
        }),
    );
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("carol@north"), uid("dave@north")], now)
        .expect("queued");
    sim.send(a, g, "behind the add");
    sim.run();
    assert_eq!(
        sim.texts(b, g),
        ["behind the add"],
        "the message did not wait nine minutes"
    );
    assert!(
        failures(&sim.events(a))
            .iter()
            .any(|f| f.contains("carol@north cannot be added now") && f.contains("9 minutes")),
        "{:?}",
        failures(&sim.events(a))
    );
    assert!(sim.texts(c, g).is_empty(), "Carol was not added");
    assert_eq!(sim.texts(d, g), ["behind the add"], "Dave was");

    // A wait of a second is waited for: the add goes through.
    let e = sim.device("erin@north", "Erin");
    sim.answer_next(
        a,
        is_claim,
        Err(ProtocolError::RateLimited {
            retry_after_ms: 1_000,
            scope: None,
        }),
    );
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("erin@north")], now)
        .expect("queued");
    sim.send(a, g, "after the second add");
    sim.settle();
    assert_eq!(sim.texts(e, g), ["after the second add"]);

    // When the limit is on all of this device's claims, the rest of the
    // add is reported at once, in one line, and not as about one person.
    let f = sim.device("frank@north", "Frank");
    let h = sim.device("hana@north", "Hana");
    sim.answer_next(
        a,
        is_claim,
        Err(ProtocolError::RateLimited {
            retry_after_ms: 120_000,
            scope: Some(RateScope::Device),
        }),
    );
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("frank@north"), uid("hana@north")], now)
        .expect("queued");
    sim.send(a, g, "after the third add");
    sim.run();
    let device_wide: Vec<_> = failures(&sim.events(a))
        .into_iter()
        .filter(|f| f.contains("too many people's keys"))
        .collect();
    assert_eq!(device_wide.len(), 1, "{device_wide:?}");
    assert!(
        device_wide[0].contains("frank@north, hana@north") && device_wide[0].contains("2 minutes"),
        "{device_wide:?}"
    );
    assert!(sim.texts(f, g).is_empty() && sim.texts(h, g).is_empty());
    assert_eq!(
        sim.texts(b, g).last().map(String::as_str),
        Some("after the third add")
    );
}

#[test]
fn a_refused_message_is_marked_failed_and_retried_only_on_request() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let g = sim.group(a, "Ward", &[]);
    // A transient refusal is retried by the engine itself.
    sim.answer_next(
        a,
        is_send,
        Err(ProtocolError::RateLimited {
            retry_after_ms: 0,
            scope: None,
        }),
    );
    let first = sim.send(a, g, "hello");
    sim.settle();
    assert_eq!(
        sim.engine(a).history(&g, None, 5).expect("h")[0].state,
        DeliveryState::Sent
    );
    // A final one is not.
    sim.answer_next(a, is_send, Err(ProtocolError::NotMember));
    let id = sim.send(a, g, "refused");
    sim.settle();
    let evs = sim.events(a);
    assert!(evs.contains(&Event::DeliveryState {
        group_id: g,
        message_id: id,
        state: DeliveryState::Failed
    }));
    assert!(matches!(
        sim.engine(a).retry_message(&g, &first, 0),
        Err(CoreError::Invalid(InvalidInput::NotFailed))
    ));
    let now = sim.now;
    sim.engine(a).retry_message(&g, &id, now).expect("retry");
    sim.settle();
    let h = sim.engine(a).history(&g, None, 5).expect("h");
    assert_eq!(
        h.iter().filter(|m| m.id == id).count(),
        1,
        "one entry, not two"
    );
    assert_eq!(
        h.iter().find(|m| m.id == id).map(|m| m.state),
        Some(DeliveryState::Sent)
    );
}

#[test]
fn a_conversation_across_two_devices_with_receipts_and_duplicates() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Transfer", &[b]);
    assert_eq!(
        sim.engine(b).conversation(&g).expect("conv").name,
        "Transfer"
    );
    let id = sim.send(a, g, "bed 12 is ready");
    sim.run();
    // The same item again (at-least-once delivery) is dropped.
    sim.redeliver(b);
    sim.run();
    let h = sim.engine(b).history(&g, None, 10).expect("history");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].state, DeliveryState::Received);
    // Bob confirms after a short wait (a burst shares one receipt).
    assert_eq!(
        sim.engine(a).history(&g, None, 1).expect("h")[0].state,
        DeliveryState::Sent
    );
    sim.settle();
    let h = sim.engine(a).history(&g, None, 10).expect("history");
    assert_eq!(
        (h.len(), h[0].id, h[0].state),
        (1, id, DeliveryState::Delivered)
    );
    assert_eq!(
        sim.engine(b).history(&g, None, 10).expect("h").len(),
        1,
        "a receipt is not a message"
    );
    // The conversation list knows who is in it without reading the group.
    let conv = sim.engine(a).conversation(&g).expect("conv");
    assert_eq!((conv.people, conv.orgs.len()), (2, 1));
}

#[test]
fn a_backlog_of_thousands_is_acknowledged_in_batches_within_the_limit() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Busy", &[b]);
    sim.disconnect(b);
    const N: usize = 2_600;
    for i in 0..N {
        sim.send(a, g, &format!("line {i}"));
        if i % 200 == 199 {
            sim.run();
        }
    }
    sim.settle();
    assert!(sim.queue_len(b) >= N, "Bob's backlog waits at the relay");
    sim.connect(b);
    sim.settle();
    assert_eq!(sim.texts(b, g).len(), N);
    assert_eq!(sim.queue_len(b), 0, "every item acknowledged");
    let max = sim.relay.ack_sizes.iter().copied().max().unwrap_or(0);
    assert!(
        max <= limits::MAX_ACK_BATCH && sim.relay.ack_sizes.len() > 2,
        "acks in batches within the relay's limit: {:?}",
        sim.relay.ack_sizes
    );
    assert!(
        !sim.relay
            .refused
            .iter()
            .any(|(_, e)| matches!(e, ProtocolError::TooLarge { .. })),
        "no ack refused"
    );
}

fn is_send(r: &Request) -> bool {
    matches!(r, Request::SendMessage { .. })
}

/// When the relay holds a conversation's messages because a member's device
/// stopped reading (`QueueFull` naming it), the conversation says who, once
/// for that device, and the message goes out once the relay takes it again
/// (hazard H-017).
#[test]
fn a_held_conversation_says_whose_device_stopped_reading() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Ward", &[b]);
    let bob_device = sim.id(b);
    let held = || {
        Err(ProtocolError::QueueFull {
            limit: limits::MAX_QUEUE_LEN,
            devices: vec![bob_device],
        })
    };
    let holds = |sim: &mut Sim| {
        sim.texts(a, g)
            .iter()
            .filter(|t| t.starts_with(cascade_core::engine::HELD_TEXT))
            .cloned()
            .collect::<Vec<_>>()
    };
    sim.answer_next(a, is_send, held());
    sim.answer_next(a, is_send, held());
    sim.send(a, g, "obs due at 14:00");
    sim.settle();
    let lines = holds(&mut sim);
    assert_eq!(lines.len(), 1, "said once for the same device: {lines:?}");
    assert!(lines[0].contains("Bob (bob@north)"), "{}", lines[0]);
    assert!(
        sim.texts(b, g).contains(&"obs due at 14:00".to_string()),
        "the message went out once the relay took it"
    );
    // Held again after messages flowed: said again.
    sim.answer_next(a, is_send, held());
    sim.send(a, g, "second");
    sim.settle();
    assert_eq!(holds(&mut sim).len(), 2);
    assert!(sim.texts(b, g).contains(&"second".to_string()));
}
