//! Read state and read receipts, for the apps: who has received and read
//! a message of this user's, and the setting to stop sending receipts; and
//! muting a conversation.

use cascade_core::{MessageReceipts, UserId};

use crate::{parse_group, parse_message, CascadeClient, Result};

/// One person and when.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiReceipt {
    /// The user id.
    pub user_id: String,
    /// When (ms since the Unix epoch).
    pub at: u64,
}

/// Who has received and read one of this user's messages: "delivered to
/// 5 of 7, read by 3".
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiMessageReceipts {
    /// The message (hex).
    pub message_id: String,
    /// How many other people were to receive it.
    pub recipients: u32,
    /// Who received it, and when.
    pub delivered: Vec<FfiReceipt>,
    /// Who read it, and when.
    pub read: Vec<FfiReceipt>,
    /// Whether delivery is tracked person by person (smaller
    /// conversations); above that only reading is.
    pub per_person_delivery: bool,
}

impl From<MessageReceipts> for FfiMessageReceipts {
    fn from(r: MessageReceipts) -> Self {
        let list = |v: Vec<(UserId, u64)>| {
            v.into_iter()
                .map(|(u, at)| FfiReceipt {
                    user_id: u.to_string(),
                    at,
                })
                .collect()
        };
        Self {
            message_id: r.message_id.to_string(),
            recipients: r.recipients,
            delivered: list(r.delivered),
            read: list(r.read),
            per_person_delivery: r.per_person_delivery,
        }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl CascadeClient {
    /// Who has received and read one of this user's messages (`Invalid`
    /// for someone else's).
    pub async fn receipts(
        &self,
        group_id: String,
        message_id: String,
    ) -> Result<FfiMessageReceipts> {
        Ok(self
            .client()?
            .receipts(parse_group(&group_id)?, parse_message(&message_id)?)
            .await?
            .into())
    }

    /// Mutes a conversation on this device, or unmutes it.
    pub async fn set_muted(&self, group_id: String, muted: bool) -> Result<()> {
        Ok(self
            .client()?
            .set_muted(parse_group(&group_id)?, muted)
            .await?)
    }

    /// Whether a message that just arrived should raise a notification
    /// (another person's, in a conversation not muted, or one that mentions
    /// this user): the app asks before it shows one.
    pub async fn notifies(&self, group_id: String, message_id: String) -> Result<bool> {
        let client = self.client()?;
        let m = client
            .message(parse_group(&group_id)?, parse_message(&message_id)?)
            .await?;
        Ok(client.notifies(m).await?)
    }

    /// Whether this user sends read receipts.
    pub async fn read_receipts(&self) -> Result<bool> {
        Ok(self.client()?.read_receipts().await?)
    }

    /// Turns sending read receipts on or off. Off, reading still clears
    /// this user's other devices, and tells nobody else.
    pub async fn set_read_receipts(&self, on: bool) -> Result<()> {
        Ok(self.client()?.set_read_receipts(on).await?)
    }
}
