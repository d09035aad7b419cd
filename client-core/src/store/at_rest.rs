//! The device's store is encrypted at rest: SQLCipher, keyed with a raw
//! 256-bit key.
//!
//! The key comes from the platform keystore or the mobile app
//! ([`StoreKey::Key`]), or from a passphrase the person types
//! ([`StoreKey::Passphrase`]): Argon2id over the passphrase and a random
//! salt. The salt and the KDF's parameters (never the key) are kept beside
//! the database in [`KEY_FILE`], so the same passphrase gives the same key
//! on every open. SQLCipher gets the key itself (`x'…'`), so it does no
//! second, weaker KDF of its own; it encrypts every page of the database and
//! of its WAL and journal, and authenticates each page with an HMAC, which
//! is also how a wrong key is told apart ([`CoreError::WrongKey`]).
//!
//! A database written before encryption (plain SQLite) is encrypted on its
//! first open with a key ([`encrypt_plaintext`]): exported into a new file,
//! synced, renamed over the old one, and the old one overwritten. A crash at
//! any point leaves either the complete plaintext database (the next open
//! starts again) or the complete encrypted one (the next open finishes the
//! clean-up), never neither.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{CoreError, InvalidInput, Result};

/// File name of the passphrase KDF's parameters, beside the database.
pub const KEY_FILE: &str = "store-key.json";

/// The shortest new passphrase accepted, in characters.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// The first 16 bytes of every plain SQLite database file. An encrypted
/// one starts with a random salt instead.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// What unlocks the device's store.
pub enum StoreKey {
    /// A random 256-bit key held by the platform keystore (the desktop's
    /// Secret Service or Keychain, Android Keystore, iOS Keychain). Used as
    /// it is.
    Key(Zeroizing<[u8; 32]>),
    /// A passphrase the person chose; the key is derived from it with
    /// Argon2id ([`KdfCost`] only matters when the store is created).
    Passphrase {
        /// The passphrase as typed.
        passphrase: Zeroizing<String>,
        /// How expensive the derivation is made for a new store.
        cost: KdfCost,
    },
}

impl StoreKey {
    /// A key from the platform keystore.
    pub fn key(bytes: [u8; 32]) -> StoreKey {
        StoreKey::Key(Zeroizing::new(bytes))
    }

    /// A key from the platform keystore as the bytes it gave, copied
    /// straight into zeroized memory; `None` unless they are 32.
    pub fn key_from_slice(bytes: &[u8]) -> Option<StoreKey> {
        let mut key = Zeroizing::new([0u8; 32]);
        (bytes.len() == key.len()).then(|| {
            key.copy_from_slice(bytes);
            StoreKey::Key(key)
        })
    }

    /// A passphrase, with the standard cost ([`KdfCost::Standard`]).
    pub fn passphrase(passphrase: impl Into<String>) -> StoreKey {
        Self::passphrase_with(passphrase, KdfCost::Standard)
    }

    /// A passphrase whose derivation costs `cost` when it is set.
    pub fn passphrase_with(passphrase: impl Into<String>, cost: KdfCost) -> StoreKey {
        StoreKey::Passphrase {
            passphrase: Zeroizing::new(passphrase.into()),
            cost,
        }
    }
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKey::Key(_) => f.write_str("StoreKey::Key(..)"),
            StoreKey::Passphrase { cost, .. } => write!(f, "StoreKey::Passphrase({cost:?}, ..)"),
        }
    }
}

/// The Argon2id cost a new passphrase-protected store gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfCost {
    /// 64 MiB, 3 passes, 1 lane: RFC 9106's second recommended option,
    /// above OWASP's minimum (19 MiB, 2 passes). About a second on a
    /// laptop; an attacker with the device pays that per guess.
    Standard,
    /// 8 KiB, 1 pass: no protection against guessing. Only for test suites
    /// that create hundreds of devices (`CASCADE_INSECURE_TEST_KDF=1` in
    /// the command line); a store made with it says so in its key file.
    InsecureForTests,
}

