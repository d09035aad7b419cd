//! Whom a device accepts, against the simulated relay: every member is
//! verified where it enters the device's view (a claimed KeyPackage, a
//! Welcome, another member's commit, a directory entry), and only lists
//! signed by the organisation's CA, newer than what the device holds, are
//! taken in.

mod sim;

use cascade_admin::OrgCa;
use cascade_core::{ConversationState, Event};
use cascade_protocol::*;
use sim::*;

fn uid(s: &str) -> UserId {
    UserId::new(s).expect("valid")
}

fn org(s: &str) -> OrgId {
    OrgId::new(s).expect("valid")
}

/// A forger's CA in the name of `org`.
fn forger(org_id: &str) -> OrgCa {
    OrgCa::generate(&org(org_id), "Not them", (T0 / 1000) as i64 - 86_400, 30).expect("CA")
}

/// Whether `d` reported a failure containing `what`.
fn reported(sim: &mut Sim, d: D, what: &str) -> bool {
    let evs = sim.events(d);
    let f = failures(&evs);
    assert!(
        f.iter().any(|r| r.contains(what)),
        "expected a failure naming {what:?}, got {f:?}"
    );
    true
}

// ----- claimed KeyPackages ----------------------------------------------------

#[test]
fn a_forged_colleague_is_refused_when_claimed() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let fake = forger("north");
    let _m = sim.device_under("bob@north", "Bob", &fake);
    let g = sim.group(a, "Ward", &[]);
    sim.events(a);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("bob@north")], now)
        .expect("queued");
    sim.settle();
    assert!(reported(&mut sim, a, "not signed by its organisation"));
    assert_eq!(sim.engine(a).members(&g).expect("members").len(), 1);
}

#[test]
fn a_revoked_colleague_is_refused_when_claimed_even_if_the_relay_hands_it_out() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Ward", &[]);
    // North revokes Bob's device; this relay lags and still serves it.
    let list = sim.revocation_list("north", &[b], 1);
    sim.serve_revocations("north", list);
    sim.settle();
    sim.events(a);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("bob@north")], now)
        .expect("queued");
    sim.settle();
    assert!(reported(&mut sim, a, "revoked"));
    assert_eq!(sim.engine(a).members(&g).expect("members").len(), 1);
}

#[test]
fn an_expired_colleague_is_refused_when_claimed() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.enrol("bob@north", "Bob");
    sim.certify_for(b, 2);
    sim.connect(b);
    sim.settle();
    sim.certify_for(a, 60);
    sim.settle();
    let g = sim.group(a, "Ward", &[]);
    sim.advance(3 * 86_400 * 1000);
    sim.settle();
    sim.events(a);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("bob@north")], now)
        .expect("queued");
    sim.settle();
    assert!(reported(&mut sim, a, "expired"));
    assert_eq!(sim.engine(a).members(&g).expect("members").len(), 1);
}

// ----- others' Welcomes and commits ------------------------------------------

/// North trusts east and west; east trusts north only. Alice (north) can
/// bring Wendy (west) into a conversation; Bob (east) must not follow her
/// there.
fn three_orgs() -> (Sim, D, D, D) {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@east", "Bob");
    let w = sim.device("wendy@west", "Wendy");
    sim.trust("north", "east");
    sim.trust("north", "west");
    sim.trust("east", "north");
    sim.trust("west", "north");
    sim.settle();
    (sim, a, b, w)
}

#[test]
fn a_welcome_into_a_conversation_with_an_untrusted_member_is_refused() {
    let (mut sim, a, b, w) = three_orgs();
    let g = sim.group(a, "Mixed", &[w]);
    sim.events(b);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("bob@east")], now)
        .expect("queued");
    sim.settle();
    assert!(reported(&mut sim, b, "west is not trusted"));
    assert!(sim.engine(b).conversation(&g).is_err(), "Bob did not join");
}

