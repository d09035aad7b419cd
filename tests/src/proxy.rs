//! A fault-injecting WebSocket proxy between one client and the relay.
//!
//! It forwards frames unchanged, except when told to:
//! - hold back queue deliveries to the client (`hold_deliveries`), so a test
//!   can make a member act on a stale view of the group (a real race made
//!   deterministic), then release them in order; the relay's answers and
//!   other pushes still pass, as if only the deliveries were slow;
//! - send the next `SendMessage` from the client twice (`replay_next_send`),
//!   as a network replay would.
//!
//! It also records what passed, for tests to wait on or replay elsewhere:
//! every queue item delivered to the client (`deliveries`), every error the
//! relay answered (`refusals`), and whether the relay has let go of every
//! connection (`relay_let_go`).

use std::sync::Arc;

use anyhow::Result;
use cascade_protocol::{
    decode_client_frame, decode_server_frame, ClientFrame, ProtocolError, Push, QueueItem, Request,
    ServerFrame,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify};
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[derive(Default)]
struct Control {
    hold: bool,
    replay_next_send: bool,
    replayed: usize,
    /// Every `SendMessage` payload the client sent, in order.
    sends: Vec<cascade_protocol::Bytes>,
    /// Every queue item forwarded to the client, in order.
    deliveries: Vec<QueueItem>,
    /// Every error the relay answered to the client's requests, in order.
    refusals: Vec<ProtocolError>,
    /// Connections opened to the relay, and how many of them the relay has
    /// ended.
    opened: usize,
    ended: usize,
}

/// A running proxy; clients connect to [`Proxy::url`].
pub struct Proxy {
    /// Base URL to give a client instead of the relay's.
    pub url: String,
    control: Arc<Mutex<Control>>,
    released: Arc<Notify>,
}

impl Proxy {
    /// Starts a proxy in front of the relay at `relay_url`.
    pub async fn start(relay_url: &str) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let upstream = format!("{}/v1/ws", relay_url.replace("http://", "ws://"));
        let control = Arc::new(Mutex::new(Control::default()));
        let released = Arc::new(Notify::new());
        let (c, r) = (control.clone(), released.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (c, r, upstream) = (c.clone(), r.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = serve(tcp, &upstream, c, r).await;
                });
            }
        });
        Ok(Proxy {
            url,
            control,
            released,
        })
    }

    /// Holds back `Deliver` pushes to the client until [`Proxy::release`];
    /// answers to the client's requests and other pushes still pass.
    pub async fn hold_deliveries(&self) {
        self.control.lock().await.hold = true;
    }

    /// Lets held deliveries through, in order.
    pub async fn release(&self) {
        self.control.lock().await.hold = false;
        self.released.notify_waiters();
    }

    /// Sends the client's next `SendMessage` frame to the relay twice.
    pub async fn replay_next_send(&self) {
        self.control.lock().await.replay_next_send = true;
    }

    /// Every MLS message the client posted with `SendMessage`, in order.
    pub async fn sends(&self) -> Vec<cascade_protocol::Bytes> {
        self.control.lock().await.sends.clone()
    }

    /// How many frames were replayed so far.
    pub async fn replayed(&self) -> usize {
        self.control.lock().await.replayed
    }

    /// Every queue item the relay delivered to the client so far (backlog
    /// and live), in the order forwarded.
    pub async fn deliveries(&self) -> Vec<QueueItem> {
        self.control.lock().await.deliveries.clone()
    }

    /// Every error the relay answered to the client's requests so far.
    pub async fn refusals(&self) -> Vec<ProtocolError> {
        self.control.lock().await.refusals.clone()
    }

    /// Waits until the relay has answered one of the client's requests with
    /// an error matching `pred`; returns it.
    pub async fn refused(
        &self,
        what: &str,
        pred: impl Fn(&ProtocolError) -> bool,
    ) -> Result<ProtocolError> {
        crate::poll_until(|| async {
            Ok(match self.refusals().await.into_iter().find(|e| pred(e)) {
                Some(e) => Ok(e),
                None => Err(format!("the relay never refused with {what}")),
            })
        })
        .await
    }

    /// Waits until the relay has ended every connection made through this
    /// proxy (after the client closed its side, e.g. [`Client::pause`]).
    /// The relay drops its end of a connection only after taking the device
    /// off its list of connected devices, so from then on the relay treats
    /// the device as offline (queues for it, wakes it by push).
    ///
    /// [`Client::pause`]: cascade_core::Client::pause
    pub async fn relay_let_go(&self) -> Result<()> {
        crate::poll_until(|| async {
            let c = self.control.lock().await;
            Ok(if c.opened > 0 && c.ended == c.opened {
                Ok(())
            } else {
                Err(format!(
                    "the relay still holds {} of {} connections",
                    c.opened - c.ended,
                    c.opened
                ))
            })
        })
        .await
    }
}

