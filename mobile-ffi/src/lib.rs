//! `cascade-ffi`: uniffi bindings over [`cascade_core`] for the mobile apps
//! (Kotlin and Swift are generated from the built library; Python bindings,
//! generated the same way, drive the tests).
//!
//! A thin shell: it converts ids to and from hex strings, core records to
//! flat FFI records, [`CoreError`] to [`CascadeError`], and core events to
//! [`FfiEvent`] calls on a foreign [`EventListener`]. All logic stays in
//! `cascade-core`.

mod features;
mod history;
mod reads;
mod roles;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cascade_core::engine::mentions;
use cascade_core::{
    Client, Conversation, CoreError, DeliveryState, Event, GroupId, Identity, Member, Message,
    MessageId, Participant, Person, StoreKey, UserId,
};
use tokio::sync::broadcast;
use zeroize::Zeroizing;

uniffi::setup_scaffolding!();

/// Errors the bindings raise; mapped from the core's errors. Texts carry no
/// plaintext, keys or tokens.
///
/// Fields are called `reason`, not `message`: Kotlin exceptions already
/// have a `message` property.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CascadeError {
    /// The device is not enrolled yet: call [`enrol`] first.
    #[error("this device is not enrolled")]
    NotEnrolled,
    /// Enrolment failed (bad code, relay unreachable, already enrolled...).
    #[error("enrolment failed: {reason}")]
    Enrolment {
        /// Why.
        reason: String,
    },
    /// No conversation with this id.
    #[error("unknown conversation")]
    UnknownConversation,
    /// This device is no longer a member of the conversation.
    #[error("this device is no longer a member of the conversation")]
    NotActive,
    /// An argument was invalid (bad id, empty text, ...).
    #[error("invalid input: {reason}")]
    Invalid {
        /// What was wrong.
        reason: String,
    },
    /// The device is waiting for its certificate from its organisation.
    #[error("this device is waiting for its certificate from its organisation")]
    CertificatePending,
    /// The relay answered with an error.
    #[error("relay: {reason}")]
    Relay {
        /// The relay's error.
        reason: String,
    },
    /// The local database failed.
    #[error("local storage: {reason}")]
    Storage {
        /// The storage error.
        reason: String,
    },
    /// The client has shut down.
    #[error("the client has shut down")]
    Closed,
    /// This device's organisation revoked it, and everything the device
    /// kept was erased: show the user, and offer to enrol again.
    #[error(
        "this device was revoked by its organisation; its data on this device has been erased"
    )]
    Erased,
    /// The request needs the relay and the device is not connected, or the
    /// relay did not answer in time.
    #[error("the relay is not reachable")]
    Offline,
    /// The key given does not unlock this device's data (it is not the
    /// key the keystore holds for it). Nothing was changed. A lost key
    /// cannot be recovered: the device is enrolled again.
    #[error("the key does not unlock this device's data")]
    WrongKey,
    /// The app is locked (idle, or locked by the person): nothing that
    /// shows content is answered until `unlock` with the data's key.
    #[error("Cascade is locked")]
    Locked,
    /// The conversation's policy keeps this for another role (an admin):
    /// show the reason.
    #[error("{reason}")]
    Forbidden {
        /// Which role it needs, in words.
        reason: String,
    },
    /// Anything else (MLS, credentials, certificates, decoding).
    #[error("{reason}")]
    Other {
        /// The core's stable error code (`credential`, `out_of_step`, ...).
        code: String,
        /// What went wrong.
        reason: String,
    },
}

