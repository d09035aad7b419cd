//! Commits against the simulated relay: races, lost answers, restarts,
//! KeyPackages kept across retries, a user's new device joining by external
//! commit, and a device that fell out of step healing itself.

mod sim;

use cascade_core::engine::REJOINED_TEXT;
use cascade_core::{ConversationState, Event};
use cascade_protocol::*;
use sim::*;

fn uid(s: &str) -> UserId {
    UserId::new(s).expect("valid")
}

/// Every device in the group (at the relay) is at the relay's epoch.
fn in_step(sim: &mut Sim, g: GroupId, devices: &[D]) {
    let epoch = sim.relay.groups[&g].epoch;
    for d in devices {
        assert_eq!(sim.epoch(*d, g), epoch, "device {d:?} out of step");
    }
}

#[test]
fn concurrent_commits_one_wins_the_other_retries_at_the_new_epoch() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let c = sim.device("carol@north", "Carol");
    let d = sim.device("dave@north", "Dave");
    let g = sim.group(a, "Race", &[b]);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("carol@north")], now)
        .expect("queued");
    sim.engine(b)
        .add_members(&g, vec![uid("dave@north")], now)
        .expect("queued");
    // Both claim and commit at the same epoch; Alice's reaches the relay
    // first.
    sim.run();
    assert!(sim
        .relay
        .refused
        .iter()
        .any(|(who, e)| *who == sim.id(b) && matches!(e, ProtocolError::WrongEpoch { .. })));
    sim.settle();
    in_step(&mut sim, g, &[a, b, c, d]);
    assert_eq!(sim.engine(a).members(&g).expect("m").len(), 4);
    assert_eq!(
        sim.key_package_stock(d),
        limits::KEY_PACKAGE_BATCH as usize - 1,
        "Dave's KeyPackage claimed once"
    );
}

#[test]
fn a_commit_lost_on_the_way_is_resent_byte_for_byte() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Ward", &[]);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("bob@north")], now)
        .expect("queued");
    // Run until the commit is on its way, then drop the connection.
    let mut first = None;
    for _ in 0..100 {
        if let Some(f) = sim.pending_up(a).into_iter().find(|f| is_commit(&f.req)) {
            first = Some(f.req);
            break;
        }
        sim.step_up(a);
        sim.step_down(a);
    }
    let first = first.expect("a commit went out");
    sim.disconnect(a);
    sim.connect(a);
    let mut again = None;
    for _ in 0..100 {
        if let Some(f) = sim.pending_up(a).into_iter().find(|f| is_commit(&f.req)) {
            again = Some(f.req);
            break;
        }
        sim.step_up(a);
        sim.step_down(a);
    }
    assert_eq!(again.expect("the commit again"), first, "the same bundle");
    sim.settle();
    in_step(&mut sim, g, &[a, b]);
    assert_eq!(
        sim.key_package_stock(b),
        limits::KEY_PACKAGE_BATCH as usize - 1,
        "claimed once"
    );
}

#[test]
fn a_commit_whose_answer_was_lost_is_merged_from_its_echo() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Ward", &[]);
    sim.lose_next_answer(a, is_commit);
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("bob@north")], now)
        .expect("queued");
    sim.settle();
    assert!(
        !sim.is_connected(a),
        "the answer was lost with the connection"
    );
    sim.connect(a);
    sim.settle();
    in_step(&mut sim, g, &[a, b]);
    assert_eq!(sim.relay.groups[&g].epoch, 1, "one commit, not two");
    assert_eq!(
        sim.engine(b).conversation(&g).expect("c").name,
        "Ward",
        "the name still came"
    );
    sim.send(a, g, "after");
    sim.settle();
    assert_eq!(sim.texts(b, g), ["after"]);
}

