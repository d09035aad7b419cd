//! Conversation roles and policy between real engines on the simulated
//! relay (`sim/`): admins promote and demote, every device shows the same
//! roles, each device checks its own user's role before it acts, and every
//! receiver refuses a change the policy forbids even when a modified client
//! sends it.

mod sim;

use cascade_core::{Action, CoreError, Event, InvalidInput, Role, RoomChange};
use cascade_protocol::*;
use sim::*;

/// Alice (who creates it, on two devices), Bob and Carol.
fn ward() -> (Sim, [D; 4], GroupId) {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice desk");
    let a2 = sim.device("alice@north", "Alice phone");
    let b = sim.device("bob@north", "Bob");
    let c = sim.device("carol@north", "Carol");
    let g = sim.group(a, "Ward 7", &[b, c]);
    (sim, [a, a2, b, c], g)
}

fn user(u: &str) -> UserId {
    UserId::new(u).expect("user")
}

fn admins(sim: &mut Sim, d: D, g: GroupId) -> Vec<String> {
    let details = sim
        .engine(d)
        .room_details(&g)
        .expect("details")
        .expect("a room");
    details.admins.iter().map(|u| u.to_string()).collect()
}

/// The users in a conversation, as a device shows them.
fn users_in(sim: &mut Sim, d: D, g: GroupId) -> Vec<String> {
    sim.engine(d)
        .participants(&g)
        .expect("participants")
        .into_iter()
        .map(|p| p.user_id.to_string())
        .collect()
}

/// The conversation's newest system line.
fn last_line(sim: &mut Sim, d: D, g: GroupId) -> String {
    sim.engine(d)
        .history(&g, None, 50)
        .expect("history")
        .into_iter()
        .rev()
        .find(|m| m.kind == cascade_core::content::SYSTEM_KIND)
        .and_then(|m| m.text)
        .unwrap_or_default()
}

fn forbidden(r: Result<(), CoreError>, action: Action) -> bool {
    matches!(r, Err(CoreError::Forbidden(f)) if f.action == action && f.needs == Role::Admin)
}

#[test]
fn admins_promote_and_demote_and_every_device_shows_the_same_roles() {
    let (mut sim, [a, a2, b, c], g) = ward();
    for d in [a, a2, b, c] {
        assert_eq!(admins(&mut sim, d, g), ["alice@north"], "{d:?}");
    }
    let details = sim
        .engine(b)
        .room_details(&g)
        .expect("details")
        .expect("room");
    assert_eq!(details.my_role, Role::Member);
    assert_eq!(details.may, [Action::Add, Action::Rename]);
    let now = sim.now;
    // Bob is a member: he may not remove Carol, promote himself, or set
    // the policy; his device says so before anything is sent.
    assert!(forbidden(
        sim.engine(b)
            .remove_members(&g, vec![user("carol@north")], now),
        Action::Remove
    ));
    assert!(forbidden(
        sim.engine(b)
            .set_role(&g, &user("bob@north"), Role::Admin, now),
        Action::Roles
    ));
    assert!(forbidden(
        sim.engine(b).set_policy(&g, Action::Add, Role::Admin, now),
        Action::Roles
    ));
    // Alice cannot leave the conversation without an admin, nor give a
    // role to someone who is not in it.
    assert!(matches!(
        sim.engine(a)
            .set_role(&g, &user("alice@north"), Role::Member, now),
        Err(CoreError::Invalid(InvalidInput::LastAdmin))
    ));
    assert!(matches!(
        sim.engine(a)
            .set_role(&g, &user("dave@north"), Role::Admin, now),
        Err(CoreError::Invalid(InvalidInput::NotInConversation(_)))
    ));
    let epoch = sim.engine(a).epoch(&g).expect("epoch");
    sim.engine(a)
        .set_role(&g, &user("bob@north"), Role::Admin, now)
        .expect("promote");
    sim.settle();
    assert_eq!(
        sim.engine(a).epoch(&g).expect("epoch"),
        epoch + 1,
        "by a commit"
    );
    for d in [a, a2, b, c] {
        assert_eq!(
            last_line(&mut sim, d, g),
            "Alice desk made Bob an admin",
            "{d:?}"
        );
    }
    for d in [a, a2, b, c] {
        assert_eq!(
            admins(&mut sim, d, g),
            ["alice@north", "bob@north"],
            "{d:?}"
        );
        let roles: Vec<(String, Option<Role>)> = sim
            .engine(d)
            .participants(&g)
            .expect("participants")
            .into_iter()
            .map(|p| (p.user_id.to_string(), p.conversation_role))
            .collect();
        assert!(
            roles.contains(&("bob@north".into(), Some(Role::Admin))),
            "{d:?}"
        );
        assert!(
            roles.contains(&("carol@north".into(), Some(Role::Member))),
            "{d:?}"
        );
    }
    // Now an admin, Bob demotes Alice and removes Carol.
    let now = sim.now;
    sim.engine(b)
        .set_role(&g, &user("alice@north"), Role::Member, now)
        .expect("demote");
    sim.settle();
    let now = sim.now;
    sim.engine(b)
        .remove_members(&g, vec![user("carol@north")], now)
        .expect("remove");
    sim.settle();
    for d in [a, a2, b] {
        assert_eq!(admins(&mut sim, d, g), ["bob@north"], "{d:?}");
        let users = users_in(&mut sim, d, g);
        assert!(!users.contains(&"carol@north".to_owned()), "{d:?}");
    }
    // Alice's phone is hers: a member, it can no longer remove anyone else.
    let now = sim.now;
    assert!(forbidden(
        sim.engine(a2)
            .remove_members(&g, vec![user("bob@north")], now),
        Action::Remove
    ));
}

