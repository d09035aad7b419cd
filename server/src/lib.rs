//! The Cascade relay: delivery service, directory and KeyPackage store.
//!
//! It sees MLS ciphertext and framing headers only. Devices talk to it over
//! one authenticated WebSocket each (`/v1/ws`, [`ws`]); administrators and
//! enrolling devices use plain HTTP ([`admin`], [`enrol`]), and anyone may read
//! an organisation's CA certificate ([`orgs`]). The relay stores organisation
//! CA certificates, device certificates and signed trust lists but holds no CA
//! key; its checks ([`certificate`]) only give admins early errors. All state is
//! behind the [`Store`] trait.
//!
//! Starting a relay in-process (as tests do):
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path) -> Result<(), cascade_server::ServerError> {
//! let (server, admin_token) = cascade_server::Server::open(dir)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let running = server.spawn(listener)?;
//! println!("relay at {} (admin token in {})", running.http_url(), admin_token.path.display());
//! running.shutdown().await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

pub mod admin;
pub mod audit;
pub mod blob_http;
pub mod blobs;
pub mod certificate;
pub mod disk;
pub mod ds;
pub mod durability;
pub mod enrol;
pub mod error;
pub mod extract;
pub mod fanout;
pub mod group_lock;
pub mod guard;
pub mod listen;
pub mod metrics;
pub mod orgs;
pub mod push;
pub mod ratelimit;
pub mod store;
pub mod tls;
pub mod token;
pub mod trust;
pub mod wipe;
pub mod ws;

pub use admin::AdminToken;
pub use error::{ApiError, DsError, ServerError};

use durability::Flusher;
use fanout::Registry;
use group_lock::GroupLocks;
use store::{SledStore, Store, StoreError};

/// Largest HTTP request body the relay reads; larger bodies get `413`.
/// (The trust-list upload has its own, larger limit:
/// [`admin::MAX_TRUST_LIST_HTTP_BODY_BYTES`].)
pub const MAX_HTTP_BODY_BYTES: usize = 64 * 1024;

/// How long a stopping relay waits for WebSocket connections to close
/// before it flushes the store and returns anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The address the relay listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7171";

/// Days a device may stay away before its queues expire
/// ([`AppState::expire_queues`]).
pub const DEFAULT_QUEUE_EXPIRY_DAYS: f64 = 30.0;

/// Where the relay keeps its state and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The data directory: the database (`db/`) and the admin token file.
    pub data_dir: PathBuf,
    /// The socket address to listen on.
    pub listen: SocketAddr,
}

impl Config {
    /// The default data directory: `$XDG_DATA_HOME/cascade-server`, else
    /// `$HOME/.local/share/cascade-server`, else `./cascade-server-data`.
    pub fn default_data_dir() -> PathBuf {
        let non_empty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").and_then(non_empty) {
            return xdg.join("cascade-server");
        }
        if let Some(home) = std::env::var_os("HOME").and_then(non_empty) {
            return home.join(".local/share/cascade-server");
        }
        PathBuf::from("cascade-server-data")
    }
}

/// The relay's shared state: the store and the machinery around it. Cheap
/// to clone; every clone is the same relay.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    push: std::sync::OnceLock<push::PushNotifier>,
    flusher: Flusher,
    registry: Registry,
    groups: GroupLocks,
    shutdown: watch::Sender<bool>,
    connections: AtomicUsize,
    connections_idle: Notify,
    admission: listen::Admission,
    limits: Limits,
    metrics: metrics::Metrics,
    audit: std::sync::OnceLock<audit::AuditLog>,
    blobs: std::sync::OnceLock<Arc<blobs::Blobs>>,
    links: ds::link::Links,
    /// Nonces of recent organisation admin requests.
    admin_nonces: admin::AdminNonces,
    disk: std::sync::OnceLock<Arc<disk::DiskGuard>>,
    /// When this relay process started (seconds since the Unix epoch):
    /// time before it does not count towards a device's queue expiry.
    started_at: u64,
    /// A durable flush failed: the store may hold in memory what is not on
    /// disk, so the relay stops (see [`disk`]).
    store_failed: std::sync::atomic::AtomicBool,
}

