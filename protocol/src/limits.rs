//! Every limit of the protocol, as named constants.
//!
//! Both sides use these: the relay enforces them and answers
//! [`ProtocolError::TooLarge`](crate::ProtocolError::TooLarge) (or stop
//! delivery to a device that falls too far behind); clients check
//! them before sending so that a user gets a clear error early.

/// Version of the CBOR envelope carried in every client frame (`v`).
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest WebSocket message (one frame of this protocol) the relay decodes.
/// A larger message is answered with `TooLarge` and the connection stays open.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Largest message the relay reads off the socket at all. Anything larger is
/// a protocol violation: the relay drops the connection without answering.
pub const HARD_MAX_FRAME_BYTES: usize = 4 * MAX_FRAME_BYTES;

/// Largest single MLS message (commit, Welcome, GroupInfo, application
/// message or KeyPackage) inside a frame.
pub const MAX_MLS_MESSAGE_BYTES: usize = 512 * 1024;

/// How far (in sequence numbers) a member device may fall behind in one
/// group. A device further behind has its delivery of that group stopped
/// ([`Notice::DeliveryStopped`](crate::Notice::DeliveryStopped) with
/// [`StopReason::QueueFull`](crate::StopReason::QueueFull)) and the write goes
/// on: one device's backlog never stops its group.
pub const MAX_QUEUE_LEN: u64 = 10_000;

/// Most KeyPackages in one upload request.
pub const MAX_KEY_PACKAGE_UPLOAD: usize = 100;

/// Most single-use KeyPackages the relay keeps for one device.
pub const MAX_KEY_PACKAGE_STOCK: u32 = 200;

/// How many KeyPackages a client uploads in one batch when it replenishes.
pub const KEY_PACKAGE_BATCH: u32 = 20;

/// When a device's single-use stock falls to this many or fewer, the relay
/// pushes `KeyPackagesLow` so the device uploads a new batch.
pub const KEY_PACKAGE_LOW_WATER: u32 = 5;

/// An application message (or proposal) must be encrypted in the group's
/// current epoch or at most this many epochs before it, never in a later
/// one, and not before the latest epoch whose commit added devices (they
/// have no earlier secrets); otherwise `SendMessage` is answered
/// `WrongEpoch { current }` and the client encrypts it again. Members keep the secrets of only a few
/// past epochs (Cascade's clients five), so an older message would be
/// unreadable for everyone, and one from a "future" epoch would make them
/// think they fell out of step.
pub const MAX_MESSAGE_EPOCH_LAG: u64 = 3;

/// Most member devices in one group.
pub const MAX_GROUP_DEVICES: usize = 2_000;

/// Most users one `SendMessage` may be addressed to (its `to`).
pub const MAX_TARGET_USERS: usize = 64;

/// The largest typing indicator payload (`Typing`), in octets.
pub const MAX_TYPING_BYTES: usize = 256;

/// How many typing indicators one device may send to one group per
/// [`TYPING_WINDOW_SECS`]; past it, `RateLimited` (scope `Typing`).
pub const TYPING_PER_WINDOW: u32 = 10;

/// The window of [`TYPING_PER_WINDOW`].
pub const TYPING_WINDOW_SECS: u64 = 10;

/// The largest payload of a link session's slot (`LinkPut`), in octets.
pub const MAX_LINK_PAYLOAD: usize = 8 * 1024;

/// The longest link code, in characters (digits).
pub const MAX_LINK_CODE: usize = 16;

/// How many link sessions one user may have open at once; past it,
/// `RateLimited` (scope `Link`).
pub const LINK_SESSIONS_PER_USER: usize = 4;

/// How long a link session lasts from its offer, in seconds.
pub const LINK_TTL_SECS: u64 = 10 * 60;

/// Most queue ids in one `Ack` request.
pub const MAX_ACK_BATCH: usize = 1_000;

/// Seconds a fresh connection has to authenticate before the relay closes it.
pub const AUTH_TIMEOUT_SECS: u64 = 10;

/// Longest display name or role, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 128;

/// Default lifetime of an enrolment token, in seconds (72 hours).
pub const ENROLMENT_TOKEN_TTL_SECS: u64 = 72 * 3600;

/// Most organisations in one directory search.
pub const MAX_DIRECTORY_ORGS: usize = 50;

/// Most people in one directory answer.
pub const MAX_DIRECTORY_RESULTS: usize = 50;

/// A device certificate expiring within this many seconds (30 days) is due
/// for renewal: the relay lists the device among those waiting for a
/// certificate.
pub const RENEWAL_WINDOW_SECS: u64 = 30 * 86_400;

/// Longest push token a device may register, in bytes.
pub const MAX_PUSH_TOKEN_BYTES: usize = 4096;

/// The relay notifies a device's push gateway at most once per this many
/// seconds while the device stays offline (notifications are coalesced).
pub const PUSH_COALESCE_SECS: u64 = 30;
