//! Test harness: a relay in-process on 127.0.0.1:0, devices provisioned
//! straight into its store, and a raw-frame WebSocket client.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use cascade_protocol::auth::challenge_payload;
use cascade_protocol::frames::{
    Bytes, ClientFrame, CommitBundle, Push, QueueItem, Request, Response, ServerFrame,
};
use cascade_protocol::http::HttpError;
use cascade_protocol::limits::PROTOCOL_VERSION;
use cascade_protocol::{
    decode_server_frame, encode_client_frame, DeviceId, GroupId, OrgId, ProtocolError, UserId,
};
use cascade_server::store::{EnrolmentTokenRecord, NewDevice, Org, StoreError, User};
use cascade_server::{RunningServer, Server};
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

/// A relay with its data directory.
pub struct Relay {
    pub server: RunningServer,
    pub admin_token: String,
    pub dir: tempfile::TempDir,
    /// The organisation CAs the harness made, by organisation.
    cas: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<HarnessCa>>>,
    /// The partner CAs each organisation pinned through [`Relay::trust`].
    pins: std::sync::Mutex<std::collections::HashMap<String, Vec<Vec<u8>>>>,
}

/// An organisation CA of the harness: it certifies the organisation's
/// devices and signs its trust list, as an admin would with `cascade admin`.
pub struct HarnessCa {
    key: rcgen::KeyPair,
    der: Vec<u8>,
    pem: String,
}

impl HarnessCa {
    fn new(org: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{org} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed");
        HarnessCa {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
        }
    }

    /// A Cascade-profile certificate (DER) for `device` of `user` with the
    /// raw Ed25519 `public_key`.
    fn certify(&self, user: &UserId, device: DeviceId, public_key: &[u8]) -> Vec<u8> {
        use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyUsagePurpose, SanType};
        struct Raw(Vec<u8>);
        impl rcgen::PublicKeyData for Raw {
            fn der_bytes(&self) -> &[u8] {
                &self.0
            }
            fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
                &rcgen::PKCS_ED25519
            }
        }
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationName, user.org().as_str());
        params
            .distinguished_name
            .push(DnType::CommonName, user.as_str());
        params.subject_alt_names = vec![
            SanType::URI(format!("urn:cascade:user:{user}").try_into().expect("uri")),
            SanType::URI(
                format!("urn:cascade:device:{device}")
                    .try_into()
                    .expect("uri"),
            ),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let issuer = Issuer::from_ca_cert_der(&self.der.clone().into(), &self.key).expect("issuer");
        params
            .signed_by(&Raw(public_key.to_vec()), &issuer)
            .expect("signed")
            .der()
            .to_vec()
    }
}

pub async fn start() -> Relay {
    start_with(cascade_server::listen::ConnectionLimits::default()).await
}

/// A relay serving within `limits`.
pub async fn start_with(limits: cascade_server::listen::ConnectionLimits) -> Relay {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, token) = Server::open(dir.path()).expect("open relay");
    let server = server.with_limits(limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    Relay {
        server: server.spawn(listener).expect("spawn"),
        admin_token: token.created.expect("a fresh data dir gets a token"),
        dir,
        cas: Default::default(),
        pins: Default::default(),
    }
}

impl Relay {
    /// Stops the relay and starts it again on the same data directory and
    /// a new port, as an operator's restart does.
    pub async fn restart(self) -> Relay {
        let Relay {
            server,
            admin_token,
            dir,
            cas,
            pins,
        } = self;
        server.shutdown().await.expect("stopped");
        let (server, _) = Server::open(dir.path()).expect("reopen relay");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Relay {
            server: server.spawn(listener).expect("spawn"),
            admin_token,
            dir,
            cas,
            pins,
        }
    }
}

/// An enrolled device: its id and signing key.
#[derive(Clone)]
pub struct TestDevice {
    pub device_id: DeviceId,
    pub user_id: UserId,
    pub key: SigningKey,
}

impl Relay {
    /// Registers `org` without a CA, as older relays allowed (straight
    /// into the store: the admin API refuses that now).
    pub fn legacy_org(&self, org: &str) {
        self.server
            .state()
            .store()
            .create_org(&cascade_server::store::Org {
                org_id: OrgId::new(org).expect("valid"),
                display_name: format!("{org} Trust"),
                created_at: 0,
                ca_certificate: None,
            })
            .expect("created");
    }

