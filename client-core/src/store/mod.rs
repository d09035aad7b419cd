//! Durable client state in one SQLite database.
//!
//! openmls keeps its group state here through `openmls_sqlite_storage`, in the
//! same database as the conversation list, message history and the outbox, so
//! that an MLS change and the app data it implies commit in one transaction
//! ([`Store::transaction`]). A torn commit-merge, where the MLS state moved on
//! but the app did not record it (or the other way round), is a known cause of
//! forked groups elsewhere; here it cannot happen.

use std::path::Path;

use cascade_protocol::{DeviceId, GroupId, OrgId, UserId};
use openmls_rust_crypto::RustCrypto;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::OpenMlsProvider;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::content::{Mention, MessageId};
use crate::error::{CoreError, Result};

pub mod at_rest;
mod expiry;
mod features;
pub mod group_cache;
pub mod history;
pub mod reads;
pub mod search;
pub use at_rest::{KdfCost, Protection, StoreKey};
use group_cache::{GroupCache, Ticket};
use openmls::group::MlsGroup;

/// The serde codec openmls's state is stored with.
#[derive(Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    type Error = serde_json::Error;

    fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        serde_json::to_vec(value)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        serde_json::from_slice(slice)
    }
}

/// An `OpenMlsProvider` over the store's connection, made per operation.
pub struct Provider<'a> {
    crypto: &'a RustCrypto,
    storage: SqliteStorageProvider<JsonCodec, &'a Connection>,
}

impl<'a> OpenMlsProvider for Provider<'a> {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = SqliteStorageProvider<JsonCodec, &'a Connection>;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        self.crypto
    }
}

/// The enrolled device's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Base URL of the relay, e.g. `http://127.0.0.1:7171`.
    pub server_url: String,
    /// The user.
    pub user_id: UserId,
    /// The user's organisation.
    pub org_id: OrgId,
    /// This device.
    pub device_id: DeviceId,
    /// The user's display name.
    pub display_name: String,
    /// The user's role.
    pub role: String,
    /// The device's Ed25519 signature public key.
    pub signature_key: Vec<u8>,
    /// The organisation's CA certificate (DER): this device's trust anchor,
    /// checked against the fingerprint in the enrolment code.
    #[serde(default, with = "serde_bytes")]
    pub anchor: Vec<u8>,
    /// The device's certificate (DER) once the organisation issued it.
    #[serde(default)]
    pub certificate: Option<serde_bytes::ByteBuf>,
    /// After a CA rotation: the organisation's previous CA certificate,
    /// still accepted as the signer of the organisation's trust list until
    /// one signed by the new CA arrives.
    #[serde(default)]
    pub previous_anchor: Option<serde_bytes::ByteBuf>,
    /// The CA (PEM) the relay's TLS certificate must chain to, pinned at
    /// enrolment for a private deployment; `None`: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ca: Option<String>,
}

/// State of a conversation on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConversationState {
    /// Active: this device is a member.
    Active,
    /// This device asked to leave; waiting for a member to commit it.
    Leaving,
    /// This device is no longer a member (left or removed).
    Left,
    /// This (new) device's external commit into the conversation is on its
    /// way; not shown until the relay accepted it.
    Joining,
    /// This device fell out of step with the conversation and is rejoining
    /// it by external commit; what is written meanwhile waits.
    Rejoining,
}

impl ConversationState {
    /// The state's stable lowercase name (`active`, `leaving`, `left`,
    /// `joining`, `rejoining`), as stored and as front ends show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Leaving => "leaving",
            Self::Left => "left",
            Self::Joining => "joining",
            Self::Rejoining => "rejoining",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "leaving" => Self::Leaving,
            "left" => Self::Left,
            "joining" => Self::Joining,
            "rejoining" => Self::Rejoining,
            _ => Self::Active,
        }
    }

    /// Whether this device takes part in the conversation: it can write
    /// (what it writes while rejoining waits until it is back in step).
    pub fn is_member(self) -> bool {
        matches!(self, Self::Active | Self::Rejoining)
    }
}

/// A conversation (an MLS group) as the conversation list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The group.
    pub group_id: GroupId,
    /// Its name (from the latest group metadata message).
    pub name: String,
    /// Active, leaving or left.
    pub state: ConversationState,
    /// The MLS epoch this device is at.
    pub epoch: u64,
    /// Unread messages.
    pub unread: u64,
    /// Time of the latest activity, ms since the Unix epoch.
    pub last_activity: u64,
    /// The newest message's text, if any.
    pub last_message: Option<String>,
    /// The organisations of the current members, sorted (this device's
    /// own among them).
    pub orgs: Vec<OrgId>,
    /// How many people (users, not devices) are members.
    pub people: u32,
    /// This user muted it: its messages raise no notification.
    pub muted: bool,
}

/// Delivery state of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Queued on this device, not yet accepted by the relay.
    Sending,
    /// Accepted by the relay and queued for every recipient.
    Sent,
    /// Every other member had it on one of their devices (delivery
    /// receipts from each of them).
    Delivered,
    /// Refused by the relay; will not be retried.
    Failed,
    /// A message from someone else.
    Received,
}

impl DeliveryState {
    /// The state's stable lowercase name (`sending`, `sent`, `delivered`,
    /// `failed`, `received`), as stored and as front ends show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Received => "received",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            _ => Self::Received,
        }
    }
}

/// A message in a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender's message id.
    pub id: MessageId,
    /// The conversation.
    pub group_id: GroupId,
    /// Who sent it.
    pub sender: UserId,
    /// From which device.
    pub sender_device: DeviceId,
    /// Sender's clock, ms since the Unix epoch.
    pub sent_at: u64,
    /// Position in the group's sequence at the relay, once known.
    pub seq: Option<u64>,
    /// The text, or `None` for a kind this client cannot show.
    pub text: Option<String>,
    /// The content kind (`text`, or an unsupported kind's name).
    pub kind: String,
    /// Delivery state.
    pub state: DeliveryState,
    /// The message it answers, as that is now (filled in when read).
    pub reply_to: Option<Quote>,
    /// When its sender last edited it (their clock), if ever.
    pub edited_at: Option<u64>,
    /// Who deleted it for everyone: its text is erased.
    pub deleted_by: Option<UserId>,
    /// Its reactions, by emoji in the order first seen (filled in when
    /// read).
    pub reactions: Vec<Reactions>,
    /// When it disappears from every device (ms since the Unix epoch):
    /// sent while its conversation's disappearing timer was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// How many other people have read it (as far as their read reports
    /// tell: everyone whose read position is at or past it).
    #[serde(default)]
    pub read_by: u32,
    /// The people its text mentions, each a stretch of the text (checked
    /// against the conversation's members when it arrived, and shown with
    /// their certified names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<Mention>,
    /// The file it carries (kind `attachment`; its caption is `text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<crate::content::AttachmentInfo>,
}

