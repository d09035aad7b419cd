//! `JoinExternal`: join a group by external commit (RFC 9420 §12.4.3.2),
//! from the GroupInfo the relay keeps.
//!
//! Two uses:
//! - a user's **new device** joins the user's conversations (members accept
//!   an external join only from a user already in the conversation);
//! - a device that **fell out of step** with a conversation (its own commit
//!   lost, a commit it cannot process, an epoch it never reaches) rejoins
//!   it: openmls removes its old leaf in the same commit (a resync), and the
//!   relay keeps its roster as it is. Messages sent while it was out of step
//!   cannot be read on it; a system line in the history says so.
//!
//! Every member in the GroupInfo must verify before the device joins. The
//! commit is stored with the operation in the same transaction as the new
//! group state, and the conversation is recorded as `Joining` (or stays
//! `Rejoining`), so after a crash the same commit is resent, and its echo
//! in the queue completes the join if the relay's answer was lost.

use cascade_protocol::{CommitBundle, GroupId, ProtocolError, QueueItem, Request, Response};
use openmls::prelude::*;

use super::{Op, Operation, Progress};
use crate::engine::commit::{encode_bundle, prepared_bundle, transient_or_failed};
use crate::engine::effects::{Effects, Route};
use crate::engine::groups::{self, bytes, capabilities, join_config, mls_bytes, mls_in};
use crate::engine::{Ctx, Event};
use crate::error::{CoreError, Result};
use crate::store::ConversationState;
use crate::store::Transactions;

/// A conversation rejoins at most once per this long; a device that falls
/// out of step again sooner waits (a member who keeps sending what it
/// cannot process must not make it rejoin in a loop).
pub(crate) const REJOIN_INTERVAL_MS: u64 = 10 * 60 * 1000;

/// Where the time of a conversation's last rejoin is kept (`kv`).
fn rejoined_key(group: &GroupId) -> String {
    format!("rejoined:{group}")
}

/// Set while the relay has stopped delivering the conversation to this
/// device: its rejoin must land even if its state is in step (the external
/// commit is what makes the relay deliver to it again).
pub(crate) fn stopped_key(group: &GroupId) -> String {
    format!("stopped:{group}")
}

/// The history line a device shows after rejoining.
pub const REJOINED_TEXT: &str = "This device fell out of step with the conversation and rejoined it. Messages sent in the meantime cannot be shown here.";

enum Phase {
    /// Fetching the GroupInfo.
    Info,
    /// The external commit is out.
    Commit,
}

/// Joins (or rejoins) one conversation.
pub(super) struct JoinExternal {
    op_id: i64,
    group_id: GroupId,
    rejoin: bool,
    phase: Phase,
}

impl JoinExternal {
    pub fn new(op_id: i64, group_id: GroupId, rejoin: bool) -> Self {
        Self {
            op_id,
            group_id,
            rejoin,
            phase: Phase::Info,
        }
    }

    fn route(&self) -> Route {
        Route::Op {
            group: self.group_id,
            op_id: self.op_id,
        }
    }

