//! A fault-injecting WebSocket proxy between one client and the relay.
//!
//! It forwards frames unchanged, except when told to:
//! - hold back queue deliveries to the client (`hold_deliveries`), so a test
//!   can make a member act on a stale view of the group (a real race made
//!   deterministic), then release them in order;
//! - send the next `SendMessage` from the client twice (`replay_next_send`),
//!   as a network replay would.

use std::sync::Arc;

use anyhow::Result;
use cascade_protocol::{
    decode_client_frame, decode_server_frame, ClientFrame, Push, Request, ServerFrame,
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
    /// Queue items the relay delivered to the client.
    deliveries: usize,
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

    /// Holds back `Deliver` pushes to the client until [`Proxy::release`].
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

    /// How many queue items the relay delivered through the proxy so far.
    pub async fn deliveries(&self) -> usize {
        self.control.lock().await.deliveries
    }

    /// How many frames were replayed so far.
    pub async fn replayed(&self) -> usize {
        self.control.lock().await.replayed
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
        anyhow::Ok(())
    };
    let down = async move {
        while let Some(Ok(msg)) = s_rx.next().await {
            if let WsMessage::Binary(b) = &msg {
                if let Ok(ServerFrame::Push(Push::Deliver(_))) = decode_server_frame(b) {
                    control.lock().await.deliveries += 1;
                    loop {
                        let wait = released.notified();
                        if !control.lock().await.hold {
                            break;
                        }
                        wait.await;
                    }
                }
            }
            c_tx.send(msg).await?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}
