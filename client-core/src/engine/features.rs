//! Replies, edits, deletes for everyone and reactions: sent in the MIMI
//! content format ([`crate::content::mapping`]) in conversations that have
//! a room ([`super::room`]), and applied by every receiving device after
//! the same checks (protocol §15 rule 11):
//!
//! - an edit only by the message's sender (any of their devices), of a
//!   text not deleted;
//! - a delete by its sender or an admin of the room; the text, its earlier
//!   versions and its reactions are erased from the store;
//! - a reaction only to a message not deleted; one per person per emoji;
//! - a reaction taken back (a delete naming the reaction) only by who made
//!   it.
//!
//! What fails a check is dropped (logged without content), never shown.

use cascade_protocol::limits::MAX_MLS_MESSAGE_BYTES;
use cascade_protocol::{GroupId, UserId};

use super::outbox::Op;
use super::room::{self, Room};
use super::{check_text, groups, mentions, Ctx, Engine, Event, MessageChange};
use crate::content::mapping::{self, Written};
use crate::content::{Body, Content, MessageId};
use crate::error::{CoreError, InvalidInput, Result};
use crate::store::search::{self, SearchHit, SearchQuery};
use crate::store::{
    ClientStore, DeliveryState, Message, MessageVersion, Quote, Reaction, Transactions,
};

/// A message of ours about to be written, stored and queued.
struct NewMessage {
    body: Body,
    kind: &'static str,
    text: String,
    reply_to: Option<MessageId>,
    mentions: Vec<crate::content::Mention>,
    attachment: Option<crate::content::Attachment>,
}

/// An attachment's names and caption within bounds.
fn check_attachment(a: &crate::content::Attachment) -> Result<()> {
    if a.name.len() > MAX_ATTACHMENT_NAME_BYTES || a.media_type.len() > MAX_ATTACHMENT_NAME_BYTES {
        return Err(InvalidInput::MessageTooLong {
            limit: MAX_ATTACHMENT_NAME_BYTES,
        }
        .into());
    }
    if a.caption.len() > crate::content::MAX_TEXT_BYTES {
        return Err(InvalidInput::MessageTooLong {
            limit: crate::content::MAX_TEXT_BYTES,
        }
        .into());
    }
    Ok(())
}

/// The longest file name or media type of an attachment, in bytes.
pub const MAX_ATTACHMENT_NAME_BYTES: usize = 255;

/// The longest search text, in bytes.
pub const MAX_SEARCH_BYTES: usize = 256;

/// The most search results one query returns.
pub const MAX_SEARCH_RESULTS: u32 = 200;

impl<S: ClientStore> Engine<S> {
    /// The room of a conversation; `None` if it was created before rooms.
    fn room_of(&self, group_id: &GroupId) -> Result<Option<Room>> {
        Ok(room::of(&*groups::load(&self.store, group_id)?))
    }

    /// A conversation's room (its URI and admins); `None` for one created
    /// before rooms.
    pub fn room(&self, group_id: &GroupId) -> Result<Option<Room>> {
        self.require(group_id, false)?;
        self.room_of(group_id)
    }

    /// Sends `plaintext` as an application message as it is, unchecked:
    /// for tests that play a hostile member or another client.
    #[doc(hidden)]
    pub fn send_raw(&mut self, group_id: &GroupId, plaintext: Vec<u8>, now: u64) -> Result<()> {
        self.send_raw_to(group_id, plaintext, &[], now)
    }

    /// [`Engine::send_raw`] addressed to some users only (the relay's
    /// `to`): for tests that play a hostile member.
    #[doc(hidden)]
    pub fn send_raw_to(
        &mut self,
        group_id: &GroupId,
        plaintext: Vec<u8>,
        to: &[UserId],
        now: u64,
    ) -> Result<()> {
        self.require(group_id, true)?;
        Op::Send {
            group_id: *group_id,
            message_id: MessageId::random(),
            content: plaintext,
            to: to.to_vec(),
        }
        .queue(&self.store)?;
        self.drive(now)
    }

    /// The room, for a feature that needs it.
    fn require_room(&self, group_id: &GroupId) -> Result<Room> {
        self.require(group_id, true)?;
        self.room_of(group_id)?
            .ok_or_else(|| InvalidInput::OldConversation.into())
    }

