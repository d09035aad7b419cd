//! The sans-IO client engine.
//!
//! The engine owns the device's MLS groups and its SQLite store. It never
//! touches a socket or a clock: the async layer ([`crate::Client`]) feeds it
//! frames from the relay ([`Engine::handle_frame`]), connection changes,
//! commands from the front end and the current time, and drains what it
//! produces: frames to send ([`Engine::poll_transmit`]), events for the front
//! end ([`Engine::poll_event`]) and when it next wants to be woken
//! ([`Engine::poll_timeout`]). Tests drive it deterministically.
//!
//! The delivery rules of DESIGN.md live here:
//! - operations (sending, group changes) go into a durable outbox first and
//!   are worked off one at a time while connected and caught up;
//! - an own commit is merged only after the relay accepted it (its response
//!   or its echo in the queue); on `WrongEpoch` the pending commit is
//!   discarded, the queue is processed and the operation retried;
//! - every queue item is processed in one SQLite transaction together with
//!   the group's sequence cursor, so a crash never applies an item twice or
//!   loses one, and duplicates are dropped by sequence number and message id.

use std::collections::{HashMap, VecDeque};

use cascade_protocol::limits::{KEY_PACKAGE_BATCH, KEY_PACKAGE_LOW_WATER, MAX_MLS_MESSAGE_BYTES};
use cascade_protocol::{
    auth, encode_client_frame, http::EnrolResponse, ClientFrame, CommitBundle, DeviceId, GroupId,
    ItemKind, ProtocolError, Push, QueueItem, Request, Response, ServerFrame, UserId,
};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use serde::{Deserialize, Serialize};

use crate::content::{Body, Content, MessageId, MAX_TEXT_BYTES};

/// Set once this device has asked the relay for its user's groups (and
/// queued joining those it is not in).
const GROUPS_LISTED_KEY: &str = "groups_listed";

/// How far ahead of this device's clock a sender's timestamp may be.
const MAX_CLOCK_SKEW_MS: u64 = 24 * 3600 * 1000;

/// Most message ids one delivery receipt carries.
const MAX_RECEIPT_IDS: usize = 500;

/// How long live messages wait for their delivery receipt, so that a
/// burst is confirmed in one.
pub const RECEIPT_DELAY_MS: u64 = 500;

/// Delivery receipts are sent only in conversations of at most this many
/// people. Every receipt is an MLS message to the whole group, so in a
/// group of n each message would cost n² deliveries; large cascades track
/// acknowledgement explicitly instead (alerts), and their messages stay
/// "sent".
pub const MAX_RECEIPT_GROUP_USERS: usize = 32;
use crate::credential::{
    capabilities, make_credential, member_identity, verify_member, MemberIdentity,
};
use crate::error::{CoreError, Result};
use crate::identity::{read_device_cert, verify_revocations, verify_trust_list, TrustAnchor};
use crate::store::{
    ClientStore, Conversation, ConversationState, DeliveryState, Identity, Message, OutboxEntry,
    SqliteStore,
};

/// The one ciphersuite Cascade uses.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// How many past epochs' secrets a group keeps, so late application messages
/// still decrypt after a commit.
pub const MAX_PAST_EPOCHS: usize = 5;

/// Delay before retrying an operation the relay refused for a transient
/// reason (queue full, rate limited, internal error).
const RETRY_DELAY_MS: u64 = 2_000;

/// How long an operation refused with `WrongEpoch` waits for the commits
/// that bring this device to the group's epoch before it gives up.
const WAIT_EPOCH_MS: u64 = 60_000;

const KV_PENDING_SIGNATURE_KEY: &str = "pending_signature_key";
const KV_TRUST_LIST: &str = "trust_list";
const KV_REVOCATIONS: &str = "revocations:";

/// What the engine tells the front end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The connection to the relay changed.
    Connection(ConnectionState),
    /// Everything queued at the relay while offline has been processed.
    Synced,
    /// A conversation appeared, was renamed, or its state changed.
    ConversationUpdated(GroupId),
    /// A message arrived (or this device sent one).
    Message(Message),
    /// A sent message's delivery state changed.
    DeliveryState {
        /// The conversation.
        group_id: GroupId,
        /// The message.
        message_id: MessageId,
        /// Its new state.
        state: DeliveryState,
    },
    /// Members joined or left a conversation.
    MembershipChanged {
        /// The conversation.
        group_id: GroupId,
        /// Users whose devices were added.
        added: Vec<UserId>,
        /// Users whose devices were removed.
        removed: Vec<UserId>,
    },
    /// Answer to [`Engine::request_user`]: a user's current devices as the
    /// relay lists them (`None` if the relay does not know the user).
    UserDevices {
        /// The token `request_user` returned.
        request: u64,
        /// The devices.
        devices: Option<Vec<DeviceId>>,
    },
    /// Answer to [`Engine::search_directory`]: verified people, also
    /// cached for offline search.
    DirectoryResults {
        /// The token `search_directory` returned.
        request: u64,
        /// The people found.
        people: Vec<crate::store::Person>,
    },
    /// This device has no certificate from its organisation yet: it can
    /// connect, but not join or create conversations until an admin issues
    /// it.
    CertificatePending,
    /// The device's certificate arrived and verified.
    CertificateReceived,
    /// The organisation's trust list changed: the set of partner
    /// organisations whose members this device accepts.
    TrustUpdated {
        /// The partner organisations now trusted.
        partners: Vec<cascade_protocol::OrgId>,
    },
    /// A queued operation could not be carried out and was dropped.
    OperationFailed {
        /// The conversation, if the operation concerned one.
        group_id: Option<GroupId>,
        /// Why, without content.
        reason: String,
    },
}

/// Connection state as the front end shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionState {
    /// No connection to the relay; work is queued locally.
    Offline,
    /// Connected, authenticating and catching up.
    Connecting,
    /// Connected and caught up.
    Online,
}

/// A member of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The user.
    pub user_id: UserId,
    /// One of the user's devices (one MLS leaf).
    pub device_id: DeviceId,
    /// Whether this is the local device.
    pub is_self: bool,
    /// The user's name, as their organisation's CA certified it.
    pub display_name: String,
    /// The user's role, as certified.
    pub role: String,
    /// The organisation that certified the device.
    pub org_id: cascade_protocol::OrgId,
    /// When the device's certificate expires, seconds since the Unix epoch.
    pub certificate_expires: i64,
}

/// An operation waiting in the durable outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Op {
    /// Register a locally created group with the relay.
    CreateGroup { group_id: GroupId },
    /// Encrypt and send an application message.
    Send {
        group_id: GroupId,
        message_id: MessageId,
        #[serde(with = "serde_bytes")]
        content: Vec<u8>,
    },
    /// Add every device of these users.
    AddMembers {
        group_id: GroupId,
        users: Vec<UserId>,
    },
    /// Remove every device of these users.
    RemoveMembers {
        group_id: GroupId,
        users: Vec<UserId>,
    },
    /// Remove these devices (revoked by their organisation).
    RemoveDevices {
        group_id: GroupId,
        devices: Vec<DeviceId>,
    },
    /// Replace this device's credential in the group with its renewed
    /// certificate (a self-update commit).
    UpdateCredential { group_id: GroupId },
    /// Ask the other members to remove this device.
    Leave { group_id: GroupId },
    /// Commit proposals received from others (a member's leave request).
    CommitProposals { group_id: GroupId },
    /// Join a group this user is in from this (new) device, by external
    /// commit.
    JoinExternal { group_id: GroupId },
}

impl Op {
    fn group_id(&self) -> GroupId {
        match self {
            Op::CreateGroup { group_id }
            | Op::Send { group_id, .. }
            | Op::AddMembers { group_id, .. }
            | Op::RemoveMembers { group_id, .. }
            | Op::RemoveDevices { group_id, .. }
            | Op::UpdateCredential { group_id }
            | Op::Leave { group_id }
            | Op::CommitProposals { group_id }
            | Op::JoinExternal { group_id } => *group_id,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        ciborium::into_writer(self, &mut b).expect("serialising to a Vec cannot fail");
        b
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Offline,
    AwaitingChallenge,
    Authenticating,
    Syncing,
    Ready,
}

/// Where the operation at the head of the outbox stands.
enum Step {
    /// Waiting for the relay's answer to a request.
    Awaiting(u64),
    /// Fetching the organisation's trust list before claiming, so that a
    /// partner pinned a moment ago is accepted.
    RefreshingTrust(u64),
    /// Claiming KeyPackages, one user at a time.
    Claiming {
        req: u64,
        next: usize,
        claimed: Vec<(DeviceId, UserId, KeyPackage)>,
    },
    /// The relay said the group is at `current`; retry once we are there,
    /// or give up at `deadline` (the commits that move us there never came:
    /// this device is out of step with the group).
    WaitEpoch {
        current: u64,
        claimed: Vec<(DeviceId, UserId, KeyPackage)>,
        deadline: u64,
    },
    /// Retry after a transient refusal.
    RetryAt(u64),
}

struct InFlight {
    op_id: i64,
    op: Op,
    step: Step,
    /// KeyPackages claimed for an add, kept across epoch retries.
    claimed: Vec<(DeviceId, UserId, KeyPackage)>,
}

enum Pending {
    Directory,
    Push,
    User,
    Auth,
    /// `gate`: fetched right after authentication, before the backlog is
    /// processed (see [`Engine::gate`]).
    TrustList {
        gate: bool,
    },
    Revocations(cascade_protocol::OrgId, bool),
    UploadKeyPackages,
    Ack,
    Op,
    /// `ListGroups`, asked once by a device to find its user's groups.
    Groups,
}

/// The sans-IO engine over a [`ClientStore`]. See the module documentation.
pub struct Engine<S: ClientStore = SqliteStore> {
    store: S,
    identity: Option<Identity>,
    signer: Option<SignatureKeyPair>,
    conn: Conn,
    next_request: u64,
    pending: HashMap<u64, Pending>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    acks: Vec<u64>,
    inflight: Option<InFlight>,
    uploading_key_packages: bool,
    /// The CAs whose members this device accepts: its own organisation's,
    /// then the partners its organisation's trust list pins.
    anchors: Vec<TrustAnchor>,
    /// After authentication: answers still awaited (trust list, revocation
    /// lists) and the pushes held until then.
    gate: Option<(usize, Vec<Push>)>,
    /// Devices revoked by the organisations we trust, from their signed
    /// revocation lists.
    revoked: HashMap<cascade_protocol::OrgId, std::collections::HashSet<DeviceId>>,
    /// Others' messages received but not yet confirmed with a delivery
    /// receipt, in arrival order. Flushed into the outbox as one receipt
    /// per conversation when the backlog is drained, and for live messages
    /// [`RECEIPT_DELAY_MS`] after the first unconfirmed one arrived (so a
    /// burst costs one receipt, not one each). Kept in memory: a crash in
    /// between only costs the sender the "delivered" mark.
    receipts_due: Vec<(GroupId, MessageId)>,
    /// When the due receipts are flushed, while live messages wait.
    receipts_at: Option<u64>,
}

fn now_check(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(CoreError::Invalid("empty message".into()));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(CoreError::Invalid(format!(
            "message longer than {MAX_TEXT_BYTES} bytes"
        )));
    }
    Ok(())
}

fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .capabilities(capabilities())
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .build()
}

fn mls_bytes(m: &MlsMessageOut) -> Result<Vec<u8>> {
    m.tls_serialize_detached().map_err(CoreError::mls)
}

fn mls_in(bytes: &[u8]) -> Result<MlsMessageIn> {
    MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| CoreError::Decode("MLS message".into()))
}

/// 30 digits for one user's device keys: an iterated SHA-256 over the user
/// id and the sorted (device, key) pairs (iterated so that finding another
/// key set with the same digits is costly, as in Signal's safety numbers).
fn safety_digits(user: &UserId, mut devices: Vec<(DeviceId, Vec<u8>)>) -> String {
    use sha2::{Digest, Sha256};
    devices.sort();
    let mut input = b"cascade-safety-number-v1\0".to_vec();
    input.extend_from_slice(user.as_str().as_bytes());
    input.push(0);
    for (d, k) in &devices {
        input.extend_from_slice(d.as_bytes());
        input.extend_from_slice(&(k.len() as u32).to_be_bytes());
        input.extend_from_slice(k);
    }
    let mut h = Sha256::digest(&input).to_vec();
    for _ in 0..1023 {
        let mut next = Sha256::new();
        next.update(&h);
        next.update(&input);
        h = next.finalize().to_vec();
    }
    h[..30]
        .chunks(5)
        .map(|c| {
            let v = c.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
            format!("{:05}", v % 100_000)
        })
        .collect()
}

