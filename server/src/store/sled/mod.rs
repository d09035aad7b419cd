//! The embedded default backend: sled 0.34, one database in one directory.
//!
//! Layout (one sled tree each; records are CBOR, counters 8-byte big-endian):
//!
//! | tree           | key                              | value                      |
//! |----------------|----------------------------------|----------------------------|
//! | `meta`         | `admin_token_sha256`             | 32 bytes                   |
//! | `orgs`         | org id                           | [`Org`]                    |
//! | `users`        | org id, 0, user id               | [`User`]                   |
//! | `devices`      | device id                        | [`Device`]                 |
//! | `user_devices` | user id, 0, device id            | empty                      |
//! | `tokens`       | SHA-256 of the token             | [`EnrolmentTokenRecord`]   |
//! | `kp`           | device id, index                 | KeyPackage bytes           |
//! | `kp_meta`      | device id                        | next claim, next upload    |
//! | `kp_last`      | device id                        | last-resort KeyPackage     |
//! | `groups`       | group id                         | `GroupRecord`              |
//! | `group_seq`    | group id                         | next sequence number       |
//! | `group_info`   | group id                         | `GroupInfoRecord`          |
//! | `log`          | group id, position               | `LogEntry`                 |
//! | `log_pos`      | position                         | group id, seq              |
//! | `members`      | group id, device id              | `Membership`               |
//! | `device_groups`| device id, group id              | empty                      |
//! | `log_gc`       | group id                         | floor seq, collected at seq |
//! | `queue`        | device id, queue id              | `QueueEntry` (earlier layout) |
//! | `queue_len`    | device id                        | item count (earlier layout) |
//! | `payloads`     | group id, seq, kind tag          | `PayloadRecord` (earlier layout) |
//! | `trust_lists`  | org id                           | [`TrustList`]              |
//! | `revocations`  | org id                           | [`TrustList`] (revocation list) |
//! | `admin_rosters`| org id                           | [`TrustList`] (admin roster) |
//! | `admin_nonces` | until, nonce (16), org id        | empty                      |
//!
//! A group's commits, Welcomes and messages are stored once, in its log, and
//! every member device reads it with a cursor ([`log`] explains the rules);
//! `meta`'s `layout` key records that the database has the logs (the
//! per-device queues of earlier versions are served until drained).
//! Multi-key invariants are only written inside sled transactions.

use std::path::Path;

use ::sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use ::sled::{IVec, Transactional, Tree};
use cascade_protocol::frames::{Bytes, ItemKind, QueueItem};
use cascade_protocol::limits::MAX_QUEUE_LEN;

mod durable;
mod key_packages;
mod log;
#[cfg(test)]
use self::key_packages::kp_meta_bytes;
use self::log::{
    append_tx, collected_tx, device_group_key, member_key, membership_tx, LogEntry, Membership,
    COMMIT_HEADROOM,
};
use cascade_protocol::{DeviceId, GroupId, OrgId, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    ApplicationWrite, ClaimedKeyPackage, CommitWrite, Delivery, Device, EnrolmentTokenRecord,
    Group, KeyPackageStock, NewDevice, Org, Sequenced, Store, StoreError, TrustList, User, Wipe,
    WipeConfirmed,
};

const ADMIN_TOKEN_KEY: &[u8] = b"admin_token_sha256";

/// A group's sequencing state (the sequence counter and GroupInfo live in
/// their own trees so that an application message rewrites 8 bytes only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GroupRecord {
    group_id: GroupId,
    epoch: u64,
    roster: Vec<DeviceId>,
    /// The epoch of the latest commit that brought devices in: every member
    /// can read messages from this epoch on. Absent (0) in records written
    /// before it existed, and while no device was ever added.
    #[serde(default, skip_serializing_if = "is_zero")]
    readable_from: u64,
    /// Roster devices whose delivery is stopped (`Store::stop_delivery`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stopped: Vec<DeviceId>,
    /// Roster devices that asked to leave and are not removed yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    leaving: Vec<DeviceId>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The latest GroupInfo with the epoch it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GroupInfoRecord {
    epoch: u64,
    group_info: Bytes,
}

/// One queue item; the payload is in `payloads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct QueueEntry {
    group_id: GroupId,
    seq: u64,
    sender: DeviceId,
    kind: ItemKind,
}

/// A payload shared by `refs` queue entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PayloadRecord {
    refs: u32,
    payload: Bytes,
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => e.into(),
        }
    }
}

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("serialising to a Vec cannot fail");
    out
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    ciborium::from_reader(bytes).map_err(|_| StoreError::Corrupt(format!("{what} record")))
}

fn decode_tx<T: DeserializeOwned>(bytes: &[u8], what: &str) -> TxResult<T> {
    decode(bytes, what).map_err(ConflictableTransactionError::Abort)
}

fn counter(value: Option<IVec>) -> Result<u64, StoreError> {
    match value {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt("counter".into())),
    }
}

fn counter_tx(value: Option<IVec>) -> TxResult<u64> {
    counter(value).map_err(ConflictableTransactionError::Abort)
}

