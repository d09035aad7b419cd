//! `ChangeRoom`: a commit that changes the room's admins or policy
//! (protocol §14.8). The change is kept as an intent and applied to the
//! room as it is when the commit is built, so a retry after another
//! member's commit neither undoes theirs nor acts on a stale role.

use std::collections::BTreeSet;

use cascade_protocol::{GroupId, UserId};
use openmls::prelude::*;
use serde::{Deserialize, Serialize};

use crate::engine::commit::{build_commit_with, Built, Change, ChangeOp};
use crate::engine::groups::Present;
use crate::engine::room::{self, Action, Role, Room};
use crate::engine::Ctx;
use crate::error::{CoreError, InvalidInput, Result};

/// A change to a conversation's room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum RoomChange {
    /// Give `user` this role.
    Role {
        /// Whose role.
        user: UserId,
        /// The role they get.
        role: Role,
    },
    /// Let `action` need `role`.
    Policy {
        /// What the policy governs.
        action: Action,
        /// The least role it needs from now on.
        role: Role,
    },
    /// Let messages sent from now on disappear this many seconds after
    /// they are sent (`None`: they stay).
    Timer {
        /// Seconds, [`room::MIN_TIMER_SECS`] to [`room::MAX_TIMER_SECS`].
        secs: Option<u64>,
    },
}

impl RoomChange {
    /// What doing this change needs.
    pub fn action(&self) -> Action {
        match self {
            RoomChange::Timer { .. } => Action::Timer,
            RoomChange::Role { .. } | RoomChange::Policy { .. } => Action::Roles,
        }
    }

    /// The room after this change. Refuses to leave a conversation without
    /// an admin among its members, and to give a role to someone who is not
    /// a member.
    pub fn apply(&self, room: &Room, members: &BTreeSet<UserId>) -> Result<Room> {
        match self {
            RoomChange::Role { user, role } => {
                if !members.contains(user) {
                    return Err(InvalidInput::NotInConversation(user.clone()).into());
                }
                let next = room.with_role(user, *role);
                if !next.admins.iter().any(|a| members.contains(a)) {
                    return Err(InvalidInput::LastAdmin.into());
                }
                Ok(next)
            }
            RoomChange::Policy { action, role } => {
                let mut next = room.clone();
                next.policy = room.policy.with(*action, *role);
                Ok(next)
            }
            RoomChange::Timer { secs } => {
                if secs.is_some_and(|s| !room::timer_in_range(s)) {
                    return Err(InvalidInput::Timer {
                        min: room::MIN_TIMER_SECS,
                        max: room::MAX_TIMER_SECS,
                    }
                    .into());
                }
                let mut next = room.clone();
                next.disappear_after = *secs;
                Ok(next)
            }
        }
    }
}

/// A room change being committed; `unchecked`: without this user's role
/// checked (a test playing a hostile member).
pub(super) struct ChangeRoom {
    change: RoomChange,
    unchecked: bool,
}

pub(super) fn change_room(
    op_id: i64,
    group_id: GroupId,
    change: RoomChange,
    unchecked: bool,
) -> ChangeOp<ChangeRoom> {
    ChangeOp::new(op_id, group_id, ChangeRoom { change, unchecked })
}

impl Change for ChangeRoom {
    fn build(
        &mut self,
        cx: &Ctx<'_>,
        group: &mut MlsGroup,
        present: &[Present],
    ) -> Result<Option<Built>> {
        let current = room::of(group).ok_or(InvalidInput::OldConversation)?;
        let members: BTreeSet<UserId> = present.iter().map(|p| p.id.user.clone()).collect();
        // Judged again as the room is now: the role may have gone meanwhile.
        if !self.unchecked {
            current
                .may(&cx.me.identity.user_id, self.change.action(), &members)
                .map_err(CoreError::from)?;
        }
        let next = self.change.apply(&current, &members)?;
        if next == current {
            return Ok(None); // so already (another admin's commit)
        }
        build_commit_with(cx, group, &[], Some(next), |b| b).map(Some)
    }
}
