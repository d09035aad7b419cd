//! Replies, edits, deletes for everyone and reactions, for the apps.

use cascade_core::{MessageVersion, Quote, Reactions};

use crate::{parse_group, parse_message, CascadeClient, FfiMessage, Result};

/// The message a reply answers, as it is now.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiQuote {
    /// Its id (hex), to jump to it.
    pub id: String,
    /// Who sent it; none if this device does not have it.
    pub sender: Option<String>,
    /// Its text now; none if unknown, deleted, or of a kind not shown.
    pub text: Option<String>,
    /// Whether it was deleted for everyone.
    pub deleted: bool,
}

impl From<Quote> for FfiQuote {
    fn from(q: Quote) -> Self {
        Self {
            id: q.id.to_string(),
            sender: q.sender.map(|u| u.to_string()),
            text: q.text,
            deleted: q.deleted,
        }
    }
}

/// Everyone who reacted to a message with one emoji.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiReactions {
    /// The emoji.
    pub emoji: String,
    /// Who reacted with it (`local@org`), in the order they did.
    pub users: Vec<String>,
}

impl From<Reactions> for FfiReactions {
    fn from(r: Reactions) -> Self {
        Self {
            emoji: r.emoji,
            users: r.users.into_iter().map(|u| u.to_string()).collect(),
        }
    }
}

/// An earlier version of an edited message.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiMessageVersion {
    /// What it said.
    pub text: String,
    /// When it was sent or edited (the sender's clock, ms).
    pub at: u64,
}

impl From<MessageVersion> for FfiMessageVersion {
    fn from(v: MessageVersion) -> Self {
        Self {
            text: v.text,
            at: v.at,
        }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl CascadeClient {
    /// Sends a text answering the message `reply_to` (hex); returns its id
    /// at once (state `sending`).
    pub async fn send_reply(
        &self,
        group_id: String,
        text: String,
        reply_to: String,
    ) -> Result<String> {
        Ok(self
            .client()?
            .send_reply(parse_group(&group_id)?, &text, parse_message(&reply_to)?)
            .await?
            .to_string())
    }

    /// Replaces the text of a message this user sent.
    pub async fn edit_message(
        &self,
        group_id: String,
        message_id: String,
        text: String,
    ) -> Result<()> {
        Ok(self
            .client()?
            .edit_message(parse_group(&group_id)?, parse_message(&message_id)?, &text)
            .await?)
    }

    /// Deletes a message for everyone: this user's own, or anyone's if
    /// they administer the conversation.
    pub async fn delete_message(&self, group_id: String, message_id: String) -> Result<()> {
        Ok(self
            .client()?
            .delete_message(parse_group(&group_id)?, parse_message(&message_id)?)
            .await?)
    }

    /// Reacts to a message with an emoji.
    pub async fn react(&self, group_id: String, message_id: String, emoji: String) -> Result<()> {
        Ok(self
            .client()?
            .react(parse_group(&group_id)?, parse_message(&message_id)?, &emoji)
            .await?)
    }

    /// Takes back this user's reaction with `emoji`.
    pub async fn unreact(&self, group_id: String, message_id: String, emoji: String) -> Result<()> {
        Ok(self
            .client()?
            .unreact(parse_group(&group_id)?, parse_message(&message_id)?, &emoji)
            .await?)
    }

    /// One message, as it is now.
    pub async fn message(&self, group_id: String, message_id: String) -> Result<FfiMessage> {
        Ok(self
            .client()?
            .message(parse_group(&group_id)?, parse_message(&message_id)?)
            .await?
            .into())
    }

    /// What an edited message said before, oldest first.
    pub async fn message_versions(
        &self,
        group_id: String,
        message_id: String,
    ) -> Result<Vec<FfiMessageVersion>> {
        Ok(self
            .client()?
            .message_versions(parse_group(&group_id)?, parse_message(&message_id)?)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}