#[test]
fn a_prepared_message_survives_a_crash_byte_for_byte() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Ward", &[b]);
    sim.send(a, g, "survive");
    let before = sim.pending_up(a);
    sim.crash(a);
    sim.restart(a);
    sim.connect(a);
    let mut after = None;
    for _ in 0..100 {
        if let Some(f) = sim.pending_up(a).into_iter().find(|f| is_send(&f.req)) {
            after = Some(f.req);
            break;
        }
        sim.step_up(a);
        sim.step_down(a);
    }
    assert_eq!(after, before.into_iter().map(|f| f.req).find(is_send_owned));
    sim.settle();
    assert_eq!(sim.texts(b, g), ["survive"]);
}

fn is_send_owned(r: &Request) -> bool {
    is_send(r)
}

#[test]
fn claimed_key_packages_survive_a_disconnect_and_a_crash() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let c = sim.device("carol@north", "Carol");
    let g = sim.group(a, "Ward", &[]);
    // The relay takes the commit and refuses it as if the group had moved
    // on; the connection drops; Alice crashes and restarts: the add goes
    // through with the KeyPackages claimed the first time.
    sim.answer_next(a, is_commit, Err(ProtocolError::Internal));
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("bob@north"), uid("carol@north")], now)
        .expect("queued");
    sim.run();
    sim.disconnect(a);
    sim.crash(a);
    sim.restart(a);
    sim.connect(a);
    sim.settle();
    in_step(&mut sim, g, &[a, b, c]);
    let full = limits::KEY_PACKAGE_BATCH as usize;
    assert_eq!(
        (sim.key_package_stock(b), sim.key_package_stock(c)),
        (full - 1, full - 1),
        "each claimed once"
    );
}

#[test]
fn an_add_that_claims_the_last_resort_key_package_works() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    sim.use_up_key_packages(b);
    let g = sim.group(a, "Ward", &[b]);
    assert!(
        failures(&sim.events(a)).is_empty(),
        "{:?}",
        failures(&sim.events(a))
    );
    in_step(&mut sim, g, &[a, b]);
    sim.send(a, g, "on the last resort");
    sim.settle();
    assert_eq!(sim.texts(b, g), ["on the last resort"]);
}

#[test]
fn a_users_new_device_joins_by_external_commit_and_a_stranger_may_not() {
    let mut sim = Sim::new();
    let phone = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(phone, "Ward", &[b]);
    sim.send(b, g, "before the desktop");
    sim.settle();
    let desktop = sim.device("alice@north", "Alice");
    sim.settle();
    assert_eq!(sim.state(desktop, g), Some(ConversationState::Active));
    assert_eq!(
        sim.engine(desktop).conversation(&g).expect("c").name,
        "Ward"
    );
    assert!(
        sim.texts(desktop, g).is_empty(),
        "earlier messages are not readable"
    );
    sim.send(b, g, "after");
    sim.settle();
    sim.send(desktop, g, "from the desktop");
    sim.settle();
    assert_eq!(sim.texts(desktop, g), ["after", "from the desktop"]);
    assert_eq!(
        sim.texts(b, g),
        ["before the desktop", "after", "from the desktop"]
    );
    in_step(&mut sim, g, &[phone, b, desktop]);
    // Carol is not in the conversation. A relay that lists it as hers and
    // serves its GroupInfo gets her external commit; every member refuses it.
    let c = sim.enrol("carol@north", "Carol");
    sim.certify(c);
    sim.answer_next(
        c,
        is_list_groups,
        Ok(Response::Groups { group_ids: vec![g] }),
    );
    let info = sim.group_info(g);
    let epoch = sim.relay.groups[&g].epoch;
    sim.answer_next(
        c,
        is_get_group_info,
        Ok(Response::GroupInfo {
            epoch,
            group_info: info,
        }),
    );
    sim.connect(c);
    let mut commit = None;
    for _ in 0..100 {
        if let Some(f) = sim.pending_up(c).into_iter().find(|f| is_commit(&f.req)) {
            commit = Some(f.req);
            break;
        }
        sim.step_up(c);
        sim.step_down(c);
    }
    let Some(Request::Commit(bundle)) = commit else {
        panic!("Carol built an external commit");
    };
    sim.events(phone);
    let seq = sim.relay.groups[&g].seq + 1;
    sim.inject(
        phone,
        QueueItem {
            queue_id: 999_999,
            group_id: g,
            seq,
            sender: sim.id(c),
            kind: ItemKind::Commit,
            payload: bundle.commit,
            addressed: false,
        },
    );
    sim.run();
    let f = failures(&sim.events(phone));
    assert!(
        f.iter().any(|r| r.contains("not in the conversation")),
        "{f:?}"
    );
    assert_eq!(sim.epoch(phone, g), epoch, "refused");
    assert_eq!(sim.engine(phone).members(&g).expect("m").len(), 3);
}

