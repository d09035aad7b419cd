//! Encrypted backup and restore of the device's history, for the apps:
//! the app decides where the file goes (app storage, a document the user
//! picked) and shows the recovery key for the user to write down.

use cascade_core::backup::RecoveryKey;
use cascade_core::KdfCost;

use crate::{CascadeClient, CascadeError, Result};

/// A fresh recovery key, in its written form (six groups of four).
#[uniffi::export]
pub fn generate_recovery_key() -> String {
    RecoveryKey::generate().written().to_string()
}

/// What a backup holds.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiBackup {
    /// Conversations in it.
    pub conversations: u64,
    /// Messages in it.
    pub messages: u64,
    /// Octets of the file.
    pub bytes: u64,
}

/// What a restore brought.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiRestored {
    /// Conversations new to this device (it joins them by itself).
    pub conversations: u64,
    /// Messages new to this device.
    pub messages: u64,
}

fn parse_key(typed: &str) -> Result<RecoveryKey> {
    RecoveryKey::parse(typed).map_err(|e| CascadeError::Invalid {
        reason: e.to_string(),
    })
}

#[uniffi::export(async_runtime = "tokio")]
impl CascadeClient {
    /// Writes an encrypted backup of this device's history to `path`,
    /// sealed under `recovery_key` (from `generate_recovery_key`, or a
    /// passphrase of at least 12 letters and digits). Messages that will
    /// disappear are left out.
    pub async fn backup(&self, path: String, recovery_key: String) -> Result<FfiBackup> {
        let key = parse_key(&recovery_key)?;
        let s = self
            .client()?
            .backup(std::path::Path::new(&path), &key, KdfCost::Standard)
            .await?;
        Ok(FfiBackup {
            conversations: s.conversations as u64,
            messages: s.messages as u64,
            bytes: s.bytes,
        })
    }

    /// Restores the backup at `path` (made on any of this user's devices)
    /// into this device. A wrong key, a changed file or another user's
    /// backup is an error (code `backup`) and changes nothing.
    pub async fn restore(&self, path: String, recovery_key: String) -> Result<FfiRestored> {
        let key = parse_key(&recovery_key)?;
        let done = self
            .client()?
            .restore(std::path::Path::new(&path), &key)
            .await?;
        Ok(FfiRestored {
            conversations: done.conversations as u64,
            messages: done.messages as u64,
        })
    }
}

/// What a new device shows to be linked.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiLinkOffer {
    /// The code to type on the other device (`1234 5678`).
    pub code: String,
    /// The payload to show as a QR code for the other device to scan.
    pub qr: String,
}

/// The other device of a link, verified as one of this user's, and the
/// digits both show.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiLinkPeer {
    /// The other device (hex).
    pub device_id: String,
    /// The user's certified name.
    pub display_name: String,
    /// The six digits both devices show (`123 456`).
    pub digits: String,
}

/// What the existing device sent.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiLinkSent {
    /// Conversations.
    pub conversations: u64,
    /// Messages.
    pub messages: u64,
    /// Octets of the sealed history.
    pub bytes: u64,
}

impl From<cascade_core::client::link::LinkPeer> for FfiLinkPeer {
    fn from(p: cascade_core::client::link::LinkPeer) -> Self {
        Self {
            device_id: p.device_id.to_string(),
            display_name: p.display_name,
            digits: p.digits,
        }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl CascadeClient {
    /// On the new device: starts a link; show the code and the QR code.
    pub async fn link_start(&self) -> Result<FfiLinkOffer> {
        let o = self.client()?.link_start().await?;
        Ok(FfiLinkOffer {
            code: o.code,
            qr: o.qr,
        })
    }

    /// On the new device: waits (at most `timeout_ms`) for the user's other
    /// device to answer; show the digits it returns.
    pub async fn link_wait(&self, timeout_ms: u64) -> Result<FfiLinkPeer> {
        Ok(self
            .client()?
            .link_wait(std::time::Duration::from_millis(timeout_ms))
            .await?
            .into())
    }

    /// On the new device: waits (at most `timeout_ms`) for the history and
    /// takes it in.
    pub async fn link_receive(&self, timeout_ms: u64) -> Result<FfiRestored> {
        let done = self
            .client()?
            .link_receive(std::time::Duration::from_millis(timeout_ms))
            .await?;
        Ok(FfiRestored {
            conversations: done.conversations as u64,
            messages: done.messages as u64,
        })
    }

    /// On the device with the history: answers the new device whose code
    /// (or scanned QR payload) the person entered; then ask them for the
    /// digits the new device shows.
    pub async fn link_approve(&self, code: String) -> Result<FfiLinkPeer> {
        Ok(self.client()?.link_approve(&code).await?.into())
    }

    /// On the device with the history: sends it if `digits` are the ones
    /// the new device shows; else sends nothing and ends the link (error
    /// code `link`).
    pub async fn link_send(&self, digits: String) -> Result<FfiLinkSent> {
        let s = self.client()?.link_send(&digits).await?;
        Ok(FfiLinkSent {
            conversations: s.conversations as u64,
            messages: s.messages as u64,
            bytes: s.bytes,
        })
    }

    /// Drops a link under way on this device.
    pub fn link_cancel(&self) -> Result<()> {
        self.client()?.link_cancel();
        Ok(())
    }
}