fn device_index_key(device: &DeviceId, index: u64) -> [u8; 24] {
    let mut out = [0; 24];
    out[..16].copy_from_slice(device.as_bytes());
    out[16..].copy_from_slice(&index.to_be_bytes());
    out
}

fn user_key(user: &UserId) -> Vec<u8> {
    let mut out = org_prefix(&user.org());
    out.extend_from_slice(user.as_str().as_bytes());
    out
}

/// `admin_nonces` key: until (8, big-endian, so expired ones are a prefix
/// range), the nonce, the organisation.
fn admin_nonce_key(until: u64, nonce: &[u8; 16], org: &OrgId) -> Vec<u8> {
    let mut out = until.to_be_bytes().to_vec();
    out.extend_from_slice(nonce);
    out.extend_from_slice(org.as_str().as_bytes());
    out
}

fn org_prefix(org: &OrgId) -> Vec<u8> {
    let mut out = org.as_str().as_bytes().to_vec();
    out.push(0);
    out
}

fn user_devices_prefix(user: &UserId) -> Vec<u8> {
    let mut out = user.as_str().as_bytes().to_vec();
    out.push(0);
    out
}

fn user_device_key(user: &UserId, device: &DeviceId) -> Vec<u8> {
    let mut out = user_devices_prefix(user);
    out.extend_from_slice(device.as_bytes());
    out
}

fn kind_tag(kind: ItemKind) -> u8 {
    match kind {
        ItemKind::Commit => 1,
        ItemKind::Application => 2,
        ItemKind::Welcome => 3,
        ItemKind::Notice => 4,
    }
}

fn payload_key(group: &GroupId, seq: u64, kind: ItemKind) -> [u8; 25] {
    let mut out = [0; 25];
    out[..16].copy_from_slice(group.as_bytes());
    out[16..24].copy_from_slice(&seq.to_be_bytes());
    out[24] = kind_tag(kind);
    out
}

/// The sled backend of [`Store`].
pub struct SledStore {
    db: ::sled::Db,
    /// The files a flush syncs beyond what sled does (`durable`); `None`
    /// for a temporary database.
    files: Option<durable::DurableFiles>,
    meta: Tree,
    orgs: Tree,
    users: Tree,
    devices: Tree,
    user_devices: Tree,
    tokens: Tree,
    kp: Tree,
    kp_meta: Tree,
    kp_last: Tree,
    groups: Tree,
    group_seq: Tree,
    group_info: Tree,
    log: Tree,
    log_pos: Tree,
    members: Tree,
    device_groups: Tree,
    log_gc: Tree,
    queue: Tree,
    queue_len: Tree,
    payloads: Tree,
    trust_lists: Tree,
    revocations: Tree,
    admin_rosters: Tree,
    admin_nonces: Tree,
}

impl SledStore {
    /// Atomically reads, changes and writes back one device record;
    /// `NotFound` if there is none (or whatever `change` refuses with).
    fn update_device(
        &self,
        device_id: &DeviceId,
        change: impl Fn(&mut Device) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.devices.transaction(|devices| {
            let Some(raw) = devices.get(device_id.as_bytes())? else {
                return abort(StoreError::NotFound);
            };
            let mut device: Device = decode_tx(&raw, "device")?;
            if let Err(e) = change(&mut device) {
                return abort(e);
            }
            devices.insert(&device_id.as_bytes()[..], encode(&device))?;
            Ok(())
        })?;
        Ok(())
    }

    /// A signed per-organisation document from `tree`, if stored.
    fn get_org_document(
        &self,
        tree: &Tree,
        org_id: &OrgId,
        what: &'static str,
    ) -> Result<Option<TrustList>, StoreError> {
        tree.get(org_id.as_str().as_bytes())?
            .map(|v| decode(&v, what))
            .transpose()
    }

    /// Stores a signed per-organisation document in `tree`, atomically
    /// checking that the organisation exists.
    fn put_org_document(
        &self,
        tree: &Tree,
        org_id: &OrgId,
        doc: &TrustList,
    ) -> Result<(), StoreError> {
        let key = org_id.as_str().as_bytes();
        let value = encode(doc);
        (&self.orgs, tree).transaction(|(orgs, docs)| {
            if orgs.get(key)?.is_none() {
                return abort(StoreError::NotFound);
            }
            docs.insert(key, &value[..])?;
            Ok(())
        })?;
        Ok(())
    }

