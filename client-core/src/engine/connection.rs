//! The connection to the relay: where it stands (challenge, authentication,
//! catching up, ready), request ids and where each answer goes, the frames
//! waiting to be sent, and acknowledgements of processed queue items.

use std::collections::{HashMap, VecDeque};

use cascade_protocol::limits::{MAX_ACK_BATCH, PROTOCOL_VERSION};
use cascade_protocol::{auth, encode_client_frame, ClientFrame, Request};

use super::effects::Route;
use super::Me;
use crate::error::{CoreError, Result};

/// While catching up, processed items are acknowledged in batches of this
/// many (and the rest when the backlog is drained); once live, after every
/// frame. Never more than [`MAX_ACK_BATCH`] in one `Ack`, the relay's limit.
pub(crate) const ACK_BATCH_WHILE_SYNCING: usize = 256;

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No socket.
    Offline,
    /// Socket open; waiting for the relay's challenge.
    AwaitingChallenge,
    /// The challenge is signed; waiting for the answer.
    Authenticating,
    /// Authenticated; processing what was queued while offline.
    Syncing,
    /// Caught up: live.
    Ready,
}

/// The connection's state.
pub(crate) struct Connection {
    phase: Phase,
    next_request: u64,
    pending: HashMap<u64, Route>,
    transmit: VecDeque<Vec<u8>>,
    acks: Vec<u64>,
}

impl Connection {
    pub fn new() -> Self {
        Self {
            phase: Phase::Offline,
            next_request: 1,
            pending: HashMap::new(),
            transmit: VecDeque::new(),
            acks: Vec::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The socket opened.
    pub fn connected(&mut self) {
        self.reset();
        self.phase = Phase::AwaitingChallenge;
    }

    /// The socket closed. Returns the routes of requests left unanswered.
    pub fn disconnected(&mut self) -> Vec<Route> {
        let routes = self.pending.drain().map(|(_, r)| r).collect();
        self.reset();
        routes
    }

    fn reset(&mut self) {
        self.phase = Phase::Offline;
        self.pending.clear();
        self.transmit.clear();
        // Unacked items come again on the next connection.
        self.acks.clear();
    }

    /// The relay's challenge: sign it with the device key.
    pub fn challenge(&mut self, me: &Me, nonce: &[u8]) -> Result<()> {
        let device_id = me.identity.device_id;
        let payload = auth::challenge_payload(nonce, &device_id);
        let signature = openmls_traits::signatures::Signer::sign(&me.signer, &payload)
            .map_err(CoreError::mls)?;
        self.phase = Phase::Authenticating;
        self.send(
            Request::Authenticate {
                device_id,
                signature: signature.into(),
            },
            Route::Auth,
        );
        Ok(())
    }

    /// Authentication succeeded: catching up.
    pub fn authenticated(&mut self) {
        self.phase = Phase::Syncing;
    }

    /// Authentication was refused: the relay closes the connection.
    pub fn refused(&mut self) {
        self.phase = Phase::Offline;
    }

    /// The backlog is processed: live from now on.
    pub fn ready(&mut self) {
        self.phase = Phase::Ready;
    }

    /// Sends a request; its answer goes to `route`. Dropped when offline
    /// (whoever asked starts again on the next connection).
    pub fn send(&mut self, req: Request, route: Route) {
        if self.phase == Phase::Offline {
            return;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(id, route);
        self.transmit.push_back(encode_client_frame(&ClientFrame {
            v: PROTOCOL_VERSION,
            id,
            req,
        }));
    }

    /// Where the answer to request `id` goes, if it was ours.
    pub fn answered(&mut self, id: u64) -> Option<Route> {
        self.pending.remove(&id)
    }

    /// Whether a request with this route is outstanding.
    pub fn awaits(&self, f: impl Fn(&Route) -> bool) -> bool {
        self.pending.values().any(f)
    }

    /// Whether only acknowledgements are outstanding.
    pub fn only_acks_pending(&self) -> bool {
        self.acks.is_empty() && self.pending.values().all(|r| *r == Route::Ack)
    }

    /// A queue item is processed: acknowledge it.
    pub fn ack(&mut self, queue_id: u64) {
        self.acks.push(queue_id);
    }

    /// The next frame to send, acknowledgements first: while catching up in
    /// batches of [`ACK_BATCH_WHILE_SYNCING`], once live at once; never more
    /// ids in one `Ack` than the relay takes.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let due = match self.phase {
            Phase::Ready => !self.acks.is_empty(),
            Phase::Syncing => self.acks.len() >= ACK_BATCH_WHILE_SYNCING,
            _ => false,
        };
        if due {
            let n = self.acks.len().min(MAX_ACK_BATCH);
            let queue_ids: Vec<u64> = self.acks.drain(..n).collect();
            self.send(Request::Ack { queue_ids }, Route::Ack);
        }
        self.transmit.pop_front()
    }

    /// Sends every acknowledgement now (the backlog is drained), in
    /// batches within the relay's limit.
    pub fn flush_acks(&mut self) {
        while !self.acks.is_empty() {
            let n = self.acks.len().min(MAX_ACK_BATCH);
            let queue_ids: Vec<u64> = self.acks.drain(..n).collect();
            self.send(Request::Ack { queue_ids }, Route::Ack);
        }
    }
}
