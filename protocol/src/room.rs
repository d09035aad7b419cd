//! A conversation's room (protocol §14.8): the MLS GroupContext extension
//! that names the conversation's MIMI URI, its admins and its policy (which
//! role may add, remove, rename, change roles and set the disappearing
//! timer; shaped after the MIMI room-policy draft's role capabilities).
//!
//! Every member holds the same authenticated copy, changed only by commits.
//! Clients judge each commit against the room as it stood before it
//! ([`check_commit`]); the relay judges what it can see the same way, from
//! the GroupInfo every commit bundle carries (public to it already, for
//! external joins) and the roster change.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ids::UserId;

/// The extension type: from the private-use range (RFC 9420 §17.3).
pub const ROOM_EXTENSION: u16 = 0xF0CA;

/// The version of the room's encoding this device writes: 2 added the
/// policy. A room of version 1 (no policy) is read with the default
/// policy.
pub const ROOM_VERSION: u8 = 2;

/// The oldest version of the room's encoding this device reads.
pub const OLDEST_ROOM_VERSION: u8 = 1;

/// A member's role in a conversation. Ordered: an admin may do whatever a
/// member may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Writes, reads and does what the policy lets members do.
    Member,
    /// Also does what the policy keeps for admins.
    Admin,
}

impl Role {
    /// Its name, as every front end and the encoding spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            _ => Err(()),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the policy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Add people who are not in the conversation.
    Add,
    /// Remove someone else (leaving, and removing one's own devices, is
    /// always allowed).
    Remove,
    /// Rename the conversation.
    Rename,
    /// Make a member an admin or an admin a member.
    Roles,
    /// Set the disappearing-messages timer.
    Timer,
}

impl Action {
    /// Every action, in the order front ends list them.
    pub const ALL: [Action; 5] = [
        Action::Add,
        Action::Remove,
        Action::Rename,
        Action::Roles,
        Action::Timer,
    ];

    /// Its name, as every front end and the encoding spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Rename => "rename",
            Action::Roles => "roles",
            Action::Timer => "timer",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        Action::ALL.into_iter().find(|a| a.as_str() == s).ok_or(())
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The least role each action needs. A new conversation lets members add
/// people and rename it, and keeps removing others, changing roles and the
/// timer for admins (as the large messengers do: a member cannot throw
/// someone out of the ward's group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Who may add people.
    pub add: Role,
    /// Who may remove others.
    pub remove: Role,
    /// Who may rename the conversation.
    pub rename: Role,
    /// Who may change roles and this policy.
    pub roles: Role,
    /// Who may set the disappearing timer.
    pub timer: Role,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            add: Role::Member,
            remove: Role::Admin,
            rename: Role::Member,
            roles: Role::Admin,
            timer: Role::Admin,
        }
    }
}

impl Policy {
    /// The least role `action` needs.
    pub fn needs(&self, action: Action) -> Role {
        match action {
            Action::Add => self.add,
            Action::Remove => self.remove,
            Action::Rename => self.rename,
            Action::Roles => self.roles,
            Action::Timer => self.timer,
        }
    }

    /// This policy with `action` needing `role`. Changing roles always
    /// needs an admin: a policy that let members change roles would let
    /// any member make themselves an admin.
    pub fn with(mut self, action: Action, role: Role) -> Policy {
        let slot = match action {
            Action::Add => &mut self.add,
            Action::Remove => &mut self.remove,
            Action::Rename => &mut self.rename,
            Action::Roles => &mut self.roles,
            Action::Timer => &mut self.timer,
        };
        *slot = role;
        self.roles = Role::Admin;
        self
    }
}

/// Why a change was refused: `who` lacks the role `action` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// What was tried.
    pub action: Action,
    /// The role it needs.
    pub needs: Role,
}

impl std::error::Error for Forbidden {}

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "only a conversation {} may {}",
            self.needs,
            match self.action {
                Action::Add => "add people",
                Action::Remove => "remove others",
                Action::Rename => "rename it",
                Action::Roles => "change roles and who may do what",
                Action::Timer => "set the disappearing timer",
            }
        )
    }
}

