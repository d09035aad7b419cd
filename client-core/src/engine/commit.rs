//! Commits this device makes: building a group change into a commit
//! bundle, sending it, and merging it once the relay accepted it.
//!
//! DESIGN.md's rules, all here:
//! - the bundle (commit, Welcome, GroupInfo with `ratchet_tree` and
//!   `external_pub`, roster change) is stored with the operation before it
//!   is sent, in the same transaction as openmls's pending commit;
//! - a commit whose outcome is unknown (a lost answer, a restart) is resent
//!   byte for byte while its pending commit is still at the same epoch,
//!   never rebuilt: the relay either applies it now or applied it before
//!   (then its echo in the queue merges it);
//! - it is merged only after the relay accepted it (answer or echo);
//! - `WrongEpoch` keeps the pending commit for the incoming commit to
//!   resolve (another member's clears it; our own, resent after a lost
//!   answer, merges it), and the operation waits for that epoch.

use cascade_protocol::{CommitBundle, DeviceId, GroupId, ProtocolError, Request, Response, UserId};
use openmls::prelude::*;

use super::effects::{Effects, Route};
use super::groups::{self, bytes, mls_bytes, Present};
use super::outbox::{ask_again_to_leave, Progress, RETRY_DELAY_MS};
use super::receipts;
use super::{Ctx, Event, Me};
use crate::credential::member_identity;
use crate::error::{CoreError, Result};
use crate::store::ClientStore;
use crate::store::Transactions;

/// A commit built by openmls for a change.
pub(crate) struct Built {
    pub commit: MlsMessageOut,
    pub welcome: Option<MlsMessageOut>,
    pub group_info: Option<openmls::messages::group_info::GroupInfo>,
}

/// A group change this device commits (add, remove, self-update, commit of
/// others' proposals).
pub(crate) trait Change: Send {
    /// Builds the commit on `group` at its current epoch; `None` when there
    /// is nothing left to do (e.g. the members to remove are gone).
    fn build(
        &mut self,
        cx: &Ctx<'_>,
        group: &mut MlsGroup,
        present: &[Present],
    ) -> Result<Option<Built>>;

    /// Runs in the transaction that merges the accepted commit.
    fn merged(&mut self, _cx: &Ctx<'_>, _group_id: &GroupId) -> Result<()> {
        Ok(())
    }

    /// Runs when [`Change::build`] found nothing to do.
    fn nothing_to_do(&mut self, _cx: &Ctx<'_>, _group_id: &GroupId) -> Result<()> {
        Ok(())
    }
}

/// Starts (or restarts) a change: resends the stored bundle if its commit
/// is still pending at the same epoch, or builds and sends a new one.
pub(crate) fn start(
    cx: &Ctx<'_>,
    op_id: i64,
    group_id: GroupId,
    change: &mut dyn Change,
    fx: &mut Effects,
) -> Result<Progress> {
    let store = cx.store;
    if let Some(bundle) = prepared_bundle(store, op_id)? {
        let g = groups::read(store, &group_id)?;
        if g.pending_commit().is_some() && g.epoch().as_u64() == bundle.epoch {
            fx.request(
                Request::Commit(bundle),
                Route::Op {
                    group: group_id,
                    op_id,
                },
            );
            return Ok(Progress::Waiting);
        }
    }
    // Any pending commit is stale now.
    groups::clear_pending_commit(store, &group_id)?;
    let tx = store.transaction()?;
    let mut group = groups::load(store, &group_id)?;
    let present = groups::present(&group);
    let epoch = group.epoch().as_u64();
    let Some(built) = change.build(cx, &mut group, &present)? else {
        drop(tx);
        change.nothing_to_do(cx, &group_id)?;
        return Ok(Progress::Done);
    };
    // The new epoch's GroupInfo (with `ratchet_tree` and `external_pub`,
    // for devices joining by external commit). openmls makes it with every
    // commit of a group using the ratchet tree extension; exporting one now
    // would describe the old epoch, so its absence is a bug, not a
    // fallback.
    let group_info = MlsMessageOut::from(
        built
            .group_info
            .ok_or_else(|| CoreError::Mls("a commit without the new GroupInfo".into()))?,
    );
    // openmls also commits proposals waiting in the group (a member's
    // leave request): the roster change must list exactly what the commit
    // does, so it is read from the staged commit itself.
    let (added, removed) = roster_change(&group, &present);
    let bundle = CommitBundle {
        group_id,
        epoch,
        commit: bytes(mls_bytes(&built.commit)?),
        welcome: built.welcome.map(|w| mls_bytes(&w)).transpose()?.map(bytes),
        group_info: bytes(mls_bytes(&group_info)?),
        added,
        removed,
    };
    store.set_op_prepared(op_id, &encode_bundle(&bundle))?;
    tx.commit()?;
    fx.request(
        Request::Commit(bundle),
        Route::Op {
            group: group_id,
            op_id,
        },
    );
    Ok(Progress::Waiting)
}