impl From<CoreError> for CascadeError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::NotEnrolled => Self::NotEnrolled,
            CoreError::Enrolment(reason) => Self::Enrolment {
                reason: reason.to_string(),
            },
            CoreError::AlreadyEnrolled => Self::Enrolment {
                reason: e.to_string(),
            },
            CoreError::UnknownConversation => Self::UnknownConversation,
            CoreError::NotActive => Self::NotActive,
            CoreError::Invalid(reason) => Self::Invalid {
                reason: reason.to_string(),
            },
            CoreError::CertificatePending => Self::CertificatePending,
            CoreError::Relay(r) => Self::Relay {
                reason: r.to_string(),
            },
            CoreError::Storage(s) => Self::Storage {
                reason: s.to_string(),
            },
            CoreError::Closed => Self::Closed,
            CoreError::Erased => Self::Erased,
            CoreError::WrongKey => Self::WrongKey,
            CoreError::Locked => Self::Locked,
            CoreError::Offline | CoreError::Timeout => Self::Offline,
            CoreError::Forbidden(f) => Self::Forbidden {
                reason: f.to_string(),
            },
            other => Self::Other {
                code: other.code().into(),
                reason: other.to_string(),
            },
        }
    }
}

type Result<T, E = CascadeError> = std::result::Result<T, E>;

/// The 32 raw bytes of the key that encrypts the device's data, which the
/// app keeps in the platform keystore (Android Keystore, iOS Keychain; see
/// docs/mobile.md). The foreign copy is the app's to clear; this one is
/// zeroized.
fn store_key(key: Vec<u8>) -> Result<StoreKey> {
    let key = Zeroizing::new(key);
    StoreKey::key_from_slice(&key).ok_or_else(|| CascadeError::Invalid {
        reason: "the data's key is 32 bytes".into(),
    })
}

fn parse_group(hex: &str) -> Result<GroupId> {
    hex.parse().map_err(|_| CascadeError::Invalid {
        reason: "group id must be 32 hex digits".into(),
    })
}

fn parse_message(hex: &str) -> Result<MessageId> {
    hex.parse().map_err(|_| CascadeError::Invalid {
        reason: "message id must be 32 or 64 hex digits".into(),
    })
}

fn user_id(s: &str) -> Result<UserId> {
    UserId::new(s).map_err(|e| CascadeError::Invalid {
        reason: format!("user id {s:?}: {e}"),
    })
}

fn delivery_state(s: DeliveryState) -> String {
    s.as_str().into()
}

/// The identity of an enrolled device.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiIdentity {
    /// Base URL of the relay.
    pub server_url: String,
    /// The user, `local@org`.
    pub user_id: String,
    /// The user's organisation.
    pub org_id: String,
    /// This device's id (hex).
    pub device_id: String,
    /// The user's display name.
    pub display_name: String,
    /// The user's role.
    pub role: String,
}

impl From<Identity> for FfiIdentity {
    fn from(i: Identity) -> Self {
        Self {
            server_url: i.server_url,
            user_id: i.user_id.to_string(),
            org_id: i.org_id.to_string(),
            device_id: i.device_id.to_string(),
            display_name: i.display_name,
            role: i.role,
        }
    }
}

/// A message in a conversation.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiMessage {
    /// The message id (hex).
    pub id: String,
    /// The conversation (hex group id).
    pub group_id: String,
    /// Who sent it, `local@org`.
    pub sender: String,
    /// Sender's clock, ms since the Unix epoch.
    pub sent_at: u64,
    /// The text, or none for a kind this client cannot show.
    pub text: Option<String>,
    /// The content kind (`text`, `system` for a line the device adds
    /// itself, or an unsupported kind's name).
    pub kind: String,
    /// Delivery state: `sending`, `sent`, `delivered`, `failed` or `received`.
    pub state: String,
    /// The message it answers, if it is a reply.
    pub reply_to: Option<features::FfiQuote>,
    /// When its sender last edited it (their clock, ms), if ever.
    pub edited_at: Option<u64>,
    /// Who deleted it for everyone (its text is gone), if anyone.
    pub deleted_by: Option<String>,
    /// Its reactions, by emoji in the order first seen.
    pub reactions: Vec<features::FfiReactions>,
    /// When it disappears from every device (ms since the Unix epoch), if
    /// it was sent while the conversation's disappearing timer was set.
    pub expires_at: Option<u64>,
    /// How many other people have read it (see `receipts` for who).
    pub read_by: u32,
    /// The people its text mentions (`local@org`), each shown in the text
    /// as `@` and their certified name.
    pub mentions: Vec<String>,
    /// The text cut at its mentions, for showing them apart.
    pub segments: Vec<FfiSegment>,
    /// The text as it would be typed again (each mention as `@` and the
    /// user id): what an edit box starts from.
    pub typed_text: Option<String>,
    /// The file it carries (kind `attachment`; `text` is its caption):
    /// `save_attachment` writes it where the app says.
    pub attachment: Option<FfiAttachment>,
}

