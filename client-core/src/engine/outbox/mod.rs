//! The durable outbox: what this device asked to do, carried out
//! conversation by conversation.
//!
//! Every operation belongs to one conversation's *lane*. Lanes run side by
//! side, so a slow or refused operation in one conversation never holds
//! up another. Within a lane:
//! - application messages are *pipelined*: up to [`SEND_WINDOW`] are out at
//!   once, encrypted in order and answered in order (the relay answers a
//!   connection's requests in the order it sent them), so a burst costs
//!   one round trip, not one each;
//! - any other operation (a commit, the group's registration, a leave
//!   request, an external join) is a *barrier*: it starts once every earlier
//!   message is answered, and nothing after it starts until it is done, so
//!   messages are encrypted at the epoch the user saw when writing them and
//!   commits stay one at a time per conversation.
//!
//! Nothing is shown as sent before the relay accepted it. One operation is
//! one file here, with its start and its answer handling together; each
//! returns its [`Progress`] and the lane acts on it.

mod add_members;
pub(crate) mod change_room;
mod commit_proposals;
mod create_group;
mod join_external;
mod leave;
mod remove;
mod send;
mod update_credential;

pub(crate) use add_members::AddClaims;
#[cfg(test)]
pub(crate) use add_members::Claimed;
pub use join_external::REJOINED_TEXT;
pub(crate) use join_external::{begin_rejoin, own_echo, stopped_key};
pub(crate) use leave::ask_again as ask_again_to_leave;
pub use send::HELD_TEXT;

use std::collections::{HashMap, VecDeque};

use cascade_protocol::{DeviceId, GroupId, ProtocolError, Response, UserId};
use serde::{Deserialize, Serialize};

use super::effects::Effects;
use super::{groups, Ctx};
use crate::content::{Content, MessageId};
use crate::error::{CoreError, Result};
use crate::store::{ClientStore, ConversationState, OutboxEntry};

/// Most application messages of one conversation out at once.
pub(crate) const SEND_WINDOW: usize = 64;

/// Delay before retrying an operation the relay refused for a transient
/// reason (queue full, rate limited, internal error).
pub(crate) const RETRY_DELAY_MS: u64 = 2_000;

/// How long an operation refused with `WrongEpoch` waits for the commits
/// that bring this device to the group's epoch; if they never come, the
/// device is out of step and rejoins the conversation.
pub(crate) const WAIT_EPOCH_MS: u64 = 60_000;

/// An operation as kept in the outbox (CBOR; the encoding is pinned by a
/// golden test, and version-1 databases hold the same encoding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Register a locally created group with the relay.
    CreateGroup { group_id: GroupId },
    /// Encrypt and send an application message; to the devices of `to`
    /// only if not empty (a read report).
    Send {
        group_id: GroupId,
        message_id: MessageId,
        #[serde(with = "serde_bytes")]
        content: Vec<u8>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        to: Vec<UserId>,
    },
    /// Add every device of these users.
    AddMembers {
        group_id: GroupId,
        users: Vec<UserId>,
    },
    /// Remove every device of these users.
    RemoveMembers {
        group_id: GroupId,
        users: Vec<UserId>,
    },
    /// Remove these devices (revoked by their organisation, or of an
    /// organisation no longer trusted).
    RemoveDevices {
        group_id: GroupId,
        devices: Vec<DeviceId>,
    },
    /// Replace this device's credential in the group with its renewed
    /// certificate (a self-update commit).
    UpdateCredential { group_id: GroupId },
    /// Ask the other members to remove this device.
    Leave { group_id: GroupId },
    /// Commit proposals received from others (a member's leave request).
    CommitProposals { group_id: GroupId },
    /// Join a group by external commit: this user's new device joining the
    /// user's group, or (`rejoin`) this device coming back in step after
    /// it could no longer follow the group.
    JoinExternal {
        group_id: GroupId,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rejoin: bool,
    },
    /// Change the room's admins or policy. `unchecked`: without this
    /// user's role checked (only tests that play a hostile member).
    ChangeRoom {
        group_id: GroupId,
        change: change_room::RoomChange,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unchecked: bool,
    },
}

