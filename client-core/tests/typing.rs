//! Typing indicators between real engines on the simulated relay (`sim/`):
//! live only, throttled, lapsing by themselves, cleared by the person's
//! message, never kept for a device offline, and never accepted when
//! replayed, moved to another device, or forged by a member who holds the
//! group's key.

mod sim;

use cascade_core::engine::typing::{LABEL, SEND_EVERY_MS, SHOWN_MS};
use cascade_core::store::ClientStore;
use cascade_core::{Event, GroupId};
use cascade_protocol::frames::Bytes;
use cascade_protocol::*;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::OpenMlsProvider;
use sim::*;

/// Alice (desk and phone), Bob, and Carol of another organisation.
fn ward() -> (Sim, [D; 4], GroupId) {
    let mut sim = Sim::new();
    sim.trust_each_other("north", "east");
    let a = sim.device("alice@north", "Alice Smith");
    let a2 = sim.device("alice@north", "Alice Smith");
    let b = sim.device("bob@north", "Bob Jones");
    let c = sim.device("carol@east", "Carol Shaw");
    let g = sim.group(a, "Ward 7", &[a2, b, c]);
    sim.settle();
    for d in [a, a2, b, c] {
        sim.events(d);
    }
    (sim, [a, a2, b, c], g)
}

/// The typing events a device got: who, and until when.
fn typing_events(sim: &mut Sim, d: D) -> Vec<(UserId, u64)> {
    sim.events(d)
        .into_iter()
        .filter_map(|e| match e {
            Event::Typing { user_id, until, .. } => Some((user_id, until)),
            _ => None,
        })
        .collect()
}

fn alice() -> UserId {
    UserId::new("alice@north").expect("valid")
}

#[test]
fn typing_reaches_the_members_online_lapses_and_ends_with_the_message() {
    let (mut sim, [a, a2, b, c], g) = ward();
    let now = sim.now;
    sim.engine(a).set_typing(&g, true, now).expect("typing");
    sim.run();
    for d in [b, c] {
        assert_eq!(
            typing_events(&mut sim, d),
            vec![(alice(), now + SHOWN_MS)],
            "{d:?}"
        );
        assert_eq!(sim.engine(d).typing(&g, now), vec![alice()]);
        assert!(
            sim.engine(d).typing(&g, now + SHOWN_MS).is_empty(),
            "it lapses"
        );
    }
    // Alice's own phone does not show her typing.
    assert!(typing_events(&mut sim, a2).is_empty());
    // More keystrokes within 3 s send nothing more; after, one more.
    sim.engine(a)
        .set_typing(&g, true, now + 1_000)
        .expect("typing");
    sim.run();
    assert_eq!(sim.relay.typing.len(), 1);
    sim.engine(a)
        .set_typing(&g, true, now + SEND_EVERY_MS)
        .expect("typing");
    sim.run();
    assert_eq!(sim.relay.typing.len(), 2);
    assert_eq!(typing_events(&mut sim, b).len(), 1);
    // Her message arrives: she is no longer typing.
    sim.send(a, g, "bed 4 obs done");
    sim.run();
    assert_eq!(typing_events(&mut sim, b), vec![(alice(), 0)]);
    let now = sim.now;
    assert!(sim.engine(b).typing(&g, now).is_empty());
    // After sending, typing again is said at once; clearing the draft
    // says "stopped".
    let now = sim.now;
    sim.engine(a).set_typing(&g, true, now).expect("typing");
    sim.engine(a)
        .set_typing(&g, false, now + 10)
        .expect("stopped");
    sim.run();
    assert_eq!(
        typing_events(&mut sim, c),
        vec![(alice(), now + SHOWN_MS), (alice(), 0)]
    );
    // A cleared draft with nothing said before sends nothing.
    let sent = sim.relay.typing.len();
    sim.engine(a)
        .set_typing(&g, false, now + 20)
        .expect("stopped");
    sim.run();
    assert_eq!(sim.relay.typing.len(), sent);
}

