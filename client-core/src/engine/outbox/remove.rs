//! `RemoveMembers` and `RemoveDevices`: commit the removal of every device
//! of some users (a member's choice), or of some devices (revoked by their
//! organisation, or of an organisation no longer trusted).

use cascade_protocol::{DeviceId, GroupId, UserId};
use openmls::prelude::*;

use crate::engine::commit::{not_own_removal, Built, Change, ChangeOp};
use crate::engine::groups::Present;
use crate::engine::Ctx;
use crate::error::{CoreError, Result};

/// Who goes.
pub(super) enum Targets {
    /// Every device of these users.
    Users(Vec<UserId>),
    /// These devices.
    Devices(Vec<DeviceId>),
}

/// A removal commit.
pub(super) struct Remove(Targets);

pub(super) fn remove_users(op_id: i64, group_id: GroupId, users: Vec<UserId>) -> ChangeOp<Remove> {
    ChangeOp::new(op_id, group_id, Remove(Targets::Users(users)))
}

pub(super) fn remove_devices(
    op_id: i64,
    group_id: GroupId,
    devices: Vec<DeviceId>,
) -> ChangeOp<Remove> {
    ChangeOp::new(op_id, group_id, Remove(Targets::Devices(devices)))
}

impl Change for Remove {
    fn build(
        &mut self,
        cx: &Ctx<'_>,
        group: &mut MlsGroup,
        present: &[Present],
    ) -> Result<Option<Built>> {
        let leaves: Vec<LeafNodeIndex> = present
            .iter()
            .filter(|p| match &self.0 {
                Targets::Users(users) => users.contains(&p.id.user),
                Targets::Devices(devices) => devices.contains(&p.id.device),
            })
            .map(|p| p.leaf)
            .collect();
        if leaves.is_empty() {
            return Ok(None); // gone already (another member's commit)
        }
        // Built as `remove_members` does, but without this device's own
        // request to leave, if it made one (see `not_own_removal`).
        let own = group.own_leaf_index();
        let provider = cx.store.mls();
        let bundle = group
            .commit_builder()
            .propose_removals(leaves)
            .load_psks(provider.storage())
            .map_err(CoreError::mls)?
            .build(
                provider.rand(),
                provider.crypto(),
                &cx.me.signer,
                not_own_removal(own),
            )
            .map_err(CoreError::mls)?
            .stage_commit(&provider)
            .map_err(CoreError::mls)?;
        let welcome = bundle.to_welcome_msg();
        let (commit, _, group_info) = bundle.into_contents();
        Ok(Some(Built {
            commit,
            welcome,
            group_info,
        }))
    }
}