impl Message {
    /// Whether its text mentions `user`.
    pub fn mentions(&self, user: &UserId) -> bool {
        self.mentions.iter().any(|m| &m.user_id == user)
    }
}

impl Message {
    /// A line this device adds to a conversation itself (kind `system`),
    /// as its own user and device: what happened is in `text`. `seq`: the
    /// queue item it stands for, if any.
    pub fn system_line(
        group_id: GroupId,
        user: &UserId,
        device: DeviceId,
        now: u64,
        seq: Option<u64>,
        text: String,
    ) -> Message {
        Message {
            id: MessageId::random(),
            group_id,
            sender: user.clone(),
            sender_device: device,
            sent_at: now,
            seq,
            text: Some(text),
            kind: crate::content::SYSTEM_KIND.into(),
            state: DeliveryState::Received,
            reply_to: None,
            edited_at: None,
            deleted_by: None,
            reactions: Vec::new(),
            expires_at: None,
            read_by: 0,
            mentions: Vec::new(),
            attachment: None,
        }
    }
}

/// The message a reply answers, for showing above the reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// Its id, to jump to it.
    pub id: MessageId,
    /// Who sent it; `None` if this device does not have it (sent before
    /// this device joined, or expired).
    pub sender: Option<UserId>,
    /// Its text now; `None` if unknown, deleted or of a kind not shown.
    pub text: Option<String>,
    /// Whether it was deleted for everyone.
    pub deleted: bool,
}

impl Quote {
    /// A reference to `id`, filled in when the reply is read.
    pub fn to(id: MessageId) -> Quote {
        Quote {
            id,
            sender: None,
            text: None,
            deleted: false,
        }
    }
}

/// Everyone who reacted to a message with one emoji.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reactions {
    /// The emoji.
    pub emoji: String,
    /// Who reacted with it, in the order they did.
    pub users: Vec<UserId>,
}

/// A reaction, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// The reaction message's id (what a removal names).
    pub id: MessageId,
    /// The conversation.
    pub group_id: GroupId,
    /// The message reacted to.
    pub target: MessageId,
    /// Who reacted.
    pub user: UserId,
    /// The emoji.
    pub emoji: String,
}

/// An earlier version of an edited message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageVersion {
    /// What it said.
    pub text: String,
    /// When it was sent (the first) or edited (the sender's clock).
    pub at: u64,
}

/// A colleague as the directory shows them: from a verified certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The user.
    pub user_id: UserId,
    /// Their organisation (whose CA certified them).
    pub org_id: OrgId,
    /// Certified name.
    pub display_name: String,
    /// Certified role.
    pub role: String,
    /// How many certified devices they have.
    pub devices: u32,
}

/// An operation waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its id, increasing in queue order.
    pub op_id: i64,
    /// The conversation it belongs to: its lane.
    pub group_id: GroupId,
    /// The encoded operation.
    pub op: Vec<u8>,
    /// Bytes prepared for it (a message's ciphertext, a commit bundle), if
    /// any: a retransmission sends exactly these.
    pub prepared: Option<Vec<u8>>,
    /// Progress the operation keeps across restarts (KeyPackages claimed
    /// for an add), if any.
    pub state: Option<Vec<u8>>,
}

/// Durable client state: the device's identity, conversations, message
/// history, the outbox of unsent operations, small settings, and openmls's
/// group state, all behind one transaction boundary.
///
/// [`SqliteStore`] is the implementation; every implementation must pass the
/// conformance suite in `store/conformance.rs`. The openmls provider is SQLite's
/// (`openmls_sqlite_storage`) because the MLS state must commit in the same
/// transaction as the app data; a different backend (SQLCipher, say) keeps
/// that property by sharing its connection the same way.
pub trait ClientStore: Send {
    /// An openmls provider whose writes join the current transaction.
    fn mls(&self) -> Provider<'_>;
    /// Begins a transaction covering openmls's state and the app data. Use
    /// [`Transactions::transaction`]. Transactions nest: one begun inside
    /// another commits or rolls back with respect to it, and nothing is
    /// durable before the outermost commits.
    fn begin_transaction(&self) -> Result<()>;
    /// Commits the current transaction.
    fn commit_transaction(&self) -> Result<()>;
    /// Rolls the current transaction back.
    fn rollback_transaction(&self) -> Result<()>;

    /// The enrolled identity, if any.
    fn identity(&self) -> Result<Option<Identity>>;
    /// Records the enrolled identity.
    fn set_identity(&self, id: &Identity) -> Result<()>;
    /// A small value by key.
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Stores a small value by key.
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<()>;

    /// Creates a conversation row, active, processed up to `seq` (no-op if
    /// it exists).
    fn insert_conversation(&self, group: &GroupId, name: &str, seq: u64, now: u64) -> Result<()>;
    /// The conversation's last processed sequence number and state.
    fn conversation_cursor(&self, group: &GroupId) -> Result<Option<(u64, ConversationState)>>;
    /// Records that everything up to `seq` of the group has been processed
    /// (never moves backwards).
    fn set_last_seq(&self, group: &GroupId, seq: u64) -> Result<()>;
    /// Forgets a conversation this device never got into (an external join
    /// that failed).
    fn delete_conversation(&self, group: &GroupId) -> Result<()>;
    /// Sets a conversation's state.
    fn set_conversation_state(&self, group: &GroupId, state: ConversationState) -> Result<()>;
    /// Renames a conversation.
    fn set_conversation_name(&self, group: &GroupId, name: &str) -> Result<()>;
    /// Marks a conversation's messages as read.
    fn mark_read(&self, group: &GroupId) -> Result<()>;
    /// Mutes or unmutes a conversation.
    fn set_muted(&self, group: &GroupId, muted: bool) -> Result<()>;
    /// Whether a conversation is muted (`false` if there is none).
    fn muted(&self, group: &GroupId) -> Result<bool>;
    /// All conversations, most recently active first; `epoch_of` supplies
    /// each group's MLS epoch.
    fn conversations(&self, epoch_of: &dyn Fn(&GroupId) -> u64) -> Result<Vec<Conversation>>;
    /// Records who is in a conversation (after its membership changed):
    /// the users, and their organisations, for the list and for whose
    /// delivery receipts count.
    fn set_conversation_members(
        &self,
        group: &GroupId,
        orgs: &[OrgId],
        users: &[UserId],
    ) -> Result<()>;
    /// The users recorded as in a conversation, sorted; `None` if not
    /// recorded (a conversation from before schema 2, until it is).
    fn conversation_users(&self, group: &GroupId) -> Result<Option<Vec<UserId>>>;

