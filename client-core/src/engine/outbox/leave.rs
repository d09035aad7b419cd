//! `Leave`: ask the other members to remove this device (a self-remove
//! proposal, which another member commits).

use cascade_protocol::{GroupId, ProtocolError, Request, Response};

use super::{Op, Operation, Progress};
use crate::engine::commit::transient_or_failed;
use crate::engine::effects::{Effects, Route};
use crate::engine::groups::{self, bytes, mls_bytes};
use crate::engine::{Ctx, Event};
use crate::error::{CoreError, Result};
use crate::store::Transactions;
use crate::store::{ClientStore, ConversationState};

/// A commit that did not remove this device discarded its request to
/// leave (proposals live for one epoch): while the conversation is still
/// `Leaving`, asks again. Runs in the transaction that merges the commit,
/// whoever made it. (A request asked twice in one epoch is one removal:
/// a commit holds one removal per member.)
pub(crate) fn ask_again(store: &dyn ClientStore, group_id: &GroupId) -> Result<()> {
    if store.conversation_cursor(group_id)?.map(|c| c.1) == Some(ConversationState::Leaving) {
        Op::Leave {
            group_id: *group_id,
        }
        .queue(store)?;
    }
    Ok(())
}

/// Asks to be removed from a conversation.
pub(super) struct Leave {
    op_id: i64,
    group_id: GroupId,
    /// It is the last member and asked the relay to close the group.
    closing: bool,
}

impl Leave {
    pub fn new(op_id: i64, group_id: GroupId) -> Self {
        Self {
            op_id,
            group_id,
            closing: false,
        }
    }

    /// The conversation is left (closed, or gone already).
    fn left(&self, cx: &Ctx<'_>, fx: &mut Effects) -> Result<Progress> {
        cx.store
            .set_conversation_state(&self.group_id, ConversationState::Left)?;
        fx.event(Event::ConversationUpdated(self.group_id));
        Ok(Progress::Done)
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
            // The last one out: nobody is left to commit the removal, so
            // the relay closes the group (else a new device of this user
            // would find it and join it).
            drop(tx);
            self.closing = true;
            fx.request(
                Request::CloseGroup {
                    group_id: self.group_id,
                },
                Route::Op {
                    group: self.group_id,
                    op_id: self.op_id,
                },
            );
            return Ok(Progress::Waiting);
        }
        self.closing = false;
        let msg = group
            .leave_group(&provider, &cx.me.signer)
            .map_err(CoreError::mls)?;
        tx.commit()?;
        fx.request(
            Request::SendMessage {
                group_id: self.group_id,
                message: bytes(mls_bytes(&msg)?),
                to: vec![],
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
        fx: &mut Effects,
    ) -> Result<Progress> {
        if self.closing {
            return match answer {
                Ok(Response::GroupClosed)
                | Err(ProtocolError::UnknownGroup | ProtocolError::NotMember) => self.left(cx, fx),
                // Someone joined meanwhile (a new device of this user):
                // leave the ordinary way once their commit is processed.
                Err(ProtocolError::Malformed { .. }) => {
                    Ok(Progress::RetryAt(cx.now + super::RETRY_DELAY_MS))
                }
                Err(e) => Ok(transient_or_failed(cx, e)),
                Ok(_) => Ok(Progress::Failed("unexpected answer from the relay".into())),
            };
        }
        Ok(match answer {
            Ok(Response::MessageAccepted { .. }) => Progress::Done,
            Err(e) => transient_or_failed(cx, e),
            Ok(_) => Progress::Failed("unexpected answer from the relay".into()),
        })
    }
}