    /// Makes `org`'s admins use the CA key `key_pkcs8` (DER) with the
    /// certificate `der` from now on: to sign admin requests and certify
    /// devices.
    pub fn set_ca(&self, org: &str, key_pkcs8: &[u8], der: &[u8], pem: &str) {
        let key = rcgen::KeyPair::try_from(key_pkcs8).expect("a PKCS#8 key");
        self.cas.lock().expect("lock").insert(
            org.to_string(),
            std::sync::Arc::new(HarnessCa {
                key,
                der: der.to_vec(),
                pem: pem.to_string(),
            }),
        );
    }

    /// Registers `org` with the harness's CA for it, as the relay operator
    /// does (`POST /v1/admin/orgs`); the status and body.
    pub async fn create_org(&self, org: &str) -> (u16, Vec<u8>) {
        let pem = self.ca(org).pem.clone();
        admin(
            self,
            "/v1/admin/orgs",
            serde_json::json!({"org_id": org, "display_name": format!("{org} Trust"), "ca_certificate": pem}),
        )
        .await
    }

    /// The `Authorization` value `org`'s admins send with this request.
    pub fn org_authorization(&self, org: &str, method: &str, path: &str, body: &[u8]) -> String {
        self.org_authorization_at(org, method, path, body, cascade_server::unix_now())
    }

    /// [`Relay::org_authorization`] as if signed at `time`.
    pub fn org_authorization_at(
        &self,
        org: &str,
        method: &str,
        path: &str,
        body: &[u8],
        time: u64,
    ) -> String {
        use cascade_protocol::org_auth::OrgAuthorization;
        use rcgen::SigningKey as _;
        let org = OrgId::new(org).expect("org id");
        let nonce: [u8; 16] = rand::random();
        let message = OrgAuthorization::message(method, path, &org, None, time, &nonce, body);
        let signature = self.ca(org.as_str()).key.sign(&message).expect("signed");
        OrgAuthorization {
            org,
            admin: None,
            time,
            nonce,
            signature,
        }
        .to_header()
    }

    /// An `org` roster of appointed admins (`id`, name, key, until) with
    /// `serial`, signed by `signer`'s CA, in its JSON form.
    pub fn admin_roster(
        &self,
        signer: &str,
        org: &str,
        serial: u64,
        admins: &[(&str, &str, &SigningKey, i64)],
    ) -> Vec<u8> {
        use cascade_protocol::org_auth::{AdminEntry, AdminRoster};
        let roster = AdminRoster {
            v: 1,
            kind: AdminRoster::KIND.into(),
            org: OrgId::new(org).expect("org id"),
            serial,
            issued_at: 1_700_000_000,
            admins: admins
                .iter()
                .map(|(id, name, key, not_after)| AdminEntry {
                    id: (*id).into(),
                    name: (*name).into(),
                    key: key.verifying_key().to_bytes().to_vec(),
                    not_after: *not_after,
                })
                .collect(),
        };
        self.signed_json(signer, &roster.to_body())
    }
}

/// The `Authorization` value of appointed admin `id` of `org` signing
/// with `key` (protocol §3.2.2).
pub fn admin_authorization(
    org: &str,
    id: &str,
    key: &SigningKey,
    method: &str,
    path: &str,
    body: &[u8],
) -> String {
    use cascade_protocol::org_auth::OrgAuthorization;
    let org = OrgId::new(org).expect("org id");
    let time = cascade_server::unix_now();
    let nonce: [u8; 16] = rand::random();
    let message = OrgAuthorization::message(method, path, &org, Some(id), time, &nonce, body);
    OrgAuthorization {
        org,
        admin: Some(id.into()),
        time,
        nonce,
        signature: key.sign(&message).to_bytes().to_vec(),
    }
    .to_header()
}

impl Relay {
    /// The organisation an admin request is about (see [`admin_request`]).
    fn owner(&self, path: &str, body: Option<&[u8]>) -> String {
        let parts: Vec<&str> = path.split('?').next().unwrap_or(path).split('/').collect();
        match parts.as_slice() {
            ["", "v1", "admin", "orgs", org, ..] => return org.to_string(),
            ["", "v1", "admin", "devices", device, ..] => {
                if let Some(device) = device
                    .parse::<DeviceId>()
                    .ok()
                    .and_then(|d| self.server.state().store().get_device(&d).ok().flatten())
                {
                    return device.user_id.org().as_str().to_string();
                }
            }
            _ => {}
        }
        let user = body
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .and_then(|v| v["user_id"].as_str().map(str::to_owned));
        if let Some(org) = user.and_then(|u| u.split_once('@').map(|(_, org)| org.to_owned())) {
            if OrgId::new(org.clone()).is_ok() {
                return org;
            }
        }
        let cas = self.cas.lock().expect("lock");
        assert_eq!(
            cas.len(),
            1,
            "say which organisation signs {path}: use org_request"
        );
        cas.keys().next().cloned().expect("one")
    }

