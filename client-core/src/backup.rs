//! Encrypted backups of a device's history (protocol §14.11).
//!
//! A backup is the user's [`HistoryArchive`] sealed under a key derived
//! from a recovery key the user writes down, in a file the user keeps
//! where they choose. Restored on a freshly enrolled device of the same
//! user, it brings the history back; the device joins the conversations
//! with keys of its own.
//!
//! The file:
//!
//! ```text
//! "CASCADE-BACKUP\n" (15 octets) || version (1 octet, 1)
//! || header length (4 octets, big-endian) || header (CBOR, [`Header`])
//! || sealed body
//! ```
//!
//! The key is Argon2id of the recovery key (written form: spaces, dashes
//! and case do not count) with the header's salt and cost; from it
//! HKDF-SHA-256 derives a check value (in the header, so that a wrong key
//! is told apart from a damaged file) and the body's key. The body is the
//! CBOR of [`Body`], sealed like an attachment (STREAM over AES-256-GCM,
//! [`crate::attachments`]); the header's digest and size are the sealed
//! body's. The header is not secret and not trusted: the body repeats the
//! user, and a changed salt, cost or check only makes the key wrong.
//! Messages with a disappearing time are never in a backup.

use std::fmt;

use cascade_protocol::{DeviceId, UserId};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::attachments;
use crate::store::at_rest::{argon2id, KdfCost, KdfParams};
use crate::store::history::HistoryArchive;

/// The first octets of every backup file.
pub const MAGIC: &[u8; 15] = b"CASCADE-BACKUP\n";

/// The file layout this build writes and reads.
pub const VERSION: u8 = 1;

/// The longest header this build reads.
const MAX_HEADER: usize = 64 * 1024;

/// Characters of a recovery key, without its dashes.
const GENERATED_CHARS: usize = 24;

/// The fewest characters a recovery key (of the user's own choosing) has,
/// spaces and dashes aside.
pub const MIN_RECOVERY_CHARS: usize = 12;

/// Why a backup was not written or not restored. Nothing in it is secret.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Not a Cascade backup file.
    #[error("this is not a Cascade backup file")]
    NotABackup,
    /// A backup written by a newer Cascade.
    #[error("this backup was written by a newer Cascade (format {0})")]
    TooNew(u8),
    /// The recovery key is not the one the backup was made with.
    #[error("the recovery key does not open this backup")]
    WrongRecoveryKey,
    /// The file is damaged or was changed since it was written.
    #[error("the backup is damaged or was changed ({0})")]
    Damaged(&'static str),
    /// A backup of another user's history.
    #[error("this is a backup of {0}'s history, not this user's")]
    OtherUser(UserId),
    /// The recovery key is too short to protect anything.
    #[error("a recovery key has at least {MIN_RECOVERY_CHARS} letters and digits")]
    KeyTooShort,
    /// The file could not be read or written.
    #[error("the backup file: {0}")]
    File(String),
}

/// What the user writes down: a generated key of 24 characters in groups
/// of four (120 random bits, RFC 4648 base32), or a passphrase of their
/// own. Spaces, dashes and case do not count.
#[derive(Clone)]
pub struct RecoveryKey(Zeroizing<String>);

impl RecoveryKey {
    /// A fresh random recovery key.
    pub fn generate() -> RecoveryKey {
        let bytes = Zeroizing::new(rand::random::<[u8; 15]>());
        RecoveryKey(Zeroizing::new(
            data_encoding::BASE32_NOPAD.encode(bytes.as_slice()),
        ))
    }

    /// A recovery key as the user typed it.
    pub fn parse(typed: &str) -> Result<RecoveryKey, BackupError> {
        let normal: String = typed
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .flat_map(char::to_uppercase)
            .collect();
        if normal.chars().count() < MIN_RECOVERY_CHARS {
            return Err(BackupError::KeyTooShort);
        }
        Ok(RecoveryKey(Zeroizing::new(normal)))
    }

    /// The form to write down: a generated key in groups of four with
    /// dashes, a passphrase as it was normalised.
    pub fn written(&self) -> Zeroizing<String> {
        if self.0.len() != GENERATED_CHARS {
            return self.0.clone();
        }
        let groups: Vec<&str> = (0..GENERATED_CHARS)
            .step_by(4)
            .map(|i| &self.0[i..i + 4])
            .collect();
        Zeroizing::new(groups.join("-"))
    }
}

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryKey(..)")
    }
}

/// The Argon2id parameters and salt in a header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kdf {
    /// Memory, in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
    /// 16 random octets.
    pub salt: ByteBuf,
}