impl KdfCost {
    pub(crate) fn params(self) -> KdfParams {
        match self {
            KdfCost::Standard => KdfParams {
                m_cost_kib: 64 * 1024,
                t_cost: 3,
                p_cost: 1,
            },
            KdfCost::InsecureForTests => KdfParams {
                m_cost_kib: 8,
                t_cost: 1,
                p_cost: 1,
            },
        }
    }
}

/// Argon2id's cost parameters (RFC 9106 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KdfParams {
    /// Memory, in KiB.
    pub(crate) m_cost_kib: u32,
    /// Passes.
    pub(crate) t_cost: u32,
    /// Lanes.
    pub(crate) p_cost: u32,
}

impl KdfParams {
    /// Whether these are parameters this build will spend time and memory
    /// on: at most [`KdfCost::Standard`]'s memory four times over and ten
    /// passes (a file that asks for more is refused, not obeyed).
    pub(crate) fn bounded(&self) -> bool {
        self.m_cost_kib <= 4 * 64 * 1024 && self.t_cost <= 10 && (1..=4).contains(&self.p_cost)
    }
}

/// Argon2id (version 0x13) of `secret` and `salt` with `params`, 32
/// octets; `None` if the parameters are not Argon2id's.
pub(crate) fn argon2id(
    secret: &[u8],
    salt: &[u8],
    params: KdfParams,
) -> Option<Zeroizing<[u8; 32]>> {
    let p = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32)).ok()?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(secret, salt, key.as_mut_slice())
        .ok()?;
    Some(key)
}

/// [`KEY_FILE`]: how the key of a passphrase-protected store is derived.
/// Never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeyFile {
    /// Format version, 1.
    version: u32,
    /// Always `argon2id` (version 0x13).
    kdf: String,
    #[serde(flatten)]
    params: KdfParams,
    /// 16 random bytes, hex.
    salt: String,
}

const KEY_FILE_VERSION: u32 = 1;
const KDF_ARGON2ID: &str = "argon2id";

/// The raw key SQLCipher is given.
pub(crate) struct DbKey(Zeroizing<[u8; 32]>);

impl DbKey {
    /// SHA-256 of the raw key.
    fn digest(&self) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(self.0.as_slice()).into()
    }

    /// `x'<64 hex digits>'`: SQLCipher's raw-key form.
    fn sqlcipher_literal(&self) -> Zeroizing<String> {
        // Written into a buffer of the final size, so that no reallocation
        // leaves a copy of the key behind.
        let mut literal = Zeroizing::new(String::with_capacity(67));
        literal.push_str("x'");
        let hex = Zeroizing::new(hex::encode(self.0.as_slice()));
        literal.push_str(&hex);
        literal.push('\'');
        literal
    }
}

/// What is at a database path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbState {
    /// Nothing yet (or an empty file): a new store.
    New,
    /// A plain SQLite database, from before encryption.
    Plaintext,
    /// Anything else: an encrypted database.
    Encrypted,
}

/// Looks at the first bytes of the database file.
pub(crate) fn db_state(path: &Path) -> Result<DbState> {
    use std::io::Read as _;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DbState::New),
        Err(e) => return Err(CoreError::DataDir(e)),
    };
    let mut head = Vec::with_capacity(16);
    (&mut file)
        .take(16)
        .read_to_end(&mut head)
        .map_err(CoreError::DataDir)?;
    Ok(match head.as_slice() {
        [] => DbState::New,
        h if h == SQLITE_HEADER => DbState::Plaintext,
        _ => DbState::Encrypted,
    })
}

/// What protects a device's store, as far as can be told without its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// There is no store yet: nothing was enrolled here. The key given
    /// at enrolment will be the store's.
    Missing,
    /// A store from before encryption at rest: the next open encrypts it,
    /// and the key given then (a new passphrase, say) is its key from then
    /// on.
    Unencrypted,
    /// Encrypted with a key derived from a passphrase ([`KEY_FILE`] holds
    /// the derivation's salt and cost).
    Passphrase,
    /// Encrypted with a raw key, which a platform keystore holds.
    Key,
}