    /// The harness's CA for `org` (made on first use).
    fn ca(&self, org: &str) -> std::sync::Arc<HarnessCa> {
        let mut cas = self.cas.lock().expect("lock");
        std::sync::Arc::clone(
            cas.entry(org.to_string())
                .or_insert_with(|| std::sync::Arc::new(HarnessCa::new(org))),
        )
    }

    /// Creates org and user as needed, enrols a new device for `user` and
    /// certifies it with the organisation's CA (only certified devices take
    /// part in groups).
    pub fn device(&self, user: &str) -> TestDevice {
        let device = self.device_uncertified(user);
        let ca = self.ca(device.user_id.org().as_str());
        let certificate = ca.certify(
            &device.user_id,
            device.device_id,
            &device.key.verifying_key().to_bytes(),
        );
        self.server
            .state()
            .store()
            .set_device_certificate(&device.device_id, &certificate)
            .expect("certificate stored");
        device
    }

    /// Makes `a` and `b` pin each other's CA in their signed trust lists,
    /// as their admins would to let their staff talk.
    pub fn trust(&self, a: &str, b: &str) {
        self.pin(a, b);
        self.pin(b, a);
    }

    /// `org` pins `partner`'s CA in its signed trust list (one way).
    pub fn pin(&self, org: &str, partner: &str) {
        {
            let partner_der = self.ca(partner).der.clone();
            let anchors = {
                let mut pins = self.pins.lock().expect("lock");
                let list = pins.entry(org.to_string()).or_default();
                if !list.contains(&partner_der) {
                    list.push(partner_der);
                }
                list.clone()
            };
            #[derive(serde::Serialize)]
            struct Body {
                v: u8,
                org: String,
                serial: u64,
                issued_at: i64,
                anchors: Vec<serde_bytes::ByteBuf>,
            }
            let mut body = Vec::new();
            ciborium::into_writer(
                &Body {
                    v: 1,
                    org: org.to_string(),
                    serial: anchors.len() as u64,
                    issued_at: 0,
                    anchors: anchors
                        .into_iter()
                        .map(serde_bytes::ByteBuf::from)
                        .collect(),
                },
                &mut body,
            )
            .expect("CBOR");
            let signature = {
                use rcgen::SigningKey as _;
                self.ca(org).key.sign(&body).expect("signed")
            };
            self.server
                .state()
                .store()
                .put_trust_list(
                    &cascade_protocol::OrgId::new(org).expect("org id"),
                    &cascade_server::store::TrustList {
                        body: Bytes::from(body),
                        signature: Bytes::from(signature),
                        published_at: 0,
                        co_signature: None,
                    },
                )
                .expect("trust list stored");
        }
    }

