//! The sans-IO client engine.
//!
//! The engine owns the device's MLS groups and its SQLite store. It never
//! touches a socket or a clock: the async layer ([`crate::Client`]) feeds it
//! frames from the relay ([`Engine::handle_frame`]), connection changes,
//! commands from the front end and the current time, and drains what it
//! produces: frames to send ([`Engine::poll_transmit`]), events for the front
//! end ([`Engine::poll_event`]), answers to queries ([`Engine::poll_answer`])
//! and when it next wants to be woken ([`Engine::poll_timeout`]). Tests drive
//! it deterministically.
//!
//! It is a set of smaller machines, each owning its state and returning
//! effects (requests with where their answers go, events, answers) instead
//! of calling back into the engine:
//! - [`connection`]: challenge, authentication, catching up, request ids,
//!   acknowledgements;
//! - [`trust`]: the anchors, trust and revocation lists, the gate that holds
//!   the backlog until they are current, this device's certificate;
//! - [`keypackages`]: the device's KeyPackages at the relay;
//! - [`inbound`]: queue items (Welcomes, commits, messages);
//! - [`receipts`]: delivery receipts both ways;
//! - [`outbox`]: what the user asked to do, one lane per conversation, one
//!   file per operation, with [`commit`] for every commit this device makes.
//!
//! The public entry points (`handle_*` and the commands) are the only
//! places that apply those effects and then start whatever outbox work can
//! start (`drive`), once, at their end.

pub(crate) mod commit;
mod connection;
mod effects;
mod features;
mod groups;
mod history;
mod inbound;
mod keypackages;
mod link;
pub mod mentions;
pub(crate) mod outbox;
mod queries;
mod reads;
mod receipts;
mod roles;
pub mod room;
mod trust;
pub mod typing;

use std::collections::VecDeque;

use cascade_protocol::limits::{MAX_NAME_BYTES, MAX_PUSH_TOKEN_BYTES};
use cascade_protocol::{
    http::EnrolResponse, GroupId, ProtocolError, Push, Request, Response, ServerFrame, UserId,
};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use serde::{Deserialize, Serialize};

pub use effects::{Answer, QueryId};
pub use groups::{capabilities, create_config, join_config, CIPHERSUITE, MAX_PAST_EPOCHS};
/// The engine's own way to load a group's state for a change, through the
/// store's group cache, for benchmarks (`benches/mls_groups.rs`).
#[doc(hidden)]
pub use groups::{load as load_group, Loaded};
pub use inbound::{REFUSED_TEXT, STOPPED_HERE_TEXT, STOPPED_TEXT};
pub use outbox::change_room::RoomChange;
pub use outbox::{HELD_TEXT, REJOINED_TEXT};
pub use queries::{safety_number, Member, Participant, ParticipantDevice};
pub use reads::MessageReceipts;
pub use receipts::{MAX_RECEIPT_GROUP_USERS, RECEIPT_DELAY_MS};
pub use roles::{duration, RoomDetails};
pub use room::{Action, Policy, Role};

use connection::Connection;
use effects::{Effects, QueryKind, Route};
use keypackages::KeyPackages;
use outbox::{Op, Outbox};
use receipts::Receipts;
use trust::{Accepted, Trust};

use crate::content::{Body, Content, MessageId, MAX_TEXT_BYTES};
use crate::credential::make_credential;
use crate::error::{CoreError, EnrolmentError, InvalidInput, Result};
use crate::identity::TrustAnchor;
use crate::store::Transactions;
use crate::store::{
    ClientStore, Conversation, ConversationState, DeliveryState, Identity, Message, Person,
    SqliteStore,
};

/// Set once this device has asked the relay for its user's groups (and
/// queued joining those it is not in).
const GROUPS_LISTED_KEY: &str = "groups_listed";

/// Where the key pair made at the start of enrolment is kept (`kv`).
const KV_PENDING_SIGNATURE_KEY: &str = "pending_signature_key";

