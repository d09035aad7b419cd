//! `Send`: encrypt an application message (text, the conversation's name,
//! a delivery receipt) and post it.
//!
//! The ciphertext is stored with the operation in the transaction that
//! advances the group's sending ratchet, so a retransmission (after a lost
//! answer, a reconnect or a restart) sends exactly the same bytes while the
//! group is at that epoch; receivers see one message either way (they drop
//! a second copy by its message id). Messages of one conversation are pipelined
//! (see the outbox); each is answered on its own.

use cascade_protocol::mls_header::framing_header;
use cascade_protocol::{GroupId, ProtocolError, Request, Response, UserId};

use super::RETRY_DELAY_MS;
use super::{Operation, Progress};
use crate::content::MessageId;
use crate::engine::commit::transient_or_failed;
use crate::engine::effects::{Effects, Route};
use crate::engine::groups::{self, bytes, mls_bytes};
use crate::engine::receipts;
use crate::engine::{Ctx, Event};
use crate::error::{CoreError, Result};
use crate::store::Transactions;
use crate::store::{ConversationState, DeliveryState};

/// What one `Send` operation sends.
pub(super) struct Outgoing {
    pub group_id: GroupId,
    pub message_id: MessageId,
    pub content: Vec<u8>,
    /// Only to these users' devices, if not empty.
    pub to: Vec<UserId>,
}

/// One application message.
pub(super) struct SendMessage {
    op_id: i64,
    group_id: GroupId,
    message_id: MessageId,
    content: Vec<u8>,
    to: Vec<UserId>,
    prepared: Option<Vec<u8>>,
}

impl SendMessage {
    pub fn new(op_id: i64, out: Outgoing, prepared: Option<Vec<u8>>) -> Self {
        Self {
            op_id,
            group_id: out.group_id,
            message_id: out.message_id,
            content: out.content,
            to: out.to,
            prepared,
        }
    }

    /// Marks the message failed (if it is one the user sees: receipts and
    /// names have no history entry) and ends the operation.
    fn fail(&self, cx: &Ctx<'_>, fx: &mut Effects) -> Result<Progress> {
        let tx = cx.store.transaction()?;
        let shown = cx.store.message(&self.message_id)?.is_some();
        if shown {
            cx.store
                .set_message_state(&self.message_id, DeliveryState::Failed, None)?;
        }
        cx.store.delete_op(self.op_id)?;
        tx.commit()?;
        if shown {
            fx.event(Event::DeliveryState {
                group_id: self.group_id,
                message_id: self.message_id,
                state: DeliveryState::Failed,
            });
        }
        Ok(Progress::Done)
    }

    /// Encrypts the message at the group's epoch; `None` while the group
    /// holds proposals not yet committed (MLS sends nothing then: they are
    /// committed first).
    fn encrypt(&self, cx: &Ctx<'_>) -> Result<Option<Vec<u8>>> {
        let tx = cx.store.transaction()?;
        let provider = cx.store.mls();
        let mut group = groups::load(cx.store, &self.group_id)?;
        if group.pending_proposals().next().is_some() {
            tracing::debug!(
                group = %self.group_id,
                own = ?group.own_leaf_index(),
                proposals = ?group
                    .pending_proposals()
                    .map(|p| (p.proposal().proposal_type(), p.sender().clone()))
                    .collect::<Vec<_>>(),
                "proposals wait to be committed"
            );
            return Ok(None);
        }
        let msg = group
            .create_message(&provider, &cx.me.signer, &self.content)
            .map_err(CoreError::mls)?;
        let b = mls_bytes(&msg)?;
        cx.store.set_op_prepared(self.op_id, &b)?;
        tx.commit()?;
        Ok(Some(b))
    }
}