impl Protection {
    /// Whether the key given at the next open becomes the store's: a front
    /// end asks for a new passphrase twice.
    pub fn takes_a_new_key(self) -> bool {
        matches!(self, Protection::Missing | Protection::Unencrypted)
    }
}

/// What protects the store at `db`.
pub fn protection(db: &Path) -> Result<Protection> {
    Ok(match db_state(db)? {
        DbState::New => Protection::Missing,
        DbState::Plaintext => Protection::Unencrypted,
        DbState::Encrypted if key_file_path(db).exists() => Protection::Passphrase,
        DbState::Encrypted => Protection::Key,
    })
}

fn key_file_path(db: &Path) -> PathBuf {
    db.with_file_name(KEY_FILE)
}

/// The raw key for the database at `db`. For a passphrase, reads the key
/// file of an encrypted store, or writes a new one (new salt) when there is
/// no encrypted store yet: a key file left by a crash before the first
/// encrypted write belongs to nothing. An encrypted store with no key file
/// was keyed by a keystore, not a passphrase: `WrongKey`, and nothing is
/// written.
pub(crate) fn db_key(db: &Path, key: &StoreKey, state: DbState) -> Result<DbKey> {
    let (passphrase, cost) = match key {
        StoreKey::Key(k) => return Ok(DbKey(k.clone())),
        StoreKey::Passphrase { passphrase, cost } => (passphrase, *cost),
    };
    let path = key_file_path(db);
    let file = if state == DbState::Encrypted {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CoreError::WrongKey),
            Err(e) => return Err(CoreError::DataDir(e)),
        };
        let file: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|_| CoreError::Decode("the store's key file"))?;
        if file.version != KEY_FILE_VERSION || file.kdf != KDF_ARGON2ID {
            return Err(CoreError::Decode("the store's key file"));
        }
        file
    } else {
        if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(InvalidInput::PassphraseTooShort {
                min: MIN_PASSPHRASE_CHARS,
            }
            .into());
        }
        let file = KeyFile {
            version: KEY_FILE_VERSION,
            kdf: KDF_ARGON2ID.into(),
            params: cost.params(),
            salt: hex::encode(rand::random::<[u8; 16]>()),
        };
        if cost == KdfCost::InsecureForTests {
            tracing::warn!("this store's passphrase is protected by test-only KDF parameters");
        }
        let json = serde_json::to_vec_pretty(&file).expect("a key file serialises");
        write_atomically(&path, &json).map_err(CoreError::DataDir)?;
        file
    };
    derive(passphrase.as_bytes(), &file)
}

fn derive(passphrase: &[u8], file: &KeyFile) -> Result<DbKey> {
    let salt = hex::decode(&file.salt).map_err(|_| CoreError::Decode("the store's key file"))?;
    argon2id(passphrase, &salt, file.params)
        .map(DbKey)
        .ok_or(CoreError::Decode("the store's key file"))
}

/// Writes `bytes` to a new file beside `path`, syncs it, renames it over
/// `path` and syncs the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = sibling(path, ".tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// The encrypted copy being written during [`encrypt_plaintext`].
fn encrypting_path(db: &Path) -> PathBuf {
    sibling(db, ".encrypting")
}

/// A second name of the plaintext database, kept until the encrypted one
/// has replaced it, then overwritten.
fn plaintext_path(db: &Path) -> PathBuf {
    sibling(db, ".plaintext")
}

