//! The relay's durable state, behind one trait.
//!
//! [`Store`] is synchronous: the embedded sled backend is, and its operations
//! are short. The one slow call, [`Store::flush`], is run on the blocking pool
//! by the relay (see [`crate::durability`]). Every operation that must be
//! atomic (enrolling a device with its one-time token, popping a KeyPackage,
//! sequencing a commit with its Welcome and queue appends) is one method, so a
//! backend implements it as one transaction.
//!
//! Every backend must pass [`conformance`].

use cascade_protocol::frames::{Bytes, ItemKind, QueueItem};
use cascade_protocol::{DeviceId, GroupId, OrgId, UserId};
use serde::{Deserialize, Serialize};

pub mod conformance;
pub mod sled;

pub use self::sled::SledStore;

/// Why a store operation failed.
///
/// The first variants are outcomes a caller acts on; `Backend` and `Corrupt`
/// are failures of the storage itself. None carries keys, tokens or payloads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The record to create exists already.
    #[error("the record exists already")]
    AlreadyExists,
    /// A record the operation needs does not exist (an organisation, a
    /// group, a device).
    #[error("a record the operation needs does not exist")]
    NotFound,
    /// The enrolment token is unknown, used or expired.
    #[error("invalid enrolment token")]
    InvalidToken,
    /// The group is not at the epoch the commit was made for.
    #[error("the group is at epoch {current}")]
    WrongEpoch {
        /// The group's current epoch.
        current: u64,
    },
    /// A recipient's queue would exceed
    /// [`MAX_QUEUE_LEN`](cascade_protocol::limits::MAX_QUEUE_LEN); nothing
    /// was written.
    #[error("a recipient's queue is full")]
    QueueFull,
    /// The upload would take the device's single-use KeyPackage stock over
    /// [`MAX_KEY_PACKAGE_STOCK`](cascade_protocol::limits::MAX_KEY_PACKAGE_STOCK);
    /// nothing was written.
    #[error("the KeyPackage stock is full")]
    StockFull,
    /// The storage engine failed.
    #[error("storage backend failure: {0}")]
    Backend(String),
    /// A stored record does not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// An organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    /// Its id.
    pub org_id: OrgId,
    /// Its name as people know it.
    pub display_name: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
    /// The organisation's CA certificate (DER), checked when it was
    /// registered. `None` for an organisation without a CA: its devices
    /// cannot get certificates through the relay. Absent in records written
    /// before CAs existed.
    #[serde(default)]
    pub ca_certificate: Option<Bytes>,
}

/// A user of an organisation (the organisation is part of the id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id, `local@org`.
    pub user_id: UserId,
    /// Name to show.
    pub display_name: String,
    /// Role in the organisation.
    pub role: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Its id, assigned by the relay.
    pub device_id: DeviceId,
    /// The user it belongs to.
    pub user_id: UserId,
    /// The name given at enrolment.
    pub name: String,
    /// Its Ed25519 signature public key (32 bytes).
    pub signature_key: Bytes,
    /// Enrolment time, seconds since the Unix epoch.
    pub enrolled_at: u64,
    /// A revoked device can no longer authenticate and is not offered to
    /// others.
    pub revoked: bool,
    /// The device certificate (DER) its organisation's CA issued, checked
    /// when it was uploaded; `None` while issuance is pending. Absent in
    /// records written before certificates existed.
    #[serde(default)]
    pub certificate: Option<Bytes>,
    /// The push token the device registered, if any (opaque; only ever
    /// sent to the relay's push gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_token: Option<String>,
    /// When it last authenticated, seconds since the Unix epoch; 0 if never
    /// (or before this was recorded). For the queue expiry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_seen: u64,
    /// Its organisation's order to wipe it, if its admins gave one. Absent
    /// (not written) otherwise, so other records keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wipe: Option<Wipe>,
}

/// An organisation's signed order to wipe one of its devices, as the relay
/// keeps it (`docs/protocol.md` §14.6), and the device's confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wipe {
    /// The signed order's body (CBOR; the relay checked the signature with
    /// the organisation's CA and that the body names this device).
    pub body: Bytes,
    /// The CA's signature over `body`.
    pub signature: Bytes,
    /// During a CA rotation, the new CA's co-signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co_signature: Option<Bytes>,
    /// When the relay stored it, seconds since the Unix epoch.
    pub ordered_at: u64,
    /// When the device confirmed it erased itself, and its signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<WipeConfirmed>,
}

