//! Encrypted backup and restore of this device's history
//! ([`crate::backup`]).

use std::path::Path;

use super::Client;
use crate::backup::{self, BackupError, RecoveryKey};
use crate::error::Result;
use crate::store::history::Imported;
use crate::store::KdfCost;

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    /// Conversations.
    pub conversations: usize,
    /// Messages.
    pub messages: usize,
    /// Octets of the file.
    pub bytes: u64,
}

fn file_error(e: std::io::Error) -> BackupError {
    BackupError::File(e.to_string())
}

impl Client {
    /// Writes an encrypted backup of this device's history to `dest`,
    /// sealed under `key` (messages that will disappear are left out).
    /// The file appears whole or not at all, readable by its owner only.
    pub async fn backup(
        &self,
        dest: &Path,
        key: &RecoveryKey,
        cost: KdfCost,
    ) -> Result<BackupSummary> {
        let archive = self.call(|e, _| e.export_history(false)).await?;
        let body = backup::Body {
            user_id: self.identity.user_id.clone(),
            device_id: self.identity.device_id,
            made_at: super::now_ms(),
            archive,
        };
        let summary = BackupSummary {
            conversations: body.archive.conversations.len(),
            messages: body.archive.messages(),
            bytes: 0,
        };
        let key = key.clone();
        let dest = dest.to_path_buf();
        let bytes = tokio::task::spawn_blocking(move || -> Result<u64> {
            let file = backup::seal(&body, &key, cost)?;
            write_private(&dest, &file).map_err(file_error)?;
            Ok(file.len() as u64)
        })
        .await
        .map_err(|_| self.closed())??;
        Ok(BackupSummary { bytes, ..summary })
    }

    /// Restores the history in the backup at `src` (made by any device of
    /// this user) into this device: all of it, or, with a wrong key, a
    /// damaged file or another user's backup, nothing. This device then
    /// joins the conversations the user was in by itself.
    pub async fn restore(&self, src: &Path, key: &RecoveryKey) -> Result<Imported> {
        let file = tokio::fs::read(src)
            .await
            .map_err(|e| BackupError::File(e.to_string()))?;
        let key = key.clone();
        let user = self.identity.user_id.clone();
        let body = tokio::task::spawn_blocking(move || backup::open(&file, &key, &user))
            .await
            .map_err(|_| self.closed())??;
        self.call(move |e, now| e.import_history(&body.archive, now))
            .await
    }
}

/// Writes `bytes` to `dest` through a temporary file beside it, made
/// owner-only before anything is written, and moved into place whole.
fn write_private(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cascade-backup")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}