/// A conversation's room, as its GroupContext carries it: a CBOR map
/// `{"v": 2, "uri": text, "admins": [user id, …], "policy": {"add": role,
/// "remove": role, "rename": role, "roles": role, "timer": role},
/// "disappear_after": seconds}` (the last only while set), a role
/// being `"member"` or `"admin"`. Version 1 has no policy (the default
/// applies). Unknown keys are ignored, so later versions may add to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// Its encoding's version.
    pub v: u8,
    /// The room's URI (`mimi://<creator's org>/r/<group id>`).
    pub uri: String,
    /// Who administers it: does what the policy keeps for admins, and
    /// deletes others' messages. The creator first. Someone who leaves or
    /// is removed leaves this list in the same commit.
    pub admins: Vec<UserId>,
    /// Which role each action needs.
    #[serde(default)]
    pub policy: Policy,
    /// Disappearing messages: every message sent while it is set is
    /// deleted from every device this many seconds after it was sent
    /// ([`MIN_TIMER_SECS`] to [`MAX_TIMER_SECS`]). Absent: they stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disappear_after: Option<u64>,
}

/// The shortest disappearing timer, in seconds: a minute, so that a
/// message can still be read.
pub const MIN_TIMER_SECS: u64 = 60;

/// The longest disappearing timer, in seconds: a year.
pub const MAX_TIMER_SECS: u64 = 366 * 24 * 3600;

/// Whether `secs` is a timer a room may carry.
pub fn timer_in_range(secs: u64) -> bool {
    (MIN_TIMER_SECS..=MAX_TIMER_SECS).contains(&secs)
}

impl Room {
    /// The room `uri` of a conversation created now by `creator`.
    pub fn new(creator: &UserId, uri: String) -> Room {
        Room {
            v: ROOM_VERSION,
            uri,
            admins: vec![creator.clone()],
            policy: Policy::default(),
            disappear_after: None,
        }
    }

    /// Whether `user` administers the room.
    pub fn is_admin(&self, user: &UserId) -> bool {
        self.admins.contains(user)
    }

    /// `user`'s role among `members` (the users in the conversation). When
    /// no admin is left among them (a conversation from before admins left
    /// the list as they went), every member acts as one, so that no
    /// conversation is left with nobody who may manage it.
    pub fn role_of(&self, user: &UserId, members: &BTreeSet<UserId>) -> Role {
        if self.is_admin(user) || !self.admins.iter().any(|a| members.contains(a)) {
            Role::Admin
        } else {
            Role::Member
        }
    }

    /// Whether `user` may do `action` among `members`; why not if not.
    pub fn may(
        &self,
        user: &UserId,
        action: Action,
        members: &BTreeSet<UserId>,
    ) -> std::result::Result<(), Forbidden> {
        let needs = self.policy.needs(action);
        if self.role_of(user, members) >= needs {
            Ok(())
        } else {
            Err(Forbidden { action, needs })
        }
    }

    /// This room with `user` given `role`.
    pub fn with_role(&self, user: &UserId, role: Role) -> Room {
        let mut room = self.clone();
        room.v = ROOM_VERSION;
        room.admins.retain(|a| a != user);
        if role == Role::Admin {
            room.admins.push(user.clone());
        }
        room
    }

    /// This room without these users among its admins (they are leaving).
    pub fn without(&self, gone: &BTreeSet<UserId>) -> Room {
        let mut room = self.clone();
        room.admins.retain(|a| !gone.contains(a));
        room
    }

    /// Its encoding: the CBOR map described on [`Room`], of this
    /// version (a room read from an older one is written as this one).
    pub fn encode(&self) -> Vec<u8> {
        let mut current = self.clone();
        current.v = current.v.max(ROOM_VERSION);
        let mut out = Vec::new();
        ciborium::into_writer(&current, &mut out).expect("serialising to a Vec cannot fail");
        out
    }

    /// Reads a room's encoding: `None` if it does not decode or is of a
    /// version before the first.
    pub fn decode(bytes: &[u8]) -> Option<Room> {
        ciborium::from_reader::<Room, _>(bytes)
            .ok()
            .filter(|r| r.v >= OLDEST_ROOM_VERSION)
    }
}

/// What a commit changes, as the policy judges it.
pub struct CommitChanges<'a> {
    /// The member who committed it.
    pub committer: &'a UserId,
    /// Users it brings into the conversation (not there before).
    pub added: &'a BTreeSet<UserId>,
    /// Users whom someone else removes against their will: not the
    /// committer's own devices, not a member's own request to leave, not a
    /// device this device itself no longer accepts (revoked, or of an
    /// organisation no longer trusted).
    pub removed: &'a BTreeSet<UserId>,
    /// Users who are gone from the conversation after it (all devices).
    pub gone: &'a BTreeSet<UserId>,
    /// The users in the conversation before it.
    pub members: &'a BTreeSet<UserId>,
}