/// A file a message carries.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiAttachment {
    /// Its file name, as the sender's device named it.
    pub name: String,
    /// Its media type, as the sender's device named it.
    pub media_type: String,
    /// Octets of the file.
    pub size: u64,
}

/// A stretch of a message's text: plain, or a mention of someone.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiSegment {
    /// The characters shown.
    pub text: String,
    /// The person mentioned (`local@org`), if this is a mention.
    pub mention: Option<String>,
}

impl From<Message> for FfiMessage {
    fn from(m: Message) -> Self {
        Self {
            id: m.id.to_string(),
            group_id: m.group_id.to_string(),
            sender: m.sender.to_string(),
            sent_at: m.sent_at,
            kind: m.kind,
            state: delivery_state(m.state),
            reply_to: m.reply_to.map(Into::into),
            edited_at: m.edited_at,
            deleted_by: m.deleted_by.map(|u| u.to_string()),
            reactions: m.reactions.into_iter().map(Into::into).collect(),
            expires_at: m.expires_at,
            read_by: m.read_by,
            segments: m
                .text
                .as_deref()
                .map(|t| mentions::segments(t, &m.mentions))
                .unwrap_or_default()
                .into_iter()
                .map(|s| FfiSegment {
                    text: s.text,
                    mention: s.mention.map(|u| u.to_string()),
                })
                .collect(),
            typed_text: m
                .text
                .as_deref()
                .map(|t| mentions::as_typed(t, &m.mentions)),
            mentions: m.mentions.iter().map(|x| x.user_id.to_string()).collect(),
            attachment: m.attachment.map(|a| FfiAttachment {
                name: a.name,
                media_type: a.media_type,
                size: a.size,
            }),
            text: m.text,
        }
    }
}

/// A conversation.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiConversation {
    /// The group id (hex).
    pub group_id: String,
    /// Its name.
    pub name: String,
    /// `active`, `rejoining` (out of step, coming back by itself), `leaving`
    /// or `left`.
    pub state: String,
    /// The MLS epoch this device is at.
    pub epoch: u64,
    /// Unread messages.
    pub unread: u64,
    /// Time of the latest activity, ms since the Unix epoch.
    pub last_activity: u64,
    /// The newest message's text, if any.
    pub last_message: Option<String>,
    /// The organisations of the current members, sorted.
    pub orgs: Vec<String>,
    /// How many people (users, not devices) are members.
    pub people: u32,
    /// Muted on this device: its messages raise no notification.
    pub muted: bool,
}

impl From<Conversation> for FfiConversation {
    fn from(c: Conversation) -> Self {
        Self {
            group_id: c.group_id.to_string(),
            name: c.name,
            state: c.state.as_str().into(),
            orgs: c.orgs.iter().map(ToString::to_string).collect(),
            people: c.people,
            epoch: c.epoch,
            unread: c.unread,
            last_activity: c.last_activity,
            last_message: c.last_message,
            muted: c.muted,
        }
    }
}

/// A member device of a conversation.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiMember {
    /// The user, `local@org`.
    pub user_id: String,
    /// The device (hex).
    pub device_id: String,
    /// Whether this is the local device.
    pub is_self: bool,
    /// The certified name.
    pub display_name: String,
    /// The certified role.
    pub role: String,
    /// The organisation that certified the device.
    pub org_id: String,
    /// When the device's certificate expires, seconds since the Unix epoch.
    pub certificate_expires: i64,
}