/// The relay's rate limits (`ratelimit`), shared by all connections.
pub struct Limits {
    /// KeyPackage claims per (claiming device, claimed user).
    pub claims_per_user: ratelimit::Limiter<(cascade_protocol::DeviceId, cascade_protocol::UserId)>,
    /// KeyPackage claims per claiming device.
    pub claims_per_device: ratelimit::Limiter<cascade_protocol::DeviceId>,
    /// Failed enrolments per source address (an IPv6 address's /64).
    pub enrol_failures: ratelimit::Limiter<std::net::IpAddr>,
    /// Failed enrolments from all addresses together.
    pub enrol_failures_total: ratelimit::Limiter<()>,
    /// Typing indicators per (device, group).
    pub typing: ratelimit::Limiter<(cascade_protocol::DeviceId, cascade_protocol::GroupId)>,
}

/// Claims one device may make of one user's KeyPackages per
/// [`CLAIM_WINDOW`]: adding a user takes one; a device that claims more is
/// draining them.
pub const CLAIMS_PER_USER: u32 = 10;
/// Claims one device may make in all per [`CLAIM_WINDOW`] (a large group
/// made at once claims once per person).
pub const CLAIMS_PER_DEVICE: u32 = 5_000;
/// The window of the claim limits.
pub const CLAIM_WINDOW: Duration = Duration::from_secs(600);
/// Failed enrolments from one source address per [`ENROL_WINDOW`] before
/// the relay answers `429` until the window ends.
pub const ENROL_FAILURES_PER_ADDRESS: u32 = 10;
/// Failed enrolments from all addresses together per [`ENROL_WINDOW`]
/// before every enrolment gets `429` until the window ends: with many
/// addresses a guesser is still held to 28,800 guesses a day, against 2^50
/// possible short-code tokens (`docs/threat-model.md`). It makes guessing
/// stop enrolment for everyone (never messaging): that is the intended
/// failure.
pub const ENROL_FAILURES_TOTAL: u32 = 200;
/// The window of the enrolment limit.
pub const ENROL_WINDOW: Duration = Duration::from_secs(600);
/// Most keys a rate-limit table holds (beyond it new keys are refused).
pub const RATE_LIMIT_KEYS: usize = 100_000;

impl Default for Limits {
    fn default() -> Self {
        Self {
            claims_per_user: ratelimit::Limiter::new(
                CLAIMS_PER_USER,
                CLAIM_WINDOW,
                RATE_LIMIT_KEYS,
            ),
            claims_per_device: ratelimit::Limiter::new(
                CLAIMS_PER_DEVICE,
                CLAIM_WINDOW,
                RATE_LIMIT_KEYS,
            ),
            enrol_failures: ratelimit::Limiter::new(
                ENROL_FAILURES_PER_ADDRESS,
                ENROL_WINDOW,
                RATE_LIMIT_KEYS,
            ),
            enrol_failures_total: ratelimit::Limiter::new(ENROL_FAILURES_TOTAL, ENROL_WINDOW, 1),
            typing: ratelimit::Limiter::new(
                cascade_protocol::limits::TYPING_PER_WINDOW,
                Duration::from_secs(cascade_protocol::limits::TYPING_WINDOW_SECS),
                RATE_LIMIT_KEYS,
            ),
        }
    }
}

