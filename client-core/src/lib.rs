//! `cascade-core`: the one client library behind every Cascade front end.
//!
//! Two layers:
//! - [`engine::Engine`], a sans-IO engine: MLS groups (openmls), credential
//!   checks, the outbox and message state, over one SQLite database
//!   ([`store::ClientStore`], implemented by [`store::SqliteStore`]). Frames, commands and time go in; frames, events and
//!   timeouts come out.
//! - [`Client`], the async layer: it owns the WebSocket to the relay,
//!   reconnects with backoff, and runs the engine in one task. Front ends
//!   (CLI, desktop, mobile bindings) use only this.

pub mod attachments;
pub mod backup;
pub mod client;
pub mod content;
pub mod credential;
pub mod engine;
pub mod error;
pub mod identity;
pub mod link;
mod lock;
pub mod store;
pub mod transport;

pub use cascade_protocol::{DeviceId, GroupId, OrgId, UserId};
pub use client::Client;
pub use content::{Body, Content, MessageId};
pub use engine::{
    Action, Answer, ConnectionState, Engine, Event, Member, MessageChange, MessageReceipts,
    Participant, ParticipantDevice, Policy, QueryId, Role, RoomChange, RoomDetails,
};
pub use error::{CoreError, CredentialError, EnrolmentError, InvalidInput, Result};
pub use store::reads::ReadMark;
pub use store::search::{SearchHit, SearchQuery};
pub use store::{
    ClientStore, Conversation, ConversationState, DeliveryState, Identity, KdfCost, Message,
    MessageVersion, Person, Protection, Quote, Reactions, SqliteStore, StoreKey,
};
