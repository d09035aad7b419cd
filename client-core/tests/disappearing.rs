//! Disappearing messages between real engines on the simulated relay
//! (`sim/`), with the clock driven by the test: the timer lives in the
//! room (set by an admin, the same on every device), messages sent while
//! it is set are gone from every device's store on time (checked in the
//! SQLite file), and messages from before it stay.

mod sim;

use cascade_core::{Action, CoreError, Event, InvalidInput, Role};
use cascade_protocol::*;
use sim::*;

const DAY_SECS: u64 = 24 * 3600;
const DAY_MS: u64 = DAY_SECS * 1000;

/// Alice (admin, on two devices) and Bob.
fn ward() -> (Sim, [D; 3], GroupId) {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice desk");
    let a2 = sim.device("alice@north", "Alice phone");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Ward 7", &[b]);
    (sim, [a, a2, b], g)
}

fn texts(sim: &mut Sim, d: D, g: GroupId) -> Vec<String> {
    sim.engine(d)
        .history(&g, None, 100)
        .expect("history")
        .into_iter()
        .filter(|m| m.kind == "text")
        .filter_map(|m| m.text)
        .collect()
}

#[test]
fn messages_sent_under_the_timer_are_gone_from_every_store_on_time() {
    let (mut sim, [a, a2, b], g) = ward();
    sim.send(a, g, "kept: before the timer");
    sim.settle();
    let now = sim.now;
    // Bob is a member: the timer is for admins.
    assert!(matches!(
        sim.engine(b).set_timer(&g, Some(DAY_SECS), now),
        Err(CoreError::Forbidden(f)) if f.action == Action::Timer && f.needs == Role::Admin
    ));
    // Out of range is refused before anything is sent.
    assert!(matches!(
        sim.engine(a).set_timer(&g, Some(5), now),
        Err(CoreError::Invalid(InvalidInput::Timer { .. }))
    ));
    sim.engine(a)
        .set_timer(&g, Some(DAY_SECS), now)
        .expect("timer");
    sim.settle();
    for d in [a, a2, b] {
        let details = sim.engine(d).room_details(&g).expect("d").expect("room");
        assert_eq!(details.disappear_after, Some(DAY_SECS), "{d:?}");
        let line = sim
            .engine(d)
            .history(&g, None, 100)
            .expect("history")
            .into_iter()
            .filter_map(|m| m.text)
            .any(|t| t == "Alice desk set messages to disappear 1 day after they are sent");
        assert!(line, "{d:?} says so");
    }
    let sent_at = sim.now;
    let secret = sim.send(b, g, "gone: bed 4 obs at 15:00");
    sim.settle();
    let now = sim.now;
    sim.engine(a).react(&g, &secret, "👍", now).expect("react");
    sim.settle();
    for d in [a, a2, b] {
        let m = sim.engine(d).message(&g, &secret).expect("there");
        assert_eq!(m.expires_at, Some(sent_at + DAY_MS), "{d:?}");
        assert_eq!(
            texts(&mut sim, d, g),
            ["kept: before the timer", "gone: bed 4 obs at 15:00"]
        );
        assert!(sim
            .engine(d)
            .poll_timeout()
            .is_some_and(|t| t <= sent_at + DAY_MS));
    }
    // A minute before its time it is still there; after it, gone.
    let left = sent_at + DAY_MS - 60_000 - sim.now;
    sim.advance(left);
    assert_eq!(texts(&mut sim, a, g).len(), 2);
    sim.advance(61_000);
    for d in [a, a2, b] {
        assert_eq!(texts(&mut sim, d, g), ["kept: before the timer"], "{d:?}");
        assert!(
            sim.events(d).iter().any(|e| matches!(e,
                Event::MessagesExpired { group_id, ids } if *group_id == g && ids == &[secret])),
            "{d:?} tells the front end"
        );
        assert!(matches!(
            sim.engine(d).message(&g, &secret),
            Err(CoreError::Invalid(InvalidInput::UnknownMessage))
        ));
        // Gone from the file, with its reaction and search entries.
        assert_eq!(sim.rows_holding(d, "bed 4 obs"), 0, "{d:?}");
        assert_eq!(sim.rows_holding(d, "👍"), 0, "{d:?}");
    }
}