/// What the engine tells the front end: notifications only. Answers to
/// queries come out of [`Engine::poll_answer`] to whoever asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The connection to the relay changed.
    Connection(ConnectionState),
    /// Everything queued at the relay while offline has been processed.
    Synced,
    /// A conversation appeared, was renamed, or its state changed.
    ConversationUpdated(GroupId),
    /// A message arrived (or this device sent one, or a system line was
    /// added to the history).
    Message(Message),
    /// A message was edited, deleted for everyone or reacted to (or a
    /// reaction was taken back): here it is as it now is.
    MessageChanged {
        /// The message now.
        message: Message,
        /// What changed.
        change: MessageChange,
    },
    /// Messages of a conversation reached their disappearing time and are
    /// gone from this device: front ends take them out of view.
    MessagesExpired {
        /// The conversation.
        group_id: GroupId,
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// This user read a conversation on another device: its unread count
    /// changed, and front ends clear its notifications.
    ReadElsewhere {
        /// The conversation.
        group_id: GroupId,
    },
    /// A file going to or coming from the relay: `done` of `total` octets
    /// of its sealed form (sent by the async client, not the engine).
    Transfer {
        /// The conversation.
        group_id: GroupId,
        /// The file's name.
        name: String,
        /// Octets moved so far.
        done: u64,
        /// Octets in all.
        total: u64,
        /// An upload (else a download).
        upload: bool,
    },
    /// Someone is typing in a conversation, until `until` (ms since the
    /// Unix epoch, by this device's clock) unless told again; `until` 0:
    /// they stopped (or their message arrived).
    Typing {
        /// The conversation.
        group_id: GroupId,
        /// Who.
        user_id: UserId,
        /// When to stop showing it; 0: now.
        until: u64,
    },
    /// Another person read a conversation up to a point: this user's
    /// messages at or before it count them in `read_by`.
    ReadBy {
        /// The conversation.
        group_id: GroupId,
        /// Who.
        user_id: UserId,
        /// The `seq` of the last message they read.
        up_to: u64,
    },
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
    /// The organisation's device policy changed (its signed trust list
    /// says so): e.g. how long the app waits without input before it
    /// locks.
    PolicyUpdated(crate::identity::DevicePolicy),
    /// The app locked (the organisation's idle period passed without
    /// input, or the person locked it): hide every conversation until
    /// [`Event::Unlocked`]; calls that show content fail with
    /// [`CoreError::Locked`] meanwhile. Messages still arrive underneath.
    Locked,
    /// The app was unlocked with the device's passphrase or key.
    Unlocked,
    /// The relay refused this device's authentication (unknown or revoked
    /// device).
    AuthenticationRefused,
    /// This device's organisation revoked it (its signed revocation list
    /// names the device): the client erased everything it kept on this
    /// device (messages, keys, identity) and stopped. The last event.
    Erased,
    /// A queued operation could not be carried out and was dropped.
    OperationFailed {
        /// The conversation, if the operation concerned one.
        group_id: Option<GroupId>,
        /// Why, without content.
        reason: String,
    },
}

/// What changed in a message ([`Event::MessageChanged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageChange {
    /// Its sender edited it.
    Edited,
    /// It was deleted for everyone.
    Deleted,
    /// Its reactions changed.
    Reactions,
}

impl MessageChange {
    /// The change's stable lowercase name, as front ends show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Edited => "edited",
            Self::Deleted => "deleted",
            Self::Reactions => "reactions",
        }
    }
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

impl ConnectionState {
    /// The state's stable lowercase name (`offline`, `connecting`,
    /// `online`), as front ends show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Connecting => "connecting",
            Self::Online => "online",
        }
    }
}

/// This device once enrolled: its identity and its signature key.
pub(crate) struct Me {
    pub identity: Identity,
    pub signer: SignatureKeyPair,
}

impl Me {
    /// The device's certificate (DER), once its organisation issued it.
    pub fn certificate(&self) -> Result<&[u8]> {
        self.identity
            .certificate
            .as_deref()
            .map(|c| c.as_slice())
            .ok_or(CoreError::CertificatePending)
    }

    /// The device's MLS credential and signature key.
    pub fn credential_with_key(&self) -> Result<CredentialWithKey> {
        Ok(CredentialWithKey {
            credential: make_credential(self.certificate()?),
            signature_key: self.signer.public().into(),
        })
    }
}

/// What a step of a sub-machine sees: the store, this device, whom it
/// trusts, and the time (ms since the Unix epoch).
pub(crate) struct Ctx<'a> {
    pub store: &'a dyn ClientStore,
    pub me: &'a Me,
    pub trust: &'a Trust,
    pub now: u64,
}

/// The sans-IO engine over a [`ClientStore`]. See the module documentation.
pub struct Engine<S: ClientStore = SqliteStore> {
    store: S,
    me: Option<Me>,
    conn: Connection,
    trust: Trust,
    key_packages: KeyPackages,
    receipts: Receipts,
    outbox: Outbox,
    events: VecDeque<Event>,
    answers: VecDeque<(QueryId, Answer)>,
    next_query: u64,
    /// When the next disappearing message is due (from the store, after
    /// every entry point).
    next_expiry: Option<u64>,
    /// Typing indicators sent and shown (in memory only).
    typing: typing::Typing,
}

fn check_text(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(InvalidInput::EmptyMessage.into());
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(InvalidInput::MessageTooLong {
            limit: MAX_TEXT_BYTES,
        }
        .into());
    }
    Ok(())
}

impl<S: ClientStore> Engine<S> {
    /// Opens the engine over a store. Works before enrolment too (only
    /// enrolment is possible then).
    pub fn new(store: S) -> Result<Self> {
        let me = match store.identity()? {
            Some(identity) => Some(Me {
                signer: SignatureKeyPair::read(
                    store.mls().storage(),
                    &identity.signature_key,
                    CIPHERSUITE.signature_algorithm(),
                )
                .ok_or(CoreError::Decode("the device signature key"))?,
                identity,
            }),
            None => None,
        };
        let trust = Trust::load(&store, me.as_ref());
        let mut engine = Self {
            store,
            me,
            conn: Connection::new(),
            trust,
            key_packages: KeyPackages::default(),
            receipts: Receipts::default(),
            outbox: Outbox::default(),
            events: VecDeque::new(),
            answers: VecDeque::new(),
            next_query: 1,
            next_expiry: None,
            typing: typing::Typing::default(),
        };
        engine.next_expiry = engine.next_deletion()?;
        Ok(engine)
    }