impl Op {
    /// The conversation the operation belongs to.
    pub fn group_id(&self) -> GroupId {
        match self {
            Op::CreateGroup { group_id }
            | Op::Send { group_id, .. }
            | Op::AddMembers { group_id, .. }
            | Op::RemoveMembers { group_id, .. }
            | Op::RemoveDevices { group_id, .. }
            | Op::UpdateCredential { group_id }
            | Op::Leave { group_id }
            | Op::CommitProposals { group_id }
            | Op::JoinExternal { group_id, .. }
            | Op::ChangeRoom { group_id, .. } => *group_id,
        }
    }

    /// A message to send.
    pub fn send(group_id: GroupId, content: &Content) -> Op {
        Op::Send {
            group_id,
            message_id: content.id,
            content: content.encode(),
            to: Vec::new(),
        }
    }

    /// The stored encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        ciborium::into_writer(self, &mut b).expect("serialising to a Vec cannot fail");
        b
    }

    /// Decodes a stored operation.
    pub fn decode(b: &[u8]) -> Result<Op> {
        ciborium::from_reader(b).map_err(|_| CoreError::Decode("an outbox operation"))
    }

    /// Appends the operation to its conversation's lane.
    pub fn queue(&self, store: &dyn ClientStore) -> Result<i64> {
        store.push_op(&self.group_id(), &self.encode())
    }

    fn is_send(&self) -> bool {
        matches!(self, Op::Send { .. })
    }

    /// The running form of a stored operation: the one place that maps an
    /// operation to the file that carries it out.
    fn start(self, entry: &OutboxEntry) -> Box<dyn Operation> {
        let op_id = entry.op_id;
        match self {
            Op::CreateGroup { group_id } => {
                Box::new(create_group::CreateGroup::new(op_id, group_id))
            }
            Op::Send {
                group_id,
                message_id,
                content,
                to,
            } => Box::new(send::SendMessage::new(
                op_id,
                send::Outgoing {
                    group_id,
                    message_id,
                    content,
                    to,
                },
                entry.prepared.clone(),
            )),
            Op::AddMembers { group_id, users } => Box::new(add_members::AddMembers::new(
                op_id,
                group_id,
                users,
                entry.state.as_deref(),
            )),
            Op::RemoveMembers { group_id, users } => {
                Box::new(remove::remove_users(op_id, group_id, users))
            }
            Op::RemoveDevices { group_id, devices } => {
                Box::new(remove::remove_devices(op_id, group_id, devices))
            }
            Op::UpdateCredential { group_id } => {
                Box::new(update_credential::update_credential(op_id, group_id))
            }
            Op::Leave { group_id } => Box::new(leave::Leave::new(op_id, group_id)),
            Op::CommitProposals { group_id } => {
                Box::new(commit_proposals::commit_proposals(op_id, group_id))
            }
            Op::JoinExternal { group_id, rejoin } => {
                Box::new(join_external::JoinExternal::new(op_id, group_id, rejoin))
            }
            Op::ChangeRoom {
                group_id,
                change,
                unchecked,
            } => Box::new(change_room::change_room(op_id, group_id, change, unchecked)),
        }
    }
}

/// What became of an operation after a step.
#[derive(Debug)]
pub(crate) enum Progress {
    /// A request is out; its answer comes to [`Operation::answer`].
    Waiting,
    /// Finished (or nothing left to do): the operation leaves the outbox.
    Done,
    /// Could not be carried out: it leaves the outbox and the front end is
    /// told why (without content).
    Failed(String),
    /// Refused for a passing reason: start again at this time.
    RetryAt(u64),
    /// The relay said the group is at `current`: start again once this
    /// device is there too.
    WaitEpoch { current: u64 },
    /// This device cannot follow the group any more: rejoin it, then run
    /// the operation again.
    OutOfStep,
    /// The group holds proposals not yet committed (a member's request to
    /// leave): commit them first, then run the operation again.
    CommitFirst,
}