#[test]
fn a_device_offline_past_the_time_never_shows_the_message_and_one_restarting_deletes_it() {
    let (mut sim, [a, a2, b], g) = ward();
    let now = sim.now;
    sim.engine(a)
        .set_timer(&g, Some(DAY_SECS), now)
        .expect("timer");
    sim.settle();
    // Alice's phone is off for two days while Bob writes.
    sim.disconnect(a2);
    sim.send(b, g, "gone before the phone is back");
    sim.settle();
    sim.advance(2 * DAY_MS);
    sim.connect(a2);
    sim.settle();
    assert!(
        texts(&mut sim, a2, g).is_empty(),
        "it arrived after its time"
    );
    assert!(texts(&mut sim, a, g).is_empty());
    // Alice's desk is closed when the next one's time comes, and deletes
    // it as soon as it opens.
    sim.send(b, g, "gone while the desk is closed");
    sim.settle();
    assert_eq!(texts(&mut sim, a, g), ["gone while the desk is closed"]);
    sim.crash(a);
    sim.advance(DAY_MS + 1000);
    sim.restart(a);
    let now = sim.now;
    sim.engine(a).handle_timeout(now).expect("timeout");
    assert!(texts(&mut sim, a, g).is_empty());
    // Turned off, messages stay again.
    sim.connect(a);
    sim.settle();
    let now = sim.now;
    sim.engine(a).set_timer(&g, None, now).expect("off");
    sim.settle();
    let kept = sim.send(b, g, "kept: the timer is off");
    sim.settle();
    assert_eq!(
        sim.engine(a).message(&g, &kept).expect("there").expires_at,
        None
    );
    sim.advance(3 * DAY_MS);
    assert_eq!(texts(&mut sim, a, g), ["kept: the timer is off"]);
}

/// An organisation's maximum retention, in its signed trust list, deletes
/// older messages from its own devices' stores, in every conversation, on
/// time; a partner organisation without one keeps them; what is younger
/// stays.
#[test]
fn an_organisations_maximum_retention_deletes_older_messages_from_its_devices_only() {
    use cascade_core::identity::DevicePolicy;
    let mut sim = Sim::new();
    sim.trust_each_other("north", "east");
    let a = sim.device("alice@north", "Alice desk");
    let a2 = sim.device("alice@north", "Alice phone");
    let c = sim.device("carol@east", "Carol");
    let g = sim.group(a, "Transfer", &[c]);
    sim.settle();
    let old = sim.send(c, g, "old: bay 4 patient details");
    sim.settle();
    let sent_at = sim.now;
    sim.advance(20 * DAY_MS);
    sim.send(a, g, "recent: handover done");
    sim.settle();

    // North keeps messages 30 days (and still pins east).
    let east = sim.ca("east").cert_der().to_vec();
    let now = (sim.now / 1000) as i64;
    let doc = sim
        .ca("north")
        .sign_trust_list_with_policy(
            &[east],
            None,
            Some(DevicePolicy {
                idle_lock_secs: 300,
                max_retention_days: Some(30),
            }),
            9,
            now,
        )
        .expect("signed");
    sim.serve_trust_list("north", doc);
    sim.settle();
    for d in [a, a2] {
        assert_eq!(sim.engine(d).device_policy().max_retention_days, Some(30));
        assert!(sim
            .engine(d)
            .poll_timeout()
            .is_some_and(|t| t <= sent_at + 30 * DAY_MS));
    }
    // A minute before thirty days, still there; after, gone from north's
    // devices and their files; east keeps it.
    let left = sent_at + 30 * DAY_MS - 60_000 - sim.now;
    sim.advance(left);
    assert_eq!(texts(&mut sim, a, g).len(), 2);
    sim.advance(61_000);
    for d in [a, a2] {
        assert_eq!(texts(&mut sim, d, g), ["recent: handover done"], "{d:?}");
        assert!(
            sim.events(d).iter().any(|e| matches!(e,
                Event::MessagesExpired { group_id, ids } if *group_id == g && ids.contains(&old))),
            "{d:?} tells the front end"
        );
        assert_eq!(sim.rows_holding(d, "bay 4 patient"), 0, "{d:?}");
        sim.restart(d);
    }
    assert_eq!(texts(&mut sim, c, g).len(), 2, "east keeps what it keeps");
    assert!(sim.rows_holding(c, "bay 4 patient") > 0);
}