    /// The enrolled identity, if enrolled.
    pub fn identity(&self) -> Option<&Identity> {
        self.me.as_ref().map(|m| &m.identity)
    }

    fn me(&self) -> Result<&Me> {
        self.me.as_ref().ok_or(CoreError::NotEnrolled)
    }

    /// Whether `doc` is this device's own organisation's signed revocation
    /// list and names this device: then the device must erase itself (see
    /// [`Event::Erased`]). Asked after the relay refused the device's
    /// authentication; a relay alone cannot make a device erase itself.
    pub fn revoked_by_own_organisation(&self, doc: &cascade_protocol::SignedDocument) -> bool {
        self.me
            .as_ref()
            .is_some_and(|me| self.trust.revokes_me(me, doc))
    }

    /// If `doc` is an order, signed by this device's own organisation, to
    /// wipe this device: the device's signature, with its MLS signature
    /// key, confirming it (made now, while the key exists; sent after the
    /// erasure).
    pub fn wipe_confirmation(&self, doc: &cascade_protocol::SignedDocument) -> Option<Vec<u8>> {
        let me = self.me.as_ref()?;
        if !self.trust.wipes_me(me, doc) {
            return None;
        }
        let payload = cascade_protocol::auth::wiped_payload(&me.identity.device_id, &doc.body);
        openmls_traits::signatures::Signer::sign(&me.signer, &payload).ok()
    }

    // ----- enrolment -------------------------------------------------------

    /// First half of enrolment: makes (or reuses) the device's signature key
    /// pair and returns its public key, to send to the relay with the token.
    pub fn begin_enrolment(&mut self) -> Result<Vec<u8>> {
        if self.me.is_some() {
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
    /// `server_ca` is the CA (PEM) pinned for the relay's TLS certificate,
    /// if any.
    pub fn complete_enrolment(
        &mut self,
        server_url: &str,
        server_ca: Option<&str>,
        resp: EnrolResponse,
        anchor: &[u8],
    ) -> Result<()> {
        let own = TrustAnchor::from_der(anchor)?;
        if own.org != resp.org_id {
            return Err(EnrolmentError::WrongOrganisation.into());
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
        .ok_or(CoreError::Decode("the device signature key"))?;
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
            server_ca: server_ca.map(str::to_owned),
        };
        self.store.set_identity(&identity)?;
        self.me = Some(Me { identity, signer });
        self.trust = Trust::load(&self.store, self.me.as_ref());
        Ok(())
    }

    // ----- IO inputs -------------------------------------------------------

    /// The socket to the relay is open; the engine waits for the challenge.
    pub fn handle_connected(&mut self) {
        self.conn.connected();
        self.events
            .push_back(Event::Connection(ConnectionState::Connecting));
    }

    /// The socket closed. Work under way starts again on the next
    /// connection; queries waiting for the relay are answered
    /// [`Answer::Disconnected`].
    pub fn handle_disconnected(&mut self) {
        let was = self.conn.phase();
        for route in self.conn.disconnected() {
            if let Route::Query(q, _) = route {
                self.answers.push_back((q, Answer::Disconnected));
            }
        }
        if was != connection::Phase::Offline {
            self.events
                .push_back(Event::Connection(ConnectionState::Offline));
        }
        self.trust.close_gate(); // unacked items come again
        self.key_packages.disconnected();
        self.outbox.reset();
    }

    /// A binary frame from the relay.
    pub fn handle_frame(&mut self, frame: &[u8], now: u64) -> Result<()> {
        let frame = cascade_protocol::decode_server_frame(frame)
            .map_err(|_| CoreError::Decode("a frame from the relay"))?;
        let mut fx = Effects::default();
        let handled = match frame {
            ServerFrame::Push(push) => self.handle_push(push, now, &mut fx),
            ServerFrame::Response { id, result } => self.handle_response(id, result, now, &mut fx),
            ServerFrame::Rejected(e) => {
                tracing::warn!(error = %e, "relay rejected a frame");
                Ok(())
            }
        };
        self.finish(fx, now, handled)
    }

    /// Several frames that arrived together, handled in one transaction:
    /// what they change is made durable with one commit before anything
    /// they cause (acknowledgements included) goes out. If that commit
    /// fails, the engine drops the connection's state as
    /// [`Engine::handle_disconnected`] does (the caller must close the
    /// socket: unacknowledged items come again) and returns the error.
    pub fn handle_frames<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a [u8]>,
        now: u64,
    ) -> Result<()> {
        self.store.begin_transaction()?;
        let events_before = self.events.len();
        let mut result = Ok(());
        for frame in frames {
            match self.handle_frame(frame, now) {
                Err(e @ CoreError::Storage(_)) => {
                    result = Err(e);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "frame from the relay not handled");
                }
                Ok(()) => {}
            }
        }
        let committed = match result {
            Ok(()) => self.store.commit_transaction(),
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            let _ = self.store.rollback_transaction();
            // What the batch announced did not happen: it comes again.
            self.events.truncate(events_before);
            self.handle_disconnected();
            return Err(e);
        }
        Ok(())
    }