#[test]
fn the_policy_is_changed_by_admins_and_holds_on_every_device() {
    let (mut sim, [a, a2, b, c], g) = ward();
    let now = sim.now;
    // Members may rename by default; Alice keeps renaming for admins.
    sim.engine(b)
        .rename(&g, "Ward 7 (nights)", now)
        .expect("rename");
    sim.settle();
    for d in [a, a2, b, c] {
        assert_eq!(
            sim.engine(d).conversation(&g).expect("c").name,
            "Ward 7 (nights)"
        );
    }
    let now = sim.now;
    sim.engine(a)
        .set_policy(&g, Action::Rename, Role::Admin, now)
        .expect("policy");
    sim.settle();
    for d in [a, a2, b, c] {
        let details = sim.engine(d).room_details(&g).expect("d").expect("room");
        assert_eq!(details.policy.rename, Role::Admin, "{d:?}");
    }
    let now = sim.now;
    assert!(forbidden(
        sim.engine(b).rename(&g, "Bob's ward", now),
        Action::Rename
    ));
    sim.engine(a2)
        .rename(&g, "Ward 7", now)
        .expect("an admin renames");
    sim.settle();
    for d in [a, a2, b, c] {
        assert_eq!(sim.engine(d).conversation(&g).expect("c").name, "Ward 7");
    }
    // A member whose modified client sends a rename anyway: refused by
    // every receiver.
    let forged = cascade_core::Content {
        id: cascade_core::MessageId::random(),
        sent_at: sim.now,
        body: cascade_core::Body::GroupMeta {
            name: "Bob's ward".into(),
        },
    };
    let now = sim.now;
    sim.engine(b)
        .send_raw(&g, forged.encode(), now)
        .expect("sent raw");
    sim.settle();
    for d in [a, a2, c] {
        assert_eq!(
            sim.engine(d).conversation(&g).expect("c").name,
            "Ward 7",
            "{d:?}"
        );
    }
}

#[test]
fn every_receiver_refuses_a_member_who_makes_himself_an_admin() {
    let (mut sim, [a, a2, b, c], g) = ward();
    let epoch = sim.engine(a).epoch(&g).expect("epoch");
    let now = sim.now;
    sim.engine(b)
        .change_room_unchecked(
            &g,
            RoomChange::Role {
                user: user("bob@north"),
                role: Role::Admin,
            },
            now,
        )
        .expect("queued");
    sim.settle();
    for d in [a, a2, c] {
        assert_eq!(admins(&mut sim, d, g), ["alice@north"], "{d:?}");
        assert_eq!(
            sim.engine(d).epoch(&g).expect("epoch"),
            epoch,
            "{d:?}: not merged"
        );
        let events = sim.events(d);
        assert!(
            events.iter().any(|e| matches!(e,
                Event::OperationFailed { reason, .. } if reason.contains("policy forbids")
                    && reason.contains("only a conversation admin may change roles"))),
            "{d:?} says why"
        );
        assert_eq!(
            last_line(&mut sim, d, g),
            "Refused a change by Bob (bob@north): only a conversation admin may change roles \
             and who may do what. It was not applied on this device."
        );
    }
}

#[test]
fn every_receiver_refuses_a_member_who_removes_someone() {
    let (mut sim, [a, a2, b, c], g) = ward();
    let now = sim.now;
    sim.engine(b)
        .remove_members_unchecked(&g, vec![user("carol@north")], now)
        .expect("queued");
    sim.settle();
    // Carol's own device applies a commit that removes it, whoever made
    // it: refusing would keep it in a group it has left. (A real relay
    // refuses this commit first: tests/tests/roles.rs.)
    assert_eq!(
        sim.engine(c).conversation(&g).expect("c").state,
        cascade_core::ConversationState::Left
    );
    for d in [a, a2] {
        let users = users_in(&mut sim, d, g);
        assert!(
            users.contains(&"carol@north".to_owned()),
            "{d:?}: Carol is still in"
        );
        assert!(
            sim.events(d).iter().any(|e| matches!(e,
                Event::OperationFailed { reason, .. } if reason.contains("only a conversation admin may remove others"))),
            "{d:?} says why"
        );
    }
}

#[test]
fn leaving_is_everyones_and_an_admin_who_leaves_leaves_the_admins() {
    let (mut sim, [a, a2, b, c], g) = ward();
    let now = sim.now;
    sim.engine(a)
        .set_role(&g, &user("carol@north"), Role::Admin, now)
        .expect("promote");
    sim.settle();
    // Carol leaves; Bob (a member) is the one whose device commits it.
    let now = sim.now;
    sim.engine(c).leave(&g, now).expect("leave");
    sim.settle();
    for d in [a, a2, b] {
        assert_eq!(admins(&mut sim, d, g), ["alice@north"], "{d:?}");
        let room = sim.engine(d).room(&g).expect("room").expect("a room");
        assert_eq!(
            room.admins,
            [user("alice@north")],
            "{d:?}: not kept for her return"
        );
    }
}