/// One outbox operation being carried out.
pub(crate) trait Operation: Send {
    /// Starts the operation, or starts it again after a reconnect, a wait
    /// or a transient refusal.
    fn start(&mut self, cx: &Ctx<'_>, fx: &mut Effects) -> Result<Progress>;

    /// The relay answered the request the operation sent.
    fn answer(
        &mut self,
        cx: &Ctx<'_>,
        answer: std::result::Result<Response, ProtocolError>,
        fx: &mut Effects,
    ) -> Result<Progress>;
}

/// A local failure of a step: storage errors stop the engine's call (the
/// operation is kept and tried again), anything else fails the operation.
fn settle(step: Result<Progress>) -> Result<Progress> {
    match step {
        Ok(p) => Ok(p),
        Err(e @ CoreError::Storage(_)) => Err(e),
        Err(CoreError::OutOfStep) => Ok(Progress::OutOfStep),
        Err(e) => Ok(Progress::Failed(e.to_string())),
    }
}

/// What a running operation waits for.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// The relay's answer.
    Answer,
    /// This time (0: now).
    Until(u64),
    /// The group to reach `current`, at most until `deadline`.
    Epoch { current: u64, deadline: u64 },
}

struct Running {
    op_id: i64,
    op: Box<dyn Operation>,
    wait: Wait,
}

/// One conversation's lane.
#[derive(Default)]
struct Lane {
    /// Messages sent and not yet answered, in order.
    sending: VecDeque<Running>,
    /// The barrier operation under way.
    barrier: Option<Running>,
    /// The last operation started on this connection: the next starts
    /// after it.
    cursor: Option<i64>,
    /// After a transient refusal of a message: nothing new before this.
    paused_until: Option<u64>,
    /// Proposals wait to be committed: the lane's commit of them runs
    /// before anything else.
    commit_first: bool,
    /// The epoch at which proposals last blocked a message: blocked again
    /// at the same epoch, the commit did not help, and the device rejoins.
    blocked_at: Option<u64>,
}

/// The outbox's lanes. Their state is only what is under way on this
/// connection; everything durable is in the store, so a reconnect or a
/// restart starts each lane again from its oldest operation.
#[derive(Default)]
pub(crate) struct Outbox {
    lanes: HashMap<GroupId, Lane>,
}

impl Outbox {
    /// The connection dropped: whatever was under way starts again on the
    /// next one (prepared messages and commit bundles are resent byte for
    /// byte; KeyPackages claimed for an add are kept).
    pub fn reset(&mut self) {
        self.lanes.clear();
    }

    /// Starts whatever can start in every lane.
    pub fn drive(&mut self, cx: &Ctx<'_>, fx: &mut Effects) -> Result<()> {
        for group in cx.store.outbox_groups()? {
            self.lanes.entry(group).or_default().drive(group, cx, fx)?;
        }
        self.lanes.retain(|_, l| {
            l.barrier.is_some()
                || !l.sending.is_empty()
                || l.paused_until.is_some()
                || l.commit_first
        });
        Ok(())
    }

    /// The relay answered operation `op_id` of `group`.
    pub fn answer(
        &mut self,
        group: GroupId,
        op_id: i64,
        answer: std::result::Result<Response, ProtocolError>,
        cx: &Ctx<'_>,
        fx: &mut Effects,
    ) -> Result<()> {
        let Some(lane) = self.lanes.get_mut(&group) else {
            return Ok(());
        };
        if let Some(b) = lane
            .barrier
            .as_mut()
            .filter(|b| b.op_id == op_id && matches!(b.wait, Wait::Answer))
        {
            let p = settle(b.op.answer(cx, answer, fx))?;
            lane.settle_barrier(group, p, cx, fx)?;
        } else if let Some(pos) = lane.sending.iter().position(|r| r.op_id == op_id) {
            let mut r = lane.sending.remove(pos).expect("found");
            let p = settle(r.op.answer(cx, answer, fx))?;
            lane.settle_send(group, r.op_id, p, cx, fx)?;
        }
        Ok(())
    }