    /// Adds a message to history. Returns `false`, changing nothing, if a
    /// message with this id is already there (a duplicate).
    fn insert_message(&self, m: &Message, now: u64, count_unread: bool) -> Result<bool>;
    /// Updates a sent message's delivery state (and seq, once known).
    fn set_message_state(
        &self,
        id: &MessageId,
        state: DeliveryState,
        seq: Option<u64>,
    ) -> Result<()>;
    /// One message by id.
    fn message(&self, id: &MessageId) -> Result<Option<Message>>;
    /// Up to `limit` messages of a conversation in arrival order, oldest
    /// first, older than the message `before` if given.
    fn history(
        &self,
        group: &GroupId,
        before: Option<&MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>>;

    /// Keeps the salt a MIMI message of ours was written with, so that it
    /// can be sent again with the same id.
    fn set_message_salt(&self, id: &MessageId, salt: &[u8; 16]) -> Result<()>;
    /// The salt of a MIMI message of ours.
    fn message_salt(&self, id: &MessageId) -> Result<Option<[u8; 16]>>;
    /// Replaces a message's text by an edit (`edit_id`) made `at`, keeping
    /// the text it had as an earlier version. Returns `false`, changing
    /// nothing, if that edit was already applied.
    fn edit_message(
        &self,
        id: &MessageId,
        edit_id: &MessageId,
        text: &str,
        mentions: &[Mention],
        at: u64,
    ) -> Result<bool>;
    /// A message's earlier versions, oldest first.
    fn message_versions(&self, id: &MessageId) -> Result<Vec<MessageVersion>>;
    /// Keeps the file a message carries (its key included).
    fn set_attachment(&self, id: &MessageId, attachment: &crate::content::Attachment)
        -> Result<()>;
    /// The file a message carries, with its key.
    fn attachment(&self, id: &MessageId) -> Result<Option<crate::content::Attachment>>;
    /// Deletes a message for everyone: its text, earlier versions and
    /// reactions are erased (overwritten in the file), and `by` is kept as
    /// its tombstone.
    fn erase_message(&self, id: &MessageId, by: &UserId) -> Result<()>;
    /// Deletes every message whose disappearing time is `now` or before,
    /// with its earlier versions, reactions and receipts; returns them.
    fn expire_messages(&self, now: u64) -> Result<Vec<(GroupId, MessageId)>>;
    /// When the next message disappears, if any will.
    fn next_expiry(&self) -> Result<Option<u64>>;
    /// Deletes every message sent before `cutoff` (an organisation's
    /// maximum retention), as [`ClientStore::expire_messages`] does.
    fn expire_sent_before(&self, cutoff: u64) -> Result<Vec<(GroupId, MessageId)>>;
    /// When the oldest message kept was sent.
    fn oldest_message(&self) -> Result<Option<u64>>;
    /// Adds a reaction. Returns `false` if one with its id is there.
    fn insert_reaction(&self, r: &Reaction, at: u64) -> Result<bool>;
    /// One reaction by id.
    fn reaction(&self, id: &MessageId) -> Result<Option<Reaction>>;
    /// The reactions to a message, in the order they came.
    fn reactions_to(&self, target: &MessageId) -> Result<Vec<Reaction>>;
    /// Removes a reaction.
    fn delete_reaction(&self, id: &MessageId) -> Result<()>;
    /// Searches history ([`search`]): messages not deleted whose text holds
    /// every word of the query, newest first.
    fn search(&self, query: &search::SearchQuery) -> Result<Vec<search::SearchHit>>;

    /// Records who must confirm our message `id` for it to count as
    /// delivered: the other members when the relay accepted it. Confirmations
    /// already recorded are kept.
    fn expect_receipts(&self, id: &MessageId, group: &GroupId, users: &[UserId]) -> Result<()>;
    /// Records that `user` confirmed receiving message `id` (before or after
    /// it was expected). Returns `false` if that was already recorded.
    fn add_receipt(&self, id: &MessageId, group: &GroupId, user: &UserId, now: u64)
        -> Result<bool>;
    /// Whether message `id` has expected recipients and every one of them
    /// confirmed it.
    fn all_confirmed(&self, id: &MessageId) -> Result<bool>;
    /// `user` left the conversation: stop waiting for their confirmations
    /// there. Returns the messages that were waiting for them.
    fn forget_recipient(&self, group: &GroupId, user: &UserId) -> Result<Vec<MessageId>>;
    /// Who must confirm our message `id` and who did ([`reads`]).
    fn recipients(&self, id: &MessageId) -> Result<Vec<(UserId, bool, Option<u64>)>>;

    /// How far this user has read a conversation, and told ([`reads`]).
    fn read_state(&self, group: &GroupId) -> Result<reads::ReadState>;
    /// Moves this user's read position forward to `seq` and counts what is
    /// unread after it; whether it moved.
    fn read_up_to(&self, group: &GroupId, seq: u64, me: &UserId) -> Result<bool>;
    /// Records that this device reported reading up to `seq`.
    fn set_reported(&self, group: &GroupId, seq: u64) -> Result<()>;
    /// The newest message others could know of: its id and `seq`.
    fn latest_sequenced(&self, group: &GroupId) -> Result<Option<(MessageId, u64)>>;
    /// The newest message of each other person with `seq` in `(after,
    /// up_to]`.
    fn latest_by_sender(
        &self,
        group: &GroupId,
        after: u64,
        up_to: u64,
        me: &UserId,
    ) -> Result<Vec<(UserId, MessageId)>>;
    /// Moves `user`'s read position forward to `seq`; whether it moved.
    fn add_read_mark(&self, group: &GroupId, user: &UserId, seq: u64, at: u64) -> Result<bool>;
    /// How far each other person has read, furthest first.
    fn read_marks(&self, group: &GroupId) -> Result<Vec<reads::ReadMark>>;
    /// Forgets how far `user` read a conversation they left.
    fn forget_read_mark(&self, group: &GroupId, user: &UserId) -> Result<()>;

    /// Appends an operation to a conversation's lane of the outbox;
    /// returns its id.
    fn push_op(&self, group: &GroupId, op: &[u8]) -> Result<i64>;
    /// The conversations with operations waiting, oldest operation first.
    fn outbox_groups(&self) -> Result<Vec<GroupId>>;
    /// Up to `limit` operations of a conversation in queue order, after
    /// `after` if given.
    fn ops(&self, group: &GroupId, after: Option<i64>, limit: u32) -> Result<Vec<OutboxEntry>>;
    /// One operation by id.
    fn op(&self, op_id: i64) -> Result<Option<OutboxEntry>>;
    /// Stores bytes prepared for an operation (a message's ciphertext, a
    /// commit bundle), so a retransmission sends the same bytes.
    fn set_op_prepared(&self, op_id: i64, prepared: &[u8]) -> Result<()>;
    /// Forgets the prepared bytes of every operation of a conversation (its
    /// group state was replaced: they would not decrypt).
    fn clear_prepared(&self, group: &GroupId) -> Result<()>;
    /// Stores an operation's progress (see [`OutboxEntry::state`]).
    fn set_op_state(&self, op_id: i64, state: &[u8]) -> Result<()>;
    /// Removes a finished operation (no-op if already gone).
    fn delete_op(&self, op_id: i64) -> Result<()>;
    /// Number of queued operations.
    fn outbox_len(&self) -> Result<u64>;

    /// Records (or refreshes) a verified directory entry in the local cache.
    fn put_person(&self, person: &Person, now: u64) -> Result<()>;
    /// Searches the local directory cache (name, role or user id contains
    /// `query`, case-insensitive), sorted by name, at most `limit`.
    fn search_people(&self, query: &str, limit: u32) -> Result<Vec<Person>>;

    /// Takes the live state of a group kept in memory, if there is one that
    /// matches the database ([`group_cache`]), and the ticket of this load.
    /// Use `engine::groups::load`, which decodes the group when none is kept.
    fn take_group(&self, group: &GroupId) -> Result<(Option<MlsGroup>, Ticket)>;
    /// Gives back a group's live state after use: `changed` if it may have
    /// changed, when it is kept only if the open transaction commits.
    fn give_back_group(&self, group: GroupId, state: MlsGroup, ticket: Ticket, changed: bool);
    /// Forgets any kept state of a group (it was created, replaced or
    /// deleted other than through a kept instance).
    fn forget_group(&self, group: &GroupId);
    /// The history, to put into another device of the same user
    /// ([`history`]); `disappearing`: with messages that will disappear.
    fn export_history(&self, disappearing: bool) -> Result<history::HistoryArchive>;
    /// Puts one archived conversation into this store (within the caller's
    /// transaction); a conversation new here is recorded as `new_state`.
    /// Returns whether the conversation was new here and how many of its
    /// messages were.
    fn import_conversation(
        &self,
        conversation: &history::ArchivedConversation,
        new_state: ConversationState,
    ) -> Result<(bool, usize)>;
}

/// The SQLite store: a file (or, for tests, memory) holding openmls's state
/// and the app data in one database.
pub struct SqliteStore {
    conn: Connection,
    crypto: RustCrypto,
    /// Transactions open: the outermost is a SQLite transaction, the ones
    /// inside it savepoints, so that work done in several transactions can
    /// be made durable with one commit (one fsync).
    depth: std::cell::Cell<u32>,
    /// Groups kept in memory between operations.
    pub(crate) groups: std::cell::RefCell<GroupCache>,
    /// SHA-256 of the raw key it was opened with, for the app lock.
    key_digest: Option<[u8; 32]>,
}

/// Schema version 1: the first released layout (kept as it was, so an
/// older database migrates forward from it).
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    group_id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    unread INTEGER NOT NULL DEFAULT 0,
    last_activity INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id BLOB NOT NULL UNIQUE,
    group_id BLOB NOT NULL,
    sender TEXT NOT NULL,
    sender_device BLOB NOT NULL,
    sent_at INTEGER NOT NULL,
    seq INTEGER,
    kind TEXT NOT NULL,
    text TEXT,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_group ON messages (group_id, rowid);
CREATE TABLE IF NOT EXISTS outbox (
    op_id INTEGER PRIMARY KEY AUTOINCREMENT,
    op BLOB NOT NULL,
    prepared BLOB
);
CREATE TABLE IF NOT EXISTS directory (
    user_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    devices INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS recipients (
    message_id BLOB NOT NULL,
    group_id BLOB NOT NULL,
    user_id TEXT NOT NULL,
    expected INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX IF NOT EXISTS recipients_waiting ON recipients (group_id, user_id)
    WHERE received_at IS NULL;
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

/// Schema version 2: the outbox in lanes per conversation, with the
/// progress an operation keeps across restarts; each conversation's
/// organisations and head count for the list.
const SCHEMA_V2: &str = "
ALTER TABLE outbox ADD COLUMN group_id BLOB;
ALTER TABLE outbox ADD COLUMN state BLOB;
CREATE INDEX outbox_by_group ON outbox (group_id, op_id);
ALTER TABLE conversations ADD COLUMN orgs TEXT;
ALTER TABLE conversations ADD COLUMN people INTEGER;
ALTER TABLE conversations ADD COLUMN users TEXT;
";

/// Schema version 3: replies, edits (with the versions they replaced),
/// deletes for everyone, reactions, and the salt of our MIMI messages.
const SCHEMA_V3: &str = "
ALTER TABLE messages ADD COLUMN in_reply_to BLOB;
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted_by TEXT;
ALTER TABLE messages ADD COLUMN salt BLOB;
CREATE TABLE message_versions (
    message_id BLOB NOT NULL,
    group_id BLOB NOT NULL,
    edit_id BLOB NOT NULL UNIQUE,
    text TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX message_versions_by_message ON message_versions (message_id);
CREATE TABLE reactions (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    reaction_id BLOB NOT NULL UNIQUE,
    group_id BLOB NOT NULL,
    target_id BLOB NOT NULL,
    user_id TEXT NOT NULL,
    emoji TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX reactions_by_target ON reactions (target_id);
";

/// The schema version this build writes. Databases of older versions are
/// migrated forward when opened; newer ones are refused
/// ([`CoreError::SchemaTooNew`]). Every version's layout is kept as a
/// fixture (`tests/fixtures/store-v<N>/`) and opened by a test.
pub const SCHEMA_VERSION: u32 = 7;

/// Transactions on any store, also one used as `&dyn ClientStore`.
pub trait Transactions: ClientStore {
    /// Starts a transaction that rolls back unless committed.
    fn transaction(&self) -> Result<Tx<'_, Self>>;
}

impl<S: ClientStore + ?Sized> Transactions for S {
    fn transaction(&self) -> Result<Tx<'_, Self>> {
        self.begin_transaction()?;
        Ok(Tx {
            store: self,
            done: false,
        })
    }
}

/// A transaction on a store. Rolls back when dropped without [`Tx::commit`].
pub struct Tx<'a, S: ClientStore + ?Sized> {
    store: &'a S,
    done: bool,
}

impl<S: ClientStore + ?Sized> Tx<'_, S> {
    /// Commits everything done since [`ClientStore::transaction`].
    pub fn commit(mut self) -> Result<()> {
        self.store.commit_transaction()?;
        self.done = true;
        Ok(())
    }
}

impl<S: ClientStore + ?Sized> Drop for Tx<'_, S> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.store.rollback_transaction() {
                tracing::error!(error = %e, "rollback failed");
            }
        }
    }
}