#[test]
fn a_new_device_that_crashes_after_its_external_commit_landed_finishes_the_join() {
    let mut sim = Sim::new();
    let phone = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(phone, "Ward", &[b]);
    let desktop = sim.enrol("alice@north", "Alice");
    sim.certify(desktop);
    sim.lose_next_answer(desktop, is_commit);
    sim.connect(desktop);
    sim.settle();
    assert!(!sim.is_connected(desktop));
    sim.crash(desktop);
    sim.restart(desktop);
    sim.connect(desktop);
    sim.settle();
    assert_eq!(sim.state(desktop, g), Some(ConversationState::Active));
    in_step(&mut sim, g, &[phone, b, desktop]);
    sim.send(b, g, "to all three");
    sim.settle();
    assert_eq!(sim.texts(desktop, g), ["to all three"]);
}

#[test]
fn a_device_whose_own_commit_was_lost_rejoins_and_says_so() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let c = sim.device("carol@north", "Carol");
    let g = sim.group(a, "Ward", &[b]);
    // Alice's database is restored from a copy taken before her add of
    // Carol landed: the relay applied a commit of hers she no longer has.
    sim.crash(a);
    let backup = std::fs::read(sim.path(a)).expect("copy");
    sim.restart(a);
    sim.connect(a);
    sim.settle();
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("carol@north")], now)
        .expect("queued");
    sim.lose_next_answer(a, is_commit);
    sim.settle();
    sim.crash(a);
    std::fs::write(sim.path(a), backup).expect("restore");
    let _ = std::fs::remove_file(sim.path(a).with_extension("db-wal"));
    sim.restart(a);
    sim.connect(a);
    sim.settle();
    assert_eq!(sim.state(a, g), Some(ConversationState::Active));
    in_step(&mut sim, g, &[a, b, c]);
    let h = sim.engine(a).history(&g, None, 10).expect("h");
    assert!(h
        .iter()
        .any(|m| m.kind == "system" && m.text.as_deref() == Some(REJOINED_TEXT)));
    sim.send(a, g, "back in step");
    sim.settle();
    sim.send(b, g, "welcome back");
    sim.settle();
    assert_eq!(sim.texts(b, g), ["back in step", "welcome back"]);
    assert_eq!(sim.texts(c, g), ["back in step", "welcome back"]);
    assert!(sim
        .texts(a, g)
        .ends_with(&["back in step".into(), "welcome back".into()]));
}

#[test]
fn a_device_that_missed_a_commit_rejoins_and_keeps_what_it_wrote_meanwhile() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let c = sim.device("carol@north", "Carol");
    let g = sim.group(a, "Ward", &[b]);
    // Bob's state goes back to before Bob's add of Carol; he already
    // acknowledged that commit, so it never comes again.
    sim.crash(b);
    let backup = std::fs::read(sim.path(b)).expect("copy");
    sim.restart(b);
    sim.connect(b);
    sim.settle();
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("carol@north")], now)
        .expect("queued");
    sim.settle();
    sim.crash(b);
    std::fs::write(sim.path(b), backup).expect("restore");
    let _ = std::fs::remove_file(sim.path(b).with_extension("db-wal"));
    sim.restart(b);
    // Bob writes while offline, then Alice sends at the new epoch.
    let now = sim.now;
    sim.engine(b)
        .send_text(&g, "written while behind", now)
        .expect("queued");
    sim.send(a, g, "at the new epoch");
    sim.settle();
    sim.connect(b);
    sim.settle();
    in_step(&mut sim, g, &[a, b, c]);
    assert_eq!(sim.state(b, g), Some(ConversationState::Active));
    assert!(sim.texts(a, g).contains(&"written while behind".to_owned()));
    assert!(sim.texts(c, g).contains(&"written while behind".to_owned()));
    let evs = sim.events(b);
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::Message(m) if m.kind == "system")));
}