/// A device's confirmation of its wipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WipeConfirmed {
    /// When the relay received it, seconds since the Unix epoch.
    pub at: u64,
    /// The device's Ed25519 signature over
    /// [`cascade_protocol::auth::wiped_payload`].
    pub signature: Bytes,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A device about to be enrolled: [`Store::enrol_device`] takes the user from
/// the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// The id the relay chose.
    pub device_id: DeviceId,
    /// The name given at enrolment.
    pub name: String,
    /// Its Ed25519 signature public key (32 bytes).
    pub signature_key: Bytes,
    /// Enrolment time, seconds since the Unix epoch.
    pub enrolled_at: u64,
}

/// What the relay keeps of an enrolment token (keyed by the token's SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentTokenRecord {
    /// The user a device enrols for.
    pub user_id: UserId,
    /// Expiry, seconds since the Unix epoch; the token is invalid from then.
    pub expires_at: u64,
    /// A token enrols one device only.
    pub used: bool,
}

/// An organisation's trust list as its admins published it: a document
/// signed with the organisation's CA key. The relay checked the signature
/// when it was stored, but clients verify it themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustList {
    /// The document (its format is the clients').
    pub body: Bytes,
    /// Ed25519 signature by the organisation's CA key over `body`.
    pub signature: Bytes,
    /// When it was stored, seconds since the Unix epoch.
    pub published_at: u64,
    /// A CA rotation's co-signature by the new CA, stored and served as is
    /// (clients check it). Absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co_signature: Option<Bytes>,
}

/// A device's KeyPackage stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPackageStock {
    /// Single-use KeyPackages held.
    pub stock: u32,
    /// Whether a last-resort KeyPackage is held.
    pub has_last_resort: bool,
}

/// A KeyPackage handed out by [`Store::claim_key_package`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKeyPackage {
    /// The KeyPackage (TLS-serialised `MlsMessage`).
    pub key_package: Vec<u8>,
    /// True if this is the last-resort KeyPackage, which stays stored.
    pub last_resort: bool,
    /// The device's single-use stock after the claim.
    pub stock: u32,
}

/// A group as the relay sequences it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group.
    pub group_id: GroupId,
    /// Its current epoch.
    pub epoch: u64,
    /// The sequence number the next accepted commit or message gets.
    pub next_seq: u64,
    /// Its member devices.
    pub roster: Vec<DeviceId>,
    /// The epoch of the latest commit that added devices: messages
    /// encrypted in an earlier epoch cannot be read by all of them.
    pub readable_from: u64,
    /// Roster devices the group is no longer delivered to
    /// ([`Store::stop_delivery`]) until they rejoin or are removed.
    pub stopped: Vec<DeviceId>,
    /// Roster devices that asked to leave (sent a proposal,
    /// [`ApplicationWrite::leave_request`]) and are not removed yet: any
    /// member may commit their removal (protocol §14.8).
    pub leaving: Vec<DeviceId>,
}

/// An accepted commit with everything that lands with it, for
/// [`Store::apply_commit`]. The caller has validated it against the group.
#[derive(Debug, Clone, Copy)]
pub struct CommitWrite<'a> {
    /// The group.
    pub group_id: GroupId,
    /// The epoch the commit was made in; must be the group's current one.
    pub epoch: u64,
    /// The committing device.
    pub committer: DeviceId,
    /// The commit (TLS-serialised `MlsMessage`).
    pub commit: &'a [u8],
    /// The Welcome for `added`, if any.
    pub welcome: Option<&'a [u8]>,
    /// The GroupInfo of the new epoch.
    pub group_info: &'a [u8],
    /// Devices joining the roster.
    pub added: &'a [DeviceId],
    /// Devices leaving the roster.
    pub removed: &'a [DeviceId],
}

