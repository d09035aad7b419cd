//! Replies, edits, deletes for everyone and reactions between real
//! engines on the simulated relay (`sim/`): what each device shows, what
//! each receiver refuses, and what is left in the store.

mod sim;

use cascade_core::content::mapping;
use cascade_core::{Body, CoreError, Event, InvalidInput, MessageChange, MessageId};
use cascade_protocol::*;
use sim::*;

fn text_of(sim: &mut Sim, d: D, g: GroupId, id: &MessageId) -> Option<String> {
    sim.engine(d).message(&g, id).expect("message").text
}

/// Alice (on two devices) and Bob in one conversation.
fn ward() -> (Sim, D, D, D, GroupId) {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice desk");
    let a2 = sim.device("alice@north", "Alice phone");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Ward 7", &[b]);
    (sim, a, a2, b, g)
}

#[test]
fn a_reply_shows_the_message_it_answers_on_every_device() {
    let (mut sim, a, a2, b, g) = ward();
    let first = sim.send(a, g, "bed 12 is ready");
    assert_eq!(
        first.as_bytes().len(),
        32,
        "a MIMI id: the conversation has a room"
    );
    sim.settle();
    let now = sim.now;
    let reply = sim
        .engine(b)
        .send_message(&g, "on my way", Some(&first), now)
        .expect("reply");
    sim.settle();
    for d in [a, a2, b] {
        let m = sim.engine(d).message(&g, &reply).expect("reply there");
        let q = m.reply_to.expect("a reply");
        assert_eq!(q.id, first);
        assert_eq!(q.sender.as_ref().map(|u| u.as_str()), Some("alice@north"));
        assert_eq!(q.text.as_deref(), Some("bed 12 is ready"));
    }
    // A reply to what is not in the conversation is refused before sending.
    let bogus = MessageId::from_bytes(&[1; 32]).expect("id");
    assert!(matches!(
        sim.engine(b).send_message(&g, "?", Some(&bogus), now),
        Err(CoreError::Invalid(InvalidInput::UnknownMessage))
    ));
}

#[test]
fn an_edit_reaches_every_device_and_keeps_the_earlier_text() {
    let (mut sim, a, a2, b, g) = ward();
    let id = sim.send(a, g, "bed 12 at 14:00");
    sim.settle();
    let now = sim.now;
    sim.engine(a)
        .edit_message(&g, &id, "bed 12 at 15:00", now)
        .expect("edit");
    sim.settle();
    for d in [a, a2, b] {
        let m = sim.engine(d).message(&g, &id).expect("there");
        assert_eq!(m.text.as_deref(), Some("bed 12 at 15:00"), "{d:?}");
        assert!(m.edited_at.is_some());
        let earlier = sim.engine(d).message_versions(&g, &id).expect("versions");
        assert_eq!(
            earlier.iter().map(|v| v.text.as_str()).collect::<Vec<_>>(),
            ["bed 12 at 14:00"]
        );
    }
    assert!(sim.events(b).iter().any(|e| matches!(
        e,
        Event::MessageChanged {
            change: MessageChange::Edited,
            ..
        }
    )));
    // Alice's phone may edit it too (the same user); Bob may not.
    let now = sim.now;
    sim.engine(a2)
        .edit_message(&g, &id, "bed 12 at 15:30", now)
        .expect("edit from the phone");
    assert!(matches!(
        sim.engine(b).edit_message(&g, &id, "mine now", now),
        Err(CoreError::Invalid(InvalidInput::NotYours))
    ));
    sim.settle();
    assert_eq!(
        text_of(&mut sim, b, g, &id).as_deref(),
        Some("bed 12 at 15:30")
    );
    assert_eq!(sim.engine(a).message_versions(&g, &id).expect("v").len(), 2);
}

/// Bob's device is hostile: it sends an edit and a delete of Alice's
/// message, bypassing its own checks. Every receiver refuses both.
#[test]
fn a_receiver_refuses_an_edit_or_delete_by_someone_else() {
    let (mut sim, a, a2, b, g) = ward();
    let id = sim.send(a, g, "give 5 mg");
    sim.settle();
    let room = sim.engine(b).room(&g).expect("room").expect("has a room");
    let bob = mapping::sender_uri(&sim.user(b));
    let now = sim.now;
    for body in [
        Body::Edit {
            target: id,
            text: "give 50 mg".into(),
            mentions: Vec::new(),
        },
        Body::Delete { target: id },
    ] {
        let forged = mapping::write(&body, now, rand_salt(), &bob, &room.uri).expect("write");
        sim.engine(b)
            .send_raw(&g, forged.bytes, now)
            .expect("queued");
    }
    sim.settle();
    for d in [a, a2] {
        let m = sim.engine(d).message(&g, &id).expect("there");
        assert_eq!(m.text.as_deref(), Some("give 5 mg"), "{d:?}");
        assert_eq!((m.edited_at, m.deleted_by), (None, None));
    }
    // A message claiming (in its extensions) another sender is dropped.
    let mut forged = cascade_core::content::mimi::MimiContent::new(
        cascade_core::content::mimi::NestedPart::single(
            cascade_core::content::mimi::Disposition::RENDER,
            mapping::TEXT_PLAIN,
            b"from alice, honest".to_vec(),
        ),
    );
    forged.extensions.push((
        cascade_core::content::mimi::ExtensionKey::Int(cascade_core::content::mimi::EXT_SENDER_URI),
        ciborium::Value::Text(mapping::sender_uri(&sim.user(a))),
    ));
    sim.engine(b)
        .send_raw(&g, forged.encode(), now)
        .expect("queued");
    sim.settle();
    assert!(!sim.texts(a, g).iter().any(|t| t.contains("honest")));
    // The conversation carries on.
    sim.send(b, g, "sorry");
    sim.settle();
    assert_eq!(sim.texts(a, g).last().map(String::as_str), Some("sorry"));
}