    /// A message of this conversation that is still there.
    fn live_message(&self, group_id: &GroupId, id: &MessageId) -> Result<Message> {
        let m = self
            .store
            .message(id)?
            .filter(|m| &m.group_id == group_id)
            .ok_or(InvalidInput::UnknownMessage)?;
        if m.deleted_by.is_some() {
            return Err(InvalidInput::Deleted.into());
        }
        if id.as_v1().is_some() {
            return Err(InvalidInput::OldMessage.into());
        }
        Ok(m)
    }

    /// Writes `body` as this device, in `room`.
    fn write(&self, room: &Room, body: &Body, now: u64, salt: [u8; 16]) -> Result<Written> {
        let me = self.me()?;
        let w = mapping::write(
            body,
            now,
            salt,
            &mapping::sender_uri(&me.identity.user_id),
            &room.uri,
        )?;
        if w.bytes.len() > MAX_MLS_MESSAGE_BYTES / 2 {
            return Err(InvalidInput::MessageTooLong {
                limit: MAX_MLS_MESSAGE_BYTES / 2,
            }
            .into());
        }
        Ok(w)
    }

    /// Queues `w` for sending.
    fn queue(&self, group_id: &GroupId, w: Written) -> Result<()> {
        Op::Send {
            group_id: *group_id,
            message_id: w.id,
            content: w.bytes,
            to: Vec::new(),
        }
        .queue(&self.store)?;
        Ok(())
    }

    /// Tells the front end how a message is now.
    fn changed(&mut self, id: &MessageId, change: MessageChange) -> Result<()> {
        if let Some(message) = self.store.message(id)? {
            self.events
                .push_back(Event::MessageChanged { message, change });
        }
        Ok(())
    }

    /// Sends a text, answering the message `reply_to` if given (a reply
    /// needs a conversation with a room: [`InvalidInput::OldConversation`]
    /// otherwise). Stored in history at once (state `Sending`) and sent
    /// when connected; returns its id.
    pub fn send_message(
        &mut self,
        group_id: &GroupId,
        text: &str,
        reply_to: Option<&MessageId>,
        now: u64,
    ) -> Result<MessageId> {
        check_text(text)?;
        self.require(group_id, true)?;
        let room = self.room_of(group_id)?;
        if let Some(original) = reply_to {
            if room.is_none() {
                return Err(InvalidInput::OldConversation.into());
            }
            self.live_message(group_id, original)?;
        }
        // Mentions need the MIMI format: in a conversation from before
        // rooms the text goes as typed.
        let (text, mentions) = match &room {
            Some(_) => mentions::resolve(text, &mentions::names(&self.store, group_id)?),
            None => (text.to_owned(), Vec::new()),
        };
        check_text(&text)?;
        let body = Body::Text {
            text: text.clone(),
            in_reply_to: reply_to.copied(),
            mentions: mentions.clone(),
        };
        self.send_new(
            group_id,
            room.as_ref(),
            NewMessage {
                body,
                kind: "text",
                text,
                reply_to: reply_to.copied(),
                mentions,
                attachment: None,
            },
            now,
        )
    }

    /// Sends a file sealed and uploaded already ([`crate::attachments`],
    /// the relay's blob store), in a conversation with a room. Stored in
    /// history at once (state `Sending`); returns the message's id.
    pub fn send_attachment(
        &mut self,
        group_id: &GroupId,
        attachment: crate::content::Attachment,
        now: u64,
    ) -> Result<MessageId> {
        check_attachment(&attachment)?;
        let room = self.require_room(group_id)?;
        self.send_new(
            group_id,
            Some(&room),
            NewMessage {
                body: Body::Attachment(Box::new(attachment.clone())),
                kind: "attachment",
                text: attachment.caption.clone(),
                reply_to: None,
                mentions: Vec::new(),
                attachment: Some(attachment),
            },
            now,
        )
    }

    /// Asks the relay for a ticket to upload a sealed file to a
    /// conversation (`PostBlob`); `None` when offline. Its answer is an
    /// [`crate::Answer::BlobTicket`] (or the relay's refusal).
    pub fn post_blob(
        &mut self,
        group_id: &GroupId,
        sealed: &crate::attachments::Sealed,
    ) -> Result<Option<crate::QueryId>> {
        self.require_room(group_id)?;
        Ok(self.query(
            cascade_protocol::frames::Request::PostBlob {
                group_id: *group_id,
                digest: sealed.digest.to_vec().into(),
                size: sealed.size,
            },
            super::effects::QueryKind::Blob,
        ))
    }

    /// The file a message of a conversation carries (with its key).
    pub fn attachment(
        &self,
        group_id: &GroupId,
        id: &MessageId,
    ) -> Result<crate::content::Attachment> {
        self.live_message(group_id, id)?;
        self.store
            .attachment(id)?
            .ok_or_else(|| InvalidInput::NotAttachment.into())
    }

