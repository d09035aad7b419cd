//! The async client: one task owns the engine and the relay connection.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cascade_protocol::http::{EnrolRequest, EnrolResponse, HttpError, OrgInfo};
use cascade_protocol::limits::HARD_MAX_FRAME_BYTES;
use cascade_protocol::{GroupId, UserId};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub mod attachments;
mod features;
pub mod history;
pub mod link;
mod roles;

use crate::transport;
use cascade_protocol::enrolment_code;
use sha2::Digest as _;

use crate::content::MessageId;
use crate::engine::{Answer, Engine, Event, Member, MessageReceipts, Participant, QueryId};
use crate::error::{CoreError, EnrolmentError, Result};
use crate::lock::{AppLock, Tick};
use crate::store::{Conversation, Identity, Message, Protection, SqliteStore, StoreKey};

/// File name of the device database inside the data directory.
pub const DB_FILE: &str = "cascade.db";

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce(&mut Engine, u64) + Send>;

/// A query: starts it on the engine and returns its token (`None` when the
/// engine answers at once that it cannot ask, e.g. offline).
type QueryJob = Box<dyn FnOnce(&mut Engine, u64) -> Result<Option<QueryId>> + Send>;

/// Where a query's answer goes.
type Reply = oneshot::Sender<Result<Option<Answer>>>;

/// How long a query waits for the relay's answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

enum Cmd {
    Job(Job),
    Query(QueryJob, Reply),
    SetPaused(bool),
    Shutdown(oneshot::Sender<()>),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A running client for one enrolled device. Cheap to clone; every clone
/// talks to the same background task. The task stops when the last clone is
/// dropped or [`Client::shutdown`] is called.
#[derive(Clone)]
pub struct Client {
    cmds: mpsc::UnboundedSender<Cmd>,
    events: broadcast::Sender<Event>,
    identity: Identity,
    /// A receiver made before the background task started, so that the
    /// first events (connection, certificate) are not missed.
    first: std::sync::Arc<std::sync::Mutex<Option<broadcast::Receiver<Event>>>>,
    /// Set when the device erased itself (its organisation revoked it).
    erased: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The app lock ([`crate::lock`]).
    lock: std::sync::Arc<AppLock>,
    /// The store's file, to check an unlock's passphrase against.
    db: PathBuf,
    /// A device link under way on this device ([`crate::link`]).
    link: std::sync::Arc<std::sync::Mutex<Option<link::LinkState>>>,
}

fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE)
}

impl Client {
    /// Enrols this device with a one-time token from an admin, creating the
    /// data directory and the device's keys. Returns the identity the relay
    /// assigned. Safe to retry after a failure (the same key is reused).
    ///
    /// `code` is the enrolment code from the admin: the one-time token, a
    /// dot, and the 64-hex-digit SHA-256 fingerprint of the organisation's
    /// CA certificate. The relay serves the certificate; the fingerprint is
    /// what makes it trustworthy (no trust on first use).
    ///
    /// The relay is reached over HTTPS, verified against the system's
    /// trusted roots ([`Client::enrol_pinned`] pins a CA instead); plain
    /// `http://` only to this machine ([`crate::transport`]).
    ///
    /// `key` encrypts the device's data ([`crate::store::at_rest`]): a new
    /// passphrase, or a key from the platform keystore.
    pub async fn enrol(
        data_dir: &Path,
        server_url: &str,
        code: &str,
        device_name: &str,
        key: &StoreKey,
    ) -> Result<Identity> {
        Self::enrol_pinned(data_dir, server_url, None, code, device_name, key).await
    }

