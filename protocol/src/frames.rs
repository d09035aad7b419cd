//! The frames of the device WebSocket (`/v1/ws`).
//!
//! Every WebSocket message is one binary message holding one CBOR-encoded
//! frame. A client sends [`ClientFrame`]s: each carries a request id chosen by
//! the client and receives exactly one [`ServerFrame::Response`] with the same
//! id. The relay also pushes [`Push`] frames at any time.

use serde::{Deserialize, Serialize};

use crate::{DeviceId, GroupId, OrgId, ProtocolError, UserId};

/// Opaque bytes (CBOR byte string).
pub type Bytes = serde_bytes::ByteBuf;

/// A frame from a client to the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Envelope version; [`PROTOCOL_VERSION`](crate::limits::PROTOCOL_VERSION).
    pub v: u16,
    /// Request id, chosen by the client, echoed in the response. Unique per
    /// connection; 0 is reserved.
    pub id: u64,
    /// What the client asks for.
    pub req: Request,
}

/// A request. Each gets exactly one [`Response`] (or a [`ProtocolError`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Prove possession of the device's signature key: an Ed25519 signature
    /// over [`auth::challenge_payload`](crate::auth::challenge_payload) for the
    /// nonce the relay pushed in [`Push::Challenge`]. Answer:
    /// [`Response::Authenticated`]. Sent once per connection; a second one is
    /// `Malformed`.
    Authenticate {
        /// The enrolled device.
        device_id: DeviceId,
        /// 64-byte Ed25519 signature.
        signature: Bytes,
    },
    /// Store single-use KeyPackages (TLS-serialised `MlsMessage` of type
    /// `mls_key_package`) and optionally replace the last-resort one.
    /// Answer: [`Response::KeyPackagesStored`].
    UploadKeyPackages {
        /// Single-use KeyPackages, at most
        /// [`MAX_KEY_PACKAGE_UPLOAD`](crate::limits::MAX_KEY_PACKAGE_UPLOAD).
        key_packages: Vec<Bytes>,
        /// A new last-resort KeyPackage, handed out only when the single-use
        /// stock is empty.
        last_resort: Option<Bytes>,
    },
    /// Claim one KeyPackage for every current device of a user, to add the
    /// user to a group. Consumes one single-use KeyPackage per device (or
    /// hands out the device's last-resort one when its stock is empty). The
    /// calling device and devices with no KeyPackage at all are skipped;
    /// `NoKeyPackages` if that leaves none. Answer: [`Response::KeyPackages`].
    ClaimKeyPackages {
        /// The user to add.
        user_id: UserId,
    },
    /// Register a new group whose only member is the calling device, at epoch
    /// 0, with its GroupInfo. Answer: [`Response::GroupCreated`].
    CreateGroup {
        /// The MLS group id (16 bytes).
        group_id: GroupId,
        /// TLS-serialised `MlsMessage` carrying the GroupInfo.
        group_info: Bytes,
    },
    /// Submit a commit for the group's current epoch, atomically with its
    /// Welcome, the new GroupInfo and the roster change it implies.
    /// Answer: [`Response::CommitAccepted`] or `WrongEpoch`.
    Commit(CommitBundle),
    /// Post an MLS `PrivateMessage` with application content, or with a
    /// proposal (a member's self-remove request when leaving), to a group.
    /// Commits are refused here (`Malformed`): they go through `Commit`.
    /// Answer: [`Response::MessageAccepted`], sent only after the message is
    /// durably in every recipient's queue.
    SendMessage {
        /// The group.
        group_id: GroupId,
        /// TLS-serialised `MlsMessage`.
        message: Bytes,
        /// Only for the roster devices of these users (an application
        /// message only, at most [`MAX_TARGET_USERS`] of them): a read
        /// report goes to the senders of the messages read and to the
        /// reader's own devices, not to everyone. Empty (and absent on the
        /// wire): every other roster device.
        ///
        /// [`MAX_TARGET_USERS`]: crate::limits::MAX_TARGET_USERS
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        to: Vec<UserId>,
    },
    /// Remove delivered items from this device's queue. Unknown ids are
    /// ignored (acks are idempotent). Answer: [`Response::Acked`].
    Ack {
        /// Queue ids from [`QueueItem::queue_id`].
        queue_ids: Vec<u64>,
    },
    /// Fetch the latest GroupInfo of a group the device belongs to, or that
    /// another device of the same user belongs to (for joining by external
    /// commit). Answer: [`Response::GroupInfo`].
    GetGroupInfo {
        /// The group.
        group_id: GroupId,
    },
    /// Look up a user: display name, role and current devices.
    /// Answer: [`Response::User`].
    GetUser {
        /// The user.
        user_id: UserId,
    },
    /// Fetch an organisation's trust list: the partner CAs its admins
    /// pinned, signed by the organisation's CA. The relay stores it but
    /// cannot forge it. Answer: [`Response::TrustList`].
    GetTrustList {
        /// The organisation.
        org_id: OrgId,
    },
    /// Fetch an organisation's revocation list: the devices its admins
    /// revoked, signed by the organisation's CA. Answer:
    /// [`Response::Revocations`].
    GetRevocations {
        /// The organisation.
        org_id: OrgId,
    },
    /// Search the directory of these organisations (the device's own and
    /// the ones it trusts) for people whose name, role or user id contains
    /// `query` (case-insensitive; empty lists everyone, up to the limit).
    /// Answer: [`Response::Directory`]; each entry carries the person's
    /// device certificates, which the client verifies before showing them.
    SearchDirectory {
        /// Organisations to search, at most
        /// [`MAX_DIRECTORY_ORGS`](crate::limits::MAX_DIRECTORY_ORGS).
        orgs: Vec<OrgId>,
        /// The search text, at most
        /// [`MAX_NAME_BYTES`](crate::limits::MAX_NAME_BYTES).
        query: String,
    },
    /// Register (or, with `None`, remove) this device's push token: the
    /// opaque handle the platform's push service gave the app. While the
    /// device is offline, the relay tells its push gateway that the device
    /// has new messages: the token only, never content, sender or group.
    /// Answer: [`Response::PushRegistered`].
    RegisterPush {
        /// The token, at most
        /// [`MAX_PUSH_TOKEN_BYTES`](crate::limits::MAX_PUSH_TOKEN_BYTES).
        token: Option<String>,
    },
    /// Liveness check. Answer: [`Response::Pong`].
    Ping,
    /// The calling device, the group's only roster device, leaves it: the
    /// relay deletes the group (nobody is left to commit a removal, and a
    /// new device of the same user must not find it and join it). Answer:
    /// [`Response::GroupClosed`]; `NotMember` if the caller is not in the
    /// roster, `UnknownGroup` if there is no such group, and
    /// `Malformed` while other devices are in it (leave with a
    /// self-remove proposal instead).
    CloseGroup {
        /// The group.
        group_id: GroupId,
    },
    /// The groups the caller's user is in: those whose roster holds an
    /// unrevoked device of the caller's user (the caller included). A new
    /// device uses it to find the groups it can join by external commit.
    /// Answer: [`Response::Groups`].
    ListGroups,
    /// A typing indicator for the group's other roster devices that are
    /// connected now: relayed live as [`Push::Typing`], never stored or
    /// queued, so a device that is offline never sees it. The payload is
    /// opaque to the relay (protocol §14.9: sealed with a key the group's
    /// members derive from the epoch). Answer: [`Response::TypingRelayed`];
    /// `NotMember` if the caller is not in the roster (or its delivery is
    /// stopped), `WrongEpoch` if `epoch` is not the group's,
    /// `TooLarge` over
    /// [`MAX_TYPING_BYTES`](crate::limits::MAX_TYPING_BYTES), and
    /// `RateLimited` (scope `Typing`) past
    /// [`TYPING_PER_WINDOW`](crate::limits::TYPING_PER_WINDOW) per device
    /// and group.
    Typing {
        /// The group.
        group_id: GroupId,
        /// The group's current epoch, whose key sealed the payload.
        epoch: u64,
        /// The sealed indicator.
        payload: Bytes,
    },
    /// Posts an attachment's ciphertext (a blob) to a group the caller is
    /// in: the relay records it (or finds it posted already) and answers
    /// [`Response::BlobTicket`] with how much of it it has; the octets go
    /// over HTTP (`PUT /v1/blobs/{digest}`, protocol §3.6). `NotMember` if
    /// the caller is not in the group's roster, `TooLarge` over the relay's
    /// blob size limit, `QuotaExceeded` past the organisation's storage,
    /// `Unavailable` on a relay that keeps no blobs.
    PostBlob {
        /// The group whose members may fetch it.
        group_id: GroupId,
        /// SHA-256 of the ciphertext: its name at the relay.
        digest: Bytes,
        /// Octets of the ciphertext.
        size: u64,
    },
    /// Asks to fetch a blob: answered [`Response::BlobTicket`] if the
    /// caller is in the roster of a group it was posted to and it is
    /// complete; `NotMember` otherwise (also for a blob that does not
    /// exist: the relay says nothing of blobs to non-members).
    GetBlob {
        /// SHA-256 of the ciphertext.
        digest: Bytes,
    },
    /// Deletes a blob (its sender deleted the message that carried it):
    /// only a device of the user who first posted it may. Answer:
    /// [`Response::BlobDeleted`], also for a blob that is not there;
    /// `NotMember` for anyone else.
    DeleteBlob {
        /// SHA-256 of the ciphertext.
        digest: Bytes,
    },
    /// Posts a blob for the caller's user's own devices (a history sent to
    /// a device being linked, protocol §14.12): like `PostBlob`, but any
    /// device of the user who posted it may fetch it, and no other.
    PostOwnBlob {
        /// SHA-256 of the ciphertext.
        digest: Bytes,
        /// Octets of the ciphertext.
        size: u64,
    },
    /// Writes one slot of a link session, the relay's small mailbox
    /// between two devices of one user (protocol §3.7): a new device
    /// writes its offer under a code it shows, the existing one its answer,
    /// then where the history is. Each slot is written once. Answer:
    /// [`Response::LinkStored`]; `Malformed` for a bad code, a slot written
    /// already, or an answer without an offer; `TooLarge` over
    /// `MAX_LINK_PAYLOAD`; `RateLimited` past the user's open sessions.
    LinkPut {
        /// The code the new device shows (digits).
        code: String,
        /// Which slot.
        slot: LinkSlot,
        /// What the slot holds (opaque to the relay).
        payload: Bytes,
    },
    /// Reads one slot of one of the caller's user's link sessions. Answer:
    /// [`Response::LinkSlot`], empty for a slot not written yet or a code
    /// no device of this user opened (the relay shows no other user's).
    LinkGet {
        /// The code.
        code: String,
        /// Which slot.
        slot: LinkSlot,
    },
}