    /// The earliest time a lane waits for.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.lanes
            .values()
            .flat_map(|l| {
                let barrier = l.barrier.as_ref().and_then(|b| match b.wait {
                    Wait::Until(t) if t > 0 => Some(t),
                    Wait::Epoch { deadline, .. } => Some(deadline),
                    _ => None,
                });
                [barrier, l.paused_until]
            })
            .flatten()
            .min()
    }
}

impl Lane {
    fn drive(&mut self, group: GroupId, cx: &Ctx<'_>, fx: &mut Effects) -> Result<()> {
        loop {
            if let Some(b) = &mut self.barrier {
                match b.wait {
                    Wait::Answer => return Ok(()),
                    Wait::Until(t) if t > cx.now => return Ok(()),
                    Wait::Epoch { current, deadline } => {
                        let at = groups::epoch(cx.store, &group).unwrap_or(u64::MAX);
                        if at < current {
                            if cx.now < deadline {
                                return Ok(());
                            }
                            // The commits that bring us there never came.
                            tracing::info!(group = %group, current, "the epoch the relay named never came");
                            self.settle_barrier(group, Progress::OutOfStep, cx, fx)?;
                            continue;
                        }
                    }
                    Wait::Until(_) => {}
                }
                let p = settle(b.op.start(cx, fx))?;
                self.settle_barrier(group, p, cx, fx)?;
                if self.barrier.is_some() {
                    return Ok(());
                }
                continue;
            }
            if let Some(t) = self.paused_until {
                if t > cx.now || !self.sending.is_empty() {
                    return Ok(());
                }
                // Start again from the oldest: the refused message first.
                self.paused_until = None;
                self.cursor = None;
            }
            let state = cx.store.conversation_cursor(&group)?.map(|c| c.1);
            let next = if state == Some(ConversationState::Rejoining) {
                // Out of step: only the rejoin runs; the rest waits for it.
                first_op(cx.store, &group, |op| {
                    matches!(op, Op::JoinExternal { rejoin: true, .. })
                })?
            } else if self.commit_first {
                if !self.sending.is_empty() {
                    return Ok(()); // what is out was encrypted before
                }
                match first_op(cx.store, &group, |op| {
                    matches!(op, Op::CommitProposals { .. })
                })? {
                    Some(e) => Some(e),
                    None => {
                        // Nobody queued it (a proposal from before a restart).
                        Op::CommitProposals { group_id: group }.queue(cx.store)?;
                        continue;
                    }
                }
            } else {
                cx.store.ops(&group, self.cursor, 1)?.pop()
            };
            let Some(entry) = next else { return Ok(()) };
            let op = match Op::decode(&entry.op) {
                Ok(op) => op,
                Err(e) => {
                    tracing::error!(error = %e, op_id = entry.op_id, "undecodable outbox operation dropped");
                    cx.store.delete_op(entry.op_id)?;
                    continue;
                }
            };
            if op.is_send() {
                if self.sending.len() >= SEND_WINDOW {
                    return Ok(());
                }
                self.cursor = Some(entry.op_id);
                let mut r = Running {
                    op_id: entry.op_id,
                    op: op.start(&entry),
                    wait: Wait::Answer,
                };
                match settle(r.op.start(cx, fx))? {
                    Progress::Waiting => self.sending.push_back(r),
                    p => self.settle_send(group, r.op_id, p, cx, fx)?,
                }
            } else {
                if !self.sending.is_empty() {
                    return Ok(()); // a barrier waits for the messages before it
                }
                self.cursor = Some(entry.op_id);
                self.barrier = Some(Running {
                    op_id: entry.op_id,
                    op: op.start(&entry),
                    wait: Wait::Until(0),
                });
            }
        }
    }

