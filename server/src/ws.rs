//! The device WebSocket (`/v1/ws`): one connection loop per device.
//!
//! The loop pushes a challenge, waits (at most [`AUTH_TIMEOUT_SECS`]) for
//! `Authenticate`, then registers the device for live delivery, sends its
//! queued backlog and `QueueDrained`, and from then on answers requests in
//! order while forwarding live items. Client input never ends the connection
//! except a failed authentication, a message over [`HARD_MAX_FRAME_BYTES`]
//! (refused by the WebSocket layer; the connection is dropped) or a closed
//! socket.
//!
//! [`run_connection`] is generic over the socket, so the loop can be driven
//! without a network.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocketUpgrade};
use axum::extract::State;
use cascade_protocol::auth::NONCE_LEN;
use cascade_protocol::frames::{Bytes, Push, Request, Response, ServerFrame};
use cascade_protocol::limits::{AUTH_TIMEOUT_SECS, HARD_MAX_FRAME_BYTES};
use cascade_protocol::{decode_client_frame, encode_server_frame, ProtocolError};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use rand::RngCore;
use tokio::sync::mpsc;

use crate::ds::{self, stock_is_low, Session};
use crate::error::DsError;
use crate::fanout::Live;
use crate::AppState;

/// How many of a connection's writes may wait for their flush at once before
/// the connection stops reading requests.
pub const MAX_IN_FLIGHT: usize = 64;

/// How many live frames already waiting are written before one flush.
pub const LIVE_BATCH: usize = 64;

/// How many queued items are read from the store at a time while sending
/// the backlog.
pub const BACKLOG_PAGE: usize = 100;

/// How long one frame may take to be written to a client before the relay
/// gives up on the connection.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The WebSocket read buffer a connection starts with. Most frames are far
/// smaller; a larger frame grows the buffer as it arrives. The library's
/// default (128 KiB) made an idle connection cost about 136 KiB of relay
/// memory (`docs/benchmarks.md`, connection density).
pub const READ_BUFFER_BYTES: usize = 4096;

/// The most a connection's unsent output may hold: two frames of the
/// largest size past the library's default write buffer. A peer that does
/// not read (its pongs, answers and deliveries piling up) is disconnected
/// at this point rather than growing the relay's memory; a device reads
/// what it missed from its backlog when it comes back.
pub const MAX_WRITE_BUFFER_BYTES: usize = 128 * 1024 + 2 * HARD_MAX_FRAME_BYTES;

/// Pings and pongs a peer may send per [`CONTROL_WINDOW`] before it is
/// disconnected (close code 1008). Every ping makes the relay write a pong;
/// a device pings about twice a minute.
pub const MAX_CONTROL_FRAMES: u32 = 32;

/// The window [`MAX_CONTROL_FRAMES`] counts over.
pub const CONTROL_WINDOW: Duration = Duration::from_secs(10);

/// `GET /v1/ws`: upgrades to the device WebSocket with the protocol's size
/// limits.
pub async fn upgrade(
    State(state): State<AppState>,
    ws: WebSocketUpgrade,
) -> axum::response::Response {
    ws.max_message_size(HARD_MAX_FRAME_BYTES)
        .max_frame_size(HARD_MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| run_connection(state, socket))
}

/// Runs one device connection until it ends.
pub async fn run_connection<S>(state: AppState, socket: S)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    let _counted = state.connection_started();
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut conn = Connection {
        state,
        socket,
        nonce,
        authed: None,
        in_flight: FuturesOrdered::new(),
        unflushed: false,
        control_frames: (0, tokio::time::Instant::now()),
    };
    match conn.run().await {
        Ok(()) => {}
        Err(Ended::Socket) => tracing::debug!("connection ended by a socket error"),
        Err(Ended::SendTimeout) => tracing::info!("connection dropped: the client does not read"),
    }
    if let Some(authed) = &conn.authed {
        conn.state
            .registry()
            .unregister(&authed.session.device_id, authed.conn_id);
        // Its queue expiry counts from here (a device connected for longer
        // than the expiry is not idle).
        if let Err(e) = conn
            .state
            .store()
            .set_last_seen(&authed.session.device_id, crate::unix_now())
        {
            tracing::warn!(error = %e, "recording when a device was last seen failed");
        }
        tracing::debug!(device = %authed.session.device_id, "device disconnected");
    }
}

