//! Mentions between real engines on the simulated relay (`sim/`): `@` and
//! a member's user id becomes a mention that every device shows with the
//! person's certified name, that reaches them in a muted conversation, that
//! an edit carries, and that a hostile member cannot dress up as someone
//! else.

mod sim;

use cascade_core::content::mapping;
use cascade_core::content::mimi::{Disposition, MimiContent, NestedPart};
use cascade_core::engine::mentions;
use cascade_protocol::*;
use sim::*;

/// Alice Smith (desk and phone) and Bob Jones of `north`, Carol Shaw of
/// `east`, in Ward 7.
fn ward() -> (Sim, [D; 4], GroupId) {
    let mut sim = Sim::new();
    sim.trust_each_other("north", "east");
    let a = sim.device("alice@north", "Alice Smith");
    let a2 = sim.device("alice@north", "Alice Smith");
    let b = sim.device("bob@north", "Bob Jones");
    let c = sim.device("carol@east", "Carol Shaw");
    let g = sim.group(a, "Ward 7", &[a2, b, c]);
    sim.settle();
    (sim, [a, a2, b, c], g)
}

fn user(s: &str) -> UserId {
    UserId::new(s).expect("valid")
}

#[test]
fn a_mention_shows_the_certified_name_and_reaches_a_muted_conversation() {
    let (mut sim, [a, a2, b, c], g) = ward();
    sim.engine(c).set_muted(&g, true).expect("mute");
    sim.engine(b).set_muted(&g, true).expect("mute");
    let id = sim.send(a, g, "@carol@east can you check bed 4? Not you, bob@north.");
    sim.settle();
    for d in [a, a2, b, c] {
        let m = sim.engine(d).message(&g, &id).expect("there");
        assert_eq!(
            m.text.as_deref(),
            Some("@Carol Shaw can you check bed 4? Not you, bob@north."),
            "{d:?}"
        );
        assert_eq!(m.mentions.len(), 1, "{d:?}");
        assert!(m.mentions(&user("carol@east")));
        assert_eq!(
            &m.text.as_deref().expect("present")[m.mentions[0].range()],
            "@Carol Shaw"
        );
    }
    let notifies = |sim: &mut Sim, d: D| {
        let m = sim.engine(d).message(&g, &id).expect("there");
        sim.engine(d).notifies(&m).expect("decided")
    };
    // Carol muted the conversation, but she is mentioned; Bob is not.
    assert!(notifies(&mut sim, c));
    assert!(!notifies(&mut sim, b));
    // Found by the name shown.
    let hits = sim
        .engine(b)
        .search(&cascade_core::SearchQuery {
            text: "Shaw".into(),
            limit: 10,
            ..Default::default()
        })
        .expect("search");
    assert_eq!(hits.len(), 1);
}

#[test]
fn an_edit_carries_its_mentions_and_the_typed_text_comes_back() {
    let (mut sim, [a, a2, b, c], g) = ward();
    let id = sim.send(a, g, "@bob@north bed 4");
    sim.settle();
    let m = sim.engine(a).message(&g, &id).expect("there");
    let typed = mentions::as_typed(m.text.as_deref().expect("present"), &m.mentions);
    assert_eq!(typed, "@bob@north bed 4");
    let now = sim.now;
    sim.engine(a)
        .edit_message(&g, &id, "@carol@east bed 4, not Bob", now)
        .expect("edit");
    sim.settle();
    for d in [a, a2, b, c] {
        let m = sim.engine(d).message(&g, &id).expect("there");
        assert_eq!(
            m.text.as_deref(),
            Some("@Carol Shaw bed 4, not Bob"),
            "{d:?}"
        );
        assert!(m.mentions(&user("carol@east")), "{d:?}");
        assert!(!m.mentions(&user("bob@north")), "{d:?}");
    }
    // Deleted for everyone: the mentions go with the text.
    let now = sim.now;
    sim.engine(a).delete_message(&g, &id, now).expect("delete");
    sim.settle();
    let m = sim.engine(c).message(&g, &id).expect("there");
    assert_eq!((m.text, m.mentions), (None, vec![]));
}

/// Bob's device is hostile: its mention of Carol reads "@Dr Chief", and it
/// mentions Dave, who is not in the conversation. Every receiver shows
/// Carol's certified name, and no mention of Dave.
#[test]
fn a_member_cannot_rename_whom_they_mention() {
    let (mut sim, [a, _a2, b, c], g) = ward();
    let room = sim.engine(b).room(&g).expect("room").expect("a room");
    let mut forged = MimiContent::new(NestedPart::single(
        Disposition::RENDER,
        "text/markdown;variant=GFM-MIMI",
        b"[@Dr Chief](mimi://east/u/carol) says stop the infusion, [@Dave](mimi://north/u/dave) agrees"
            .to_vec(),
    ));
    forged.salt = [9; 16];
    let now = sim.now;
    sim.engine(b)
        .send_raw(&g, forged.encode(), now)
        .expect("queued");
    sim.settle();
    let id = mapping::read(
        &forged.encode(),
        &mapping::sender_uri(&sim.user(b)),
        &room.uri,
        now,
    )
    .expect("reads")
    .id;
    for d in [a, c] {
        let m = sim.engine(d).message(&g, &id).expect("there");
        assert_eq!(
            m.text.as_deref(),
            Some("@Carol Shaw says stop the infusion, @Dave agrees"),
            "{d:?}"
        );
        assert_eq!(m.mentions.len(), 1);
        assert!(m.mentions(&user("carol@east")));
        assert!(!m.mentions(&user("dave@north")));
    }
}

/// An `@` that names nobody in the conversation stays as typed; a
/// handle in any case is found.
#[test]
fn handles_that_name_nobody_stay_as_typed() {
    let (mut sim, [a, _a2, b, _c], g) = ward();
    let id = sim.send(a, g, "mail dave@north or @dave@north, or @Bob@North");
    sim.settle();
    let m = sim.engine(b).message(&g, &id).expect("there");
    assert_eq!(
        m.text.as_deref(),
        Some("mail dave@north or @dave@north, or @Bob Jones")
    );
    assert!(m.mentions(&user("bob@north")));
    assert_eq!(m.mentions.len(), 1);
}
