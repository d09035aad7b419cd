//! Conversation roles, policy and renaming, for front ends
//! ([`crate::engine`]'s `roles` does the work).

use cascade_protocol::{GroupId, UserId};

use super::Client;
use crate::engine::{Action, Role, RoomChange, RoomDetails};
use crate::error::Result;

impl Client {
    /// A conversation's admins, policy and what this user may do; `None`
    /// for one created before conversation roles.
    pub async fn room_details(&self, group: GroupId) -> Result<Option<RoomDetails>> {
        self.call(move |e, _| e.room_details(&group)).await
    }

    /// Gives `user` a role in a conversation (queued as a commit).
    pub async fn set_role(&self, group: GroupId, user: UserId, role: Role) -> Result<()> {
        self.call(move |e, now| e.set_role(&group, &user, role, now))
            .await
    }

    /// Lets `action` need `role` in a conversation (queued as a commit).
    pub async fn set_policy(&self, group: GroupId, action: Action, role: Role) -> Result<()> {
        self.call(move |e, now| e.set_policy(&group, action, role, now))
            .await
    }

    /// Lets messages sent from now on disappear `secs` seconds after they
    /// are sent (`None`: they stay). Queued as a commit.
    pub async fn set_timer(&self, group: GroupId, secs: Option<u64>) -> Result<()> {
        self.call(move |e, now| e.set_timer(&group, secs, now))
            .await
    }

    /// Renames a conversation for everyone in it.
    pub async fn rename(&self, group: GroupId, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.call(move |e, now| e.rename(&group, &name, now)).await
    }

    /// A room change without this user's role checked: for tests that play
    /// a hostile member.
    #[doc(hidden)]
    pub async fn change_room_unchecked(&self, group: GroupId, change: RoomChange) -> Result<()> {
        self.call(move |e, now| e.change_room_unchecked(&group, change, now))
            .await
    }

    /// A removal without this user's role checked: for tests that play a
    /// hostile member.
    #[doc(hidden)]
    pub async fn remove_members_unchecked(&self, group: GroupId, users: Vec<UserId>) -> Result<()> {
        self.call(move |e, now| e.remove_members_unchecked(&group, users, now))
            .await
    }
}
