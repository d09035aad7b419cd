//! Delivery receipts: confirming others' messages, and marking ours
//! delivered once every recipient confirmed them.
//!
//! Others' messages are confirmed in one receipt per conversation: when the
//! backlog is drained, and for live messages [`RECEIPT_DELAY_MS`] after
//! the first unconfirmed one arrived, so a burst costs one receipt. The
//! due list is kept in memory: a crash in between only costs the sender
//! the "delivered" mark. A message of ours is delivered once the relay
//! accepted it and every other user in the conversation at that moment
//! confirmed it.

use cascade_protocol::{GroupId, UserId};

use super::groups;
use super::outbox::Op;
use super::{Event, Me};
use crate::content::{Body, Content, MessageId};
use crate::error::Result;
use crate::store::Transactions;
use crate::store::{ClientStore, ConversationState, DeliveryState};

/// Most message ids one delivery receipt carries.
pub(crate) const MAX_RECEIPT_IDS: usize = 500;

/// How long live messages wait for their delivery receipt, so that a
/// burst is confirmed in one.
pub const RECEIPT_DELAY_MS: u64 = 500;

/// Delivery receipts are sent only in conversations of at most this many
/// people. Every receipt is an MLS message to the whole group, so in a
/// group of n each message would cost n² deliveries; large cascades track
/// acknowledgement explicitly instead (alerts), and their messages stay
/// "sent".
pub const MAX_RECEIPT_GROUP_USERS: usize = 32;

/// Others' messages received and not yet confirmed.
#[derive(Default)]
pub(crate) struct Receipts {
    /// In arrival order.
    due: Vec<(GroupId, MessageId)>,
    /// When the due receipts are flushed, while live messages wait.
    at: Option<u64>,
}

impl Receipts {
    /// Another user's message arrived.
    pub fn received(&mut self, group: GroupId, id: MessageId) {
        self.due.push((group, id));
    }

    /// While live: confirm shortly, with whatever follows.
    pub fn arm(&mut self, now: u64) {
        if !self.due.is_empty() && self.at.is_none() {
            self.at = Some(now + RECEIPT_DELAY_MS);
        }
    }

    /// When the receipts are due.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.at
    }

    /// Whether receipts wait to be sent.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// Whether the timer has passed.
    pub fn is_due(&self, now: u64) -> bool {
        self.at.is_some_and(|t| t <= now)
    }

    /// Queues one delivery receipt per conversation for the messages
    /// received since the last flush.
    pub fn flush(&mut self, store: &dyn ClientStore, me: &Me, now: u64) -> Result<()> {
        self.at = None;
        if self.due.is_empty() {
            return Ok(());
        }
        let due = std::mem::take(&mut self.due);
        let mut by_group: Vec<(GroupId, Vec<MessageId>)> = Vec::new();
        for (g, id) in due {
            match by_group.iter_mut().find(|(x, _)| *x == g) {
                Some((_, ids)) => ids.push(id),
                None => by_group.push((g, vec![id])),
            }
        }
        let tx = store.transaction()?;
        for (group_id, ids) in by_group {
            if !matches!(
                store.conversation_cursor(&group_id)?,
                Some((_, ConversationState::Active))
            ) {
                continue;
            }
            if receipt_users(store, me, &group_id)?.is_none() {
                continue;
            }
            for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                let content = Content {
                    id: MessageId::random(),
                    sent_at: now,
                    body: Body::Receipt {
                        delivered: chunk.to_vec(),
                    },
                };
                Op::send(group_id, &content).queue(store)?;
            }
        }
        tx.commit()
    }
}

/// A member confirmed receiving some of our messages.
pub(crate) fn handle_receipt(
    store: &dyn ClientStore,
    me: &Me,
    group_id: &GroupId,
    from: &UserId,
    delivered: &[MessageId],
    now: u64,
) -> Result<Vec<Event>> {
    if from == &me.identity.user_id {
        return Ok(vec![]); // our other device: not a recipient
    }
    let mut events = Vec::new();
    for id in delivered.iter().take(MAX_RECEIPT_IDS) {
        let Some(m) = store.message(id)? else {
            continue;
        };
        if &m.group_id != group_id || m.sender != me.identity.user_id {
            continue; // not ours, or claimed for another conversation
        }
        if store.add_receipt(id, group_id, from, now)? {
            events.extend(check_delivered(store, group_id, id)?);
        }
    }
    Ok(events)
}

/// The relay accepted our message: those in the conversation now are the
/// recipients whose receipts make it delivered (receipts that came before
/// this answer, after a lost one, count too).
pub(crate) fn on_sent(
    store: &dyn ClientStore,
    me: &Me,
    group_id: &GroupId,
    id: &MessageId,
) -> Result<Option<Event>> {
    let others = receipt_users(store, me, group_id)?.unwrap_or_default();
    if others.is_empty() {
        return Ok(None);
    }
    store.expect_receipts(id, group_id, &others)?;
    check_delivered(store, group_id, id)
}

/// Marks our message delivered once the relay accepted it and every
/// recipient expected then has confirmed it.
pub(crate) fn check_delivered(
    store: &dyn ClientStore,
    group_id: &GroupId,
    id: &MessageId,
) -> Result<Option<Event>> {
    let sent = store
        .message(id)?
        .is_some_and(|m| m.state == DeliveryState::Sent);
    if !sent || !store.all_confirmed(id)? {
        return Ok(None);
    }
    store.set_message_state(id, DeliveryState::Delivered, None)?;
    Ok(Some(Event::DeliveryState {
        group_id: *group_id,
        message_id: *id,
        state: DeliveryState::Delivered,
    }))
}

/// Users whose devices were removed are no longer waited for, unless they
/// still have a device in the conversation: our messages they had not
/// confirmed may now be delivered to everyone still here.
pub(crate) fn forget_departed(
    store: &dyn ClientStore,
    me: &Me,
    group_id: &GroupId,
    removed: &[UserId],
) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    if removed.is_empty() {
        return Ok(events);
    }
    let still = other_users(store, me, group_id)?;
    for user in removed.iter().filter(|u| !still.contains(u)) {
        // How far they read no longer counts either.
        store.forget_read_mark(group_id, user)?;
        for id in store.forget_recipient(group_id, user)? {
            events.extend(check_delivered(store, group_id, &id)?);
        }
    }
    Ok(events)
}

/// Whose delivery receipts count in a conversation: the other users, or
/// `None` where receipts are not sent (more than
/// [`MAX_RECEIPT_GROUP_USERS`] people, counting this user).
pub(crate) fn receipt_users(
    store: &dyn ClientStore,
    me: &Me,
    group_id: &GroupId,
) -> Result<Option<Vec<UserId>>> {
    let others = other_users(store, me, group_id)?;
    Ok((others.len() < MAX_RECEIPT_GROUP_USERS).then_some(others))
}

/// The other users in a conversation, sorted: as recorded when its
/// membership last changed (read from the group if not recorded yet).
pub(crate) fn other_users(
    store: &dyn ClientStore,
    me: &Me,
    group_id: &GroupId,
) -> Result<Vec<UserId>> {
    let users = match store.conversation_users(group_id)? {
        Some(users) => users,
        None => {
            let group = groups::read(store, group_id)?;
            if !group.is_active() {
                return Ok(Vec::new());
            }
            groups::users(&group)
        }
    };
    Ok(users
        .into_iter()
        .filter(|u| u != &me.identity.user_id)
        .collect())
}
