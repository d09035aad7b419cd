//! The relay's typed errors and their one conversion to what clients see:
//! [`DsError`] becomes a [`ProtocolError`] on the WebSocket, [`ApiError`] an
//! HTTP status with an [`HttpError`] body. Store failures are logged here,
//! once, without content.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_protocol::http::HttpError;
use cascade_protocol::limits::{MAX_KEY_PACKAGE_STOCK, MAX_QUEUE_LEN};
use cascade_protocol::ProtocolError;

use crate::certificate::CertificateError;
use crate::store::StoreError;

/// Why a WebSocket request failed. Converted to a [`ProtocolError`] by
/// [`DsError::to_protocol_error`].
#[derive(Debug, thiserror::Error)]
pub enum DsError {
    /// The request needs an authenticated connection.
    #[error("not authenticated")]
    Unauthenticated,
    /// The challenge signature did not verify, or the device is unknown or
    /// revoked.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// `Authenticate` on a connection that is authenticated already.
    #[error("already authenticated")]
    AlreadyAuthenticated,
    /// The commit is not for the group's current epoch.
    #[error("wrong epoch: the group is at {current}")]
    WrongEpoch {
        /// The group's current epoch.
        current: u64,
    },
    /// The calling device is not a member of the group.
    #[error("not a member of the group")]
    NotMember,
    /// No such group.
    #[error("unknown group")]
    UnknownGroup,
    /// The group id is taken.
    #[error("group exists")]
    GroupExists,
    /// No such user.
    #[error("unknown user")]
    UnknownUser,
    /// A named device does not exist or is revoked.
    #[error("unknown device")]
    UnknownDevice,
    /// Over a limit of the protocol; `limit` is that limit.
    #[error("too large (limit {limit})")]
    TooLarge {
        /// The limit that was exceeded.
        limit: u64,
    },
    /// The organisation's attachment storage is full.
    #[error("attachment quota exceeded (limit {limit})")]
    QuotaExceeded {
        /// The quota, in octets.
        limit: u64,
    },
    /// None of the user's devices has a KeyPackage.
    #[error("no KeyPackages")]
    NoKeyPackages,
    /// The conversation's policy keeps this change for another role.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request does not make sense; the reason is a fixed text, never
    /// content.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A member device lags so far behind that the group takes nothing
    /// more; these devices hold it there.
    #[error("a member's queue is full")]
    QueueFull {
        /// The devices that stopped reading.
        devices: Vec<cascade_protocol::DeviceId>,
    },
    /// Over a rate limit; retry after this long.
    #[error("rate limited")]
    RateLimited {
        /// Milliseconds until the limit's window ends.
        retry_after_ms: u64,
        /// Which limit.
        scope: cascade_protocol::RateScope,
    },
    /// The data directory's disk is under its reserve: nothing was
    /// written (see [`crate::disk`]).
    #[error("the relay's disk is nearly full")]
    Unavailable {
        /// Milliseconds to wait before retrying.
        retry_after_ms: u64,
    },
    /// The store failed or refused (`WrongEpoch` and `QueueFull` from the
    /// store are passed on as such).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A relay task failed (a bug).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl DsError {
    /// The error the client receives. Failures of the relay itself are
    /// logged here and become [`ProtocolError::Internal`].
    pub fn to_protocol_error(&self) -> ProtocolError {
        match self {
            DsError::Unauthenticated => ProtocolError::Unauthenticated,
            DsError::AuthenticationFailed => ProtocolError::AuthenticationFailed,
            DsError::AlreadyAuthenticated => ProtocolError::Malformed {
                reason: "the connection is already authenticated".into(),
            },
            DsError::WrongEpoch { current }
            | DsError::Store(StoreError::WrongEpoch { current }) => {
                ProtocolError::WrongEpoch { current: *current }
            }
            DsError::NotMember => ProtocolError::NotMember,
            DsError::UnknownGroup => ProtocolError::UnknownGroup,
            DsError::GroupExists => ProtocolError::GroupExists,
            DsError::UnknownUser => ProtocolError::UnknownUser,
            DsError::UnknownDevice => ProtocolError::UnknownDevice,
            DsError::TooLarge { limit } => ProtocolError::TooLarge { limit: *limit },
            DsError::QuotaExceeded { limit } => ProtocolError::QuotaExceeded { limit: *limit },
            DsError::RateLimited {
                retry_after_ms,
                scope,
            } => ProtocolError::RateLimited {
                retry_after_ms: *retry_after_ms,
                scope: Some(*scope),
            },
            DsError::Unavailable { retry_after_ms } => ProtocolError::Unavailable {
                retry_after_ms: *retry_after_ms,
            },
            DsError::NoKeyPackages => ProtocolError::NoKeyPackages,
            DsError::Forbidden(reason) => ProtocolError::Forbidden {
                reason: reason.clone(),
            },
            DsError::Malformed(reason) => ProtocolError::Malformed {
                reason: (*reason).into(),
            },
            DsError::Store(StoreError::QueueFull) => ProtocolError::QueueFull {
                limit: MAX_QUEUE_LEN,
                devices: Vec::new(),
            },
            DsError::QueueFull { devices } => ProtocolError::QueueFull {
                limit: MAX_QUEUE_LEN,
                devices: devices.clone(),
            },
            DsError::Store(StoreError::StockFull) => ProtocolError::TooLarge {
                limit: u64::from(MAX_KEY_PACKAGE_STOCK),
            },
            DsError::Store(e) => {
                tracing::error!(error = %e, "store failure while handling a request");
                ProtocolError::Internal
            }
            DsError::Internal(what) => {
                tracing::error!(what, "internal failure while handling a request");
                ProtocolError::Internal
            }
        }
    }
}