/// What a backup file says of itself before it is opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Whose history.
    pub user_id: UserId,
    /// When it was made (ms since the Unix epoch).
    pub made_at: u64,
    /// How many conversations it holds.
    pub conversations: u64,
    /// How many messages.
    pub messages: u64,
    /// How the key is derived.
    pub kdf: Kdf,
    /// HKDF of the key with info "cascade backup v1 check", 32 octets.
    pub check: ByteBuf,
    /// SHA-256 of the sealed body.
    pub digest: ByteBuf,
    /// Octets of the sealed body.
    pub size: u64,
}

/// What is sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// Whose history (must be the header's).
    pub user_id: UserId,
    /// The device it was made on.
    pub device_id: DeviceId,
    /// When it was made (must be the header's).
    pub made_at: u64,
    /// The history.
    pub archive: HistoryArchive,
}

/// The check value and body key of a backup.
struct Keys {
    check: [u8; 32],
    body: Zeroizing<[u8; 32]>,
}

fn keys(key: &RecoveryKey, kdf: &Kdf) -> Result<Keys, BackupError> {
    let params = KdfParams {
        m_cost_kib: kdf.m_cost_kib,
        t_cost: kdf.t_cost,
        p_cost: kdf.p_cost,
    };
    if !params.bounded() {
        return Err(BackupError::Damaged("key derivation cost out of bounds"));
    }
    let master = argon2id(key.0.as_bytes(), &kdf.salt, params)
        .ok_or(BackupError::Damaged("key derivation parameters"))?;
    let hk = Hkdf::<Sha256>::new(None, master.as_slice());
    let mut check = [0u8; 32];
    let mut body = Zeroizing::new([0u8; 32]);
    hk.expand(b"cascade backup v1 check", &mut check)
        .expect("32 octets");
    hk.expand(b"cascade backup v1 body", body.as_mut_slice())
        .expect("32 octets");
    Ok(Keys { check, body })
}

/// Seals `body` into a backup file under `key`.
pub fn seal(body: &Body, key: &RecoveryKey, cost: KdfCost) -> Result<Vec<u8>, BackupError> {
    let p = cost.params();
    let kdf = Kdf {
        m_cost_kib: p.m_cost_kib,
        t_cost: p.t_cost,
        p_cost: p.p_cost,
        salt: ByteBuf::from(rand::random::<[u8; 16]>().to_vec()),
    };
    let keys = keys(key, &kdf)?;
    let mut plain = Zeroizing::new(Vec::new());
    ciborium::into_writer(body, &mut *plain).expect("a backup body encodes");
    let mut sealed = Vec::with_capacity(attachments::sealed_size(plain.len() as u64) as usize);
    let s = attachments::seal_with(keys.body, plain.as_slice(), &mut sealed, |_| {})
        .map_err(|e| BackupError::File(e.to_string()))?;
    let header = Header {
        user_id: body.user_id.clone(),
        made_at: body.made_at,
        conversations: body.archive.conversations.len() as u64,
        messages: body.archive.messages() as u64,
        kdf,
        check: ByteBuf::from(keys.check.to_vec()),
        digest: ByteBuf::from(s.digest.to_vec()),
        size: s.size,
    };
    let mut head = Vec::new();
    ciborium::into_writer(&header, &mut head).expect("a backup header encodes");
    let mut file = Vec::with_capacity(MAGIC.len() + 5 + head.len() + sealed.len());
    file.extend_from_slice(MAGIC);
    file.push(VERSION);
    file.extend_from_slice(&(head.len() as u32).to_be_bytes());
    file.extend_from_slice(&head);
    file.extend_from_slice(&sealed);
    Ok(file)
}