    /// Asks the relay for a ticket to fetch the file a message carries
    /// (`GetBlob`); `None` when offline.
    pub fn get_blob(
        &mut self,
        group_id: &GroupId,
        id: &MessageId,
    ) -> Result<Option<crate::QueryId>> {
        let a = self.attachment(group_id, id)?;
        Ok(self.query(
            cascade_protocol::frames::Request::GetBlob {
                digest: a.digest.to_vec().into(),
            },
            super::effects::QueryKind::Blob,
        ))
    }

    /// Writes, stores and queues a new message of ours.
    fn send_new(
        &mut self,
        group_id: &GroupId,
        room: Option<&Room>,
        new: NewMessage,
        now: u64,
    ) -> Result<MessageId> {
        let NewMessage {
            body,
            kind,
            text,
            reply_to,
            mentions,
            attachment,
        } = new;
        let (id, bytes, salt) = match room {
            Some(room) => {
                let salt = rand::random();
                let w = self.write(room, &body, now, salt)?;
                (w.id, w.bytes, Some(salt))
            }
            None => {
                let content = Content {
                    id: MessageId::random(),
                    sent_at: now,
                    body,
                };
                let bytes = content.encode();
                if bytes.len() > MAX_MLS_MESSAGE_BYTES / 2 {
                    return Err(InvalidInput::MessageTooLong {
                        limit: MAX_MLS_MESSAGE_BYTES / 2,
                    }
                    .into());
                }
                (content.id, bytes, None)
            }
        };
        let me = self.me()?;
        let message = Message {
            id,
            group_id: *group_id,
            sender: me.identity.user_id.clone(),
            sender_device: me.identity.device_id,
            sent_at: now,
            seq: None,
            text: Some(text),
            kind: kind.into(),
            state: DeliveryState::Sending,
            reply_to: reply_to.map(Quote::to),
            edited_at: None,
            deleted_by: None,
            reactions: Vec::new(),
            expires_at: room
                .and_then(|r| r.disappear_after)
                .map(|secs| now.saturating_add(secs.saturating_mul(1000))),
            read_by: 0,
            mentions,
            attachment: attachment.as_ref().map(|a| a.info()),
        };
        let tx = self.store.transaction()?;
        self.store.insert_message(&message, now, false)?;
        if let Some(salt) = salt {
            self.store.set_message_salt(&id, &salt)?;
        }
        if let Some(a) = &attachment {
            self.store.set_attachment(&id, a)?;
        }
        Op::Send {
            group_id: *group_id,
            message_id: id,
            content: bytes,
            to: Vec::new(),
        }
        .queue(&self.store)?;
        tx.commit()?;
        let message = self.store.message(&id)?.unwrap_or(message);
        self.events.push_back(Event::Message(message));
        self.typing.sent_message(group_id);
        self.drive(now)?;
        Ok(id)
    }

    /// The bytes of our failed message `m`, to send it again with the same
    /// id: the same salt gives the same MIMI content.
    pub(super) fn rewrite(&self, m: &Message) -> Result<Vec<u8>> {
        let body = match self.store.attachment(&m.id)? {
            Some(a) => Body::Attachment(Box::new(a)),
            None => Body::Text {
                text: m.text.clone().ok_or(InvalidInput::NotText)?,
                in_reply_to: m.reply_to.as_ref().map(|q| q.id),
                mentions: m.mentions.clone(),
            },
        };
        match self.store.message_salt(&m.id)? {
            Some(salt) => {
                let room = self.room_of(&m.group_id)?.ok_or(CoreError::Decode(
                    "a MIMI message in a conversation without a room",
                ))?;
                Ok(self.write(&room, &body, m.sent_at, salt)?.bytes)
            }
            None => Ok(Content {
                id: m.id,
                sent_at: m.sent_at,
                body,
            }
            .encode()),
        }
    }