/// Why the loop stopped without a clean close.
enum Ended {
    /// Reading or writing the socket failed.
    Socket,
    /// A frame could not be written within [`SEND_TIMEOUT`].
    SendTimeout,
}

struct Authed {
    session: Session,
    conn_id: u64,
    live: mpsc::Receiver<Live>,
    /// Queue ids sent from the backlog; the same items may also arrive live.
    backlog_ids: HashSet<u64>,
}

/// A request's answer on its way: its id and result.
type InFlight = Pin<Box<dyn Future<Output = (u64, Result<Response, ProtocolError>)> + Send>>;

struct Connection<S> {
    state: AppState,
    socket: S,
    nonce: [u8; NONCE_LEN],
    authed: Option<Authed>,
    /// Answers not sent yet, in request order: writes waiting for their
    /// flush, and answers queued behind them.
    in_flight: FuturesOrdered<InFlight>,
    /// Frames written to the socket but not flushed: answers and live items
    /// are flushed together once nothing else is ready.
    unflushed: bool,
    /// Pings and pongs received in the current [`CONTROL_WINDOW`], and when
    /// it began.
    control_frames: (u32, tokio::time::Instant),
}

enum Event {
    AuthTimeout,
    Shutdown,
    Socket(Option<Result<Message, axum::Error>>),
    Live(Option<Live>),
    Answer((u64, Result<Response, ProtocolError>)),
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Stop,
}

async fn next_live(authed: &mut Option<Authed>) -> Option<Live> {
    match authed {
        Some(a) => a.live.recv().await,
        None => std::future::pending().await,
    }
}

