//! The append-only audit log of admin actions (`<data-dir>/audit.jsonl`):
//! one JSON object per line, with when, by what authority, what was done
//! and to what. Written and synced before the action is answered; never
//! rewritten by the relay. It names organisations, users and devices (it
//! is the admins' record) but never carries a token, key or content.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// The file name in the data directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// The log file, opened for appending.
pub struct AuditLog {
    file: Mutex<File>,
}

/// One line of the log.
#[derive(Serialize)]
struct Record<'a> {
    /// Seconds since the Unix epoch.
    at: u64,
    /// The authority the action was taken with: `relay-admin-token` (the
    /// relay operator's token) or `enrolment-token` (a device enrolling).
    by: &'a str,
    /// What was done, e.g. `user.create`.
    action: &'a str,
    /// To what: ids and non-secret details.
    #[serde(flatten)]
    subject: serde_json::Value,
}

impl AuditLog {
    /// Opens (creating, owner-only) the log in `data_dir`.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        Ok(Self {
            file: Mutex::new(options.open(data_dir.join(AUDIT_FILE))?),
        })
    }

    /// Appends one record and syncs it.
    pub fn record(
        &self,
        by: &str,
        action: &str,
        subject: serde_json::Value,
    ) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&Record {
            at: crate::unix_now(),
            by,
            action,
            subject,
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&line)?;
        file.sync_data()
    }
}