impl AppState {
    /// The state of a relay over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (shutdown, _) = watch::channel(false);
        let metrics = metrics::Metrics::default();
        Self {
            inner: Arc::new(Inner {
                flusher: Flusher::new(Arc::clone(&store), metrics.flush_seconds.clone()),
                push: std::sync::OnceLock::new(),
                store,
                registry: Registry::default(),
                groups: GroupLocks::default(),
                shutdown,
                connections: AtomicUsize::new(0),
                connections_idle: Notify::new(),
                admission: listen::Admission::default(),
                limits: Limits::default(),
                metrics,
                audit: std::sync::OnceLock::new(),
                blobs: std::sync::OnceLock::new(),
                links: ds::link::Links::default(),
                admin_nonces: admin::AdminNonces::default(),
                disk: std::sync::OnceLock::new(),
                started_at: unix_now(),
                store_failed: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Nonces of recent organisation admin requests.
    pub(crate) fn admin_nonces(&self) -> &admin::AdminNonces {
        &self.inner.admin_nonces
    }

    /// Makes every write completed before the call durable; concurrent
    /// callers share flushes.
    pub async fn flush(&self) -> Result<(), StoreError> {
        // A failure is final: a later flush that succeeds does not make the
        // writes of the failed one durable (the kernel reports a failed
        // write-back once, then forgets the pages).
        if self.has_store_failed() {
            return Err(StoreError::Backend("the store failed earlier".into()));
        }
        let flushed = self.inner.flusher.flush().await;
        if let Err(e) = &flushed {
            self.store_failed(e);
        }
        if self.has_store_failed() {
            return Err(StoreError::Backend("the store failed".into()));
        }
        flushed
    }

    /// A durable flush failed. The store (sled) refuses every write after a
    /// failed one until it is reopened, and may hold in memory what never
    /// reached the disk, so nothing more is served from it: the relay stops
    /// and its process exits non-zero for the supervisor to restart it on
    /// what is durable (see [`disk`]).
    fn store_failed(&self, error: &StoreError) {
        if !self.inner.store_failed.swap(true, Ordering::SeqCst) {
            tracing::error!(
                error = %error,
                "the store failed to write (is the disk full?): stopping, so that the relay \
                 restarts on what is durable"
            );
            self.begin_shutdown();
        }
    }

    /// Whether a durable flush failed (the relay is stopping).
    pub fn has_store_failed(&self) -> bool {
        self.inner.store_failed.load(Ordering::SeqCst)
    }

    /// Refuses writes while the data directory's disk has less than
    /// `min_free` bytes free (see [`disk`]). Call once, at start-up.
    pub fn watch_disk(&self, dir: &Path, min_free: u64) -> std::io::Result<()> {
        let guard = Arc::new(disk::DiskGuard::new(dir, min_free)?);
        let _ = self.inner.disk.set(Arc::clone(&guard));
        // Every [`disk::CHECK_EVERY`]: the free space, and a flush. Writes
        // that are not flushed at once (acknowledgements, push tokens)
        // reach the disk through sled's own background flush; the flush
        // finds a failure of those too.
        let state = self.clone();
        let mut stop = self.shutdown_signal();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(disk::CHECK_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut unreadable = false;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.wait_for(|stopping| *stopping) => return,
                }
                guard.recheck(&mut unreadable);
                if state.flush().await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    /// Expires the queues of devices away for longer than `expiry`
    /// ([`ds::expire_idle_devices`]), checking every eighth of it (at least
    /// every second, at most every 10 minutes).
    pub fn expire_queues(&self, expiry: Duration) {
        let state = self.clone();
        let mut stop = self.shutdown_signal();
        let every = (expiry / 8).clamp(Duration::from_secs(1), Duration::from_secs(600));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.wait_for(|stopping| *stopping) => return,
                }
                match ds::expire_idle_devices(&state, expiry).await {
                    Ok(0) => {}
                    Ok(groups) => tracing::info!(groups, "queues of devices away too long expired"),
                    Err(e) => tracing::warn!(error = %e, "expiring queues failed"),
                }
            }
        });
    }

    /// When this relay process started (seconds since the Unix epoch).
    pub fn started_at(&self) -> u64 {
        self.inner.started_at
    }

    /// The disk guard, when the relay watches its disk.
    pub fn disk(&self) -> Option<&disk::DiskGuard> {
        self.inner.disk.get().map(|d| &**d)
    }

    /// `Err(Unavailable)` while the disk is under its reserve: call before a
    /// request stores anything new.
    pub fn room_to_write(&self) -> Result<(), DsError> {
        match self.disk() {
            Some(disk) if disk.is_low() => {
                self.inner.metrics.limited("disk_reserve");
                Err(DsError::Unavailable {
                    retry_after_ms: disk::RETRY_AFTER_MS,
                })
            }
            _ => Ok(()),
        }
    }

    /// How many durable flushes have run since the relay started.
    pub fn flush_count(&self) -> u64 {
        self.inner.flusher.count()
    }

    /// Answers stop waiting for durable flushes: only for measuring what
    /// durability costs (`serve --unsafe-no-fsync-for-benchmarks`).
    pub fn skip_flushes_for_benchmarks(&self) {
        tracing::warn!("flushes are skipped: acknowledged writes can be lost (benchmarks only)");
        self.inner.flusher.skip_for_benchmarks();
    }