impl From<Member> for FfiMember {
    fn from(m: Member) -> Self {
        Self {
            user_id: m.user_id.to_string(),
            device_id: m.device_id.to_string(),
            is_self: m.is_self,
            display_name: m.display_name,
            role: m.role,
            org_id: m.org_id.to_string(),
            certificate_expires: m.certificate_expires,
        }
    }
}

/// A person in a conversation with their devices, as a member list shows
/// them (this user first, then by name).
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiParticipant {
    /// The user, `local@org`.
    pub user_id: String,
    /// The certified name.
    pub display_name: String,
    /// The certified role.
    pub role: String,
    /// Their organisation.
    pub org_id: String,
    /// Their role in this conversation; none in one created before
    /// conversation roles.
    pub conversation_role: Option<roles::FfiRole>,
    /// Whether this is the local user.
    pub is_me: bool,
    /// Their devices in the conversation (hex).
    pub devices: Vec<String>,
    /// The soonest expiry of their devices' certificates, seconds since
    /// the Unix epoch.
    pub certificate_expires: i64,
}

impl From<Participant> for FfiParticipant {
    fn from(p: Participant) -> Self {
        Self {
            user_id: p.user_id.to_string(),
            display_name: p.display_name,
            role: p.role,
            org_id: p.org_id.to_string(),
            conversation_role: p.conversation_role.map(Into::into),
            is_me: p.is_me,
            certificate_expires: p
                .devices
                .iter()
                .map(|d| d.certificate_expires)
                .min()
                .unwrap_or(0),
            devices: p.devices.iter().map(|d| d.device_id.to_string()).collect(),
        }
    }
}

/// A colleague found in the directory (from a verified certificate).
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiPerson {
    /// The user, `local@org`.
    pub user_id: String,
    /// Their organisation.
    pub org_id: String,
    /// Certified name.
    pub display_name: String,
    /// Certified role.
    pub role: String,
    /// How many certified devices they have.
    pub devices: u32,
}

impl From<Person> for FfiPerson {
    fn from(p: Person) -> Self {
        Self {
            user_id: p.user_id.to_string(),
            org_id: p.org_id.to_string(),
            display_name: p.display_name,
            role: p.role,
            devices: p.devices,
        }
    }
}