/// A slot of a link session (protocol §3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LinkSlot {
    /// The new device's offer (its certificate and key share).
    Offer,
    /// The existing device's answer (its certificate and key share).
    Answer,
    /// Where the sealed history is, once it is at the relay.
    Ready,
}

/// A person found in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    /// The user.
    pub user_id: UserId,
    /// The certificates (DER) of the user's current devices: the verified
    /// source of name, role and organisation.
    pub certificates: Vec<Bytes>,
}

/// A document signed by an organisation's CA key (Ed25519 over `body`).
/// The relay stores and serves these; clients verify them against the CA
/// they trust, so the relay cannot alter them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDocument {
    /// The document (CBOR; its format is the client's, see
    /// `cascade-core`'s identity module).
    pub body: Bytes,
    /// Ed25519 signature by the organisation's CA key over `body`.
    pub signature: Bytes,
    /// During a CA rotation: a second Ed25519 signature over `body`, by the
    /// organisation's new CA key, so that devices already on the new CA
    /// accept the document too. Absent otherwise (and then not encoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co_signature: Option<Bytes>,
}

/// A commit with everything that must land with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitBundle {
    /// The group.
    pub group_id: GroupId,
    /// The epoch the commit was made in (the group's current epoch). Must
    /// equal the epoch in the commit's MLS framing header.
    pub epoch: u64,
    /// TLS-serialised `MlsMessage` holding the commit.
    pub commit: Bytes,
    /// TLS-serialised `MlsMessage` holding the Welcome, present exactly when
    /// the commit adds members, except for an external commit (which adds
    /// only its sender and has none). Delivered to every device in `added`.
    pub welcome: Option<Bytes>,
    /// TLS-serialised `MlsMessage` holding the GroupInfo of the new epoch.
    pub group_info: Bytes,
    /// Devices the commit adds to the group.
    pub added: Vec<DeviceId>,
    /// Devices the commit removes from the group.
    pub removed: Vec<DeviceId>,
}

