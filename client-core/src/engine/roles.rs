//! Conversation roles and policy (protocol §14.8): who is an admin, what
//! each role may do, and renaming. This device checks its own user's role
//! before it queues a change ([`crate::CoreError::Forbidden`]); every receiving
//! device checks the committer's again before it applies one
//! (`inbound::check_policy`), so a modified client gains nothing.

use std::collections::BTreeSet;

use cascade_protocol::{GroupId, UserId};
use serde::{Deserialize, Serialize};

use super::outbox::change_room::RoomChange;
use super::outbox::Op;
use super::room::{Action, Policy, Role, Room};
use super::{groups, Engine, Event, MAX_NAME_BYTES};
use crate::content::{Body, Content, MessageId};
use crate::error::{InvalidInput, Result};
use crate::store::{ClientStore, Transactions};

/// A conversation's roles and policy as a front end shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomDetails {
    /// Messages sent now disappear this many seconds after they are sent;
    /// `None`: they stay.
    pub disappear_after: Option<u64>,
    /// The admins among the members, sorted.
    pub admins: Vec<UserId>,
    /// Which role each action needs.
    pub policy: Policy,
    /// This user's role.
    pub my_role: Role,
    /// What this user may do, in [`Action::ALL`]'s order.
    pub may: Vec<Action>,
}

impl<S: ClientStore> Engine<S> {
    /// The users in a conversation and its room (`None`: created before
    /// rooms).
    pub(super) fn room_and_members(
        &self,
        group_id: &GroupId,
    ) -> Result<(Option<Room>, BTreeSet<UserId>)> {
        let group = groups::load(&self.store, group_id)?;
        let members = groups::users(&group).into_iter().collect();
        Ok((super::room::of(&group), members))
    }

    /// Whether this user may do `action` in the conversation (a
    /// conversation from before rooms lets every member do everything).
    pub(super) fn check_may(&self, group_id: &GroupId, action: Action) -> Result<()> {
        let me = self.me()?.identity.user_id.clone();
        match self.room_and_members(group_id)? {
            (Some(room), members) => Ok(room.may(&me, action, &members)?),
            (None, _) => Ok(()),
        }
    }

    /// A conversation's roles and policy; `None` for one created before
    /// rooms, where every member may do everything.
    pub fn room_details(&self, group_id: &GroupId) -> Result<Option<RoomDetails>> {
        self.require(group_id, false)?;
        let me = self.me()?.identity.user_id.clone();
        let (Some(room), members) = self.room_and_members(group_id)? else {
            return Ok(None);
        };
        let mut admins: Vec<UserId> = members
            .iter()
            .filter(|u| room.role_of(u, &members) == Role::Admin)
            .cloned()
            .collect();
        admins.sort();
        Ok(Some(RoomDetails {
            disappear_after: room.disappear_after,
            admins,
            policy: room.policy,
            my_role: room.role_of(&me, &members),
            may: Action::ALL
                .into_iter()
                .filter(|a| room.may(&me, *a, &members).is_ok())
                .collect(),
        }))
    }

    /// Gives `user` a role in the conversation (admins promote and
    /// demote; the last admin among the members stays one). Queued as a
    /// commit; [`Event::ConversationUpdated`] follows once it is accepted.
    pub fn set_role(
        &mut self,
        group_id: &GroupId,
        user: &UserId,
        role: Role,
        now: u64,
    ) -> Result<()> {
        self.change_room(
            group_id,
            RoomChange::Role {
                user: user.clone(),
                role,
            },
            true,
            now,
        )
    }

    /// Lets `action` need `role` in the conversation (admins only; changing
    /// roles always needs an admin). Queued as a commit.
    pub fn set_policy(
        &mut self,
        group_id: &GroupId,
        action: Action,
        role: Role,
        now: u64,
    ) -> Result<()> {
        self.change_room(group_id, RoomChange::Policy { action, role }, true, now)
    }

    /// Lets messages sent from now on disappear from every device `secs`
    /// seconds after they are sent (`None`: they stay). Needs the role the
    /// policy asks for the timer (admins, at first). Queued as a commit.
    pub fn set_timer(&mut self, group_id: &GroupId, secs: Option<u64>, now: u64) -> Result<()> {
        self.change_room(group_id, RoomChange::Timer { secs }, true, now)
    }

    /// Queues a room change without checking this user's role: for tests
    /// that play a hostile member, whose change every other device must
    /// refuse.
    #[doc(hidden)]
    pub fn change_room_unchecked(
        &mut self,
        group_id: &GroupId,
        change: RoomChange,
        now: u64,
    ) -> Result<()> {
        self.change_room(group_id, change, false, now)
    }

    /// Queues a removal without checking this user's role: for tests that
    /// play a hostile member.
    #[doc(hidden)]
    pub fn remove_members_unchecked(
        &mut self,
        group_id: &GroupId,
        users: Vec<UserId>,
        now: u64,
    ) -> Result<()> {
        self.require(group_id, true)?;
        Op::RemoveMembers {
            group_id: *group_id,
            users,
        }
        .queue(&self.store)?;
        self.drive(now)
    }

