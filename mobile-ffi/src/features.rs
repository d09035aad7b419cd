//! Replies, edits, deletes for everyone and reactions, for the apps.

use cascade_core::{MessageVersion, Quote, Reactions, SearchHit, SearchQuery};

use crate::{parse_group, parse_message, user_id, CascadeClient, FfiMessage, Result};

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

/// What to search this device's history for.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiSearchQuery {
    /// Words (3 or more characters each), every one of which must appear,
    /// anywhere in a word, in any case.
    pub text: String,
    /// Only this conversation (hex id).
    #[uniffi(default = None)]
    pub group_id: Option<String>,
    /// Only messages from this user (`local@org`).
    #[uniffi(default = None)]
    pub sender: Option<String>,
    /// Only messages sent at or after this time (ms since the Unix epoch).
    #[uniffi(default = None)]
    pub since: Option<u64>,
    /// Only messages sent before this time (ms).
    #[uniffi(default = None)]
    pub until: Option<u64>,
    /// The most results, newest first (1 to 200).
    #[uniffi(default = 50)]
    pub limit: u32,
}

/// One search result.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiSearchHit {
    /// The message, as history shows it.
    pub message: FfiMessage,
    /// Its conversation's name.
    pub conversation: String,
    /// Where its text matched, for highlighting: `[start, end)` pairs of
    /// UTF-8 byte offsets.
    pub matches: Vec<FfiRange>,
}

/// A range of UTF-8 bytes in a text.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl From<SearchHit> for FfiSearchHit {
    fn from(h: SearchHit) -> Self {
        Self {
            message: h.message.into(),
            conversation: h.conversation,
            matches: h
                .matches
                .into_iter()
                .map(|(a, b)| FfiRange {
                    start: a as u64,
                    end: b as u64,
                })
                .collect(),
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

    /// Sends the file at `path` (sealed on the device; only its ciphertext
    /// goes to the relay) with `caption`; `media_type` is guessed from the
    /// name when not given. Progress comes as `FfiEvent::Transfer`; the
    /// message appears once the file is at the relay.
    pub async fn send_file(
        &self,
        group_id: String,
        path: String,
        media_type: Option<String>,
        caption: String,
    ) -> Result<String> {
        Ok(self
            .client()?
            .send_file(
                parse_group(&group_id)?,
                std::path::Path::new(&path),
                media_type.as_deref(),
                &caption,
            )
            .await?
            .to_string())
    }

    /// Saves the file a message carries to `path` (the app chooses it):
    /// fetched, checked and opened; `path` is written only when the whole
    /// file opened. Returns its size.
    pub async fn save_attachment(
        &self,
        group_id: String,
        message_id: String,
        path: String,
    ) -> Result<u64> {
        Ok(self
            .client()?
            .save_attachment(
                parse_group(&group_id)?,
                parse_message(&message_id)?,
                std::path::Path::new(&path),
            )
            .await?)
    }

    /// The user is typing in a conversation (`typing`), or cleared the
    /// draft: call on every change of the draft; the client decides when
    /// the others are told. Offline, nothing is sent.
    pub async fn set_typing(&self, group_id: String, typing: bool) -> Result<()> {
        Ok(self
            .client()?
            .set_typing(parse_group(&group_id)?, typing)
            .await?)
    }

    /// Who is typing in a conversation now (`local@org`).
    pub async fn typing(&self, group_id: String) -> Result<Vec<String>> {
        Ok(self
            .client()?
            .typing(parse_group(&group_id)?)
            .await?
            .into_iter()
            .map(|u| u.to_string())
            .collect())
    }

    /// Replaces the text of a message this user sent. `@` and a member's
    /// user id mentions them.
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

    /// Searches this device's history (works offline), newest first.
    /// Deleted messages are not found.
    pub async fn search(&self, query: FfiSearchQuery) -> Result<Vec<FfiSearchHit>> {
        let query = SearchQuery {
            text: query.text,
            group: query.group_id.as_deref().map(parse_group).transpose()?,
            sender: query.sender.as_deref().map(user_id).transpose()?,
            since: query.since,
            until: query.until,
            limit: query.limit,
        };
        Ok(self
            .client()?
            .search(query)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}