    /// Builds the external commit from the relay's GroupInfo and sends it.
    fn build(
        &mut self,
        cx: &Ctx<'_>,
        group_info: &[u8],
        relay_epoch: u64,
        fx: &mut Effects,
    ) -> Result<Progress> {
        let store = cx.store;
        let verifiable = match mls_in(group_info)?.extract() {
            MlsMessageBodyIn::GroupInfo(gi) => gi,
            _ => return Err(CoreError::Decode("the relay's GroupInfo")),
        };
        // Stopped by the relay, the device rejoins even in step: its
        // resync is what resumes delivery. Never onto an older GroupInfo.
        let stopped = store
            .kv_get(&stopped_key(&self.group_id))?
            .is_some_and(|v| !v.is_empty());
        if self.rejoin {
            // The GroupInfo's own epoch and context, not the relay's word:
            // an older GroupInfo, or the very state this device holds, means
            // it is in step after all (what looked wrong was not).
            let theirs = verifiable.epoch().as_u64();
            if let Some(ours) = groups::try_load(store, &self.group_id)? {
                let at = ours.epoch().as_u64();
                if ours.is_active()
                    && (at > theirs
                        || (!stopped
                            && at == theirs
                            && ours.public_group().group_context() == verifiable.group_context()))
                {
                    tracing::info!(group = %self.group_id, relay_epoch, "in step after all; not rejoining");
                    store.set_conversation_state(&self.group_id, ConversationState::Active)?;
                    fx.event(Event::ConversationUpdated(self.group_id));
                    return Ok(Progress::Done);
                }
            }
        }
        let tx = store.transaction()?;
        // The old state (out of step) or what an earlier attempt left: never
        // build on it.
        groups::delete(store, &self.group_id)?;
        let provider = store.mls();
        let (group, bundle) = MlsGroup::external_commit_builder()
            .with_config(join_config())
            .build_group(&provider, verifiable, cx.me.credential_with_key()?)
            .map_err(CoreError::mls)?
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_capabilities(capabilities())
                    .build(),
            )
            .load_psks(provider.storage())
            .map_err(CoreError::mls)?
            .build(provider.rand(), provider.crypto(), &cx.me.signer, |_| true)
            .map_err(CoreError::mls)?
            .finalize(&provider)
            .map_err(CoreError::mls)?;
        if group.group_id().as_slice() != self.group_id.as_bytes() {
            return Err(CoreError::Decode("a GroupInfo for another group"));
        }
        // Every member must verify before this device joins.
        for m in group.members() {
            if m.signature_key != cx.me.signer.public() {
                cx.trust.verify(&m.credential, &m.signature_key, cx.now)?;
            }
        }
        let info = bundle
            .group_info()
            .cloned()
            .ok_or_else(|| CoreError::Mls("external commit without GroupInfo".into()))?;
        let commit = CommitBundle {
            group_id: self.group_id,
            epoch: group.epoch().as_u64() - 1,
            commit: bytes(mls_bytes(bundle.commit())?),
            welcome: None,
            group_info: bytes(mls_bytes(&MlsMessageOut::from(info))?),
            added: vec![cx.me.identity.device_id],
            removed: vec![],
        };
        if self.rejoin {
            // What was prepared for the old state would not decrypt.
            store.clear_prepared(&self.group_id)?;
        } else {
            store.insert_conversation(&self.group_id, "", 0, cx.now)?;
            store.set_conversation_state(&self.group_id, ConversationState::Joining)?;
        }
        store.set_op_prepared(self.op_id, &encode_bundle(&commit))?;
        tx.commit()?;
        self.phase = Phase::Commit;
        fx.request(Request::Commit(commit), self.route());
        Ok(Progress::Waiting)
    }

    /// Gives up: a new device forgets the conversation (or, with history
    /// from the user's other device, keeps it as left); a rejoining one
    /// records that it is no longer in it.
    fn abandon(&self, cx: &Ctx<'_>, reason: String, fx: &mut Effects) -> Result<Progress> {
        let tx = cx.store.transaction()?;
        cx.store.kv_set(&stopped_key(&self.group_id), b"")?;
        if self.rejoin {
            cx.store
                .set_conversation_state(&self.group_id, ConversationState::Left)?;
            fx.event(Event::ConversationUpdated(self.group_id));
        } else if cx.store.history(&self.group_id, None, 1)?.is_empty() {
            groups::delete(cx.store, &self.group_id)?;
            cx.store.delete_conversation(&self.group_id)?;
        } else {
            // History brought from the user's other device stays, to read.
            groups::delete(cx.store, &self.group_id)?;
            cx.store
                .set_conversation_state(&self.group_id, ConversationState::Left)?;
            fx.event(Event::ConversationUpdated(self.group_id));
        }
        tx.commit()?;
        Ok(Progress::Failed(reason))
    }
}

impl Operation for JoinExternal {
    fn start(&mut self, cx: &Ctx<'_>, fx: &mut Effects) -> Result<Progress> {
        let state = cx.store.conversation_cursor(&self.group_id)?.map(|c| c.1);
        if self.rejoin {
            if state != Some(ConversationState::Rejoining) {
                return Ok(Progress::Done); // back in step already, or left
            }
            if let Some(t) = last_rejoin(cx, &self.group_id)? {
                if cx.now < t + REJOIN_INTERVAL_MS {
                    return Ok(Progress::RetryAt(t + REJOIN_INTERVAL_MS));
                }
            }
        } else if state.is_some() && state != Some(ConversationState::Joining) {
            return Ok(Progress::Done); // a member already
        }
        // A commit sent before a crash or a lost answer: send the same one.
        // (If it landed, its echo came in the backlog and completed the
        // join before this runs.)
        if let Some(bundle) = prepared_bundle(cx.store, self.op_id)? {
            let at = groups::try_load(cx.store, &self.group_id)?.map(|g| g.epoch().as_u64());
            if at == Some(bundle.epoch + 1) {
                self.phase = Phase::Commit;
                fx.request(Request::Commit(bundle), self.route());
                return Ok(Progress::Waiting);
            }
        }
        self.phase = Phase::Info;
        fx.request(
            Request::GetGroupInfo {
                group_id: self.group_id,
            },
            self.route(),
        );
        Ok(Progress::Waiting)
    }

    fn answer(
        &mut self,
        cx: &Ctx<'_>,
        answer: std::result::Result<Response, ProtocolError>,
        fx: &mut Effects,
    ) -> Result<Progress> {
        match (&self.phase, answer) {
            (Phase::Info, Ok(Response::GroupInfo { group_info, epoch })) => {
                match self.build(cx, &group_info, epoch, fx) {
                    Err(e @ CoreError::Storage(_)) => Err(e),
                    Err(e) => self.abandon(cx, e.to_string(), fx),
                    Ok(p) => Ok(p),
                }
            }
            (Phase::Commit, Ok(Response::CommitAccepted { seq, .. })) => {
                let events = complete(cx, self.op_id, &self.group_id, self.rejoin, seq)?;
                fx.events(events);
                Ok(Progress::Done)
            }
            (Phase::Commit, Err(ProtocolError::WrongEpoch { .. })) => {
                // Someone committed first: start again from the new
                // GroupInfo (our own commit, had it landed, would have come
                // back as an echo before this retry).
                groups::delete(cx.store, &self.group_id)?;
                Ok(Progress::RetryAt(cx.now))
            }
            (_, Err(e)) => match transient_or_failed(cx, e) {
                retry @ Progress::RetryAt(_) => Ok(retry),
                Progress::Failed(reason) => self.abandon(cx, reason, fx),
                other => Ok(other),
            },
            (_, Ok(_)) => self.abandon(cx, "unexpected answer from the relay".into(), fx),
        }
    }
}