    /// Whether the engine has no connection (it never had one, it was told
    /// the socket closed, or it dropped it itself after a failed commit).
    pub fn is_disconnected(&self) -> bool {
        self.conn.phase() == connection::Phase::Offline
    }

    /// Time passed: deletes messages whose disappearing time has come,
    /// flushes due receipts and resumes delayed work.
    pub fn handle_timeout(&mut self, now: u64) -> Result<()> {
        let mut fx = Effects::default();
        let expired = self.expire(now, &mut fx);
        let handled = match &self.me {
            Some(me) if self.receipts.is_due(now) => self.receipts.flush(&self.store, me, now),
            _ => Ok(()),
        };
        self.finish(fx, now, expired.and(handled))
    }

    /// Deletes every message whose disappearing time has come, in one
    /// transaction, and says which.
    fn expire(&mut self, now: u64, fx: &mut Effects) -> Result<()> {
        if self.next_expiry.is_none_or(|at| at > now) {
            return Ok(());
        }
        let tx = self.store.transaction()?;
        let mut gone = self.store.expire_messages(now)?;
        // And what is older than the organisation keeps messages.
        if let Some(cutoff) = self.trust.policy().retention_cutoff(now) {
            gone.extend(self.store.expire_sent_before(cutoff)?);
        }
        tx.commit()?;
        let mut by_group: std::collections::BTreeMap<GroupId, Vec<MessageId>> = Default::default();
        for (group, id) in gone {
            by_group.entry(group).or_default().push(id);
        }
        fx.events(
            by_group
                .into_iter()
                .map(|(group_id, ids)| Event::MessagesExpired { group_id, ids })
                .collect::<Vec<_>>(),
        );
        Ok(())
    }