fn blob16<T, F: Fn([u8; 16]) -> T>(v: Vec<u8>, f: F) -> rusqlite::Result<T> {
    let arr: [u8; 16] = v.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Blob)
    })?;
    Ok(f(arr))
}

impl SqliteStore {
    /// Opens (creating if needed) the encrypted database at `path` with
    /// `key`, encrypting it first if it is a plain SQLite database from
    /// before encryption ([`at_rest`]). A wrong key or passphrase is
    /// [`CoreError::WrongKey`] and changes nothing on disk.
    pub fn open(path: &Path, key: &StoreKey) -> Result<Self> {
        let (conn, digest) = at_rest::open(path, key)?;
        let mut store = Self::init(conn)?;
        store.key_digest = Some(digest);
        Ok(store)
    }

    /// An in-memory store, for tests of the engine (nothing on disk).
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    /// SHA-256 of the raw key the store was opened with (`None` in memory).
    pub(crate) fn key_digest(&self) -> Option<[u8; 32]> {
        self.key_digest
    }

    /// Re-encrypts the store with the raw key `key` ([`at_rest::rekey`]);
    /// its digest is the store's from then on.
    pub(crate) fn rekey(&mut self, key: &at_rest::DbKey) -> Result<[u8; 32]> {
        let digest = at_rest::rekey(&self.conn, key)?;
        self.key_digest = Some(digest);
        Ok(digest)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // What is deleted (a message deleted for everyone) is overwritten
        // in the file, not only unlinked.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        SqliteStorageProvider::<JsonCodec, &mut Connection>::new(&mut conn)
            .run_migrations()
            .map_err(|e| CoreError::Mls(format!("openmls storage migration: {e}")))?;
        Ok(Self {
            conn,
            crypto: RustCrypto::default(),
            depth: std::cell::Cell::new(0),
            groups: Default::default(),
            key_digest: None,
        })
    }
}