/// What the client tells the app, through [`EventListener::on_event`].
#[derive(Debug, Clone, uniffi::Enum)]
pub enum FfiEvent {
    /// A message arrived (or this device sent one).
    Message {
        /// The message.
        message: FfiMessage,
    },
    /// A message was edited, deleted for everyone, or reacted to: here it
    /// is as it now is.
    MessageChanged {
        /// The message now.
        message: FfiMessage,
        /// `edited`, `deleted` or `reactions`.
        change: String,
    },
    /// Messages reached their disappearing time and are gone from this
    /// device: take them out of view.
    MessagesExpired {
        /// The conversation (hex).
        group_id: String,
        /// The messages (hex).
        message_ids: Vec<String>,
    },
    /// A sent message's delivery state changed.
    DeliveryState {
        /// The conversation (hex).
        group_id: String,
        /// The message (hex).
        message_id: String,
        /// `sending`, `sent`, `delivered`, `failed` or `received`.
        state: String,
    },
    /// Members joined or left a conversation.
    MembershipChanged {
        /// The conversation (hex).
        group_id: String,
    },
    /// This user read a conversation on another device: clear its
    /// notifications (its unread count changed too).
    ReadElsewhere {
        /// The conversation (hex).
        group_id: String,
    },
    /// Another person read a conversation up to a point: this user's
    /// messages there may show a higher `read_by`.
    ReadBy {
        /// The conversation (hex).
        group_id: String,
        /// Who.
        user_id: String,
        /// The sequence number of the last message they read.
        up_to: u64,
    },
    /// A file going to or coming from the relay: `done` of `total` octets.
    Transfer {
        /// The conversation (hex).
        group_id: String,
        /// The file's name.
        name: String,
        /// Octets moved so far.
        done: u64,
        /// Octets in all.
        total: u64,
        /// An upload (else a download).
        upload: bool,
    },
    /// Someone is typing in a conversation until `until` (ms since the
    /// Unix epoch, this device's clock) unless told again; `until` 0: they
    /// stopped.
    Typing {
        /// The conversation (hex).
        group_id: String,
        /// Who.
        user_id: String,
        /// When to stop showing it; 0: now.
        until: u64,
    },
    /// A conversation appeared, was renamed, or its state changed.
    ConversationUpdated {
        /// The conversation (hex).
        group_id: String,
    },
    /// The connection to the relay changed: `offline`, `connecting` or `online`.
    Connection {
        /// The new state.
        state: String,
    },
    /// Everything queued at the relay while offline has been processed.
    Synced,
    /// The device waits for its certificate from its organisation.
    CertificatePending,
    /// The device's certificate arrived and verified.
    CertificateReceived,
    /// The device's organisation revoked it: everything it kept was erased
    /// and the client stopped. The app should erase what it keeps of its
    /// own (notifications, caches) and return to enrolment.
    Erased,
    /// A queued operation could not be carried out and was dropped.
    OperationFailed {
        /// The conversation (hex), if the operation concerned one.
        group_id: Option<String>,
        /// Why, without content.
        reason: String,
    },
    /// The app locked: hide every conversation (and keep notifications
    /// free of content) until `Unlocked`.
    Locked,
    /// The app was unlocked with the data's key.
    Unlocked,
    /// The organisation's device policy changed: the app locks after
    /// `idle_lock_secs` without input (see `idle_lock_secs()`).
    PolicyUpdated {
        /// Seconds without input before the app locks.
        idle_lock_secs: u32,
    },
    /// Something the app need not act on (directory answers, trust-list
    /// updates, missed events).
    Other {
        /// What kind of event it was.
        kind: String,
    },
}

impl From<Event> for FfiEvent {
    fn from(e: Event) -> Self {
        match e {
            Event::Message(m) => Self::Message { message: m.into() },
            Event::MessageChanged { message, change } => Self::MessageChanged {
                message: message.into(),
                change: change.as_str().into(),
            },
            Event::MessagesExpired { group_id, ids } => Self::MessagesExpired {
                group_id: group_id.to_string(),
                message_ids: ids.iter().map(ToString::to_string).collect(),
            },
            Event::DeliveryState {
                group_id,
                message_id,
                state,
            } => Self::DeliveryState {
                group_id: group_id.to_string(),
                message_id: message_id.to_string(),
                state: delivery_state(state),
            },
            Event::MembershipChanged { group_id, .. } => Self::MembershipChanged {
                group_id: group_id.to_string(),
            },
            Event::ReadElsewhere { group_id } => Self::ReadElsewhere {
                group_id: group_id.to_string(),
            },
            Event::ReadBy {
                group_id,
                user_id,
                up_to,
            } => Self::ReadBy {
                group_id: group_id.to_string(),
                user_id: user_id.to_string(),
                up_to,
            },
            Event::Transfer {
                group_id,
                name,
                done,
                total,
                upload,
            } => Self::Transfer {
                group_id: group_id.to_string(),
                name,
                done,
                total,
                upload,
            },
            Event::Typing {
                group_id,
                user_id,
                until,
            } => Self::Typing {
                group_id: group_id.to_string(),
                user_id: user_id.to_string(),
                until,
            },
            Event::ConversationUpdated(g) => Self::ConversationUpdated {
                group_id: g.to_string(),
            },
            Event::Connection(s) => Self::Connection {
                state: s.as_str().into(),
            },
            Event::Synced => Self::Synced,
            Event::CertificatePending => Self::CertificatePending,
            Event::CertificateReceived => Self::CertificateReceived,
            Event::Erased => Self::Erased,
            Event::OperationFailed { group_id, reason } => Self::OperationFailed {
                group_id: group_id.map(|g| g.to_string()),
                reason,
            },
            Event::AuthenticationRefused => Self::Other {
                kind: "authentication_refused".into(),
            },
            Event::Locked => Self::Locked,
            Event::Unlocked => Self::Unlocked,
            Event::PolicyUpdated(policy) => Self::PolicyUpdated {
                idle_lock_secs: policy.idle_lock_secs,
            },
            Event::TrustUpdated { .. } => Self::Other {
                kind: "trust_updated".into(),
            },
        }
    }
}