/// Checks a commit against the room's policy before the commit: refuses
/// one whose committer lacks the role for what it does, and one that drops
/// the room or changes its URI. A change of admins or policy needs the
/// `roles` role, except that dropping users who leave with this very
/// commit is everyone's to do.
pub fn check_commit(
    before: Option<&Room>,
    after: Option<&Room>,
    c: &CommitChanges<'_>,
) -> std::result::Result<(), CommitRefusal> {
    let Some(before) = before else {
        // A conversation from before rooms stays without one.
        return match after {
            None => Ok(()),
            Some(_) => Err(CommitRefusal::RoomChanged),
        };
    };
    let after = after.ok_or(CommitRefusal::RoomChanged)?;
    if after.uri != before.uri {
        return Err(CommitRefusal::RoomChanged);
    }
    if !c.added.is_empty() {
        before.may(c.committer, Action::Add, c.members)?;
    }
    if !c.removed.is_empty() {
        before.may(c.committer, Action::Remove, c.members)?;
    }
    let admins_before: BTreeSet<&UserId> = before.admins.iter().collect();
    let admins_after: BTreeSet<&UserId> = after.admins.iter().collect();
    let roles_changed = admins_before
        .symmetric_difference(&admins_after)
        .any(|u| !(c.gone.contains(*u) && admins_before.contains(*u)));
    if roles_changed || after.policy != before.policy {
        before.may(c.committer, Action::Roles, c.members)?;
        if after.policy.roles != Role::Admin {
            return Err(CommitRefusal::MembersMayChangeRoles);
        }
    }
    if after.disappear_after != before.disappear_after {
        before.may(c.committer, Action::Timer, c.members)?;
        if after.disappear_after.is_some_and(|t| !timer_in_range(t)) {
            return Err(CommitRefusal::Timer);
        }
    }
    Ok(())
}

/// Why every device refuses a commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitRefusal {
    /// The committer lacks the role.
    #[error("{0}")]
    Forbidden(Forbidden),
    /// It drops the room, adds one to a conversation without, or changes
    /// its URI.
    #[error("it changes what the conversation is")]
    RoomChanged,
    /// A disappearing timer out of range.
    #[error("its disappearing timer is not between a minute and a year")]
    Timer,
    /// It would let members change roles.
    #[error("it lets members change roles")]
    MembersMayChangeRoles,
}

