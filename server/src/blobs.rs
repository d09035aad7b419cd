//! Attachments' ciphertext ("blobs"), kept on disk outside the message
//! store (protocol §3.6): `blobs/` under the data directory, one file per
//! blob named by the SHA-256 of its content, and beside it what the relay
//! knows of it (`<digest>.json`: the groups it was posted to, the posting
//! organisation, its size, whether it is complete).
//!
//! A device posts a blob over its WebSocket (`PostBlob`: the group, the
//! size, the digest), where the relay checks membership, the size limit and
//! its organisation's quota, and answers with a ticket; the bytes then go
//! over HTTP (`PUT /v1/blobs/{digest}`), streamed to `<digest>.part` and
//! resumable at the offset the relay reports. When the last byte is in, the
//! relay checks the digest, flushes the file and renames it into place. A
//! member fetches it with a ticket from `GetBlob` (`GET`, with `Range`).
//! Nothing is ever held whole in memory; the relay never learns a blob's
//! name, type or key.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cascade_protocol::{DeviceId, GroupId, OrgId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::DsError;

/// The default largest blob, in octets (`--max-blob-mib`).
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 100 * 1024 * 1024;

/// The default blob storage per organisation, in octets
/// (`--blob-quota-mib`).
pub const DEFAULT_ORG_QUOTA_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// How long a ticket stays good.
pub const TICKET_TTL: Duration = Duration::from_secs(600);

/// The most tickets held at once (older ones are dropped first when full).
const MAX_TICKETS: usize = 100_000;

/// What the relay keeps of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    /// The groups it was posted to (its members may fetch it).
    pub groups: Vec<GroupId>,
    /// The organisation of the device that first posted it (its quota).
    pub org: OrgId,
    /// Octets.
    pub size: u64,
    /// All of it is in and its digest checked.
    pub complete: bool,
    /// When it was first posted, seconds since the Unix epoch.
    pub posted_at: u64,
    /// The user who first posted it: their devices may delete it (absent
    /// from records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster: Option<UserId>,
    /// Posted for the poster's own devices (`PostOwnBlob`): any device of
    /// `poster` may fetch it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own: bool,
}

/// Who may fetch a blob being posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The members of a group.
    Group(GroupId),
    /// The poster's own devices.
    Own,
}

/// What a ticket lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Write the blob's missing bytes.
    Upload,
    /// Read the blob.
    Download,
}

struct Ticket {
    device: DeviceId,
    digest: [u8; 32],
    access: Access,
    until: Instant,
}

/// Why an upload was not taken.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The upload starts elsewhere than where the relay has got to.
    #[error("the upload must continue at octet {0}")]
    Offset(u64),
    /// More octets than the blob was posted with.
    #[error("more octets than posted")]
    TooLong,
    /// All of it arrived, but its digest is not the one posted: the
    /// upload is thrown away.
    #[error("the blob's digest is not the one posted")]
    Digest,
    /// Reading the request or writing the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The blob store.
pub struct Blobs {
    dir: PathBuf,
    max_bytes: AtomicU64,
    org_quota: AtomicU64,
    index: Mutex<Index>,
    tickets: Mutex<HashMap<[u8; 32], Ticket>>,
}