#[test]
fn a_refused_commit_whose_epoch_never_comes_checks_and_carries_on() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Ward", &[]);
    // A relay that says the group is at epoch 7 when it is not: the add
    // waits for epoch 7, which never comes; then the device asks for the
    // group's state, finds itself in step, and the add goes through.
    sim.answer_next(a, is_commit, Err(ProtocolError::WrongEpoch { current: 7 }));
    let now = sim.now;
    sim.engine(a)
        .add_members(&g, vec![uid("bob@north")], now)
        .expect("queued");
    sim.run();
    assert_eq!(sim.engine(a).outbox_len().expect("outbox"), 1);
    assert!(
        sim.engine(a).poll_timeout().is_some(),
        "the engine asks to be woken"
    );
    sim.settle();
    in_step(&mut sim, g, &[a, b]);
    assert_eq!(sim.state(a, g), Some(ConversationState::Active));
    assert!(
        !sim.engine(a)
            .history(&g, None, 10)
            .expect("h")
            .iter()
            .any(|m| m.kind == "system"),
        "it did not rejoin"
    );
}

#[test]
fn the_last_two_members_leaving_at_once_both_get_out() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Ward", &[b]);
    // Both ask to be removed in the same epoch: each holds its own request
    // and receives the other's, and MLS lets neither commit its own
    // removal. One commits the other's; the one left alone closes the
    // group (the groups fuzz finding: both stayed Leaving, in the roster).
    let now = sim.now;
    sim.engine(a).leave(&g, now).expect("queued");
    sim.engine(b).leave(&g, now).expect("queued");
    sim.settle();
    assert_eq!(sim.state(a, g), Some(ConversationState::Left));
    assert_eq!(sim.state(b, g), Some(ConversationState::Left));
    assert!(!sim.relay.groups.contains_key(&g), "the group is closed");
    for d in [a, b] {
        assert_eq!(sim.engine(d).outbox_len().expect("outbox"), 0);
    }
}

#[test]
fn a_leaving_member_can_still_remove_a_revoked_device() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let c = sim.device("carol@north", "Carol");
    let g = sim.group(a, "Ward", &[b, c]);
    // Bob, an admin (removing others is for admins), asks to leave while
    // nobody else is there to commit it; then Carol's device is revoked.
    // Bob's device commits her removal, which must not carry his own
    // request (MLS refuses a commit that removes its committer), and then
    // asks again.
    let now = sim.now;
    sim.engine(a)
        .set_role(
            &g,
            &cascade_protocol::UserId::new("bob@north").expect("user"),
            cascade_core::Role::Admin,
            now,
        )
        .expect("promote");
    sim.settle();
    sim.disconnect(a);
    sim.disconnect(c);
    let now = sim.now;
    sim.engine(b).leave(&g, now).expect("queued");
    sim.settle();
    assert_eq!(sim.state(b, g), Some(ConversationState::Leaving));
    sim.revoke(c);
    sim.settle();
    assert!(
        !sim.roster(g).contains(&sim.id(c)),
        "Bob's device removed Carol's"
    );
    assert_eq!(sim.engine(b).outbox_len().expect("outbox"), 0);
    sim.connect(a);
    sim.settle();
    assert_eq!(sim.state(b, g), Some(ConversationState::Left));
    assert_eq!(sim.roster(g), [sim.id(a)].into_iter().collect());
    assert_eq!(sim.engine(a).outbox_len().expect("outbox"), 0);
}
