//! `UpdateCredential`: a self-update commit that puts this device's renewed
//! certificate (or its certificate under a rotated CA) in its leaf.

use cascade_protocol::GroupId;
use openmls::prelude::*;

use crate::engine::commit::{build_commit, Built, Change, ChangeOp};
use crate::engine::groups::Present;
use crate::engine::Ctx;
use crate::error::Result;

/// A self-update carrying the current certificate.
pub(super) struct UpdateCredential;

pub(super) fn update_credential(op_id: i64, group_id: GroupId) -> ChangeOp<UpdateCredential> {
    ChangeOp::new(op_id, group_id, UpdateCredential)
}

impl Change for UpdateCredential {
    fn build(
        &mut self,
        cx: &Ctx<'_>,
        group: &mut MlsGroup,
        _present: &[Present],
    ) -> Result<Option<Built>> {
        let certificate = cx.me.certificate()?;
        let current = group
            .own_leaf_node()
            .map(|l| crate::credential::certificate(l.credential()))
            .transpose()?;
        if current.as_deref() == Some(certificate) {
            return Ok(None); // already carries it
        }
        let params = LeafNodeParameters::builder()
            .with_credential_with_key(cx.me.credential_with_key()?)
            .build();
        // As `self_update`, without this device's own request to leave.
        build_commit(cx, group, |b| b.leaf_node_parameters(params)).map(Some)
    }
}