/// A frame from the relay to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The answer to the request with this id.
    Response {
        /// The request id.
        id: u64,
        /// The answer.
        result: Result<Response, ProtocolError>,
    },
    /// Something the relay sends unasked.
    Push(Push),
    /// A frame that could not be attributed to a request (undecodable, a
    /// text message, over [`MAX_FRAME_BYTES`](crate::limits::MAX_FRAME_BYTES),
    /// or with an unsupported envelope version). The connection stays open.
    Rejected(ProtocolError),
}

/// Successful answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The connection is authenticated as this device. The relay then sends
    /// the device's queue, followed by [`Push::QueueDrained`].
    Authenticated {
        /// The device's user.
        user_id: UserId,
        /// How many single-use KeyPackages the relay holds for this device.
        key_package_stock: u32,
        /// Whether a last-resort KeyPackage is stored.
        has_last_resort: bool,
        /// The device's X.509 certificate (DER), once its organisation's CA
        /// has issued it; `None` while issuance is pending. Until it has one
        /// a device cannot make KeyPackages or join groups.
        certificate: Option<Bytes>,
    },
    /// KeyPackages stored.
    KeyPackagesStored {
        /// The device's single-use stock after the upload.
        stock: u32,
    },
    /// One KeyPackage per device of the user.
    KeyPackages {
        /// The claimed KeyPackages.
        devices: Vec<ClaimedKeyPackage>,
    },
    /// The group exists now, at epoch 0.
    GroupCreated,
    /// The commit is sequenced and durably queued; merge it now.
    CommitAccepted {
        /// The group's epoch after this commit.
        epoch: u64,
        /// The commit's sequence number in the group.
        seq: u64,
    },
    /// The message is sequenced and durably queued for every recipient.
    MessageAccepted {
        /// The message's sequence number in the group.
        seq: u64,
    },
    /// The acks are applied.
    Acked,
    /// The latest GroupInfo.
    GroupInfo {
        /// The group's epoch.
        epoch: u64,
        /// TLS-serialised `MlsMessage` holding the GroupInfo.
        group_info: Bytes,
    },
    /// A user's directory entry.
    User(UserEntry),
    /// Directory search results, at most
    /// [`MAX_DIRECTORY_RESULTS`](crate::limits::MAX_DIRECTORY_RESULTS).
    Directory {
        /// The people found.
        entries: Vec<DirectoryEntry>,
    },
    /// An organisation's latest revocation list, if its admins published
    /// one.
    Revocations {
        /// The signed revocation list.
        document: Option<SignedDocument>,
    },
    /// An organisation's latest trust list, if its admins published one.
    TrustList {
        /// The signed trust list.
        document: Option<SignedDocument>,
    },
    /// The push token is stored (or removed).
    PushRegistered,
    /// Answer to `Ping`.
    Pong,
    /// The group is deleted.
    GroupClosed,
    /// Answer to `ListGroups`: group ids, sorted.
    Groups {
        /// The groups.
        group_ids: Vec<GroupId>,
    },
    /// Answer to `Typing`: offered to the group's connected devices.
    TypingRelayed,
    /// Answer to `DeleteBlob`: the blob is gone from the relay's disk.
    BlobDeleted,
    /// Answer to `LinkPut`: the slot is written.
    LinkStored,
    /// Answer to `LinkGet`: what the slot holds, if it is written.
    LinkSlot {
        /// The payload.
        payload: Option<Bytes>,
    },
    /// Answer to `PostBlob` or `GetBlob`: a ticket for the blob's HTTP
    /// endpoint (`Authorization: Bearer <hex of token>`), good for 10
    /// minutes, and how many octets of it the relay has (for an upload,
    /// where to continue; for a download, all of them).
    BlobTicket {
        /// 32 random octets.
        token: Bytes,
        /// Octets the relay has.
        offset: u64,
        /// Octets of the whole blob.
        size: u64,
    },
}

