//! What the sub-machines hand back to the engine instead of acting on it:
//! requests for the relay (each with where its answer goes), events for the
//! front end, and answers to queries.

use cascade_protocol::{DeviceId, GroupId, OrgId, ProtocolError, Request, SignedDocument};

use super::Event;
use crate::store::Person;

/// Who gets the relay's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// The challenge signature.
    Auth,
    /// Our organisation's trust list; `gate`: fetched after authentication,
    /// before the backlog is processed.
    TrustList { gate: bool },
    /// An organisation's revocation list; `gate` as for the trust list.
    Revocations { org: OrgId, gate: bool },
    /// A batch of KeyPackages.
    KeyPackageUpload { with_last_resort: bool },
    /// Queue items processed.
    Ack,
    /// The groups of this device's user (asked once per device).
    Groups,
    /// An outbox operation of a conversation.
    Op { group: GroupId, op_id: i64 },
    /// A query a caller waits for.
    Query(QueryId, QueryKind),
    /// A request whose answer matters to nobody: a typing indicator, a
    /// blob's deletion.
    Forget,
}

/// What a query asked, to read its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryKind {
    Directory,
    UserDevices,
    RegisterPush,
    Blob,
    Link,
}

/// A query's token: its answer comes out of [`crate::Engine::poll_answer`]
/// with the same token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// The answer to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// People found in the directory, verified (and cached for offline
    /// search).
    People(Vec<Person>),
    /// A user's current devices.
    Devices(Vec<DeviceId>),
    /// The push token is registered (or removed).
    PushRegistered,
    /// A ticket for a blob's HTTP endpoint, and how many of its octets the
    /// relay has.
    BlobTicket {
        /// The ticket (`Authorization: Bearer <hex>`).
        token: Vec<u8>,
        /// Octets the relay has.
        offset: u64,
        /// Octets of the blob.
        size: u64,
    },
    /// A link session's slot is written.
    LinkStored,
    /// What a link session's slot holds, if it is written.
    LinkSlot(Option<Vec<u8>>),
    /// The relay refused the query.
    Refused(ProtocolError),
    /// The connection dropped before the relay answered.
    Disconnected,
}

/// Requests, events and answers produced by one step of a sub-machine.
#[derive(Default)]
pub(crate) struct Effects {
    pub requests: Vec<(Request, Route)>,
    pub events: Vec<Event>,
    pub answers: Vec<(QueryId, Answer)>,
    /// Trust lists an operation fetched for itself (an add refreshes the
    /// list before claiming), for the trust machine to take in.
    pub trust_lists: Vec<Option<SignedDocument>>,
}

impl Effects {
    /// Asks the relay; the answer goes to `route`.
    pub fn request(&mut self, req: Request, route: Route) {
        self.requests.push((req, route));
    }

    /// Tells the front end.
    pub fn event(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Tells the front end, several.
    pub fn events(&mut self, events: impl IntoIterator<Item = Event>) {
        self.events.extend(events);
    }

    /// Reports that an operation of a conversation could not be carried
    /// out.
    pub fn failed(&mut self, group_id: Option<GroupId>, reason: impl Into<String>) {
        self.events.push(Event::OperationFailed {
            group_id,
            reason: reason.into(),
        });
    }
}