    /// Opens (creating if needed) the database in directory `path`. Only one
    /// process may have it open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = ::sled::Config::new().path(path).open()?;
        let files = durable::DurableFiles::open(path)
            .map_err(|e| StoreError::Backend(format!("opening the database files: {e}")))?;
        let mut store = Self::from_db(db)?;
        store.files = Some(files);
        Ok(store)
    }

    /// A database that lives in a temporary directory and is deleted when
    /// dropped; for tests.
    pub fn open_temporary() -> Result<Self, StoreError> {
        Self::from_db(::sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: ::sled::Db) -> Result<Self, StoreError> {
        let tree = |name: &str| db.open_tree(name);
        let store = Self {
            meta: tree("meta")?,
            orgs: tree("orgs")?,
            users: tree("users")?,
            devices: tree("devices")?,
            user_devices: tree("user_devices")?,
            tokens: tree("tokens")?,
            kp: tree("kp")?,
            kp_meta: tree("kp_meta")?,
            kp_last: tree("kp_last")?,
            groups: tree("groups")?,
            group_seq: tree("group_seq")?,
            group_info: tree("group_info")?,
            log: tree("log")?,
            log_pos: tree("log_pos")?,
            members: tree("members")?,
            device_groups: tree("device_groups")?,
            log_gc: tree("log_gc")?,
            queue: tree("queue")?,
            queue_len: tree("queue_len")?,
            payloads: tree("payloads")?,
            trust_lists: tree("trust_lists")?,
            revocations: tree("revocations")?,
            admin_rosters: tree("admin_rosters")?,
            admin_nonces: tree("admin_nonces")?,
            files: None,
            db,
        };
        store.migrate_to_group_logs()?;
        Ok(store)
    }

    /// Runs [`log`]'s collection for `group` if a write at its next `seq`
    /// needs it (see [`log::Collected::due`]).
    fn collect_if_due(&self, group: &GroupId, limit: u64) -> Result<(), StoreError> {
        let seq = counter(self.group_seq.get(group.as_bytes())?)?;
        let last = log::Collected::from_bytes(self.log_gc.get(group.as_bytes())?.as_deref())?;
        if last.due(seq, limit) {
            self.collect(group)?;
        }
        Ok(())
    }
}

fn load_group(groups: &TransactionalTree, group_id: &GroupId) -> TxResult<GroupRecord> {
    match groups.get(group_id.as_bytes())? {
        Some(raw) => decode_tx(&raw, "group"),
        None => abort(StoreError::NotFound),
    }
}

fn load_seq(seqs: &TransactionalTree, group_id: &GroupId) -> TxResult<u64> {
    match seqs.get(group_id.as_bytes())? {
        Some(raw) => counter_tx(Some(raw)),
        None => abort(StoreError::Corrupt("group without sequence counter".into())),
    }
}

impl Store for SledStore {
    fn admin_token_hash(&self) -> Result<Option<[u8; 32]>, StoreError> {
        match self.meta.get(ADMIN_TOKEN_KEY)? {
            None => Ok(None),
            Some(v) => <[u8; 32]>::try_from(v.as_ref())
                .map(Some)
                .map_err(|_| StoreError::Corrupt("admin token hash".into())),
        }
    }

    fn set_admin_token_hash(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.meta.insert(ADMIN_TOKEN_KEY, &hash[..])?;
        Ok(())
    }