/// A KeyPackage claimed for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedKeyPackage {
    /// The device the KeyPackage belongs to.
    pub device_id: DeviceId,
    /// TLS-serialised `MlsMessage` holding the KeyPackage.
    pub key_package: Bytes,
}

/// A user as the relay's directory knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    /// The user.
    pub user_id: UserId,
    /// The user's organisation.
    pub org_id: OrgId,
    /// Name to show.
    pub display_name: String,
    /// Role in the organisation (e.g. "Staff nurse").
    pub role: String,
    /// The user's current (enrolled, unrevoked) devices.
    pub devices: Vec<DeviceId>,
}

/// Frames the relay sends unasked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Push {
    /// Sent once, first, on every new connection: the nonce to sign.
    Challenge {
        /// 32 random bytes.
        nonce: Bytes,
    },
    /// An item from this device's queue. Items of one group arrive in `seq`
    /// order. The item stays queued until the device acks its `queue_id`.
    Deliver(QueueItem),
    /// Everything that was queued when the connection authenticated has been
    /// sent; later items are live.
    QueueDrained,
    /// The device's single-use KeyPackage stock is low; upload a batch.
    KeyPackagesLow {
        /// Single-use KeyPackages left.
        stock: u32,
    },
    /// The organisation's CA has issued this device's certificate (sent to
    /// a connected device when an admin uploads it).
    CertificateIssued {
        /// The certificate, DER.
        certificate: Bytes,
    },
    /// An organisation published a new revocation list; fetch it with
    /// `GetRevocations` if the device trusts that organisation.
    RevocationsUpdated {
        /// The organisation.
        org_id: OrgId,
    },
    /// The device's organisation published a new trust list; fetch it with
    /// `GetTrustList`.
    TrustListUpdated {
        /// The organisation.
        org_id: OrgId,
    },
    /// Another member device's typing indicator ([`Request::Typing`]):
    /// live only, never queued, and not acknowledged.
    Typing {
        /// The group.
        group_id: GroupId,
        /// The device that sent it, as the relay authenticated it.
        sender: DeviceId,
        /// The epoch whose key sealed the payload.
        epoch: u64,
        /// The sealed indicator.
        payload: Bytes,
    },
}

