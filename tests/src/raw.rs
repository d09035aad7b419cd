//! A raw protocol client for tests of bad input: it speaks the wire
//! protocol directly, with synthetic MLS payloads, so tests can send exactly
//! the frames a buggy or malicious client would.

use anyhow::{bail, Context, Result};
use cascade_protocol::http::{EnrolRequest, EnrolResponse};
use cascade_protocol::*;
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::Relay;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An enrolled device's keys, without any MLS state.
pub struct RawDevice {
    /// Its id.
    pub device_id: DeviceId,
    key: SigningKey,
}

impl RawDevice {
    /// Creates a user (if needed) and enrols a device for it over HTTP.
    pub async fn enrol(relay: &Relay, user: &str) -> Result<RawDevice> {
        let id = UserId::new(user)?;
        let _ = relay.admin().create_user(&id, "Raw", "Test").await;
        let token = relay.admin().issue_enrolment_token(&id, None).await?;
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let resp: EnrolResponse = reqwest::Client::new()
            .post(format!("{}/v1/enrol", relay.url))
            .json(&EnrolRequest {
                token: token.token,
                signature_key: hex::encode(key.verifying_key().as_bytes()),
                device_name: "raw".into(),
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
