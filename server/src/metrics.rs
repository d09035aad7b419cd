//! The relay's metrics, in the Prometheus text format, at `GET /metrics`
//! (with the relay operator's admin token). Counts only: no content, and no
//! identifier of an organisation, user, device or group
//! (`docs/admin-guide.md` §2.5 lists them).

use cascade_protocol::frames::Request;
use cascade_protocol::ProtocolError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A label naming a kind (of request, refusal or limit).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// The kind.
    pub kind: &'static str,
}

/// Every metric the relay keeps.
pub struct Metrics {
    registry: Registry,
    /// Requests from authenticated devices, by kind.
    pub requests: Family<Kind, Counter>,
    /// Requests answered with an error, by the error.
    pub refusals: Family<Kind, Counter>,
    /// Attempts refused by a rate limit, by limit.
    pub rate_limited: Family<Kind, Counter>,
    /// Groups whose delivery to a device was stopped, by reason.
    pub delivery_stopped: Family<Kind, Counter>,
    /// Organisation admin requests refused after their header parsed, by
    /// reason (`stale`, `bad_signature`, `replayed`).
    pub admin_refused: Family<Kind, Counter>,
    /// How long each durable flush took.
    pub flush_seconds: Histogram,
    /// How many items a device was sent from its backlog when it connected
    /// (how far behind devices are when they come back).
    pub backlog_items: Histogram,
    connections_open: Gauge,
    connections_refused: Counter,
    websockets_open: Gauge,
    devices_online: Gauge,
    /// When the TLS certificate served now expires (seconds since 1970;
    /// absent without TLS).
    pub tls_certificate_expiry: Gauge,
    disk_free: Gauge,
    disk_reserve: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cascade");
        let requests = Family::<Kind, Counter>::default();
        registry.register(
            "requests",
            "Requests from authenticated devices, by kind",
            requests.clone(),
        );
        let refusals = Family::<Kind, Counter>::default();
        registry.register(
            "refusals",
            "Requests answered with an error, by the error",
            refusals.clone(),
        );
        let rate_limited = Family::<Kind, Counter>::default();
        registry.register(
            "rate_limited",
            "Attempts refused by a rate limit, by limit",
            rate_limited.clone(),
        );
        let delivery_stopped = Family::<Kind, Counter>::default();
        registry.register(
            "delivery_stopped",
            "Groups whose delivery to a device was stopped (queue_full: it fell too far behind; expired: it was away past the queue expiry)",
            delivery_stopped.clone(),
        );
        let admin_refused = Family::<Kind, Counter>::default();
        registry.register(
            "admin_refused",
            "Organisation admin requests refused (stale: signed more than 5 minutes from the relay's time; bad_signature: not signed by the organisation's CA; replayed: a nonce seen already)",
            admin_refused.clone(),
        );
        let flush_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "store_flush_seconds",
            "Time taken by each durable store flush (fsync)",
            flush_seconds.clone(),
        );
        let backlog_items = Histogram::new(exponential_buckets(1.0, 4.0, 9));
        registry.register(
            "backlog_items",
            "Items a device was sent from its backlog when it connected",
            backlog_items.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "TCP connections open (HTTP and WebSocket)",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "TCP connections closed at once because a connection cap was reached",
            connections_refused.clone(),
        );
        let websockets_open = Gauge::default();
        registry.register(
            "websockets_open",
            "Device WebSocket connections open",
            websockets_open.clone(),
        );
        let devices_online = Gauge::default();
        registry.register(
            "devices_online",
            "Authenticated devices connected",
            devices_online.clone(),
        );
        let tls_certificate_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the TLS certificate served now expires (0 without TLS)",
            tls_certificate_expiry.clone(),
        );
        let disk_free = Gauge::default();
        registry.register(
            "disk_free_bytes",
            "Free space on the data directory's disk at the last check (every second)",
            disk_free.clone(),
        );
        let disk_reserve = Gauge::default();
        registry.register(
            "disk_reserve_bytes",
            "Free space below which new messages, groups, KeyPackages and enrolments are refused",
            disk_reserve.clone(),
        );
        Self {
            registry,
            tls_certificate_expiry,
            disk_free,
            disk_reserve,
            requests,
            refusals,
            rate_limited,
            delivery_stopped,
            admin_refused,
            flush_seconds,
            backlog_items,
            connections_open,
            connections_refused,
            websockets_open,
            devices_online,
        }
    }
}