    /// Replaces the text of our message `id` (every member's device shows
    /// the new text, marked edited; the earlier ones are kept).
    pub fn edit_message(
        &mut self,
        group_id: &GroupId,
        id: &MessageId,
        text: &str,
        now: u64,
    ) -> Result<()> {
        check_text(text)?;
        let room = self.require_room(group_id)?;
        let target = self.live_message(group_id, id)?;
        if target.sender != self.me()?.identity.user_id {
            return Err(InvalidInput::NotYours.into());
        }
        if target.kind != "text" {
            return Err(InvalidInput::NotText.into());
        }
        let (text, mentions) = mentions::resolve(text, &mentions::names(&self.store, group_id)?);
        check_text(&text)?;
        let w = self.write(
            &room,
            &Body::Edit {
                target: *id,
                text: text.clone(),
                mentions: mentions.clone(),
            },
            now,
            rand::random(),
        )?;
        let tx = self.store.transaction()?;
        self.store.edit_message(id, &w.id, &text, &mentions, now)?;
        self.queue(group_id, w)?;
        tx.commit()?;
        self.changed(id, MessageChange::Edited)?;
        self.drive(now)
    }

    /// Deletes a message for everyone: ours, or anyone's if we administer
    /// the conversation. Its text is erased from this device at once and
    /// from every member's device when they receive the delete.
    pub fn delete_message(&mut self, group_id: &GroupId, id: &MessageId, now: u64) -> Result<()> {
        self.require(group_id, true)?;
        let (room, members) = self.room_and_members(group_id)?;
        let room = room.ok_or(InvalidInput::OldConversation)?;
        let target = self.live_message(group_id, id)?;
        let me = self.me()?.identity.user_id.clone();
        if target.sender != me && room.role_of(&me, &members) != room::Role::Admin {
            return Err(InvalidInput::NotYours.into());
        }
        let w = self.write(&room, &Body::Delete { target: *id }, now, rand::random())?;
        // Our own file goes from the relay too (if we are online now; the
        // relay's retention deletes it otherwise).
        let blob = match target.sender == me {
            true => self.store.attachment(id)?,
            false => None,
        };
        let tx = self.store.transaction()?;
        self.store.erase_message(id, &me)?;
        self.queue(group_id, w)?;
        tx.commit()?;
        if let Some(a) = blob.filter(|_| self.is_online()) {
            let mut fx = super::effects::Effects::default();
            fx.request(
                cascade_protocol::frames::Request::DeleteBlob {
                    digest: a.digest.to_vec().into(),
                },
                super::effects::Route::Forget,
            );
            self.apply(fx)?;
        }
        self.changed(id, MessageChange::Deleted)?;
        self.drive(now)
    }

    /// Reacts to a message with `emoji` (nothing happens if we already
    /// did with this one).
    pub fn react(
        &mut self,
        group_id: &GroupId,
        id: &MessageId,
        emoji: &str,
        now: u64,
    ) -> Result<()> {
        if !mapping::valid_reaction(emoji) {
            return Err(InvalidInput::Reaction {
                limit: mapping::MAX_REACTION_BYTES,
            }
            .into());
        }
        let room = self.require_room(group_id)?;
        self.live_message(group_id, id)?;
        let me = self.me()?.identity.user_id.clone();
        if self
            .store
            .reactions_to(id)?
            .iter()
            .any(|r| r.user == me && r.emoji == emoji)
        {
            return Ok(());
        }
        let w = self.write(
            &room,
            &Body::Reaction {
                target: *id,
                emoji: emoji.into(),
            },
            now,
            rand::random(),
        )?;
        let reaction = Reaction {
            id: w.id,
            group_id: *group_id,
            target: *id,
            user: me,
            emoji: emoji.into(),
        };
        let tx = self.store.transaction()?;
        self.store.insert_reaction(&reaction, now)?;
        self.queue(group_id, w)?;
        tx.commit()?;
        self.changed(id, MessageChange::Reactions)?;
        self.drive(now)
    }

    /// Takes back our reaction `emoji` to a message.
    pub fn unreact(
        &mut self,
        group_id: &GroupId,
        id: &MessageId,
        emoji: &str,
        now: u64,
    ) -> Result<()> {
        let room = self.require_room(group_id)?;
        self.live_message(group_id, id)?;
        let me = self.me()?.identity.user_id.clone();
        let mine: Vec<Reaction> = self
            .store
            .reactions_to(id)?
            .into_iter()
            .filter(|r| r.user == me && r.emoji == emoji)
            .collect();
        if mine.is_empty() {
            return Err(InvalidInput::NoSuchReaction.into());
        }
        let tx = self.store.transaction()?;
        // Usually one; two if two of our devices reacted at once.
        for r in mine {
            let w = self.write(&room, &Body::Delete { target: r.id }, now, rand::random())?;
            self.store.delete_reaction(&r.id)?;
            self.queue(group_id, w)?;
        }
        tx.commit()?;
        self.changed(id, MessageChange::Reactions)?;
        self.drive(now)
    }