fn rand_salt() -> [u8; 16] {
    let mut s = [0u8; 16];
    s.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8 * 7);
    s
}

#[test]
fn a_delete_erases_the_text_everywhere_and_leaves_a_tombstone() {
    let (mut sim, a, a2, b, g) = ward();
    let id = sim.send(a, g, "wrong patient: J. Smith 01/02/1950");
    sim.settle();
    assert_eq!(
        sim.rows_holding(b, "J. Smith"),
        1,
        "the scan finds the text before the delete"
    );
    let now = sim.now;
    sim.engine(b).react(&g, &id, "👀", now).expect("react");
    sim.settle();
    let reply = sim
        .engine(b)
        .send_message(&g, "which bed?", Some(&id), now)
        .expect("reply");
    sim.settle();
    // Bob is not an admin: he cannot delete Alice's message.
    assert!(matches!(
        sim.engine(b).delete_message(&g, &id, now),
        Err(CoreError::Invalid(InvalidInput::NotYours))
    ));
    sim.engine(a).delete_message(&g, &id, now).expect("delete");
    sim.settle();
    for d in [a, a2, b] {
        let m = sim.engine(d).message(&g, &id).expect("tombstone");
        assert_eq!(m.text, None);
        assert_eq!(
            m.deleted_by.as_ref().map(|u| u.as_str()),
            Some("alice@north")
        );
        assert!(m.reactions.is_empty());
        let q = sim
            .engine(d)
            .message(&g, &reply)
            .expect("reply")
            .reply_to
            .expect("q");
        assert!(q.deleted && q.text.is_none(), "{d:?}: {q:?}");
        // Gone from the file, not only hidden.
        assert_eq!(sim.rows_holding(d, "J. Smith"), 0, "{d:?}");
    }
    // Nothing more can be done to it.
    assert!(matches!(
        sim.engine(a).edit_message(&g, &id, "x", now),
        Err(CoreError::Invalid(InvalidInput::Deleted))
    ));
}

#[test]
fn the_creator_is_admin_and_may_delete_anyones_message() {
    let (mut sim, a, a2, b, g) = ward();
    let id = sim.send(b, g, "patient details in the wrong place");
    sim.settle();
    let room = sim.engine(b).room(&g).expect("room").expect("a room");
    assert_eq!(room.admins, [sim.user(a)]);
    let now = sim.now;
    sim.engine(a)
        .delete_message(&g, &id, now)
        .expect("admin delete");
    sim.settle();
    for d in [a, a2, b] {
        let m = sim.engine(d).message(&g, &id).expect("tombstone");
        assert_eq!((m.text, m.deleted_by), (None, Some(sim.user(a))), "{d:?}");
    }
}

#[test]
fn reactions_are_one_per_person_per_emoji_and_can_be_taken_back() {
    let (mut sim, a, a2, b, g) = ward();
    let id = sim.send(a, g, "handover at 19:30");
    sim.settle();
    let now = sim.now;
    sim.engine(b).react(&g, &id, "👍", now).expect("react");
    sim.engine(b)
        .react(&g, &id, "👍", now)
        .expect("again: nothing");
    sim.engine(a2).react(&g, &id, "👍", now).expect("react");
    sim.engine(a).react(&g, &id, "✅", now).expect("react");
    sim.settle();
    for d in [a, a2, b] {
        let r = sim.engine(d).message(&g, &id).expect("m").reactions;
        // In the order each device saw them: compared sorted.
        let mut shown: Vec<(String, Vec<String>)> = r
            .into_iter()
            .map(|r| {
                let mut users: Vec<String> = r.users.iter().map(|u| u.to_string()).collect();
                users.sort();
                (r.emoji, users)
            })
            .collect();
        shown.sort();
        assert_eq!(
            shown,
            [
                ("✅".to_string(), vec!["alice@north".to_string()]),
                (
                    "👍".to_string(),
                    vec!["alice@north".to_string(), "bob@north".into()]
                ),
            ],
            "{d:?}"
        );
    }
    sim.engine(b)
        .unreact(&g, &id, "👍", now)
        .expect("take back");
    assert!(matches!(
        sim.engine(b).unreact(&g, &id, "👍", now),
        Err(CoreError::Invalid(InvalidInput::NoSuchReaction))
    ));
    assert!(matches!(
        sim.engine(b).react(&g, &id, "two words", now),
        Err(CoreError::Invalid(InvalidInput::Reaction { .. }))
    ));
    sim.settle();
    for d in [a, a2, b] {
        let r = sim.engine(d).message(&g, &id).expect("m").reactions;
        assert_eq!(r[0].users, [sim.user(a)], "{d:?}");
    }
}