impl Metrics {
    /// The text exposition, with the gauges read now.
    pub fn render(&self, state: &crate::AppState) -> String {
        let admission = state.admission();
        self.connections_open.set(to_i64(admission.open() as u64));
        let refused = admission.refused();
        let counted = self.connections_refused.get();
        if refused > counted {
            self.connections_refused.inc_by(refused - counted);
        }
        self.websockets_open
            .set(to_i64(state.open_connections() as u64));
        self.devices_online
            .set(to_i64(state.registry().connected().len() as u64));
        if let Some(disk) = state.disk() {
            self.disk_free.set(to_i64(disk.free_bytes()));
            self.disk_reserve.set(to_i64(disk.min_free_bytes()));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
    }

    /// Counts a request from an authenticated device.
    pub fn request(&self, request: &Request) {
        self.requests
            .get_or_create(&Kind {
                kind: request_kind(request),
            })
            .inc();
    }

    /// Counts a refusal.
    pub fn refusal(&self, error: &ProtocolError) {
        self.refusals
            .get_or_create(&Kind {
                kind: refusal_kind(error),
            })
            .inc();
    }

    /// Counts an organisation admin request refused for `reason`.
    pub fn admin_refused(&self, reason: &'static str) {
        self.admin_refused
            .get_or_create(&Kind { kind: reason })
            .inc();
    }

    /// Counts an attempt a rate limit refused.
    pub fn limited(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&Kind { kind: limit }).inc();
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The request's name in the protocol.
fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Authenticate { .. } => "Authenticate",
        Request::UploadKeyPackages { .. } => "UploadKeyPackages",
        Request::ClaimKeyPackages { .. } => "ClaimKeyPackages",
        Request::CreateGroup { .. } => "CreateGroup",
        Request::CloseGroup { .. } => "CloseGroup",
        Request::Commit(_) => "Commit",
        Request::SendMessage { .. } => "SendMessage",
        Request::Ack { .. } => "Ack",
        Request::GetGroupInfo { .. } => "GetGroupInfo",
        Request::GetUser { .. } => "GetUser",
        Request::GetTrustList { .. } => "GetTrustList",
        Request::GetRevocations { .. } => "GetRevocations",
        Request::SearchDirectory { .. } => "SearchDirectory",
        Request::RegisterPush { .. } => "RegisterPush",
        Request::Ping => "Ping",
        Request::ListGroups => "ListGroups",
        Request::Typing { .. } => "Typing",
        Request::PostBlob { .. } => "PostBlob",
        Request::GetBlob { .. } => "GetBlob",
        Request::DeleteBlob { .. } => "DeleteBlob",
        Request::PostOwnBlob { .. } => "PostOwnBlob",
        Request::LinkPut { .. } => "LinkPut",
        Request::LinkGet { .. } => "LinkGet",
    }
}

/// The error's name in the protocol.
fn refusal_kind(error: &ProtocolError) -> &'static str {
    match error {
        ProtocolError::Unauthenticated => "Unauthenticated",
        ProtocolError::AuthenticationFailed => "AuthenticationFailed",
        ProtocolError::WrongEpoch { .. } => "WrongEpoch",
        ProtocolError::NotMember => "NotMember",
        ProtocolError::UnknownGroup => "UnknownGroup",
        ProtocolError::GroupExists => "GroupExists",
        ProtocolError::UnknownUser => "UnknownUser",
        ProtocolError::UnknownDevice => "UnknownDevice",
        ProtocolError::TooLarge { .. } => "TooLarge",
        ProtocolError::QuotaExceeded { .. } => "QuotaExceeded",
        ProtocolError::QueueFull { .. } => "QueueFull",
        ProtocolError::RateLimited { .. } => "RateLimited",
        ProtocolError::Malformed { .. } => "Malformed",
        ProtocolError::UnsupportedVersion { .. } => "UnsupportedVersion",
        ProtocolError::NoKeyPackages => "NoKeyPackages",
        ProtocolError::Unavailable { .. } => "Unavailable",
        ProtocolError::Internal => "Internal",
        ProtocolError::Forbidden { .. } => "Forbidden",
    }
}
