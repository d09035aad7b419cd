//! Replies, edits, deletes for everyone and reactions, for front ends
//! ([`crate::engine`]'s `features` does the work).

use cascade_protocol::GroupId;

use super::Client;
use crate::content::MessageId;
use crate::error::Result;
use crate::store::search::{SearchHit, SearchQuery};
use crate::store::MessageVersion;

impl Client {
    /// Sends a text answering the message `reply_to`; returns its id at
    /// once (state `Sending`).
    pub async fn send_reply(
        &self,
        group: GroupId,
        text: &str,
        reply_to: MessageId,
    ) -> Result<MessageId> {
        let text = text.to_owned();
        self.call(move |e, now| e.send_message(&group, &text, Some(&reply_to), now))
            .await
    }

    /// Replaces the text of our message `message`.
    pub async fn edit_message(&self, group: GroupId, message: MessageId, text: &str) -> Result<()> {
        let text = text.to_owned();
        self.call(move |e, now| e.edit_message(&group, &message, &text, now))
            .await
    }

    /// The user is typing in a conversation, or stopped (cleared the
    /// draft): call on every change of the draft; the engine decides when
    /// an indicator goes out.
    pub async fn set_typing(&self, group: GroupId, typing: bool) -> Result<()> {
        self.call(move |e, now| e.set_typing(&group, typing, now))
            .await
    }

    /// Who is typing in a conversation now.
    pub async fn typing(&self, group: GroupId) -> Result<Vec<cascade_protocol::UserId>> {
        self.call(move |e, now| Ok(e.typing(&group, now))).await
    }

    /// Deletes a message for everyone (ours, or anyone's as an admin).
    pub async fn delete_message(&self, group: GroupId, message: MessageId) -> Result<()> {
        self.call(move |e, now| e.delete_message(&group, &message, now))
            .await
    }

    /// Reacts to a message with `emoji`.
    pub async fn react(&self, group: GroupId, message: MessageId, emoji: &str) -> Result<()> {
        let emoji = emoji.to_owned();
        self.call(move |e, now| e.react(&group, &message, &emoji, now))
            .await
    }

    /// Takes back our reaction `emoji` to a message.
    pub async fn unreact(&self, group: GroupId, message: MessageId, emoji: &str) -> Result<()> {
        let emoji = emoji.to_owned();
        self.call(move |e, now| e.unreact(&group, &message, &emoji, now))
            .await
    }

    /// The earlier versions of an edited message, oldest first.
    pub async fn message_versions(
        &self,
        group: GroupId,
        message: MessageId,
    ) -> Result<Vec<MessageVersion>> {
        self.call(move |e, _| e.message_versions(&group, &message))
            .await
    }

    /// Searches this device's history (newest first).
    pub async fn search(&self, query: SearchQuery) -> Result<Vec<SearchHit>> {
        self.call(move |e, _| e.search(&query)).await
    }

    /// One message of a conversation, as it is now.
    pub async fn message(&self, group: GroupId, message: MessageId) -> Result<crate::Message> {
        self.call(move |e, _| e.message(&group, &message)).await
    }
}
