//! Conversation roles, policy and renaming, for the apps.

use cascade_core::{Action, Role, RoomDetails};

use crate::{parse_group, user_id, CascadeClient, Result};

/// A member's role in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum FfiRole {
    /// Writes, reads and does what the policy lets members do.
    Member,
    /// Also does what the policy keeps for admins.
    Admin,
}

impl From<Role> for FfiRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Member => Self::Member,
            Role::Admin => Self::Admin,
        }
    }
}

impl From<FfiRole> for Role {
    fn from(r: FfiRole) -> Self {
        match r {
            FfiRole::Member => Role::Member,
            FfiRole::Admin => Role::Admin,
        }
    }
}

/// What a conversation's policy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum FfiAction {
    /// Add people who are not in it.
    Add,
    /// Remove someone else.
    Remove,
    /// Rename it.
    Rename,
    /// Change roles and the policy.
    Roles,
    /// Set the disappearing timer.
    Timer,
}

impl From<Action> for FfiAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Add => Self::Add,
            Action::Remove => Self::Remove,
            Action::Rename => Self::Rename,
            Action::Roles => Self::Roles,
            Action::Timer => Self::Timer,
        }
    }
}

impl From<FfiAction> for Action {
    fn from(a: FfiAction) -> Self {
        match a {
            FfiAction::Add => Action::Add,
            FfiAction::Remove => Action::Remove,
            FfiAction::Rename => Action::Rename,
            FfiAction::Roles => Action::Roles,
            FfiAction::Timer => Action::Timer,
        }
    }
}

/// Which role one action needs.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiRule {
    /// The action.
    pub action: FfiAction,
    /// The least role it needs.
    pub needs: FfiRole,
}

/// A conversation's admins and policy, and what this user may do.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiRoomDetails {
    /// Messages sent now disappear this many seconds after they are sent;
    /// none: they stay.
    pub disappear_after: Option<u64>,
    /// The admins among the members (`local@org`), sorted.
    pub admins: Vec<String>,
    /// Which role each action needs, one rule per action.
    pub policy: Vec<FfiRule>,
    /// This user's role.
    pub my_role: FfiRole,
    /// What this user may do.
    pub may: Vec<FfiAction>,
}

impl From<RoomDetails> for FfiRoomDetails {
    fn from(d: RoomDetails) -> Self {
        Self {
            disappear_after: d.disappear_after,
            admins: d.admins.iter().map(|u| u.to_string()).collect(),
            policy: Action::ALL
                .into_iter()
                .map(|a| FfiRule {
                    action: a.into(),
                    needs: d.policy.needs(a).into(),
                })
                .collect(),
            my_role: d.my_role.into(),
            may: d.may.into_iter().map(Into::into).collect(),
        }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl CascadeClient {
    /// A conversation's admins, policy and what this user may do; none for
    /// one created before conversation roles (where everyone may do
    /// everything).
    pub async fn room_details(&self, group_id: String) -> Result<Option<FfiRoomDetails>> {
        Ok(self
            .client()?
            .room_details(parse_group(&group_id)?)
            .await?
            .map(Into::into))
    }

    /// Gives a member a role (admins only; the last admin stays one).
    /// Queued as a commit: `ConversationUpdated` follows once accepted, or
    /// `OperationFailed` if the relay refused it.
    pub async fn set_role(&self, group_id: String, user: String, role: FfiRole) -> Result<()> {
        Ok(self
            .client()?
            .set_role(parse_group(&group_id)?, user_id(&user)?, role.into())
            .await?)
    }

    /// Lets `action` need `role` from now on (admins only).
    pub async fn set_policy(
        &self,
        group_id: String,
        action: FfiAction,
        role: FfiRole,
    ) -> Result<()> {
        Ok(self
            .client()?
            .set_policy(parse_group(&group_id)?, action.into(), role.into())
            .await?)
    }

    /// Lets messages sent from now on disappear from every device `secs`
    /// seconds after they are sent (60 to 31,622,400), or (none) stay.
    /// Needs the role the policy asks for the timer.
    pub async fn set_timer(&self, group_id: String, secs: Option<u64>) -> Result<()> {
        Ok(self
            .client()?
            .set_timer(parse_group(&group_id)?, secs)
            .await?)
    }

    /// Renames a conversation for everyone in it (if the policy lets this
    /// user).
    pub async fn rename(&self, group_id: String, name: String) -> Result<()> {
        Ok(self
            .client()?
            .rename(parse_group(&group_id)?, &name)
            .await?)
    }
}
