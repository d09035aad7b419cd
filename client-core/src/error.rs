//! Errors of the client core.
//!
//! Every variant names a reason a caller can act on; none carries message
//! text, keys or tokens. Front ends convert [`CoreError`] into their own
//! error type in exactly one place each (the desktop shell, the FFI, the
//! CLI), using [`CoreError::code`] as the stable machine-readable name.

use cascade_protocol::{ProtocolError, UserId};

/// Everything that can go wrong in the client core.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The local database failed.
    #[error("local storage: {0}")]
    Storage(#[from] rusqlite::Error),
    /// The local database was written by a newer version of Cascade than
    /// this one: it is not opened, so nothing in it is lost.
    #[error("the device's data was written by a newer Cascade (schema {found}, this build reads up to {supported})")]
    SchemaTooNew {
        /// The schema version found on disk.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// An MLS operation failed (openmls's error, without secrets). A bug or
    /// a corrupted group state; not something the user can fix.
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
    /// Enrolment failed; the variant says why.
    #[error("enrolment failed: {0}")]
    Enrolment(#[from] EnrolmentError),
    /// The relay address may not be used (plain HTTP to another machine,
    /// not a URL, a pinned CA that is not a certificate).
    #[error("{0}")]
    Transport(#[from] crate::transport::TransportError),
    /// No conversation with this id.
    #[error("unknown conversation")]
    UnknownConversation,
    /// The conversation is no longer active (left or removed).
    #[error("this device is no longer a member of the conversation")]
    NotActive,
    /// An argument was refused; the variant says which and why.
    #[error("invalid input: {0}")]
    Invalid(#[from] InvalidInput),
    /// A member's credential is not acceptable; the variant says why.
    #[error("credential rejected: {0}")]
    Credential(#[from] CredentialError),
    /// The conversation's policy keeps this for another role.
    #[error("{0}")]
    Forbidden(#[from] crate::engine::room::Forbidden),
    /// A change by `by` (a commit, or a rename) that the conversation's
    /// policy forbids, refused.
    #[error("refused a change by {by} that the conversation's policy forbids: {why}")]
    Refused {
        /// Who made it.
        by: UserId,
        /// Why it is refused.
        why: crate::engine::room::CommitRefusal,
    },
    /// A certificate is not acceptable; the variant names why.
    #[error("certificate rejected: {0}")]
    Certificate(#[from] crate::identity::CertError),
    /// This device has no certificate from its organisation yet; an admin
    /// has to issue it (`cascade admin issue`).
    #[error("this device is waiting for its certificate from its organisation")]
    CertificatePending,
    /// A stored or received record did not decode; names what.
    #[error("could not decode {0}")]
    Decode(&'static str),
    /// The device's state of a conversation no longer matches the group's
    /// (a commit it cannot follow). It rejoins by itself.
    #[error("this device is out of step with the conversation")]
    OutOfStep,
    /// The request needs the relay and the device is not connected.
    #[error("not connected to the relay")]
    Offline,
    /// The relay did not answer in time.
    #[error("the relay did not answer in time")]
    Timeout,
    /// The client's background task has stopped.
    #[error("the client has shut down")]
    Closed,
    /// This device's organisation revoked it; everything it kept on this
    /// device was erased. Enrol again with a new code to use it.
    #[error(
        "this device was revoked by its organisation; its data on this device has been erased"
    )]
    Erased,
    /// Another Cascade program (or client) has this device's data open:
    /// two at once would both process the same messages and fork its
    /// conversations.
    #[error("this device's data is open in another Cascade program; close that one first")]
    InUse,
    /// The passphrase (or the keystore's key) does not unlock this device's
    /// data. Nothing was changed; try again. A forgotten passphrase cannot
    /// be recovered: the device is enrolled again.
    #[error("the passphrase (or key) does not unlock this device's data")]
    WrongKey,
    /// The app is locked (the organisation's idle period passed, or the
    /// person locked it): nothing that shows content is answered until it
    /// is unlocked with the device's passphrase or key
    /// ([`crate::Client::unlock`]).
    #[error("Cascade is locked; unlock it to continue")]
    Locked,
    /// The data directory cannot be used (its lock file cannot be opened).
    #[error("cannot use the data directory: {0}")]
    DataDir(std::io::Error),
    /// A backup was not written or not restored; the variant says why.
    /// Nothing was changed.
    #[error("{0}")]
    Backup(#[from] crate::backup::BackupError),
    /// Linking a device did not go ahead; the variant says why. Nothing
    /// was sent.
    #[error("{0}")]
    Link(#[from] crate::link::LinkError),
}

/// Why an argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// A message with no visible text.
    #[error("the message is empty")]
    EmptyMessage,
    /// A message over the size limit.
    #[error("the message is longer than {limit} bytes")]
    MessageTooLong {
        /// The limit, in bytes of UTF-8.
        limit: usize,
    },
    /// A conversation name that is empty or too long.
    #[error("a conversation name must have 1 to {limit} bytes")]
    ConversationName {
        /// The longest name, in bytes of UTF-8.
        limit: usize,
    },
    /// An add or remove that names nobody.
    #[error("no users given")]
    NoUsers,
    /// A directory search text over the limit.
    #[error("the search text is longer than {limit} bytes")]
    SearchTooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A push token over the limit.
    #[error("the push token is longer than {limit} bytes")]
    PushTokenTooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// No message with this id was sent by this device in the conversation.
    #[error("no such message from this device")]
    NoSuchMessage,
    /// Only a failed message can be sent again.
    #[error("only a failed message can be retried")]
    NotFailed,
    /// Only text messages can be sent again.
    #[error("only a text message can be retried")]
    NotText,
    /// The message carries no file.
    #[error("the message carries no file")]
    NotAttachment,
    /// An attachment cannot be read or written on this device.
    #[error("the file could not be read or written: {0}")]
    File(String),
    /// The user is not in the conversation.
    #[error("{0} is not in this conversation")]
    NotInConversation(UserId),
    /// A new passphrase for the device's data that is too short.
    #[error("a passphrase has at least {min} characters")]
    PassphraseTooShort {
        /// The fewest characters.
        min: usize,
    },
    /// A change of the device data's key from a passphrase to a
    /// keystore's key or back: a change keeps the kind of protection.
    #[error(
        "a new key is of the same kind as the old: a passphrase for a passphrase, \
         a keystore's key for a keystore's key"
    )]
    KeyKindChange,
    /// A message id that is not 32 hex digits.
    #[error("a message id is 32 or 64 hex digits")]
    MessageId,
    /// No message with this id in the conversation.
    #[error("no such message in this conversation")]
    UnknownMessage,
    /// A message sent in the `v1` format, before its conversation moved
    /// to MIMI content: it cannot be answered, edited or reacted to.
    #[error("this message is in the old format and cannot be answered, edited or reacted to")]
    OldMessage,
    /// A conversation created before replies, edits, deletes and
    /// reactions (its members may not all read them).
    #[error(
        "this conversation was created before replies, edits and reactions; \
         start a new one to use them"
    )]
    OldConversation,
    /// An edit of someone else's message, or a delete by someone who is
    /// neither its sender nor a conversation admin.
    #[error("only its sender (or, to delete it, a conversation admin) may change this message")]
    NotYours,
    /// The message was deleted.
    #[error("this message was deleted")]
    Deleted,
    /// A reaction that is empty, too long, or has spaces.
    #[error("a reaction is 1 to {limit} bytes with no spaces")]
    Reaction {
        /// The most bytes of UTF-8.
        limit: usize,
    },
    /// A search with no word of at least `min` characters.
    #[error("search for at least {min} characters")]
    SearchTooShort {
        /// The fewest characters of a word.
        min: usize,
    },
    /// A reaction this user has not made.
    #[error("you have not reacted with this")]
    NoSuchReaction,
    /// A disappearing timer out of range.
    #[error(
        "messages may disappear after {min} seconds at the soonest and {max} seconds at the latest"
    )]
    Timer {
        /// The shortest, in seconds.
        min: u64,
        /// The longest, in seconds.
        max: u64,
    },
    /// Demoting (or removing) the last admin among the members.
    #[error("a conversation keeps at least one admin: make someone else an admin first")]
    LastAdmin,
}

/// Why enrolment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrolmentError {
    /// The code is none of the forms of `cascade_protocol::enrolment_code`.
    #[error("the enrolment code does not read: it is 24 letters and digits (XXXX-XXXX-XXXX-XXXX-XXXX-XXXX), or a cascade://enrol link")]
    BadCode,
    /// No relay address: none given, and the code is not a link.
    #[error("no relay address: give it (--server), or use the cascade://enrol link")]
    NoServer,
    /// The data directory could not be created.
    #[error("cannot create the data directory: {0}")]
    DataDir(std::io::Error),
    /// The relay could not be reached.
    #[error("the relay is unreachable")]
    Unreachable,
    /// The relay's TLS certificate was refused (not signed by a trusted or
    /// the pinned CA, expired, for another name, ...): rustls's reason.
    #[error("the relay's TLS certificate is not trusted: {0}")]
    Tls(String),
    /// The relay refused the enrolment (spent or unknown token, ...); its
    /// reason.
    #[error("the relay refused: {0}")]
    Refused(String),
    /// The relay's answer did not decode.
    #[error("unexpected answer from the relay")]
    BadAnswer,
    /// The organisation has no CA certificate on the relay.
    #[error("the organisation has no CA certificate on the relay")]
    NoCaCertificate,
    /// The CA certificate the relay served does not match the fingerprint
    /// in the enrolment code: do not trust this relay's word.
    #[error("the organisation's CA certificate on the relay does not match the fingerprint in the enrolment code")]
    FingerprintMismatch,
    /// The CA certificate is not the organisation's the relay enrolled the
    /// device in.
    #[error("the CA certificate is not the organisation's")]
    WrongOrganisation,
}

