//! Errors of the client core.

use cascade_protocol::ProtocolError;

/// Everything that can go wrong in the client core. Messages carry no
/// plaintext, keys or tokens.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The local database failed.
    #[error("local storage: {0}")]
    Storage(#[from] rusqlite::Error),
    /// An MLS operation failed (the text is openmls's error, without secrets).
    #[error("MLS: {0}")]
    Mls(String),
    /// The relay answered with an error.
    #[error("relay: {0}")]
    Relay(#[from] ProtocolError),
    /// The device is not enrolled yet: call `enrol` first.
    #[error("this device is not enrolled")]
    NotEnrolled,
    /// The data directory already holds an enrolled device.
    #[error("this data directory already holds an enrolled device")]
    AlreadyEnrolled,
    /// Enrolment over HTTP failed (bad token, relay unreachable, ...).
    #[error("enrolment failed: {0}")]
    Enrolment(String),
    /// No conversation with this id.
    #[error("unknown conversation")]
    UnknownConversation,
    /// The conversation is no longer active (left or removed).
    #[error("this device is no longer a member of the conversation")]
    NotActive,
    /// An argument was invalid (empty text, too long a message, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A member's credential is not acceptable.
    #[error("credential rejected: {0}")]
    Credential(String),
    /// A certificate is not acceptable; the variant names why.
    #[error("certificate rejected: {0}")]
    Certificate(#[from] crate::identity::CertError),
    /// This device has no certificate from its organisation yet; an admin
    /// has to issue it (`cascade admin issue`).
    #[error("this device is waiting for its certificate from its organisation")]
    CertificatePending,
    /// A stored or received record did not decode.
    #[error("decode: {0}")]
    Decode(String),
    /// The client's background task has stopped.
    #[error("the client has shut down")]
    Closed,
}

impl CoreError {
    pub(crate) fn mls(e: impl std::fmt::Debug) -> Self {
        CoreError::Mls(format!("{e:?}"))
    }
}

/// Result alias of the client core.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