/// Implemented by the app (Kotlin, Swift, Python) to receive events. Called
/// on a dedicated background thread, one event at a time, in order.
#[uniffi::export(foreign)]
pub trait EventListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: FfiEvent);
}

/// Enrols this device with an enrolment code from an admin, creating
/// `data_dir` and the device's keys. Then [`CascadeClient::open`] it.
/// `key` (32 random bytes the app made and keeps in the platform keystore)
/// encrypts everything the device stores. `server_ca` (PEM) pins the CA of
/// a relay with a private TLS certificate; without it the system's trusted
/// roots verify the relay.
#[uniffi::export(async_runtime = "tokio", default(server_ca = None))]
pub async fn enrol(
    data_dir: String,
    key: Vec<u8>,
    server_url: String,
    code: String,
    device_name: String,
    server_ca: Option<String>,
) -> Result<FfiIdentity> {
    let key = store_key(key)?;
    Ok(Client::enrol_pinned(
        &PathBuf::from(data_dir),
        &server_url,
        server_ca.as_deref(),
        &code,
        &device_name,
        &key,
    )
    .await?
    .into())
}

/// A running client for one enrolled device.
#[derive(uniffi::Object)]
pub struct CascadeClient {
    client: Mutex<Option<Client>>,
    events: Mutex<Option<EventThread>>,
    identity: FfiIdentity,
}

impl CascadeClient {
    fn client(&self) -> Result<Client> {
        self.client
            .lock()
            .map_err(|_| CascadeError::Closed)?
            .clone()
            .ok_or(CascadeError::Closed)
    }
}