/// The relay answered a change's commit.
pub(crate) fn answer(
    cx: &Ctx<'_>,
    op_id: i64,
    group_id: GroupId,
    change: &mut dyn Change,
    answer: std::result::Result<Response, ProtocolError>,
    fx: &mut Effects,
) -> Result<Progress> {
    match answer {
        Ok(Response::CommitAccepted { .. }) => {
            if cx.store.op(op_id)?.is_none() {
                return Ok(Progress::Done); // its echo came first and finished it
            }
            let tx = cx.store.transaction()?;
            let mut group = groups::load(cx.store, &group_id)?;
            let events = merge_own(cx.store, cx.me, &mut group, &group_id, cx.now)?;
            change.merged(cx, &group_id)?;
            cx.store.delete_op(op_id)?;
            tx.commit()?;
            fx.events(events);
            Ok(Progress::Done)
        }
        Err(ProtocolError::WrongEpoch { current }) => Ok(Progress::WaitEpoch { current }),
        Err(e) => Ok(transient_or_failed(cx, e)),
        Ok(_) => Ok(Progress::Failed("unexpected answer from the relay".into())),
    }
}

/// A refusal that passes (queue full, rate limited, relay error) is
/// retried later with the same bytes; anything else fails the operation.
pub(crate) fn transient_or_failed(cx: &Ctx<'_>, e: ProtocolError) -> Progress {
    match e {
        ProtocolError::QueueFull { .. } | ProtocolError::Internal => {
            tracing::info!(error = %e, "operation refused for now; retrying later");
            Progress::RetryAt(cx.now + RETRY_DELAY_MS)
        }
        ProtocolError::RateLimited { retry_after_ms, .. }
        | ProtocolError::Unavailable { retry_after_ms } => {
            Progress::RetryAt(cx.now + retry_after_ms.max(RETRY_DELAY_MS))
        }
        e => Progress::Failed(e.to_string()),
    }
}

/// The commit bundle stored for an operation, if one was sent.
pub(crate) fn prepared_bundle(store: &dyn ClientStore, op_id: i64) -> Result<Option<CommitBundle>> {
    Ok(store
        .op(op_id)?
        .and_then(|e| e.prepared)
        .and_then(|p| ciborium::from_reader(p.as_slice()).ok()))
}

/// The stored encoding of a prepared bundle (CBOR, as on the wire).
pub(crate) fn encode_bundle(bundle: &CommitBundle) -> Vec<u8> {
    let mut encoded = Vec::new();
    ciborium::into_writer(bundle, &mut encoded).expect("serialising to a Vec cannot fail");
    encoded
}

/// The devices the staged commit adds and removes.
fn roster_change(group: &MlsGroup, present: &[Present]) -> (Vec<DeviceId>, Vec<DeviceId>) {
    let Some(staged) = group.pending_commit() else {
        return (vec![], vec![]);
    };
    let added = staged
        .add_proposals()
        .filter_map(|a| {
            member_identity(a.add_proposal().key_package().leaf_node().credential())
                .ok()
                .map(|id| id.device)
        })
        .collect();
    let removed = staged
        .remove_proposals()
        .filter_map(|r| {
            present
                .iter()
                .find(|p| p.leaf == r.remove_proposal().removed())
                .map(|p| p.id.device)
        })
        .collect();
    (added, removed)
}

/// Merges this device's pending commit after the relay accepted it (its
/// answer, or its echo in the queue). Runs inside the caller's
/// transaction.
pub(crate) fn merge_own(
    store: &dyn ClientStore,
    me: &Me,
    group: &mut MlsGroup,
    group_id: &GroupId,
    now: u64,
) -> Result<Vec<Event>> {
    let provider = store.mls();
    let Some(staged) = group.pending_commit() else {
        return Ok(vec![]);
    };
    let room_before = super::room::of(group);
    let mut added: Vec<UserId> = Vec::new();
    for add in staged.add_proposals() {
        added
            .push(member_identity(add.add_proposal().key_package().leaf_node().credential())?.user);
    }
    let mut removed: Vec<UserId> = Vec::new();
    for rem in staged.remove_proposals() {
        if let Some(m) = group.member_at(rem.remove_proposal().removed()) {
            removed.push(member_identity(&m.credential)?.user);
        }
    }
    group
        .merge_pending_commit(&provider)
        .map_err(CoreError::mls)?;
    added.dedup();
    removed.dedup();
    let mut events = if group.is_active() {
        groups::record_members(store, group_id, group)?;
        // A device leaving commits others' requests to leave without its
        // own, which this commit therefore discarded.
        ask_again_to_leave(store, group_id)?;
        let mut events = receipts::forget_departed(store, me, group_id, &removed)?;
        events.extend(super::roles::record_room_change(
            store,
            me,
            group_id,
            room_before.as_ref(),
            group,
            &me.identity.user_id,
            now,
        )?);
        events
    } else {
        vec![]
    };
    events.push(Event::MembershipChanged {
        group_id: *group_id,
        added,
        removed,
    });
    Ok(events)
}

