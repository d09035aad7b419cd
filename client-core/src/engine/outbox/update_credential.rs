//! `UpdateCredential`: a self-update commit that puts this device's renewed
//! certificate (or its certificate under a rotated CA) in its leaf.

use cascade_protocol::GroupId;
use openmls::prelude::*;

use crate::engine::commit::{not_own_removal, Built, Change, ChangeOp};
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
        // Built as `self_update` does, but without this device's own
        // request to leave, if it made one (see `not_own_removal`). A
        // self-update adds nobody: there is no Welcome.
        let own = group.own_leaf_index();
        let provider = cx.store.mls();
        let (commit, _, group_info) = group
            .commit_builder()
            .leaf_node_parameters(params)
            .consume_proposal_store(true)
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
            .map_err(CoreError::mls)?
            .into_contents();
        Ok(Some(Built {
            commit,
            welcome: None,
            group_info,
        }))
    }
}
