//! `UpdateCredential`: a self-update commit that puts this device's renewed
//! certificate (or its certificate under a rotated CA) in its leaf.

use cascade_protocol::GroupId;
use openmls::prelude::*;

use crate::engine::commit::{Built, Change, ChangeOp};
use crate::engine::groups::Present;
use crate::engine::Ctx;
use crate::error::{CoreError, Result};

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
        // A self-update adds nobody: there is no Welcome.
        let (commit, _, group_info) = group
            .self_update(&cx.store.mls(), &cx.me.signer, params)
            .map_err(CoreError::mls)?
            .into_contents();
        Ok(Some(Built {
            commit,
            welcome: None,
            group_info,
        }))
    }
}