/// The thread that hands events to the app's listener.
struct EventThread {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl EventThread {
    /// Delivers events to the listener on its own thread, so a slow listener
    /// never holds up the client. Ends when the client's events end or when
    /// it is told to stop, whichever comes first: it must not outlive
    /// [`CascadeClient::shutdown`], because a host language that is exiting
    /// (Python's finalisation, for one) kills a thread that calls into it,
    /// and that thread unwinding through Rust aborts the process.
    fn start(mut rx: broadcast::Receiver<Event>, listener: Arc<dyn EventListener>) -> Result<Self> {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread_error = |e: std::io::Error| CascadeError::Other {
            code: "thread".into(),
            reason: format!("cannot start the event thread: {e}"),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(thread_error)?;
        let thread = std::thread::Builder::new()
            .name("cascade-events".into())
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        let event = tokio::select! {
                            biased;
                            _ = &mut stopped => break,
                            event = rx.recv() => event,
                        };
                        match event {
                            Ok(e) => listener.on_event(e.into()),
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                listener.on_event(FfiEvent::Other {
                                    kind: format!("missed {n} events"),
                                })
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        }
                    }
                })
            })
            .map_err(thread_error)?;
        Ok(Self { stop, thread })
    }

    /// Stops the thread and waits until it has ended: an event being
    /// delivered is finished, later ones are not delivered.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl CascadeClient {
    /// Opens an enrolled device's data directory with the key it was
    /// enrolled with (from the platform keystore), starts connecting to its
    /// relay in the background, and delivers every event from now on to
    /// `listener`. Another key raises [`CascadeError::WrongKey`].
    #[uniffi::constructor]
    pub async fn open(
        data_dir: String,
        key: Vec<u8>,
        listener: Arc<dyn EventListener>,
    ) -> Result<Arc<Self>> {
        let key = store_key(key)?;
        let client = Client::open(&PathBuf::from(data_dir), &key).await?;
        let events = EventThread::start(client.events_since_open(), listener)?;
        Ok(Arc::new(Self {
            identity: client.identity().clone().into(),
            client: Mutex::new(Some(client)),
            events: Mutex::new(Some(events)),
        }))
    }

    /// This device's identity.
    pub fn identity(&self) -> FfiIdentity {
        self.identity.clone()
    }

    /// Creates a conversation; returns its id (hex).
    pub async fn create_group(&self, name: String) -> Result<String> {
        Ok(self.client()?.create_group(&name).await?.to_string())
    }

    /// Adds all devices of these users (`local@org`) to a conversation.
    pub async fn add_members(&self, group_id: String, users: Vec<String>) -> Result<()> {
        let users = users.iter().map(|u| user_id(u)).collect::<Result<_>>()?;
        Ok(self
            .client()?
            .add_members(parse_group(&group_id)?, users)
            .await?)
    }

    /// Removes all devices of these users from a conversation.
    pub async fn remove_members(&self, group_id: String, users: Vec<String>) -> Result<()> {
        let users = users.iter().map(|u| user_id(u)).collect::<Result<_>>()?;
        Ok(self
            .client()?
            .remove_members(parse_group(&group_id)?, users)
            .await?)
    }

    /// Leaves a conversation.
    pub async fn leave(&self, group_id: String) -> Result<()> {
        Ok(self.client()?.leave(parse_group(&group_id)?).await?)
    }

    /// Sends a text message; returns its id (hex) at once (state `sending`).
    pub async fn send_text(&self, group_id: String, text: String) -> Result<String> {
        Ok(self
            .client()?
            .send_text(parse_group(&group_id)?, &text)
            .await?
            .to_string())
    }

    /// The newest `limit` messages of a conversation, oldest first.
    pub async fn history(&self, group_id: String, limit: u32) -> Result<Vec<FfiMessage>> {
        Ok(self
            .client()?
            .history(parse_group(&group_id)?, None, limit)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Conversations, most recently active first.
    pub async fn conversations(&self) -> Result<Vec<FfiConversation>> {
        Ok(self
            .client()?
            .conversations()
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Marks a conversation as read, on every device of this user, and
    /// (unless turned off) tells those whose messages were read.
    pub async fn mark_read(&self, group_id: String) -> Result<()> {
        Ok(self.client()?.mark_read(parse_group(&group_id)?).await?)
    }

    /// Member devices of a conversation.
    pub async fn members(&self, group_id: String) -> Result<Vec<FfiMember>> {
        Ok(self
            .client()?
            .members(parse_group(&group_id)?)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The people in a conversation with their devices: this user first,
    /// then by name (what a member list shows).
    pub async fn participants(&self, group_id: String) -> Result<Vec<FfiParticipant>> {
        Ok(self
            .client()?
            .participants(parse_group(&group_id)?)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Sends again a message of ours the relay refused (state `failed`),
    /// with the same id, so no one sees it twice.
    pub async fn retry_message(&self, group_id: String, message_id: String) -> Result<()> {
        let message = parse_message(&message_id)?;
        Ok(self
            .client()?
            .retry_message(parse_group(&group_id)?, message)
            .await?)
    }

    /// Finds colleagues by name, role or user id (from the relay when
    /// online, else from the local cache).
    pub async fn search_directory(&self, query: String) -> Result<Vec<FfiPerson>> {
        Ok(self
            .client()?
            .search_directory(&query)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The safety number of this user and `user` in a conversation.
    pub async fn safety_number(&self, group_id: String, user: String) -> Result<String> {
        Ok(self
            .client()?
            .safety_number(parse_group(&group_id)?, user_id(&user)?)
            .await?)
    }

    /// Seconds without input after which the app must lock (hide every
    /// conversation until the person unlocks it): the organisation's
    /// policy from its signed trust list, or the default (5 minutes).
    pub async fn idle_lock_secs(&self) -> Result<u32> {
        Ok(self.client()?.device_policy().await?.idle_lock_secs)
    }

    /// The person used the app: puts off the idle lock. Call it on input,
    /// at most every few seconds.
    pub fn input(&self) -> Result<()> {
        self.client()?.input();
        Ok(())
    }

    /// Locks the app now; `Locked` follows.
    pub fn lock(&self) -> Result<()> {
        self.client()?.lock();
        Ok(())
    }

    /// Whether the app is locked.
    pub fn is_locked(&self) -> Result<bool> {
        Ok(self.client()?.is_locked())
    }

    /// Unlocks the app with the data's key (32 bytes), which the app gets
    /// again from the platform keystore after the OS's own authentication
    /// (biometrics or the device PIN). Another key raises `WrongKey` and it
    /// stays locked.
    pub async fn unlock(&self, key: Vec<u8>) -> Result<()> {
        let key = store_key(key)?;
        Ok(self.client()?.unlock(key).await?)
    }

    /// Changes the data's key: `old` is the key the keystore holds now
    /// (anything else raises `WrongKey` and nothing changes), `new` a fresh
    /// random 32-byte key, which the app stores in the keystore in place of
    /// the old one once this returns. Every page of the data is encrypted
    /// again in one transaction: should the app be killed first, the old
    /// key still opens it. Not while locked.
    pub async fn change_key(&self, old: Vec<u8>, new: Vec<u8>) -> Result<()> {
        let (old, new) = (store_key(old)?, store_key(new)?);
        Ok(self.client()?.change_key(old, new).await?)
    }

    /// Whether the client is connected, authenticated and caught up.
    pub async fn is_online(&self) -> Result<bool> {
        Ok(self.client()?.is_online().await?)
    }

    /// Syncs once and returns (for a background fetch): waits until the
    /// client is connected, has processed everything queued at the relay
    /// and has sent its outbox. Returns false if that took longer than
    /// `timeout_ms`.
    pub async fn sync_once(&self, timeout_ms: u64) -> Result<bool> {
        Ok(self
            .client()?
            .sync(Duration::from_millis(timeout_ms))
            .await?)
    }

    /// This user's current devices (hex ids), this one included; for a
    /// devices screen. Needs the relay.
    pub async fn my_devices(&self) -> Result<Vec<String>> {
        Ok(self
            .client()?
            .my_devices()
            .await?
            .into_iter()
            .map(|d| d.to_string())
            .collect())
    }

    /// Registers the platform push token (APNs or FCM, as the host app got
    /// it), or removes it with `None`. While the device is offline the
    /// relay's push gateway is told it has new messages: the token only, no
    /// content or sender. Returns false if the relay was not reachable
    /// within `timeout_ms` (register again later).
    pub async fn register_push(&self, token: Option<String>, timeout_ms: u64) -> Result<bool> {
        Ok(self
            .client()?
            .register_push(token, Duration::from_millis(timeout_ms))
            .await?)
    }

    /// Disconnects and stays offline (app in the background) until
    /// [`CascadeClient::resume`]; work is still queued locally.
    pub fn pause(&self) -> Result<()> {
        Ok(self.client()?.pause()?)
    }

    /// Reconnects after [`CascadeClient::pause`].
    pub fn resume(&self) -> Result<()> {
        Ok(self.client()?.resume()?)
    }

    /// Stops the client; later calls raise [`CascadeError::Closed`].
    /// Everything durable is already on disk. When it returns, the listener
    /// is called no more.
    pub async fn shutdown(&self) {
        let client = self.client.lock().ok().and_then(|mut c| c.take());
        if let Some(client) = client {
            client.shutdown().await;
        }
        let events = self.events.lock().ok().and_then(|mut e| e.take());
        if let Some(events) = events {
            events.stop().await;
        }
    }
}