/// When the conversation last rejoined.
fn last_rejoin(cx: &Ctx<'_>, group: &GroupId) -> Result<Option<u64>> {
    Ok(cx
        .store
        .kv_get(&rejoined_key(group))?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes))
}

/// The relay accepted the external commit (its answer, or its echo with
/// sequence number `seq`): the conversation is ours from `seq` on.
fn complete(
    cx: &Ctx<'_>,
    op_id: i64,
    group_id: &GroupId,
    rejoin: bool,
    seq: u64,
) -> Result<Vec<Event>> {
    let store = cx.store;
    let tx = store.transaction()?;
    let Some((_, state)) = store.conversation_cursor(group_id)? else {
        return Ok(vec![]);
    };
    if !matches!(
        state,
        ConversationState::Joining | ConversationState::Rejoining
    ) {
        store.delete_op(op_id)?;
        tx.commit()?;
        return Ok(vec![]); // completed already (answer and echo both came)
    }
    store.set_conversation_state(group_id, ConversationState::Active)?;
    store.set_last_seq(group_id, seq)?;
    let group = groups::read(store, group_id)?;
    groups::record_members(store, group_id, &group)?;
    store.delete_op(op_id)?;
    let mut events = vec![Event::ConversationUpdated(*group_id)];
    if rejoin {
        store.kv_set(&rejoined_key(group_id), &cx.now.to_be_bytes())?;
        store.kv_set(&stopped_key(group_id), b"")?;
        let line = crate::store::Message::system_line(
            *group_id,
            &cx.me.identity.user_id,
            cx.me.identity.device_id,
            cx.now,
            Some(seq),
            REJOINED_TEXT.into(),
        );
        store.insert_message(&line, cx.now, false)?;
        events.push(Event::Message(line));
    } else {
        events.push(Event::MembershipChanged {
            group_id: *group_id,
            added: vec![cx.me.identity.user_id.clone()],
            removed: vec![],
        });
    }
    tx.commit()?;
    Ok(events)
}

/// A queue item of a conversation this device is joining or rejoining: if
/// it is the echo of its own external commit, the join is complete (the
/// relay's answer may have been lost). Returns `None` for anything else.
pub(crate) fn own_echo(cx: &Ctx<'_>, item: &QueueItem) -> Result<Option<Vec<Event>>> {
    if item.sender != cx.me.identity.device_id {
        return Ok(None);
    }
    let mut after = None;
    loop {
        let ops = cx.store.ops(&item.group_id, after, 64)?;
        let Some(last) = ops.last() else {
            return Ok(None);
        };
        after = Some(last.op_id);
        for entry in ops {
            let Ok(Op::JoinExternal { rejoin, .. }) = Op::decode(&entry.op) else {
                continue;
            };
            let Some(bundle) = prepared_bundle(cx.store, entry.op_id)? else {
                continue;
            };
            if bundle.commit.as_slice() == item.payload.as_slice() {
                return complete(cx, entry.op_id, &item.group_id, rejoin, item.seq).map(Some);
            }
        }
    }
}

/// This device is out of step with a conversation: it stops sending there
/// and queues its rejoin (unless one is queued). A device that was leaving
/// just leaves.
pub(crate) fn begin_rejoin(
    cx: &Ctx<'_>,
    group: &GroupId,
    why: &str,
    fx: &mut Effects,
) -> Result<()> {
    let store = cx.store;
    let tx = store.transaction()?;
    match store.conversation_cursor(group)?.map(|c| c.1) {
        Some(ConversationState::Active) => {
            store.set_conversation_state(group, ConversationState::Rejoining)?;
        }
        Some(ConversationState::Leaving) => {
            store.set_conversation_state(group, ConversationState::Left)?;
            tx.commit()?;
            fx.event(Event::ConversationUpdated(*group));
            return Ok(());
        }
        Some(ConversationState::Rejoining) => {}
        _ => return Ok(()),
    }
    tracing::warn!(group = %group, why, "out of step with the conversation; rejoining");
    let queued = store
        .ops(group, None, u32::MAX)?
        .iter()
        .any(|e| matches!(Op::decode(&e.op), Ok(Op::JoinExternal { rejoin: true, .. })));
    if !queued {
        Op::JoinExternal {
            group_id: *group,
            rejoin: true,
        }
        .queue(store)?;
    }
    tx.commit()?;
    fx.event(Event::ConversationUpdated(*group));
    Ok(())
}
