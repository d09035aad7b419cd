//! `RemoveMembers` and `RemoveDevices`: commit the removal of every device
//! of some users (a member's choice), or of some devices (revoked by their
//! organisation, or of an organisation no longer trusted).

use cascade_protocol::{DeviceId, GroupId, UserId};
use openmls::prelude::*;

use crate::engine::commit::{build_commit_with, Built, Change, ChangeOp};
use crate::engine::groups::Present;
use crate::engine::Ctx;
use crate::error::Result;

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
        // As `remove_members`, without this device's own request to leave.
        build_commit_with(cx, group, &leaves, None, |b| b).map(Some)
    }
}
