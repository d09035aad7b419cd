//! A raw protocol client for tests of bad input: it speaks the wire
//! protocol directly, with synthetic MLS payloads, so tests can send exactly
//! the frames a buggy or malicious client would. It can also log in as a
//! real client's device ([`RawConn::login_as`]), to see the relay's own
//! answers and the device's queue.

use anyhow::{bail, Context, Result};
use cascade_protocol::http::{EnrolRequest, EnrolResponse};
use cascade_protocol::*;
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::Relay;

/// The client end of a WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An enrolled device's keys, without any MLS state.
pub struct RawDevice {
    /// Its id.
    pub device_id: DeviceId,
    key: SigningKey,
}

impl RawDevice {
    /// A device with fresh keys that no relay knows (for the load
    /// generator's baseline server, which checks no signature).
    pub fn unenrolled() -> RawDevice {
        RawDevice {
            device_id: DeviceId::random(),
            key: SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
        }
    }

    /// Like [`RawDevice::enrol`], then certified by the organisation's CA
    /// (as `cascade admin issue` does), as a device must be to take part
    /// in groups. The organisation must have been made with
    /// [`Relay::org`].
    pub async fn enrol_certified(relay: &Relay, user: &str) -> Result<RawDevice> {
        let device = Self::enrol(relay, user).await?;
        relay
            .issue_pending(UserId::new(user)?.org().as_str())
            .await?;
        Ok(device)
    }

    /// Creates a user (if needed) and enrols a device for it over HTTP
    /// (its certificate is pending).
    pub async fn enrol(relay: &Relay, user: &str) -> Result<RawDevice> {
        let org = UserId::new(user)?.org();
        let admin = relay.admin().as_org(relay.ca(org.as_str()));
        Self::enrol_by(relay, &admin, user).await
    }

    /// [`RawDevice::enrol`], by the organisation's admins `admin` (for an
    /// organisation not created with [`Relay::org`]).
    pub async fn enrol_by(
        relay: &Relay,
        admin: &cascade_admin::AdminClient,
        user: &str,
    ) -> Result<RawDevice> {
        let id = UserId::new(user)?;
        let _ = admin.create_user(&id, "Raw", "Test").await;
        let token = admin.issue_enrolment_token(&id, None).await?;
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let resp: EnrolResponse = reqwest::Client::new()
            .post(format!("{}/v1/enrol", relay.url))
            .json(&EnrolRequest {
                token: token.token,
                signature_key: hex::encode(key.verifying_key().as_bytes()),
                device_name: "raw".into(),
                ca_fingerprint: None,
            })
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(RawDevice {
            device_id: resp.device_id,
            key,
        })
    }
}

/// A raw WebSocket connection.
pub struct RawConn {
    ws: Ws,
    next_id: u64,
    /// Pushes received while waiting for responses.
    pub pushes: Vec<Push>,
    nonce: Vec<u8>,
}

impl RawConn {
    /// Connects and reads the challenge.
    pub async fn connect(relay: &Relay) -> Result<RawConn> {
        Self::connect_url(&relay.url).await
    }

    /// Connects to the relay at `relay_url` (`http://…`) and reads the
    /// challenge.
    pub async fn connect_url(relay_url: &str) -> Result<RawConn> {
        let url = format!("{}/v1/ws", relay_url.replace("http://", "ws://"));
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        Self::from_ws(ws).await
    }

    /// Takes over an open WebSocket (for a client that set up the socket
    /// itself, e.g. from another source address) and reads the challenge.
    pub async fn from_ws(ws: Ws) -> Result<RawConn> {
        let mut c = RawConn {
            ws,
            next_id: 1,
            pushes: Vec::new(),
            nonce: Vec::new(),
        };
        match c.next().await? {
            ServerFrame::Push(Push::Challenge { nonce }) => c.nonce = nonce.into_vec(),
            other => bail!("expected a challenge, got {other:?}"),
        }
        Ok(c)
    }

    /// Connects and authenticates as `device`.
    pub async fn authenticated(relay: &Relay, device: &RawDevice) -> Result<RawConn> {
        Self::authenticated_url(&relay.url, device).await
    }

    /// Connects to `relay_url` and authenticates as `device`.
    pub async fn authenticated_url(relay_url: &str, device: &RawDevice) -> Result<RawConn> {
        let mut c = Self::connect_url(relay_url).await?;
        c.authenticate(device).await?;
        Ok(c)
    }

    /// Authenticates this connection as `device`.
    pub async fn authenticate(&mut self, device: &RawDevice) -> Result<()> {
        let sig = device
            .key
            .sign(&auth::challenge_payload(&self.nonce, &device.device_id));
        let r = self
            .call(Request::Authenticate {
                device_id: device.device_id,
                signature: Bytes::from(sig.to_bytes().to_vec()),
            })
            .await?;
        if !matches!(r, Ok(Response::Authenticated { .. })) {
            bail!("authentication failed: {r:?}");
        }
        Ok(())
    }

    /// The WebSocket and the next request id, for a client that runs its
    /// own loop (the load generator). Pushes kept in `pushes` are returned
    /// too.
    pub fn into_parts(self) -> (Ws, u64, Vec<Push>) {
        (self.ws, self.next_id, self.pushes)
    }

    /// The challenge nonce of this connection.
    pub fn nonce(&self) -> &[u8] {
        &self.nonce
    }