impl<S> Connection<S>
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    async fn run(&mut self) -> Result<(), Ended> {
        let challenge = Push::Challenge {
            nonce: Bytes::from(self.nonce.to_vec()),
        };
        self.send(ServerFrame::Push(challenge)).await?;
        let auth_deadline = tokio::time::sleep(Duration::from_secs(AUTH_TIMEOUT_SECS));
        tokio::pin!(auth_deadline);
        let mut shutdown = self.state.shutdown_signal();
        let mut handled_since_flush = 0;
        loop {
            // What is ready now is handled first; the socket is flushed
            // before waiting (or after `LIVE_BATCH` events without a wait),
            // so answers and live items that come together leave in one
            // write.
            let ready = if handled_since_flush < LIVE_BATCH {
                self.next_event(auth_deadline.as_mut(), &mut shutdown)
                    .now_or_never()
            } else {
                None
            };
            handled_since_flush += 1;
            let event = match ready {
                Some(event) => event,
                None => {
                    handled_since_flush = 0;
                    if self.unflushed {
                        self.flush().await?;
                    }
                    self.next_event(auth_deadline.as_mut(), &mut shutdown).await
                }
            };
            let flow = match event {
                Event::AuthTimeout => {
                    self.close(close_code::POLICY, "authentication timeout")
                        .await;
                    Flow::Stop
                }
                Event::Shutdown => {
                    self.answer_in_flight().await?;
                    self.close(close_code::AWAY, "relay shutting down").await;
                    Flow::Stop
                }
                Event::Socket(None) | Event::Socket(Some(Ok(Message::Close(_)))) => Flow::Stop,
                Event::Socket(Some(Err(_))) => return Err(Ended::Socket),
                Event::Socket(Some(Ok(Message::Binary(bytes)))) => {
                    self.handle_frame(&bytes).await?
                }
                Event::Socket(Some(Ok(Message::Text(_)))) => {
                    let error = ProtocolError::Malformed {
                        reason: "text frames are not part of the protocol".into(),
                    };
                    self.send(ServerFrame::Rejected(error)).await?;
                    Flow::Continue
                }
                Event::Socket(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {
                    if self.control_frame_allowed() {
                        Flow::Continue
                    } else {
                        self.state.metrics().limited("pings");
                        tracing::info!("connection dropped: too many pings");
                        self.close(close_code::POLICY, "too many pings").await;
                        Flow::Stop
                    }
                }
                Event::Live(Some(live)) => {
                    self.forward(live).await?;
                    Flow::Continue
                }
                Event::Answer((id, result)) => {
                    self.respond(id, result).await?;
                    Flow::Continue
                }
                Event::Live(None) => {
                    // Replaced by a newer connection of the device, or too slow.
                    self.close(close_code::POLICY, "connection superseded or too slow")
                        .await;
                    Flow::Stop
                }
            };
            if let Flow::Stop = flow {
                return Ok(());
            }
        }
    }

    /// The next thing to handle (every branch is cancel-safe).
    async fn next_event(
        &mut self,
        auth_deadline: Pin<&mut tokio::time::Sleep>,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Event {
        let authed = self.authed.is_some();
        tokio::select! {
            () = auth_deadline, if !authed => Event::AuthTimeout,
            _ = shutdown.wait_for(|stop| *stop) => Event::Shutdown,
            message = self.socket.next() => Event::Socket(message),
            live = next_live(&mut self.authed), if authed => Event::Live(live),
            Some(answer) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                Event::Answer(answer)
            }
        }
    }

    /// Counts a ping or pong; false once the peer sent more than
    /// [`MAX_CONTROL_FRAMES`] in the current window.
    fn control_frame_allowed(&mut self) -> bool {
        let (count, since) = &mut self.control_frames;
        if since.elapsed() >= CONTROL_WINDOW {
            *count = 0;
            *since = tokio::time::Instant::now();
        }
        *count += 1;
        *count <= MAX_CONTROL_FRAMES
    }

    async fn send(&mut self, frame: ServerFrame) -> Result<(), Ended> {
        let message = Message::binary(encode_server_frame(&frame));
        self.unflushed = false;
        within_send_timeout(self.socket.send(message)).await
    }

    async fn respond(
        &mut self,
        id: u64,
        result: Result<Response, ProtocolError>,
    ) -> Result<(), Ended> {
        if let Err(e) = &result {
            self.state.metrics().refusal(e);
        }
        let frame = encode_server_frame(&ServerFrame::Response { id, result });
        self.feed(Message::binary(frame)).await
    }

    /// Sends every answer still on its way.
    async fn answer_in_flight(&mut self) -> Result<(), Ended> {
        while self.answer_oldest().await? {}
        Ok(())
    }

    /// Waits for the oldest answer on its way and sends it (first flushing
    /// what was written, so nothing waits behind a flush); false if there is
    /// none.
    async fn answer_oldest(&mut self) -> Result<bool, Ended> {
        if self.in_flight.is_empty() {
            return Ok(false);
        }
        if self.unflushed {
            self.flush().await?;
        }
        match self.in_flight.next().await {
            Some((id, result)) => {
                self.respond(id, result).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Sends a close frame; best effort, as the peer may be gone already.
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let close = self.socket.send(Message::Close(Some(frame)));
        let _ = tokio::time::timeout(SEND_TIMEOUT, close).await;
    }

    async fn handle_frame(&mut self, bytes: &[u8]) -> Result<Flow, Ended> {
        let frame = match decode_client_frame(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                let error = e.to_protocol_error();
                match e.request_id() {
                    Some(id) => self.respond(id, Err(error)).await?,
                    None => self.send(ServerFrame::Rejected(error)).await?,
                }
                return Ok(Flow::Continue);
            }
        };
        let id = frame.id;
        match (&self.authed, frame.req) {
            (
                None,
                Request::Authenticate {
                    device_id,
                    signature,
                },
            ) => self.authenticate(id, &device_id, &signature).await,
            (None, _) => {
                self.respond(id, Err(ProtocolError::Unauthenticated))
                    .await?;
                Ok(Flow::Continue)
            }
            (Some(authed), request) => {
                let session = authed.session.clone();
                self.state.metrics().request(&request);
                // Requests are answered in order. Writes go on while earlier
                // ones wait for their flush (so a device's pipelined
                // messages share fsyncs); a request that reads state waits
                // until they are durable.
                let overtakes = ds::may_overtake(&request);
                if !overtakes {
                    self.answer_in_flight().await?;
                }
                while self.in_flight.len() >= MAX_IN_FLIGHT {
                    self.answer_oldest().await?;
                }
                match ds::start_request(&self.state, &session, request).await {
                    ds::Handling::Answered(result) if self.in_flight.is_empty() => {
                        self.respond(id, result.map_err(|e| e.to_protocol_error()))
                            .await?;
                    }
                    handling => self.in_flight.push_back(Box::pin(async move {
                        (
                            id,
                            handling.answer().await.map_err(|e| e.to_protocol_error()),
                        )
                    })),
                }
                Ok(Flow::Continue)
            }
        }
    }

    async fn authenticate(
        &mut self,
        id: u64,
        device_id: &cascade_protocol::DeviceId,
        signature: &[u8],
    ) -> Result<Flow, Ended> {
        let session = match ds::authenticate::handle(&self.state, &self.nonce, device_id, signature)
        {
            Ok(session) => session,
            Err(e) => return self.refuse_authentication(id, device_id, e).await,
        };
        // Register before reading the backlog and the certificate: an item
        // or certificate written from now on arrives live, one written
        // before is read below (or both).
        let registration = self.state.registry().register(session.device_id);
        self.authed = Some(Authed {
            session: session.clone(),
            conn_id: registration.conn_id,
            live: registration.rx,
            backlog_ids: HashSet::new(),
        });
        let response = match ds::authenticate::authenticated(&self.state, &session) {
            Ok(response) => response,
            Err(e) => return self.refuse_authentication(id, device_id, e).await,
        };
        tracing::debug!(device = %session.device_id, "device authenticated");
        self.respond(id, Ok(response)).await?;
        if self.send_backlog(&session).await?.is_err() {
            self.close(close_code::ERROR, "internal relay error").await;
            return Ok(Flow::Stop);
        }
        self.send(ServerFrame::Push(Push::QueueDrained)).await?;
        match self.state.store().key_package_stock(&session.device_id) {
            Ok(stock) if stock_is_low(stock.stock) => {
                let low = Push::KeyPackagesLow { stock: stock.stock };
                self.send(ServerFrame::Push(low)).await?;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not read the KeyPackage stock"),
        }
        Ok(Flow::Continue)
    }

    /// Answers a failed `Authenticate` and closes the connection.
    async fn refuse_authentication(
        &mut self,
        id: u64,
        device_id: &cascade_protocol::DeviceId,
        e: DsError,
    ) -> Result<Flow, Ended> {
        if matches!(e, DsError::AuthenticationFailed) {
            tracing::info!(device = %device_id, "authentication failed");
        }
        self.respond(id, Err(e.to_protocol_error())).await?;
        self.close(close_code::POLICY, "authentication failed")
            .await;
        Ok(Flow::Stop)
    }

    /// Sends every queued item, page by page. The inner error is a store
    /// failure (logged here).
    async fn send_backlog(&mut self, session: &Session) -> Result<Result<(), ()>, Ended> {
        let mut after = None;
        let mut sent = 0u64;
        loop {
            let page = match self
                .state
                .store()
                .queue_page(&session.device_id, after, BACKLOG_PAGE)
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "could not read a device queue");
                    return Ok(Err(()));
                }
            };
            let Some(last) = page.last() else {
                self.state.metrics().backlog_items.observe(sent as f64);
                return Ok(Ok(()));
            };
            sent += page.len() as u64;
            after = Some(last.queue_id);
            // The store shows writes before they are on disk. An item read
            // here may belong to a commit whose flush is still running; were
            // the relay to crash now, that item would be gone and its seq
            // reused, and a device that had processed it would fork. So make
            // what was read durable before sending any of it: everything on
            // this page was written before this flush began.
            if let Err(e) = self.state.flush().await {
                tracing::error!(error = %e, "could not flush before sending a backlog");
                return Ok(Err(()));
            }
            for item in page {
                if let Some(authed) = &mut self.authed {
                    authed.backlog_ids.insert(item.queue_id);
                }
                let frame = encode_server_frame(&ServerFrame::Push(Push::Deliver(item)));
                self.feed(Message::binary(frame)).await?;
            }
            self.flush().await?;
        }
    }

    /// Writes a live frame and those already waiting behind it (up to
    /// [`LIVE_BATCH`]), skipping items already sent from the backlog; the
    /// loop flushes them.
    async fn forward(&mut self, live: Live) -> Result<(), Ended> {
        self.feed_live(live).await?;
        for _ in 1..LIVE_BATCH {
            let Some(authed) = &mut self.authed else {
                break;
            };
            // A closed channel is seen by the caller's next receive.
            let Ok(live) = authed.live.try_recv() else {
                break;
            };
            self.feed_live(live).await?;
        }
        Ok(())
    }

    /// Writes one live frame without flushing.
    async fn feed_live(&mut self, live: Live) -> Result<(), Ended> {
        let message = match live {
            Live::Deliver(item) => {
                if let Some(authed) = &mut self.authed {
                    if authed.backlog_ids.remove(&item.queue_id) {
                        return Ok(());
                    }
                }
                Message::Binary(item.frame())
            }
            Live::Typing(frame) => Message::Binary(frame),
            other => Message::binary(encode_server_frame(&ServerFrame::Push(other.into_push()))),
        };
        self.feed(message).await
    }

    /// Queues a frame for the socket without flushing it.
    async fn feed(&mut self, message: Message) -> Result<(), Ended> {
        self.unflushed = true;
        within_send_timeout(self.socket.feed(message)).await
    }

    /// Writes out what was fed.
    async fn flush(&mut self) -> Result<(), Ended> {
        self.unflushed = false;
        within_send_timeout(self.socket.flush()).await
    }
}

