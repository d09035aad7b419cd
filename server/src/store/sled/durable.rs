//! What makes a sled flush durable.
//!
//! sled 0.34's `flush` writes its log with `pwrite`; upstream then calls
//! `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`, which syncs neither
//! the file's metadata (its size, the blocks newly allocated to it) nor the
//! drive's write cache, and calls `fsync` only from its background thread,
//! every 500 ms. Items over about 128 KiB go to blob files that sled writes
//! and never syncs. A power cut could therefore lose writes the relay had
//! acknowledged as durable (counted with `perf stat` on the load
//! generator's runs: 7,020 `sync_file_range` calls and 5 `fsync`s for
//! 3,200 messages; `docs/benchmarks.md`). After every sled flush the
//! relay therefore `fdatasync`s the log itself (fsync acts on the file,
//! through any descriptor), and `fsync`s blob files it has not synced
//! yet and then the blob directory. The vendored sled leaves its
//! `sync_file_range` out (`vendor/sled/VENDORED.md`): this `fdatasync` is
//! the one trip to the disk a flush makes.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The files of one sled database that a durable flush syncs.
pub(super) struct DurableFiles {
    log: File,
    blobs: PathBuf,
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl DurableFiles {
    /// The files of the database at `path` (opened by sled already), with
    /// the database directory itself synced so its entries are durable.
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        let log = File::open(path.join("db"))?;
        File::open(path)?.sync_all()?;
        Ok(Self {
            log,
            blobs: path.join("blobs"),
            synced_blobs: Mutex::new(HashSet::new()),
        })
    }

    /// Makes what sled's flush wrote durable: the log's data and metadata,
    /// new blob files and their directory entries.
    pub(super) fn sync(&self) -> io::Result<()> {
        self.log.sync_data()?;
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut present = HashSet::new();
        let mut new = false;
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(blob) => blob.sync_data()?,
                    // Collected by sled meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            File::open(&self.blobs)?.sync_all()?;
        }
        // Blobs sled removed are forgotten.
        *synced = present;
        Ok(())
    }
}

#[cfg(test)]
impl DurableFiles {
    /// The blob files synced so far (for tests).
    pub(super) fn synced_blobs(&self) -> HashSet<OsString> {
        self.synced_blobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