/// An outbox operation that is exactly one change: its start and answer
/// are the commit's.
pub(crate) struct ChangeOp<C: Change> {
    op_id: i64,
    group_id: GroupId,
    change: C,
}

impl<C: Change> ChangeOp<C> {
    pub fn new(op_id: i64, group_id: GroupId, change: C) -> Self {
        Self {
            op_id,
            group_id,
            change,
        }
    }
}

impl<C: Change> super::outbox::Operation for ChangeOp<C> {
    fn start(&mut self, cx: &Ctx<'_>, fx: &mut Effects) -> Result<Progress> {
        start(cx, self.op_id, self.group_id, &mut self.change, fx)
    }

    fn answer(
        &mut self,
        cx: &Ctx<'_>,
        result: std::result::Result<Response, ProtocolError>,
        fx: &mut Effects,
    ) -> Result<Progress> {
        answer(cx, self.op_id, self.group_id, &mut self.change, result, fx)
    }
}

/// Builds and stages a commit of this device: the proposals `configure`
/// adds, and those stored in the group except its own request to leave
/// ([`not_own_removal`]).
pub(crate) fn build_commit<'a>(
    cx: &Ctx<'_>,
    group: &'a mut openmls::prelude::MlsGroup,
    configure: impl FnOnce(
        openmls::prelude::CommitBuilder<'a, openmls::prelude::Initial>,
    ) -> openmls::prelude::CommitBuilder<'a, openmls::prelude::Initial>,
) -> Result<Built> {
    build_commit_with(cx, group, &[], None, configure)
}

/// As [`build_commit`], also removing the devices at `removals` and
/// changing the room to `room`. Whoever leaves the conversation entirely
/// with this commit (by `removals` or by their stored request to leave)
/// also leaves the room's admins in it, so that nobody who comes back
/// later finds an old role waiting (hazard H-036).
pub(crate) fn build_commit_with<'a>(
    cx: &Ctx<'_>,
    group: &'a mut openmls::prelude::MlsGroup,
    removals: &[openmls::prelude::LeafNodeIndex],
    room: Option<super::room::Room>,
    configure: impl FnOnce(
        openmls::prelude::CommitBuilder<'a, openmls::prelude::Initial>,
    ) -> openmls::prelude::CommitBuilder<'a, openmls::prelude::Initial>,
) -> Result<Built> {
    use openmls::prelude::{Proposal, Sender};
    let own = group.own_leaf_index();
    let current = super::room::of(group);
    // Leaves going: these, and every stored request to leave but ours.
    let mut leaving: std::collections::BTreeSet<u32> = removals.iter().map(|l| l.u32()).collect();
    for p in group.pending_proposals() {
        if let (Proposal::Remove(r), Sender::Member(s)) = (p.proposal(), p.sender()) {
            if r.removed() == *s && r.removed() != own {
                leaving.insert(r.removed().u32());
            }
        }
    }
    let present = super::groups::present(group);
    let gone: std::collections::BTreeSet<cascade_protocol::UserId> = present
        .iter()
        .filter(|p| leaving.contains(&p.leaf.u32()))
        .map(|p| p.id.user.clone())
        .filter(|u| {
            present
                .iter()
                .filter(|p| &p.id.user == u)
                .all(|p| leaving.contains(&p.leaf.u32()))
        })
        .collect();
    let next = room
        .or_else(|| current.clone())
        .map(|r| r.without(&gone))
        .filter(|r| Some(r) != current.as_ref());
    let extensions = next
        .map(|r| super::room::replacing_in(&r, group))
        .transpose()?;
    let provider = cx.store.mls();
    let mut builder = configure(group.commit_builder().consume_proposal_store(true));
    if !removals.is_empty() {
        builder = builder.propose_removals(removals.iter().copied());
    }
    if let Some(extensions) = extensions {
        builder = builder
            .propose_group_context_extensions(extensions)
            .map_err(CoreError::mls)?;
    }
    let bundle = builder
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
    Ok(Built {
        commit,
        welcome,
        group_info,
    })
}

/// The filter of stored proposals for every commit this device makes: all
/// but its own request to leave. MLS refuses a commit that removes its
/// committer, so a device that asked to leave and then commits (others'
/// requests, a revoked device's removal, its renewed credential) must
/// leave its own request out; it stays stored, so that another member's
/// commit of it still processes, and is asked again after this commit
/// (`leave::ask_again`).
pub(crate) fn not_own_removal(
    own: openmls::prelude::LeafNodeIndex,
) -> impl FnMut(&openmls::prelude::QueuedProposal) -> bool {
    move |p| !matches!(p.proposal(), openmls::prelude::Proposal::Remove(r) if r.removed() == own)
}