/// A socket write, given at most [`SEND_TIMEOUT`].
async fn within_send_timeout(
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Result<(), Ended> {
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ended::Socket),
        Err(_) => Err(Ended::SendTimeout),
    }
}

/// The sending half of an in-memory connection: what the device sends.
pub type ToRelay = mpsc::UnboundedSender<Result<Message, axum::Error>>;
/// The receiving half of an in-memory connection: what the relay sent.
pub type FromRelay = mpsc::UnboundedReceiver<Message>;

/// Opens a device connection to the relay of `state` over an in-memory
/// socket, for in-process tests and fuzzing: the real [`run_connection`],
/// as its own task, without a network. Dropping the sending half closes the
/// connection.
pub fn connect_in_memory(state: &AppState) -> (ToRelay, FromRelay) {
    let (to_relay, incoming) = mpsc::unbounded_channel();
    let (outgoing, from_relay) = mpsc::unbounded_channel();
    tokio::spawn(run_connection(
        state.clone(),
        memory::MemSocket { incoming, outgoing },
    ));
    (to_relay, from_relay)
}

mod memory {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use axum::extract::ws::Message;
    use futures_util::{Sink, Stream};
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

    /// The relay's end of an in-memory WebSocket.
    pub(super) struct MemSocket {
        pub incoming: UnboundedReceiver<Result<Message, axum::Error>>,
        pub outgoing: UnboundedSender<Message>,
    }