#[test]
fn a_commit_bringing_in_an_untrusted_member_is_refused_and_not_followed() {
    let (mut sim, a, b, _w) = three_orgs();
    let g = sim.group(a, "Ward", &[b]);
    let before = sim.epoch(b, g);
    sim.events(b);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("wendy@west")], now)
        .expect("queued");
    sim.settle();
    assert!(reported(&mut sim, b, "west is not trusted"));
    assert_eq!(sim.epoch(b, g), before, "Bob did not follow the commit");
    // What comes after cannot bring Bob back into a conversation with a
    // member his organisation does not trust: he stops following it.
    sim.send(a, g, "after Wendy joined");
    sim.settle();
    assert!(sim.texts(b, g).is_empty());
    assert_ne!(sim.state(b, g), Some(ConversationState::Active));
}

#[test]
fn a_commit_bringing_in_a_forged_member_is_refused() {
    // East pins a forger's CA as if it were north's; north's Bob must not
    // accept the forged colleague Eve brings in.
    let mut sim = Sim::new();
    let fake = forger("west");
    let eve = sim.device("eve@east", "Eve");
    let b = sim.device("bob@north", "Bob");
    let m = sim.device_under("mallory@west", "Mallory", &fake);
    sim.trust_each_other("north", "east");
    // East's list pins the forger as west.
    let now = (sim.now / 1000) as i64;
    let ders = vec![
        sim.ca("north").cert_der().to_vec(),
        fake.cert_der().to_vec(),
    ];
    let doc = sim
        .ca("east")
        .sign_trust_list(&ders, 9, now)
        .expect("signed");
    sim.serve_trust_list("east", doc);
    sim.settle();
    let g = sim.group(eve, "Ward", &[b]);
    sim.events(b);
    let now = sim.now;
    sim.engine(eve)
        .add_members(&g, vec![uid("mallory@west")], now)
        .expect("queued");
    sim.settle();
    assert!(sim
        .engine(eve)
        .members(&g)
        .expect("m")
        .iter()
        .any(|x| x.device_id == sim.id(m)));
    assert!(reported(&mut sim, b, "not trusted"));
    assert!(!sim
        .engine(b)
        .members(&g)
        .unwrap_or_default()
        .iter()
        .any(|x| x.user_id == uid("mallory@west")));
}

#[test]
fn a_commit_bringing_in_a_revoked_member_is_refused() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let c = sim.device("carol@north", "Carol");
    let g = sim.group(a, "Ward", &[b]);
    // Bob learns that north revoked Carol's device before Alice does (Alice
    // is offline; the relay lags and still lets Carol be added).
    sim.disconnect(a);
    let list = sim.revocation_list("north", &[c], 1);
    sim.serve_revocations("north", list.clone());
    sim.settle();
    sim.relay_forget_revocations("north");
    sim.connect(a);
    sim.settle();
    sim.events(b);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("carol@north")], now)
        .expect("queued");
    sim.settle();
    assert!(reported(&mut sim, b, "revoked"));
}

#[test]
fn a_commit_bringing_in_an_expired_member_is_refused() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let c = sim.enrol("carol@north", "Carol");
    sim.certify_for(c, 2);
    sim.connect(c);
    sim.settle();
    let g = sim.group(a, "Ward", &[b]);
    // Alice adds Carol while her certificate is valid; Bob, offline for
    // three days, processes the commit after it expired.
    sim.disconnect(b);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("carol@north")], now)
        .expect("queued");
    sim.settle();
    assert_eq!(sim.engine(a).members(&g).expect("m").len(), 3);
    sim.advance(3 * 86_400 * 1000);
    sim.certify_for(a, 60);
    sim.certify_for(b, 60);
    sim.connect(b);
    sim.settle();
    assert!(reported(&mut sim, b, "expired"));
}

// ----- trust and revocation lists ----------------------------------------------