/// Brings the database to [`SCHEMA_VERSION`], one version at a time, each
/// step in its own transaction together with the new `user_version`.
///
/// A database from before versioning has `user_version` 0 and, if it was
/// used, the version-1 tables: version 1's statements are idempotent
/// (`IF NOT EXISTS`), so it is recorded as version 1 and migrated on.
fn migrate(conn: &mut Connection) -> Result<()> {
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(CoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for version in (found + 1)..=SCHEMA_VERSION {
        let tx = conn.transaction()?;
        match version {
            1 => tx.execute_batch(SCHEMA_V1)?,
            2 => {
                tx.execute_batch(SCHEMA_V2)?;
                lane_v1_outbox(&tx)?;
            }
            3 => tx.execute_batch(SCHEMA_V3)?,
            4 => tx.execute_batch(search::SCHEMA_V4)?,
            5 => tx.execute_batch(expiry::SCHEMA_V5)?,
            6 => tx.execute_batch(reads::SCHEMA_V6)?,
            7 => tx.execute_batch(features::SCHEMA_V7)?,
            _ => unreachable!("every version up to SCHEMA_VERSION has a step"),
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

/// Version 2 puts each outbox operation in its conversation's lane. A
/// version-1 operation is a CBOR map `{variant: {"group_id": bytes(16),
/// ...}}`; its group id is read from there.
fn lane_v1_outbox(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let rows: Vec<(i64, Vec<u8>)> = tx
        .prepare("SELECT op_id, op FROM outbox")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (op_id, op) in rows {
        let group = v1_op_group(&op).ok_or(CoreError::Decode("a version-1 outbox operation"))?;
        tx.execute(
            "UPDATE outbox SET group_id = ?2 WHERE op_id = ?1",
            params![op_id, group.as_bytes().as_slice()],
        )?;
    }
    Ok(())
}

/// The group id inside a version-1 outbox operation.
fn v1_op_group(op: &[u8]) -> Option<GroupId> {
    use ciborium::Value;
    let Value::Map(outer) = ciborium::from_reader::<Value, _>(op).ok()? else {
        return None;
    };
    let [(_, Value::Map(fields))] = outer.as_slice() else {
        return None;
    };
    fields.iter().find_map(|(k, v)| match (k, v) {
        (Value::Text(k), Value::Bytes(b)) if k == "group_id" => {
            <[u8; 16]>::try_from(b.as_slice()).ok().map(GroupId)
        }
        _ => None,
    })
}

impl ClientStore for SqliteStore {
    fn export_history(&self, disappearing: bool) -> Result<history::HistoryArchive> {
        history::export(&self.conn, disappearing)
    }

    fn import_conversation(
        &self,
        conversation: &history::ArchivedConversation,
        new_state: ConversationState,
    ) -> Result<(bool, usize)> {
        history::import(&self.conn, conversation, new_state)
    }

    fn take_group(&self, group: &GroupId) -> Result<(Option<MlsGroup>, Ticket)> {
        let data_version: i64 = self
            .conn
            .pragma_query_value(None, "data_version", |r| r.get(0))?;
        let mut cache = self.groups.borrow_mut();
        cache.check(data_version);
        Ok(cache.take(group))
    }

    fn give_back_group(&self, group: GroupId, state: MlsGroup, ticket: Ticket, changed: bool) {
        let in_transaction = self.depth.get() > 0;
        self.groups
            .borrow_mut()
            .give_back(group, state, ticket, changed, in_transaction);
    }

    fn forget_group(&self, group: &GroupId) {
        self.groups.borrow_mut().forget(group);
    }

    fn mls(&self) -> Provider<'_> {
        Provider {
            crypto: &self.crypto,
            storage: SqliteStorageProvider::new(&self.conn),
        }
    }

    fn begin_transaction(&self) -> Result<()> {
        let depth = self.depth.get();
        if depth == 0 {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
        } else {
            self.conn.execute_batch(&format!("SAVEPOINT s{depth}"))?;
        }
        self.depth.set(depth + 1);
        Ok(())
    }

    fn commit_transaction(&self) -> Result<()> {
        let depth = self.depth.get() - 1;
        if depth == 0 {
            self.conn.execute_batch("COMMIT")?;
            self.groups.borrow_mut().committed();
        } else {
            self.conn.execute_batch(&format!("RELEASE s{depth}"))?;
        }
        self.depth.set(depth);
        Ok(())
    }

    fn rollback_transaction(&self) -> Result<()> {
        let depth = self.depth.get() - 1;
        self.depth.set(depth);
        self.groups.borrow_mut().rolled_back();
        if depth == 0 {
            self.conn.execute_batch("ROLLBACK")?;
        } else {
            self.conn
                .execute_batch(&format!("ROLLBACK TO s{depth}; RELEASE s{depth}"))?;
        }
        Ok(())
    }

    fn identity(&self) -> Result<Option<Identity>> {
        let rec: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT record FROM identity WHERE id = 1", [], |r| r.get(0))
            .optional()?;
        rec.map(|b| {
            ciborium::from_reader(b.as_slice())
                .map_err(|_| CoreError::Decode("the stored identity"))
        })
        .transpose()
    }

    fn set_identity(&self, id: &Identity) -> Result<()> {
        let mut b = Vec::new();
        ciborium::into_writer(id, &mut b).expect("serialising to a Vec cannot fail");
        self.conn.execute(
            "INSERT OR REPLACE INTO identity (id, record) VALUES (1, ?1)",
            params![b],
        )?;
        Ok(())
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    fn insert_conversation(&self, group: &GroupId, name: &str, seq: u64, now: u64) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO conversations (group_id, name, state, last_seq, last_activity)
             VALUES (?1, ?2, 'active', ?3, ?4)",
            params![group.as_bytes().as_slice(), name, seq as i64, now as i64],
        )?;
        Ok(())
    }

    fn conversation_cursor(&self, group: &GroupId) -> Result<Option<(u64, ConversationState)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT last_seq, state FROM conversations WHERE group_id = ?1",
                [group.as_bytes().as_slice()],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        ConversationState::parse(&r.get::<_, String>(1)?),
                    ))
                },
            )
            .optional()?)
    }

    fn set_last_seq(&self, group: &GroupId, seq: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET last_seq = MAX(last_seq, ?2) WHERE group_id = ?1",
            params![group.as_bytes().as_slice(), seq as i64],
        )?;
        Ok(())
    }

    fn delete_conversation(&self, group: &GroupId) -> Result<()> {
        self.conn.execute(
            "DELETE FROM conversations WHERE group_id = ?1",
            [group.as_bytes().as_slice()],
        )?;
        Ok(())
    }

    fn set_conversation_state(&self, group: &GroupId, state: ConversationState) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET state = ?2 WHERE group_id = ?1",
            params![group.as_bytes().as_slice(), state.as_str()],
        )?;
        Ok(())
    }

    fn set_conversation_name(&self, group: &GroupId, name: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET name = ?2 WHERE group_id = ?1",
            params![group.as_bytes().as_slice(), name],
        )?;
        Ok(())
    }

    fn set_muted(&self, group: &GroupId, muted: bool) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET muted = ?2 WHERE group_id = ?1",
            params![group.as_bytes().as_slice(), i64::from(muted)],
        )?;
        Ok(())
    }

    fn muted(&self, group: &GroupId) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT muted FROM conversations WHERE group_id = ?1",
                [group.as_bytes().as_slice()],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .is_some_and(|m| m != 0))
    }

    fn mark_read(&self, group: &GroupId) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET unread = 0 WHERE group_id = ?1",
            [group.as_bytes().as_slice()],
        )?;
        Ok(())
    }

    fn conversations(&self, epoch_of: &dyn Fn(&GroupId) -> u64) -> Result<Vec<Conversation>> {
        let mut stmt = self.conn.prepare(
            "SELECT c.group_id, c.name, c.state, c.unread, c.last_activity,
                    (SELECT text FROM messages m WHERE m.group_id = c.group_id
                       AND m.kind = 'text' ORDER BY m.rowid DESC LIMIT 1),
                    c.orgs, c.people, c.muted
             FROM conversations c ORDER BY c.last_activity DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                blob16(r.get(0)?, GroupId)?,
                r.get::<_, String>(1)?,
                ConversationState::parse(&r.get::<_, String>(2)?),
                r.get::<_, i64>(3)? as u64,
                r.get::<_, i64>(4)? as u64,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, i64>(8)? != 0,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (group_id, name, state, unread, last_activity, last_message, orgs, people, muted) =
                row?;
            out.push(Conversation {
                epoch: epoch_of(&group_id),
                group_id,
                name,
                state,
                unread,
                last_activity,
                last_message,
                orgs: orgs
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .filter_map(|o| OrgId::new(o).ok())
                    .collect(),
                people: people.unwrap_or(0) as u32,
                muted,
            });
        }
        Ok(out)
    }

    fn set_conversation_members(
        &self,
        group: &GroupId,
        orgs: &[OrgId],
        users: &[UserId],
    ) -> Result<()> {
        let mut orgs: Vec<&str> = orgs.iter().map(|o| o.as_str()).collect();
        orgs.sort_unstable();
        orgs.dedup();
        let mut users: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        self.conn.execute(
            "UPDATE conversations SET orgs = ?2, people = ?3, users = ?4 WHERE group_id = ?1",
            params![
                group.as_bytes().as_slice(),
                orgs.join(","),
                users.len() as u32,
                users.join(",")
            ],
        )?;
        Ok(())
    }

    fn conversation_users(&self, group: &GroupId) -> Result<Option<Vec<UserId>>> {
        let users: Option<Option<String>> = self
            .conn
            .prepare_cached("SELECT users FROM conversations WHERE group_id = ?1")?
            .query_row([group.as_bytes().as_slice()], |r| r.get(0))
            .optional()?;
        Ok(users.flatten().map(|u| {
            u.split(',')
                .filter(|s| !s.is_empty())
                .filter_map(|s| UserId::new(s).ok())
                .collect()
        }))
    }

    fn insert_message(&self, m: &Message, now: u64, count_unread: bool) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO messages
             (message_id, group_id, sender, sender_device, sent_at, seq, kind, text, state,
              in_reply_to, expires_at, mentions)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                m.id.as_bytes(),
                m.group_id.as_bytes().as_slice(),
                m.sender.as_str(),
                m.sender_device.as_bytes().as_slice(),
                m.sent_at as i64,
                m.seq.map(|s| s as i64),
                m.kind,
                m.text,
                m.state.as_str(),
                m.reply_to.as_ref().map(|q| q.id.as_bytes()),
                m.expires_at.map(|t| t as i64),
                mentions_column(&m.mentions),
            ],
        )?;
        if n == 1 {
            self.conn.execute(
                "UPDATE conversations SET last_activity = ?2, unread = unread + ?3
                 WHERE group_id = ?1",
                params![
                    m.group_id.as_bytes().as_slice(),
                    now as i64,
                    i64::from(count_unread)
                ],
            )?;
        }
        Ok(n == 1)
    }

    fn set_message_state(
        &self,
        id: &MessageId,
        state: DeliveryState,
        seq: Option<u64>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE messages SET state = ?2, seq = COALESCE(?3, seq) WHERE message_id = ?1",
            params![id.as_bytes(), state.as_str(), seq.map(|s| s as i64)],
        )?;
        Ok(())
    }

    fn message(&self, id: &MessageId) -> Result<Option<Message>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {MSG_COLS} FROM messages m {QUOTE_JOIN} WHERE m.message_id = ?1"
        ))?;
        let mut found: Vec<Message> = stmt
            .query_row([id.as_bytes()], row_to_message)
            .optional()?
            .into_iter()
            .collect();
        features::fill_reactions(&self.conn, &mut found)?;
        Ok(found.pop())
    }

    fn history(
        &self,
        group: &GroupId,
        before: Option<&MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let before_row: i64 = match before {
            Some(id) => self
                .conn
                .query_row(
                    "SELECT rowid FROM messages WHERE message_id = ?1",
                    [id.as_bytes()],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(i64::MAX),
            None => i64::MAX,
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {MSG_COLS} FROM messages m {QUOTE_JOIN}
             WHERE m.group_id = ?1 AND m.rowid < ?2
             ORDER BY m.rowid DESC LIMIT ?3"
        ))?;
        let mut out = stmt
            .query_map(
                params![group.as_bytes().as_slice(), before_row, limit],
                row_to_message,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.reverse();
        features::fill_reactions(&self.conn, &mut out)?;
        Ok(out)
    }

    fn set_message_salt(&self, id: &MessageId, salt: &[u8; 16]) -> Result<()> {
        features::set_salt(&self.conn, id, salt)
    }

    fn message_salt(&self, id: &MessageId) -> Result<Option<[u8; 16]>> {
        features::salt(&self.conn, id)
    }

    fn edit_message(
        &self,
        id: &MessageId,
        edit_id: &MessageId,
        text: &str,
        mentions: &[Mention],
        at: u64,
    ) -> Result<bool> {
        features::edit(&self.conn, id, edit_id, text, mentions, at)
    }

    fn message_versions(&self, id: &MessageId) -> Result<Vec<MessageVersion>> {
        features::versions(&self.conn, id)
    }

    fn set_attachment(
        &self,
        id: &MessageId,
        attachment: &crate::content::Attachment,
    ) -> Result<()> {
        features::set_attachment(&self.conn, id, attachment)
    }

    fn attachment(&self, id: &MessageId) -> Result<Option<crate::content::Attachment>> {
        features::attachment(&self.conn, id)
    }

    fn erase_message(&self, id: &MessageId, by: &UserId) -> Result<()> {
        features::erase(&self.conn, id, by)
    }

    fn expire_messages(&self, now: u64) -> Result<Vec<(GroupId, MessageId)>> {
        expiry::expire(&self.conn, now)
    }

    fn next_expiry(&self) -> Result<Option<u64>> {
        expiry::next(&self.conn)
    }

    fn expire_sent_before(&self, cutoff: u64) -> Result<Vec<(GroupId, MessageId)>> {
        expiry::expire_sent_before(&self.conn, cutoff)
    }

    fn oldest_message(&self) -> Result<Option<u64>> {
        expiry::oldest(&self.conn)
    }

    fn insert_reaction(&self, r: &Reaction, at: u64) -> Result<bool> {
        features::insert_reaction(&self.conn, r, at)
    }

    fn reaction(&self, id: &MessageId) -> Result<Option<Reaction>> {
        features::reaction(&self.conn, id)
    }

    fn reactions_to(&self, target: &MessageId) -> Result<Vec<Reaction>> {
        features::reactions_to(&self.conn, target)
    }

    fn delete_reaction(&self, id: &MessageId) -> Result<()> {
        features::delete_reaction(&self.conn, id)
    }

    fn search(&self, query: &search::SearchQuery) -> Result<Vec<search::SearchHit>> {
        search::search(&self.conn, query)
    }

    fn expect_receipts(&self, id: &MessageId, group: &GroupId, users: &[UserId]) -> Result<()> {
        let mut stmt = self.conn.prepare(
            "INSERT INTO recipients (message_id, group_id, user_id, expected) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (message_id, user_id) DO UPDATE SET expected = 1",
        )?;
        for u in users {
            stmt.execute(params![id.as_bytes(), group.0.as_slice(), u.as_str()])?;
        }
        Ok(())
    }

    fn add_receipt(
        &self,
        id: &MessageId,
        group: &GroupId,
        user: &UserId,
        now: u64,
    ) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT INTO recipients (message_id, group_id, user_id, received_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (message_id, user_id) DO UPDATE SET received_at = excluded.received_at
             WHERE received_at IS NULL",
            params![id.as_bytes(), group.0.as_slice(), user.as_str(), now as i64],
        )?;
        Ok(n == 1)
    }

    fn all_confirmed(&self, id: &MessageId) -> Result<bool> {
        let (expected, waiting): (i64, i64) = self.conn.query_row(
            "SELECT COALESCE(SUM(expected), 0), COALESCE(SUM(expected AND received_at IS NULL), 0)
             FROM recipients WHERE message_id = ?1",
            [id.as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(expected > 0 && waiting == 0)
    }

    fn forget_recipient(&self, group: &GroupId, user: &UserId) -> Result<Vec<MessageId>> {
        let mut stmt = self.conn.prepare(
            "DELETE FROM recipients WHERE group_id = ?1 AND user_id = ?2 AND received_at IS NULL
             RETURNING message_id",
        )?;
        let ids = stmt
            .query_map(params![group.0.as_slice(), user.as_str()], |r| {
                r.get::<_, Vec<u8>>(0)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        ids.into_iter()
            .map(|b| MessageId::from_bytes(&b).ok_or(CoreError::Decode("a stored message id")))
            .collect()
    }

    fn recipients(&self, id: &MessageId) -> Result<Vec<(UserId, bool, Option<u64>)>> {
        reads::recipients(&self.conn, id)
    }

    fn read_state(&self, group: &GroupId) -> Result<reads::ReadState> {
        reads::state(&self.conn, group)
    }

    fn read_up_to(&self, group: &GroupId, seq: u64, me: &UserId) -> Result<bool> {
        reads::read_up_to(&self.conn, group, seq, me)
    }

    fn set_reported(&self, group: &GroupId, seq: u64) -> Result<()> {
        reads::set_reported(&self.conn, group, seq)
    }

    fn latest_sequenced(&self, group: &GroupId) -> Result<Option<(MessageId, u64)>> {
        reads::latest(&self.conn, group)
    }

    fn latest_by_sender(
        &self,
        group: &GroupId,
        after: u64,
        up_to: u64,
        me: &UserId,
    ) -> Result<Vec<(UserId, MessageId)>> {
        reads::latest_by_sender(&self.conn, group, after, up_to, me)
    }

    fn add_read_mark(&self, group: &GroupId, user: &UserId, seq: u64, at: u64) -> Result<bool> {
        reads::add_mark(&self.conn, group, user, seq, at)
    }

    fn read_marks(&self, group: &GroupId) -> Result<Vec<reads::ReadMark>> {
        reads::marks(&self.conn, group)
    }

    fn forget_read_mark(&self, group: &GroupId, user: &UserId) -> Result<()> {
        reads::forget_mark(&self.conn, group, user)
    }

    fn push_op(&self, group: &GroupId, op: &[u8]) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO outbox (group_id, op) VALUES (?1, ?2)",
            params![group.as_bytes().as_slice(), op],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn outbox_groups(&self) -> Result<Vec<GroupId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT group_id FROM outbox GROUP BY group_id ORDER BY MIN(op_id)")?;
        let groups = stmt
            .query_map([], |r| blob16(r.get(0)?, GroupId))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(groups)
    }

    fn ops(&self, group: &GroupId, after: Option<i64>, limit: u32) -> Result<Vec<OutboxEntry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT op_id, group_id, op, prepared, state FROM outbox
             WHERE group_id = ?1 AND op_id > ?2 ORDER BY op_id LIMIT ?3",
        )?;
        let ops = stmt
            .query_map(
                params![group.as_bytes().as_slice(), after.unwrap_or(0), limit],
                row_to_entry,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(ops)
    }

    fn op(&self, op_id: i64) -> Result<Option<OutboxEntry>> {
        Ok(self
            .conn
            .query_row(
                "SELECT op_id, group_id, op, prepared, state FROM outbox WHERE op_id = ?1",
                [op_id],
                row_to_entry,
            )
            .optional()?)
    }

    fn set_op_prepared(&self, op_id: i64, prepared: &[u8]) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox SET prepared = ?2 WHERE op_id = ?1",
            params![op_id, prepared],
        )?;
        Ok(())
    }

    fn clear_prepared(&self, group: &GroupId) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox SET prepared = NULL WHERE group_id = ?1",
            [group.as_bytes().as_slice()],
        )?;
        Ok(())
    }

    fn set_op_state(&self, op_id: i64, state: &[u8]) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox SET state = ?2 WHERE op_id = ?1",
            params![op_id, state],
        )?;
        Ok(())
    }

    fn delete_op(&self, op_id: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM outbox WHERE op_id = ?1", [op_id])?;
        Ok(())
    }

    fn put_person(&self, p: &Person, now: u64) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO directory
             (user_id, org_id, display_name, role, devices, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                p.user_id.as_str(),
                p.org_id.as_str(),
                p.display_name,
                p.role,
                p.devices,
                now as i64
            ],
        )?;
        Ok(())
    }

    fn search_people(&self, query: &str, limit: u32) -> Result<Vec<Person>> {
        let pattern = format!(
            "%{}%",
            query
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let mut stmt = self.conn.prepare(
            "SELECT user_id, org_id, display_name, role, devices FROM directory
             WHERE lower(display_name) LIKE ?1 ESCAPE '\\' OR lower(role) LIKE ?1 ESCAPE '\\'
                OR user_id LIKE ?1 ESCAPE '\\'
             ORDER BY display_name LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![pattern, limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (user, org, display_name, role, devices) = row?;
            let (Ok(user_id), Ok(org_id)) = (UserId::new(user), OrgId::new(org)) else {
                continue;
            };
            out.push(Person {
                user_id,
                org_id,
                display_name,
                role,
                devices,
            });
        }
        Ok(out)
    }

    fn outbox_len(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))?
            as u64)
    }
}

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        op_id: r.get(0)?,
        group_id: blob16(r.get(1)?, GroupId)?,
        op: r.get(2)?,
        prepared: r.get(3)?,
        state: r.get(4)?,
    })
}