/// Opens the encrypted store at `db` with `key`, encrypting a plaintext one
/// first. Checks the key before anything is written: a wrong one is
/// `WrongKey` and leaves every file as it was.
/// Also returns the SHA-256 of the raw key, for the app lock
/// ([`crate::lock`]) to check an unlock against without keeping the key.
pub(crate) fn open(db: &Path, key: &StoreKey) -> Result<(Connection, [u8; 32])> {
    finish_interrupted(db)?;
    let state = db_state(db)?;
    let key = db_key(db, key, state)?;
    if state == DbState::Plaintext {
        encrypt_plaintext(db, &key)?;
    }
    let conn = Connection::open(db)?;
    apply_key(&conn, &key)?;
    Ok((conn, key.digest()))
}

/// The SHA-256 of the raw key `key` gives for the encrypted store at `db`
/// (the passphrase derived with the store's own salt and cost), without
/// opening it: what an unlock is checked with. Writes nothing.
pub(crate) fn key_digest(db: &Path, key: &StoreKey) -> Result<[u8; 32]> {
    Ok(db_key(db, key, DbState::Encrypted)?.digest())
}

/// The raw key `new` gives the encrypted store at `db`, for
/// [`rekey`]: a passphrase is derived with the store's own salt and cost
/// (the key file stays as it is, so a crash can never leave it describing
/// a key the database does not have); a keystore's key is used as it is.
/// A passphrase for a keystore-keyed store, or a keystore's key for a
/// passphrase-protected one, is [`InvalidInput::KeyKindChange`]: a change
/// keeps the kind of protection.
pub(crate) fn new_key(db: &Path, new: &StoreKey) -> Result<DbKey> {
    let kind_change = InvalidInput::KeyKindChange;
    match (new, protection(db)?) {
        (StoreKey::Passphrase { passphrase, .. }, Protection::Passphrase) => {
            if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
                return Err(InvalidInput::PassphraseTooShort {
                    min: MIN_PASSPHRASE_CHARS,
                }
                .into());
            }
            db_key(db, new, DbState::Encrypted)
        }
        (StoreKey::Key(k), Protection::Key) => Ok(DbKey(k.clone())),
        (_, Protection::Passphrase | Protection::Key) => Err(kind_change.into()),
        (_, Protection::Missing | Protection::Unencrypted) => Err(CoreError::NotEnrolled),
    }
}

/// Re-encrypts every page of the open store with `key` (SQLCipher's
/// `PRAGMA rekey`, one transaction: a crash leaves the store under either
/// the old key or the new one, never a mix). The WAL is checkpointed and
/// the store is in rollback-journal mode for the rekey: rekeying in WAL
/// mode is listed as new in SQLCipher 5's release notes, and the bundled
/// SQLCipher is 4, so its crash behaviour there is not something to rely
/// on. WAL mode is restored after. The caller holds the only connection
/// (the data directory's lock).
pub(crate) fn rekey(conn: &Connection, key: &DbKey) -> Result<[u8; 32]> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        // Another connection holds the WAL open: nothing was changed.
        return Err(CoreError::Storage(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some(format!(
                "the store stayed in {mode} mode; its key was not changed"
            )),
        )));
    }
    let literal = key.sqlcipher_literal();
    let mut sql = Zeroizing::new(String::with_capacity(literal.len() + 18));
    sql.push_str("PRAGMA rekey = \"");
    sql.push_str(&literal);
    sql.push('"');
    let rekeyed = conn.execute_batch(&sql);
    // WAL again whatever happened: the engine relies on it.
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    rekeyed?;
    // The pages are read back through the new key.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(key.digest())
}

/// Gives SQLCipher the key (the first statement on the connection) and
/// checks it by reading the schema.
fn apply_key(conn: &Connection, key: &DbKey) -> Result<()> {
    // Our own statement text, so that the copy holding the key is zeroized
    // (rusqlite's pragma builder would keep one of its own).
    let literal = key.sqlcipher_literal();
    let mut sql = Zeroizing::new(String::with_capacity(literal.len() + 16));
    sql.push_str("PRAGMA key = \"");
    sql.push_str(&literal);
    sql.push('"');
    conn.execute_batch(&sql)?;
    // SQLCipher writes its own warnings to stderr ("hmac check failed" for
    // a wrong key); the typed error says it instead. Set after the key:
    // keying is what starts SQLCipher, which sets its default level then.
    conn.pragma_update(None, "cipher_log_level", "NONE")?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            Err(CoreError::WrongKey)
        }
        Err(e) => Err(e.into()),
    }
}