/// An application message for [`Store::append_application`].
#[derive(Debug, Clone, Copy)]
pub struct ApplicationWrite<'a> {
    /// The group.
    pub group_id: GroupId,
    /// The sending device (gets no copy).
    pub sender: DeviceId,
    /// The message (TLS-serialised `MlsMessage`).
    pub message: &'a [u8],
    /// It carries a proposal (a member's request to leave): the sender is
    /// recorded among the group's [`Group::leaving`] in the same write.
    pub leave_request: bool,
    /// Only for these devices (those of the roster among them); `None`:
    /// for every roster device but the sender.
    pub to: Option<&'a [DeviceId]>,
}

/// One queue item written by a sequencing operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The recipient device.
    pub device_id: DeviceId,
    /// The item's id in that device's queue.
    pub queue_id: u64,
    /// What the item carries.
    pub kind: ItemKind,
}

/// The outcome of a sequencing operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced {
    /// The group's epoch after the operation.
    pub epoch: u64,
    /// The sequence number given to the commit or message.
    pub seq: u64,
    /// The queue items written, in roster order (Welcomes last).
    pub deliveries: Vec<Delivery>,
    /// An application message addressed to some devices only
    /// ([`ApplicationWrite::to`]).
    pub addressed: bool,
}

/// The relay's durable state.
///
/// Writes are visible to later reads at once; they are durable only after
/// [`Store::flush`] returns. Methods documented as atomic write all or
/// nothing.
pub trait Store: Send + Sync {
    /// The SHA-256 of the admin token, if one was set.
    fn admin_token_hash(&self) -> Result<Option<[u8; 32]>, StoreError>;

    /// Sets (replaces) the SHA-256 of the admin token.
    fn set_admin_token_hash(&self, hash: &[u8; 32]) -> Result<(), StoreError>;

    /// Creates an organisation. `AlreadyExists` if the id is taken.
    fn create_org(&self, org: &Org) -> Result<(), StoreError>;

    /// Looks up an organisation.
    fn get_org(&self, org_id: &OrgId) -> Result<Option<Org>, StoreError>;

    /// Replaces an organisation's CA certificate (DER), for a CA rotation.
    /// `NotFound` if the organisation does not exist.
    fn set_org_ca(&self, org_id: &OrgId, ca_certificate: &[u8]) -> Result<(), StoreError>;

    /// Creates a user, atomically checking that its organisation exists
    /// (`NotFound` otherwise) and the id is free (`AlreadyExists`).
    fn create_user(&self, user: &User) -> Result<(), StoreError>;

    /// Looks up a user.
    fn get_user(&self, user_id: &UserId) -> Result<Option<User>, StoreError>;

    /// The users of an organisation, ordered by id.
    fn list_users(&self, org_id: &OrgId) -> Result<Vec<User>, StoreError>;

    /// Stores an enrolment token's record under the token's SHA-256.
    fn put_enrolment_token(
        &self,
        token_hash: &[u8; 32],
        token: &EnrolmentTokenRecord,
    ) -> Result<(), StoreError>;