/// The safety number of two users: both halves, lower user id first, in
/// groups of five digits.
pub fn safety_number(
    a: (&UserId, Vec<(DeviceId, Vec<u8>)>),
    b: (&UserId, Vec<(DeviceId, Vec<u8>)>),
) -> String {
    let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let digits = safety_digits(first.0, first.1) + &safety_digits(second.0, second.1);
    digits
        .as_bytes()
        .chunks(5)
        .map(|c| std::str::from_utf8(c).expect("ASCII digits"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether processing failed only because this exact ciphertext was already
/// decrypted (its ratchet secret is consumed and deleted).
///
/// openmls 0.9 keeps the inner error types crate-private, so the reason is
/// recognised by its message; the replay test in `cascade-tests` pins it.
fn is_replay<E>(e: &ProcessMessageError<E>) -> bool {
    match e {
        ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(inner)) => inner
            .to_string()
            .contains("deleted to preserve forward secrecy"),
        _ => false,
    }
}

fn openmls_group_id(g: &GroupId) -> openmls::group::GroupId {
    openmls::group::GroupId::from_slice(g.as_bytes())
}

fn bytes(v: Vec<u8>) -> cascade_protocol::Bytes {
    cascade_protocol::Bytes::from(v)
}

impl<S: ClientStore> Engine<S> {
    /// Opens the engine over a store. Works before enrolment too (only
    /// enrolment is possible then).
    pub fn new(store: S) -> Result<Self> {
        let identity = store.identity()?;
        let signer = match &identity {
            Some(id) => Some(
                SignatureKeyPair::read(
                    store.mls().storage(),
                    &id.signature_key,
                    CIPHERSUITE.signature_algorithm(),
                )
                .ok_or_else(|| CoreError::Decode("device signature key missing".into()))?,
            ),
            None => None,
        };
        Ok(Self {
            store,
            identity,
            signer,
            conn: Conn::Offline,
            next_request: 1,
            pending: HashMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            acks: Vec::new(),
            inflight: None,
            uploading_key_packages: false,
            anchors: Vec::new(),
            gate: None,
            revoked: HashMap::new(),
            receipts_due: Vec::new(),
            receipts_at: None,
        }
        .with_anchors())
    }

    /// Loads the trust anchors from the identity and the stored trust list.
    fn with_anchors(mut self) -> Self {
        self.anchors = self.load_anchors().unwrap_or_else(|e| {
            tracing::error!(error = %e, "trust anchors could not be loaded");
            Vec::new()
        });
        self.revoked = self.load_revocations().unwrap_or_else(|e| {
            tracing::error!(error = %e, "revocation lists could not be loaded");
            HashMap::new()
        });
        self
    }

    /// A signed document (trust or revocation list) kept under `key`.
    fn stored_document(&self, key: &str) -> Result<Option<cascade_protocol::SignedDocument>> {
        self.store
            .kv_get(key)?
            .map(|b| {
                ciborium::from_reader(b.as_slice())
                    .map_err(|_| CoreError::Decode("stored signed document".into()))
            })
            .transpose()
    }

    /// Keeps a signed document under `key`.
    fn store_document(&self, key: &str, doc: &cascade_protocol::SignedDocument) -> Result<()> {
        let mut b = Vec::new();
        ciborium::into_writer(doc, &mut b).expect("serialising to a Vec cannot fail");
        self.store.kv_set(key, &b)
    }

    fn load_revocations(
        &self,
    ) -> Result<HashMap<cascade_protocol::OrgId, std::collections::HashSet<DeviceId>>> {
        let mut out = HashMap::new();
        for anchor in &self.anchors {
            let Some(doc) = self.stored_document(&format!("{KV_REVOCATIONS}{}", anchor.org))?
            else {
                continue;
            };
            let list = verify_revocations(&doc, anchor)?;
            out.insert(anchor.org.clone(), list.devices.into_iter().collect());
        }
        Ok(out)
    }

    /// Asks for the revocation list of every organisation we trust.
    /// Returns how many requests went out.
    fn fetch_revocations(&mut self, gate: bool) -> usize {
        let orgs = self.trusted_orgs();
        for org_id in &orgs {
            self.request(
                Request::GetRevocations {
                    org_id: org_id.clone(),
                },
                Pending::Revocations(org_id.clone(), gate),
            );
        }
        orgs.len()
    }

    /// One of the answers the backlog waits for arrived (`more` further
    /// requests went out because of it); once none is outstanding, the held
    /// pushes are processed in order.
    fn gate_answered(&mut self, more: usize, now: u64) -> Result<()> {
        let Some((outstanding, _)) = &mut self.gate else {
            return Ok(());
        };
        *outstanding = *outstanding + more - 1;
        if *outstanding > 0 {
            return Ok(());
        }
        let (_, held) = self.gate.take().expect("checked");
        let mut first_error = None;
        for push in held {
            // One bad item must not hold back the rest (or QueueDrained).
            if let Err(e) = self.handle_push(push, now) {
                tracing::warn!(error = %e, "a held push could not be handled");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Verifies and stores an organisation's revocation list, then queues
    /// the removal of its revoked devices from every conversation we share.
    fn handle_revocations(
        &mut self,
        org_id: &cascade_protocol::OrgId,
        document: Option<cascade_protocol::SignedDocument>,
        now: u64,
    ) -> Result<()> {
        let Some(doc) = document else {
            return Ok(());
        };
        let Some(anchor) = self.anchors.iter().find(|a| &a.org == org_id).cloned() else {
            return Ok(());
        };
        let list = match verify_revocations(&doc, &anchor) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, org = %org_id, "revocation list refused");
                return Ok(());
            }
        };
        let key = format!("{KV_REVOCATIONS}{org_id}");
        if let Some(old) = self.stored_document(&key)? {
            if verify_revocations(&old, &anchor).is_ok_and(|o| o.serial >= list.serial) {
                return Ok(());
            }
        }
        self.store_document(&key, &doc)?;
        self.revoked
            .insert(org_id.clone(), list.devices.iter().copied().collect());
        self.remove_unacceptable_members(now)
    }

    /// Queues, for every active conversation, the removal of members this
    /// device no longer accepts: devices their organisation revoked, and
    /// members of organisations no longer trusted. Every member does this;
    /// one commit wins and the others find nothing left to remove.
    fn remove_unacceptable_members(&mut self, now: u64) -> Result<()> {
        let trusted = self.trusted_orgs();
        let me = self.id()?.0.device_id;
        let mut queued = false;
        for conv in self.conversations()? {
            if conv.state != ConversationState::Active {
                continue;
            }
            let Ok(members) = self.members(&conv.group_id) else {
                continue;
            };
            let devices: Vec<DeviceId> = members
                .iter()
                .filter(|m| {
                    m.device_id != me
                        && (self.is_revoked_device(&m.org_id, &m.device_id)
                            || !trusted.contains(&m.org_id))
                })
                .map(|m| m.device_id)
                .collect();
            if !devices.is_empty() {
                self.store.push_op(
                    &Op::RemoveDevices {
                        group_id: conv.group_id,
                        devices,
                    }
                    .encode(),
                )?;
                queued = true;
            }
        }
        if queued {
            self.drive(now)?;
        }
        Ok(())
    }

    fn is_revoked_device(&self, org: &cascade_protocol::OrgId, device: &DeviceId) -> bool {
        self.revoked.get(org).is_some_and(|d| d.contains(device))
    }

    fn load_anchors(&self) -> Result<Vec<TrustAnchor>> {
        let Some(identity) = &self.identity else {
            return Ok(Vec::new());
        };
        if identity.anchor.is_empty() {
            return Ok(Vec::new());
        }
        let own = TrustAnchor::from_der(&identity.anchor)?;
        let mut anchors = vec![own];
        if let Some(doc) = self.stored_document(KV_TRUST_LIST)? {
            match self.verify_own_trust_list(&doc) {
                Ok((_, listed)) => {
                    for a in listed {
                        if !anchors.contains(&a) {
                            anchors.push(a);
                        }
                    }
                }
                // Our own organisation stays trusted whatever the stored
                // list's state; the next fetched list replaces it.
                Err(e) => tracing::warn!(error = %e, "stored trust list no longer verifies"),
            }
        }
        Ok(anchors)
    }

    /// Verifies our organisation's trust list: signed by our CA, or, right
    /// after a CA rotation, by the previous one.
    fn verify_own_trust_list(
        &self,
        doc: &cascade_protocol::SignedDocument,
    ) -> Result<(crate::identity::TrustList, Vec<TrustAnchor>)> {
        let (identity, _) = self.id()?;
        let own = TrustAnchor::from_der(&identity.anchor)?;
        match verify_trust_list(doc, &own) {
            Ok(v) => Ok(v),
            Err(e) => match &identity.previous_anchor {
                Some(prev) => Ok(verify_trust_list(doc, &TrustAnchor::from_der(prev)?)?),
                None => Err(e.into()),
            },
        }
    }

    /// The organisations whose members this device accepts (its own first).
    pub fn trusted_orgs(&self) -> Vec<cascade_protocol::OrgId> {
        self.anchors.iter().map(|a| a.org.clone()).collect()
    }

    fn certificate(&self) -> Result<&[u8]> {
        let (identity, _) = self.id()?;
        identity
            .certificate
            .as_deref()
            .map(|c| c.as_slice())
            .ok_or(CoreError::CertificatePending)
    }

    /// Verifies and records this device's certificate. When it replaces an
    /// earlier one (a renewal), the device's leaf in every conversation is
    /// updated to carry it, and new KeyPackages are uploaded (the relay
    /// withdrew the old ones).
    fn accept_certificate(&mut self, der: &[u8], now: u64) -> Result<()> {
        let (identity, _) = self.id()?;
        if identity.certificate.as_deref().map(|c| c.as_slice()) == Some(der) {
            return Ok(());
        }
        let renewal = identity.certificate.is_some();
        let never = |_: &cascade_protocol::OrgId, _: &DeviceId| false;
        let own = TrustAnchor::from_der(&identity.anchor)?;
        let when = (now / 1000) as i64;
        // Issued by our CA, or by its successor during a rotation (vouched
        // for in our organisation's signed trust list): then the successor
        // becomes our anchor.
        let (m, new_anchor) = match crate::identity::verify_device_cert(
            der,
            std::slice::from_ref(&own),
            when,
            &never,
        ) {
            Ok(m) => (m, None),
            Err(e) => {
                let successors: Vec<TrustAnchor> = self
                    .anchors
                    .iter()
                    .filter(|a| a.org == own.org && **a != own)
                    .cloned()
                    .collect();
                let found = successors.iter().find_map(|a| {
                    crate::identity::verify_device_cert(der, std::slice::from_ref(a), when, &never)
                        .ok()
                        .map(|m| (m, a.clone()))
                });
                match found {
                    Some((m, a)) => (m, Some(a)),
                    None => return Err(e.into()),
                }
            }
        };
        if m.claims.user != identity.user_id
            || m.claims.device != identity.device_id
            || m.signature_key != identity.signature_key
        {
            return Err(CoreError::Credential(
                "the certificate is for another device".into(),
            ));
        }
        let mut updated = identity.clone();
        updated.display_name = m.claims.display_name;
        updated.role = m.claims.role;
        updated.certificate = Some(serde_bytes::ByteBuf::from(der.to_vec()));
        if let Some(next) = new_anchor {
            updated.previous_anchor = Some(serde_bytes::ByteBuf::from(updated.anchor.clone()));
            updated.anchor = next.cert_der;
        }
        let tx = self.store.transaction()?;
        self.store.set_identity(&updated)?;
        if renewal {
            for conv in self.store.conversations(&|_| 0)? {
                if conv.state == ConversationState::Active {
                    self.store.push_op(
                        &Op::UpdateCredential {
                            group_id: conv.group_id,
                        }
                        .encode(),
                    )?;
                }
            }
        }
        tx.commit()?;
        self.identity = Some(updated);
        self.events.push_back(Event::CertificateReceived);
        if renewal && matches!(self.conn, Conn::Syncing | Conn::Ready) {
            self.upload_key_packages(true)?;
        }
        Ok(())
    }

    /// Verifies a member entering our view and returns who they are.
    fn verify(
        &self,
        credential: &Credential,
        signature_key: &[u8],
        now: u64,
    ) -> Result<MemberIdentity> {
        let m = verify_member(
            credential,
            signature_key,
            &self.anchors,
            (now / 1000) as i64,
            &|org, device| self.is_revoked_device(org, device),
        )?;
        Ok(MemberIdentity {
            user: m.claims.user,
            device: m.claims.device,
        })
    }

    /// The enrolled identity, if enrolled.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    fn id(&self) -> Result<(&Identity, &SignatureKeyPair)> {
        match (&self.identity, &self.signer) {
            (Some(i), Some(s)) => Ok((i, s)),
            _ => Err(CoreError::NotEnrolled),
        }
    }

    // ----- enrolment -------------------------------------------------------

    /// First half of enrolment: makes (or reuses) the device's signature key
    /// pair and returns its public key, to send to the relay with the token.
    pub fn begin_enrolment(&mut self) -> Result<Vec<u8>> {
        if self.identity.is_some() {
            return Err(CoreError::AlreadyEnrolled);
        }
        if let Some(pk) = self.store.kv_get(KV_PENDING_SIGNATURE_KEY)? {
            return Ok(pk);
        }
        let kp =
            SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(CoreError::mls)?;
        kp.store(self.store.mls().storage())?;
        self.store.kv_set(KV_PENDING_SIGNATURE_KEY, kp.public())?;
        Ok(kp.public().to_vec())
    }

    /// Second half of enrolment: records what the relay assigned and the
    /// organisation's CA certificate (DER), which the caller has checked
    /// against the fingerprint in the enrolment code.
    pub fn complete_enrolment(
        &mut self,
        server_url: &str,
        resp: EnrolResponse,
        anchor: &[u8],
    ) -> Result<()> {
        let own = TrustAnchor::from_der(anchor)?;
        if own.org != resp.org_id {
            return Err(CoreError::Enrolment(
                "the CA certificate is not the organisation's".into(),
            ));
        }
        let pk = self
            .store
            .kv_get(KV_PENDING_SIGNATURE_KEY)?
            .ok_or(CoreError::NotEnrolled)?;
        let signer = SignatureKeyPair::read(
            self.store.mls().storage(),
            &pk,
            CIPHERSUITE.signature_algorithm(),
        )
        .ok_or_else(|| CoreError::Decode("device signature key missing".into()))?;
        let identity = Identity {
            server_url: server_url.trim_end_matches('/').to_owned(),
            user_id: resp.user_id,
            org_id: resp.org_id,
            device_id: resp.device_id,
            display_name: resp.display_name,
            role: resp.role,
            signature_key: pk,
            anchor: anchor.to_vec(),
            certificate: None,
            previous_anchor: None,
        };
        self.store.set_identity(&identity)?;
        self.identity = Some(identity);
        self.signer = Some(signer);
        self.anchors = self.load_anchors()?;
        Ok(())
    }

    // ----- IO inputs -------------------------------------------------------

    /// The socket to the relay is open; the engine waits for the challenge.
    pub fn handle_connected(&mut self) {
        self.conn = Conn::AwaitingChallenge;
        self.pending.clear();
        self.events
            .push_back(Event::Connection(ConnectionState::Connecting));
    }

    /// The socket closed. In-flight work is retried on the next connection.
    pub fn handle_disconnected(&mut self) {
        if self.conn != Conn::Offline {
            self.events
                .push_back(Event::Connection(ConnectionState::Offline));
        }
        self.conn = Conn::Offline;
        self.pending.clear();
        self.acks.clear();
        self.transmit.clear();
        self.gate = None; // unacked items come again on the next connection
        self.uploading_key_packages = false;
        if let Some(f) = &mut self.inflight {
            // A commit sent but unanswered may or may not have landed; the
            // queue will tell (echo) before the operation runs again.
            f.step = Step::RetryAt(0);
        }
    }

    /// A binary frame from the relay.
    pub fn handle_frame(&mut self, frame: &[u8], now: u64) -> Result<()> {
        let frame = cascade_protocol::decode_server_frame(frame)
            .map_err(|_| CoreError::Decode("server frame".into()))?;
        match frame {
            ServerFrame::Push(push) => self.handle_push(push, now)?,
            ServerFrame::Response { id, result } => self.handle_response(id, result, now)?,
            ServerFrame::Rejected(e) => {
                tracing::warn!(error = %e, "relay rejected a frame");
            }
        }
        self.drive(now)
    }

    /// Time passed; resumes delayed retries.
    pub fn handle_timeout(&mut self, now: u64) -> Result<()> {
        if self.receipts_at.is_some_and(|t| t <= now) {
            self.flush_receipts(now)?;
        }
        self.drive(now)
    }

    // ----- IO outputs ------------------------------------------------------

    /// The next frame to send to the relay.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if !self.acks.is_empty() && matches!(self.conn, Conn::Syncing | Conn::Ready) {
            let ids = std::mem::take(&mut self.acks);
            self.request(Request::Ack { queue_ids: ids }, Pending::Ack);
        }
        self.transmit.pop_front()
    }

    /// The next event for the front end.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the engine next wants [`Engine::handle_timeout`], in ms since the
    /// Unix epoch.
    pub fn poll_timeout(&self) -> Option<u64> {
        let op = match &self.inflight {
            Some(InFlight {
                step: Step::RetryAt(t),
                ..
            }) if *t > 0 => Some(*t),
            Some(InFlight {
                step: Step::WaitEpoch { deadline, .. },
                ..
            }) => Some(*deadline),
            _ => None,
        };
        match (op, self.receipts_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the connection is authenticated and caught up.
    pub fn is_online(&self) -> bool {
        self.conn == Conn::Ready
    }

    /// Whether there is nothing left to do: online, caught up, the outbox
    /// empty and no request outstanding (KeyPackage uploads, trust list).
    pub fn is_idle(&self) -> Result<bool> {
        Ok(self.is_online()
            && self.receipts_due.is_empty()
            && self.store.outbox_len()? == 0
            && self.pending.values().all(|p| matches!(p, Pending::Ack)))
    }

    fn request(&mut self, req: Request, pending: Pending) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(id, pending);
        self.transmit.push_back(encode_client_frame(&ClientFrame {
            v: cascade_protocol::limits::PROTOCOL_VERSION,
            id,
            req,
        }));
        id
    }

    // ----- commands --------------------------------------------------------

    /// Creates a conversation with this device as its only member. Members
    /// are added with [`Engine::add_members`]. Works offline.
    pub fn create_group(&mut self, name: &str, now: u64) -> Result<GroupId> {
        let (_, signer) = self.id()?;
        let certificate = self.certificate()?.to_vec();
        let name = name.trim();
        if name.is_empty() || name.len() > cascade_protocol::limits::MAX_NAME_BYTES {
            return Err(CoreError::Invalid("conversation name".into()));
        }
        let group_id = GroupId::random();
        let credential = CredentialWithKey {
            credential: make_credential(&certificate),
            signature_key: signer.public().into(),
        };
        let tx = self.store.transaction()?;
        let provider = self.store.mls();
        MlsGroup::new_with_group_id(
            &provider,
            signer,
            &create_config(),
            openmls_group_id(&group_id),
            credential,
        )
        .map_err(CoreError::mls)?;
        self.store.insert_conversation(&group_id, name, 0, now)?;
        self.store.push_op(&Op::CreateGroup { group_id }.encode())?;
        self.push_meta_op(&group_id, name, now)?;
        tx.commit()?;
        self.events.push_back(Event::ConversationUpdated(group_id));
        self.drive(now)?;
        Ok(group_id)
    }

    fn push_meta_op(&self, group_id: &GroupId, name: &str, now: u64) -> Result<()> {
        let content = Content {
            id: MessageId::random(),
            sent_at: now,
            body: Body::GroupMeta { name: name.into() },
        };
        self.store.push_op(
            &Op::Send {
                group_id: *group_id,
                message_id: content.id,
                content: content.encode(),
            }
            .encode(),
        )?;
        Ok(())
    }

    /// Adds every current device of each user to the conversation. Queued;
    /// the result arrives as [`Event::MembershipChanged`] or
    /// [`Event::OperationFailed`].
    pub fn add_members(&mut self, group_id: &GroupId, users: Vec<UserId>, now: u64) -> Result<()> {
        self.require_active(group_id)?;
        if users.is_empty() {
            return Err(CoreError::Invalid("no users to add".into()));
        }
        self.store.push_op(
            &Op::AddMembers {
                group_id: *group_id,
                users,
            }
            .encode(),
        )?;
        self.drive(now)
    }

    /// Removes every device of each user from the conversation. Queued.
    pub fn remove_members(
        &mut self,
        group_id: &GroupId,
        users: Vec<UserId>,
        now: u64,
    ) -> Result<()> {
        self.require_active(group_id)?;
        self.store.push_op(
            &Op::RemoveMembers {
                group_id: *group_id,
                users,
            }
            .encode(),
        )?;
        self.drive(now)
    }

    /// Leaves the conversation: this device asks the others to remove it,
    /// and stops sending at once. Queued.
    pub fn leave(&mut self, group_id: &GroupId, now: u64) -> Result<()> {
        self.require_active(group_id)?;
        let tx = self.store.transaction()?;
        self.store.push_op(
            &Op::Leave {
                group_id: *group_id,
            }
            .encode(),
        )?;
        self.store
            .set_conversation_state(group_id, ConversationState::Leaving)?;
        tx.commit()?;
        self.events.push_back(Event::ConversationUpdated(*group_id));
        self.drive(now)
    }

    /// Sends a text message. It is stored in history at once (state
    /// `Sending`) and sent when connected; returns its id.
    pub fn send_text(&mut self, group_id: &GroupId, text: &str, now: u64) -> Result<MessageId> {
        now_check(text)?;
        self.require_active(group_id)?;
        let (identity, _) = self.id()?;
        let content = Content {
            id: MessageId::random(),
            sent_at: now,
            body: Body::Text { text: text.into() },
        };
        let message = Message {
            id: content.id,
            group_id: *group_id,
            sender: identity.user_id.clone(),
            sender_device: identity.device_id,
            sent_at: now,
            seq: None,
            text: Some(text.into()),
            kind: "text".into(),
            state: DeliveryState::Sending,
        };
        let encoded = content.encode();
        if encoded.len() > MAX_MLS_MESSAGE_BYTES / 2 {
            return Err(CoreError::Invalid("message too large".into()));
        }
        let tx = self.store.transaction()?;
        self.store.insert_message(&message, now, false)?;
        self.store.push_op(
            &Op::Send {
                group_id: *group_id,
                message_id: content.id,
                content: encoded,
            }
            .encode(),
        )?;
        tx.commit()?;
        self.events.push_back(Event::Message(message));
        self.drive(now)?;
        Ok(content.id)
    }

    /// Sends again a message of ours that the relay refused (state
    /// `Failed`), with the same message id so that no receiver can show it
    /// twice. Encrypted afresh at the group's epoch when its turn comes.
    pub fn retry_message(
        &mut self,
        group_id: &GroupId,
        message_id: &MessageId,
        now: u64,
    ) -> Result<()> {
        self.require_active(group_id)?;
        let (identity, _) = self.id()?;
        let message = self
            .store
            .message(message_id)?
            .filter(|m| &m.group_id == group_id && m.sender_device == identity.device_id)
            .ok_or_else(|| CoreError::Invalid("no such message of this device".into()))?;
        if message.state != DeliveryState::Failed {
            return Err(CoreError::Invalid(
                "only a failed message can be retried".into(),
            ));
        }
        let text = message
            .text
            .ok_or_else(|| CoreError::Invalid("only a text message can be retried".into()))?;
        let content = Content {
            id: *message_id,
            sent_at: message.sent_at,
            body: Body::Text { text },
        };
        let tx = self.store.transaction()?;
        self.store
            .set_message_state(message_id, DeliveryState::Sending, None)?;
        self.store.push_op(
            &Op::Send {
                group_id: *group_id,
                message_id: *message_id,
                content: content.encode(),
            }
            .encode(),
        )?;
        tx.commit()?;
        self.events.push_back(Event::DeliveryState {
            group_id: *group_id,
            message_id: *message_id,
            state: DeliveryState::Sending,
        });
        self.drive(now)
    }

    fn require_active(&self, group_id: &GroupId) -> Result<()> {
        match self.store.conversation_cursor(group_id)? {
            None => Err(CoreError::UnknownConversation),
            Some((_, ConversationState::Active)) => Ok(()),
            Some(_) => Err(CoreError::NotActive),
        }
    }

    // ----- queries ---------------------------------------------------------

    /// All conversations, most recently active first.
    pub fn conversations(&self) -> Result<Vec<Conversation>> {
        let provider = self.store.mls();
        self.store.conversations(&|g| {
            MlsGroup::load(provider.storage(), &openmls_group_id(g))
                .ok()
                .flatten()
                .map(|g| g.epoch().as_u64())
                .unwrap_or(0)
        })
    }

    /// One conversation.
    pub fn conversation(&self, group_id: &GroupId) -> Result<Conversation> {
        self.conversations()?
            .into_iter()
            .find(|c| &c.group_id == group_id)
            .ok_or(CoreError::UnknownConversation)
    }

    /// Messages of a conversation, oldest first; `before` pages backwards.
    pub fn history(
        &self,
        group_id: &GroupId,
        before: Option<&MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        self.store.history(group_id, before, limit)
    }

    /// Marks a conversation as read.
    pub fn mark_read(&mut self, group_id: &GroupId) -> Result<()> {
        self.store.mark_read(group_id)?;
        self.events.push_back(Event::ConversationUpdated(*group_id));
        Ok(())
    }

    /// The conversation's current members, from the MLS group state.
    pub fn members(&self, group_id: &GroupId) -> Result<Vec<Member>> {
        let (identity, _) = self.id()?;
        let provider = self.store.mls();
        let group = MlsGroup::load(provider.storage(), &openmls_group_id(group_id))?
            .ok_or(CoreError::UnknownConversation)?;
        if !group.is_active() {
            return Ok(Vec::new());
        }
        group
            .members()
            .map(|m| {
                let cert = crate::credential::certificate(&m.credential)?;
                let claims = read_device_cert(&cert)?;
                Ok(Member {
                    certificate_expires: crate::identity::expires_at(&cert)?,
                    is_self: claims.device == identity.device_id,
                    org_id: claims.user.org(),
                    user_id: claims.user,
                    device_id: claims.device,
                    display_name: claims.display_name,
                    role: claims.role,
                })
            })
            .collect()
    }

    /// Asks the relay's directory for colleagues in our own and trusted
    /// organisations. Returns a token matched by
    /// [`Event::DirectoryResults`], or `None` when offline (then use
    /// [`Engine::search_local`]).
    pub fn search_directory(&mut self, query: &str) -> Result<Option<u64>> {
        if query.len() > cascade_protocol::limits::MAX_NAME_BYTES {
            return Err(CoreError::Invalid("search text too long".into()));
        }
        if !self.is_online() {
            return Ok(None);
        }
        let orgs = self.trusted_orgs();
        Ok(Some(self.request(
            Request::SearchDirectory {
                orgs,
                query: query.to_owned(),
            },
            Pending::Directory,
        )))
    }

    /// Asks the relay for a user's current (enrolled, unrevoked) devices,
    /// e.g. this user's own, to show on a devices screen. Returns a token
    /// matched by [`Event::UserDevices`], or `None` when offline.
    pub fn request_user(&mut self, user_id: &UserId) -> Result<Option<u64>> {
        if !self.is_online() {
            return Ok(None);
        }
        Ok(Some(self.request(
            Request::GetUser {
                user_id: user_id.clone(),
            },
            Pending::User,
        )))
    }

    /// Registers (or, with `None`, removes) this device's push token with
    /// the relay (see `Request::RegisterPush`). Returns `false` when offline:
    /// register again after connecting.
    pub fn register_push(&mut self, token: Option<String>) -> Result<bool> {
        if token
            .as_ref()
            .is_some_and(|t| t.len() > cascade_protocol::limits::MAX_PUSH_TOKEN_BYTES)
        {
            return Err(CoreError::Invalid("push token too long".into()));
        }
        if !self.is_online() {
            return Ok(false);
        }
        self.request(Request::RegisterPush { token }, Pending::Push);
        Ok(true)
    }

    /// Searches the directory entries cached on this device (works
    /// offline).
    pub fn search_local(&self, query: &str) -> Result<Vec<crate::store::Person>> {
        self.store.search_people(
            query,
            cascade_protocol::limits::MAX_DIRECTORY_RESULTS as u32,
        )
    }

    /// Verifies directory entries: a person is shown only with a
    /// certificate that verifies against our anchors and names them.
    fn handle_directory(
        &mut self,
        request: u64,
        entries: Vec<cascade_protocol::DirectoryEntry>,
        now: u64,
    ) -> Result<()> {
        let mut people = Vec::new();
        for entry in entries {
            let mut person: Option<crate::store::Person> = None;
            for cert in &entry.certificates {
                let Ok(m) = crate::identity::verify_device_cert(
                    cert,
                    &self.anchors,
                    (now / 1000) as i64,
                    &|org, device| self.is_revoked_device(org, device),
                ) else {
                    continue;
                };
                if m.claims.user != entry.user_id {
                    continue;
                }
                match &mut person {
                    Some(p) => p.devices += 1,
                    None => {
                        person = Some(crate::store::Person {
                            user_id: m.claims.user,
                            org_id: m.org,
                            display_name: m.claims.display_name,
                            role: m.claims.role,
                            devices: 1,
                        })
                    }
                }
            }
            if let Some(p) = person {
                self.store.put_person(&p, now)?;
                people.push(p);
            }
        }
        self.events
            .push_back(Event::DirectoryResults { request, people });
        Ok(())
    }

    /// The safety number of this user and `other`, from the device keys
    /// both have in the conversation: 60 digits in 12 groups of 5,
    /// identical on both sides, changing whenever either user's set of
    /// device keys changes. Compare it in person or by phone.
    pub fn safety_number(&self, group_id: &GroupId, other: &UserId) -> Result<String> {
        let (identity, signer) = self.id()?;
        let provider = self.store.mls();
        let group = MlsGroup::load(provider.storage(), &openmls_group_id(group_id))?
            .ok_or(CoreError::UnknownConversation)?;
        let mut keys: HashMap<UserId, Vec<(DeviceId, Vec<u8>)>> = HashMap::new();
        for m in group.members() {
            let id = member_identity(&m.credential)?;
            keys.entry(id.user)
                .or_default()
                .push((id.device, m.signature_key.clone()));
        }
        let mine = keys
            .remove(&identity.user_id)
            .unwrap_or_else(|| vec![(identity.device_id, signer.public().to_vec())]);
        let theirs = keys
            .remove(other)
            .ok_or_else(|| CoreError::Invalid(format!("{other} is not in this conversation")))?;
        Ok(safety_number((&identity.user_id, mine), (other, theirs)))
    }

    /// The MLS epoch of a conversation on this device.
    pub fn epoch(&self, group_id: &GroupId) -> Result<u64> {
        let provider = self.store.mls();
        Ok(
            MlsGroup::load(provider.storage(), &openmls_group_id(group_id))?
                .ok_or(CoreError::UnknownConversation)?
                .epoch()
                .as_u64(),
        )
    }

    /// Operations not yet carried out.
    pub fn outbox_len(&self) -> Result<u64> {
        self.store.outbox_len()
    }

    // ----- pushes ----------------------------------------------------------

    fn handle_push(&mut self, push: Push, now: u64) -> Result<()> {
        // Until the trust and revocation lists are current, queue items wait:
        // they must be verified against what our organisation trusts now,
        // not what it trusted when we were last online.
        if let Some((_, held)) = &mut self.gate {
            if matches!(push, Push::Deliver(_) | Push::QueueDrained) {
                held.push(push);
                return Ok(());
            }
        }
        match push {
            Push::Challenge { nonce } => {
                let (identity, signer) = self.id()?;
                let payload = auth::challenge_payload(&nonce, &identity.device_id);
                let signature = openmls_traits::signatures::Signer::sign(signer, &payload)
                    .map_err(CoreError::mls)?;
                let device_id = identity.device_id;
                self.conn = Conn::Authenticating;
                self.request(
                    Request::Authenticate {
                        device_id,
                        signature: bytes(signature),
                    },
                    Pending::Auth,
                );
            }
            Push::Deliver(item) => {
                let queue_id = item.queue_id;
                self.handle_item(item, now)?;
                self.acks.push(queue_id);
                if self.conn == Conn::Ready
                    && !self.receipts_due.is_empty()
                    && self.receipts_at.is_none()
                {
                    // A live message: confirm it shortly, with any that follow.
                    self.receipts_at = Some(now + RECEIPT_DELAY_MS);
                }
            }
            Push::QueueDrained => {
                self.flush_receipts(now)?;
                if self.certificate().is_ok()
                    && self.store.kv_get(GROUPS_LISTED_KEY)?.is_none()
                    && !self.pending.values().any(|p| matches!(p, Pending::Groups))
                {
                    // Once per device: the user's groups it is not in yet.
                    self.request(Request::ListGroups, Pending::Groups);
                }
                self.conn = Conn::Ready;
                self.events
                    .push_back(Event::Connection(ConnectionState::Online));
                self.events.push_back(Event::Synced);
            }
            // At zero the relay is handing out the last-resort KeyPackage:
            // replace it too, so it is not reused for long.
            Push::KeyPackagesLow { stock } => {
                if self.certificate().is_ok() {
                    self.upload_key_packages(stock == 0)?;
                }
            }
            Push::RevocationsUpdated { org_id } => {
                if self.trusted_orgs().contains(&org_id) {
                    self.request(
                        Request::GetRevocations {
                            org_id: org_id.clone(),
                        },
                        Pending::Revocations(org_id, false),
                    );
                }
            }
            Push::TrustListUpdated { org_id } => {
                if self.id()?.0.org_id == org_id {
                    self.request(
                        Request::GetTrustList { org_id },
                        Pending::TrustList { gate: false },
                    );
                }
            }
            Push::CertificateIssued { certificate } => {
                let first = self.certificate().is_err();
                self.accept_certificate(&certificate, now)?;
                if first {
                    self.upload_key_packages(true)?;
                }
                self.drive(now)?;
            }
        }
        Ok(())
    }

    fn upload_key_packages(&mut self, with_last_resort: bool) -> Result<()> {
        if self.uploading_key_packages {
            return Ok(());
        }
        let (_, signer) = self.id()?;
        let cwk = CredentialWithKey {
            credential: make_credential(self.certificate()?),
            signature_key: signer.public().into(),
        };
        let tx = self.store.transaction()?;
        let provider = self.store.mls();
        let mut kps = Vec::new();
        for _ in 0..KEY_PACKAGE_BATCH {
            let b = KeyPackage::builder()
                .leaf_node_capabilities(capabilities())
                .build(CIPHERSUITE, &provider, signer, cwk.clone())
                .map_err(CoreError::mls)?;
            kps.push(bytes(mls_bytes(&MlsMessageOut::from(
                b.key_package().clone(),
            ))?));
        }
        let last_resort = if with_last_resort {
            let b = KeyPackage::builder()
                .leaf_node_capabilities(capabilities())
                .mark_as_last_resort()
                .build(CIPHERSUITE, &provider, signer, cwk)
                .map_err(CoreError::mls)?;
            Some(bytes(mls_bytes(&MlsMessageOut::from(
                b.key_package().clone(),
            ))?))
        } else {
            None
        };
        tx.commit()?;
        self.uploading_key_packages = true;
        self.request(
            Request::UploadKeyPackages {
                key_packages: kps,
                last_resort,
            },
            Pending::UploadKeyPackages,
        );
        Ok(())
    }

    // ----- queue items -----------------------------------------------------

    fn handle_item(&mut self, item: QueueItem, now: u64) -> Result<()> {
        let cursor = self.store.conversation_cursor(&item.group_id)?;
        match (item.kind, cursor) {
            (ItemKind::Welcome, Some((_, state))) if state != ConversationState::Left => {
                return Ok(()); // already a member: a duplicate Welcome
            }
            (ItemKind::Welcome, _) => {}
            (_, None) => {
                tracing::warn!(group = %item.group_id, "item for an unknown group dropped");
                return Ok(());
            }
            (_, Some((last_seq, _))) if item.seq <= last_seq => return Ok(()), // duplicate
            (_, Some((_, ConversationState::Left))) => {
                self.store.set_last_seq(&item.group_id, item.seq)?;
                return Ok(());
            }
            _ => {}
        }
        let tx = self.store.transaction()?;
        let outcome = match item.kind {
            ItemKind::Welcome => self.process_welcome(&item, now),
            ItemKind::Commit => self.process_commit(&item, now),
            ItemKind::Application => self.process_application(&item, now),
        };
        match outcome {
            Ok(events) => {
                self.store.set_last_seq(&item.group_id, item.seq)?;
                tx.commit()?;
                let own = self.identity.as_ref().map(|i| i.user_id.clone());
                for e in &events {
                    if let Event::Message(m) = e {
                        if m.kind == "text" && Some(&m.sender) != own.as_ref() {
                            self.receipts_due.push((m.group_id, m.id));
                        }
                    }
                }
                self.events.extend(events);
            }
            Err(e @ CoreError::Storage(_)) => {
                // Local storage failed: nothing is wrong with the item. Do
                // not skip or ack it; it comes again on the next connection.
                drop(tx);
                return Err(e);
            }
            Err(e) => {
                drop(tx); // roll back whatever the item did
                tracing::warn!(group = %item.group_id, seq = item.seq, error = %e, "queue item could not be processed; skipped");
                if item.kind != ItemKind::Welcome {
                    self.store.set_last_seq(&item.group_id, item.seq)?;
                }
                self.events.push_back(Event::OperationFailed {
                    group_id: Some(item.group_id),
                    reason: format!("a {:?} could not be processed: {e}", item.kind),
                });
            }
        }
        Ok(())
    }

    fn process_welcome(&self, item: &QueueItem, now: u64) -> Result<Vec<Event>> {
        let provider = self.store.mls();
        let welcome = match mls_in(&item.payload)?.extract() {
            MlsMessageBodyIn::Welcome(w) => w,
            _ => return Err(CoreError::Decode("expected a Welcome".into())),
        };
        if let Some(old) = MlsGroup::load(provider.storage(), &openmls_group_id(&item.group_id))? {
            // Re-added after leaving: the old state is dead.
            let mut old = old;
            old.delete(provider.storage())?;
        }
        let group = StagedWelcome::new_from_welcome(&provider, &join_config(), welcome, None)
            .map_err(CoreError::mls)?
            .into_group(&provider)
            .map_err(CoreError::mls)?;
        if group.group_id().as_slice() != item.group_id.as_bytes() {
            return Err(CoreError::Decode("Welcome for another group".into()));
        }
        // Every member must verify against our anchors, or we do not join.
        let mut users = Vec::new();
        for m in group.members() {
            users.push(self.verify(&m.credential, &m.signature_key, now)?.user);
        }
        self.store
            .insert_conversation(&item.group_id, "New conversation", item.seq, now)?;
        self.store
            .set_conversation_state(&item.group_id, ConversationState::Active)?;
        self.store.set_last_seq(&item.group_id, item.seq)?;
        users.dedup();
        Ok(vec![
            Event::ConversationUpdated(item.group_id),
            Event::MembershipChanged {
                group_id: item.group_id,
                added: users,
                removed: vec![],
            },
        ])
    }

    fn load_group(&self, group_id: &GroupId) -> Result<MlsGroup> {
        let provider = self.store.mls();
        MlsGroup::load(provider.storage(), &openmls_group_id(group_id))?
            .ok_or(CoreError::UnknownConversation)
    }

    /// The commit bundle sent for a group-change operation, if one was sent.
    /// Builds this device's external commit into the group described by
    /// `group_info` (verifying every member first) and sends it.
    fn join_external(
        &mut self,
        op_id: i64,
        group_id: GroupId,
        group_info: &[u8],
        now: u64,
    ) -> Result<()> {
        let (identity, signer) = self.id()?;
        let device = identity.device_id;
        let cwk = CredentialWithKey {
            credential: make_credential(self.certificate()?),
            signature_key: signer.public().into(),
        };
        let verifiable = match mls_in(group_info)?.extract() {
            MlsMessageBodyIn::GroupInfo(gi) => gi,
            _ => return Err(CoreError::Decode("not a GroupInfo".into())),
        };
        // Left over from an earlier attempt: never build on it.
        self.discard_external_join(&group_id)?;
        let tx = self.store.transaction()?;
        let provider = self.store.mls();
        let (group, bundle) = MlsGroup::external_commit_builder()
            .with_config(join_config())
            .build_group(&provider, verifiable, cwk)
            .map_err(CoreError::mls)?
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_capabilities(capabilities())
                    .build(),
            )
            .load_psks(provider.storage())
            .map_err(CoreError::mls)?
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .map_err(CoreError::mls)?
            .finalize(&provider)
            .map_err(CoreError::mls)?;
        if group.group_id().as_slice() != group_id.as_bytes() {
            return Err(CoreError::Decode(
                "the GroupInfo is for another group".into(),
            ));
        }
        // Every member must verify before this device joins (rule 15).
        for m in group.members() {
            if m.signature_key != signer.public() {
                self.verify(&m.credential, &m.signature_key, now)?;
            }
        }
        let info = bundle
            .group_info()
            .cloned()
            .ok_or_else(|| CoreError::Mls("external commit without GroupInfo".into()))?;
        let commit = CommitBundle {
            group_id,
            epoch: group.epoch().as_u64() - 1,
            commit: bytes(mls_bytes(bundle.commit())?),
            welcome: None,
            group_info: bytes(mls_bytes(&MlsMessageOut::from(info))?),
            added: vec![device],
            removed: vec![],
        };
        let mut encoded = Vec::new();
        ciborium::into_writer(&commit, &mut encoded).expect("serialising to a Vec cannot fail");
        self.store.set_op_prepared(op_id, &encoded)?;
        tx.commit()?;
        let req = self.request(Request::Commit(commit), Pending::Op);
        self.set_step(Step::Awaiting(req));
        Ok(())
    }

    /// Forgets the MLS state of an external join that did not land.
    fn discard_external_join(&self, group_id: &GroupId) -> Result<()> {
        if self.store.conversation_cursor(group_id)?.is_some() {
            return Ok(()); // a real conversation: never delete it
        }
        let provider = self.store.mls();
        if let Ok(mut g) = self.load_group(group_id) {
            g.delete(provider.storage()).map_err(CoreError::mls)?;
        }
        Ok(())
    }

    fn prepared_bundle(&self, op_id: i64, op: &Op) -> Result<Option<CommitBundle>> {
        if matches!(
            op,
            Op::Send { .. } | Op::CreateGroup { .. } | Op::Leave { .. }
        ) {
            return Ok(None);
        }
        match self.store.first_op()? {
            Some(OutboxEntry {
                op_id: id,
                prepared: Some(p),
                ..
            }) if id == op_id && !p.is_empty() => Ok(ciborium::from_reader(p.as_slice()).ok()),
            _ => Ok(None),
        }
    }

    /// The commit bytes of the bundle the head of the outbox sent for this
    /// group, if any.
    fn sent_commit(&self, group_id: &GroupId) -> Result<Option<Vec<u8>>> {
        let Some(entry) = self.store.first_op()? else {
            return Ok(None);
        };
        let Ok(op) = ciborium::from_reader::<Op, _>(entry.op.as_slice()) else {
            return Ok(None);
        };
        if &op.group_id() != group_id {
            return Ok(None);
        }
        Ok(self
            .prepared_bundle(entry.op_id, &op)?
            .map(|b| b.commit.into_vec()))
    }

    fn process_commit(&self, item: &QueueItem, now: u64) -> Result<Vec<Event>> {
        let (identity, _) = self.id()?;
        let provider = self.store.mls();
        let mut group = self.load_group(&item.group_id)?;
        let header = cascade_protocol::mls_header::framing_header(&item.payload)
            .map_err(|_| CoreError::Decode("commit header".into()))?;
        if item.sender == identity.device_id {
            // The echo of our own commit.
            if header.epoch != group.epoch().as_u64() {
                return Ok(vec![]); // merged already, on the relay's answer
            }
            let sent = self.sent_commit(&item.group_id)?;
            let ours = group.pending_commit().is_some()
                && sent
                    .as_deref()
                    .is_none_or(|bytes| bytes == item.payload.as_slice());
            if ours {
                return self.merge_own_commit(&mut group, &item.group_id);
            }
            // A commit of ours the relay applied but whose state we no
            // longer hold: this device cannot follow the group any more.
            return Err(CoreError::Mls(
                "this device is out of step with the conversation (its own commit was lost)".into(),
            ));
        }
        if group.pending_commit().is_some() {
            // Another member's commit won this epoch; ours will be refused.
            group.clear_pending_commit(provider.storage())?;
        }
        let msg = mls_in(&item.payload)?
            .try_into_protocol_message()
            .map_err(|_| CoreError::Decode("not a protocol message".into()))?;
        let processed = group
            .process_message(&provider, msg)
            .map_err(CoreError::mls)?;
        // An external commit: a device joining on its own. Only a user who
        // is already in the conversation may add a device this way (their
        // new device, DESIGN.md); anyone else must be added by a member.
        let joiner = if matches!(processed.sender(), Sender::NewMemberCommit) {
            let joiner = member_identity(processed.credential())?;
            let known = group
                .members()
                .any(|m| member_identity(&m.credential).is_ok_and(|id| id.user == joiner.user));
            if !known {
                return Err(CoreError::Credential(
                    "an external join by someone not in the conversation".into(),
                ));
            }
            Some(joiner)
        } else {
            None
        };
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(CoreError::Decode("expected a commit".into()));
        };
        let mut added = Vec::new();
        if let Some(j) = &joiner {
            added.push(j.user.clone());
        }
        for add in staged.add_proposals() {
            let leaf = add.add_proposal().key_package().leaf_node();
            let id = self.verify(leaf.credential(), leaf.signature_key().as_slice(), now)?;
            added.push(id.user);
        }
        let mut removed = Vec::new();
        for rem in staged.remove_proposals() {
            if let Some(m) = group.member_at(rem.remove_proposal().removed()) {
                removed.push(member_identity(&m.credential)?.user);
            }
        }
        // Credentials before the commit, to tell which leaves it changes.
        let leaf = |m: &openmls::group::Member| {
            (
                m.index.u32(),
                m.signature_key.clone(),
                m.credential.serialized_content().to_vec(),
            )
        };
        let before: std::collections::HashSet<_> = group.members().map(|m| leaf(&m)).collect();
        group
            .merge_staged_commit(&provider, *staged)
            .map_err(CoreError::mls)?;
        // A commit may add members or change credentials (update paths):
        // every leaf it introduces or changes must verify, or the commit is
        // refused (the transaction rolls back). Members it leaves as they
        // were are not judged again here: a member who has since become
        // unacceptable is removed by its own commit, not by refusing others'.
        if group.is_active() {
            for m in group.members() {
                if !before.contains(&leaf(&m)) {
                    self.verify(&m.credential, &m.signature_key, now)?;
                }
            }
        }
        let mut events = vec![];
        if !group.is_active() {
            self.store
                .set_conversation_state(&item.group_id, ConversationState::Left)?;
            events.push(Event::ConversationUpdated(item.group_id));
        }
        added.dedup();
        removed.dedup();
        if group.is_active() {
            events.extend(self.forget_departed(&item.group_id, &removed)?);
        }
        if joiner.as_ref().is_some_and(|j| j.user == identity.user_id) && group.is_active() {
            // Our user's new device joined: it cannot read earlier
            // messages, so tell it the conversation's name.
            let name = self.conversation(&item.group_id)?.name;
            if !name.is_empty() {
                let content = Content {
                    id: MessageId::random(),
                    sent_at: now,
                    body: Body::GroupMeta { name },
                };
                self.store.push_op(
                    &Op::Send {
                        group_id: item.group_id,
                        message_id: content.id,
                        content: content.encode(),
                    }
                    .encode(),
                )?;
            }
        }
        if !added.is_empty() || !removed.is_empty() {
            events.push(Event::MembershipChanged {
                group_id: item.group_id,
                added,
                removed,
            });
        }
        Ok(events)
    }

    /// Merges this device's pending commit after the relay accepted it.
    fn merge_own_commit(&self, group: &mut MlsGroup, group_id: &GroupId) -> Result<Vec<Event>> {
        let provider = self.store.mls();
        let Some(staged) = group.pending_commit() else {
            return Ok(vec![]);
        };
        let mut added = Vec::new();
        for add in staged.add_proposals() {
            added.push(
                member_identity(add.add_proposal().key_package().leaf_node().credential())?.user,
            );
        }
        let mut removed = Vec::new();
        for rem in staged.remove_proposals() {
            if let Some(m) = group.member_at(rem.remove_proposal().removed()) {
                removed.push(member_identity(&m.credential)?.user);
            }
        }
        group
            .merge_pending_commit(&provider)
            .map_err(CoreError::mls)?;
        added.dedup();
        removed.dedup();
        let mut events = if group.is_active() {
            self.forget_departed(group_id, &removed)?
        } else {
            vec![]
        };
        events.push(Event::MembershipChanged {
            group_id: *group_id,
            added,
            removed,
        });
        Ok(events)
    }

    /// Users whose devices were removed are no longer waited for, unless
    /// they still have a device in the conversation: our messages they had
    /// not confirmed may now be delivered to everyone still here.
    fn forget_departed(&self, group_id: &GroupId, removed: &[UserId]) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        if removed.is_empty() {
            return Ok(events);
        }
        let still = self.other_users(group_id)?;
        for user in removed.iter().filter(|u| !still.contains(u)) {
            for id in self.store.forget_recipient(group_id, user)? {
                events.extend(self.check_delivered(group_id, &id)?);
            }
        }
        Ok(events)
    }

    fn process_application(&self, item: &QueueItem, now: u64) -> Result<Vec<Event>> {
        let provider = self.store.mls();
        let mut group = self.load_group(&item.group_id)?;
        let msg = mls_in(&item.payload)?
            .try_into_protocol_message()
            .map_err(|_| CoreError::Decode("not a protocol message".into()))?;
        let processed = match group.process_message(&provider, msg) {
            Ok(p) => p,
            Err(e) if is_replay(&e) => {
                // The same ciphertext again (a sender's retransmission after
                // a crash, or a replay): its key is already used and deleted.
                tracing::debug!(group = %item.group_id, seq = item.seq, "replayed ciphertext dropped");
                return Ok(vec![]);
            }
            Err(e) => return Err(CoreError::mls(e)),
        };
        let sender = member_identity(processed.credential())?;
        if sender.device != item.sender {
            tracing::warn!("relay-claimed sender differs from the MLS sender; using MLS");
        }
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                self.store_application(item, &sender, &app.into_bytes(), now)
            }
            ProcessedMessageContent::ProposalMessage(proposal) => {
                // Only a member's request to leave is acted on: store it and
                // queue a commit. Other proposals are ignored.
                let is_self_remove = match (proposal.proposal(), proposal.sender()) {
                    (Proposal::Remove(r), Sender::Member(leaf)) => r.removed() == *leaf,
                    _ => false,
                };
                if is_self_remove {
                    group.store_pending_proposal(provider.storage(), *proposal)?;
                    self.store.push_op(
                        &Op::CommitProposals {
                            group_id: item.group_id,
                        }
                        .encode(),
                    )?;
                }
                Ok(vec![])
            }
            _ => Err(CoreError::Decode(
                "unexpected content in an application item".into(),
            )),
        }
    }

    fn store_application(
        &self,
        item: &QueueItem,
        sender: &MemberIdentity,
        plaintext: &[u8],
        now: u64,
    ) -> Result<Vec<Event>> {
        let mut content = Content::decode(plaintext)?;
        // The sender's clock is theirs to set: a time far in the future
        // (or beyond what front ends can show as a date) is replaced by the
        // time it arrived.
        if content.sent_at > now.saturating_add(MAX_CLOCK_SKEW_MS) {
            content.sent_at = now;
        }
        let (kind, text) = match &content.body {
            Body::GroupMeta { name } => {
                self.store.set_conversation_name(&item.group_id, name)?;
                return Ok(vec![Event::ConversationUpdated(item.group_id)]);
            }
            Body::Text { text } => ("text".to_owned(), Some(text.clone())),
            Body::Receipt { delivered } => {
                return self.handle_receipt(&item.group_id, &sender.user, delivered, now)
            }
            Body::Unsupported { kind } => (kind.clone(), None),
        };
        let message = Message {
            id: content.id,
            group_id: item.group_id,
            sender: sender.user.clone(),
            sender_device: sender.device,
            sent_at: content.sent_at,
            seq: Some(item.seq),
            text,
            kind,
            state: DeliveryState::Received,
        };
        if self.store.insert_message(&message, now, true)? {
            Ok(vec![
                Event::Message(message),
                Event::ConversationUpdated(item.group_id),
            ])
        } else {
            Ok(vec![]) // duplicate message id
        }
    }

    /// A member confirmed receiving some of our messages: a message is
    /// delivered once every other current member has confirmed it.
    fn handle_receipt(
        &self,
        group_id: &GroupId,
        from: &UserId,
        delivered: &[MessageId],
        now: u64,
    ) -> Result<Vec<Event>> {
        let (identity, _) = self.id()?;
        if from == &identity.user_id {
            return Ok(vec![]); // our other device: not a recipient
        }
        let mut events = Vec::new();
        for id in delivered.iter().take(MAX_RECEIPT_IDS) {
            let Some(m) = self.store.message(id)? else {
                continue;
            };
            if &m.group_id != group_id || m.sender != identity.user_id {
                continue; // not ours, or claimed for another conversation
            }
            if self.store.add_receipt(id, group_id, from, now)? {
                events.extend(self.check_delivered(group_id, id)?);
            }
        }
        Ok(events)
    }

    /// Marks our message delivered once the relay accepted it and every
    /// recipient expected then has confirmed it.
    fn check_delivered(&self, group_id: &GroupId, id: &MessageId) -> Result<Option<Event>> {
        let sent = self
            .store
            .message(id)?
            .is_some_and(|m| m.state == DeliveryState::Sent);
        if !sent || !self.store.all_confirmed(id)? {
            return Ok(None);
        }
        self.store
            .set_message_state(id, DeliveryState::Delivered, None)?;
        Ok(Some(Event::DeliveryState {
            group_id: *group_id,
            message_id: *id,
            state: DeliveryState::Delivered,
        }))
    }

    /// Whose delivery receipts count in a conversation: the other users,
    /// or `None` where receipts are not sent (more than
    /// [`MAX_RECEIPT_GROUP_USERS`] people, counting this user).
    fn receipt_users(&self, group_id: &GroupId) -> Result<Option<Vec<UserId>>> {
        let others = self.other_users(group_id)?;
        Ok((others.len() < MAX_RECEIPT_GROUP_USERS).then_some(others))
    }

    /// The other users in a conversation, sorted.
    fn other_users(&self, group_id: &GroupId) -> Result<Vec<UserId>> {
        let (identity, _) = self.id()?;
        let mut users: Vec<UserId> = self
            .members(group_id)?
            .into_iter()
            .map(|m| m.user_id)
            .filter(|u| u != &identity.user_id)
            .collect();
        users.sort();
        users.dedup();
        Ok(users)
    }

    /// Queues one delivery receipt per conversation for the messages
    /// received since the last flush.
    fn flush_receipts(&mut self, now: u64) -> Result<()> {
        self.receipts_at = None;
        if self.receipts_due.is_empty() {
            return Ok(());
        }
        let due = std::mem::take(&mut self.receipts_due);
        let mut by_group: Vec<(GroupId, Vec<MessageId>)> = Vec::new();
        for (g, id) in due {
            match by_group.iter_mut().find(|(x, _)| *x == g) {
                Some((_, ids)) => ids.push(id),
                None => by_group.push((g, vec![id])),
            }
        }
        let tx = self.store.transaction()?;
        for (group_id, ids) in by_group {
            if !matches!(
                self.store.conversation_cursor(&group_id)?,
                Some((_, ConversationState::Active))
            ) {
                continue;
            }
            if self.receipt_users(&group_id)?.is_none() {
                continue;
            }
            for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                let content = Content {
                    id: MessageId::random(),
                    sent_at: now,
                    body: Body::Receipt {
                        delivered: chunk.to_vec(),
                    },
                };
                self.store.push_op(
                    &Op::Send {
                        group_id,
                        message_id: content.id,
                        content: content.encode(),
                    }
                    .encode(),
                )?;
            }
        }
        tx.commit()
    }

    // ----- responses -------------------------------------------------------

    fn handle_response(
        &mut self,
        id: u64,
        result: Result<Response, ProtocolError>,
        now: u64,
    ) -> Result<()> {
        let Some(pending) = self.pending.remove(&id) else {
            tracing::debug!(id, "response to an unknown request");
            return Ok(());
        };
        match pending {
            Pending::User => {
                let devices = match result {
                    Ok(Response::User(entry)) => Some(entry.devices),
                    _ => None,
                };
                self.events.push_back(Event::UserDevices {
                    request: id,
                    devices,
                });
            }
            Pending::Push => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "push token refused");
                }
            }
            Pending::Directory => match result {
                Ok(Response::Directory { entries }) => self.handle_directory(id, entries, now)?,
                other => {
                    tracing::warn!(?other, "directory search failed");
                    self.events.push_back(Event::DirectoryResults {
                        request: id,
                        people: Vec::new(),
                    });
                }
            },
            Pending::Auth => match result {
                Ok(Response::Authenticated {
                    key_package_stock,
                    has_last_resort,
                    certificate,
                    ..
                }) => {
                    self.conn = Conn::Syncing;
                    let have = self
                        .identity
                        .as_ref()
                        .is_some_and(|i| i.certificate.is_some());
                    let _ = have;
                    if let Some(der) = certificate {
                        if let Err(e) = self.accept_certificate(&der, now) {
                            tracing::warn!(error = %e, "the certificate from the relay was refused");
                        }
                    }
                    // First the gate and the trust list: nothing queued may be
                    // processed against stale trust, whatever else fails.
                    let org_id = self.id()?.0.org_id.clone();
                    self.gate = Some((1, Vec::new()));
                    self.request(
                        Request::GetTrustList { org_id },
                        Pending::TrustList { gate: true },
                    );
                    if self.certificate().is_err() {
                        self.events.push_back(Event::CertificatePending);
                    } else if key_package_stock <= KEY_PACKAGE_LOW_WATER || !has_last_resort {
                        if let Err(e) = self.upload_key_packages(!has_last_resort) {
                            tracing::warn!(error = %e, "KeyPackages could not be made");
                        }
                    }
                }
                other => {
                    tracing::warn!(?other, "authentication refused");
                    self.conn = Conn::Offline;
                    self.events.push_back(Event::OperationFailed {
                        group_id: None,
                        reason: "the relay refused this device's authentication".into(),
                    });
                }
            },
            Pending::TrustList { gate } => {
                let handled = match result {
                    Ok(Response::TrustList { document }) => self.handle_trust_list(document, now),
                    other => {
                        tracing::warn!(?other, "trust list not fetched");
                        Ok(())
                    }
                };
                // The trusted organisations may have changed.
                let n = self.fetch_revocations(gate);
                if gate {
                    // Whatever happened, the held queue must go on.
                    self.gate_answered(n, now)?;
                }
                handled?;
            }
            Pending::Revocations(org_id, gate) => {
                let handled = match result {
                    Ok(Response::Revocations { document }) => {
                        self.handle_revocations(&org_id, document, now)
                    }
                    other => {
                        tracing::warn!(?other, "revocation list not fetched");
                        Ok(())
                    }
                };
                if gate {
                    self.gate_answered(0, now)?;
                }
                handled?;
            }
            Pending::UploadKeyPackages => {
                self.uploading_key_packages = false;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "KeyPackage upload refused");
                }
            }
            Pending::Ack => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "ack refused");
                }
            }
            Pending::Op => self.handle_op_response(id, result, now)?,
            Pending::Groups => match result {
                Ok(Response::Groups { group_ids }) => {
                    let tx = self.store.transaction()?;
                    for group_id in group_ids {
                        if self.store.conversation_cursor(&group_id)?.is_none() {
                            self.store
                                .push_op(&Op::JoinExternal { group_id }.encode())?;
                        }
                    }
                    self.store.kv_set(GROUPS_LISTED_KEY, &[1])?;
                    tx.commit()?;
                    self.drive(now)?;
                }
                other => tracing::warn!(?other, "listing the user's groups failed"),
            },
        }
        Ok(())
    }

    /// Verifies and stores the organisation's trust list (a list the relay
    /// altered, or an older one, is refused and the current one kept).
    fn handle_trust_list(
        &mut self,
        document: Option<cascade_protocol::SignedDocument>,
        now: u64,
    ) -> Result<()> {
        let Some(doc) = document else {
            return Ok(());
        };
        let (list, partners) = match self.verify_own_trust_list(&doc) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "trust list refused");
                self.events.push_back(Event::OperationFailed {
                    group_id: None,
                    reason: format!("the organisation's trust list was refused: {e}"),
                });
                return Ok(());
            }
        };
        if let Some(old) = self.stored_document(KV_TRUST_LIST)? {
            if let Ok((old, _)) = self.verify_own_trust_list(&old) {
                if old.serial >= list.serial {
                    return Ok(()); // not newer: keep what we have
                }
            }
        }
        self.store_document(KV_TRUST_LIST, &doc)?;
        self.anchors = self.load_anchors()?;
        let own_org = self.id()?.0.org_id.clone();
        let mut partner_orgs: Vec<_> = partners
            .into_iter()
            .map(|a| a.org)
            .filter(|o| o != &own_org)
            .collect();
        partner_orgs.dedup();
        self.events.push_back(Event::TrustUpdated {
            partners: partner_orgs,
        });
        // Members of an organisation no longer trusted leave our groups.
        self.remove_unacceptable_members(now)
    }

    fn finish_op(&mut self, op_id: i64) -> Result<()> {
        self.store.delete_op(op_id)?;
        self.inflight = None;
        Ok(())
    }

    fn fail_op(&mut self, op_id: i64, group_id: GroupId, reason: String) -> Result<()> {
        let provider = self.store.mls();
        if let Ok(mut g) = self.load_group(&group_id) {
            if g.pending_commit().is_some() {
                g.clear_pending_commit(provider.storage())?;
            }
        }
        self.finish_op(op_id)?;
        self.events.push_back(Event::OperationFailed {
            group_id: Some(group_id),
            reason,
        });
        Ok(())
    }

    fn handle_op_response(
        &mut self,
        id: u64,
        result: Result<Response, ProtocolError>,
        now: u64,
    ) -> Result<()> {
        let Some(mut f) = self.inflight.take() else {
            return Ok(());
        };
        let expected = match &f.step {
            Step::Awaiting(r) | Step::RefreshingTrust(r) => *r,
            Step::Claiming { req, .. } => *req,
            _ => 0,
        };
        if expected != id {
            self.inflight = Some(f);
            return Ok(());
        }
        let group_id = f.op.group_id();
        match (&f.op, result) {
            (Op::CreateGroup { .. }, Ok(Response::GroupCreated))
            | (Op::CreateGroup { .. }, Err(ProtocolError::GroupExists)) => {
                self.finish_op(f.op_id)?
            }
            (Op::Send { message_id, .. }, Ok(Response::MessageAccepted { seq })) => {
                let message_id = *message_id;
                self.store
                    .set_message_state(&message_id, DeliveryState::Sent, Some(seq))?;
                self.finish_op(f.op_id)?;
                if self.store.message(&message_id)?.is_some() {
                    self.events.push_back(Event::DeliveryState {
                        group_id,
                        message_id,
                        state: DeliveryState::Sent,
                    });
                    // Those in the conversation now are the recipients whose
                    // receipts make it delivered (receipts that came before
                    // this answer, after a lost one, count too).
                    let others = self.receipt_users(&group_id)?.unwrap_or_default();
                    if !others.is_empty() {
                        self.store
                            .expect_receipts(&message_id, &group_id, &others)?;
                        if let Some(e) = self.check_delivered(&group_id, &message_id)? {
                            self.events.push_back(e);
                        }
                    }
                }
            }
            (Op::Leave { .. }, Ok(Response::MessageAccepted { .. })) => self.finish_op(f.op_id)?,
            (Op::JoinExternal { .. }, Ok(Response::GroupInfo { group_info, .. })) => {
                let op_id = f.op_id;
                self.inflight = Some(f);
                if let Err(e) = self.join_external(op_id, group_id, &group_info, now) {
                    self.inflight = None;
                    self.discard_external_join(&group_id)?;
                    self.fail_op(op_id, group_id, e.to_string())?;
                }
            }
            (Op::JoinExternal { .. }, Ok(Response::CommitAccepted { seq, .. })) => {
                // The group is ours (openmls merged it when building the
                // commit); from here on the relay's items for it count.
                let name = String::new();
                self.store.insert_conversation(&group_id, &name, seq, now)?;
                self.finish_op(f.op_id)?;
                let me = self.id()?.0.user_id.clone();
                self.events.push_back(Event::ConversationUpdated(group_id));
                self.events.push_back(Event::MembershipChanged {
                    group_id,
                    added: vec![me],
                    removed: vec![],
                });
            }
            (Op::JoinExternal { .. }, Err(ProtocolError::WrongEpoch { .. })) => {
                // Someone committed first: start again from the new GroupInfo.
                self.discard_external_join(&group_id)?;
                f.step = Step::RetryAt(now);
                self.inflight = Some(f);
            }
            (Op::JoinExternal { .. }, Err(e)) => {
                self.discard_external_join(&group_id)?;
                self.fail_op(f.op_id, group_id, e.to_string())?;
            }
            (Op::AddMembers { users, .. }, Ok(Response::TrustList { document })) => {
                let first = users[0].clone();
                self.handle_trust_list(document, now)?;
                // A partner pinned a moment ago: learn its revocations too.
                self.fetch_revocations(false);
                let req = self.request(Request::ClaimKeyPackages { user_id: first }, Pending::Op);
                f.step = Step::Claiming {
                    req,
                    next: 1,
                    claimed: Vec::new(),
                };
                self.inflight = Some(f);
            }
            (
                Op::AddMembers { users, .. },
                claim @ (Ok(Response::KeyPackages { .. })
                | Err(ProtocolError::NoKeyPackages)
                | Err(ProtocolError::UnknownUser)),
            ) => {
                let Step::Claiming {
                    next, mut claimed, ..
                } = std::mem::replace(&mut f.step, Step::RetryAt(0))
                else {
                    // A claim's answer to another request: the relay is
                    // confused; start the operation over rather than guess.
                    tracing::warn!("unexpected KeyPackage answer; retrying the operation");
                    self.inflight = Some(f);
                    return Ok(());
                };
                let Some(user) = next.checked_sub(1).and_then(|i| users.get(i)).cloned() else {
                    self.inflight = Some(f);
                    return Ok(());
                };
                let mut usable = 0;
                let mut refused = None;
                if let Ok(Response::KeyPackages { devices }) = claim {
                    for d in devices {
                        match self.validate_key_package(&d.key_package, &user, &d.device_id, now) {
                            Ok(kp) => {
                                claimed.push((d.device_id, user.clone(), kp));
                                usable += 1;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "claimed KeyPackage rejected");
                                refused = Some(e.to_string());
                            }
                        }
                    }
                }
                if usable == 0 {
                    // The others are still added; this user is reported.
                    let reason = match refused {
                        Some(why) => format!("{user} cannot be added: {why}"),
                        None => format!("{user} has no device that can be added"),
                    };
                    self.events.push_back(Event::OperationFailed {
                        group_id: Some(group_id),
                        reason,
                    });
                }
                if next < users.len() {
                    let req = self.request(
                        Request::ClaimKeyPackages {
                            user_id: users[next].clone(),
                        },
                        Pending::Op,
                    );
                    f.step = Step::Claiming {
                        req,
                        next: next + 1,
                        claimed,
                    };
                    self.inflight = Some(f);
                } else {
                    f.claimed = claimed;
                    self.inflight = Some(f);
                    self.commit_step(now)?;
                }
            }
            (_, Ok(Response::CommitAccepted { .. })) => {
                let tx = self.store.transaction()?;
                let mut group = self.load_group(&group_id)?;
                let events = self.merge_own_commit(&mut group, &group_id)?;
                if matches!(f.op, Op::AddMembers { .. }) {
                    let name = self.conversation(&group_id)?.name;
                    self.push_meta_op(&group_id, &name, now)?;
                }
                self.store.delete_op(f.op_id)?;
                tx.commit()?;
                self.inflight = None;
                self.events.extend(events);
            }
            (_, Err(ProtocolError::WrongEpoch { current })) => {
                // The pending commit stays: the commit that moved the group
                // resolves it when it arrives. Another member's clears it;
                // our own (a resent bundle the relay had already applied)
                // merges it.
                f.step = Step::WaitEpoch {
                    current,
                    claimed: std::mem::take(&mut f.claimed),
                    deadline: now + WAIT_EPOCH_MS,
                };
                self.inflight = Some(f);
            }
            (
                _,
                Err(
                    e @ (ProtocolError::QueueFull { .. }
                    | ProtocolError::RateLimited { .. }
                    | ProtocolError::Internal),
                ),
            ) => {
                // Nothing was applied; the same bundle is sent again later.
                tracing::info!(error = %e, "operation refused for now; retrying later");
                f.step = Step::RetryAt(now + RETRY_DELAY_MS);
                self.inflight = Some(f);
            }
            (Op::Send { message_id, .. }, Err(e)) => {
                let message_id = *message_id;
                self.store
                    .set_message_state(&message_id, DeliveryState::Failed, None)?;
                self.finish_op(f.op_id)?;
                // A receipt has no history entry and nobody to tell.
                if self.store.message(&message_id)?.is_some() {
                    self.events.push_back(Event::DeliveryState {
                        group_id,
                        message_id,
                        state: DeliveryState::Failed,
                    });
                }
                tracing::warn!(error = %e, "message refused by the relay");
            }
            (_, Err(e)) => self.fail_op(f.op_id, group_id, e.to_string())?,
            (_, Ok(other)) => {
                tracing::warn!(?other, "unexpected answer to an operation");
                self.fail_op(f.op_id, group_id, "unexpected answer from the relay".into())?;
            }
        }
        Ok(())
    }

    fn validate_key_package(
        &self,
        kp: &[u8],
        user: &UserId,
        device: &DeviceId,
        now: u64,
    ) -> Result<KeyPackage> {
        let provider = self.store.mls();
        let MlsMessageBodyIn::KeyPackage(kp) = mls_in(kp)?.extract() else {
            return Err(CoreError::Decode("expected a KeyPackage".into()));
        };
        let kp = kp
            .validate(provider.crypto(), ProtocolVersion::Mls10)
            .map_err(CoreError::mls)?;
        let leaf = kp.leaf_node();
        let id = self.verify(leaf.credential(), leaf.signature_key().as_slice(), now)?;
        if &id.user != user || &id.device != device {
            return Err(CoreError::Credential(
                "KeyPackage credential does not match the claimed device".into(),
            ));
        }
        Ok(kp)
    }

    // ----- the outbox ------------------------------------------------------

    /// Works off the outbox while connected and caught up.
    fn drive(&mut self, now: u64) -> Result<()> {
        if self.conn != Conn::Ready || self.certificate().is_err() {
            return Ok(());
        }
        loop {
            match &self.inflight {
                Some(InFlight {
                    step: Step::Awaiting(_) | Step::RefreshingTrust(_) | Step::Claiming { .. },
                    ..
                }) => return Ok(()),
                Some(InFlight {
                    step: Step::RetryAt(t),
                    ..
                }) if *t > now => return Ok(()),
                Some(InFlight {
                    step:
                        Step::WaitEpoch {
                            current, deadline, ..
                        },
                    op,
                    op_id,
                    ..
                }) => {
                    let at = self.epoch(&op.group_id()).unwrap_or(u64::MAX);
                    if at < *current && now < *deadline {
                        return Ok(());
                    }
                    if at < *current {
                        // Waiting longer would block every other operation.
                        let (op_id, group_id) = (*op_id, op.group_id());
                        self.fail_op(
                            op_id,
                            group_id,
                            "this device is out of step with the conversation".into(),
                        )?;
                        continue;
                    }
                    let f = self.inflight.as_mut().expect("matched");
                    if let Step::WaitEpoch { claimed, .. } =
                        std::mem::replace(&mut f.step, Step::RetryAt(0))
                    {
                        f.claimed = claimed;
                    }
                    self.start_step(now)?;
                }
                Some(_) => self.start_step(now)?,
                None => {
                    let Some(OutboxEntry { op_id, op, .. }) = self.store.first_op()? else {
                        return Ok(());
                    };
                    let op: Op = ciborium::from_reader(op.as_slice())
                        .map_err(|_| CoreError::Decode("outbox op".into()))?;
                    self.inflight = Some(InFlight {
                        op_id,
                        op,
                        step: Step::RetryAt(0),
                        claimed: Vec::new(),
                    });
                    self.start_step(now)?;
                }
            }
        }
    }

    /// (Re)starts the operation at the head of the outbox.
    fn start_step(&mut self, now: u64) -> Result<()> {
        let f = self.inflight.as_ref().expect("called with an operation");
        let (op_id, op) = (f.op_id, f.op.clone());
        let group_id = op.group_id();
        let active = matches!(
            self.store.conversation_cursor(&group_id)?,
            Some((_, ConversationState::Active | ConversationState::Leaving))
        );
        if let Op::JoinExternal { group_id } = op {
            if active {
                return self.finish_op(op_id); // a member already
            }
            let req = self.request(Request::GetGroupInfo { group_id }, Pending::Op);
            self.set_step(Step::Awaiting(req));
            return Ok(());
        }
        if !active && !matches!(op, Op::CreateGroup { .. }) {
            if let Op::Send { message_id, .. } = op {
                if self.store.message(&message_id)?.is_some() {
                    self.store
                        .set_message_state(&message_id, DeliveryState::Failed, None)?;
                    self.events.push_back(Event::DeliveryState {
                        group_id,
                        message_id,
                        state: DeliveryState::Failed,
                    });
                }
            }
            return self.finish_op(op_id);
        }
        // A commit sent before (a lost connection, a restart, a transient
        // refusal) whose commit is still pending at the same epoch: send
        // exactly the same bundle again, never a rebuilt one. The relay
        // either applies it now or has applied it (then its echo merges it);
        // a rebuilt commit could not be told apart from it.
        if let Some(bundle) = self.prepared_bundle(op_id, &op)? {
            let g = self.load_group(&group_id)?;
            if g.pending_commit().is_some() && g.epoch().as_u64() == bundle.epoch {
                let req = self.request(Request::Commit(bundle), Pending::Op);
                self.set_step(Step::Awaiting(req));
                return Ok(());
            }
        }
        // Otherwise any pending commit is stale: clear it.
        {
            let provider = self.store.mls();
            if let Ok(mut g) = self.load_group(&group_id) {
                if g.pending_commit().is_some() {
                    g.clear_pending_commit(provider.storage())?;
                }
            }
        }
        match op {
            Op::CreateGroup { group_id } => {
                let (_, signer) = self.id()?;
                let group = self.load_group(&group_id)?;
                let gi = group
                    .export_group_info(self.store.mls().crypto(), signer, true)
                    .map_err(CoreError::mls)?;
                let req = self.request(
                    Request::CreateGroup {
                        group_id,
                        group_info: bytes(mls_bytes(&gi)?),
                    },
                    Pending::Op,
                );
                self.set_step(Step::Awaiting(req));
            }
            Op::Send {
                group_id, content, ..
            } => {
                let prepared = match self.store.first_op()? {
                    Some(OutboxEntry {
                        op_id: id,
                        prepared: Some(p),
                        ..
                    }) if id == op_id => p,
                    _ => {
                        let (_, signer) = self.id()?;
                        let tx = self.store.transaction()?;
                        let provider = self.store.mls();
                        let mut group = self.load_group(&group_id)?;
                        let msg = group
                            .create_message(&provider, signer, &content)
                            .map_err(CoreError::mls)?;
                        let b = mls_bytes(&msg)?;
                        self.store.set_op_prepared(op_id, &b)?;
                        tx.commit()?;
                        b
                    }
                };
                let req = self.request(
                    Request::SendMessage {
                        group_id,
                        message: bytes(prepared),
                    },
                    Pending::Op,
                );
                self.set_step(Step::Awaiting(req));
            }
            Op::Leave { group_id } => {
                let (_, signer) = self.id()?;
                let tx = self.store.transaction()?;
                let provider = self.store.mls();
                let mut group = self.load_group(&group_id)?;
                let msg = group
                    .leave_group(&provider, signer)
                    .map_err(CoreError::mls)?;
                tx.commit()?;
                let req = self.request(
                    Request::SendMessage {
                        group_id,
                        message: bytes(mls_bytes(&msg)?),
                    },
                    Pending::Op,
                );
                self.set_step(Step::Awaiting(req));
            }
            Op::AddMembers { .. } => {
                let claimed_already = !self.inflight.as_ref().expect("set").claimed.is_empty();
                if claimed_already {
                    return self.commit_step(now);
                }
                let org_id = self.id()?.0.org_id.clone();
                let req = self.request(Request::GetTrustList { org_id }, Pending::Op);
                self.set_step(Step::RefreshingTrust(req));
            }
            Op::RemoveMembers { .. }
            | Op::RemoveDevices { .. }
            | Op::UpdateCredential { .. }
            | Op::CommitProposals { .. } => self.commit_step(now)?,
            Op::JoinExternal { .. } => unreachable!("handled before the active check"),
        }
        Ok(())
    }

    fn set_step(&mut self, step: Step) {
        if let Some(f) = &mut self.inflight {
            f.step = step;
        }
    }

    /// Builds the commit for the operation at the head of the outbox and
    /// sends it with its Welcome, GroupInfo and roster change.
    fn commit_step(&mut self, now: u64) -> Result<()> {
        let f = self.inflight.as_ref().expect("called with an operation");
        let (op_id, op) = (f.op_id, f.op.clone());
        let group_id = op.group_id();
        let (_, signer) = self.id()?;
        let tx = self.store.transaction()?;
        let provider = self.store.mls();
        let mut group = self.load_group(&group_id)?;
        let present: Vec<(LeafNodeIndex, MemberIdentity)> = group
            .members()
            .filter_map(|m| member_identity(&m.credential).ok().map(|id| (m.index, id)))
            .collect();
        let epoch = group.epoch().as_u64();
        let (commit, welcome, group_info, added, removed) = match &op {
            Op::AddMembers { .. } => {
                let claimed: Vec<_> = f
                    .claimed
                    .iter()
                    .filter(|(d, _, _)| !present.iter().any(|(_, id)| &id.device == d))
                    .cloned()
                    .collect();
                if claimed.is_empty() {
                    drop(tx);
                    let users = match &op {
                        Op::AddMembers { users, .. } => users.clone(),
                        _ => unreachable!(),
                    };
                    let all_present = users
                        .iter()
                        .all(|u| present.iter().any(|(_, id)| &id.user == u));
                    if all_present {
                        // Added by a commit merged through its echo (the
                        // relay's answer was lost): the new members still
                        // need the conversation's name.
                        let name = self.conversation(&group_id)?.name;
                        self.push_meta_op(&group_id, &name, now)?;
                    }
                    // Otherwise nobody could be added; each user was
                    // reported already.
                    return self.finish_op(op_id);
                }
                let kps: Vec<KeyPackage> = claimed.iter().map(|(_, _, k)| k.clone()).collect();
                let (c, w, gi) = group
                    .add_members(&provider, signer, &kps)
                    .map_err(CoreError::mls)?;
                (
                    c,
                    Some(w),
                    gi,
                    claimed.iter().map(|(d, _, _)| *d).collect(),
                    vec![],
                )
            }
            Op::RemoveMembers { .. } | Op::RemoveDevices { .. } => {
                // By user (every device of each) or by device (revoked ones).
                let targets: Vec<_> = present
                    .iter()
                    .filter(|(_, id)| match &op {
                        Op::RemoveMembers { users, .. } => users.contains(&id.user),
                        Op::RemoveDevices { devices, .. } => devices.contains(&id.device),
                        _ => unreachable!("matched above"),
                    })
                    .collect();
                if targets.is_empty() {
                    drop(tx);
                    return self.finish_op(op_id);
                }
                let leaves: Vec<LeafNodeIndex> = targets.iter().map(|(i, _)| *i).collect();
                let (c, w, gi) = group
                    .remove_members(&provider, signer, &leaves)
                    .map_err(CoreError::mls)?;
                (
                    c,
                    w,
                    gi,
                    vec![],
                    targets.iter().map(|(_, id)| id.device).collect(),
                )
            }
            Op::UpdateCredential { .. } => {
                let certificate = self.certificate()?.to_vec();
                let current = group
                    .own_leaf_node()
                    .map(|l| crate::credential::certificate(l.credential()))
                    .transpose()?;
                if current.as_deref() == Some(certificate.as_slice()) {
                    drop(tx);
                    return self.finish_op(op_id); // already carries it
                }
                let params = LeafNodeParameters::builder()
                    .with_credential_with_key(CredentialWithKey {
                        credential: make_credential(&certificate),
                        signature_key: signer.public().into(),
                    })
                    .build();
                // A self-update adds nobody: there is no Welcome.
                let (c, _, gi) = group
                    .self_update(&provider, signer, params)
                    .map_err(CoreError::mls)?
                    .into_contents();
                (c, None, gi, vec![], vec![])
            }
            Op::CommitProposals { .. } => {
                let removed: Vec<DeviceId> = group
                    .pending_proposals()
                    .filter_map(|p| match p.proposal() {
                        Proposal::Remove(r) => present
                            .iter()
                            .find(|(i, _)| *i == r.removed())
                            .map(|(_, id)| id.device),
                        _ => None,
                    })
                    .collect();
                if removed.is_empty() {
                    drop(tx);
                    return self.finish_op(op_id);
                }
                let (c, w, gi) = group
                    .commit_to_pending_proposals(&provider, signer)
                    .map_err(CoreError::mls)?;
                (c, w, gi, vec![], removed)
            }
            _ => unreachable!("only group changes commit"),
        };
        let group_info = match group_info {
            Some(gi) => MlsMessageOut::from(gi),
            None => group
                .export_group_info(provider.crypto(), signer, true)
                .map_err(CoreError::mls)?,
        };
        // openmls also commits proposals waiting in the group (a member's
        // leave request): the roster change must list exactly what the
        // commit does, so take it from the staged commit itself.
        let (added, removed) = match group.pending_commit() {
            Some(staged) => {
                let added: Vec<DeviceId> = staged
                    .add_proposals()
                    .filter_map(|a| {
                        member_identity(a.add_proposal().key_package().leaf_node().credential())
                            .ok()
                            .map(|id| id.device)
                    })
                    .collect();
                let removed: Vec<DeviceId> = staged
                    .remove_proposals()
                    .filter_map(|r| {
                        present
                            .iter()
                            .find(|(i, _)| *i == r.remove_proposal().removed())
                            .map(|(_, id)| id.device)
                    })
                    .collect();
                (added, removed)
            }
            None => (added, removed),
        };
        let bundle = CommitBundle {
            group_id,
            epoch,
            commit: bytes(mls_bytes(&commit)?),
            welcome: welcome.map(|w| mls_bytes(&w)).transpose()?.map(bytes),
            group_info: bytes(mls_bytes(&group_info)?),
            added,
            removed,
        };
        let mut encoded = Vec::new();
        ciborium::into_writer(&bundle, &mut encoded).expect("serialising to a Vec cannot fail");
        self.store.set_op_prepared(op_id, &encoded)?;
        tx.commit()?;
        let req = self.request(Request::Commit(bundle), Pending::Op);
        self.set_step(Step::Awaiting(req));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::new(s).expect("valid")
    }

    #[test]
    fn safety_numbers_are_symmetric_and_change_with_keys() {
        let a = vec![(DeviceId([1; 16]), vec![1; 32])];
        let b = vec![
            (DeviceId([2; 16]), vec![2; 32]),
            (DeviceId([3; 16]), vec![3; 32]),
        ];
        let ab = safety_number((&user("alice@n"), a.clone()), (&user("bob@e"), b.clone()));
        let ba = safety_number((&user("bob@e"), b.clone()), (&user("alice@n"), a.clone()));
        assert_eq!(ab, ba);
        assert_eq!(ab.len(), 60 + 11, "12 groups of 5 digits");
        assert!(ab
            .split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit())));
        // Device order does not matter; a changed key does.
        let b_rev: Vec<_> = b.iter().rev().cloned().collect();
        assert_eq!(
            ab,
            safety_number((&user("alice@n"), a.clone()), (&user("bob@e"), b_rev))
        );
        let mut b2 = b.clone();
        b2[1].1 = vec![4; 32];
        assert_ne!(
            ab,
            safety_number((&user("alice@n"), a), (&user("bob@e"), b2))
        );
    }
}