/// What a queue item carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemKind {
    /// A commit of the group (also echoed to the committer).
    Commit,
    /// An application message, or a proposal, from `SendMessage`.
    Application,
    /// A Welcome into the group; `seq` is that of the commit that added the
    /// device, so the device processes the group from `seq + 1`.
    Welcome,
    /// A notice from the relay about the group, not an MLS message: the
    /// payload is a CBOR [`Notice`] and `sender` is the device it concerns.
    /// It takes a `seq` in the group's order like any other item.
    Notice,
}

/// What an [`ItemKind::Notice`] item tells the group's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// The relay stopped delivering this group to the device named by the
    /// item's `sender` (its backlog in the group is gone; this notice is the
    /// last item of the group it gets). The device is still in the MLS
    /// group: it comes back by rejoining with an external commit (protocol
    /// §12.2), or a member removes it.
    DeliveryStopped {
        /// Why.
        reason: StopReason,
    },
}

/// Why the relay stopped delivering a group to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// The device fell more than `limit` items behind in the group
    /// ([`MAX_QUEUE_LEN`](crate::limits::MAX_QUEUE_LEN)).
    QueueFull {
        /// The lag limit.
        limit: u64,
    },
    /// The device had not connected for `idle_secs` seconds, past the
    /// relay's queue expiry.
    Expired {
        /// How long it had been away, in seconds.
        idle_secs: u64,
    },
}

impl Notice {
    /// The notice's payload bytes (CBOR).
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Reads a notice payload; `None` if it is not one this version knows.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        ciborium::from_reader(payload).ok()
    }
}

/// One item of a device's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// Id for `Ack`; increases along the device's queue.
    pub queue_id: u64,
    /// The group.
    pub group_id: GroupId,
    /// The item's sequence number within the group.
    pub seq: u64,
    /// The device that sent it.
    pub sender: DeviceId,
    /// What `payload` is.
    pub kind: ItemKind,
    /// TLS-serialised `MlsMessage`.
    pub payload: Bytes,
    /// Its sender addressed it to some users only (`SendMessage` with
    /// `to`): clients accept only a read report so (protocol §15 rule 27),
    /// so a member cannot show a message to some members as if to all.
    /// Absent on the wire when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub addressed: bool,
}