    /// Like [`Client::enrol`], but the relay's TLS certificate must chain to
    /// `server_ca` (PEM): for a private deployment whose relay certificate
    /// comes from the organisation's own CA. The pin is kept with the
    /// identity and used for every later connection.
    pub async fn enrol_pinned(
        data_dir: &Path,
        server_url: &str,
        server_ca: Option<&str>,
        code: &str,
        device_name: &str,
        key: &StoreKey,
    ) -> Result<Identity> {
        let code = enrolment_code::parse(code).map_err(|_| EnrolmentError::BadCode)?;
        // An address given explicitly wins over a link's.
        let server_url = match (server_url.trim(), code.server.as_deref()) {
            ("", Some(from_link)) => from_link,
            ("", None) => return Err(EnrolmentError::NoServer.into()),
            (given, _) => given,
        };
        let http = transport::http_client(server_url, server_ca)?;
        std::fs::create_dir_all(data_dir).map_err(EnrolmentError::DataDir)?;
        let _lock = DirLock::acquire(data_dir)?;
        let mut engine = Engine::new(SqliteStore::open(&db_path(data_dir), key)?)?;
        let public_key = engine.begin_enrolment()?;
        let url = format!("{}/v1/enrol", server_url.trim_end_matches('/'));
        let resp = http
            .post(url)
            .json(&EnrolRequest {
                token: code.token.clone(),
                signature_key: hex::encode(&public_key),
                device_name: device_name.to_owned(),
                ca_fingerprint: Some(code.fingerprint.as_str().to_owned()),
            })
            .send()
            .await
            .map_err(unreachable)?;
        if !resp.status().is_success() {
            let status = resp.status();
            let error = resp.json::<HttpError>().await.ok();
            if error
                .as_ref()
                .is_some_and(|e| e.code == "fingerprint_mismatch")
            {
                return Err(EnrolmentError::FingerprintMismatch.into());
            }
            let msg = error
                .map(|e| e.message)
                .unwrap_or_else(|| status.to_string());
            return Err(EnrolmentError::Refused(msg).into());
        }
        let body: EnrolResponse = resp.json().await.map_err(|_| EnrolmentError::BadAnswer)?;
        let org: OrgInfo = http
            .get(format!(
                "{}/v1/orgs/{}",
                server_url.trim_end_matches('/'),
                body.org_id
            ))
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(|_| EnrolmentError::BadAnswer)?;
        let pem = org.ca_certificate.ok_or(EnrolmentError::NoCaCertificate)?;
        let der = crate::identity::pem_to_der(&pem)?;
        if !code.fingerprint.matches(&sha2::Sha256::digest(&der).into()) {
            return Err(EnrolmentError::FingerprintMismatch.into());
        }
        engine.complete_enrolment(server_url, server_ca, body, &der)?;
        engine.identity().cloned().ok_or(CoreError::NotEnrolled)
    }

    /// What protects the device's data in `data_dir`: none yet, a
    /// passphrase or a keystore's key. A front end decides from it what to
    /// ask for, and whether to ask for a new passphrase twice
    /// ([`Protection::takes_a_new_key`]).
    pub fn protection(data_dir: &Path) -> Result<Protection> {
        crate::store::at_rest::protection(&db_path(data_dir))
    }

    /// Opens an enrolled device's data directory with its key and starts
    /// connecting to its relay in the background. A wrong key or
    /// passphrase is [`CoreError::WrongKey`], and nothing is changed; a
    /// directory with no store is [`CoreError::NotEnrolled`], and nothing
    /// is created.
    pub async fn open(data_dir: &Path, key: &StoreKey) -> Result<Client> {
        Self::open_via(data_dir, None, key).await
    }

    /// Like [`Client::open`], but connects to `server_url` instead of the
    /// relay address recorded at enrolment (a relay that moved, or a test
    /// proxy in front of it).
    pub async fn open_via(
        data_dir: &Path,
        server_url: Option<&str>,
        key: &StoreKey,
    ) -> Result<Client> {
        let lock = DirLock::acquire_waiting(data_dir).await?;
        if Self::protection(data_dir)? == Protection::Missing {
            return Err(CoreError::NotEnrolled);
        }
        let store = SqliteStore::open(&db_path(data_dir), key)?;
        let key_digest = store.key_digest().expect("a store on disk");
        let engine = Engine::new(store)?;
        let identity = engine.identity().cloned().ok_or(CoreError::NotEnrolled)?;
        let app_lock = std::sync::Arc::new(AppLock::new(
            key_digest,
            engine.device_policy().idle_lock_secs,
            now_ms(),
        ));
        let (cmds, rx) = mpsc::unbounded_channel();
        let (events, first) = broadcast::channel(4096);
        let base = server_url.unwrap_or(&identity.server_url);
        let ws_url = ws_url(base);
        let connector = transport::ws_connector(&ws_url, identity.server_ca.as_deref())?;
        let revocations = RevocationCheck {
            http: transport::http_client(base, identity.server_ca.as_deref())?,
            org_url: format!("{}/v1/orgs/{}", base.trim_end_matches('/'), identity.org_id),
            device: identity.device_id,
            data_dir: data_dir.to_owned(),
        };
        let erased = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn(run(
            engine,
            lock,
            ws_url,
            connector,
            rx,
            events.clone(),
            revocations,
            erased.clone(),
        ));
        tokio::spawn(idle_lock(
            app_lock.clone(),
            cmds.downgrade(),
            events.clone(),
            events.subscribe(),
        ));
        Ok(Client {
            cmds,
            events,
            identity,
            first: std::sync::Arc::new(std::sync::Mutex::new(Some(first))),
            erased,
            lock: app_lock,
            db: db_path(data_dir),
            link: Default::default(),
        })
    }