    fn create_org(&self, org: &Org) -> Result<(), StoreError> {
        let key = org.org_id.as_str().as_bytes();
        match self
            .orgs
            .compare_and_swap(key, None::<&[u8]>, Some(encode(org)))?
        {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::AlreadyExists),
        }
    }

    fn get_org(&self, org_id: &OrgId) -> Result<Option<Org>, StoreError> {
        self.orgs
            .get(org_id.as_str().as_bytes())?
            .map(|v| decode(&v, "org"))
            .transpose()
    }

    fn set_org_ca(&self, org_id: &OrgId, ca_certificate: &[u8]) -> Result<(), StoreError> {
        let key = org_id.as_str().as_bytes();
        self.orgs.transaction(|orgs| {
            let Some(current) = orgs.get(key)? else {
                return abort(StoreError::NotFound);
            };
            let mut org: Org = match decode(&current, "org") {
                Ok(o) => o,
                Err(e) => return abort(e),
            };
            org.ca_certificate = Some(Bytes::from(ca_certificate.to_vec()));
            orgs.insert(key, encode(&org))?;
            Ok(())
        })?;
        Ok(())
    }

    fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let org_key = user.user_id.org();
        let key = user_key(&user.user_id);
        let value = encode(user);
        (&self.orgs, &self.users).transaction(|(orgs, users)| {
            if orgs.get(org_key.as_str().as_bytes())?.is_none() {
                return abort(StoreError::NotFound);
            }
            if users.get(&key)?.is_some() {
                return abort(StoreError::AlreadyExists);
            }
            users.insert(&key[..], &value[..])?;
            Ok(())
        })?;
        Ok(())
    }

    fn get_user(&self, user_id: &UserId) -> Result<Option<User>, StoreError> {
        self.users
            .get(user_key(user_id))?
            .map(|v| decode(&v, "user"))
            .transpose()
    }

    fn list_users(&self, org_id: &OrgId) -> Result<Vec<User>, StoreError> {
        self.users
            .scan_prefix(org_prefix(org_id))
            .map(|kv| decode(&kv?.1, "user"))
            .collect()
    }

    fn put_enrolment_token(
        &self,
        token_hash: &[u8; 32],
        token: &EnrolmentTokenRecord,
    ) -> Result<(), StoreError> {
        self.tokens.insert(&token_hash[..], encode(token))?;
        Ok(())
    }

    fn enrolment_token(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<EnrolmentTokenRecord>, StoreError> {
        self.tokens
            .get(token_hash)?
            .map(|raw| decode(&raw, "enrolment token"))
            .transpose()
    }

    fn enrol_device(
        &self,
        token_hash: &[u8; 32],
        now: u64,
        new: &NewDevice,
    ) -> Result<Device, StoreError> {
        let device = (&self.tokens, &self.users, &self.devices, &self.user_devices).transaction(
            |(tokens, users, devices, user_devices)| {
                let Some(raw) = tokens.get(token_hash)? else {
                    return abort(StoreError::InvalidToken);
                };
                let mut token: EnrolmentTokenRecord = decode_tx(&raw, "enrolment token")?;
                if token.used || now >= token.expires_at {
                    return abort(StoreError::InvalidToken);
                }
                if users.get(user_key(&token.user_id))?.is_none() {
                    return abort(StoreError::InvalidToken);
                }
                if devices.get(new.device_id.as_bytes())?.is_some() {
                    return abort(StoreError::AlreadyExists);
                }
                token.used = true;
                let device = Device {
                    device_id: new.device_id,
                    user_id: token.user_id.clone(),
                    name: new.name.clone(),
                    signature_key: new.signature_key.clone(),
                    enrolled_at: new.enrolled_at,
                    revoked: false,
                    certificate: None,
                    push_token: None,
                    last_seen: 0,
                    wipe: None,
                };
                tokens.insert(&token_hash[..], encode(&token))?;
                devices.insert(&new.device_id.as_bytes()[..], encode(&device))?;
                user_devices.insert(user_device_key(&token.user_id, &new.device_id), &[][..])?;
                Ok(device)
            },
        )?;
        Ok(device)
    }

    fn get_device(&self, device_id: &DeviceId) -> Result<Option<Device>, StoreError> {
        self.devices
            .get(device_id.as_bytes())?
            .map(|v| decode(&v, "device"))
            .transpose()
    }

    fn devices_of_user(&self, user_id: &UserId) -> Result<Vec<Device>, StoreError> {
        let prefix = user_devices_prefix(user_id);
        let mut out = Vec::new();
        for kv in self.user_devices.scan_prefix(&prefix) {
            let (key, _) = kv?;
            let id = DeviceId::from_slice(&key[prefix.len()..])
                .map_err(|_| StoreError::Corrupt("user device index".into()))?;
            match self.get_device(&id)? {
                Some(device) => out.push(device),
                None => return Err(StoreError::Corrupt("user device index".into())),
            }
        }
        Ok(out)
    }

    fn revoke_device(&self, device_id: &DeviceId) -> Result<(), StoreError> {
        self.devices.transaction(|devices| {
            let Some(raw) = devices.get(device_id.as_bytes())? else {
                return abort(StoreError::NotFound);
            };
            let mut device: Device = decode_tx(&raw, "device")?;
            device.revoked = true;
            devices.insert(&device_id.as_bytes()[..], encode(&device))?;
            Ok(())
        })?;
        Ok(())
    }

    fn set_device_certificate(
        &self,
        device_id: &DeviceId,
        certificate: &[u8],
    ) -> Result<(), StoreError> {
        self.update_device(device_id, |device| {
            if device.revoked {
                return Err(StoreError::NotFound);
            }
            device.certificate = Some(Bytes::from(certificate.to_vec()));
            Ok(())
        })
    }

    fn set_push_token(&self, device_id: &DeviceId, token: Option<&str>) -> Result<(), StoreError> {
        self.update_device(device_id, |device| {
            device.push_token = token.map(str::to_owned);
            Ok(())
        })
    }

    fn order_wipe(&self, device_id: &DeviceId, wipe: &Wipe) -> Result<(), StoreError> {
        self.update_device(device_id, |device| {
            device.revoked = true;
            device.wipe.get_or_insert_with(|| wipe.clone());
            Ok(())
        })
    }

    fn confirm_wipe(
        &self,
        device_id: &DeviceId,
        confirmed: &WipeConfirmed,
    ) -> Result<(), StoreError> {
        self.update_device(device_id, |device| {
            let wipe = device.wipe.as_mut().ok_or(StoreError::NotFound)?;
            wipe.confirmed.get_or_insert_with(|| confirmed.clone());
            Ok(())
        })
    }

    fn pending_devices(&self, org_id: &OrgId) -> Result<Vec<Device>, StoreError> {
        // An admin's occasional question: a scan of the organisation's users
        // is cheap enough and needs no index to keep in step.
        let mut out = Vec::new();
        for user in self.list_users(org_id)? {
            out.extend(
                self.devices_of_user(&user.user_id)?
                    .into_iter()
                    .filter(|d| !d.revoked && d.certificate.is_none()),
            );
        }
        Ok(out)
    }

    fn put_trust_list(&self, org_id: &OrgId, list: &TrustList) -> Result<(), StoreError> {
        self.put_org_document(&self.trust_lists, org_id, list)
    }

    fn trust_list(&self, org_id: &OrgId) -> Result<Option<TrustList>, StoreError> {
        self.get_org_document(&self.trust_lists, org_id, "trust list")
    }

    fn put_revocations(&self, org_id: &OrgId, list: &TrustList) -> Result<(), StoreError> {
        self.put_org_document(&self.revocations, org_id, list)
    }

    fn revocations(&self, org_id: &OrgId) -> Result<Option<TrustList>, StoreError> {
        self.get_org_document(&self.revocations, org_id, "revocation list")
    }

    fn put_admin_roster(&self, org_id: &OrgId, roster: &TrustList) -> Result<(), StoreError> {
        self.put_org_document(&self.admin_rosters, org_id, roster)
    }

    fn admin_roster(&self, org_id: &OrgId) -> Result<Option<TrustList>, StoreError> {
        self.get_org_document(&self.admin_rosters, org_id, "admin roster")
    }

    fn put_admin_nonce(
        &self,
        org_id: &OrgId,
        nonce: &[u8; 16],
        until: u64,
    ) -> Result<(), StoreError> {
        self.admin_nonces
            .insert(admin_nonce_key(until, nonce, org_id), &[])?;
        Ok(())
    }

    fn admin_nonces(&self, now: u64) -> Result<Vec<(OrgId, [u8; 16], u64)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.admin_nonces.range(now.to_be_bytes()..) {
            let (key, _) = entry?;
            let corrupt = || StoreError::Corrupt("admin nonce key".into());
            let (until, rest) = key.split_at_checked(8).ok_or_else(corrupt)?;
            let (nonce, org) = rest.split_at_checked(16).ok_or_else(corrupt)?;
            let org = std::str::from_utf8(org)
                .ok()
                .and_then(|org| OrgId::new(org).ok())
                .ok_or_else(corrupt)?;
            let until = u64::from_be_bytes(until.try_into().map_err(|_| corrupt())?);
            out.push((org, nonce.try_into().map_err(|_| corrupt())?, until));
        }
        Ok(out)
    }

    fn forget_admin_nonces(&self, now: u64) -> Result<(), StoreError> {
        for key in self.admin_nonces.range(..now.to_be_bytes()).keys() {
            self.admin_nonces.remove(key?)?;
        }
        Ok(())
    }

    fn put_key_packages(
        &self,
        device_id: &DeviceId,
        key_packages: &[&[u8]],
        last_resort: Option<&[u8]>,
    ) -> Result<u32, StoreError> {
        self.kp_put(device_id, key_packages, last_resort)
    }

    fn withdraw_key_packages(&self, device_id: &DeviceId) -> Result<(), StoreError> {
        self.kp_withdraw(device_id)
    }

    fn key_package_stock(&self, device_id: &DeviceId) -> Result<KeyPackageStock, StoreError> {
        self.kp_stock(device_id)
    }

    fn claim_key_package(
        &self,
        device_id: &DeviceId,
    ) -> Result<Option<ClaimedKeyPackage>, StoreError> {
        self.kp_claim(device_id)
    }

    fn create_group(
        &self,
        group_id: &GroupId,
        creator: &DeviceId,
        group_info: &[u8],
    ) -> Result<(), StoreError> {
        let record = encode(&GroupRecord {
            group_id: *group_id,
            epoch: 0,
            roster: vec![*creator],
            readable_from: 0,
            stopped: Vec::new(),
            leaving: Vec::new(),
        });
        let info = encode(&GroupInfoRecord {
            epoch: 0,
            group_info: Bytes::from(group_info.to_vec()),
        });
        let membership = encode(&Membership::joining(0, 0));
        let trees = (
            &self.groups,
            &self.group_seq,
            &self.group_info,
            &self.members,
            &self.device_groups,
        );
        trees.transaction(|(groups, seqs, infos, members, index)| {
            let key = &group_id.as_bytes()[..];
            if groups.get(key)?.is_some() {
                return abort(StoreError::AlreadyExists);
            }
            groups.insert(key, &record[..])?;
            seqs.insert(key, &1u64.to_be_bytes()[..])?;
            infos.insert(key, &info[..])?;
            members.insert(&member_key(group_id, creator)[..], &membership[..])?;
            index.insert(&device_group_key(creator, group_id)[..], &[][..])?;
            Ok(())
        })?;
        Ok(())
    }

    fn close_group(&self, group_id: &GroupId, device_id: &DeviceId) -> Result<bool, StoreError> {
        let key = &group_id.as_bytes()[..];
        let trees = (
            &self.groups,
            &self.group_seq,
            &self.group_info,
            &self.members,
            &self.device_groups,
            &self.log_gc,
        );
        let closed = trees.transaction(|(groups, seqs, infos, members, index, collected)| {
            let group = load_group(groups, group_id)?;
            if group.roster != [*device_id] {
                return Ok(false);
            }
            groups.remove(key)?;
            seqs.remove(key)?;
            infos.remove(key)?;
            collected.remove(key)?;
            members.remove(&member_key(group_id, device_id)[..])?;
            index.remove(&device_group_key(device_id, group_id)[..])?;
            Ok(true)
        })?;
        if closed {
            // Memberships of devices that left and had not read it all, and
            // the log: nothing reads them any more.
            for kv in self.members.scan_prefix(key) {
                let (member, _) = kv?;
                let device = DeviceId(
                    member
                        .get(16..32)
                        .and_then(|b| <[u8; 16]>::try_from(b).ok())
                        .ok_or_else(|| StoreError::Corrupt("membership key".into()))?,
                );
                self.members.remove(&member)?;
                self.device_groups
                    .remove(device_group_key(&device, group_id))?;
            }
            for entry in self.log.scan_prefix(key).keys() {
                let entry = entry?;
                if let Some(pos) = entry.get(16..24).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                    self.log_pos.remove(pos)?;
                }
                self.log.remove(&entry)?;
            }
        }
        Ok(closed)
    }

    fn get_group(&self, group_id: &GroupId) -> Result<Option<Group>, StoreError> {
        let Some(raw) = self.groups.get(group_id.as_bytes())? else {
            return Ok(None);
        };
        let record: GroupRecord = decode(&raw, "group")?;
        let next_seq = counter(self.group_seq.get(group_id.as_bytes())?)?;
        Ok(Some(Group {
            group_id: record.group_id,
            epoch: record.epoch,
            next_seq,
            roster: record.roster,
            readable_from: record.readable_from,
            stopped: record.stopped,
            leaving: record.leaving,
        }))
    }

    fn groups_with_devices(&self, devices: &[DeviceId]) -> Result<Vec<GroupId>, StoreError> {
        let mut found = Vec::new();
        for device in devices {
            for group in self.groups_of(device)? {
                if found.contains(&group) {
                    continue;
                }
                // A device that left keeps a membership until it read the
                // commit that removed it: ask the roster.
                if let Some(raw) = self.groups.get(group.as_bytes())? {
                    let record: GroupRecord = decode(&raw, "group")?;
                    if record.roster.iter().any(|d| devices.contains(d)) {
                        found.push(group);
                    }
                }
            }
        }
        found.sort();
        Ok(found)
    }

    fn group_info(&self, group_id: &GroupId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let Some(raw) = self.group_info.get(group_id.as_bytes())? else {
            return Ok(None);
        };
        let record: GroupInfoRecord = decode(&raw, "group info")?;
        Ok(Some((record.epoch, record.group_info.into_vec())))
    }

    fn apply_commit(&self, c: &CommitWrite<'_>) -> Result<Sequenced, StoreError> {
        let limit = MAX_QUEUE_LEN + COMMIT_HEADROOM;
        self.collect_if_due(&c.group_id, limit)?;
        let trees = (
            &self.groups,
            &self.group_seq,
            &self.group_info,
            &self.log,
            &self.log_pos,
            &self.members,
            &self.device_groups,
            &self.log_gc,
        );
        let sequenced = trees.transaction(
            |(groups, seqs, infos, log, positions, members, index, collected)| {
                let key = &c.group_id.as_bytes()[..];
                let mut group = load_group(groups, &c.group_id)?;
                if group.epoch != c.epoch {
                    return abort(StoreError::WrongEpoch {
                        current: group.epoch,
                    });
                }
                let seq = load_seq(seqs, &c.group_id)?;
                if seq.saturating_sub(collected_tx(collected, &c.group_id)?.floor_seq) > limit {
                    return abort(StoreError::QueueFull);
                }
                let mut deliveries = Vec::new();
                let commit = LogEntry {
                    seq,
                    sender: c.committer,
                    kind: ItemKind::Commit,
                    payload: Bytes::from(c.commit.to_vec()),
                    welcomed: Vec::new(),
                    to: None,
                };
                let commit_pos = append_tx(log, positions, &c.group_id, &commit)?;
                let mut commit_recipients: Vec<DeviceId> = group
                    .roster
                    .iter()
                    .filter(|d| !group.stopped.contains(d))
                    .copied()
                    .collect();
                if !commit_recipients.contains(&c.committer) {
                    commit_recipients.push(c.committer);
                }
                deliveries.extend(commit_recipients.iter().map(|d| Delivery {
                    device_id: *d,
                    queue_id: commit_pos,
                    kind: ItemKind::Commit,
                }));
                if let (Some(welcome), false) = (c.welcome, c.added.is_empty()) {
                    let entry = LogEntry {
                        kind: ItemKind::Welcome,
                        payload: Bytes::from(welcome.to_vec()),
                        welcomed: c.added.to_vec(),
                        ..commit
                    };
                    let pos = append_tx(log, positions, &c.group_id, &entry)?;
                    deliveries.extend(c.added.iter().map(|d| Delivery {
                        device_id: *d,
                        queue_id: pos,
                        kind: ItemKind::Welcome,
                    }));
                }

                for device in &group.roster {
                    if c.removed.contains(device) {
                        if let Some(mut m) = membership_tx(members, &c.group_id, device)? {
                            m.leave(seq);
                            members.insert(&member_key(&c.group_id, device)[..], encode(&m))?;
                        }
                    }
                }
                group.roster.retain(|d| !c.removed.contains(d));
                group.stopped.retain(|d| !c.removed.contains(d));
                group.leaving.retain(|d| !c.removed.contains(d));
                for device in c.added {
                    if group.roster.contains(device) {
                        // A resync: a stopped device is delivered to again
                        // from this commit on.
                        if group.stopped.contains(device) {
                            group.stopped.retain(|d| d != device);
                            let m = match membership_tx(members, &c.group_id, device)? {
                                Some(mut m) => {
                                    m.join(seq);
                                    m
                                }
                                None => Membership::joining(seq, commit_pos),
                            };
                            members.insert(&member_key(&c.group_id, device)[..], encode(&m))?;
                            index.insert(&device_group_key(device, &c.group_id)[..], &[][..])?;
                        }
                        continue;
                    }
                    group.roster.push(*device);
                    let m = match membership_tx(members, &c.group_id, device)? {
                        Some(mut m) => {
                            m.join(seq);
                            m
                        }
                        None => Membership::joining(seq, commit_pos),
                    };
                    members.insert(&member_key(&c.group_id, device)[..], encode(&m))?;
                    index.insert(&device_group_key(device, &c.group_id)[..], &[][..])?;
                }
                group.epoch += 1;
                if !c.added.is_empty() {
                    // Devices that joined now (by Welcome, or rejoining by
                    // external commit) have no secrets of earlier epochs.
                    group.readable_from = group.epoch;
                }
                let info = GroupInfoRecord {
                    epoch: group.epoch,
                    group_info: Bytes::from(c.group_info.to_vec()),
                };
                groups.insert(key, encode(&group))?;
                seqs.insert(key, &(seq + 1).to_be_bytes()[..])?;
                infos.insert(key, encode(&info))?;
                Ok(Sequenced {
                    epoch: group.epoch,
                    seq,
                    deliveries,
                    addressed: false,
                })
            },
        )?;
        Ok(sequenced)
    }

    fn lagging_devices(&self, group_id: &GroupId, lag: u64) -> Result<Vec<DeviceId>, StoreError> {
        self.lagging(group_id, lag)
    }

    fn stop_delivery(
        &self,
        group_id: &GroupId,
        device_id: &DeviceId,
        notice: &[u8],
        behind: Option<u64>,
    ) -> Result<Option<Sequenced>, StoreError> {
        let payload = Bytes::from(notice.to_vec());
        // Read outside the transaction: the caller holds the group's writer
        // lock, and acknowledgements only move the cursor past it.
        let welcome = self.unread_welcome(group_id, device_id)?;
        let trees = (
            &self.groups,
            &self.group_seq,
            &self.log,
            &self.log_pos,
            &self.members,
            &self.device_groups,
        );
        let sequenced = trees.transaction(|(groups, seqs, log, positions, members, index)| {
            let key = &group_id.as_bytes()[..];
            let mut group = load_group(groups, group_id)?;
            if !group.roster.contains(device_id) || group.stopped.contains(device_id) {
                return Ok(None);
            }
            let seq = load_seq(seqs, group_id)?;
            let found = membership_tx(members, group_id, device_id)?;
            if let (Some(lag), Some(m)) = (behind, &found) {
                if (seq - 1).saturating_sub(m.acked_seq) < lag {
                    return Ok(None); // it read meanwhile
                }
            }
            let entry = LogEntry {
                seq,
                sender: *device_id,
                kind: ItemKind::Notice,
                payload: payload.clone(),
                welcomed: Vec::new(),
                to: None,
            };
            let pos = append_tx(log, positions, group_id, &entry)?;
            // Its backlog goes: the notice is all it has left to read here,
            // after the Welcome that brought it in if it has not read that
            // (so that it learns of the group, and rejoins it).
            let mut m = found.unwrap_or_else(|| Membership::joining(0, pos));
            m.stop = Some(log::Stop {
                pos,
                seq,
                payload: payload.clone(),
                welcome: welcome.clone(),
            });
            m.next = m.next.max(pos);
            m.acked_seq = seq - 1;
            m.leave(seq);
            members.insert(&member_key(group_id, device_id)[..], encode(&m))?;
            index.insert(&device_group_key(device_id, group_id)[..], &[][..])?;
            let deliveries = group
                .roster
                .iter()
                .filter(|d| *d == device_id || !group.stopped.contains(d))
                .map(|d| Delivery {
                    device_id: *d,
                    queue_id: pos,
                    kind: ItemKind::Notice,
                })
                .collect();
            group.stopped.push(*device_id);
            groups.insert(key, encode(&group))?;
            seqs.insert(key, &(seq + 1).to_be_bytes()[..])?;
            Ok(Some(Sequenced {
                epoch: group.epoch,
                seq,
                deliveries,
                addressed: false,
            }))
        })?;
        Ok(sequenced)
    }

    fn set_last_seen(&self, device_id: &DeviceId, at: u64) -> Result<(), StoreError> {
        self.update_device(device_id, |d| {
            d.last_seen = d.last_seen.max(at);
            Ok(())
        })
    }

    fn idle_devices(&self, before: u64) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        let mut idle = Vec::new();
        let mut last: Option<DeviceId> = None;
        for key in self.device_groups.iter().keys() {
            let key = key?;
            let device = DeviceId(
                key.get(..16)
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                    .ok_or_else(|| StoreError::Corrupt("device group key".into()))?,
            );
            if last == Some(device) {
                continue;
            }
            last = Some(device);
            if let Some(d) = self.get_device(&device)? {
                let seen = if d.last_seen == 0 {
                    d.enrolled_at
                } else {
                    d.last_seen
                };
                if seen < before {
                    idle.push((device, seen));
                }
            }
        }
        Ok(idle)
    }

    fn append_application(&self, m: &ApplicationWrite<'_>) -> Result<Sequenced, StoreError> {
        self.collect_if_due(&m.group_id, MAX_QUEUE_LEN)?;
        let entry_payload = Bytes::from(m.message.to_vec());
        let trees = (
            &self.groups,
            &self.group_seq,
            &self.log,
            &self.log_pos,
            &self.log_gc,
        );
        let sequenced = trees.transaction(|(groups, seqs, log, positions, collected)| {
            let mut group = load_group(groups, &m.group_id)?;
            let seq = load_seq(seqs, &m.group_id)?;
            if seq.saturating_sub(collected_tx(collected, &m.group_id)?.floor_seq) > MAX_QUEUE_LEN {
                return abort(StoreError::QueueFull);
            }
            if m.leave_request && !group.leaving.contains(&m.sender) {
                group.leaving.push(m.sender);
                groups.insert(&m.group_id.as_bytes()[..], encode(&group))?;
            }
            let entry = LogEntry {
                seq,
                sender: m.sender,
                kind: ItemKind::Application,
                payload: entry_payload.clone(),
                welcomed: Vec::new(),
                to: m.to.map(<[DeviceId]>::to_vec),
            };
            let pos = append_tx(log, positions, &m.group_id, &entry)?;
            let deliveries = group
                .roster
                .iter()
                .filter(|d| **d != m.sender && !group.stopped.contains(d))
                .filter(|d| m.to.is_none_or(|to| to.contains(d)))
                .map(|d| Delivery {
                    device_id: *d,
                    queue_id: pos,
                    kind: ItemKind::Application,
                })
                .collect();
            seqs.insert(&m.group_id.as_bytes()[..], &(seq + 1).to_be_bytes()[..])?;
            Ok(Sequenced {
                epoch: group.epoch,
                seq,
                deliveries,
                addressed: m.to.is_some(),
            })
        })?;
        Ok(sequenced)
    }

    fn queue_page(
        &self,
        device_id: &DeviceId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<QueueItem>, StoreError> {
        let from = match after {
            None => 0,
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(id) => id + 1,
        };
        // Items of the earlier layout first: their ids are all lower.
        let legacy = self.legacy_page(device_id, from, limit)?;
        if !legacy.is_empty() {
            return Ok(legacy);
        }
        self.log_page(device_id, from, limit)
    }

    fn queue_len(&self, device_id: &DeviceId) -> Result<u64, StoreError> {
        Ok(self.legacy_len(device_id)? + self.log_len(device_id)?)
    }

    fn ack(&self, device_id: &DeviceId, queue_ids: &[u64]) -> Result<u64, StoreError> {
        let mut ids = queue_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        self.log_ack(device_id, &ids)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        if let Some(files) = &self.files {
            files
                .sync()
                .map_err(|e| StoreError::Backend(format!("syncing the database files: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// Decodes `bytes` as every kind of record the store keeps, as a damaged
/// or hostile database would present them: each either refuses with
/// [`StoreError::Corrupt`] or reads as a record that encodes and reads back
/// to itself. Never panics. For the fuzz target `stored_records`.
#[doc(hidden)]
pub fn fuzz_decode_records(bytes: &[u8]) {
    fn check<T>(bytes: &[u8], what: &str)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        match decode::<T>(bytes, what) {
            Ok(record) => {
                let again: T = decode(&encode(&record), what).expect("a record reads back");
                assert_eq!(again, record, "{what} does not survive a round trip");
            }
            Err(StoreError::Corrupt(_)) => {}
            Err(e) => panic!("decoding a {what} failed other than as corrupt: {e}"),
        }
    }
    check::<Org>(bytes, "org");
    check::<User>(bytes, "user");
    check::<Device>(bytes, "device");
    check::<EnrolmentTokenRecord>(bytes, "enrolment token");
    check::<TrustList>(bytes, "trust list");
    check::<GroupRecord>(bytes, "group");
    check::<GroupInfoRecord>(bytes, "group info");
    check::<QueueEntry>(bytes, "queue entry");
    check::<PayloadRecord>(bytes, "payload");
    check::<log::LogEntry>(bytes, "log entry");
    check::<log::Membership>(bytes, "membership");
}