const MSG_COLS: &str = "m.message_id, m.group_id, m.sender, m.sender_device, m.sent_at, m.seq,
     m.kind, m.text, m.state, m.in_reply_to, m.edited_at, m.deleted_by,
     q.sender, q.text, q.deleted_by IS NOT NULL, m.expires_at,
     (SELECT COUNT(*) FROM read_marks r
      WHERE r.group_id = m.group_id AND r.seq >= m.seq AND r.user_id != m.sender),
     m.mentions, m.attachment";

/// The message a reply answers, for [`Quote`].
const QUOTE_JOIN: &str = "LEFT JOIN messages q ON q.message_id = m.in_reply_to";

fn user_column(i: usize, s: String) -> rusqlite::Result<UserId> {
    UserId::new(s).map_err(|_| {
        rusqlite::Error::InvalidColumnType(i, "user".into(), rusqlite::types::Type::Text)
    })
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let sender: String = r.get(2)?;
    Ok(Message {
        id: {
            let b: Vec<u8> = r.get(0)?;
            MessageId::from_bytes(&b).ok_or_else(|| {
                rusqlite::Error::InvalidColumnType(
                    0,
                    "message_id".into(),
                    rusqlite::types::Type::Blob,
                )
            })?
        },
        group_id: blob16(r.get(1)?, GroupId)?,
        sender: UserId::new(sender).map_err(|_| {
            rusqlite::Error::InvalidColumnType(2, "sender".into(), rusqlite::types::Type::Text)
        })?,
        sender_device: blob16(r.get(3)?, DeviceId)?,
        sent_at: r.get::<_, i64>(4)? as u64,
        seq: r.get::<_, Option<i64>>(5)?.map(|s| s as u64),
        kind: r.get(6)?,
        text: r.get(7)?,
        state: DeliveryState::parse(&r.get::<_, String>(8)?),
        reply_to: match r.get::<_, Option<Vec<u8>>>(9)? {
            None => None,
            Some(b) => {
                let id = MessageId::from_bytes(&b).ok_or_else(|| {
                    rusqlite::Error::InvalidColumnType(
                        9,
                        "in_reply_to".into(),
                        rusqlite::types::Type::Blob,
                    )
                })?;
                Some(Quote {
                    id,
                    sender: r
                        .get::<_, Option<String>>(12)?
                        .map(|s| user_column(12, s))
                        .transpose()?,
                    text: r.get(13)?,
                    deleted: r.get::<_, Option<bool>>(14)?.unwrap_or(false),
                })
            }
        },
        edited_at: r.get::<_, Option<i64>>(10)?.map(|t| t as u64),
        deleted_by: r
            .get::<_, Option<String>>(11)?
            .map(|s| user_column(11, s))
            .transpose()?,
        reactions: Vec::new(),
        expires_at: r.get::<_, Option<i64>>(15)?.map(|t| t as u64),
        read_by: r.get::<_, i64>(16)? as u32,
        mentions: match r.get::<_, Option<String>>(17)? {
            None => Vec::new(),
            Some(json) => serde_json::from_str(&json).map_err(|_| {
                rusqlite::Error::InvalidColumnType(
                    17,
                    "mentions".into(),
                    rusqlite::types::Type::Text,
                )
            })?,
        },
        attachment: r
            .get::<_, Option<String>>(18)?
            .and_then(|j| serde_json::from_str::<crate::content::Attachment>(&j).ok())
            .map(|a| a.info()),
    })
}

