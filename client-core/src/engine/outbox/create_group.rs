//! `CreateGroup`: register a conversation created on this device with the
//! relay, at epoch 0, with its GroupInfo.

use cascade_protocol::{GroupId, ProtocolError, Request, Response};

use super::{Operation, Progress};
use crate::engine::commit::transient_or_failed;
use crate::engine::effects::{Effects, Route};
use crate::engine::groups::{self, bytes, mls_bytes};
use crate::engine::Ctx;
use crate::error::{CoreError, Result};
use openmls_traits::OpenMlsProvider as _;

/// Registers a locally created group.
pub(super) struct CreateGroup {
    op_id: i64,
    group_id: GroupId,
}

impl CreateGroup {
    pub fn new(op_id: i64, group_id: GroupId) -> Self {
        Self { op_id, group_id }
    }
}

impl Operation for CreateGroup {
    fn start(&mut self, cx: &Ctx<'_>, fx: &mut Effects) -> Result<Progress> {
        let group = groups::read(cx.store, &self.group_id)?;
        let gi = group
            .export_group_info(cx.store.mls().crypto(), &cx.me.signer, true)
            .map_err(CoreError::mls)?;
        fx.request(
            Request::CreateGroup {
                group_id: self.group_id,
                group_info: bytes(mls_bytes(&gi)?),
            },
            Route::Op {
                group: self.group_id,
                op_id: self.op_id,
            },
        );
        Ok(Progress::Waiting)
    }

    fn answer(
        &mut self,
        cx: &Ctx<'_>,
        answer: std::result::Result<Response, ProtocolError>,
        _fx: &mut Effects,
    ) -> Result<Progress> {
        Ok(match answer {
            // Exists: our registration landed before a lost answer.
            Ok(Response::GroupCreated) | Err(ProtocolError::GroupExists) => Progress::Done,
            Err(e) => transient_or_failed(cx, e),
            Ok(_) => Progress::Failed("unexpected answer from the relay".into()),
        })
    }
}