    /// The connected devices.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Sends push notifications through `gateway` for offline devices that
    /// registered a token (see [`push`]). Call once, at start-up.
    pub fn enable_push(&self, gateway: String) {
        let notifier = push::PushNotifier::start(gateway, Arc::clone(&self.inner.store));
        let _ = self.inner.push.set(notifier);
    }

    /// Notes that items were queued for these devices: the ones without a
    /// live connection get a push notification, if enabled.
    pub fn notify_offline(&self, devices: impl IntoIterator<Item = cascade_protocol::DeviceId>) {
        if let Some(push) = self.inner.push.get() {
            for d in devices {
                if !self.inner.registry.is_connected(&d) {
                    push.notify(d);
                }
            }
        }
    }

    /// The open TCP connections, counted against the connection caps.
    pub fn admission(&self) -> &listen::Admission {
        &self.inner.admission
    }

    /// The rate limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Writes admin actions to `log` from now on (see [`audit`]). Call
    /// once, at start-up.
    pub fn enable_audit(&self, log: audit::AuditLog) {
        let _ = self.inner.audit.set(log);
    }

    /// Keeps attachments' ciphertext in `blobs` (a relay without it answers
    /// `PostBlob` and `GetBlob` as unavailable).
    pub fn enable_blobs(&self, blobs: blobs::Blobs) {
        let _ = self.inner.blobs.set(Arc::new(blobs));
    }

    /// The blob store, if this relay keeps one.
    pub fn blobs(&self) -> Option<&Arc<blobs::Blobs>> {
        self.inner.blobs.get()
    }

    /// The open link sessions (`ds::link`).
    pub fn links(&self) -> &ds::link::Links {
        &self.inner.links
    }

    /// Deletes blobs posted more than `retention` ago, every hour (and
    /// once now).
    pub fn expire_blobs(&self, retention: Duration) {
        let Some(blobs) = self.blobs().cloned() else {
            return;
        };
        let mut stop = self.shutdown_signal();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(3600));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.wait_for(|stopping| *stopping) => return,
                }
                let blobs = blobs.clone();
                match tokio::task::spawn_blocking(move || blobs.expire(retention)).await {
                    Ok(0) | Err(_) => {}
                    Ok(n) => tracing::info!(blobs = n, "attachments past their retention deleted"),
                }
            }
        });
    }

    /// Records an admin action in the audit log, if there is one. A failure
    /// to write it fails the action's answer (the action is done; the admin
    /// is told the record is missing).
    pub fn audit(
        &self,
        by: &str,
        action: &str,
        subject: serde_json::Value,
    ) -> Result<(), ApiError> {
        match self.inner.audit.get() {
            Some(log) => log.record(by, action, subject).map_err(|e| {
                tracing::error!(error = %e, action, "could not write the audit log");
                ApiError::Store(StoreError::Backend(
                    "the audit log could not be written".into(),
                ))
            }),
            None => Ok(()),
        }
    }

    /// The metrics (`GET /metrics`).
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// The per-group writer locks.
    pub fn groups(&self) -> &GroupLocks {
        &self.inner.groups
    }

    /// Asks every WebSocket connection to close (code 1001).
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves once [`AppState::begin_shutdown`] was called.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Counts a WebSocket connection until the guard is dropped.
    pub(crate) fn connection_started(&self) -> ConnectionGuard {
        self.inner.connections.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard(self.clone())
    }

    /// How many WebSocket connections are open.
    pub fn open_connections(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Resolves when no WebSocket connection is open.
    pub async fn connections_closed(&self) {
        loop {
            let notified = self.inner.connections_idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open_connections() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Keeps a connection counted in [`AppState::open_connections`].
pub(crate) struct ConnectionGuard(AppState);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.inner.connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.inner.connections_idle.notify_waiters();
        }
    }
}