    impl Stream for MemSocket {
        type Item = Result<Message, axum::Error>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.incoming.poll_recv(cx)
        }
    }

    impl Sink<Message> for MemSocket {
        type Error = axum::Error;

        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            self.outgoing.send(item).map_err(axum::Error::new)
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cascade_protocol::frames::ClientFrame;
    use cascade_protocol::limits::PROTOCOL_VERSION;
    use cascade_protocol::{decode_server_frame, encode_client_frame, DeviceId, UserId};
    use ed25519_dalek::{Signer, SigningKey};
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

    use super::*;
    use crate::store::{EnrolmentTokenRecord, NewDevice, Org, SledStore, Store, User};

    /// The client's end: what it sends and what the relay sent.
    struct Peer {
        to_relay: UnboundedSender<Result<Message, axum::Error>>,
        from_relay: UnboundedReceiver<Message>,
    }

    impl Peer {
        async fn frame(&mut self) -> ServerFrame {
            match self.from_relay.recv().await.expect("a message") {
                Message::Binary(b) => decode_server_frame(&b).expect("a server frame"),
                other => panic!("unexpected {other:?}"),
            }
        }

        fn send(&self, id: u64, req: Request) {
            let frame = encode_client_frame(&ClientFrame {
                v: PROTOCOL_VERSION,
                id,
                req,
            });
            self.to_relay
                .send(Ok(Message::binary(frame)))
                .expect("relay reads");
        }
    }

    fn connect(state: &AppState) -> Peer {
        let (to_relay, from_relay) = connect_in_memory(state);
        Peer {
            to_relay,
            from_relay,
        }
    }

    fn relay_with_device() -> (AppState, DeviceId, SigningKey) {
        let store = SledStore::open_temporary().expect("store");
        let user_id = UserId::new("alice@north").expect("valid");
        store
            .create_org(&Org {
                org_id: user_id.org(),
                display_name: "North".into(),
                created_at: 0,
                ca_certificate: None,
            })
            .expect("org");
        store
            .create_user(&User {
                user_id: user_id.clone(),
                display_name: "Alice".into(),
                role: "Nurse".into(),
                created_at: 0,
            })
            .expect("user");
        let record = EnrolmentTokenRecord {
            user_id,
            expires_at: u64::MAX,
            used: false,
        };
        store.put_enrolment_token(&[1; 32], &record).expect("token");
        let key = SigningKey::from_bytes(&[7; 32]);
        let device = store
            .enrol_device(
                &[1; 32],
                0,
                &NewDevice {
                    device_id: DeviceId([2; 16]),
                    name: "desk".into(),
                    signature_key: Bytes::from(key.verifying_key().to_bytes().to_vec()),
                    enrolled_at: 0,
                },
            )
            .expect("enrol");
        let store: Arc<dyn Store> = Arc::new(store);
        (AppState::new(store), device.device_id, key)
    }

    #[tokio::test]
    async fn the_connection_loop_runs_without_a_network() {
        let (state, device_id, key) = relay_with_device();
        let mut peer = connect(&state);
        let ServerFrame::Push(Push::Challenge { nonce }) = peer.frame().await else {
            panic!("expected the challenge");
        };
        let signature = key.sign(&cascade_protocol::auth::challenge_payload(
            &nonce, &device_id,
        ));
        peer.send(
            1,
            Request::Authenticate {
                device_id,
                signature: Bytes::from(signature.to_bytes().to_vec()),
            },
        );
        assert!(matches!(
            peer.frame().await,
            ServerFrame::Response {
                id: 1,
                result: Ok(Response::Authenticated { .. })
            }
        ));
        assert_eq!(peer.frame().await, ServerFrame::Push(Push::QueueDrained));
        assert_eq!(
            peer.frame().await,
            ServerFrame::Push(Push::KeyPackagesLow { stock: 0 })
        );
        assert!(state.registry().is_connected(&device_id));
        peer.send(2, Request::Ping);
        assert_eq!(
            peer.frame().await,
            ServerFrame::Response {
                id: 2,
                result: Ok(Response::Pong)
            }
        );

        drop(peer);
        tokio::time::timeout(Duration::from_secs(5), state.connections_closed())
            .await
            .expect("the loop ends when the socket does");
        assert!(!state.registry().is_connected(&device_id));
    }

    #[tokio::test]
    async fn a_connection_that_does_not_authenticate_in_time_is_closed() {
        let (state, _, _) = relay_with_device();
        let mut peer = connect(&state);
        assert!(matches!(
            peer.frame().await,
            ServerFrame::Push(Push::Challenge { .. })
        ));
        let started = std::time::Instant::now();
        let closed = tokio::time::timeout(
            Duration::from_secs(AUTH_TIMEOUT_SECS + 5),
            peer.from_relay.recv(),
        )
        .await
        .expect("closed in time");
        let Some(Message::Close(Some(frame))) = closed else {
            panic!("expected a close frame, got {closed:?}");
        };
        assert_eq!(frame.code, close_code::POLICY);
        assert!(started.elapsed() >= Duration::from_secs(AUTH_TIMEOUT_SECS - 1));
    }
}