#[test]
fn a_tampered_or_older_trust_list_is_ignored() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    sim.trust("north", "east");
    sim.settle();
    assert_eq!(sim.engine(a).trusted_orgs(), [org("north"), org("east")]);
    // The relay swaps east for its accomplice mallory.
    let mut doc = sim.trust_list("north", &["east"], 5);
    let mallorys = sim.trust_list("mallory", &["east"], 5);
    doc.body = mallorys.body;
    sim.serve_trust_list("north", doc);
    sim.settle();
    assert!(reported(&mut sim, a, "trust list was refused"));
    assert_eq!(sim.engine(a).trusted_orgs(), [org("north"), org("east")]);
    // A genuine but older list (serial 1 < the one held) changes nothing.
    let old = sim.trust_list("north", &[], 1);
    sim.serve_trust_list("north", old);
    sim.settle();
    assert_eq!(sim.engine(a).trusted_orgs(), [org("north"), org("east")]);
    // A list signed by another CA in north's name is refused too.
    let fake = forger("north");
    let now = (sim.now / 1000) as i64;
    let forged = fake.sign_trust_list(&[], 99, now).expect("signed");
    sim.serve_trust_list("north", forged);
    sim.settle();
    assert_eq!(sim.engine(a).trusted_orgs(), [org("north"), org("east")]);
    // The genuine newer list is taken.
    let newer = sim.trust_list("north", &[], 7);
    sim.serve_trust_list("north", newer);
    sim.settle();
    assert_eq!(sim.engine(a).trusted_orgs(), [org("north")]);
}

#[test]
fn a_forged_or_older_revocation_list_is_ignored() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let c = sim.device("carol@north", "Carol");
    let g = sim.group(a, "Ward", &[b, c]);
    // A list in north's name signed by someone else: nobody is removed.
    let fake = forger("north");
    let now = (sim.now / 1000) as i64;
    let forged = fake.sign_revocations(&[sim.id(b)], 3, now).expect("signed");
    sim.serve_revocations("north", forged);
    sim.settle();
    assert_eq!(sim.engine(a).members(&g).expect("m").len(), 3);
    // North's genuine list revokes Carol: she is removed.
    let list = sim.revocation_list("north", &[c], 2);
    sim.serve_revocations("north", list);
    sim.settle();
    assert_eq!(sim.engine(a).members(&g).expect("m").len(), 2);
    // An older genuine list naming Bob (serial 1) is ignored.
    let old = sim.revocation_list("north", &[b], 1);
    sim.serve_revocations("north", old);
    sim.settle();
    let members: Vec<_> = sim
        .engine(a)
        .members(&g)
        .expect("m")
        .into_iter()
        .map(|m| m.device_id)
        .collect();
    assert!(members.contains(&sim.id(b)));
}

#[test]
fn a_forged_directory_entry_is_dropped() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let _b = sim.device("bob@north", "Bob");
    let fake = forger("north");
    let _m = sim.device_under("mallory@north", "Mallory", &fake);
    let q = sim
        .engine(a)
        .search_directory("north")
        .expect("query")
        .expect("online");
    sim.settle();
    let answers = sim.answers(a);
    let Some((_, cascade_core::Answer::People(people))) = answers.iter().find(|(id, _)| *id == q)
    else {
        panic!("expected people, got {answers:?}");
    };
    let users: Vec<_> = people.iter().map(|p| p.user_id.as_str()).collect();
    assert!(users.contains(&"bob@north"));
    assert!(users.contains(&"alice@north"));
    assert!(!users.contains(&"mallory@north"), "{users:?}");
}

#[test]
fn a_trust_list_changed_while_offline_applies_before_the_backlog() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@east", "Bob");
    sim.trust("east", "north");
    sim.settle();
    sim.disconnect(a);
    sim.trust("north", "east");
    let g = sim.group(b, "Cross", &[a]);
    sim.events(a);
    sim.connect(a);
    sim.settle();
    assert!(failures(&sim.events(a)).is_empty());
    assert_eq!(sim.state(a, g), Some(ConversationState::Active));
}