impl From<Forbidden> for CommitRefusal {
    fn from(f: Forbidden) -> Self {
        CommitRefusal::Forbidden(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(u: &str) -> UserId {
        UserId::new(u).expect("user")
    }

    fn set(users: &[&str]) -> BTreeSet<UserId> {
        users.iter().map(|u| user(u)).collect()
    }

    fn room() -> Room {
        Room::new(
            &user("alice@north"),
            format!("mimi://north/r/{}", "ab".repeat(16)),
        )
    }

    /// The room's encoding is pinned: every member must read it.
    #[test]
    fn the_room_is_pinned() {
        let room = room();
        assert_eq!(hex::encode(room.encode()), ROOM_GOLDEN);
        let back: Room = ciborium::from_reader(room.encode().as_slice()).expect("reads");
        assert_eq!(back, room);
        assert!(room.is_admin(&user("alice@north")));
        assert!(!room.is_admin(&user("bob@north")));
    }

    /// A room of version 1 (before the policy) reads with the default
    /// policy.
    #[test]
    fn a_version_1_room_reads_with_the_default_policy() {
        let bytes = hex::decode(ROOM_V1_GOLDEN).expect("hex");
        let old: Room = ciborium::from_reader(bytes.as_slice()).expect("reads");
        assert_eq!(old.v, 1);
        assert_eq!(old.admins, vec![user("alice@north")]);
        assert_eq!(old.policy, Policy::default());
    }

    #[test]
    fn roles_follow_the_policy() {
        let room = room();
        let members = set(&["alice@north", "bob@north"]);
        let bob = user("bob@north");
        assert_eq!(room.role_of(&bob, &members), Role::Member);
        assert!(room.may(&bob, Action::Add, &members).is_ok());
        assert!(room.may(&bob, Action::Rename, &members).is_ok());
        for action in [Action::Remove, Action::Roles, Action::Timer] {
            assert_eq!(
                room.may(&bob, action, &members),
                Err(Forbidden {
                    action,
                    needs: Role::Admin
                })
            );
        }
        let promoted = room.with_role(&bob, Role::Admin);
        assert!(promoted.may(&bob, Action::Remove, &members).is_ok());
        assert_eq!(promoted.with_role(&bob, Role::Member).admins, room.admins);
        // With no admin left among the members, every member acts as one.
        assert_eq!(room.role_of(&bob, &set(&["bob@north"])), Role::Admin);
        // Members may never be let change roles.
        assert_eq!(
            Policy::default().with(Action::Roles, Role::Member).roles,
            Role::Admin
        );
    }

    #[test]
    fn commits_are_judged_by_the_room_before_them() {
        let room = room();
        let (alice, bob) = (user("alice@north"), user("bob@north"));
        let members = set(&["alice@north", "bob@north", "carol@north"]);
        let none = BTreeSet::new();
        let carol = set(&["carol@north"]);
        let changes = |committer, added, removed, gone| CommitChanges {
            committer,
            added,
            removed,
            gone,
            members: &members,
        };
        // A member adds; only an admin removes someone else.
        assert!(check_commit(
            Some(&room),
            Some(&room),
            &changes(&bob, &carol, &none, &none)
        )
        .is_ok());
        assert_eq!(
            check_commit(
                Some(&room),
                Some(&room),
                &changes(&bob, &none, &carol, &carol)
            ),
            Err(CommitRefusal::Forbidden(Forbidden {
                action: Action::Remove,
                needs: Role::Admin
            }))
        );
        assert!(check_commit(
            Some(&room),
            Some(&room),
            &changes(&alice, &none, &carol, &carol)
        )
        .is_ok());
        // A member cannot make themselves an admin, nor loosen the policy.
        let bob_admin = room.with_role(&bob, Role::Admin);
        assert!(check_commit(
            Some(&room),
            Some(&bob_admin),
            &changes(&bob, &none, &none, &none)
        )
        .is_err());
        assert!(check_commit(
            Some(&room),
            Some(&bob_admin),
            &changes(&alice, &none, &none, &none)
        )
        .is_ok());
        let mut loose = room.clone();
        loose.policy.remove = Role::Member;
        assert!(check_commit(
            Some(&room),
            Some(&loose),
            &changes(&bob, &none, &none, &none)
        )
        .is_err());
        // An admin who leaves leaves the list, whoever commits it.
        let alice_gone = set(&["alice@north"]);
        let without = room.without(&alice_gone);
        assert!(check_commit(
            Some(&room),
            Some(&without),
            &changes(&bob, &none, &none, &alice_gone)
        )
        .is_ok());
        // Only an admin sets the timer, and only within range.
        let mut timed = room.clone();
        timed.disappear_after = Some(3600);
        assert_eq!(
            check_commit(
                Some(&room),
                Some(&timed),
                &changes(&bob, &none, &none, &none)
            ),
            Err(CommitRefusal::Forbidden(Forbidden {
                action: Action::Timer,
                needs: Role::Admin
            }))
        );
        assert!(check_commit(
            Some(&room),
            Some(&timed),
            &changes(&alice, &none, &none, &none)
        )
        .is_ok());
        timed.disappear_after = Some(5);
        assert_eq!(
            check_commit(
                Some(&room),
                Some(&timed),
                &changes(&alice, &none, &none, &none)
            ),
            Err(CommitRefusal::Timer)
        );
        // Nobody drops the room or changes its URI.
        assert_eq!(
            check_commit(Some(&room), None, &changes(&alice, &none, &none, &none)),
            Err(CommitRefusal::RoomChanged)
        );
        let mut moved = room.clone();
        moved.uri.push('x');
        assert_eq!(
            check_commit(
                Some(&room),
                Some(&moved),
                &changes(&alice, &none, &none, &none)
            ),
            Err(CommitRefusal::RoomChanged)
        );
    }

    /// `{"v": 2, "uri": "mimi://north/r/abab…ab", "admins": ["alice@north"],
    /// "policy": {"add": "member", "remove": "admin", "rename": "member",
    /// "roles": "admin", "timer": "admin"}}`.
    const ROOM_GOLDEN: &str = "a461760263757269782f6d696d693a2f2f6e6f7274682f722f61626162616261\
626162616261626162616261626162616261626162616261626661646d696e73\
816b616c696365406e6f72746866706f6c696379a563616464666d656d626572\
6672656d6f76656561646d696e6672656e616d65666d656d62657265726f6c65\
736561646d696e6574696d65726561646d696e";

    /// Version 1: `{"v": 1, "uri": "mimi://north/r/abab…ab", "admins":
    /// ["alice@north"]}`.
    const ROOM_V1_GOLDEN: &str = "a361760163757269782f6d696d693a2f2f6e6f7274682f722f61626162616261\
626162616261626162616261626162616261626162616261626661646d696e73\
816b616c696365406e6f727468";
}
