//! Read state across a user's devices and read receipts, between real
//! engines on the simulated relay (`sim/`): a read report goes only to the
//! reader's devices and the senders of what was read, one report covers
//! every earlier message, and a user who turns receipts off still keeps
//! their own devices in step.

mod sim;

use std::collections::BTreeSet;

use cascade_core::{CoreError, Event, InvalidInput};
use cascade_protocol::*;
use sim::*;

/// Alice (desk and phone), Bob, and Carol of another organisation.
fn ward() -> (Sim, [D; 4], GroupId) {
    let mut sim = Sim::new();
    sim.trust_each_other("north", "east");
    let a = sim.device("alice@north", "Alice desk");
    let a2 = sim.device("alice@north", "Alice phone");
    let b = sim.device("bob@north", "Bob");
    let c = sim.device("carol@east", "Carol");
    let g = sim.group(a, "Ward 7", &[b, c]);
    sim.settle();
    (sim, [a, a2, b, c], g)
}

fn unread(sim: &mut Sim, d: D, g: GroupId) -> u64 {
    sim.engine(d)
        .conversations()
        .expect("list")
        .into_iter()
        .find(|c| c.group_id == g)
        .expect("there")
        .unread
}

fn read_by(sim: &mut Sim, d: D, g: GroupId, id: &cascade_core::MessageId) -> u32 {
    sim.engine(d).message(&g, id).expect("there").read_by
}

/// The devices the relay queued the last accepted message from `d` for.
fn last_recipients(sim: &Sim, d: D) -> BTreeSet<DeviceId> {
    let id = sim.id(d);
    sim.relay
        .accepted
        .iter()
        .rev()
        .find(|a| a.sender == id)
        .expect("sent something")
        .recipients
        .clone()
}

#[test]
fn reading_on_the_desk_is_read_on_the_phone_and_tells_only_the_senders() {
    let (mut sim, [a, a2, b, c], g) = ward();
    let first = sim.send(b, g, "bed 4 obs due");
    let second = sim.send(b, g, "bed 5 too");
    sim.settle();
    let carols = sim.send(c, g, "pharmacy: amoxicillin back");
    sim.settle();
    assert_eq!(unread(&mut sim, a, g), 3);
    assert_eq!(unread(&mut sim, a2, g), 3);
    sim.events(a2);

    let now = sim.now;
    sim.engine(a).mark_read(&g, now).expect("read");
    sim.settle();
    // The report reached Alice's phone and the two senders, nobody else
    // (Bob and Carol each have one device).
    let to = last_recipients(&sim, a);
    let want: BTreeSet<DeviceId> = [sim.id(a2), sim.id(b), sim.id(c)].into();
    assert_eq!(to, want);
    // Read on the phone too, and the phone was told to clear notifications.
    assert_eq!(unread(&mut sim, a, g), 0);
    assert_eq!(unread(&mut sim, a2, g), 0);
    assert!(sim
        .events(a2)
        .iter()
        .any(|e| matches!(e, Event::ReadElsewhere { group_id } if *group_id == g)));
    // One report covered Bob's two messages and Carol's.
    for id in [first, second] {
        assert_eq!(read_by(&mut sim, b, g, &id), 1);
    }
    assert_eq!(read_by(&mut sim, c, g, &carols), 1);
    let r = sim.engine(b).receipts(&g, &first).expect("receipts");
    assert_eq!(r.recipients, 2, "Alice (two devices, one person) and Carol");
    assert_eq!(
        r.read.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(),
        ["alice@north"]
    );
    assert!(r.per_person_delivery);
    // Delivered to Alice and Carol (receipts), read by Alice.
    let delivered: BTreeSet<&str> = r.delivered.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(delivered, ["alice@north", "carol@east"].into());

    // Nothing new: marking read again sends nothing.
    let sent = sim.relay.accepted.len();
    let now = sim.now;
    sim.engine(a).mark_read(&g, now).expect("read");
    sim.engine(a2).mark_read(&g, now).expect("read");
    sim.settle();
    assert_eq!(sim.relay.accepted.len(), sent, "no report for nothing new");

    // Carol reads: Bob's messages are read by two.
    let now = sim.now;
    sim.engine(c).mark_read(&g, now).expect("read");
    sim.settle();
    assert_eq!(read_by(&mut sim, b, g, &second), 2);
    // Carol's report did not go to Alice: none of Alice's messages were
    // read.
    assert_eq!(last_recipients(&sim, c), [sim.id(b)].into());
}