/// Reads a backup file's header (no key needed), and where its sealed
/// body starts.
pub fn header(file: &[u8]) -> Result<(Header, usize), BackupError> {
    let rest = file
        .strip_prefix(MAGIC.as_slice())
        .ok_or(BackupError::NotABackup)?;
    let (&version, rest) = rest.split_first().ok_or(BackupError::NotABackup)?;
    if version > VERSION {
        return Err(BackupError::TooNew(version));
    }
    if version != VERSION {
        return Err(BackupError::NotABackup);
    }
    let len: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(BackupError::Damaged("cut short"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEADER {
        return Err(BackupError::Damaged("header too long"));
    }
    let head = rest
        .get(4..4 + len)
        .ok_or(BackupError::Damaged("cut short"))?;
    let header: Header = ciborium::from_reader(head).map_err(|_| BackupError::Damaged("header"))?;
    if header.check.len() != 32 || header.digest.len() != 32 {
        return Err(BackupError::Damaged("header"));
    }
    Ok((header, MAGIC.len() + 1 + 4 + len))
}

/// Opens a backup file with `key`, for `user`: the recovery key is
/// checked first (a wrong one is [`BackupError::WrongRecoveryKey`]), then
/// the whole body is opened and checked before anything of it is returned.
pub fn open(file: &[u8], key: &RecoveryKey, user: &UserId) -> Result<Body, BackupError> {
    let (header, start) = header(file)?;
    let keys = keys(key, &header.kdf)?;
    if !subtle_eq::eq(&keys.check, &header.check) {
        return Err(BackupError::WrongRecoveryKey);
    }
    let sealed = &file[start..];
    if sealed.len() as u64 != header.size {
        return Err(BackupError::Damaged("cut short or lengthened"));
    }
    let digest: [u8; 32] = header.digest.as_slice().try_into().expect("checked");
    let mut plain = Zeroizing::new(Vec::new());
    attachments::open(sealed, &mut *plain, &keys.body, &digest, |_| {}).map_err(|e| match e {
        attachments::OpenError::Digest => BackupError::Damaged("its digest differs"),
        attachments::OpenError::Corrupt => BackupError::Damaged("it does not authenticate"),
        attachments::OpenError::Io(e) => BackupError::File(e.to_string()),
    })?;
    let body: Body =
        ciborium::from_reader(plain.as_slice()).map_err(|_| BackupError::Damaged("contents"))?;
    if body.user_id != header.user_id
        || body.made_at != header.made_at
        || body.archive.conversations.len() as u64 != header.conversations
        || body.archive.messages() as u64 != header.messages
    {
        return Err(BackupError::Damaged("header and contents disagree"));
    }
    if &body.user_id != user {
        return Err(BackupError::OtherUser(body.user_id));
    }
    Ok(body)
}

/// Comparison of the check value in constant time.
mod subtle_eq {
    pub(super) fn eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::ARCHIVE_VERSION;

    fn body(user: &str) -> Body {
        Body {
            user_id: UserId::new(user).expect("user"),
            device_id: DeviceId([7; 16]),
            made_at: 1_700_000_000_000,
            archive: HistoryArchive {
                version: ARCHIVE_VERSION,
                conversations: vec![],
            },
        }
    }

    fn alice() -> UserId {
        UserId::new("alice@north").expect("user")
    }

    #[test]
    fn a_generated_key_is_written_in_groups_and_read_back_in_any_form() {
        let key = RecoveryKey::generate();
        let written = key.written();
        assert_eq!(written.len(), 29, "{}", written.as_str());
        assert_eq!(written.matches('-').count(), 5);
        let typed = written.to_lowercase().replace('-', " ");
        assert_eq!(
            RecoveryKey::parse(&typed).expect("parsed").0,
            key.0,
            "spaces, dashes and case do not count"
        );
        assert!(matches!(
            RecoveryKey::parse("abc-def"),
            Err(BackupError::KeyTooShort)
        ));
    }

    #[test]
    fn a_backup_opens_with_its_key_for_its_user_and_nothing_else() {
        let key = RecoveryKey::generate();
        let file = seal(&body("alice@north"), &key, KdfCost::InsecureForTests).expect("sealed");
        assert_eq!(
            open(&file, &key, &alice()).expect("opened"),
            body("alice@north")
        );

        let other = RecoveryKey::generate();
        assert!(matches!(
            open(&file, &other, &alice()),
            Err(BackupError::WrongRecoveryKey)
        ));
        assert!(matches!(
            open(&file, &key, &UserId::new("bob@north").expect("user")),
            Err(BackupError::OtherUser(u)) if u == alice()
        ));
        assert!(matches!(
            open(b"PK\x03\x04 a zip file", &key, &alice()),
            Err(BackupError::NotABackup)
        ));
    }

    #[test]
    fn every_changed_octet_of_a_backup_is_refused() {
        let key = RecoveryKey::generate();
        let file = seal(&body("alice@north"), &key, KdfCost::InsecureForTests).expect("sealed");
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(
                open(&bad, &key, &alice()).is_err(),
                "octet {i} of {} changed and still opened",
                file.len()
            );
        }
        assert!(open(&file[..file.len() - 1], &key, &alice()).is_err());
        let mut longer = file.clone();
        longer.push(0);
        assert!(open(&longer, &key, &alice()).is_err());
    }

    #[test]
    fn a_header_asking_for_unbounded_work_is_refused_before_any() {
        let key = RecoveryKey::generate();
        let file = seal(&body("alice@north"), &key, KdfCost::InsecureForTests).expect("sealed");
        let (mut header, start) = header(&file).expect("header");
        header.kdf.m_cost_kib = u32::MAX;
        let mut head = Vec::new();
        ciborium::into_writer(&header, &mut head).expect("encodes");
        let mut bad = MAGIC.to_vec();
        bad.push(VERSION);
        bad.extend_from_slice(&(head.len() as u32).to_be_bytes());
        bad.extend_from_slice(&head);
        bad.extend_from_slice(&file[start..]);
        assert!(matches!(
            open(&bad, &key, &alice()),
            Err(BackupError::Damaged("key derivation cost out of bounds"))
        ));
    }
}