    fn settle_barrier(
        &mut self,
        group: GroupId,
        p: Progress,
        cx: &Ctx<'_>,
        fx: &mut Effects,
    ) -> Result<()> {
        let Some(b) = &mut self.barrier else {
            return Ok(());
        };
        match p {
            Progress::Waiting => b.wait = Wait::Answer,
            Progress::RetryAt(t) => b.wait = Wait::Until(t.max(1)),
            Progress::WaitEpoch { current } => {
                b.wait = Wait::Epoch {
                    current,
                    deadline: cx.now + WAIT_EPOCH_MS,
                }
            }
            // Everything before a barrier was done before it started, except
            // when it was a rejoin taken out of turn: either way the lane
            // goes on from its oldest operation.
            Progress::Done => {
                cx.store.delete_op(b.op_id)?;
                self.barrier = None;
                self.cursor = None;
                self.commit_first = false;
            }
            Progress::Failed(reason) => {
                groups::clear_pending_commit(cx.store, &group)?;
                cx.store.delete_op(b.op_id)?;
                self.barrier = None;
                self.cursor = None;
                self.commit_first = false;
                fx.failed(Some(group), reason);
            }
            Progress::OutOfStep => {
                // The operation stays queued and runs again after the rejoin.
                self.barrier = None;
                self.cursor = None;
                begin_rejoin(cx, &group, "an operation found it out of step", fx)?;
            }
            Progress::CommitFirst => {
                self.barrier = None;
                self.cursor = None;
                self.commit_first = true;
            }
        }
        Ok(())
    }

    fn settle_send(
        &mut self,
        group: GroupId,
        op_id: i64,
        p: Progress,
        cx: &Ctx<'_>,
        fx: &mut Effects,
    ) -> Result<()> {
        match p {
            Progress::Done => cx.store.delete_op(op_id)?,
            Progress::RetryAt(t) => self.paused_until = Some(t),
            Progress::Failed(reason) => {
                cx.store.delete_op(op_id)?;
                fx.failed(Some(group), reason);
            }
            Progress::OutOfStep => {
                self.cursor = None;
                begin_rejoin(cx, &group, "a message found it out of step", fx)?;
            }
            Progress::CommitFirst => {
                // Not sent: it starts again once the proposals are committed.
                self.cursor = None;
                let at = groups::epoch(cx.store, &group).ok();
                if at.is_some() && self.blocked_at == at {
                    // Their commit did not unblock us: something is wrong
                    // with our state of the group.
                    begin_rejoin(
                        cx,
                        &group,
                        "proposals block sending and their commit did not help",
                        fx,
                    )?;
                } else {
                    self.blocked_at = at;
                    self.commit_first = true;
                }
            }
            Progress::Waiting | Progress::WaitEpoch { .. } => {
                // A message is answered once; anything else is a bug.
                tracing::error!(op_id, "a message step ended unexpectedly");
            }
        }
        Ok(())
    }
}

/// The first operation of a lane that `pick` chooses.
fn first_op(
    store: &dyn ClientStore,
    group: &GroupId,
    pick: impl Fn(&Op) -> bool,
) -> Result<Option<OutboxEntry>> {
    let mut after = None;
    loop {
        let batch = store.ops(group, after, 64)?;
        let Some(last) = batch.last() else {
            return Ok(None);
        };
        after = Some(last.op_id);
        if let Some(e) = batch
            .into_iter()
            .find(|e| Op::decode(&e.op).is_ok_and(|op| pick(&op)))
        {
            return Ok(Some(e));
        }
    }
}