/// Finishes what a crash in [`encrypt_plaintext`] left: a partial
/// encrypted copy (and its journal) is removed; the plaintext's second name is removed if the
/// plaintext is still the database (the encryption will run again), and
/// overwritten if the encrypted database already replaced it.
fn finish_interrupted(db: &Path) -> Result<()> {
    let partial = encrypting_path(db);
    for leftover in [sibling(&partial, "-journal"), partial] {
        if leftover.exists() {
            std::fs::remove_file(&leftover).map_err(CoreError::DataDir)?;
        }
    }
    let old = plaintext_path(db);
    if old.exists() {
        if db_state(db)? == DbState::Plaintext {
            std::fs::remove_file(&old).map_err(CoreError::DataDir)?;
        } else {
            overwrite_and_remove(&old).map_err(CoreError::DataDir)?;
        }
        sync_dir(db).map_err(CoreError::DataDir)?;
    }
    Ok(())
}

/// Encrypts the plaintext database at `db` in place (see the module's
/// comment for why each step is where it is).
pub(crate) fn encrypt_plaintext(db: &Path, key: &DbKey) -> Result<()> {
    let version: u32 = {
        let plain = Connection::open(db)?;
        // Everything into the main file, so that the plaintext WAL is empty
        // and can go (it must never be applied to the encrypted file).
        plain.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        plain.pragma_query_value(None, "user_version", |r| r.get(0))?
    };
    let copy = encrypting_path(db);
    {
        let encrypted = Connection::open(&copy)?;
        apply_key(&encrypted, key)?;
        let plain_name = db
            .to_str()
            .ok_or(CoreError::Decode("the data directory's path"))?;
        encrypted.execute("ATTACH DATABASE ?1 AS plaintext KEY ''", [plain_name])?;
        encrypted.query_row("SELECT sqlcipher_export('main', 'plaintext')", [], |_| {
            Ok(())
        })?;
        encrypted.execute("DETACH DATABASE plaintext", [])?;
        encrypted.pragma_update(None, "user_version", version)?;
    }
    std::fs::File::open(&copy)
        .and_then(|f| f.sync_all())
        .map_err(CoreError::DataDir)?;
    for suffix in ["-wal", "-shm"] {
        match std::fs::remove_file(sibling(db, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CoreError::DataDir(e)),
        }
    }
    sync_dir(db).map_err(CoreError::DataDir)?;
    let old = plaintext_path(db);
    std::fs::hard_link(db, &old).map_err(CoreError::DataDir)?;
    std::fs::rename(&copy, db).map_err(CoreError::DataDir)?;
    sync_dir(db).map_err(CoreError::DataDir)?;
    overwrite_and_remove(&old).map_err(CoreError::DataDir)?;
    sync_dir(db).map_err(CoreError::DataDir)
}

