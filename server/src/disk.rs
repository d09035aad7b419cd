//! Room on the data directory's filesystem, and what the relay does when
//! there is none.
//!
//! Two layers (`docs/architecture.md`, "A full disk"):
//!
//! - **A reserve.** [`DiskGuard`] reads the filesystem's free space every
//!   [`CHECK_EVERY`]. While it is under the configured reserve
//!   (`--min-free-disk-mib`), requests that would store something new are
//!   refused with the typed, retryable
//!   [`ProtocolError::Unavailable`](cascade_protocol::ProtocolError::Unavailable)
//!   (HTTP `503 unavailable`) before anything is written, and the relay goes
//!   on serving reads, acknowledgements (which free space) and `/health`.
//!   Devices retry on their own once space is back.
//! - **A store that failed to write.** If a write fails anyway (the reserve
//!   was set to 0, or something else filled the disk faster than the check),
//!   the embedded store (sled) refuses every later write until it is
//!   reopened, and what it holds in memory may be ahead of what is on disk.
//!   The relay then answers what was waiting with `Internal`, stops, and
//!   exits non-zero, so that its supervisor starts it again on what is
//!   durable (crash-only: recovery is the store's ordinary start-up).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often the free space is read.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The default reserve: writes stop while less than this is free.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;
/// What a refused device is told to wait before retrying.
pub const RETRY_AFTER_MS: u64 = 5_000;

/// Watches the free space of the filesystem that holds the data directory.
pub struct DiskGuard {
    dir: PathBuf,
    min_free: u64,
    free: AtomicU64,
    low: AtomicBool,
}

impl DiskGuard {
    /// A guard for `dir`'s filesystem that refuses writes while less than
    /// `min_free` bytes are free (0: never). Reads the space once now.
    pub fn new(dir: &Path, min_free: u64) -> std::io::Result<Self> {
        let guard = Self {
            dir: dir.to_owned(),
            min_free,
            free: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
        };
        guard.check()?;
        Ok(guard)
    }

    /// Reads the free space now; returns it.
    pub fn check(&self) -> std::io::Result<u64> {
        let stat = rustix::fs::statvfs(&self.dir)?;
        // What an unprivileged process may still write.
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        self.free.store(free, Ordering::Relaxed);
        let low = free < self.min_free;
        let was = self.low.swap(low, Ordering::Relaxed);
        if low && !was {
            tracing::error!(
                free_bytes = free,
                reserve_bytes = self.min_free,
                "the data directory's disk is nearly full: refusing new writes until space is freed"
            );
        } else if was && !low {
            tracing::warn!(
                free_bytes = free,
                "disk space is back: accepting writes again"
            );
        }
        Ok(free)
    }

    /// Whether writes are refused now.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// The free bytes at the last check.
    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// The reserve in bytes.
    pub fn min_free_bytes(&self) -> u64 {
        self.min_free
    }

    /// [`DiskGuard::check`] for the periodic task: a failure to read the
    /// space is logged once while it lasts (`unreadable` carries that).
    pub fn recheck(&self, unreadable: &mut bool) {
        match self.check() {
            Ok(_) => *unreadable = false,
            Err(e) if !*unreadable => {
                *unreadable = true;
                tracing::error!(error = %e, "cannot read the data directory's free space");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_is_low_and_zero_never_is() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let never = DiskGuard::new(dir.path(), 0)?;
        assert!(!never.is_low());
        assert!(never.free_bytes() > 0);
        let always = DiskGuard::new(dir.path(), u64::MAX)?;
        assert!(always.is_low());
        assert_eq!(always.min_free_bytes(), u64::MAX);
        Ok(())
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        assert!(DiskGuard::new(Path::new("/nonexistent/cascade"), 0).is_err());
    }
}
