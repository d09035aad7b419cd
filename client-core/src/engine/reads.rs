//! Read state: what this user has read, kept the same on all their
//! devices, and read receipts ("read by 3") for the senders.
//!
//! Reading a conversation on one device sends one read report (the MIMI
//! message status format, [`crate::content::status`]) addressed with the
//! relay's `to` to this user's other devices and to the people whose new
//! messages were read; nobody else receives it. It names the last message
//! read, and each such person's last message: a member who read a message
//! read everything before it (protocol §15 rule 27). So whatever the number
//! of messages or the size of the conversation, one reading costs one
//! report delivered to the senders and the reader's devices (batched, not
//! sampled), and each device keeps one position per person, not one row
//! per message and reader.
//!
//! - The reader's other devices move their read position: the unread count
//!   drops and front ends clear the conversation's notifications
//!   ([`Event::ReadElsewhere`]).
//! - A sender moves the reader's position ([`Event::ReadBy`]); every
//!   message of theirs at or before it counts the reader in
//!   [`crate::store::Message::read_by`].
//!
//! A user who turns read receipts off ([`Engine::set_read_receipts`]) still
//! keeps their own devices in step; the report then goes to them alone.
//! Only conversations with a room (the MIMI content format) carry reports.

use cascade_protocol::limits::MAX_TARGET_USERS;
use cascade_protocol::{GroupId, UserId};

use super::outbox::Op;
use super::room;
use super::{groups, Ctx, Engine, Event, Me};
use crate::content::mapping;
use crate::content::status::Status;
use crate::content::{Body, MessageId};
use crate::error::{InvalidInput, Result};
use crate::store::reads::ReadMark;
use crate::store::{ClientStore, ConversationState, Transactions};

/// The `kv` key of the read-receipts setting: `off` when this user sends
/// none.
const RECEIPTS_KEY: &str = "setting:read_receipts";

/// Who has received and read one of this user's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReceipts {
    /// The message.
    pub message_id: MessageId,
    /// How many other people were to receive it: those in the conversation
    /// when the relay accepted it, where delivery receipts are sent; else
    /// the other people in it now.
    pub recipients: u32,
    /// Who received it (a delivery receipt, or a read report), and when
    /// (ms since the Unix epoch).
    pub delivered: Vec<(UserId, u64)>,
    /// Who has read it, and when their report came.
    pub read: Vec<(UserId, u64)>,
    /// Whether delivery is tracked person by person (conversations of at
    /// most [`super::MAX_RECEIPT_GROUP_USERS`] people); above that only
    /// reading is.
    pub per_person_delivery: bool,
}

impl<S: ClientStore> Engine<S> {
    /// Marks a conversation as read up to its newest message, on every
    /// device of this user, and (unless turned off) tells the people whose
    /// messages were read.
    pub fn mark_read(&mut self, group_id: &GroupId, now: u64) -> Result<()> {
        let me = self.me()?;
        let receipts = self.read_receipts()?;
        let tx = self.store.transaction()?;
        self.store.mark_read(group_id)?;
        if let Some((latest, seq)) = self.store.latest_sequenced(group_id)? {
            self.store.read_up_to(group_id, seq, &me.identity.user_id)?;
            report(&self.store, me, group_id, latest, seq, receipts, now)?;
        }
        tx.commit()?;
        self.events.push_back(Event::ConversationUpdated(*group_id));
        self.drive(now)
    }

    /// Mutes a conversation (its messages raise no notification), or
    /// unmutes it. This device's own setting.
    pub fn set_muted(&mut self, group_id: &GroupId, muted: bool) -> Result<()> {
        self.require(group_id, false)?;
        self.store.set_muted(group_id, muted)?;
        self.events.push_back(Event::ConversationUpdated(*group_id));
        Ok(())
    }

    /// Whether a message that just arrived should notify the user: another
    /// person's message (not a line of this device's own) in a
    /// conversation not muted, or one that mentions the user.
    pub fn notifies(&self, m: &crate::store::Message) -> Result<bool> {
        let me = self.me()?;
        if m.sender == me.identity.user_id || m.kind == crate::content::SYSTEM_KIND {
            return Ok(false);
        }
        // A mention of this user reaches them in a muted conversation.
        Ok(m.mentions(&me.identity.user_id) || !self.store.muted(&m.group_id)?)
    }

    /// Whether this user sends read receipts (on unless turned off).
    pub fn read_receipts(&self) -> Result<bool> {
        Ok(self.store.kv_get(RECEIPTS_KEY)?.as_deref() != Some(b"off"))
    }

    /// Turns sending read receipts on or off. Off, reading still reaches
    /// this user's other devices, and nobody else.
    pub fn set_read_receipts(&mut self, on: bool) -> Result<()> {
        self.store
            .kv_set(RECEIPTS_KEY, if on { b"on" } else { b"off" })
    }

    /// How far each other person has read a conversation, furthest first.
    pub fn read_marks(&self, group_id: &GroupId) -> Result<Vec<ReadMark>> {
        self.require(group_id, false)?;
        self.store.read_marks(group_id)
    }

    /// Sends a read report naming `ids` to `to` (empty: every member),
    /// unchecked: for tests that play a hostile member or a busy reader.
    #[doc(hidden)]
    pub fn send_status_unchecked(
        &mut self,
        group_id: &GroupId,
        ids: &[MessageId],
        to: &[UserId],
        now: u64,
    ) -> Result<()> {
        let me = self.me()?;
        let room = room::of(&*groups::load(&self.store, group_id)?)
            .ok_or(InvalidInput::OldConversation)?;
        let entries = ids.iter().map(|id| (*id, Status::Read)).collect();
        queue_report(&self.store, me, group_id, &room, entries, to.to_vec(), now)?;
        self.drive(now)
    }