/// Overwrites a file with zeros, syncs it and removes it.
fn overwrite_and_remove(path: &Path) -> std::io::Result<()> {
    let len = std::fs::metadata(path)?.len();
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    let zeros = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    drop(file);
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weak(p: &str) -> StoreKey {
        StoreKey::passphrase_with(p, KdfCost::InsecureForTests)
    }

    /// The key file's format and the derivation are pinned: a change to
    /// either would lock every passphrase-protected device out.
    #[test]
    fn golden_key_file_and_derivation() {
        let file = KeyFile {
            version: 1,
            kdf: "argon2id".into(),
            params: KdfParams {
                m_cost_kib: 8,
                t_cost: 1,
                p_cost: 1,
            },
            salt: "000102030405060708090a0b0c0d0e0f".into(),
        };
        assert_eq!(
            serde_json::to_string(&file).expect("json"),
            r#"{"version":1,"kdf":"argon2id","m_cost_kib":8,"t_cost":1,"p_cost":1,"salt":"000102030405060708090a0b0c0d0e0f"}"#
        );
        let key = derive(b"correct horse battery", &file).expect("derives");
        assert_eq!(
            hex::encode(key.0.as_slice()),
            "0dfe509cfb319e6f63967799aad3c4d9ce06d7e9abef9f74dcc45d30eda9d60c",
            "Argon2id(passphrase, salt) changed"
        );
        assert_eq!(
            KdfCost::Standard.params(),
            KdfParams {
                m_cost_kib: 65536,
                t_cost: 3,
                p_cost: 1
            }
        );
    }

    /// How long the standard derivation takes here (`--ignored`).
    #[test]
    #[ignore = "a measurement"]
    fn standard_cost_takes() {
        let file = KeyFile {
            version: 1,
            kdf: "argon2id".into(),
            params: KdfCost::Standard.params(),
            salt: "000102030405060708090a0b0c0d0e0f".into(),
        };
        let start = std::time::Instant::now();
        derive(b"correct horse battery", &file).expect("derives");
        eprintln!("standard Argon2id: {:?}", start.elapsed());
    }

    #[test]
    fn a_new_passphrase_must_be_long_enough_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = dir.path().join("cascade.db");
        assert!(matches!(
            open(&db, &weak("short")),
            Err(CoreError::Invalid(InvalidInput::PassphraseTooShort { .. }))
        ));
        assert!(!key_file_path(&db).exists());
    }

    /// A plain SQLite database like one from before encryption, in WAL
    /// mode, with `text` in a table; its WAL still holds the last write
    /// (copied while the writer had it open, as after a crash).
    fn plaintext_db(dir: &Path, text: &str) -> PathBuf {
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(&scratch).expect("mkdir");
        let live = scratch.join("cascade.db");
        let conn = Connection::open(&live).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute_batch("CREATE TABLE t(x TEXT); PRAGMA user_version = 2;")
            .expect("schema");
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
        conn.execute("INSERT INTO t VALUES (?1)", [text])
            .expect("insert");
        let db = dir.join("cascade.db");
        for suffix in ["", "-wal"] {
            std::fs::copy(sibling(&live, suffix), sibling(&db, suffix)).expect("copy");
        }
        drop(conn);
        std::fs::remove_dir_all(&scratch).expect("rm");
        db
    }

    fn holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                std::fs::read(p)
                    .expect("read")
                    .windows(needle.len())
                    .any(|w| w == needle)
            })
            .collect();
        found.sort();
        found
    }

    fn read_text(db: &Path, key: &StoreKey) -> (String, u32) {
        let (conn, _) = open(db, key).expect("opens");
        let text = conn
            .query_row("SELECT x FROM t", [], |r| r.get(0))
            .expect("row");
        let version = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        (text, version)
    }

    #[test]
    fn a_plaintext_database_and_its_wal_are_encrypted_with_a_passphrase() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = plaintext_db(dir.path(), "Bed 4 allergy note");
        assert_eq!(db_state(&db).expect("state"), DbState::Plaintext);
        assert_eq!(
            holding(dir.path(), b"Bed 4 allergy note"),
            [sibling(&db, "-wal")],
            "the scan finds plaintext"
        );
        let key = weak("correct horse battery");
        assert_eq!(read_text(&db, &key), ("Bed 4 allergy note".to_owned(), 2));
        assert_eq!(db_state(&db).expect("state"), DbState::Encrypted);
        assert!(holding(dir.path(), b"Bed 4 allergy note").is_empty());
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["cascade.db", KEY_FILE],
            "no copy, WAL or journal left"
        );
        assert!(matches!(
            open(&db, &weak("correct horse battery staple")),
            Err(CoreError::WrongKey)
        ));
        let file: KeyFile =
            serde_json::from_slice(&std::fs::read(key_file_path(&db)).expect("read"))
                .expect("json");
        assert_eq!(file.params, KdfCost::InsecureForTests.params());
        assert_eq!(file.salt.len(), 32);
    }

    /// A crash after the plaintext got its second name but before the
    /// encrypted copy replaced it: the plaintext is still the database; the
    /// next open drops the second name (never overwriting the live data)
    /// and encrypts again.
    #[test]
    fn an_encryption_interrupted_before_the_rename_starts_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = plaintext_db(dir.path(), "Bed 4 allergy note");
        std::fs::write(encrypting_path(&db), b"half an encrypted copy").expect("partial");
        std::fs::write(sibling(&encrypting_path(&db), "-journal"), b"its journal")
            .expect("journal");
        std::fs::hard_link(&db, plaintext_path(&db)).expect("link");
        let key = StoreKey::key([3; 32]);
        assert_eq!(read_text(&db, &key).0, "Bed 4 allergy note");
        assert!(!encrypting_path(&db).exists());
        assert!(!sibling(&encrypting_path(&db), "-journal").exists());
        assert!(!plaintext_path(&db).exists());
        assert!(holding(dir.path(), b"Bed 4 allergy note").is_empty());
    }

    /// A crash after the rename, before the old plaintext was overwritten:
    /// the next open overwrites it.
    #[test]
    fn an_encryption_interrupted_after_the_rename_finishes_its_clean_up() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = plaintext_db(dir.path(), "Bed 4 allergy note");
        let key = StoreKey::key([3; 32]);
        drop(open(&db, &key).expect("encrypts"));
        std::fs::write(plaintext_path(&db), b"Bed 4 allergy note, the old file").expect("left");
        assert_eq!(read_text(&db, &key).0, "Bed 4 allergy note");
        assert!(!plaintext_path(&db).exists());
        assert!(holding(dir.path(), b"Bed 4 allergy note").is_empty());
    }

    /// A key file left by a crash before the store's first encrypted
    /// write belongs to no store: the next passphrase is a new one, with a
    /// new salt, and it is that passphrase that opens the store after.
    #[test]
    fn a_key_file_without_an_encrypted_store_is_replaced() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = plaintext_db(dir.path(), "Bed 4 allergy note");
        let stale = KeyFile {
            version: 1,
            kdf: "argon2id".into(),
            params: KdfCost::InsecureForTests.params(),
            salt: "000102030405060708090a0b0c0d0e0f".into(),
        };
        std::fs::write(
            key_file_path(&db),
            serde_json::to_vec(&stale).expect("json"),
        )
        .expect("write");
        assert_eq!(protection(&db).expect("state"), Protection::Unencrypted);
        assert_eq!(
            read_text(&db, &weak("the one typed now")).0,
            "Bed 4 allergy note"
        );
        assert_eq!(protection(&db).expect("state"), Protection::Passphrase);
        let file: KeyFile =
            serde_json::from_slice(&std::fs::read(key_file_path(&db)).expect("read"))
                .expect("json");
        assert_ne!(file.salt, stale.salt, "a new salt");
        assert_eq!(
            read_text(&db, &weak("the one typed now")).0,
            "Bed 4 allergy note"
        );
    }

    /// An encrypted store with no key file was keyed by a keystore: a
    /// passphrase is the wrong key, and no key file is written.
    #[test]
    fn a_passphrase_for_a_keystore_store_is_wrong_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = dir.path().join("cascade.db");
        drop(open(&db, &StoreKey::key([3; 32])).expect("creates"));
        let (conn, _) = open(&db, &StoreKey::key([3; 32])).expect("opens");
        conn.execute_batch("CREATE TABLE t(x TEXT)").expect("write");
        drop(conn);
        assert!(matches!(
            open(&db, &weak("correct horse battery")),
            Err(CoreError::WrongKey)
        ));
        assert!(!key_file_path(&db).exists());
    }

    /// A changed passphrase: every page, including those still in the WAL,
    /// is under the new key; the old passphrase no longer opens the store;
    /// the key file is unchanged (same salt and cost); the store is in WAL
    /// mode again and takes writes.
    #[test]
    fn a_changed_passphrase_re_encrypts_every_page_and_the_old_one_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = dir.path().join("cascade.db");
        let old = weak("correct horse battery");
        let (conn, old_digest) = open(&db, &old).expect("creates");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute_batch("CREATE TABLE t(x TEXT)")
            .expect("schema");
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
        conn.execute("INSERT INTO t VALUES ('Bed 4 allergy note')", [])
            .expect("insert into the WAL");
        let key_file = std::fs::read(key_file_path(&db)).expect("key file");

        let new = weak("a new passphrase for the ward");
        let key = new_key(&db, &new).expect("same kind");
        let digest = rekey(&conn, &key).expect("rekeys");
        assert_ne!(digest, old_digest);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        conn.execute("INSERT INTO t VALUES ('Bed 5 discharge plan')", [])
            .expect("a write after the change");
        drop(conn);

        assert_eq!(
            std::fs::read(key_file_path(&db)).expect("key file"),
            key_file
        );
        assert!(matches!(open(&db, &old), Err(CoreError::WrongKey)));
        let (conn, reopened) = open(&db, &new).expect("the new passphrase opens it");
        assert_eq!(reopened, digest);
        let rows: Vec<String> = conn
            .prepare("SELECT x FROM t ORDER BY rowid")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<std::result::Result<_, _>>()
            .expect("rows");
        assert_eq!(rows, ["Bed 4 allergy note", "Bed 5 discharge plan"]);
        drop(conn);
        for text in [&b"Bed 4 allergy note"[..], b"Bed 5 discharge plan"] {
            assert!(holding(dir.path(), text).is_empty());
        }
    }

    /// A change keeps the kind of protection, a new passphrase is long
    /// enough, and a refused change writes nothing.
    #[test]
    fn a_key_change_keeps_its_kind_and_a_refused_one_writes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let by_phrase = dir.path().join("phrase").join("cascade.db");
        let by_key = dir.path().join("key").join("cascade.db");
        for db in [&by_phrase, &by_key] {
            std::fs::create_dir_all(db.parent().expect("dir")).expect("mkdir");
        }
        for (db, key) in [
            (&by_phrase, weak("correct horse battery")),
            (&by_key, StoreKey::key([3; 32])),
        ] {
            let (conn, _) = open(db, &key).expect("creates");
            conn.execute_batch("CREATE TABLE t(x TEXT)").expect("write");
        }
        let before = std::fs::read(&by_phrase).expect("db");

        assert!(matches!(
            new_key(&by_phrase, &StoreKey::key([4; 32])),
            Err(CoreError::Invalid(InvalidInput::KeyKindChange))
        ));
        assert!(matches!(
            new_key(&by_key, &weak("correct horse battery")),
            Err(CoreError::Invalid(InvalidInput::KeyKindChange))
        ));
        assert!(matches!(
            new_key(&by_phrase, &weak("short")),
            Err(CoreError::Invalid(InvalidInput::PassphraseTooShort { .. }))
        ));
        assert!(matches!(
            new_key(&dir.path().join("none.db"), &weak("correct horse battery")),
            Err(CoreError::NotEnrolled)
        ));
        assert_eq!(std::fs::read(&by_phrase).expect("db"), before);
        assert!(!key_file_path(&by_key).exists());

        let (conn, _) = open(&by_key, &StoreKey::key([3; 32])).expect("opens");
        let key = new_key(&by_key, &StoreKey::key([4; 32])).expect("a key for a key");
        rekey(&conn, &key).expect("rekeys");
        drop(conn);
        assert!(matches!(
            open(&by_key, &StoreKey::key([3; 32])),
            Err(CoreError::WrongKey)
        ));
        drop(open(&by_key, &StoreKey::key([4; 32])).expect("the new key opens it"));
    }
}