    /// This device's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A stream of events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The stream of every event since the client was opened, for the first
    /// caller; later callers get one from now on, like [`Client::subscribe`].
    pub fn events_since_open(&self) -> broadcast::Receiver<Event> {
        self.first
            .lock()
            .expect("not poisoned")
            .take()
            .unwrap_or_else(|| self.events.subscribe())
    }

    /// Why the background task is gone: erased, or shut down.
    fn closed(&self) -> CoreError {
        if self.erased.load(std::sync::atomic::Ordering::SeqCst) {
            CoreError::Erased
        } else {
            CoreError::Closed
        }
    }

    /// Runs `f` on the engine; [`CoreError::Locked`] while the app is
    /// locked (everything a person does, and everything that shows
    /// content, goes through here).
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine, u64) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.lock.check()?;
        self.call_locked(f).await
    }

    /// Runs `f` on the engine even while the app is locked: only for what
    /// shows no content (connection state, the outbox's length, policy).
    async fn call_locked<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine, u64) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |engine, now| {
            let _ = tx.send(f(engine, now));
        });
        self.cmds.send(Cmd::Job(job)).map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Creates a conversation; add members with [`Client::add_members`].
    pub async fn create_group(&self, name: &str) -> Result<GroupId> {
        let name = name.to_owned();
        self.call(move |e, now| e.create_group(&name, now)).await
    }

    /// Adds all devices of these users (queued; see [`Event::MembershipChanged`]).
    pub async fn add_members(&self, group: GroupId, users: Vec<UserId>) -> Result<()> {
        self.call(move |e, now| e.add_members(&group, users, now))
            .await
    }

    /// Removes all devices of these users (queued).
    pub async fn remove_members(&self, group: GroupId, users: Vec<UserId>) -> Result<()> {
        self.call(move |e, now| e.remove_members(&group, users, now))
            .await
    }

    /// Leaves a conversation (queued).
    pub async fn leave(&self, group: GroupId) -> Result<()> {
        self.call(move |e, now| e.leave(&group, now)).await
    }

    /// Sends a text message; returns its id at once (state `Sending`).
    pub async fn send_text(&self, group: GroupId, text: &str) -> Result<MessageId> {
        let text = text.to_owned();
        self.call(move |e, now| e.send_text(&group, &text, now))
            .await
    }

    /// Sends a refused (`Failed`) message of ours again, same id.
    pub async fn retry_message(&self, group: GroupId, message: MessageId) -> Result<()> {
        self.call(move |e, now| e.retry_message(&group, &message, now))
            .await
    }

    /// Conversations, most recently active first.
    pub async fn conversations(&self) -> Result<Vec<Conversation>> {
        self.call(|e, _| e.conversations()).await
    }

    /// One conversation.
    pub async fn conversation(&self, group: GroupId) -> Result<Conversation> {
        self.call(move |e, _| e.conversation(&group)).await
    }

    /// Up to `limit` messages, oldest first, older than `before` if given.
    pub async fn history(
        &self,
        group: GroupId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        self.call(move |e, _| e.history(&group, before.as_ref(), limit))
            .await
    }

    /// Marks a conversation as read, on every device of this user, and
    /// (unless turned off) tells the people whose messages were read.
    pub async fn mark_read(&self, group: GroupId) -> Result<()> {
        self.call(move |e, now| e.mark_read(&group, now)).await
    }

    /// Who has received and read one of this user's messages.
    pub async fn receipts(&self, group: GroupId, id: MessageId) -> Result<MessageReceipts> {
        self.call(move |e, _| e.receipts(&group, &id)).await
    }

    /// Mutes or unmutes a conversation on this device.
    pub async fn set_muted(&self, group: GroupId, muted: bool) -> Result<()> {
        self.call(move |e, _| e.set_muted(&group, muted)).await
    }

    /// Whether a message that just arrived should notify the user (another
    /// person's, in a conversation not muted, or one that mentions them).
    pub async fn notifies(&self, message: Message) -> Result<bool> {
        self.call_locked(move |e, _| e.notifies(&message)).await
    }

    /// Whether this user sends read receipts.
    pub async fn read_receipts(&self) -> Result<bool> {
        self.call_locked(|e, _| e.read_receipts()).await
    }

    /// Turns sending read receipts on or off.
    pub async fn set_read_receipts(&self, on: bool) -> Result<()> {
        self.call_locked(move |e, _| e.set_read_receipts(on)).await
    }

    /// Members of a conversation.
    pub async fn members(&self, group: GroupId) -> Result<Vec<Member>> {
        self.call(move |e, _| e.members(&group)).await
    }

    /// Members of a conversation by person, with their devices (see
    /// [`Engine::participants`]).
    pub async fn participants(&self, group: GroupId) -> Result<Vec<Participant>> {
        self.call(move |e, _| e.participants(&group)).await
    }

    /// The safety number of this user and `other` (see
    /// [`Engine::safety_number`]).
    pub async fn safety_number(&self, group: GroupId, other: UserId) -> Result<String> {
        self.call(move |e, _| e.safety_number(&group, &other)).await
    }

    /// Asks the relay through the engine and waits for the answer: `None`
    /// when offline or disconnected before the answer.
    async fn query(
        &self,
        f: impl FnOnce(&mut Engine, u64) -> Result<Option<QueryId>> + Send + 'static,
    ) -> Result<Option<Answer>> {
        self.lock.check()?;
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Query(Box::new(f), tx))
            .map_err(|_| self.closed())?;
        match tokio::time::timeout(QUERY_TIMEOUT, rx).await {
            Ok(answer) => answer.map_err(|_| self.closed())?,
            Err(_) => Err(CoreError::Timeout),
        }
    }

    /// Finds colleagues in the device's own and trusted organisations by
    /// name, role or user id, verified against their certificates. Asks the
    /// relay when connected (and caches what it finds); searches the local
    /// cache when the relay is unreachable.
    pub async fn search_directory(&self, query: &str) -> Result<Vec<crate::store::Person>> {
        let q = query.to_owned();
        match self.query(move |e, _| e.search_directory(&q)).await {
            Ok(Some(Answer::People(people))) => return Ok(people),
            Err(e @ CoreError::Invalid(_)) => return Err(e),
            Ok(_) | Err(_) => {}
        }
        let q = query.to_owned();
        self.call(move |e, _| e.search_local(&q)).await
    }

    /// This user's current devices (enrolled and not revoked), as the relay
    /// lists them; this device is among them. Needs the relay.
    pub async fn my_devices(&self) -> Result<Vec<cascade_protocol::DeviceId>> {
        let user = self.identity.user_id.clone();
        match self.query(move |e, _| e.request_user(&user)).await? {
            Some(Answer::Devices(devices)) => Ok(devices),
            Some(Answer::Refused(e)) => Err(CoreError::Relay(e)),
            _ => Err(CoreError::Offline),
        }
    }

    /// Registers (or, with `None`, removes) this device's push token: while
    /// the device is offline, the relay's push gateway is told it has new
    /// messages (no content, no sender). Waits until connected, at most
    /// `timeout`; `Ok(false)` if it was not.
    pub async fn register_push(&self, token: Option<String>, timeout: Duration) -> Result<bool> {
        if !self.sync(timeout).await? {
            return Ok(false);
        }
        match self.query(move |e, _| e.register_push(token)).await? {
            Some(Answer::PushRegistered) => Ok(true),
            Some(Answer::Refused(e)) => Err(CoreError::Relay(e)),
            _ => Ok(false),
        }
    }

    /// The organisations whose members this device accepts (its own first).
    pub async fn trusted_orgs(&self) -> Result<Vec<cascade_protocol::OrgId>> {
        self.call(|e, _| Ok(e.trusted_orgs())).await
    }

    /// What this device's organisation asks of it: how long the app waits
    /// without input before it locks. Changes come as
    /// [`Event::PolicyUpdated`](crate::engine::Event::PolicyUpdated).
    pub async fn device_policy(&self) -> Result<crate::identity::DevicePolicy> {
        self.call_locked(|e, _| Ok(e.device_policy())).await
    }

    /// The person used the app (a key, a click, a touch): puts off the idle
    /// lock. Front ends call it on input, at most every few seconds.
    pub fn input(&self) {
        self.lock.input(now_ms());
    }

    /// Locks the app now (the person stepped away): every call that shows
    /// content fails with [`CoreError::Locked`] until [`Client::unlock`];
    /// messages still arrive underneath. Sends [`Event::Locked`].
    pub fn lock(&self) {
        if self.lock.lock() {
            let _ = self.events.send(Event::Locked);
        }
    }

    /// Whether the app is locked.
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// Unlocks the app with the key the device's data was opened with,
    /// given again: the passphrase (derived with the store's own salt and
    /// cost), or the keystore's key. A wrong one is [`CoreError::WrongKey`]
    /// and it stays locked. Sends [`Event::Unlocked`].
    pub async fn unlock(&self, key: StoreKey) -> Result<()> {
        let db = self.db.clone();
        let digest =
            tokio::task::spawn_blocking(move || crate::store::at_rest::key_digest(&db, &key))
                .await
                .map_err(|_| CoreError::Closed)??;
        if self.lock.unlock(digest, now_ms())? {
            let _ = self.events.send(Event::Unlocked);
        }
        Ok(())
    }

    /// Changes the key of the device's data: `old` is the key it is
    /// protected by now, given again (a wrong one is
    /// [`CoreError::WrongKey`] and nothing changes), `new` the one it is
    /// protected by from then on, of the same kind
    /// ([`InvalidInput::KeyKindChange`](crate::InvalidInput::KeyKindChange);
    /// a new passphrase has at least
    /// [`MIN_PASSPHRASE_CHARS`](crate::store::at_rest::MIN_PASSPHRASE_CHARS)
    /// characters). Every page of the store is re-encrypted in one
    /// transaction, so a crash leaves it under one key or the other. Not
    /// while the app is locked.
    pub async fn change_key(&self, old: StoreKey, new: StoreKey) -> Result<()> {
        self.lock.check()?;
        let db = self.db.clone();
        let (old, new) = tokio::task::spawn_blocking(move || {
            let old = crate::store::at_rest::key_digest(&db, &old)?;
            let new = crate::store::at_rest::new_key(&db, &new)?;
            Ok::<_, CoreError>((old, new))
        })
        .await
        .map_err(|_| CoreError::Closed)??;
        if !self.lock.is_key(&old) {
            return Err(CoreError::WrongKey);
        }
        let digest = self.call(move |e, _| e.rekey(&new)).await?;
        self.lock.set_key_digest(digest);
        Ok(())
    }

    /// The MLS epoch of a conversation on this device.
    pub async fn epoch(&self, group: GroupId) -> Result<u64> {
        self.call(move |e, _| e.epoch(&group)).await
    }

    /// Operations not yet accepted by the relay.
    pub async fn outbox_len(&self) -> Result<u64> {
        self.call_locked(|e, _| e.outbox_len()).await
    }

    /// Whether the client is connected, authenticated and caught up.
    pub async fn is_online(&self) -> Result<bool> {
        self.call_locked(|e, _| Ok(e.is_online())).await
    }

    /// Waits until the client is connected, has processed everything the
    /// relay had queued for it, and its outbox is empty — the "sync once"
    /// of a background fetch. Gives up with `Ok(false)` after `timeout`.
    pub async fn sync(&self, timeout: Duration) -> Result<bool> {
        let mut events = self.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            let idle = self.call_locked(|e, _| e.is_idle()).await?;
            if idle {
                return Ok(true);
            }
            let wait = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(false),
                ev = events.recv() => if let Err(broadcast::error::RecvError::Closed) = ev {
                    return Err(self.closed());
                },
                _ = wait => {}
            }
        }
    }

    /// Disconnects and stays offline (e.g. app in the background) until
    /// [`Client::resume`]. Work is still queued locally.
    pub fn pause(&self) -> Result<()> {
        self.cmds
            .send(Cmd::SetPaused(true))
            .map_err(|_| self.closed())
    }

    /// Reconnects after [`Client::pause`].
    pub fn resume(&self) -> Result<()> {
        self.cmds
            .send(Cmd::SetPaused(false))
            .map_err(|_| self.closed())
    }

    /// Stops the background task after the current step. Everything durable
    /// is already on disk.
    /// Other clones stop working too ([`CoreError::Closed`]).
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel::<()>();
        if self.cmds.send(Cmd::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Enrolment could not reach the relay: why, if TLS refused it.
fn unreachable(e: reqwest::Error) -> EnrolmentError {
    match transport::tls_failure(&e) {
        Some(why) => EnrolmentError::Tls(why),
        None => EnrolmentError::Unreachable,
    }
}

fn ws_url(server_url: &str) -> String {
    let base = server_url.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{base}/v1/ws")
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A message read from the socket while batching, to handle next.
type Deferred = Option<Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>>;

/// Most frames handled in one transaction.
const FRAME_BATCH: usize = 64;

async fn next_frame(
    ws: &mut Option<Ws>,
    deferred: &mut Deferred,
) -> Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>> {
    if let Some(msg) = deferred.take() {
        return msg;
    }
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

fn instant_for(at_ms: u64) -> Instant {
    let now = now_ms();
    Instant::now() + Duration::from_millis(at_ms.saturating_sub(now))
}

/// How a device finds out that its organisation revoked it: after the relay
/// refuses its authentication, it fetches its organisation's signed
/// revocation list over HTTP (it cannot ask on the WebSocket any more).
struct RevocationCheck {
    http: reqwest::Client,
    /// `/v1/orgs/{org}` of the device's own organisation, on the relay.
    org_url: String,
    /// This device.
    device: cascade_protocol::DeviceId,
    /// What to erase.
    data_dir: PathBuf,
}

impl RevocationCheck {
    /// The organisation's signed revocation list as the relay serves it
    /// (`None`: none, or the relay could not be asked).
    async fn revocations(&self) -> Option<cascade_protocol::SignedDocument> {
        self.fetch(&format!("{}/revocations", self.org_url)).await
    }

    /// The organisation's signed order to wipe this device, if the relay
    /// holds one.
    async fn wipe_order(&self) -> Option<cascade_protocol::SignedDocument> {
        self.fetch(&format!("{}/devices/{}/wipe", self.org_url, self.device))
            .await
    }

    async fn fetch(&self, url: &str) -> Option<cascade_protocol::SignedDocument> {
        // Bounded in time and size: a relay that stalls or floods the
        // answer must not hold the client.
        let answer = async {
            let response = self.http.get(url).send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            let body = response.bytes().await.ok()?;
            (body.len() <= MAX_REVOCATIONS_JSON_BYTES).then_some(body)
        };
        let body = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .ok()??;
        let json: cascade_protocol::http::SignedDocumentJson =
            serde_json::from_slice(&body).ok()?;
        json.to_document().ok()
    }

    /// Tells the relay, and through it the organisation's admins, that this
    /// device erased itself on their order (`signature` made before).
    async fn confirm_wipe(&self, signature: &[u8]) {
        use base64::Engine as _;
        let url = format!("{}/devices/{}/wiped", self.org_url, self.device);
        let body = cascade_protocol::http::WipeConfirmation {
            signature: base64::engine::general_purpose::STANDARD.encode(signature),
        };
        let sent = tokio::time::timeout(
            Duration::from_secs(10),
            self.http.post(&url).json(&body).send(),
        )
        .await;
        match sent {
            Ok(Ok(r)) if r.status().is_success() => {
                tracing::info!("the erasure was confirmed to the organisation")
            }
            Ok(Ok(r)) => {
                tracing::warn!(status = %r.status(), "the relay refused the wipe confirmation")
            }
            _ => tracing::warn!("the wipe confirmation could not be sent"),
        }
    }
}

/// The largest revocation list answer read: the relay's own limit on an
/// uploaded list (base64 of 256 KiB, and a margin).
const MAX_REVOCATIONS_JSON_BYTES: usize = 512 * 1024;

/// Overwrites every file under `dir` with zeros, syncs it, and removes it
/// and every directory under `dir` (`dir` itself stays, empty). Goes on
/// past a failure and returns the first.
pub(crate) fn erase_dir(dir: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut first = None;
    let mut note = |e: std::io::Error| {
        first.get_or_insert(e);
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                if let Err(e) = erase_dir(&path).and_then(|()| std::fs::remove_dir(&path)) {
                    note(e);
                }
            }
            // A link (or anything not a file) is removed, never followed.
            Ok(t) if !t.is_file() => {
                if let Err(e) = std::fs::remove_file(&path) {
                    note(e);
                }
            }
            Ok(_) => {
                let overwrite = || -> std::io::Result<()> {
                    let len = std::fs::metadata(&path)?.len();
                    let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
                    let zeros = vec![0u8; 64 * 1024];
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(zeros.len() as u64) as usize;
                        file.write_all(&zeros[..n])?;
                        left -= n as u64;
                    }
                    file.sync_all()
                };
                if let Err(e) = overwrite().and_then(|()| std::fs::remove_file(&path)) {
                    note(e);
                }
            }
            Err(e) => note(e),
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The lock file in a device's data directory.
const LOCK_FILE: &str = "lock";

/// An exclusive lock on a device's data directory, held while one client
/// has it open (an OS file lock: released when the process ends, however
/// it ends). Two engines on one directory would both process the same
/// queue items and fork the device's conversations.
struct DirLock {
    /// Holding the open file holds the lock.
    _file: std::fs::File,
}

impl DirLock {
    /// Takes the lock, or `InUse` if another client (in this process or
    /// another) holds it.
    fn acquire(data_dir: &Path) -> Result<DirLock> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join(LOCK_FILE))
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    CoreError::NotEnrolled
                } else {
                    CoreError::DataDir(e)
                }
            })?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(CoreError::InUse),
            Err(std::fs::TryLockError::Error(e)) => Err(CoreError::DataDir(e)),
        }
    }

    /// As [`DirLock::acquire`], waiting up to [`LOCK_GRACE`] for a lock
    /// released a moment ago: a child process that another thread of this
    /// program is starting holds every open file, the lock's too, from its
    /// fork until it runs its own program, so a client closed just before
    /// can still seem to hold it.
    async fn acquire_waiting(data_dir: &Path) -> Result<DirLock> {
        let deadline = tokio::time::Instant::now() + LOCK_GRACE;
        loop {
            match DirLock::acquire(data_dir) {
                Err(CoreError::InUse) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }
}

/// How long opening a data directory waits for another holder of its lock
/// before it says [`CoreError::InUse`].
const LOCK_GRACE: Duration = Duration::from_secs(1);

/// How often the idle lock looks at the clock.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Locks the app once the organisation's idle period has passed without
/// input, and follows changes of that period; ends with the client.
async fn idle_lock(
    lock: std::sync::Arc<AppLock>,
    cmds: mpsc::WeakUnboundedSender<Cmd>,
    events: broadcast::Sender<Event>,
    mut seen: broadcast::Receiver<Event>,
) {
    let mut every = tokio::time::interval(IDLE_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {
                // Every handle dropped, or the client stopped.
                if cmds.upgrade().is_none_or(|c| c.is_closed()) {
                    return;
                }
                if lock.tick(now_ms()) == Tick::Locked {
                    let _ = events.send(Event::Locked);
                }
            }
            event = seen.recv() => match event {
                Ok(Event::PolicyUpdated(policy)) => lock.set_idle_secs(policy.idle_lock_secs),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The background task: one engine, one socket.
#[allow(clippy::too_many_arguments)]
async fn run(
    mut engine: Engine,
    lock: DirLock,
    url: String,
    connector: Option<tokio_tungstenite::Connector>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    events: broadcast::Sender<Event>,
    revocations: RevocationCheck,
    erased: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut revoked = false;
    let mut wiped: Option<Vec<u8>> = None;
    let mut ws: Option<Ws> = None;
    let mut done: Option<oneshot::Sender<()>> = None;
    let mut paused = false;
    let mut backoff = BACKOFF_MIN;
    let mut waiting: std::collections::HashMap<QueryId, Reply> = std::collections::HashMap::new();
    let mut deferred: Deferred = None;
    let mut reconnect_at = Instant::now();
    let config = WebSocketConfig::default()
        .max_message_size(Some(HARD_MAX_FRAME_BYTES))
        .max_frame_size(Some(HARD_MAX_FRAME_BYTES));
    loop {
        // Drain outputs.
        while let Some(frame) = engine.poll_transmit() {
            let Some(sock) = ws.as_mut() else { break };
            if let Err(e) = sock.send(WsMessage::Binary(frame.into())).await {
                tracing::info!(error = %e, "connection lost while sending");
                ws = None;
                engine.handle_disconnected();
                reconnect_at = Instant::now() + backoff;
            }
        }
        let mut refused = false;
        while let Some(ev) = engine.poll_event() {
            refused |= matches!(ev, Event::AuthenticationRefused);
            let _ = events.send(ev);
        }
        if refused {
            // Refused: the organisation may have wiped or revoked this
            // device. Only what its own CA signed is believed.
            if let Some(doc) = revocations.wipe_order().await {
                wiped = engine.wipe_confirmation(&doc);
            }
            if wiped.is_some() {
                break;
            }
            if let Some(doc) = revocations.revocations().await {
                if engine.revoked_by_own_organisation(&doc) {
                    revoked = true;
                    break;
                }
            }
        }
        while let Some((q, answer)) = engine.poll_answer() {
            if let Some(reply) = waiting.remove(&q) {
                let _ = reply.send(Ok(Some(answer)));
            }
        }
        let timer = engine.poll_timeout().map(instant_for);
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => break,
                Some(Cmd::Shutdown(tx)) => {
                    done = Some(tx);
                    break;
                }
                Some(Cmd::Job(job)) => job(&mut engine, now_ms()),
                Some(Cmd::Query(job, reply)) => match job(&mut engine, now_ms()) {
                    Ok(Some(q)) => {
                        waiting.insert(q, reply);
                    }
                    Ok(None) => {
                        let _ = reply.send(Ok(None));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                Some(Cmd::SetPaused(p)) => {
                    paused = p;
                    if p {
                        if let Some(mut s) = ws.take() {
                            let _ = s.close(None).await;
                            engine.handle_disconnected();
                        }
                    } else {
                        reconnect_at = Instant::now();
                    }
                }
            },
            msg = next_frame(&mut ws, &mut deferred) => match msg {
                Some(Ok(WsMessage::Binary(b))) => {
                    // What else has arrived already is handled with it, in
                    // one transaction (one fsync for a burst).
                    let mut batch = vec![b];
                    while batch.len() < FRAME_BATCH {
                        match ws.as_mut().and_then(|s| s.next().now_or_never()) {
                            Some(Some(Ok(WsMessage::Binary(b)))) => batch.push(b),
                            Some(other) => {
                                deferred = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    if let Err(e) = engine.handle_frames(batch.iter().map(|b| b.as_ref()), now_ms()) {
                        tracing::warn!(error = %e, "frames from the relay not handled");
                        if engine.is_disconnected() {
                            // Nothing of them was kept: start over.
                            ws = None;
                            deferred = None;
                            reconnect_at = Instant::now() + backoff;
                        }
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => {
                    ws = None;
                    engine.handle_disconnected();
                    reconnect_at = Instant::now() + backoff;
                }
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep_until(reconnect_at), if ws.is_none() && !paused => {
                match tokio_tungstenite::connect_async_tls_with_config(url.as_str(), Some(config), true, connector.clone()).await {
                    Ok((s, _)) => {
                        ws = Some(s);
                        backoff = BACKOFF_MIN;
                        engine.handle_connected();
                    }
                    Err(e) => {
                        match transport::tls_failure(&e) {
                            // Not transient: say so where it can be seen.
                            Some(why) => tracing::warn!(why, "the relay's TLS certificate is not trusted; retrying"),
                            None => tracing::debug!(error = %e, "relay unreachable; retrying"),
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        let jitter = Duration::from_millis(u64::from(rand::random::<u8>()));
                        reconnect_at = Instant::now() + backoff + jitter;
                    }
                }
            },
            _ = async { tokio::time::sleep_until(timer.expect("guarded")).await }, if timer.is_some() => {
                if let Err(e) = engine.handle_timeout(now_ms()) {
                    tracing::warn!(error = %e, "timeout handling failed");
                }
            }
        }
    }
    if let Some(mut s) = ws {
        let _ = s.close(None).await;
    }
    drop(engine); // closes the database before confirming
    if revoked || wiped.is_some() {
        // No log line carries the path's contents; the path is the user's.
        match wiped {
            Some(_) => tracing::warn!("this device's organisation wiped it: erasing its data"),
            None => tracing::warn!("this device's organisation revoked it: erasing its data"),
        }
        erased.store(true, std::sync::atomic::Ordering::SeqCst);
        match erase_dir(&revocations.data_dir) {
            Ok(()) => {
                if let Some(signature) = &wiped {
                    revocations.confirm_wipe(signature).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "erasing the device's data failed"),
        }
        let _ = events.send(Event::Erased);
    }
    drop(lock); // only now may another program open the directory
    if let Some(tx) = done {
        let _ = tx.send(());
    }
}