/// The `mentions` column: JSON, `[{"user_id": .., "start": .., "end": ..}]`,
/// or `NULL` for none.
pub(crate) fn mentions_column(mentions: &[Mention]) -> Option<String> {
    (!mentions.is_empty()).then(|| serde_json::to_string(mentions).expect("mentions serialise"))
}

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod golden;

/// Decodes `bytes` as every record the device stores in its own encodings
/// (an outbox operation, an add's claimed KeyPackages, a prepared commit
/// bundle, the identity), as a damaged database would present them: each
/// either refuses or reads as a record that encodes and reads back to
/// itself. Never panics. For the fuzz target `stored_records`.
#[doc(hidden)]
pub fn fuzz_decode_records(bytes: &[u8]) {
    fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).expect("serialising to a Vec cannot fail");
        out
    }
    fn check<T>(bytes: &[u8])
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        if let Ok(record) = ciborium::from_reader::<T, _>(bytes) {
            let again: T = ciborium::from_reader(cbor(&record).as_slice()).expect("reads back");
            assert_eq!(again, record);
        }
    }
    if let Ok(op) = crate::engine::outbox::Op::decode(bytes) {
        let again = crate::engine::outbox::Op::decode(&op.encode()).expect("reads back");
        assert_eq!(again, op);
    }
    check::<crate::engine::outbox::AddClaims>(bytes);
    check::<cascade_protocol::CommitBundle>(bytes);
    check::<Identity>(bytes);
}