#[test]
fn a_user_who_turns_receipts_off_still_keeps_their_devices_in_step() {
    let (mut sim, [a, a2, b, _c], g) = ward();
    assert!(sim.engine(a).read_receipts().expect("setting"));
    sim.engine(a).set_read_receipts(false).expect("off");
    assert!(!sim.engine(a).read_receipts().expect("setting"));
    let id = sim.send(b, g, "bed 4 obs due");
    sim.settle();
    let now = sim.now;
    sim.engine(a).mark_read(&g, now).expect("read");
    sim.settle();
    assert_eq!(last_recipients(&sim, a), [sim.id(a2)].into());
    assert_eq!(unread(&mut sim, a2, g), 0);
    assert_eq!(read_by(&mut sim, b, g, &id), 0);
    // Only the sender may ask who read a message.
    assert!(matches!(
        sim.engine(a).receipts(&g, &id),
        Err(CoreError::Invalid(InvalidInput::NotYours))
    ));
}

/// A hostile member's report naming a message of another conversation, or
/// one nobody has, moves nothing; the phone's own messages are never unread
/// on the desk.
#[test]
fn reports_about_other_conversations_or_unknown_messages_move_nothing() {
    let (mut sim, [a, a2, b, c], g) = ward();
    let other = sim.group(b, "Pharmacy", &[a]);
    sim.settle();
    let elsewhere = sim.send(a, other, "in the other conversation");
    let here = sim.send(a, g, "here");
    sim.settle();
    let mine = sim.send(a2, g, "from my phone");
    sim.settle();
    assert_eq!(unread(&mut sim, a, g), 0, "own messages are not unread");
    // Carol claims, in Ward 7, to have read the Pharmacy message and a
    // message that never was: neither counts.
    let now = sim.now;
    sim.engine(c)
        .send_status_unchecked(
            &g,
            &[elsewhere, cascade_core::MessageId::v1([9; 16])],
            &[],
            now,
        )
        .expect("sent");
    sim.settle();
    for id in [here, mine] {
        assert_eq!(read_by(&mut sim, a, g, &id), 0);
    }
    assert!(sim.engine(a).read_marks(&g).expect("marks").is_empty());
    // A real read counts, and survives Carol leaving only while she stays.
    let now = sim.now;
    sim.engine(c).mark_read(&g, now).expect("read");
    sim.settle();
    assert_eq!(read_by(&mut sim, a, g, &here), 1);
    let (now, carol) = (sim.now, sim.user(c));
    sim.engine(a)
        .remove_members(&g, vec![carol], now)
        .expect("remove");
    sim.settle();
    assert_eq!(
        read_by(&mut sim, a, g, &here),
        0,
        "a departed reader no longer counts"
    );
    let _ = b;
}

/// A member who only reads sends reports that most members never receive:
/// generations of its ratchet they skip. Its next message to everyone,
/// well over openmls's default forward distance (1,000) later, still reads.
#[test]
fn a_quiet_readers_message_after_many_reports_still_reads() {
    let (mut sim, [a, _a2, b, c], g) = ward();
    let seen = sim.send(b, g, "bed 4 obs due");
    sim.settle();
    let bob = sim.user(b);
    for _ in 0..1_100 {
        let now = sim.now;
        sim.engine(c)
            .send_status_unchecked(&g, &[seen], std::slice::from_ref(&bob), now)
            .expect("report");
        sim.run();
    }
    sim.settle();
    sim.send(c, g, "at last, a word from Carol");
    sim.settle();
    for d in [a, b] {
        assert!(
            sim.texts(d, g)
                .contains(&"at last, a word from Carol".to_string()),
            "{d:?}"
        );
    }
}