    /// One message of a conversation, as it is now.
    pub fn message(&self, group_id: &GroupId, id: &MessageId) -> Result<Message> {
        let mut m = self
            .store
            .message(id)?
            .filter(|m| &m.group_id == group_id)
            .ok_or(InvalidInput::UnknownMessage)?;
        super::reads::only_ours(self.me()?, &mut m);
        Ok(m)
    }

    /// Searches this device's history: messages whose text holds every
    /// word of the query (three or more characters each, anywhere in a
    /// word, any case), newest first, at most 200. Deleted messages are
    /// not in the index.
    pub fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
        if query.text.len() > MAX_SEARCH_BYTES {
            return Err(InvalidInput::SearchTooLong {
                limit: MAX_SEARCH_BYTES,
            }
            .into());
        }
        if search::words(&query.text).is_empty() {
            return Err(InvalidInput::SearchTooShort {
                min: search::MIN_SEARCH_CHARS,
            }
            .into());
        }
        let mut q = query.clone();
        q.limit = q.limit.clamp(1, MAX_SEARCH_RESULTS);
        self.store.search(&q)
    }

    /// The earlier versions of an edited message, oldest first (its
    /// current text is the message's own).
    pub fn message_versions(
        &self,
        group_id: &GroupId,
        id: &MessageId,
    ) -> Result<Vec<MessageVersion>> {
        self.message(group_id, id)?;
        self.store.message_versions(id)
    }
}

/// Applies a received edit, delete or reaction from `sender` after the
/// checks in the module's comment; returns what to tell the front end.
pub(super) fn apply(
    cx: &Ctx<'_>,
    group_id: &GroupId,
    sender: &UserId,
    room: Option<(&Room, &std::collections::BTreeSet<UserId>)>,
    content: &Content,
) -> Result<Vec<Event>> {
    let store = cx.store;
    let in_group = |id: &MessageId| -> Result<Option<Message>> {
        Ok(store.message(id)?.filter(|m| &m.group_id == group_id))
    };
    let changed = |id: &MessageId, change| -> Result<Vec<Event>> {
        Ok(store
            .message(id)?
            .map(|message| Event::MessageChanged { message, change })
            .into_iter()
            .collect())
    };
    let refused = |what: &str| {
        tracing::warn!(group = %group_id, what, "a message change was refused");
        Ok(vec![])
    };
    match &content.body {
        Body::Edit {
            target,
            text,
            mentions,
        } => match in_group(target)? {
            Some(m) if &m.sender == sender && m.deleted_by.is_none() && m.kind == "text" => {
                let (text, mentions) =
                    mentions::verified(store, group_id, text.clone(), mentions.clone())?;
                if store.edit_message(target, &content.id, &text, &mentions, content.sent_at)? {
                    changed(target, MessageChange::Edited)
                } else {
                    Ok(vec![]) // the same edit again
                }
            }
            Some(_) => refused("an edit not by the sender, or of a deleted message"),
            None => refused("an edit of a message this device does not have"),
        },
        Body::Delete { target } => {
            if let Some(m) = in_group(target)? {
                let admin = room
                    .is_some_and(|(r, members)| r.role_of(sender, members) == room::Role::Admin);
                if m.deleted_by.is_some() {
                    return Ok(vec![]);
                }
                if &m.sender != sender && !admin {
                    return refused("a delete by neither the sender nor an admin");
                }
                store.erase_message(target, sender)?;
                return changed(target, MessageChange::Deleted);
            }
            match store.reaction(target)? {
                Some(r) if &r.group_id == group_id && &r.user == sender => {
                    store.delete_reaction(target)?;
                    changed(&r.target, MessageChange::Reactions)
                }
                Some(_) => refused("a reaction taken back by someone else"),
                None => Ok(vec![]), // something this device never had
            }
        }
        Body::Reaction { target, emoji } => match in_group(target)? {
            Some(m) if m.deleted_by.is_none() => {
                let reaction = Reaction {
                    id: content.id,
                    group_id: *group_id,
                    target: *target,
                    user: sender.clone(),
                    emoji: emoji.clone(),
                };
                if store.insert_reaction(&reaction, cx.now)? {
                    changed(target, MessageChange::Reactions)
                } else {
                    Ok(vec![])
                }
            }
            Some(_) => Ok(vec![]), // deleted meanwhile
            None => refused("a reaction to a message this device does not have"),
        },
        _ => unreachable!("only edits, deletes and reactions are applied here"),
    }
}