async fn serve(
    tcp: tokio::net::TcpStream,
    upstream: &str,
    control: Arc<Mutex<Control>>,
    released: Arc<Notify>,
) -> Result<()> {
    let client = tokio_tungstenite::accept_async(tcp).await?;
    let (server, _) = tokio_tungstenite::connect_async(upstream).await?;
    control.lock().await.opened += 1;
    let (mut c_tx, mut c_rx) = client.split();
    let (mut s_tx, mut s_rx) = server.split();
    let up_control = control.clone();
    let up = async move {
        while let Some(Ok(msg)) = c_rx.next().await {
            let replay = match &msg {
                WsMessage::Binary(b) => match decode_client_frame(b) {
                    Ok(ClientFrame {
                        req: Request::SendMessage { message, .. },
                        ..
                    }) => {
                        let mut c = up_control.lock().await;
                        c.sends.push(message);
                        let r = c.replay_next_send;
                        if r {
                            c.replay_next_send = false;
                            c.replayed += 1;
                        }
                        r
                    }
                    _ => false,
                },
                _ => false,
            };
            if replay {
                s_tx.send(msg.clone()).await?;
            }
            s_tx.send(msg).await?;
        }
        // The client is gone: tell the relay, if the client did not (an
        // error here means a close is already on its way).
        let _ = s_tx.send(WsMessage::Close(None)).await;
        anyhow::Ok(())
    };
    let down_control = control.clone();
    let down = async move {
        // Deliveries held back; everything else (answers, other pushes)
        // passes, as if only the deliveries were slow.
        let mut held: Vec<(QueueItem, WsMessage)> = Vec::new();
        loop {
            let released_now = released.notified();
            tokio::pin!(released_now);
            if !down_control.lock().await.hold {
                for (item, msg) in held.drain(..) {
                    down_control.lock().await.deliveries.push(item);
                    let _ = c_tx.send(msg).await;
                }
            }
            let msg = tokio::select! {
                msg = s_rx.next() => match msg {
                    Some(Ok(msg)) => msg,
                    _ => break,
                },
                () = &mut released_now => continue,
            };
            if let WsMessage::Binary(b) = &msg {
                match decode_server_frame(b) {
                    Ok(ServerFrame::Push(Push::Deliver(item))) => {
                        let mut c = down_control.lock().await;
                        if c.hold {
                            held.push((item, msg));
                            continue;
                        }
                        c.deliveries.push(item);
                    }
                    Ok(ServerFrame::Response { result: Err(e), .. }) => {
                        down_control.lock().await.refusals.push(e)
                    }
                    _ => {}
                }
            }
            // Keep reading until the relay ends the connection, even once
            // the client is gone.
            let _ = c_tx.send(msg).await;
        }
    };
    tokio::pin!(up, down);
    let result = tokio::select! {
        r = &mut up => {
            (&mut down).await;
            r
        }
        () = &mut down => Ok(()),
    };
    control.lock().await.ended += 1;
    result
}
