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