    /// Sends raw bytes as one binary message.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.ws.send(WsMessage::Binary(bytes.into())).await?;
        Ok(())
    }

    /// Sends a text message (not allowed by the protocol).
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.ws.send(WsMessage::Text(text.into())).await?;
        Ok(())
    }

    /// The next server frame.
    pub async fn next(&mut self) -> Result<ServerFrame> {
        loop {
            let msg = tokio::time::timeout(crate::WAIT, self.ws.next())
                .await
                .context("no frame from the relay")?
                .context("connection closed")??;
            match msg {
                WsMessage::Binary(b) => return Ok(decode_server_frame(&b)?),
                WsMessage::Close(_) => bail!("connection closed"),
                _ => {}
            }
        }
    }

    /// The next frame that is not a push (pushes are kept in `pushes`).
    pub async fn next_reply(&mut self) -> Result<ServerFrame> {
        loop {
            match self.next().await? {
                ServerFrame::Push(p) => self.pushes.push(p),
                other => return Ok(other),
            }
        }
    }

    /// Sends a request and returns its answer.
    pub async fn call(&mut self, req: Request) -> Result<Result<Response, ProtocolError>> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_raw(encode_client_frame(&ClientFrame { v: 1, id, req }))
            .await?;
        match self.next_reply().await? {
            ServerFrame::Response { id: rid, result } if rid == id => Ok(result),
            other => bail!("expected the answer to {id}, got {other:?}"),
        }
    }

    /// Logs in as the enrolled device whose (closed) data directory is
    /// `data_dir`, with the device's own key: an engine opened on a copy of
    /// the directory answers the relay's challenge exactly as the device's
    /// app would, and its answer goes over this raw connection. Returns the
    /// connection and the relay's answer (typed, unlike what the app shows).
    pub async fn login_as(
        relay_url: &str,
        data_dir: &std::path::Path,
    ) -> Result<(RawConn, Result<Response, ProtocolError>)> {
        use cascade_core::{Engine, SqliteStore};
        let copy = tempfile::tempdir()?;
        crate::copy_dir(data_dir, copy.path())?;
        let mut engine = Engine::new(SqliteStore::open(
            &copy.path().join(cascade_core::client::DB_FILE),
            &crate::store_key(),
        )?)?;
        let mut conn = RawConn::connect_url(relay_url).await?;
        engine.handle_connected();
        let challenge = encode_server_frame(&ServerFrame::Push(Push::Challenge {
            nonce: Bytes::from(conn.nonce.clone()),
        }));
        engine.handle_frame(&challenge, cascade_core::client::now_ms())?;
        let answer = engine
            .poll_transmit()
            .context("the device's engine did not answer the challenge")?;
        let id = match decode_client_frame(&answer)? {
            ClientFrame {
                id,
                req: Request::Authenticate { .. },
                ..
            } => id,
            other => bail!("expected the device's Authenticate, got {other:?}"),
        };
        conn.next_id = id + 1;
        conn.send_raw(answer).await?;
        match conn.next_reply().await? {
            ServerFrame::Response { id: rid, result } if rid == id => Ok((conn, result)),
            other => bail!("expected the answer to the login, got {other:?}"),
        }
    }

    /// Reads the queue items the relay sends after authentication, up to
    /// `QueueDrained` (other pushes are kept in `pushes`). Acks nothing.
    pub async fn backlog(&mut self) -> Result<Vec<QueueItem>> {
        let mut items = Vec::new();
        loop {
            match self.next().await? {
                ServerFrame::Push(Push::Deliver(item)) => items.push(item),
                ServerFrame::Push(Push::QueueDrained) => return Ok(items),
                ServerFrame::Push(p) => self.pushes.push(p),
                other => bail!("expected the backlog, got {other:?}"),
            }
        }
    }

    /// Whether the connection is closed by the relay (within a short wait).
    pub async fn is_closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), self.ws.next()).await,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(WsMessage::Close(_))))
        )
    }
}

/// Synthetic MLS messages with valid framing headers (RFC 9420 §6).
pub mod mls {
    use cascade_protocol::GroupId;

    fn header(wire_format: u16, group: &GroupId, epoch: u64) -> Vec<u8> {
        let mut b = vec![0, 1];
        b.extend_from_slice(&wire_format.to_be_bytes());
        b.push(16);
        b.extend_from_slice(group.as_bytes());
        b.extend_from_slice(&epoch.to_be_bytes());
        b
    }

    /// A PrivateMessage carrying application content whose ciphertext is
    /// `body` (opaque to the relay).
    pub fn application_with(group: &GroupId, epoch: u64, body: &[u8]) -> Vec<u8> {
        let mut b = header(2, group, epoch);
        b.push(1);
        b.extend_from_slice(body);
        b
    }

    /// How many bytes of an [`application_with`] message precede its body.
    pub const APPLICATION_HEADER_LEN: usize = 2 + 2 + 1 + 16 + 8 + 1;

    /// A PrivateMessage carrying application content.
    pub fn application(group: &GroupId, epoch: u64) -> Vec<u8> {
        let mut b = header(2, group, epoch);
        b.push(1);
        b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        b
    }

    /// A PrivateMessage carrying a commit.
    pub fn commit(group: &GroupId, epoch: u64) -> Vec<u8> {
        let mut b = header(2, group, epoch);
        b.push(3);
        b.extend_from_slice(&[0xc0, 0xff, 0xee]);
        b
    }

    /// A GroupInfo.
    pub fn group_info() -> Vec<u8> {
        vec![0, 1, 0, 4, 1, 2, 3]
    }
}