    fn change_room(
        &mut self,
        group_id: &GroupId,
        change: RoomChange,
        check: bool,
        now: u64,
    ) -> Result<()> {
        self.require(group_id, true)?;
        let (room, members) = self.room_and_members(group_id)?;
        let room = room.ok_or(InvalidInput::OldConversation)?;
        if check {
            let me = self.me()?.identity.user_id.clone();
            room.may(&me, change.action(), &members)?;
            change.apply(&room, &members)?;
        }
        Op::ChangeRoom {
            group_id: *group_id,
            change,
            unchecked: !check,
        }
        .queue(&self.store)?;
        self.drive(now)
    }

    /// Renames the conversation for every member (if the policy lets this
    /// user rename it). Shown here at once; sent as a message.
    pub fn rename(&mut self, group_id: &GroupId, name: &str, now: u64) -> Result<()> {
        self.require(group_id, true)?;
        let name = name.trim();
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(InvalidInput::ConversationName {
                limit: MAX_NAME_BYTES,
            }
            .into());
        }
        self.check_may(group_id, Action::Rename)?;
        let tx = self.store.transaction()?;
        self.store.set_conversation_name(group_id, name)?;
        let content = Content {
            id: MessageId::random(),
            sent_at: now,
            body: Body::GroupMeta { name: name.into() },
        };
        Op::send(*group_id, &content).queue(&self.store)?;
        tx.commit()?;
        self.events.push_back(Event::ConversationUpdated(*group_id));
        self.drive(now)
    }

    /// Whether adding these users brings in anyone new (adding devices of
    /// people already there, or one's own, needs no role).
    pub(super) fn check_add(&self, group_id: &GroupId, users: &[UserId]) -> Result<()> {
        let (room, members) = self.room_and_members(group_id)?;
        let me = &self.me()?.identity.user_id;
        match room {
            Some(room) if users.iter().any(|u| u != me && !members.contains(u)) => {
                Ok(room.may(me, Action::Add, &members)?)
            }
            _ => Ok(()),
        }
    }

    /// Whether removing these users needs the role (removing one's own
    /// devices does not).
    pub(super) fn check_remove(&self, group_id: &GroupId, users: &[UserId]) -> Result<()> {
        let me = self.me()?.identity.user_id.clone();
        if users.iter().any(|u| *u != me) {
            self.check_may(group_id, Action::Remove)?;
        }
        Ok(())
    }
}

/// What a merged commit changed in the room, as lines in the conversation
/// ("Alice Smith made Bob Jones an admin"), stored with the commit's
/// transaction; their events.
pub(super) fn record_room_change(
    store: &dyn ClientStore,
    me: &super::Me,
    group_id: &GroupId,
    before: Option<&Room>,
    group: &openmls::prelude::MlsGroup,
    by: &UserId,
    now: u64,
) -> Result<Vec<Event>> {
    let (Some(before), Some(after)) = (before, super::room::of(group)) else {
        return Ok(vec![]);
    };
    if *before == after {
        return Ok(vec![]);
    }
    let certs = groups::member_certs(group)?;
    let members: BTreeSet<UserId> = certs.iter().map(|c| c.user.clone()).collect();
    let name = |u: &UserId| {
        certs
            .iter()
            .find(|c| &c.user == u)
            .map(|c| c.display_name.clone())
            .unwrap_or_else(|| u.to_string())
    };
    let mut lines = Vec::new();
    for u in &after.admins {
        if !before.admins.contains(u) {
            lines.push(format!("{} made {} an admin", name(by), name(u)));
        }
    }
    for u in &before.admins {
        if !after.admins.contains(u) && members.contains(u) {
            lines.push(format!("{} made {} a member", name(by), name(u)));
        }
    }
    for action in Action::ALL {
        let role = after.policy.needs(action);
        if before.policy.needs(action) != role {
            let who = match role {
                Role::Admin => "only admins",
                Role::Member => "every member",
            };
            lines.push(format!(
                "{} let {who} {}",
                name(by),
                match action {
                    Action::Add => "add people",
                    Action::Remove => "remove others",
                    Action::Rename => "rename the conversation",
                    Action::Roles => "change roles",
                    Action::Timer => "set the disappearing timer",
                }
            ));
        }
    }
    if before.disappear_after != after.disappear_after {
        lines.push(match after.disappear_after {
            Some(secs) => format!(
                "{} set messages to disappear {} after they are sent",
                name(by),
                duration(secs)
            ),
            None => format!("{} turned off disappearing messages", name(by)),
        });
    }
    let mut events = Vec::new();
    for text in lines {
        let line = crate::store::Message::system_line(
            *group_id,
            &me.identity.user_id,
            me.identity.device_id,
            now,
            None,
            text,
        );
        store.insert_message(&line, now, false)?;
        events.push(Event::Message(line));
    }
    events.push(Event::ConversationUpdated(*group_id));
    Ok(events)
}

/// A timer in words: "5 minutes", "1 hour", "2 days", "1 week".
pub fn duration(secs: u64) -> String {
    let units = [
        (7 * 24 * 3600, "week"),
        (24 * 3600, "day"),
        (3600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let (size, unit) = units
        .into_iter()
        .find(|(size, _)| secs.is_multiple_of(*size) && secs >= *size)
        .unwrap_or((1, "second"));
    let n = secs / size;
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}