#[test]
fn events_carry_notifications_and_answers_go_to_who_asked() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let q = sim
        .engine(a)
        .request_user(&uid("alice@north"))
        .expect("q")
        .expect("online");
    sim.settle();
    let answers = sim.answers(a);
    assert_eq!(
        answers,
        [(q, cascade_core::Answer::Devices(vec![sim.id(a)]))]
    );
    // Offline, a query is not asked at all.
    sim.disconnect(a);
    assert_eq!(
        sim.engine(a).request_user(&uid("alice@north")).expect("q"),
        None
    );
    // A query outstanding when the connection drops is answered so.
    sim.connect(a);
    sim.settle();
    let q = sim
        .engine(a)
        .request_user(&uid("alice@north"))
        .expect("q")
        .expect("online");
    sim.disconnect(a);
    assert_eq!(sim.answers(a), [(q, cascade_core::Answer::Disconnected)]);
    assert!(!sim
        .events(a)
        .iter()
        .any(|e| matches!(e, Event::OperationFailed { .. })));
}

/// The idle lock an organisation sets reaches its own devices through its
/// signed trust list, within the bounds devices accept, and stays after a
/// restart; a forged list, or another organisation's, changes nothing.
#[test]
fn an_organisations_device_policy_reaches_its_devices_only() {
    use cascade_core::identity::{DevicePolicy, DEFAULT_IDLE_LOCK_SECS};
    let policy = |secs| DevicePolicy {
        idle_lock_secs: secs,
        max_retention_days: None,
    };
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@east", "Bob");
    sim.settle();
    assert_eq!(
        sim.engine(a).device_policy(),
        policy(DEFAULT_IDLE_LOCK_SECS)
    );
    sim.events(a);
    let now = (sim.now / 1000) as i64;
    let with_policy = |sim: &mut Sim, org: &str, p: DevicePolicy, serial| {
        sim.ca(org)
            .sign_trust_list_with_policy(&[], None, Some(p), serial, now)
            .expect("signed")
    };
    let doc = with_policy(&mut sim, "north", policy(120), 3);
    sim.serve_trust_list("north", doc);
    sim.settle();
    assert_eq!(sim.engine(a).device_policy(), policy(120));
    assert!(sim.events(a).contains(&Event::PolicyUpdated(policy(120))));
    // East's devices keep their own organisation's (the default), and a
    // list east publishes does not reach north's.
    assert_eq!(
        sim.engine(b).device_policy(),
        policy(DEFAULT_IDLE_LOCK_SECS)
    );
    let doc = with_policy(&mut sim, "east", policy(3600), 3);
    sim.serve_trust_list("east", doc);
    sim.settle();
    assert_eq!(sim.engine(b).device_policy(), policy(3600));
    assert_eq!(sim.engine(a).device_policy(), policy(120));
    // Outside the bounds: a second is a minute, a week is a shift.
    let doc = with_policy(&mut sim, "north", policy(1), 4);
    sim.serve_trust_list("north", doc);
    sim.settle();
    assert_eq!(sim.engine(a).device_policy(), policy(60));
    let doc = with_policy(&mut sim, "north", policy(7 * 24 * 3600), 5);
    sim.serve_trust_list("north", doc);
    sim.settle();
    assert_eq!(sim.engine(a).device_policy(), policy(8 * 3600));
    // A list in north's name signed by another CA is refused; the policy
    // stays.
    let forged = forger("north")
        .sign_trust_list_with_policy(&[], None, Some(policy(60)), 99, now)
        .expect("signed");
    sim.serve_trust_list("north", forged);
    sim.settle();
    assert!(reported(&mut sim, a, "trust list was refused"));
    assert_eq!(sim.engine(a).device_policy(), policy(8 * 3600));
    // Kept in the store: the same after a restart, before any fetch.
    sim.crash(a);
    sim.restart(a);
    assert_eq!(sim.engine(a).device_policy(), policy(8 * 3600));
}
