//! `Leave`: ask the other members to remove this device (a self-remove
//! proposal, which another member commits).

use cascade_protocol::{GroupId, ProtocolError, Request, Response};

use super::{Operation, Progress};
use crate::engine::commit::transient_or_failed;
use crate::engine::effects::{Effects, Route};
use crate::engine::groups::{self, bytes, mls_bytes};
use crate::engine::{Ctx, Event};
use crate::error::{CoreError, Result};
use crate::store::ConversationState;
use crate::store::Transactions;

/// Asks to be removed from a conversation.
pub(super) struct Leave {
    op_id: i64,
    group_id: GroupId,
}

impl Leave {
    pub fn new(op_id: i64, group_id: GroupId) -> Self {
        Self { op_id, group_id }
    }
}

impl Operation for Leave {
    fn start(&mut self, cx: &Ctx<'_>, fx: &mut Effects) -> Result<Progress> {
        let state = cx.store.conversation_cursor(&self.group_id)?.map(|c| c.1);
        if state != Some(ConversationState::Leaving) {
            // Removed already, or added back since: the request is moot.
            return Ok(Progress::Done);
        }
        let tx = cx.store.transaction()?;
        let provider = cx.store.mls();
        let mut group = groups::load(cx.store, &self.group_id)?;
        if !group.is_active() {
            return Ok(Progress::Done); // removed already
        }
        if group.members().count() == 1 {
            // The last one out: nobody is left to commit the removal.
            cx.store
                .set_conversation_state(&self.group_id, ConversationState::Left)?;
            tx.commit()?;
            fx.event(Event::ConversationUpdated(self.group_id));
            return Ok(Progress::Done);
        }
        let msg = group
            .leave_group(&provider, &cx.me.signer)
            .map_err(CoreError::mls)?;
        tx.commit()?;
        fx.request(
            Request::SendMessage {
                group_id: self.group_id,
                message: bytes(mls_bytes(&msg)?),
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
            Ok(Response::MessageAccepted { .. }) => Progress::Done,
            Err(e) => transient_or_failed(cx, e),
            Ok(_) => Progress::Failed("unexpected answer from the relay".into()),
        })
    }
}