/// The relay's HTTP and WebSocket routes over `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/ws", get(ws::upgrade))
        .route("/metrics", get(admin::metrics))
        .route("/v1/enrol", post(enrol::enrol))
        .route("/v1/orgs/{org}", get(orgs::org_info))
        .route("/v1/orgs/{org}/revocations", get(orgs::revocations))
        .route("/v1/orgs/{org}/devices/{device}/wipe", get(wipe::fetch))
        .route("/v1/orgs/{org}/devices/{device}/wiped", post(wipe::confirm))
        .merge(admin::routes(state.clone()))
        .fallback(|| async { ApiError::NotFound("no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_HTTP_BODY_BYTES))
        .layer(axum::middleware::from_fn(guard::guard))
        // Blobs stream large bodies for as long as they keep coming: no
        // body limit or request deadline but their own (`blob_http`).
        .merge(blob_http::routes())
        .with_state(state)
}

/// A relay ready to serve.
pub struct Server {
    state: AppState,
    limits: listen::ConnectionLimits,
    tls: Option<Arc<tls::Tls>>,
}

impl Server {
    /// Opens (creating if needed) a data directory: the sled database in
    /// `db/` and the admin token (see [`admin::ensure_admin_token`]).
    pub fn open(data_dir: &Path) -> Result<(Self, AdminToken), ServerError> {
        create_private_dir(data_dir)?;
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&data_dir.join("db"))?);
        let token = admin::ensure_admin_token(data_dir, &*store)?;
        let server = Self::with_store(store);
        server.state.enable_audit(audit::AuditLog::open(data_dir)?);
        server.state.enable_blobs(blobs::Blobs::open(
            data_dir,
            blobs::DEFAULT_MAX_BLOB_BYTES,
            blobs::DEFAULT_ORG_QUOTA_BYTES,
        )?);
        Ok((server, token))
    }

    /// A relay over an existing store (which needs an admin token hash for
    /// the admin API to work).
    pub fn with_store(store: Arc<dyn Store>) -> Self {
        Self {
            state: AppState::new(store),
            limits: listen::ConnectionLimits::default(),
            tls: None,
        }
    }

    /// Serves TLS only, with this certificate (reloadable through the same
    /// [`tls::Tls`]).
    pub fn with_tls(mut self, tls: Arc<tls::Tls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The metrics, e.g. for [`tls::Tls::report_expiry`].
    pub fn metrics(&self) -> &metrics::Metrics {
        self.state.metrics()
    }

    /// Serves within these connection limits instead of the defaults.
    pub fn with_limits(mut self, limits: listen::ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The relay's state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` resolves; then closes every
    /// WebSocket connection (waiting at most [`SHUTDOWN_GRACE`]) and flushes
    /// the store.
    pub async fn run<F>(self, listener: TcpListener, shutdown: F) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let state = self.state;
        let signal_state = state.clone();
        let limits = self
            .limits
            .within_open_files(listen::raise_open_files_limit());
        tracing::info!(
            max_connections = limits.max_connections,
            max_per_address = limits.max_per_address,
            "accepting connections"
        );
        listen::serve(
            listener,
            app(state.clone()),
            self.tls.as_ref().map(|tls| tls.acceptor()),
            state.admission().clone(),
            limits,
            async move {
                // The caller's signal, or the relay's own stop (a store that
                // failed to write).
                let mut stopping = signal_state.shutdown_signal();
                tokio::select! {
                    () = shutdown => tracing::info!("shutting down"),
                    _ = stopping.wait_for(|stopping| *stopping) => {}
                }
                signal_state.begin_shutdown();
            },
            SHUTDOWN_GRACE,
        )
        .await;
        state.begin_shutdown();
        if tokio::time::timeout(SHUTDOWN_GRACE, state.connections_closed())
            .await
            .is_err()
        {
            tracing::warn!(
                open = state.open_connections(),
                "connections still open after the grace period"
            );
        }
        if state.has_store_failed() {
            return Err(ServerError::StoreFailed);
        }
        state.inner.flusher.flush_now().await?;
        tracing::info!("store flushed; stopped");
        Ok(())
    }

    /// Serves on `listener` in a background task; for tests and embedding.
    pub fn spawn(self, listener: TcpListener) -> Result<RunningServer, ServerError> {
        let addr = listener.local_addr()?;
        let state = self.state.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(listener, async move {
            // A dropped sender stops the relay too.
            let _ = stopped.await;
        }));
        Ok(RunningServer {
            addr,
            state,
            stop,
            task,
        })
    }
}

/// A relay running in a background task.
pub struct RunningServer {
    addr: SocketAddr,
    state: AppState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://<addr>/v1/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// The relay's state (its store, its connected devices).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops the relay gracefully and waits until it has flushed.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(ServerError::Io(std::io::Error::other(e))),
        }
    }
}

/// Creates a directory (and parents) readable only by the owner; one that
/// exists already is made owner-only too.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), "the data directory was open to others; made owner-only");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