/// Why a member's credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Not an X.509 credential.
    #[error("not an X.509 credential")]
    NotX509,
    /// The certificate chain does not decode.
    #[error("the certificate chain does not decode")]
    ChainDecode,
    /// The chain does not hold exactly one certificate.
    #[error("expected exactly one certificate")]
    NotOneCertificate,
    /// A certificate for another user, device or key than expected.
    #[error("the certificate is for another device")]
    OtherDevice,
    /// A KeyPackage whose credential names another device than the relay
    /// said it was for.
    #[error("the KeyPackage does not belong to the device it was claimed for")]
    ClaimMismatch,
    /// The device runs an older Cascade that cannot read this
    /// conversation (its leaf lacks an extension the group requires).
    #[error("the device runs an older version of Cascade that cannot read this conversation")]
    Outdated,
    /// An external commit by someone not already in the conversation.
    #[error("an external join by someone not in the conversation")]
    StrangerJoined,
    /// An external commit that removes a device other than the joiner's
    /// own old leaf.
    #[error("an external join that removes someone else")]
    JoinerRemovedOthers,
}

impl CoreError {
    pub(crate) fn mls(e: impl std::fmt::Debug) -> Self {
        CoreError::Mls(format!("{e:?}"))
    }

    /// A stable machine-readable name of the error, the same in every front
    /// end (the desktop UI, the bindings, `cascade --json`).
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Storage(_) => "storage",
            CoreError::SchemaTooNew { .. } => "schema_too_new",
            CoreError::Mls(_) => "mls",
            CoreError::Relay(_) => "relay",
            CoreError::NotEnrolled => "not_enrolled",
            CoreError::AlreadyEnrolled => "already_enrolled",
            CoreError::Enrolment(_) => "enrolment",
            CoreError::Transport(_) => "transport",
            CoreError::UnknownConversation => "unknown_conversation",
            CoreError::NotActive => "not_active",
            CoreError::Invalid(_) => "invalid",
            CoreError::Credential(_) | CoreError::Certificate(_) => "credential",
            CoreError::Forbidden(_) => "forbidden",
            CoreError::Refused { .. } => "refused",
            CoreError::CertificatePending => "certificate_pending",
            CoreError::Decode(_) => "decode",
            CoreError::OutOfStep => "out_of_step",
            CoreError::Offline => "offline",
            CoreError::Timeout => "timeout",
            CoreError::Closed => "closed",
            CoreError::Erased => "erased",
            CoreError::InUse => "in_use",
            CoreError::WrongKey => "wrong_key",
            CoreError::Locked => "locked",
            CoreError::DataDir(_) => "data_dir",
            CoreError::Backup(_) => "backup",
            CoreError::Link(_) => "link",
        }
    }
}

/// Result alias of the client core.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