impl Operation for SendMessage {
    fn start(&mut self, cx: &Ctx<'_>, fx: &mut Effects) -> Result<Progress> {
        let state = cx.store.conversation_cursor(&self.group_id)?.map(|c| c.1);
        if state != Some(ConversationState::Active) {
            // No longer a member, or leaving: what the user wrote before
            // asking to leave went out before the request (it is a barrier).
            return self.fail(cx, fx);
        }
        // The same bytes again while the group is at the epoch they were
        // encrypted in; after a commit, encrypted afresh. A ciphertext of an
        // older epoch may no longer be readable (members keep only a few
        // past epochs' keys), and if the first copy did land, receivers
        // drop the second by its message id.
        let stale = match &self.prepared {
            Some(p) => {
                framing_header(p).map(|h| h.epoch).ok()
                    != groups::try_load(cx.store, &self.group_id)?.map(|g| g.epoch().as_u64())
            }
            None => false,
        };
        if stale {
            self.prepared = None;
        }
        let message = match &self.prepared {
            Some(p) => p.clone(),
            None => match self.encrypt(cx) {
                Ok(Some(b)) => {
                    self.prepared = Some(b.clone());
                    b
                }
                Ok(None) => return Ok(Progress::CommitFirst),
                Err(e @ CoreError::Storage(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "a message could not be encrypted");
                    return self.fail(cx, fx);
                }
            },
        };
        tracing::debug!(device = %cx.me.identity.device_id, group = %self.group_id, op = self.op_id, epoch = ?framing_header(&message).map(|h| h.epoch).ok(), "message out");
        fx.request(
            Request::SendMessage {
                group_id: self.group_id,
                message: bytes(message),
                to: self.to.clone(),
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
        match answer {
            Ok(Response::MessageAccepted { seq }) => {
                tracing::debug!(device = %cx.me.identity.device_id, group = %self.group_id, op = self.op_id, seq, "message accepted");
                let tx = cx.store.transaction()?;
                let shown = cx.store.message(&self.message_id)?.is_some();
                let mut events = Vec::new();
                if shown {
                    cx.store
                        .set_message_state(&self.message_id, DeliveryState::Sent, Some(seq))?;
                    events.push(Event::DeliveryState {
                        group_id: self.group_id,
                        message_id: self.message_id,
                        state: DeliveryState::Sent,
                    });
                    events.extend(receipts::on_sent(
                        cx.store,
                        cx.me,
                        &self.group_id,
                        &self.message_id,
                    )?);
                }
                cx.store.delete_op(self.op_id)?;
                // Messages go out again: a later hold is announced anew.
                let held = format!("held:{}", self.group_id);
                if cx.store.kv_get(&held)?.is_some_and(|v| !v.is_empty()) {
                    cx.store.kv_set(&held, b"")?;
                }
                tx.commit()?;
                fx.events(events);
                Ok(Progress::Done)
            }
            // Encrypted in an epoch the relay no longer (or not yet) takes:
            // again, once this device is at the group's epoch.
            Err(ProtocolError::WrongEpoch { .. }) => {
                self.prepared = None;
                Ok(Progress::RetryAt(cx.now + RETRY_DELAY_MS))
            }
            Err(ProtocolError::QueueFull { devices, .. }) if !devices.is_empty() => {
                // Held until the silent devices read or are removed: say
                // so in the conversation, once per set of devices.
                if let Some(line) = held_notice(cx, &self.group_id, &devices)? {
                    fx.events(vec![Event::Message(line)]);
                }
                Ok(Progress::RetryAt(cx.now + RETRY_DELAY_MS))
            }
            Err(e) => match transient_or_failed(cx, e) {
                retry @ Progress::RetryAt(_) => Ok(retry),
                _ => {
                    tracing::warn!("message refused by the relay");
                    self.fail(cx, fx)
                }
            },
            Ok(_) => self.fail(cx, fx),
        }
    }
}

/// The line a conversation shows when the relay holds its messages because
/// member devices stopped reading (`QueueFull` naming them; hazard H-017):
/// who, and what to do. Added once for each set of devices.
pub const HELD_TEXT: &str =
    "Messages to this conversation are held because a member's device has stopped receiving them";

/// Adds [`HELD_TEXT`] with the devices' owners to the conversation, unless
/// it was added for the same devices already; the line, if added.
fn held_notice(
    cx: &Ctx<'_>,
    group_id: &GroupId,
    devices: &[cascade_protocol::DeviceId],
) -> Result<Option<crate::store::Message>> {
    let mut ids: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    ids.sort();
    let key = format!("held:{group_id}");
    let seen = ids.join(",");
    if cx.store.kv_get(&key)?.as_deref() == Some(seen.as_bytes()) {
        return Ok(None);
    }
    let who: Vec<String> = devices
        .iter()
        .map(|d| groups::device_owner(cx.store, group_id, d))
        .collect();
    let line = crate::store::Message::system_line(
        *group_id,
        &cx.me.identity.user_id,
        cx.me.identity.device_id,
        cx.now,
        None,
        format!(
            "{HELD_TEXT}: {}. They go out when it reads again; removing that device (or person) from the conversation releases them now.",
            who.join(", ")
        ),
    );
    let tx = cx.store.transaction()?;
    cx.store.insert_message(&line, cx.now, false)?;
    cx.store.kv_set(&key, seen.as_bytes())?;
    tx.commit()?;
    Ok(Some(line))
}