    /// An order to wipe `device` of `org` as `signer`'s CA signs it (so a
    /// forgery when `signer` is not `org`), in its JSON form.
    pub fn wipe_order(&self, org: &str, device: DeviceId, signer: &str) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Order {
            v: u8,
            kind: &'static str,
            org: String,
            device: DeviceId,
            issued_at: i64,
        }
        let mut body = Vec::new();
        ciborium::into_writer(
            &Order {
                v: 1,
                kind: "wipe",
                org: org.to_owned(),
                device,
                issued_at: 1_700_000_000,
            },
            &mut body,
        )
        .expect("CBOR");
        self.signed_json(signer, &body)
    }

    /// `body` signed by `signer`'s CA, as a signed document's JSON form.
    pub fn signed_json(&self, signer: &str, body: &[u8]) -> Vec<u8> {
        use base64::Engine as _;
        let signature = {
            use rcgen::SigningKey as _;
            self.ca(signer).key.sign(body).expect("signed")
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        serde_json::to_vec(
            &serde_json::json!({"body": b64.encode(body), "signature": b64.encode(signature)}),
        )
        .expect("JSON")
    }

    /// Like [`Relay::device`] without the certificate: issuance pending.
    pub fn device_uncertified(&self, user: &str) -> TestDevice {
        let store = self.server.state().store();
        let user_id = UserId::new(user).expect("valid user id");
        let ca = self.ca(user_id.org().as_str());
        match store.create_org(&Org {
            org_id: user_id.org(),
            display_name: "Org".into(),
            created_at: 0,
            ca_certificate: Some(Bytes::from(ca.der.clone())),
        }) {
            Ok(()) | Err(StoreError::AlreadyExists) => {}
            Err(e) => panic!("create org: {e}"),
        }
        match store.create_user(&User {
            user_id: user_id.clone(),
            display_name: user.into(),
            role: "Nurse".into(),
            created_at: 0,
        }) {
            Ok(()) | Err(StoreError::AlreadyExists) => {}
            Err(e) => panic!("create user: {e}"),
        }
        let token: [u8; 32] = rand::random();
        store
            .put_enrolment_token(
                &token,
                &EnrolmentTokenRecord {
                    user_id: user_id.clone(),
                    expires_at: u64::MAX,
                    used: false,
                },
            )
            .expect("token");
        let key = SigningKey::from_bytes(&rand::random());
        let device = store
            .enrol_device(
                &token,
                0,
                &NewDevice {
                    device_id: DeviceId::random(),
                    name: "test".into(),
                    signature_key: Bytes::from(key.verifying_key().to_bytes().to_vec()),
                    enrolled_at: 0,
                },
            )
            .expect("enrol");
        TestDevice {
            device_id: device.device_id,
            user_id,
            key,
        }
    }

    /// Connects and authenticates `device`, reading its backlog up to
    /// `QueueDrained`.
    pub async fn online(&self, device: &TestDevice) -> (Client, Vec<QueueItem>) {
        let mut client = Client::connect(&self.server.ws_url()).await;
        let response = client.authenticate(device).await;
        assert!(
            matches!(response, Ok(Response::Authenticated { .. })),
            "{response:?}"
        );
        let backlog = client.drain_backlog().await;
        (client, backlog)
    }

    /// Like [`Relay::online`] for a device with nothing queued and no
    /// KeyPackages: also reads the `KeyPackagesLow { stock: 0 }` push that
    /// follows `QueueDrained`, so the next frame is a live one.
    pub async fn online_idle(&self, device: &TestDevice) -> Client {
        let (mut client, backlog) = self.online(device).await;
        assert!(backlog.is_empty(), "unexpected backlog {backlog:?}");
        assert_eq!(client.push().await, Push::KeyPackagesLow { stock: 0 });
        client
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw-frame client.
pub struct Client {
    pub ws: Ws,
    pub nonce: Vec<u8>,
    next_id: u64,
    /// Pushes received while waiting for a response.
    pushes: VecDeque<Push>,
}

impl Client {
    /// Connects and reads the challenge.
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let mut client = Client {
            ws,
            nonce: Vec::new(),
            next_id: 1,
            pushes: VecDeque::new(),
        };
        match client.frame().await {
            ServerFrame::Push(Push::Challenge { nonce }) => client.nonce = nonce.into_vec(),
            other => panic!("expected the challenge first, got {other:?}"),
        }
        client
    }

    /// The next message from the relay (panics on timeout or close).
    pub async fn message(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("timed out waiting for the relay")
            .expect("the connection closed")
            .expect("a socket error")
    }

    /// The next frame from the relay.
    pub async fn frame(&mut self) -> ServerFrame {
        loop {
            match self.message().await {
                Message::Binary(b) => return decode_server_frame(&b).expect("a server frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// Waits for the relay to close the connection; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for the close")
            {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends raw bytes as one binary message.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    /// Sends a request and returns its id without waiting.
    pub async fn send(&mut self, req: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = ClientFrame {
            v: PROTOCOL_VERSION,
            id,
            req,
        };
        self.send_raw(encode_client_frame(&frame)).await;
        id
    }

    /// Waits for the response to request `id`, keeping pushes for later.
    pub async fn response(&mut self, id: u64) -> Result<Response, ProtocolError> {
        loop {
            match self.frame().await {
                ServerFrame::Response { id: got, result } => {
                    assert_eq!(got, id, "responses come in request order");
                    return result;
                }
                ServerFrame::Push(push) => self.pushes.push_back(push),
                ServerFrame::Rejected(e) => panic!("unexpected rejection {e:?}"),
            }
        }
    }

    /// Sends a request and waits for its response.
    pub async fn request(&mut self, req: Request) -> Result<Response, ProtocolError> {
        let id = self.send(req).await;
        self.response(id).await
    }

    /// The next push (buffered ones first).
    pub async fn push(&mut self) -> Push {
        if let Some(push) = self.pushes.pop_front() {
            return push;
        }
        match self.frame().await {
            ServerFrame::Push(push) => push,
            other => panic!("expected a push, got {other:?}"),
        }
    }

    /// The next pushed queue item.
    pub async fn delivery(&mut self) -> QueueItem {
        match self.push().await {
            Push::Deliver(item) => item,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    /// Asserts nothing arrives for a short while.
    ///
    /// That something does *not* arrive can only be shown by listening for
    /// a while; there is no event to wait for. The relay offers live items
    /// and pushes before it answers the request that caused them, so one
    /// that was going to come is already on its way over loopback: 200 ms
    /// is ample, and short enough to keep the suite fast.
    pub async fn assert_quiet(&mut self) {
        assert!(self.pushes.is_empty(), "buffered pushes: {:?}", self.pushes);
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), self.ws.next()).await {
            panic!("expected silence, got {m:?}");
        }
    }

    /// Asserts nothing arrives for `quiet` (nothing buffered either); see
    /// [`Client::assert_quiet`] for why this listens rather than waits.
    pub async fn assert_quiet_for(&mut self, quiet: Duration) {
        assert!(self.pushes.is_empty(), "buffered pushes: {:?}", self.pushes);
        if let Ok(m) = tokio::time::timeout(quiet, self.ws.next()).await {
            panic!("expected silence, got {m:?}");
        }
    }

    /// Waits at most `within` for the connection to end (a close frame, the
    /// end of the stream or a socket error), skipping anything before it.
    /// Returns the close code, if the relay sent one.
    pub async fn ends_within(&mut self, within: Duration) -> Option<u16> {
        let ended = async {
            loop {
                match self.ws.next().await {
                    None | Some(Err(_)) => return None,
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
                    Some(Ok(_)) => continue,
                }
            }
        };
        tokio::time::timeout(within, ended)
            .await
            .unwrap_or_else(|_| panic!("the connection is still open after {within:?}"))
    }

    /// Signs the challenge as `device`.
    pub async fn authenticate(&mut self, device: &TestDevice) -> Result<Response, ProtocolError> {
        let signature = device
            .key
            .sign(&challenge_payload(&self.nonce, &device.device_id));
        self.request(Request::Authenticate {
            device_id: device.device_id,
            signature: Bytes::from(signature.to_bytes().to_vec()),
        })
        .await
    }

    /// Reads queue items up to `QueueDrained`.
    pub async fn drain_backlog(&mut self) -> Vec<QueueItem> {
        let mut items = Vec::new();
        loop {
            match self.push().await {
                Push::Deliver(item) => items.push(item),
                Push::QueueDrained => return items,
                other => panic!("unexpected push in the backlog: {other:?}"),
            }
        }
    }

    pub async fn create_group(&mut self, group: GroupId) {
        let response = self
            .request(Request::CreateGroup {
                group_id: group,
                group_info: group_info(),
            })
            .await;
        assert_eq!(response, Ok(Response::GroupCreated));
    }

    pub async fn commit(&mut self, bundle: CommitBundle) -> Result<Response, ProtocolError> {
        self.request(Request::Commit(bundle)).await
    }

    pub async fn send_message(
        &mut self,
        group: GroupId,
        epoch: u64,
        body: &[u8],
    ) -> Result<Response, ProtocolError> {
        self.request(Request::SendMessage {
            group_id: group,
            message: private_message(group, epoch, body),
            to: vec![],
        })
        .await
    }

    pub async fn ack(&mut self, ids: Vec<u64>) {
        let response = self.request(Request::Ack { queue_ids: ids }).await;
        assert_eq!(response, Ok(Response::Acked));
    }
}

fn header(wire_format: u8, group: GroupId, epoch: u64) -> Vec<u8> {
    let mut out = vec![0, 1, 0, wire_format, 16];
    out.extend_from_slice(group.as_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out
}

/// An MLS PrivateMessage with application content (synthetic ciphertext).
pub fn private_message(group: GroupId, epoch: u64, body: &[u8]) -> Bytes {
    let mut out = header(2, group, epoch);
    out.push(1);
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// An MLS PrivateMessage with proposal content (synthetic ciphertext).
pub fn proposal_message(group: GroupId, epoch: u64) -> Bytes {
    let mut out = header(2, group, epoch);
    out.push(2);
    out.extend_from_slice(b"proposal");
    Bytes::from(out)
}

/// An MLS PublicMessage commit from member leaf 0.
pub fn commit_message(group: GroupId, epoch: u64) -> Bytes {
    let mut out = header(1, group, epoch);
    out.extend_from_slice(&[1, 0, 0, 0, 0, 0, 3]);
    out.extend_from_slice(b"commit body");
    Bytes::from(out)
}

/// An MLS PublicMessage external commit (sender new_member_commit).
pub fn external_commit_message(group: GroupId, epoch: u64) -> Bytes {
    let mut out = header(1, group, epoch);
    out.extend_from_slice(&[4, 0, 3]);
    out.extend_from_slice(b"external commit body");
    Bytes::from(out)
}

pub fn group_info() -> Bytes {
    Bytes::from(vec![0, 1, 0, 4, 0xaa])
}

pub fn welcome() -> Bytes {
    Bytes::from(vec![0, 1, 0, 3, 0xbb])
}

pub fn key_package(n: u8) -> Bytes {
    Bytes::from(vec![0, 1, 0, 5, n])
}

/// A commit bundle at `epoch` adding and removing devices.
pub fn bundle(
    group: GroupId,
    epoch: u64,
    added: &[&TestDevice],
    removed: &[&TestDevice],
) -> CommitBundle {
    CommitBundle {
        group_id: group,
        epoch,
        commit: commit_message(group, epoch),
        welcome: (!added.is_empty()).then(welcome),
        group_info: group_info(),
        added: added.iter().map(|d| d.device_id).collect(),
        removed: removed.iter().map(|d| d.device_id).collect(),
    }
}

// --- Plain HTTP ---

/// One HTTP/1.1 request on a fresh connection; returns status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, Vec<u8>) {
    let header = bearer.map(|token| format!("Bearer {token}"));
    http_authorized(addr, method, path, header.as_deref(), body).await
}

/// [`http`] with any `Authorization` header value.
pub async fn http_authorized(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n");
    if let Some(value) = authorization {
        head.push_str(&format!("Authorization: {value}\r\n"));
    }
    let body = body.unwrap_or_default();
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).await.expect("write");
    // The relay may answer (413) before reading a large body.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let (headers, body) = response.split_at(split + 4);
    let headers = String::from_utf8_lossy(headers).to_ascii_lowercase();
    let body = if headers.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_vec()
    };
    (status, body)
}

pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size");
        let size = usize::from_str_radix(
            std::str::from_utf8(&body[..line_end]).expect("utf8").trim(),
            16,
        )
        .expect("hex size");
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
}

pub async fn post(relay: &Relay, path: &str, bearer: Option<&str>, body: Value) -> (u16, Vec<u8>) {
    let bytes = serde_json::to_vec(&body).expect("json");
    http(relay.server.addr(), "POST", path, bearer, Some(&bytes)).await
}

/// A `PUT` with a JSON body.
pub async fn put_json(
    relay: &Relay,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> (u16, Vec<u8>) {
    let bytes = serde_json::to_vec(&body).expect("json");
    http(relay.server.addr(), "PUT", path, bearer, Some(&bytes)).await
}

/// An admin `POST` with the authority it needs ([`admin_request`]).
pub async fn admin(relay: &Relay, path: &str, body: Value) -> (u16, Vec<u8>) {
    let bytes = serde_json::to_vec(&body).expect("json");
    admin_request(relay, "POST", path, Some(&bytes)).await
}

/// An admin request with the authority it needs: the relay operator's
/// token to create organisations, otherwise signed by the organisation the
/// request is about (named in the path, the owner of the device in the
/// path, or the organisation of the body's `user_id`), as its admins would
/// sign it; the only organisation the harness knows when the request names
/// none it can read.
pub async fn admin_request(
    relay: &Relay,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> (u16, Vec<u8>) {
    if path == "/v1/admin/orgs" {
        return http(
            relay.server.addr(),
            method,
            path,
            Some(&relay.admin_token),
            body,
        )
        .await;
    }
    let org = relay.owner(path, body);
    org_request(relay, &org, method, path, body).await
}

/// An admin request signed by `org`'s CA key (`Authorization:
/// Cascade-Org`, protocol §3.3).
pub async fn org_request(
    relay: &Relay,
    org: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> (u16, Vec<u8>) {
    let header = relay.org_authorization(org, method, path, body.unwrap_or_default());
    http_authorized(relay.server.addr(), method, path, Some(&header), body).await
}

pub fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<HttpError>(body)
        .unwrap_or_else(|_| panic!("an HttpError body: {}", String::from_utf8_lossy(body)))
        .code
}