#[test]
fn a_device_offline_never_sees_typing() {
    let (mut sim, [a, _a2, b, c], g) = ward();
    sim.disconnect(c);
    let now = sim.now;
    sim.engine(a).set_typing(&g, true, now).expect("typing");
    sim.run();
    assert_eq!(typing_events(&mut sim, b).len(), 1);
    sim.connect(c);
    sim.settle();
    assert!(typing_events(&mut sim, c).is_empty());
    assert!(sim.engine(c).typing(&g, now).is_empty());
    // Offline, the typist sends nothing (and keeps nothing for later).
    sim.disconnect(a);
    let now = sim.now;
    sim.engine(a)
        .set_typing(&g, true, now + SEND_EVERY_MS)
        .expect("typing offline");
    sim.connect(a);
    sim.settle();
    assert_eq!(sim.relay.typing.len(), 1);
}

/// A hostile relay replays Alice's indicator, passes it off as Bob's, or as
/// of another epoch; Bob, who holds the group's key, seals one as Alice's
/// device (he cannot sign as her). Carol shows none of them.
#[test]
fn replayed_moved_or_forged_indicators_are_dropped() {
    let (mut sim, [a, _a2, b, c], g) = ward();
    let now = sim.now;
    sim.engine(a).set_typing(&g, true, now).expect("typing");
    sim.run();
    sim.engine(a)
        .set_typing(&g, false, now + 1)
        .expect("stopped");
    sim.run();
    assert_eq!(typing_events(&mut sim, c).len(), 2);
    let (from, _, typing) = sim.relay.typing[0].clone();
    let epoch = sim.relay.groups[&g].epoch;
    let carol = sim.id(c);
    // Replayed after the newer "stopped": too old.
    sim.push_typing(carol, g, from, epoch, typing.clone());
    // Said to be Bob's: it does not open.
    sim.push_typing(carol, g, sim.id(b), epoch, typing.clone());
    // Of another epoch, or cut short, or nonsense.
    sim.push_typing(carol, g, from, epoch + 1, typing.clone());
    sim.push_typing(carol, g, from, epoch, Bytes::from(typing[..20].to_vec()));
    sim.push_typing(carol, g, from, epoch, Bytes::from(vec![0u8; 101]));
    // Bob seals one as Alice's desk with the group's key, signed by him.
    let forged = {
        // Bob's own database, opened beside his running engine.
        let store = cascade_core::store::SqliteStore::open(
            &sim.path(b),
            &cascade_core::store::StoreKey::key(STORE_KEY),
        )
        .expect("store");
        let group = cascade_core::engine::load_group(&store, &g).expect("group");
        let provider = store.mls();
        let crypto = provider.crypto();
        let key = group
            .export_secret(crypto, LABEL, &[], 16)
            .expect("exported");
        let mut plaintext = vec![1u8];
        plaintext.extend_from_slice(&(now + 5).to_be_bytes());
        plaintext.extend_from_slice(&[7u8; 64]);
        let mut aad = g.as_bytes().to_vec();
        aad.extend_from_slice(&epoch.to_be_bytes());
        aad.extend_from_slice(from.as_bytes());
        let nonce = [3u8; 12];
        let sealed = crypto
            .aead_encrypt(
                openmls_traits::types::AeadType::Aes128Gcm,
                &key,
                &plaintext,
                &nonce,
                &aad,
            )
            .expect("sealed");
        let mut payload = nonce.to_vec();
        payload.extend_from_slice(&sealed);
        payload
    };
    sim.push_typing(carol, g, from, epoch, Bytes::from(forged));
    sim.run();
    assert!(typing_events(&mut sim, c).is_empty());
    assert!(sim.engine(c).typing(&g, now).is_empty());
    // The conversation carries on, and Alice's next indicator shows.
    let now = sim.now;
    sim.engine(a)
        .set_typing(&g, true, now + SEND_EVERY_MS)
        .expect("typing");
    sim.run();
    assert_eq!(typing_events(&mut sim, c).len(), 1);
}