/// Why an HTTP request failed. Its [`IntoResponse`] gives the status and an
/// [`HttpError`] body with a stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong admin token (`401 unauthorized`).
    #[error("missing or invalid admin token")]
    Unauthorized,
    /// An organisation route without a valid `Cascade-Org` signature (`401
    /// unauthorized`); the message says what is wrong.
    #[error("{0}")]
    OrgUnauthorized(&'static str),
    /// An organisation's admin acting for another organisation (`403
    /// forbidden`).
    #[error("an organisation's admins act only for their own organisation")]
    Forbidden,
    /// An appointed admin's key signed an act that takes the CA key.
    #[error("only the organisation's CA key may do this, not an appointed admin's key")]
    CaOnly,
    /// The enrolment token is unknown, used or expired (`401
    /// invalid_token`).
    #[error("the enrolment token is unknown, used or expired")]
    InvalidToken,
    /// The enrolment code's fingerprint is not the CA of the token's
    /// organisation (`409 fingerprint_mismatch`); the token is not spent.
    #[error("the enrolment code's fingerprint does not match the organisation's CA")]
    FingerprintMismatch,
    /// The request is invalid (`400 bad_request`); a fixed explanation.
    #[error("{0}")]
    BadRequest(&'static str),
    /// A named resource does not exist (`404 not_found`).
    #[error("{0}")]
    NotFound(&'static str),
    /// The resource exists already (`409 conflict`).
    #[error("{0}")]
    Conflict(&'static str),
    /// A certificate fails the relay's checks (`400 bad_certificate`);
    /// the message says which.
    #[error("{0}")]
    BadCertificate(#[from] CertificateError),
    /// A document's signature does not verify with the organisation's CA
    /// key (`400 bad_signature`).
    #[error("the signature does not verify with the organisation's CA key")]
    BadSignature,
    /// A device's signature does not verify with its enrolled key (`400
    /// bad_signature`).
    #[error("the signature does not verify with the device's key")]
    BadDeviceSignature,
    /// The organisation has no CA certificate, so nothing can be checked
    /// against it (`409 no_ca`).
    #[error("the organisation has no CA certificate")]
    NoCa,
    /// A CA replacement names a CA that the organisation's trust list does
    /// not announce as its successor (`409 successor_not_announced`).
    #[error("the organisation's trust list does not name this CA as its successor")]
    SuccessorNotAnnounced,
    /// Too many failed attempts from this address (`429 rate_limited`,
    /// with `Retry-After` in seconds).
    #[error("too many failed attempts; try again later")]
    RateLimited {
        /// Seconds until the limit's window ends.
        retry_after_secs: u64,
    },
    /// The body is larger than the endpoint's limit (`413
    /// payload_too_large`).
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The relay's disk is under its reserve; nothing was written (`503
    /// unavailable`, with `Retry-After` in seconds).
    #[error("the relay cannot store anything now (its disk is nearly full); try again later")]
    Unavailable {
        /// Seconds to wait before retrying.
        retry_after_secs: u64,
    },
    /// The store failed (`500 internal`).
    #[error("internal relay error")]
    Store(#[from] StoreError),
    /// A blob endpoint without a good ticket for the blob and what is done
    /// to it (`401 bad_ticket`): none, expired, or for something else.
    #[error("no valid ticket for this blob: ask for one over the WebSocket")]
    BlobTicket,
    /// An upload that does not start where the relay has got to (`409
    /// wrong_offset`): continue at the octet named.
    #[error("the upload must continue at octet {0}")]
    BlobOffset(u64),
    /// Reading or writing a file failed (`500 internal`).
    #[error("internal relay error")]
    Io(#[from] std::io::Error),
    /// Something in the relay failed (`500 internal`).
    #[error("internal relay error")]
    Internal,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized | ApiError::OrgUnauthorized(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::CaOnly => (StatusCode::FORBIDDEN, "ca_only"),
            ApiError::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::FingerprintMismatch => (StatusCode::CONFLICT, "fingerprint_mismatch"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::BadCertificate(_) => (StatusCode::BAD_REQUEST, "bad_certificate"),
            ApiError::BadSignature | ApiError::BadDeviceSignature => {
                (StatusCode::BAD_REQUEST, "bad_signature")
            }
            ApiError::NoCa => (StatusCode::CONFLICT, "no_ca"),
            ApiError::SuccessorNotAnnounced => (StatusCode::CONFLICT, "successor_not_announced"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Store(_) | ApiError::Io(_) | ApiError::Internal => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            ApiError::BlobTicket => (StatusCode::UNAUTHORIZED, "bad_ticket"),
            ApiError::BlobOffset(_) => (StatusCode::CONFLICT, "wrong_offset"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Store(e) = &self {
            tracing::error!(error = %e, "store failure while handling an HTTP request");
        }
        if let ApiError::Io(e) = &self {
            tracing::error!(error = %e, "a file operation failed while handling an HTTP request");
        }
        let (status, code) = self.status_and_code();
        let body = HttpError {
            code: code.into(),
            message: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_secs }
        | ApiError::Unavailable { retry_after_secs } = self
        {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            );
        }
        response
    }
}

/// Why the relay could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened or flushed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A file, directory or socket operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A durable flush failed while serving (the disk is full, or failing):
    /// the relay stopped so that it restarts on what is durable.
    #[error(
        "the store failed to write (is the disk full?); the relay stopped so that it \
         restarts on what is durable: free space and start it again"
    )]
    StoreFailed,
}