#[derive(Default)]
struct Index {
    blobs: HashMap<[u8; 32], BlobMeta>,
    used: HashMap<OrgId, u64>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Blobs {
    /// Opens (creating) `data_dir/blobs`, reading what it holds.
    pub fn open(data_dir: &Path, max_bytes: u64, org_quota: u64) -> std::io::Result<Blobs> {
        let dir = data_dir.join("blobs");
        std::fs::create_dir_all(&dir)?;
        let mut index = Index::default();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(digest) = name
                .strip_suffix(".json")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
            else {
                continue;
            };
            match serde_json::from_slice::<BlobMeta>(&std::fs::read(&path)?) {
                Ok(mut meta) => {
                    // Moved into place, but stopped before its record said
                    // so: its digest was checked before the move.
                    meta.complete |= dir.join(hex::encode(digest)).exists();
                    *index.used.entry(meta.org.clone()).or_default() += meta.size;
                    index.blobs.insert(digest, meta);
                }
                Err(e) => tracing::warn!(error = %e, "an unreadable blob record was skipped"),
            }
        }
        Ok(Blobs {
            dir,
            max_bytes: AtomicU64::new(max_bytes),
            org_quota: AtomicU64::new(org_quota),
            index: Mutex::new(index),
            tickets: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the largest blob and the storage per organisation, in octets.
    pub fn set_limits(&self, max_bytes: u64, org_quota: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
        self.org_quota.store(org_quota, Ordering::Relaxed);
    }

    fn path(&self, digest: &[u8; 32], ext: &str) -> PathBuf {
        self.dir.join(format!("{}{ext}", hex::encode(digest)))
    }

    /// Writes a blob's record atomically (a file beside it, renamed over).
    fn write_meta(&self, digest: &[u8; 32], meta: &BlobMeta) -> std::io::Result<()> {
        let tmp = self.path(digest, ".json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(meta).expect("a record serialises"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.path(digest, ".json"))
    }

    /// A blob's record.
    pub fn meta(&self, digest: &[u8; 32]) -> Option<BlobMeta> {
        self.index
            .lock()
            .expect("blob index")
            .blobs
            .get(digest)
            .cloned()
    }

    /// Octets of the blob the relay has.
    pub fn offset(&self, digest: &[u8; 32]) -> u64 {
        match self.meta(digest) {
            Some(m) if m.complete => m.size,
            _ => std::fs::metadata(self.path(digest, ".part")).map_or(0, |m| m.len()),
        }
    }

    /// Records a blob posted to `group` by a device of `org` (the caller
    /// checked membership): within the size limit and the organisation's
    /// quota. Returns how much of it the relay has already.
    pub fn post(
        &self,
        poster: &UserId,
        scope: Scope,
        digest: [u8; 32],
        size: u64,
    ) -> Result<u64, DsError> {
        let max_bytes = self.max_bytes.load(Ordering::Relaxed);
        if size > max_bytes {
            return Err(DsError::TooLarge { limit: max_bytes });
        }
        let mut index = self.index.lock().expect("blob index");
        let meta = match index.blobs.get(&digest) {
            Some(m) if m.size != size => {
                return Err(DsError::Malformed("the blob was posted with another size"))
            }
            Some(m) if scope == Scope::Own && m.poster.as_ref() != Some(poster) => {
                return Err(DsError::NotMember)
            }
            Some(m) if scope == Scope::Own && m.own => None,
            Some(m) if matches!(scope, Scope::Group(g) if m.groups.contains(&g)) => None,
            Some(m) => {
                let mut m = m.clone();
                match scope {
                    Scope::Group(g) => m.groups.push(g),
                    Scope::Own => m.own = true,
                }
                Some(m)
            }
            None => {
                let org = &poster.org();
                let used = index.used.get(org).copied().unwrap_or(0);
                let quota = self.org_quota.load(Ordering::Relaxed);
                if used.saturating_add(size) > quota {
                    return Err(DsError::QuotaExceeded { limit: quota });
                }
                Some(BlobMeta {
                    groups: match scope {
                        Scope::Group(g) => vec![g],
                        Scope::Own => vec![],
                    },
                    own: scope == Scope::Own,
                    org: org.clone(),
                    size,
                    complete: false,
                    posted_at: now_secs(),
                    poster: Some(poster.clone()),
                })
            }
        };
        if let Some(meta) = meta {
            self.write_meta(&digest, &meta)
                .map_err(|_| DsError::Internal("the blob record could not be written"))?;
            if !index.blobs.contains_key(&digest) {
                *index.used.entry(meta.org.clone()).or_default() += size;
            }
            index.blobs.insert(digest, meta);
        }
        drop(index);
        Ok(self.offset(&digest))
    }

    /// A ticket for `device` to do `access` to the blob: 32 random octets,
    /// good for [`TICKET_TTL`].
    pub fn ticket(&self, device: DeviceId, digest: [u8; 32], access: Access) -> [u8; 32] {
        let token: [u8; 32] = rand::random();
        let now = Instant::now();
        let mut tickets = self.tickets.lock().expect("tickets");
        if tickets.len() >= MAX_TICKETS {
            tickets.retain(|_, t| t.until > now);
            if tickets.len() >= MAX_TICKETS {
                // Still full of live tickets: the oldest go.
                let mut by_age: Vec<_> = tickets.iter().map(|(k, t)| (t.until, *k)).collect();
                by_age.sort();
                for (_, k) in by_age.into_iter().take(MAX_TICKETS / 10) {
                    tickets.remove(&k);
                }
            }
        }
        tickets.insert(
            token,
            Ticket {
                device,
                digest,
                access,
                until: now + TICKET_TTL,
            },
        );
        token
    }

    /// Whether `token` lets its holder do `access` to the blob; the device
    /// it was issued to, if so.
    pub fn check(&self, token: &[u8; 32], digest: &[u8; 32], access: Access) -> Option<DeviceId> {
        let tickets = self.tickets.lock().expect("tickets");
        tickets
            .get(token)
            .filter(|t| &t.digest == digest && t.access == access && t.until > Instant::now())
            .map(|t| t.device)
    }

    /// Opens the blob's partial file to append from `offset`, which must
    /// be where the relay has got to; returns it and the blob's size.
    pub fn begin_upload(
        &self,
        digest: &[u8; 32],
        offset: u64,
    ) -> Result<(std::fs::File, u64), UploadError> {
        let meta = self.meta(digest).ok_or(UploadError::Offset(0))?;
        if meta.complete {
            return Err(UploadError::Offset(meta.size));
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(digest, ".part"))?;
        let have = f.metadata()?.len();
        if have != offset {
            return Err(UploadError::Offset(have));
        }
        Ok((f, meta.size))
    }

    /// Appends `chunk` at `offset` of the blob's partial file (what the
    /// HTTP upload does as pieces arrive); returns the new offset.
    pub fn write(&self, digest: &[u8; 32], offset: u64, chunk: &[u8]) -> Result<u64, UploadError> {
        let (mut f, size) = self.begin_upload(digest, offset)?;
        if offset + chunk.len() as u64 > size {
            return Err(UploadError::TooLong);
        }
        f.write_all(chunk)?;
        Ok(offset + chunk.len() as u64)
    }

    /// The upload has all its octets: checks the digest (reading the file),
    /// flushes and renames it, and marks the blob complete. A wrong digest
    /// throws the upload away.
    pub fn finish(&self, digest: &[u8; 32]) -> Result<(), UploadError> {
        let part = self.path(digest, ".part");
        let mut hash = Sha256::new();
        let mut f = std::fs::File::open(&part)?;
        std::io::copy(&mut f, &mut hash)?;
        if hash.finalize().as_slice() != digest {
            let _ = std::fs::remove_file(&part);
            return Err(UploadError::Digest);
        }
        f.sync_all()?;
        std::fs::rename(&part, self.path(digest, ""))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let mut index = self.index.lock().expect("blob index");
        if let Some(meta) = index.blobs.get_mut(digest) {
            meta.complete = true;
            let meta = meta.clone();
            self.write_meta(digest, &meta)?;
        }
        Ok(())
    }

    /// The complete blob's file, to read.
    pub fn file(&self, digest: &[u8; 32]) -> Option<PathBuf> {
        self.meta(digest)
            .filter(|m| m.complete)
            .map(|_| self.path(digest, ""))
    }

    /// Deletes blobs posted more than `retention` ago (their files, partial
    /// or whole, and records); returns how many.
    pub fn expire(&self, retention: Duration) -> usize {
        let cutoff = now_secs().saturating_sub(retention.as_secs());
        let mut index = self.index.lock().expect("blob index");
        let old: Vec<[u8; 32]> = index
            .blobs
            .iter()
            .filter(|(_, m)| m.posted_at < cutoff)
            .map(|(d, _)| *d)
            .collect();
        for digest in &old {
            self.remove(&mut index, digest);
        }
        old.len()
    }

    /// Deletes a blob now: its files and record; its octets leave the
    /// quota.
    pub fn delete(&self, digest: &[u8; 32]) {
        let mut index = self.index.lock().expect("blob index");
        self.remove(&mut index, digest);
    }

    fn remove(&self, index: &mut Index, digest: &[u8; 32]) {
        for ext in ["", ".part", ".json"] {
            let _ = std::fs::remove_file(self.path(digest, ext));
        }
        if let Some(meta) = index.blobs.remove(digest) {
            if let Some(used) = index.used.get_mut(&meta.org) {
                *used = used.saturating_sub(meta.size);
            }
        }
    }

    /// Octets an organisation's blobs take.
    pub fn used(&self, org: &OrgId) -> u64 {
        self.index
            .lock()
            .expect("blob index")
            .used
            .get(org)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrgId {
        OrgId::new(s).expect("valid")
    }

    fn user(s: &str) -> UserId {
        UserId::new(s).expect("valid")
    }

    #[test]
    fn a_blob_is_posted_written_in_pieces_checked_and_kept_across_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let blobs = Blobs::open(dir.path(), 1000, 1500).expect("open");
        let content = vec![7u8; 600];
        let digest: [u8; 32] = Sha256::digest(&content).into();
        let g = GroupId([1; 16]);
        assert_eq!(
            blobs
                .post(&user("a@north"), Scope::Group(g), digest, 600)
                .expect("posted"),
            0
        );
        assert_eq!(blobs.write(&digest, 0, &content[..250]).expect("w"), 250);
        // A resumed upload must continue where the relay got to.
        assert!(matches!(
            blobs.write(&digest, 0, &content[..10]),
            Err(UploadError::Offset(250))
        ));
        assert_eq!(
            blobs
                .post(&user("a@north"), Scope::Group(g), digest, 600)
                .expect("again"),
            250
        );
        assert!(matches!(
            blobs.write(&digest, 250, &vec![0; 400]),
            Err(UploadError::TooLong)
        ));
        assert_eq!(blobs.write(&digest, 250, &content[250..]).expect("w"), 600);
        assert!(
            blobs.file(&digest).is_none(),
            "not before its digest is checked"
        );
        blobs.finish(&digest).expect("finished");
        let path = blobs.file(&digest).expect("complete");
        assert_eq!(std::fs::read(path).expect("read"), content);
        // The quota counts it; another 600 would not fit.
        let other: [u8; 32] = Sha256::digest(b"x").into();
        assert!(matches!(
            blobs.post(&user("a@north"), Scope::Group(g), other, 1000),
            Err(DsError::QuotaExceeded { limit: 1500 })
        ));
        assert!(matches!(
            blobs.post(&user("a@north"), Scope::Group(g), other, 1001),
            Err(DsError::TooLarge { limit: 1000 })
        ));
        drop(blobs);
        let again = Blobs::open(dir.path(), 1000, 1500).expect("reopen");
        assert_eq!(again.used(&org("north")), 600);
        assert!(again.file(&digest).is_some());
        assert_eq!(again.offset(&digest), 600);
    }

    #[test]
    fn a_wrong_digest_throws_the_upload_away() {
        let dir = tempfile::tempdir().expect("tmp");
        let blobs = Blobs::open(dir.path(), 1000, 10_000).expect("open");
        let digest = [9u8; 32];
        blobs
            .post(&user("a@north"), Scope::Group(GroupId([1; 16])), digest, 3)
            .expect("posted");
        blobs.write(&digest, 0, b"abc").expect("w");
        assert!(matches!(blobs.finish(&digest), Err(UploadError::Digest)));
        assert_eq!(blobs.offset(&digest), 0);
        assert!(blobs.file(&digest).is_none());
    }

    #[test]
    fn tickets_are_for_one_blob_one_use_and_a_while() {
        let dir = tempfile::tempdir().expect("tmp");
        let blobs = Blobs::open(dir.path(), 1000, 10_000).expect("open");
        let d = DeviceId([3; 16]);
        let t = blobs.ticket(d, [1; 32], Access::Download);
        assert_eq!(blobs.check(&t, &[1; 32], Access::Download), Some(d));
        assert_eq!(blobs.check(&t, &[2; 32], Access::Download), None);
        assert_eq!(blobs.check(&t, &[1; 32], Access::Upload), None);
        assert_eq!(blobs.check(&[0; 32], &[1; 32], Access::Download), None);
    }

    #[test]
    fn old_blobs_expire_and_free_their_quota() {
        let dir = tempfile::tempdir().expect("tmp");
        let blobs = Blobs::open(dir.path(), 1000, 10_000).expect("open");
        let digest: [u8; 32] = Sha256::digest(b"abc").into();
        blobs
            .post(&user("a@north"), Scope::Group(GroupId([1; 16])), digest, 3)
            .expect("posted");
        blobs.write(&digest, 0, b"abc").expect("w");
        blobs.finish(&digest).expect("done");
        assert_eq!(blobs.expire(Duration::from_secs(3600)), 0);
        // Everything posted before now + 1 s is past a retention of -1 s.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(blobs.expire(Duration::from_secs(0)), 1);
        assert_eq!(blobs.used(&org("north")), 0);
        assert!(std::fs::read_dir(dir.path().join("blobs"))
            .expect("dir")
            .next()
            .is_none());
    }
}