/// "Seen by" scales: in a conversation of 40 people (past the 32 where
/// delivery receipts stop), everyone reading Alice's message costs one
/// report each, queued for Alice's device alone: 39 deliveries, where
/// reports to everyone would cost 39 × 39. Alice's message counts all 39.
#[test]
fn in_a_conversation_of_forty_each_reading_costs_one_delivery_to_the_sender() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let others: Vec<D> = (0..39)
        .map(|i| sim.device(&format!("u{i}@north"), &format!("Nurse {i}")))
        .collect();
    let g = sim.group(a, "Ward 7 all staff", &others);
    sim.settle();
    let notice = sim.send(a, g, "Fire drill at 15:00");
    sim.settle();
    let before = sim.relay.accepted.len();
    for &d in &others {
        let now = sim.now;
        sim.engine(d).mark_read(&g, now).expect("read");
    }
    sim.settle();
    let reports = &sim.relay.accepted[before..];
    assert_eq!(reports.len(), 39, "one report per reader");
    let alice = sim.id(a);
    assert!(reports.iter().all(|r| r.recipients == [alice].into()));
    let deliveries: usize = reports.iter().map(|r| r.recipients.len()).sum();
    assert_eq!(deliveries, 39);
    assert_eq!(
        sim.engine(a).message(&g, &notice).expect("there").read_by,
        39
    );
    let r = sim.engine(a).receipts(&g, &notice).expect("receipts");
    assert_eq!((r.recipients, r.read.len()), (39, 39));
    assert!(!r.per_person_delivery, "delivery is not tracked past 32");
}

/// A member cannot use the relay's addressing to show a message to some
/// members as if to all: devices accept only a read report addressed so;
/// a text, an edit or a rename addressed to Bob alone is dropped, and the
/// same text to everyone shows.
#[test]
fn a_message_addressed_to_some_members_is_shown_only_if_it_is_a_read_report() {
    use cascade_core::content::mapping;
    use cascade_core::Body;
    let (mut sim, [a, _a2, b, c], g) = ward();
    let room = sim.engine(c).room(&g).expect("room").expect("a room").uri;
    let whisper = |text: &str, salt: u8| {
        mapping::write(
            &Body::Text {
                text: text.into(),
                in_reply_to: None,
                mentions: Vec::new(),
            },
            1_700_000_000_000,
            [salt; 16],
            "mimi://east/u/carol",
            &room,
        )
        .expect("written")
        .bytes
    };
    let (now, bob) = (sim.now, sim.user(b));
    sim.engine(c)
        .send_raw_to(
            &g,
            whisper("only Bob sees: discharge bed 4", 1),
            &[bob],
            now,
        )
        .expect("sent");
    sim.settle();
    assert!(
        !sim.texts(b, g)
            .iter()
            .any(|t| t.contains("discharge bed 4")),
        "Bob's device drops it"
    );
    assert!(!sim
        .texts(a, g)
        .iter()
        .any(|t| t.contains("discharge bed 4")));
    let now = sim.now;
    sim.engine(c)
        .send_raw(&g, whisper("everyone sees: discharge bed 4", 2), now)
        .expect("sent");
    sim.settle();
    for d in [a, b] {
        assert!(sim
            .texts(d, g)
            .iter()
            .any(|t| t == "everyone sees: discharge bed 4"));
    }
}

/// A muted conversation raises no notification on the device that muted
/// it (the engine decides, not the front end); the list says so; others'
/// devices, and other conversations, are not affected.
#[test]
fn a_muted_conversation_raises_no_notification_on_that_device() {
    let (mut sim, [a, a2, b, _c], g) = ward();
    let other = sim.group(b, "Pharmacy", &[a]);
    sim.settle();
    sim.engine(a).set_muted(&g, true).expect("mute");
    let muted = |sim: &mut Sim, d: D, g: GroupId| {
        sim.engine(d)
            .conversations()
            .expect("list")
            .into_iter()
            .find(|c| c.group_id == g)
            .expect("there")
            .muted
    };
    assert!(muted(&mut sim, a, g));
    assert!(!muted(&mut sim, a2, g), "a setting of this device");
    let here = sim.send(b, g, "bed 4 obs due");
    let there = sim.send(b, other, "amoxicillin back in stock");
    sim.settle();
    let notifies = |sim: &mut Sim, d: D, g: GroupId, id| {
        let m = sim.engine(d).message(&g, &id).expect("there");
        sim.engine(d).notifies(&m).expect("decided")
    };
    assert!(!notifies(&mut sim, a, g, here));
    assert!(notifies(&mut sim, a2, g, here));
    assert!(notifies(&mut sim, a, other, there));
    // Never one's own messages.
    let mine = sim.send(a, g, "on it");
    sim.settle();
    assert!(!notifies(&mut sim, a2, g, mine));
    sim.engine(a).set_muted(&g, false).expect("unmute");
    assert!(notifies(&mut sim, a, g, here));
}