    /// An enrolment token's record, without spending it (to check a request
    /// against the token's organisation before spending it).
    fn enrolment_token(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<EnrolmentTokenRecord>, StoreError>;

    /// Atomically spends an enrolment token and creates the device for the
    /// token's user. `InvalidToken` if the token is unknown, used or expired
    /// at `now` (the same error for all three); `AlreadyExists` if the device
    /// id is taken.
    fn enrol_device(
        &self,
        token_hash: &[u8; 32],
        now: u64,
        device: &NewDevice,
    ) -> Result<Device, StoreError>;

    /// Looks up a device (revoked ones too).
    fn get_device(&self, device_id: &DeviceId) -> Result<Option<Device>, StoreError>;

    /// Every device of a user, revoked ones too, ordered by device id.
    fn devices_of_user(&self, user_id: &UserId) -> Result<Vec<Device>, StoreError>;

    /// Marks a device revoked. `NotFound` if it does not exist.
    fn revoke_device(&self, device_id: &DeviceId) -> Result<(), StoreError>;

    /// Atomically sets (or replaces) a device's certificate (DER).
    /// `NotFound` if the device does not exist or is revoked.
    fn set_device_certificate(
        &self,
        device_id: &DeviceId,
        certificate: &[u8],
    ) -> Result<(), StoreError>;

    /// The devices of an organisation's users that wait for a certificate:
    /// enrolled, not revoked, without certificate. Ordered by user id, then
    /// device id.
    fn pending_devices(&self, org_id: &OrgId) -> Result<Vec<Device>, StoreError>;

    /// Sets or clears a device's push token. `NotFound` for an unknown
    /// device.
    fn set_push_token(&self, device_id: &DeviceId, token: Option<&str>) -> Result<(), StoreError>;

    /// Records the organisation's order to wipe a device and revokes it, in
    /// one write; `NotFound` for an unknown device. The first order stays
    /// (the device confirms the order it saw).
    fn order_wipe(&self, device_id: &DeviceId, wipe: &Wipe) -> Result<(), StoreError>;

    /// Records the device's confirmation of its wipe; `NotFound` for an
    /// unknown device or one without an order. The first confirmation
    /// stays.
    fn confirm_wipe(
        &self,
        device_id: &DeviceId,
        confirmed: &WipeConfirmed,
    ) -> Result<(), StoreError>;

    /// Atomically withdraws all of a device's KeyPackages, single-use and
    /// last resort (they carry a certificate that was just replaced).
    fn withdraw_key_packages(&self, device_id: &DeviceId) -> Result<(), StoreError>;

    /// Stores (replaces) an organisation's trust list. `NotFound` if the
    /// organisation does not exist.
    fn put_trust_list(&self, org_id: &OrgId, list: &TrustList) -> Result<(), StoreError>;

    /// An organisation's trust list, if one was stored.
    fn trust_list(&self, org_id: &OrgId) -> Result<Option<TrustList>, StoreError>;

    /// Stores (replaces) an organisation's signed revocation list (same
    /// record shape as a trust list). `NotFound` if the organisation does
    /// not exist.
    fn put_revocations(&self, org_id: &OrgId, list: &TrustList) -> Result<(), StoreError>;

    /// An organisation's revocation list, if one was stored.
    fn revocations(&self, org_id: &OrgId) -> Result<Option<TrustList>, StoreError>;

    /// Stores (replaces) an organisation's signed roster of appointed
    /// admins (same record shape as a trust list; the relay reads it,
    /// protocol §3.2.2). `NotFound` if the organisation does not exist.
    fn put_admin_roster(&self, org_id: &OrgId, roster: &TrustList) -> Result<(), StoreError>;

    /// An organisation's admin roster, if one was stored.
    fn admin_roster(&self, org_id: &OrgId) -> Result<Option<TrustList>, StoreError>;

    /// Records that an organisation admin request's `nonce` was used, to
    /// be remembered until `until` (Unix seconds), so a request replayed
    /// after a restart is still refused (protocol §3.2.1). Made durable by
    /// the next flush, as the request's own writes are.
    fn put_admin_nonce(
        &self,
        org_id: &OrgId,
        nonce: &[u8; 16],
        until: u64,
    ) -> Result<(), StoreError>;

    /// The admin nonces recorded to be remembered at `now` or later, each
    /// with its organisation and `until`.
    fn admin_nonces(&self, now: u64) -> Result<Vec<(OrgId, [u8; 16], u64)>, StoreError>;

    /// Forgets the admin nonces whose `until` is before `now`.
    fn forget_admin_nonces(&self, now: u64) -> Result<(), StoreError>;

    /// Atomically appends single-use KeyPackages to a device's stock and, if
    /// given, replaces its last-resort KeyPackage. `StockFull` (and nothing
    /// stored) if the stock would exceed the limit. Returns the new stock.
    fn put_key_packages(
        &self,
        device_id: &DeviceId,
        key_packages: &[&[u8]],
        last_resort: Option<&[u8]>,
    ) -> Result<u32, StoreError>;

    /// A device's KeyPackage stock.
    fn key_package_stock(&self, device_id: &DeviceId) -> Result<KeyPackageStock, StoreError>;

    /// Atomically takes the oldest single-use KeyPackage of a device or, when
    /// there is none, returns (without consuming) its last-resort one.
    fn claim_key_package(
        &self,
        device_id: &DeviceId,
    ) -> Result<Option<ClaimedKeyPackage>, StoreError>;

    /// Creates a group at epoch 0 with the creator as its only member and
    /// `next_seq` 1. `AlreadyExists` if the id is taken.
    fn create_group(
        &self,
        group_id: &GroupId,
        creator: &DeviceId,
        group_info: &[u8],
    ) -> Result<(), StoreError>;

    /// Deletes a group whose roster is exactly `[device_id]`: its record,
    /// GroupInfo, log and memberships. `false` (nothing deleted) if its
    /// roster is another; `NotFound` if there is no such group.
    fn close_group(&self, group_id: &GroupId, device_id: &DeviceId) -> Result<bool, StoreError>;

    /// Looks up a group.
    fn get_group(&self, group_id: &GroupId) -> Result<Option<Group>, StoreError>;

    /// The groups whose roster holds any of these devices, sorted. (The
    /// sled backend scans every group: it is asked once per new device.)
    fn groups_with_devices(&self, devices: &[DeviceId]) -> Result<Vec<GroupId>, StoreError>;

    /// The latest GroupInfo of a group with the epoch it belongs to (read
    /// together).
    fn group_info(&self, group_id: &GroupId) -> Result<Option<(u64, Vec<u8>)>, StoreError>;

    /// Atomically sequences a commit: checks the epoch (`WrongEpoch`),
    /// advances it, takes the next sequence number, updates the roster
    /// (minus `removed`, plus `added`) and the GroupInfo, and appends a
    /// `Commit` item to the queue of every device of the old roster and of
    /// the committer, and a `Welcome` item with the same seq to every added
    /// device. `QueueFull` (nothing written) if a queue would overflow;
    /// `NotFound` if the group does not exist.
    fn apply_commit(&self, commit: &CommitWrite<'_>) -> Result<Sequenced, StoreError>;

    /// Atomically sequences an application message: takes the next sequence
    /// number and appends an `Application` item to the queue of every roster
    /// device except the sender. `QueueFull` (nothing written) if a queue
    /// would overflow; `NotFound` if the group does not exist.
    fn append_application(&self, message: &ApplicationWrite<'_>) -> Result<Sequenced, StoreError>;

    /// The member devices the group is still delivered to that are at
    /// least `lag` sequence numbers behind it (not counting items that are
    /// not for them): the ones that hold a write at `QueueFull`.
    fn lagging_devices(&self, group_id: &GroupId, lag: u64) -> Result<Vec<DeviceId>, StoreError>;

    /// Atomically stops delivering the group to one of its roster devices:
    /// takes the next sequence number for a `Notice` item with this payload
    /// (sender: the device) queued for every device the group is delivered
    /// to, the stopped one included, for which it is the last item of the
    /// group (its earlier backlog there is dropped). The device stays in the
    /// roster, listed in [`Group::stopped`], until a commit removes it or its
    /// own external commit (a resync) brings it back. `None` (nothing
    /// written) if it is not in the roster or already stopped; `NotFound`
    /// if the group does not exist. With `behind`, only if the device has
    /// acknowledged nothing of the group's last `behind` sequence numbers
    /// (checked in the same transaction, so that a device that read
    /// meanwhile keeps its delivery).
    fn stop_delivery(
        &self,
        group_id: &GroupId,
        device_id: &DeviceId,
        notice: &[u8],
        behind: Option<u64>,
    ) -> Result<Option<Sequenced>, StoreError>;

    /// Records that a device authenticated at `at` (seconds since the Unix
    /// epoch).
    fn set_last_seen(&self, device_id: &DeviceId, at: u64) -> Result<(), StoreError>;

    /// Devices in at least one group that were last seen (or, never seen,
    /// enrolled) before `before`, with that time.
    fn idle_devices(&self, before: u64) -> Result<Vec<(DeviceId, u64)>, StoreError>;

    /// Up to `limit` items of a device's queue with ids greater than `after`,
    /// in queue-id order.
    fn queue_page(
        &self,
        device_id: &DeviceId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<QueueItem>, StoreError>;

    /// How many items a device's queue holds.
    fn queue_len(&self, device_id: &DeviceId) -> Result<u64, StoreError>;

    /// Removes items from a device's queue, ignoring ids it does not hold.
    /// Returns how many were removed.
    fn ack(&self, device_id: &DeviceId, queue_ids: &[u64]) -> Result<u64, StoreError>;

    /// Makes every write that returned before this call durable. Blocks.
    fn flush(&self) -> Result<(), StoreError>;
}