    /// Who has received and read one of this user's messages.
    pub fn receipts(&self, group_id: &GroupId, id: &MessageId) -> Result<MessageReceipts> {
        let me = self.me()?;
        self.require(group_id, false)?;
        let m = self
            .store
            .message(id)?
            .filter(|m| &m.group_id == group_id)
            .ok_or(InvalidInput::UnknownMessage)?;
        if m.sender != me.identity.user_id || m.kind == crate::content::SYSTEM_KIND {
            return Err(InvalidInput::NotYours.into());
        }
        let read: Vec<(UserId, u64)> = match m.seq {
            Some(seq) => self
                .store
                .read_marks(group_id)?
                .into_iter()
                .filter(|r| r.seq >= seq && r.user != me.identity.user_id)
                .map(|r| (r.user, r.at))
                .collect(),
            None => Vec::new(),
        };
        let rows = self.store.recipients(id)?;
        let per_person_delivery = super::receipts::receipt_users(&self.store, me, group_id)?
            .is_some()
            || !rows.is_empty();
        let recipients = match rows.iter().filter(|(_, expected, _)| *expected).count() {
            0 => super::receipts::other_users(&self.store, me, group_id)?.len(),
            n => n,
        } as u32;
        let mut delivered: Vec<(UserId, u64)> = rows
            .into_iter()
            .filter_map(|(u, _, at)| Some((u, at?)))
            .collect();
        for (user, at) in &read {
            if !delivered.iter().any(|(u, _)| u == user) {
                delivered.push((user.clone(), *at));
            }
        }
        delivered.sort_by_key(|(_, at)| *at);
        Ok(MessageReceipts {
            message_id: *id,
            recipients,
            delivered,
            read,
            per_person_delivery,
        })
    }
}

/// Sends a read report for everything up to `latest` (`seq`), unless one
/// was sent for it already.
fn report(
    store: &dyn ClientStore,
    me: &Me,
    group_id: &GroupId,
    latest: MessageId,
    seq: u64,
    receipts: bool,
    now: u64,
) -> Result<()> {
    let state = store.read_state(group_id)?;
    if seq <= state.reported_seq {
        return Ok(());
    }
    store.set_reported(group_id, seq)?;
    if !matches!(
        store.conversation_cursor(group_id)?,
        Some((_, ConversationState::Active))
    ) {
        return Ok(());
    }
    let Some(room) = room::of(&*groups::load(store, group_id)?) else {
        return Ok(()); // a conversation from before rooms carries no reports
    };
    let mut entries = vec![(latest, Status::Read)];
    let mut to = vec![me.identity.user_id.clone()];
    if receipts {
        let me = &me.identity.user_id;
        for (user, id) in store.latest_by_sender(group_id, state.reported_seq, seq, me)? {
            if !entries.iter().any(|(e, _)| *e == id) {
                entries.push((id, Status::Read));
            }
            to.push(user);
        }
    }
    if to.len() > MAX_TARGET_USERS {
        to.clear(); // more readers' senders than one message may name: everyone
    }
    queue_report(store, me, group_id, &room, entries, to, now)
}

/// Queues a read report of `entries` in `room`, addressed to `to` (empty:
/// everyone).
fn queue_report(
    store: &dyn ClientStore,
    me: &Me,
    group_id: &GroupId,
    room: &room::Room,
    entries: Vec<(MessageId, Status)>,
    to: Vec<UserId>,
    now: u64,
) -> Result<()> {
    let w = mapping::write(
        &Body::Status { entries },
        now,
        rand::random(),
        &mapping::sender_uri(&me.identity.user_id),
        &room.uri,
    )?;
    Op::Send {
        group_id: *group_id,
        message_id: w.id,
        content: w.bytes,
        to,
    }
    .queue(store)?;
    Ok(())
}

/// A read report arrived from `from`: this user's other device (our read
/// position moves) or another person (theirs does). Entries naming
/// messages this device does not have, or of another conversation, are
/// ignored.
pub(crate) fn handle_report(
    cx: &Ctx<'_>,
    group_id: &GroupId,
    from: &UserId,
    entries: &[(MessageId, Status)],
) -> Result<Vec<Event>> {
    let store = cx.store;
    let mut furthest = None;
    for (id, status) in entries {
        if *status != Status::Read {
            continue;
        }
        let seq = store
            .message(id)?
            .filter(|m| &m.group_id == group_id)
            .and_then(|m| m.seq);
        furthest = furthest.max(seq);
    }
    let Some(seq) = furthest else {
        return Ok(vec![]);
    };
    let me = &cx.me.identity.user_id;
    if from == me {
        if !store.read_up_to(group_id, seq, me)? {
            return Ok(vec![]);
        }
        // Read there: nothing to report from here for what it covered.
        store.set_reported(group_id, seq)?;
        return Ok(vec![
            Event::ReadElsewhere {
                group_id: *group_id,
            },
            Event::ConversationUpdated(*group_id),
        ]);
    }
    if !store.add_read_mark(group_id, from, seq, cx.now)? {
        return Ok(vec![]);
    }
    Ok(vec![Event::ReadBy {
        group_id: *group_id,
        user_id: from.clone(),
        up_to: seq,
    }])
}

/// Keeps `read_by` for this user's own messages only: of others' messages
/// this device hears only the reports that also covered its own.
pub(crate) fn only_ours(me: &Me, m: &mut crate::store::Message) {
    if m.sender != me.identity.user_id {
        m.read_by = 0;
    }
}