    /// When the next message goes: its disappearing time, or the oldest
    /// message's passing the organisation's maximum retention.
    fn next_deletion(&self) -> Result<Option<u64>> {
        let timer = self.store.next_expiry()?;
        let retention = match self.trust.policy().max_retention_days {
            Some(days) => self
                .store
                .oldest_message()?
                .map(|t| t.saturating_add(u64::from(days) * 86_400_000)),
            None => None,
        };
        Ok(match (timer, retention) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Applies the effects of an entry point, then starts what the outbox
    /// can start: the end of every public entry point.
    fn finish(&mut self, fx: Effects, now: u64, handled: Result<()>) -> Result<()> {
        let applied = self.apply(fx);
        let driven = self.drive(now);
        handled.and(applied).and(driven)
    }

    /// Sends the requests, publishes the events and answers, and lets the
    /// trust machine take in trust lists an operation fetched.
    fn apply(&mut self, mut fx: Effects) -> Result<()> {
        let mut result = Ok(());
        loop {
            for (req, route) in fx.requests.drain(..) {
                self.conn.send(req, route);
            }
            self.events.extend(fx.events.drain(..));
            self.answers.extend(fx.answers.drain(..));
            let lists = std::mem::take(&mut fx.trust_lists);
            if lists.is_empty() {
                return result;
            }
            let Some(me) = &self.me else { return result };
            for doc in lists {
                let r = self
                    .trust
                    .handle_trust_list(&self.store, me, doc, false, &mut fx)
                    .map(|_| ());
                if result.is_ok() {
                    result = r;
                }
            }
        }
    }

    /// Starts whatever outbox work can start, while online with a
    /// certificate.
    fn drive(&mut self, now: u64) -> Result<()> {
        // What the entry point stored may disappear sooner than anything
        // before it (every entry point ends here).
        self.next_expiry = self.next_deletion()?;
        let Some(me) = &self.me else { return Ok(()) };
        if !self.conn.is_ready() || me.certificate().is_err() {
            return Ok(());
        }
        let mut fx = Effects::default();
        let cx = Ctx {
            store: &self.store,
            me,
            trust: &self.trust,
            now,
        };
        // One transaction around everything the lanes start, so a burst of
        // messages is made durable with one commit, before any of them
        // leaves (frames go out only after this returns).
        let tx = self.store.transaction()?;
        let committed = match self.outbox.drive(&cx, &mut fx) {
            Ok(()) => tx.commit(),
            Err(e) => {
                drop(tx);
                Err(e)
            }
        };
        if let Err(e) = committed {
            // Nothing of it happened: the lanes start again from the store.
            self.outbox.reset();
            return Err(e);
        }
        self.apply(fx)
    }

    fn handle_push(&mut self, push: Push, now: u64, fx: &mut Effects) -> Result<()> {
        // Until the trust and revocation lists are current, queue items
        // wait: they must be verified against what our organisation trusts
        // now, not what it trusted when we were last online.
        let Some(push) = self.trust.hold(push) else {
            return Ok(());
        };
        let Some(me) = self.me.as_mut() else {
            return Err(CoreError::NotEnrolled);
        };
        match push {
            Push::Challenge { nonce } => self.conn.challenge(me, &nonce)?,
            Push::Deliver(item) => {
                let cx = Ctx {
                    store: &self.store,
                    me,
                    trust: &self.trust,
                    now,
                };
                let processed = inbound::handle_item(&cx, &item, fx)?;
                self.conn.ack(item.queue_id);
                for (g, id) in processed.received {
                    self.receipts.received(g, id);
                }
                for (g, user) in processed.spoke {
                    if let Some(event) = self.typing.message_from(g, &user) {
                        fx.event(event);
                    }
                }
                if self.conn.is_ready() {
                    // A live message: confirm it shortly, with any that follow.
                    self.receipts.arm(now);
                }
            }
            Push::QueueDrained => {
                self.receipts.flush(&self.store, me, now)?;
                self.conn.flush_acks();
                if me.certificate().is_ok()
                    && self.store.kv_get(GROUPS_LISTED_KEY)?.is_none()
                    && !self.conn.awaits(|r| *r == Route::Groups)
                {
                    // Once per device: the user's groups it is not in yet.
                    fx.request(Request::ListGroups, Route::Groups);
                }
                self.conn.ready();
                fx.event(Event::Connection(ConnectionState::Online));
                fx.event(Event::Synced);
            }
            Push::KeyPackagesLow { stock } => {
                if me.certificate().is_ok() {
                    self.key_packages.low(&self.store, me, stock, fx)?;
                }
            }
            Push::RevocationsUpdated { org_id } => {
                if self.trust.orgs().contains(&org_id) {
                    fx.request(
                        Request::GetRevocations {
                            org_id: org_id.clone(),
                        },
                        Route::Revocations {
                            org: org_id,
                            gate: false,
                        },
                    );
                }
            }
            Push::TrustListUpdated { org_id } => {
                if me.identity.org_id == org_id {
                    fx.request(
                        Request::GetTrustList { org_id },
                        Route::TrustList { gate: false },
                    );
                }
            }
            Push::Typing {
                group_id,
                sender,
                epoch,
                payload,
            } => {
                if let Some(event) = self.typing_arrived(group_id, sender, epoch, &payload, now) {
                    fx.event(event);
                }
            }
            Push::CertificateIssued { certificate } => {
                match self
                    .trust
                    .accept_certificate(&self.store, me, &certificate, now, fx)?
                {
                    Accepted::Known => {}
                    Accepted::First | Accepted::Renewed => {
                        self.key_packages.renewed(&self.store, me, fx)?
                    }
                }
            }
        }
        Ok(())
    }

    /// Handles pushes the trust gate held, in order. One bad item must not
    /// hold back the rest (or `QueueDrained`).
    fn release(&mut self, held: Vec<Push>, now: u64, fx: &mut Effects) -> Result<()> {
        let mut first_error = None;
        for push in held {
            if let Err(e) = self.handle_push(push, now, fx) {
                tracing::warn!(error = %e, "a held push could not be handled");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn handle_response(
        &mut self,
        id: u64,
        result: std::result::Result<Response, ProtocolError>,
        now: u64,
        fx: &mut Effects,
    ) -> Result<()> {
        let Some(route) = self.conn.answered(id) else {
            tracing::debug!(id, "response to an unknown request");
            return Ok(());
        };
        let Some(me) = self.me.as_mut() else {
            return Err(CoreError::NotEnrolled);
        };
        match route {
            Route::Auth => match result {
                Ok(Response::Authenticated {
                    key_package_stock,
                    has_last_resort,
                    certificate,
                    ..
                }) => {
                    self.conn.authenticated();
                    let mut renewed = false;
                    if let Some(der) = certificate {
                        match self
                            .trust
                            .accept_certificate(&self.store, me, &der, now, fx)
                        {
                            Ok(Accepted::Renewed) => renewed = true,
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "the certificate from the relay was refused")
                            }
                        }
                    }
                    // First the gate and the trust list: nothing queued may
                    // be processed against stale trust, whatever else fails.
                    self.trust.open_gate(me, fx);
                    if me.certificate().is_err() {
                        fx.event(Event::CertificatePending);
                    } else {
                        let uploaded = if renewed {
                            self.key_packages.renewed(&self.store, me, fx)
                        } else {
                            self.key_packages.authenticated(
                                &self.store,
                                me,
                                key_package_stock,
                                has_last_resort,
                                fx,
                            )
                        };
                        if let Err(e) = uploaded {
                            tracing::warn!(error = %e, "KeyPackages could not be made");
                        }
                    }
                }
                other => {
                    tracing::warn!(?other, "authentication refused");
                    self.conn.refused();
                    fx.event(Event::AuthenticationRefused);
                    fx.failed(None, "the relay refused this device's authentication");
                }
            },
            Route::TrustList { gate } => {
                let doc = match result {
                    Ok(Response::TrustList { document }) => document,
                    other => {
                        tracing::warn!(?other, "trust list not fetched");
                        None
                    }
                };
                let released = self.trust.handle_trust_list(&self.store, me, doc, gate, fx);
                return self.after_gate(released, now, fx);
            }
            Route::Revocations { org, gate } => {
                let doc = match result {
                    Ok(Response::Revocations { document }) => document,
                    other => {
                        tracing::warn!(?other, "revocation list not fetched");
                        None
                    }
                };
                let released = self
                    .trust
                    .handle_revocations(&self.store, me, &org, doc, gate);
                return self.after_gate(released, now, fx);
            }
            Route::KeyPackageUpload { with_last_resort } => {
                self.key_packages
                    .answered(&self.store, with_last_resort, result)?;
            }
            Route::Ack => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "ack refused");
                }
            }
            Route::Forget => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "a typing indicator or blob deletion was refused");
                }
            }
            Route::Groups => match result {
                Ok(Response::Groups { group_ids }) => {
                    let tx = self.store.transaction()?;
                    for group_id in group_ids {
                        if self.store.conversation_cursor(&group_id)?.is_none() {
                            Op::JoinExternal {
                                group_id,
                                rejoin: false,
                            }
                            .queue(&self.store)?;
                        }
                    }
                    self.store.kv_set(GROUPS_LISTED_KEY, &[1])?;
                    tx.commit()?;
                }
                other => tracing::warn!(?other, "listing the user's groups failed"),
            },
            Route::Op { group, op_id } => {
                let cx = Ctx {
                    store: &self.store,
                    me,
                    trust: &self.trust,
                    now,
                };
                self.outbox.answer(group, op_id, result, &cx, fx)?;
            }
            Route::Query(q, kind) => {
                let answer = match (kind, result) {
                    (QueryKind::Directory, Ok(Response::Directory { entries })) => Answer::People(
                        queries::verify_directory(&self.store, &self.trust, entries, now)?,
                    ),
                    (QueryKind::UserDevices, Ok(Response::User(entry))) => {
                        Answer::Devices(entry.devices)
                    }
                    (QueryKind::RegisterPush, Ok(Response::PushRegistered)) => {
                        Answer::PushRegistered
                    }
                    (
                        QueryKind::Blob,
                        Ok(Response::BlobTicket {
                            token,
                            offset,
                            size,
                        }),
                    ) => Answer::BlobTicket {
                        token: token.into_vec(),
                        offset,
                        size,
                    },
                    (QueryKind::Link, Ok(Response::LinkStored)) => Answer::LinkStored,
                    (QueryKind::Link, Ok(Response::LinkSlot { payload })) => {
                        Answer::LinkSlot(payload.map(|p| p.into_vec()))
                    }
                    (_, Err(e)) => Answer::Refused(e),
                    (_, Ok(_)) => Answer::Refused(ProtocolError::Malformed {
                        reason: "unexpected answer".into(),
                    }),
                };
                fx.answers.push((q, answer));
            }
        }
        Ok(())
    }

    /// After a trust or revocation list answer: handles the pushes the gate
    /// released, if it opened.
    fn after_gate(
        &mut self,
        released: Result<Option<Vec<Push>>>,
        now: u64,
        fx: &mut Effects,
    ) -> Result<()> {
        match released {
            Ok(Some(held)) => self.release(held, now, fx),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ----- IO outputs ------------------------------------------------------

    /// The next frame to send to the relay.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.conn.poll_transmit()
    }

    /// The next event for the front end.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next answer to a query ([`Engine::search_directory`],
    /// [`Engine::request_user`], [`Engine::register_push`]), with the token
    /// the query returned.
    pub fn poll_answer(&mut self) -> Option<(QueryId, Answer)> {
        self.answers.pop_front()
    }

    /// When the engine next wants [`Engine::handle_timeout`], in ms since the
    /// Unix epoch.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.outbox.poll_timeout(),
            self.receipts.poll_timeout(),
            self.next_expiry,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the connection is authenticated and caught up.
    pub fn is_online(&self) -> bool {
        self.conn.is_ready()
    }

    /// Whether there is nothing left to do: online, caught up, the outbox
    /// empty, no receipt waiting and no request outstanding but
    /// acknowledgements.
    pub fn is_idle(&self) -> Result<bool> {
        Ok(self.is_online()
            && self.receipts.is_empty()
            && self.store.outbox_len()? == 0
            && self.conn.only_acks_pending())
    }

    // ----- commands --------------------------------------------------------

    /// Creates a conversation with this device as its only member. Members
    /// are added with [`Engine::add_members`]. Works offline.
    pub fn create_group(&mut self, name: &str, now: u64) -> Result<GroupId> {
        let me = self.me()?;
        let credential = me.credential_with_key()?;
        let name = name.trim();
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(InvalidInput::ConversationName {
                limit: MAX_NAME_BYTES,
            }
            .into());
        }
        let group_id = GroupId::random();
        // Its room: the URI its messages' ids are derived from, and its
        // creator its first admin.
        let room = room::new(&me.identity.user_id, &me.identity.org_id, &group_id);
        let tx = self.store.transaction()?;
        let provider = self.store.mls();
        let group = MlsGroup::new_with_group_id(
            &provider,
            &me.signer,
            &groups::create_config_with(&room)?,
            groups::mls_group_id(&group_id),
            credential,
        )
        .map_err(CoreError::mls)?;
        self.store.insert_conversation(&group_id, name, 0, now)?;
        groups::record_members(&self.store, &group_id, &group)?;
        Op::CreateGroup { group_id }.queue(&self.store)?;
        let content = Content {
            id: MessageId::random(),
            sent_at: now,
            body: Body::GroupMeta { name: name.into() },
        };
        Op::send(group_id, &content).queue(&self.store)?;
        // The user's other devices: what is started on the desktop goes on
        // on the phone. None is no failure (add_members.rs).
        Op::AddMembers {
            group_id,
            users: vec![me.identity.user_id.clone()],
        }
        .queue(&self.store)?;
        tx.commit()?;
        self.events.push_back(Event::ConversationUpdated(group_id));
        self.drive(now)?;
        Ok(group_id)
    }

    /// Adds every current device of each user to the conversation. Queued;
    /// the result arrives as [`Event::MembershipChanged`] or
    /// [`Event::OperationFailed`].
    pub fn add_members(&mut self, group_id: &GroupId, users: Vec<UserId>, now: u64) -> Result<()> {
        self.require(group_id, false)?;
        if users.is_empty() {
            return Err(InvalidInput::NoUsers.into());
        }
        self.check_add(group_id, &users)?;
        Op::AddMembers {
            group_id: *group_id,
            users,
        }
        .queue(&self.store)?;
        self.drive(now)
    }

    /// Removes every device of each user from the conversation. Queued.
    pub fn remove_members(
        &mut self,
        group_id: &GroupId,
        users: Vec<UserId>,
        now: u64,
    ) -> Result<()> {
        self.require(group_id, false)?;
        if users.is_empty() {
            return Err(InvalidInput::NoUsers.into());
        }
        self.check_remove(group_id, &users)?;
        Op::RemoveMembers {
            group_id: *group_id,
            users,
        }
        .queue(&self.store)?;
        self.drive(now)
    }

    /// Leaves the conversation: this device asks the others to remove it,
    /// and stops sending at once. Queued.
    pub fn leave(&mut self, group_id: &GroupId, now: u64) -> Result<()> {
        self.require(group_id, false)?;
        let tx = self.store.transaction()?;
        Op::Leave {
            group_id: *group_id,
        }
        .queue(&self.store)?;
        self.store
            .set_conversation_state(group_id, ConversationState::Leaving)?;
        tx.commit()?;
        self.events.push_back(Event::ConversationUpdated(*group_id));
        self.drive(now)
    }

    /// Sends a text message. It is stored in history at once (state
    /// `Sending`) and sent when connected (and, while this device rejoins
    /// the conversation, once it is back in step); returns its id.
    pub fn send_text(&mut self, group_id: &GroupId, text: &str, now: u64) -> Result<MessageId> {
        self.send_message(group_id, text, None, now)
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
        self.require(group_id, true)?;
        let me = self.me()?;
        let message = self
            .store
            .message(message_id)?
            .filter(|m| &m.group_id == group_id && m.sender_device == me.identity.device_id)
            .ok_or(InvalidInput::NoSuchMessage)?;
        if message.state != DeliveryState::Failed {
            return Err(InvalidInput::NotFailed.into());
        }
        let content = self.rewrite(&message)?;
        let tx = self.store.transaction()?;
        self.store
            .set_message_state(message_id, DeliveryState::Sending, None)?;
        Op::Send {
            group_id: *group_id,
            message_id: *message_id,
            content,
            to: Vec::new(),
        }
        .queue(&self.store)?;
        tx.commit()?;
        self.events.push_back(Event::DeliveryState {
            group_id: *group_id,
            message_id: *message_id,
            state: DeliveryState::Sending,
        });
        self.drive(now)
    }

    /// The conversation exists and this device is in it (`writing`: also
    /// while rejoining, when what is written waits).
    fn require(&self, group_id: &GroupId, writing: bool) -> Result<()> {
        match self.store.conversation_cursor(group_id)? {
            None | Some((_, ConversationState::Joining)) => Err(CoreError::UnknownConversation),
            Some((_, ConversationState::Active)) => Ok(()),
            Some((_, ConversationState::Rejoining)) if writing => Ok(()),
            Some((_, ConversationState::Rejoining)) => Err(CoreError::OutOfStep),
            Some(_) => Err(CoreError::NotActive),
        }
    }

    // ----- queries ---------------------------------------------------------

    /// All conversations, most recently active first (not those this
    /// device is still joining).
    pub fn conversations(&self) -> Result<Vec<Conversation>> {
        let store = &self.store;
        let mut list: Vec<Conversation> = store
            .conversations(&|g| groups::epoch(store, g).unwrap_or(0))?
            .into_iter()
            .filter(|c| c.state != ConversationState::Joining)
            .collect();
        for c in &mut list {
            // Recorded when membership changes; a conversation from before
            // schema 2 gets it on first sight.
            if c.people == 0 && c.state != ConversationState::Left {
                if let Ok(group) = groups::read(store, &c.group_id) {
                    groups::record_members(store, &c.group_id, &group)?;
                    let members = groups::member_certs(&group)?;
                    c.orgs = members.iter().map(|m| m.org.clone()).collect();
                    c.orgs.sort();
                    c.orgs.dedup();
                    c.people = groups::users(&group).len() as u32;
                }
            }
        }
        Ok(list)
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
        let mut page = self.store.history(group_id, before, limit)?;
        if let Ok(me) = self.me() {
            for m in &mut page {
                reads::only_ours(me, m);
            }
        }
        Ok(page)
    }

    /// The conversation's current member devices, from the MLS group state.
    pub fn members(&self, group_id: &GroupId) -> Result<Vec<Member>> {
        queries::members(&self.store, self.me()?, group_id)
    }

    /// The conversation's members by person, with their devices: this user
    /// first, then by name.
    pub fn participants(&self, group_id: &GroupId) -> Result<Vec<Participant>> {
        queries::participants(&self.store, self.me()?, group_id)
    }

    /// The safety number of this user and `other`, from the device keys
    /// both have in the conversation: 60 digits in 12 groups of 5,
    /// identical on both sides, changing whenever either user's set of
    /// device keys changes. Compare it in person or by phone.
    pub fn safety_number(&self, group_id: &GroupId, other: &UserId) -> Result<String> {
        queries::conversation_safety_number(&self.store, self.me()?, group_id, other)
    }

    /// The MLS epoch of a conversation on this device.
    pub fn epoch(&self, group_id: &GroupId) -> Result<u64> {
        groups::epoch(&self.store, group_id)
    }

    /// Operations not yet carried out.
    pub fn outbox_len(&self) -> Result<u64> {
        self.store.outbox_len()
    }

    /// The organisations whose members this device accepts (its own first).
    pub fn trusted_orgs(&self) -> Vec<cascade_protocol::OrgId> {
        self.trust.orgs()
    }

    /// What this device's organisation asks of it (its signed trust list's
    /// device policy, or the defaults).
    pub fn device_policy(&self) -> crate::identity::DevicePolicy {
        self.trust.policy()
    }

    fn query(&mut self, req: Request, kind: QueryKind) -> Option<QueryId> {
        if !self.is_online() {
            return None;
        }
        let q = QueryId(self.next_query);
        self.next_query += 1;
        self.conn.send(req, Route::Query(q, kind));
        Some(q)
    }

    /// Asks the relay's directory for colleagues in our own and trusted
    /// organisations. Returns the token its [`Answer::People`] comes with,
    /// or `None` when offline (then use [`Engine::search_local`]).
    pub fn search_directory(&mut self, query: &str) -> Result<Option<QueryId>> {
        if query.len() > MAX_NAME_BYTES {
            return Err(InvalidInput::SearchTooLong {
                limit: MAX_NAME_BYTES,
            }
            .into());
        }
        let orgs = self.trust.orgs();
        Ok(self.query(
            Request::SearchDirectory {
                orgs,
                query: query.to_owned(),
            },
            QueryKind::Directory,
        ))
    }

    /// Asks the relay for a user's current (enrolled, unrevoked) devices,
    /// e.g. this user's own, to show on a devices screen. Returns the token
    /// its [`Answer::Devices`] comes with, or `None` when offline.
    pub fn request_user(&mut self, user_id: &UserId) -> Result<Option<QueryId>> {
        Ok(self.query(
            Request::GetUser {
                user_id: user_id.clone(),
            },
            QueryKind::UserDevices,
        ))
    }

    /// Registers (or, with `None`, removes) this device's push token with
    /// the relay (see `Request::RegisterPush`). Returns the token of its
    /// [`Answer::PushRegistered`], or `None` when offline: register again
    /// after connecting.
    pub fn register_push(&mut self, token: Option<String>) -> Result<Option<QueryId>> {
        if token
            .as_ref()
            .is_some_and(|t| t.len() > MAX_PUSH_TOKEN_BYTES)
        {
            return Err(InvalidInput::PushTokenTooLong {
                limit: MAX_PUSH_TOKEN_BYTES,
            }
            .into());
        }
        Ok(self.query(Request::RegisterPush { token }, QueryKind::RegisterPush))
    }

    /// Searches the directory entries cached on this device (works
    /// offline).
    pub fn search_local(&self, query: &str) -> Result<Vec<Person>> {
        self.store.search_people(
            query,
            cascade_protocol::limits::MAX_DIRECTORY_RESULTS as u32,
        )
    }
}

impl Engine<SqliteStore> {
    /// Re-encrypts the device's store with the raw key `key`
    /// ([`crate::Client::change_key`]); returns its digest.
    pub(crate) fn rekey(&mut self, key: &crate::store::at_rest::DbKey) -> Result<[u8; 32]> {
        self.store.rekey(key)
    }
}
