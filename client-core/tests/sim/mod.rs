//! A deterministic network of engines around a simulated relay, for the
//! engine's tests (quinn's `Pair` is the model).
//!
//! [`Sim`] holds real [`Engine`]s over real SQLite files, and a relay that
//! follows DESIGN.md's delivery rules: one commit per epoch (else
//! `WrongEpoch`), the roster changed only by accepted commits, per-device
//! queues kept until acknowledged (at most `MAX_ACK_BATCH` ids per `Ack`),
//! items of a group in sequence order, the trust gate's lists, KeyPackage
//! claims. Nothing moves unless the test moves it: each device has a link
//! with a queue each way, and a test (or the seeded random test) decides
//! which frame is handled next, when time passes, and when a device drops
//! its connection or crashes. The real relay is tested end to end in
//! `cascade-tests`; this one exists to make every interleaving reachable
//! and repeatable.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;

use cascade_admin::OrgCa;
use cascade_core::identity::DeviceClaims;
use cascade_core::store::{SqliteStore, StoreKey};
use cascade_core::{Answer, ConversationState, Engine, Event, GroupId, QueryId};
use cascade_protocol::limits::{
    KEY_PACKAGE_LOW_WATER, MAX_ACK_BATCH, MAX_QUEUE_LEN, PROTOCOL_VERSION,
};
use cascade_protocol::mls_header::{framing_header, SenderType};
use cascade_protocol::*;

/// The key every simulated device's store is encrypted with.
pub const STORE_KEY: [u8; 32] = [7; 32];

/// The simulation's start: 2023-11-14, inside every certificate's
/// validity.
pub const T0: u64 = 1_700_000_000_000;

/// A device of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct D(pub usize);

/// One direction of a device's link, in flight.
#[derive(Default)]
struct Link {
    /// Client frames on their way to the relay.
    up: VecDeque<Vec<u8>>,
    /// Server frames on their way to the device.
    down: VecDeque<Vec<u8>>,
    /// The relay authenticated this connection.
    authed: bool,
    /// The relay has sent the backlog and `QueueDrained`: items go out live.
    live: bool,
    nonce: Vec<u8>,
}

struct Device {
    name: String,
    user: UserId,
    id: DeviceId,
    path: PathBuf,
    engine: Option<Engine>,
    link: Option<Link>,
    events: Vec<Event>,
    answers: Vec<(QueryId, Answer)>,
}

/// What the relay keeps per device.
struct RDevice {
    user: UserId,
    public_key: Vec<u8>,
    cert: Option<Vec<u8>>,
    revoked: bool,
    kps: VecDeque<Bytes>,
    last_resort: Option<Bytes>,
    queue: BTreeMap<u64, QueueItem>,
}

/// What the relay keeps per group.
pub struct RGroup {
    /// The current epoch.
    pub epoch: u64,
    /// The last sequence number.
    pub seq: u64,
    /// Member devices.
    pub roster: BTreeSet<DeviceId>,
    group_info: Bytes,
    /// The epoch of the latest commit that added devices.
    readable_from: u64,
}

/// An application message the relay accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The group.
    pub group: GroupId,
    /// Its sequence number.
    pub seq: u64,
    /// The device that sent it.
    pub sender: DeviceId,
    /// The devices it was queued for.
    pub recipients: BTreeSet<DeviceId>,
}

/// The simulated relay.
#[derive(Default)]
pub struct Relay {
    devices: BTreeMap<DeviceId, RDevice>,
    /// Groups by id.
    pub groups: BTreeMap<GroupId, RGroup>,
    trust_lists: BTreeMap<OrgId, SignedDocument>,
    revocations: BTreeMap<OrgId, SignedDocument>,
    next_qid: u64,
    /// Every application message accepted, in order.
    pub accepted: Vec<Accepted>,
    /// Every `Ack` request's size (for tests of the limit).
    pub ack_sizes: Vec<usize>,
    /// Requests answered with an error, for the record.
    pub refused: Vec<(DeviceId, ProtocolError)>,
    /// Every typing indicator relayed: from, the group, the payload.
    pub typing: Vec<(DeviceId, GroupId, Bytes)>,
}

/// Picks requests (for a fault to apply to).
pub type Which = fn(&Request) -> bool;

/// The network.
pub struct Sim {
    /// Now, in ms since the Unix epoch.
    pub now: u64,
    /// The relay.
    pub relay: Relay,
    devices: Vec<Device>,
    cas: BTreeMap<OrgId, OrgCa>,
    trust: BTreeMap<OrgId, (u64, Vec<OrgId>)>,
    revoked: BTreeMap<OrgId, (u64, Vec<DeviceId>)>,
    dir: tempfile::TempDir,
    /// Answers the relay gives instead of the real one, once each: the
    /// next request of this kind from this device gets this.
    overrides: Vec<(D, Which, Result<Response, ProtocolError>)>,
    /// Drop the relay's next answer to a request of this kind from this
    /// device (the request is carried out; the answer is lost).
    lose_answer: Vec<(D, Which)>,
}

fn ca_for(org: &OrgId) -> OrgCa {
    OrgCa::generate(org, &format!("{org} CA"), (T0 / 1000) as i64 - 86_400, 30).expect("CA")
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    /// An empty network at [`T0`].
    pub fn new() -> Sim {
        Sim {
            now: T0,
            relay: Relay {
                next_qid: 1,
                ..Relay::default()
            },
            devices: Vec::new(),
            cas: BTreeMap::new(),
            trust: BTreeMap::new(),
            revoked: BTreeMap::new(),
            dir: tempfile::tempdir().expect("tmp"),
            overrides: Vec::new(),
            lose_answer: Vec::new(),
        }
    }

    /// An organisation's CA (made on first use).
    pub fn ca(&mut self, org: &str) -> &OrgCa {
        let org = OrgId::new(org).expect("valid org");
        self.cas.entry(org.clone()).or_insert_with(|| ca_for(&org))
    }

    /// Enrols a device of `user` (certified by its organisation's CA) and
    /// connects it; returns it once online.
    pub fn device(&mut self, user: &str, name: &str) -> D {
        let d = self.enrol(user, name);
        self.certify(d);
        self.connect(d);
        self.settle();
        d
    }

    /// Enrols a device without certifying or connecting it.
    pub fn enrol(&mut self, user: &str, name: &str) -> D {
        let user = UserId::new(user).expect("valid user");
        let org = user.org();
        let anchor = self.ca(org.as_str()).cert_der().to_vec();
        let path = self.dir.path().join(format!("{}.db", self.devices.len()));
        let mut engine =
            Engine::new(SqliteStore::open(&path, &StoreKey::key(STORE_KEY)).expect("store"))
                .expect("engine");
        let public_key = engine.begin_enrolment().expect("keys");
        let id = DeviceId::random();
        engine
            .complete_enrolment(
                "http://relay.sim",
                None,
                http::EnrolResponse {
                    device_id: id,
                    org_id: org,
                    user_id: user.clone(),
                    display_name: name.into(),
                    role: "Tester".into(),
                },
                &anchor,
            )
            .expect("enrolled");
        self.relay.devices.insert(
            id,
            RDevice {
                user: user.clone(),
                public_key,
                cert: None,
                revoked: false,
                kps: VecDeque::new(),
                last_resort: None,
                queue: BTreeMap::new(),
            },
        );
        self.devices.push(Device {
            name: name.into(),
            user,
            id,
            path,
            engine: Some(engine),
            link: None,
            events: Vec::new(),
            answers: Vec::new(),
        });
        D(self.devices.len() - 1)
    }

    /// The organisation's CA issues the device's certificate (valid `days`
    /// from now); the relay keeps it and pushes it if the device is online.
    pub fn certify_for(&mut self, d: D, days: i64) {
        let (user, id, name) = {
            let dev = &self.devices[d.0];
            (dev.user.clone(), dev.id, dev.name.clone())
        };
        let key = self.relay.devices[&id].public_key.clone();
        let now = (self.now / 1000) as i64;
        let cert = self
            .ca(user.org().as_str())
            .issue_device(
                &DeviceClaims {
                    user,
                    device: id,
                    display_name: name,
                    role: "Tester".into(),
                },
                &key,
                now,
                days,
            )
            .expect("issued");
        self.relay.devices.get_mut(&id).expect("enrolled").cert = Some(cert.clone());
        self.push(
            id,
            Push::CertificateIssued {
                certificate: cert.into(),
            },
        );
    }

    /// Certifies for 30 days.
    pub fn certify(&mut self, d: D) {
        self.certify_for(d, 30);
    }

    /// Takes in a device whose database was written elsewhere (a fixture):
    /// the relay learns its key, user and certificate from it.
    pub fn adopt(&mut self, name: &str, path: PathBuf) -> D {
        let engine =
            Engine::new(SqliteStore::open(&path, &StoreKey::key(STORE_KEY)).expect("store"))
                .expect("engine");
        let identity = engine.identity().cloned().expect("enrolled");
        self.relay.devices.insert(
            identity.device_id,
            RDevice {
                user: identity.user_id.clone(),
                public_key: identity.signature_key.clone(),
                cert: identity.certificate.clone().map(|c| c.into_vec()),
                revoked: false,
                kps: VecDeque::new(),
                last_resort: None,
                queue: BTreeMap::new(),
            },
        );
        self.devices.push(Device {
            name: name.into(),
            user: identity.user_id,
            id: identity.device_id,
            path,
            engine: Some(engine),
            link: None,
            events: Vec::new(),
            answers: Vec::new(),
        });
        D(self.devices.len() - 1)
    }

    /// The relay takes in a group that exists elsewhere (a fixture).
    pub fn adopt_group(&mut self, g: GroupId, epoch: u64, seq: u64, roster: &[D]) {
        let roster = roster.iter().map(|d| self.id(*d)).collect();
        self.relay.groups.insert(
            g,
            RGroup {
                epoch,
                seq,
                roster,
                group_info: Bytes::new(),
                readable_from: 0,
            },
        );
    }

    /// A forger's CA issues the device's certificate in the name of the
    /// device's organisation (the relay serves it as if genuine).
    pub fn certify_with(&mut self, d: D, forger: &OrgCa) {
        let (user, id, name) = {
            let dev = &self.devices[d.0];
            (dev.user.clone(), dev.id, dev.name.clone())
        };
        let key = self.relay.devices[&id].public_key.clone();
        let cert = forger
            .issue_device(
                &DeviceClaims {
                    user,
                    device: id,
                    display_name: name,
                    role: "Tester".into(),
                },
                &key,
                (self.now / 1000) as i64,
                30,
            )
            .expect("issued");
        self.relay.devices.get_mut(&id).expect("enrolled").cert = Some(cert);
    }

    /// Enrols a device whose own anchor is `ca` (a forger's, for a device
    /// that believes in it), certified by it, and connects it.
    pub fn device_under(&mut self, user: &str, name: &str, ca: &OrgCa) -> D {
        let user_id = UserId::new(user).expect("valid user");
        let path = self.dir.path().join(format!("{}.db", self.devices.len()));
        let mut engine =
            Engine::new(SqliteStore::open(&path, &StoreKey::key(STORE_KEY)).expect("store"))
                .expect("engine");
        let public_key = engine.begin_enrolment().expect("keys");
        let id = DeviceId::random();
        engine
            .complete_enrolment(
                "http://relay.sim",
                None,
                http::EnrolResponse {
                    device_id: id,
                    org_id: user_id.org(),
                    user_id: user_id.clone(),
                    display_name: name.into(),
                    role: "Tester".into(),
                },
                ca.cert_der(),
            )
            .expect("enrolled");
        self.relay.devices.insert(
            id,
            RDevice {
                user: user_id.clone(),
                public_key,
                cert: None,
                revoked: false,
                kps: VecDeque::new(),
                last_resort: None,
                queue: BTreeMap::new(),
            },
        );
        self.devices.push(Device {
            name: name.into(),
            user: user_id,
            id,
            path,
            engine: Some(engine),
            link: None,
            events: Vec::new(),
            answers: Vec::new(),
        });
        let d = D(self.devices.len() - 1);
        self.certify_with(d, ca);
        self.connect(d);
        self.settle();
        d
    }

    /// The relay serves this document as `org`'s trust list (a relay
    /// that tampers, or replays an old one) and tells `org`'s devices.
    pub fn serve_trust_list(&mut self, org: &str, doc: SignedDocument) {
        let org_id = OrgId::new(org).expect("valid");
        self.relay.trust_lists.insert(org_id.clone(), doc);
        for id in self.org_devices(&org_id) {
            self.push(
                id,
                Push::TrustListUpdated {
                    org_id: org_id.clone(),
                },
            );
        }
    }

    /// The relay serves this document as `org`'s revocation list and tells
    /// every device.
    pub fn serve_revocations(&mut self, org: &str, doc: SignedDocument) {
        let org_id = OrgId::new(org).expect("valid");
        self.relay.revocations.insert(org_id.clone(), doc);
        let all: Vec<DeviceId> = self.relay.devices.keys().copied().collect();
        for other in all {
            self.push(
                other,
                Push::RevocationsUpdated {
                    org_id: org_id.clone(),
                },
            );
        }
    }

    /// The relay stops serving `org`'s revocation list (a relay that lags,
    /// or hides it from some devices).
    pub fn relay_forget_revocations(&mut self, org: &str) {
        self.relay
            .revocations
            .remove(&OrgId::new(org).expect("valid"));
    }

    /// `org`'s CA signs a revocation list of these devices with `serial`
    /// (the relay is not told to refuse them: a relay that lags behind, or
    /// colludes).
    pub fn revocation_list(&mut self, org: &str, devices: &[D], serial: u64) -> SignedDocument {
        let ids: Vec<DeviceId> = devices.iter().map(|d| self.id(*d)).collect();
        let now = (self.now / 1000) as i64;
        self.ca(org)
            .sign_revocations(&ids, serial, now)
            .expect("signed")
    }

    /// `org`'s CA signs a trust list pinning `partners` with `serial`.
    pub fn trust_list(&mut self, org: &str, partners: &[&str], serial: u64) -> SignedDocument {
        let ders: Vec<Vec<u8>> = partners
            .iter()
            .map(|p| self.ca(p).cert_der().to_vec())
            .collect();
        let now = (self.now / 1000) as i64;
        self.ca(org)
            .sign_trust_list(&ders, serial, now)
            .expect("signed")
    }

    /// A device written by another MLS implementation: the relay knows its
    /// user and key, the organisation's CA certifies it (returned, DER), and
    /// it has no engine here; the test builds its KeyPackages itself.
    pub fn foreign_device(&mut self, user: &str, public_key: Vec<u8>) -> (DeviceId, Vec<u8>) {
        let user = UserId::new(user).expect("valid user");
        let id = DeviceId::random();
        let now = (self.now / 1000) as i64;
        let cert = self
            .ca(user.org().as_str())
            .issue_device(
                &DeviceClaims {
                    user: user.clone(),
                    device: id,
                    display_name: "Peer".into(),
                    role: "Tester".into(),
                },
                &public_key,
                now,
                30,
            )
            .expect("issued");
        self.relay.devices.insert(
            id,
            RDevice {
                user,
                public_key,
                cert: Some(cert.clone()),
                revoked: false,
                kps: VecDeque::new(),
                last_resort: None,
                queue: BTreeMap::new(),
            },
        );
        (id, cert)
    }

    /// The relay holds these single-use KeyPackages for a device.
    pub fn put_key_packages(&mut self, id: DeviceId, kps: Vec<Bytes>) {
        self.relay.devices.get_mut(&id).expect("known").kps = kps.into();
    }

    /// Items queued at the relay for a device (one without an engine).
    pub fn queued_for(&self, id: DeviceId) -> Vec<QueueItem> {
        self.relay.devices[&id].queue.values().cloned().collect()
    }

    /// The device's single-use KeyPackages at the relay are used up (only
    /// the last-resort one is left).
    pub fn use_up_key_packages(&mut self, d: D) {
        let id = self.devices[d.0].id;
        self.relay.devices.get_mut(&id).expect("known").kps.clear();
    }

    /// Single-use KeyPackages the relay holds for the device.
    pub fn key_package_stock(&self, d: D) -> usize {
        self.relay.devices[&self.devices[d.0].id].kps.len()
    }

    // ----- the devices ------------------------------------------------------

    /// The device's engine (panics if crashed).
    pub fn engine(&mut self, d: D) -> &mut Engine {
        self.devices[d.0]
            .engine
            .as_mut()
            .expect("the device is running")
    }

    /// The device's id.
    pub fn id(&self, d: D) -> DeviceId {
        self.devices[d.0].id
    }

    /// The device's user.
    pub fn user(&self, d: D) -> UserId {
        self.devices[d.0].user.clone()
    }

    /// Every device.
    pub fn all(&self) -> Vec<D> {
        (0..self.devices.len()).map(D).collect()
    }

    /// Events the device produced since the last call.
    pub fn events(&mut self, d: D) -> Vec<Event> {
        self.pump(d);
        std::mem::take(&mut self.devices[d.0].events)
    }

    /// Answers the device got since the last call.
    pub fn answers(&mut self, d: D) -> Vec<(QueryId, Answer)> {
        self.pump(d);
        std::mem::take(&mut self.devices[d.0].answers)
    }

    /// Whether the device runs and is connected.
    pub fn is_connected(&self, d: D) -> bool {
        self.devices[d.0].link.is_some()
    }

    /// Whether the device runs.
    pub fn is_running(&self, d: D) -> bool {
        self.devices[d.0].engine.is_some()
    }

    /// Opens a connection: the relay sends its challenge.
    pub fn connect(&mut self, d: D) {
        if self.devices[d.0].link.is_some() {
            return;
        }
        let nonce: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        let mut link = Link {
            nonce: nonce.clone(),
            ..Link::default()
        };
        link.down
            .push_back(encode_server_frame(&ServerFrame::Push(Push::Challenge {
                nonce: nonce.into(),
            })));
        self.devices[d.0].link = Some(link);
        self.engine(d).handle_connected();
        self.pump(d);
    }

    /// Drops the connection: frames in flight are lost.
    pub fn disconnect(&mut self, d: D) {
        if self.devices[d.0].link.take().is_some() {
            if let Some(e) = self.devices[d.0].engine.as_mut() {
                e.handle_disconnected();
            }
            self.pump(d);
        }
    }

    /// Kills the device: its engine is dropped mid-work (what SQLite
    /// committed stays), its connection with it.
    pub fn crash(&mut self, d: D) {
        self.devices[d.0].link = None;
        self.devices[d.0].engine = None;
    }

    /// Starts a crashed device again from its database.
    pub fn restart(&mut self, d: D) {
        if self.devices[d.0].engine.is_none() {
            let store = SqliteStore::open(&self.devices[d.0].path, &StoreKey::key(STORE_KEY))
                .expect("reopen");
            self.devices[d.0].engine = Some(Engine::new(store).expect("engine"));
        }
    }

    /// The device's database file.
    pub fn path(&self, d: D) -> PathBuf {
        self.devices[d.0].path.clone()
    }

    /// Takes the device's outputs: frames go onto its link (or are dropped
    /// when offline), events and answers are kept for the test.
    fn pump(&mut self, d: D) {
        let dev = &mut self.devices[d.0];
        let Some(engine) = dev.engine.as_mut() else {
            return;
        };
        while let Some(f) = engine.poll_transmit() {
            if let Some(link) = dev.link.as_mut() {
                link.up.push_back(f);
            }
        }
        while let Some(e) = engine.poll_event() {
            match &e {
                Event::ConversationUpdated(g) => tracing::debug!(
                    device = ?d,
                    group = %g,
                    state = ?engine.conversation(g).ok().map(|c| c.state),
                    "sim sees a conversation change"
                ),
                Event::OperationFailed { group_id, reason } => {
                    tracing::debug!(device = ?d, group = ?group_id, reason, "sim sees a failure")
                }
                _ => {}
            }
            dev.events.push(e);
        }
        dev.answers
            .extend(std::iter::from_fn(|| engine.poll_answer()));
    }

    // ----- moving frames -----------------------------------------------------

    /// Whether a frame is in flight on the device's link, either way.
    pub fn in_flight(&self, d: D) -> bool {
        self.devices[d.0]
            .link
            .as_ref()
            .is_some_and(|l| !l.up.is_empty() || !l.down.is_empty())
    }

    /// The client frames waiting for the relay on this link, decoded.
    pub fn pending_up(&mut self, d: D) -> Vec<ClientFrame> {
        self.pump(d);
        self.devices[d.0]
            .link
            .as_ref()
            .map(|l| {
                l.up.iter()
                    .map(|b| decode_client_frame(b).expect("valid frame"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The relay handles the next frame from the device. Returns whether
    /// there was one.
    pub fn step_up(&mut self, d: D) -> bool {
        self.pump(d);
        let Some(frame) = self.devices[d.0]
            .link
            .as_mut()
            .and_then(|l| l.up.pop_front())
        else {
            return false;
        };
        let frame = decode_client_frame(&frame).expect("engines send valid frames");
        self.relay_handle(d, frame);
        true
    }

    /// The device handles the next frame from the relay. Returns whether
    /// there was one.
    pub fn step_down(&mut self, d: D) -> bool {
        let Some(frame) = self.devices[d.0]
            .link
            .as_mut()
            .and_then(|l| l.down.pop_front())
        else {
            return false;
        };
        let now = self.now;
        if let Ok(ServerFrame::Push(Push::Deliver(item))) = decode_server_frame(&frame) {
            tracing::debug!(device = ?d, group = %item.group_id, seq = item.seq, kind = ?item.kind, "sim delivers");
        }
        if let Some(e) = self.devices[d.0].engine.as_mut() {
            if let Err(err) = e.handle_frame(&frame, now) {
                panic!(
                    "device {} failed to handle a frame: {err}",
                    self.devices[d.0].name
                );
            }
        }
        self.pump(d);
        true
    }

    /// The device handles up to `n` frames from the relay together, as the
    /// client does with a burst (one transaction). Returns how many.
    pub fn step_down_batch(&mut self, d: D, n: usize) -> usize {
        let Some(link) = self.devices[d.0].link.as_mut() else {
            return 0;
        };
        let take = n.min(link.down.len());
        let frames: Vec<Vec<u8>> = link.down.drain(..take).collect();
        if frames.is_empty() {
            return 0;
        }
        let now = self.now;
        if let Some(e) = self.devices[d.0].engine.as_mut() {
            if let Err(err) = e.handle_frames(frames.iter().map(|f| f.as_slice()), now) {
                panic!(
                    "device {} failed to handle frames: {err}",
                    self.devices[d.0].name
                );
            }
        }
        self.pump(d);
        take
    }

    /// Moves every frame until none is in flight (relay side first, device
    /// by device in order). Returns how many were moved.
    pub fn run(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut any = false;
            for i in 0..self.devices.len() {
                // What a test called on the engine directly.
                self.pump(D(i));
                while self.step_up(D(i)) {
                    any = true;
                    moved += 1;
                }
                while self.step_down(D(i)) {
                    any = true;
                    moved += 1;
                }
            }
            if !any {
                return moved;
            }
            assert!(moved < 1_000_000, "the network never settles");
        }
    }

    /// Lets `ms` pass: every running engine handles the timeout if due.
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
        for i in 0..self.devices.len() {
            let now = self.now;
            if let Some(e) = self.devices[i].engine.as_mut() {
                if e.poll_timeout().is_some_and(|t| t <= now) {
                    e.handle_timeout(now).expect("timeout handled");
                }
            }
            self.pump(D(i));
        }
    }

    /// Runs until nothing is in flight and no timer is due within an hour:
    /// frames are moved, then time jumps to the earliest timer, and so on.
    pub fn settle(&mut self) {
        let limit = self.now + 3_600_000;
        loop {
            self.run();
            let next = self
                .devices
                .iter()
                .filter_map(|d| d.engine.as_ref().and_then(|e| e.poll_timeout()))
                .min();
            match next {
                Some(t) if t <= limit => {
                    let ms = t.saturating_sub(self.now);
                    self.advance(ms);
                }
                _ => return,
            }
        }
    }

    // ----- faults -----------------------------------------------------------

    /// The relay answers the device's next request matching `which` with
    /// `answer` instead of carrying it out.
    pub fn answer_next(
        &mut self,
        d: D,
        which: fn(&Request) -> bool,
        answer: Result<Response, ProtocolError>,
    ) {
        self.overrides.push((d, which, answer));
    }

    /// The relay carries out the device's next request matching `which`,
    /// but its answer is lost (the connection drops right after).
    pub fn lose_next_answer(&mut self, d: D, which: fn(&Request) -> bool) {
        self.lose_answer.push((d, which));
    }

    /// The relay sends the device an item it already sent (at-least-once
    /// delivery): the oldest unacknowledged one. Returns whether there was
    /// one.
    pub fn redeliver(&mut self, d: D) -> bool {
        let id = self.devices[d.0].id;
        let Some(item) = self.relay.devices[&id].queue.values().next().cloned() else {
            return false;
        };
        let Some(link) = self.devices[d.0].link.as_mut().filter(|l| l.live) else {
            return false;
        };
        link.down
            .push_back(encode_server_frame(&ServerFrame::Push(Push::Deliver(item))));
        true
    }

    /// A hostile relay hands the device an item it made up (or took from
    /// another device's request). The item is not queued.
    pub fn inject(&mut self, d: D, item: QueueItem) {
        let link = self.devices[d.0].link.as_mut().expect("connected");
        link.down
            .push_back(encode_server_frame(&ServerFrame::Push(Push::Deliver(item))));
    }

    /// The group's latest GroupInfo at the relay.
    pub fn group_info(&self, g: GroupId) -> Bytes {
        self.relay.groups[&g].group_info.clone()
    }

    /// Items waiting in the device's queue at the relay.
    pub fn queue_len(&self, d: D) -> usize {
        self.relay.devices[&self.devices[d.0].id].queue.len()
    }

    // ----- organisations ----------------------------------------------------

    /// `org` pins `partner`'s CA and publishes its signed trust list.
    pub fn trust(&mut self, org: &str, partner: &str) {
        let partner_ca = self.ca(partner).cert_der().to_vec();
        let org_id = OrgId::new(org).expect("valid");
        let partner_id = OrgId::new(partner).expect("valid");
        let entry = self.trust.entry(org_id.clone()).or_default();
        entry.0 += 1;
        if !entry.1.contains(&partner_id) {
            entry.1.push(partner_id);
        }
        let serial = entry.0;
        let partners: Vec<Vec<u8>> = entry
            .1
            .clone()
            .iter()
            .map(|p| {
                if p.as_str() == partner {
                    partner_ca.clone()
                } else {
                    self.cas[p].cert_der().to_vec()
                }
            })
            .collect();
        let now = (self.now / 1000) as i64;
        let doc = self
            .ca(org)
            .sign_trust_list(&partners, serial, now)
            .expect("signed");
        self.relay.trust_lists.insert(org_id.clone(), doc);
        for id in self.org_devices(&org_id) {
            self.push(
                id,
                Push::TrustListUpdated {
                    org_id: org_id.clone(),
                },
            );
        }
    }

    /// Both organisations pin each other.
    pub fn trust_each_other(&mut self, a: &str, b: &str) {
        self.trust(a, b);
        self.trust(b, a);
    }

    /// The device's organisation revokes it: the relay refuses it from now
    /// on and publishes the signed revocation list.
    pub fn revoke(&mut self, d: D) {
        let id = self.devices[d.0].id;
        let org = self.devices[d.0].user.org();
        self.relay.devices.get_mut(&id).expect("enrolled").revoked = true;
        let entry = self.revoked.entry(org.clone()).or_default();
        entry.0 += 1;
        entry.1.push(id);
        let (serial, devices) = (entry.0, entry.1.clone());
        let now = (self.now / 1000) as i64;
        let doc = self
            .ca(org.as_str())
            .sign_revocations(&devices, serial, now)
            .expect("signed");
        self.relay.revocations.insert(org.clone(), doc);
        self.devices[d.0].link = None;
        let all: Vec<DeviceId> = self.relay.devices.keys().copied().collect();
        for other in all {
            self.push(
                other,
                Push::RevocationsUpdated {
                    org_id: org.clone(),
                },
            );
        }
    }

    fn org_devices(&self, org: &OrgId) -> Vec<DeviceId> {
        self.relay
            .devices
            .iter()
            .filter(|(_, d)| &d.user.org() == org)
            .map(|(id, _)| *id)
            .collect()
    }

    // ----- the relay ----------------------------------------------------------

    fn dev_of(&self, id: DeviceId) -> Option<D> {
        self.devices.iter().position(|d| d.id == id).map(D)
    }

    /// Sends a push to a device if it is connected and authenticated.
    /// Pushes a typing indicator to a device if it is connected and caught
    /// up (for tests that play a hostile relay or member, any payload).
    pub fn push_typing(
        &mut self,
        to: DeviceId,
        group_id: GroupId,
        sender: DeviceId,
        epoch: u64,
        payload: Bytes,
    ) {
        let Some(d) = self.dev_of(to) else { return };
        if let Some(link) = self.devices[d.0].link.as_mut().filter(|l| l.live) {
            link.down
                .push_back(encode_server_frame(&ServerFrame::Push(Push::Typing {
                    group_id,
                    sender,
                    epoch,
                    payload,
                })));
        }
    }

    fn push(&mut self, id: DeviceId, push: Push) {
        let Some(d) = self.dev_of(id) else { return };
        if let Some(link) = self.devices[d.0].link.as_mut().filter(|l| l.authed) {
            link.down
                .push_back(encode_server_frame(&ServerFrame::Push(push)));
        }
    }

    /// Queues an item for a device, and delivers it live if it is online
    /// and caught up.
    fn enqueue(&mut self, to: DeviceId, mut item: QueueItem) {
        item.queue_id = self.relay.next_qid;
        self.relay.next_qid += 1;
        let dev = self.relay.devices.get_mut(&to).expect("known device");
        dev.queue.insert(item.queue_id, item.clone());
        let Some(d) = self.dev_of(to) else { return };
        if let Some(link) = self.devices[d.0].link.as_mut().filter(|l| l.live) {
            link.down
                .push_back(encode_server_frame(&ServerFrame::Push(Push::Deliver(item))));
        }
    }

    fn respond(&mut self, d: D, id: u64, result: Result<Response, ProtocolError>) {
        if let Err(e) = &result {
            self.relay.refused.push((self.devices[d.0].id, e.clone()));
        }
        if let Some(link) = self.devices[d.0].link.as_mut() {
            link.down
                .push_back(encode_server_frame(&ServerFrame::Response { id, result }));
        }
    }

    fn relay_handle(&mut self, d: D, frame: ClientFrame) {
        assert_eq!(frame.v, PROTOCOL_VERSION);
        let me = self.devices[d.0].id;
        if let Some(i) = self
            .overrides
            .iter()
            .position(|(who, which, _)| *who == d && which(&frame.req))
        {
            let (_, _, answer) = self.overrides.remove(i);
            return self.respond(d, frame.id, answer);
        }
        let authed = self.devices[d.0].link.as_ref().is_some_and(|l| l.authed);
        if let Request::Authenticate {
            device_id,
            signature,
        } = &frame.req
        {
            return self.authenticate(d, frame.id, *device_id, signature);
        }
        if !authed {
            return self.respond(d, frame.id, Err(ProtocolError::Unauthenticated));
        }
        let lose = self
            .lose_answer
            .iter()
            .position(|(who, which)| *who == d && which(&frame.req));
        let result = self.relay_request(me, frame.req);
        if let Some(i) = lose {
            self.lose_answer.remove(i);
            self.disconnect(d);
            return;
        }
        self.respond(d, frame.id, result);
    }

    fn authenticate(&mut self, d: D, id: u64, device_id: DeviceId, signature: &[u8]) {
        use ed25519_dalek::Verifier;
        let nonce = self.devices[d.0]
            .link
            .as_ref()
            .map(|l| l.nonce.clone())
            .unwrap_or_default();
        let ok = self.relay.devices.get(&device_id).is_some_and(|dev| {
            !dev.revoked
                && <[u8; 32]>::try_from(dev.public_key.as_slice())
                    .ok()
                    .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
                    .zip(ed25519_dalek::Signature::from_slice(signature).ok())
                    .is_some_and(|(k, s)| {
                        k.verify(&auth::challenge_payload(&nonce, &device_id), &s)
                            .is_ok()
                    })
        }) && device_id == self.devices[d.0].id;
        if !ok {
            self.respond(d, id, Err(ProtocolError::AuthenticationFailed));
            self.devices[d.0].link = None;
            if let Some(e) = self.devices[d.0].engine.as_mut() {
                e.handle_disconnected();
            }
            return;
        }
        let dev = &self.relay.devices[&device_id];
        let answer = Response::Authenticated {
            user_id: dev.user.clone(),
            key_package_stock: dev.kps.len() as u32,
            has_last_resort: dev.last_resort.is_some(),
            certificate: dev.cert.clone().map(Bytes::from),
        };
        let backlog: Vec<QueueItem> = dev.queue.values().cloned().collect();
        self.respond(d, id, Ok(answer));
        let link = self.devices[d.0].link.as_mut().expect("connected");
        link.authed = true;
        for item in backlog {
            link.down
                .push_back(encode_server_frame(&ServerFrame::Push(Push::Deliver(item))));
        }
        link.down
            .push_back(encode_server_frame(&ServerFrame::Push(Push::QueueDrained)));
        link.live = true;
    }

    /// The relay's rules, request by request.
    fn relay_request(&mut self, me: DeviceId, req: Request) -> Result<Response, ProtocolError> {
        let my_user = self.relay.devices[&me].user.clone();
        match req {
            Request::Authenticate { .. } => Err(ProtocolError::Malformed {
                reason: "authenticated already".into(),
            }),
            Request::UploadKeyPackages {
                key_packages,
                last_resort,
            } => {
                tracing::debug!(
                    device = %me,
                    n = key_packages.len(),
                    last_resort = ?last_resort.as_ref().map(|k| hex::encode(&k[k.len() - 8..])),
                    "sim upload"
                );
                let dev = self.relay.devices.get_mut(&me).expect("known");
                dev.kps.extend(key_packages);
                if last_resort.is_some() {
                    dev.last_resort = last_resort;
                }
                Ok(Response::KeyPackagesStored {
                    stock: dev.kps.len() as u32,
                })
            }
            Request::ClaimKeyPackages { user_id } => {
                let ids: Vec<DeviceId> = self
                    .relay
                    .devices
                    .iter()
                    .filter(|(id, d)| d.user == user_id && !d.revoked && **id != me)
                    .map(|(id, _)| *id)
                    .collect();
                if !self.relay.devices.values().any(|d| d.user == user_id) {
                    return Err(ProtocolError::UnknownUser);
                }
                let mut devices = Vec::new();
                let mut low = Vec::new();
                for id in ids {
                    let dev = self.relay.devices.get_mut(&id).expect("listed");
                    let kp = match dev.kps.pop_front() {
                        Some(kp) => Some(kp),
                        None => dev.last_resort.clone(),
                    };
                    tracing::debug!(
                        claimer = %me,
                        device = %id,
                        kp = ?kp.as_ref().map(|k| hex::encode(&k[k.len() - 8..])),
                        last_resort = dev.kps.is_empty(),
                        "sim claim"
                    );
                    if dev.kps.len() as u32 <= KEY_PACKAGE_LOW_WATER {
                        low.push((id, dev.kps.len() as u32));
                    }
                    if let Some(key_package) = kp {
                        devices.push(ClaimedKeyPackage {
                            device_id: id,
                            key_package,
                        });
                    }
                }
                for (id, stock) in low {
                    self.push(id, Push::KeyPackagesLow { stock });
                }
                if devices.is_empty() {
                    return Err(ProtocolError::NoKeyPackages);
                }
                Ok(Response::KeyPackages { devices })
            }
            Request::CreateGroup {
                group_id,
                group_info,
            } => {
                if self.relay.groups.contains_key(&group_id) {
                    return Err(ProtocolError::GroupExists);
                }
                self.relay.groups.insert(
                    group_id,
                    RGroup {
                        epoch: 0,
                        seq: 0,
                        roster: [me].into(),
                        group_info,
                        readable_from: 0,
                    },
                );
                Ok(Response::GroupCreated)
            }
            Request::CloseGroup { group_id } => {
                let Some(g) = self.relay.groups.get(&group_id) else {
                    return Err(ProtocolError::UnknownGroup);
                };
                if !g.roster.contains(&me) {
                    return Err(ProtocolError::NotMember);
                }
                if g.roster.len() > 1 {
                    return Err(ProtocolError::Malformed {
                        reason: "other devices are in the group".into(),
                    });
                }
                self.relay.groups.remove(&group_id);
                Ok(Response::GroupClosed)
            }
            Request::Commit(bundle) => self.commit(me, &my_user, bundle),
            Request::SendMessage {
                group_id,
                message,
                to,
            } => {
                let Some(g) = self.relay.groups.get(&group_id) else {
                    return Err(ProtocolError::UnknownGroup);
                };
                if !g.roster.contains(&me) {
                    return Err(ProtocolError::NotMember);
                }
                let epoch = framing_header(&message)
                    .map_err(|_| ProtocolError::Malformed {
                        reason: "not MLS".into(),
                    })?
                    .epoch;
                if epoch > g.epoch
                    || epoch + limits::MAX_MESSAGE_EPOCH_LAG < g.epoch
                    || epoch < g.readable_from
                {
                    return Err(ProtocolError::WrongEpoch { current: g.epoch });
                }
                // Addressed to some users: only their member devices.
                let recipients: BTreeSet<DeviceId> = g
                    .roster
                    .iter()
                    .filter(|d| **d != me)
                    .filter(|d| to.is_empty() || to.contains(&self.relay.devices[d].user))
                    .copied()
                    .collect();
                let full: Vec<DeviceId> = recipients
                    .iter()
                    .filter(|r| self.relay.devices[r].queue.len() as u64 >= MAX_QUEUE_LEN)
                    .copied()
                    .collect();
                if !full.is_empty() {
                    return Err(ProtocolError::QueueFull {
                        limit: MAX_QUEUE_LEN,
                        devices: full,
                    });
                }
                let g = self.relay.groups.get_mut(&group_id).expect("checked");
                g.seq += 1;
                let seq = g.seq;
                for r in &recipients {
                    self.enqueue(
                        *r,
                        QueueItem {
                            queue_id: 0,
                            group_id,
                            seq,
                            sender: me,
                            kind: ItemKind::Application,
                            payload: message.clone(),
                            addressed: !to.is_empty(),
                        },
                    );
                }
                self.relay.accepted.push(Accepted {
                    group: group_id,
                    seq,
                    sender: me,
                    recipients,
                });
                Ok(Response::MessageAccepted { seq })
            }
            Request::Ack { queue_ids } => {
                self.relay.ack_sizes.push(queue_ids.len());
                if queue_ids.len() > MAX_ACK_BATCH {
                    return Err(ProtocolError::TooLarge {
                        limit: MAX_ACK_BATCH as u64,
                    });
                }
                let dev = self.relay.devices.get_mut(&me).expect("known");
                for q in queue_ids {
                    dev.queue.remove(&q);
                }
                Ok(Response::Acked)
            }
            Request::GetGroupInfo { group_id } => {
                let Some(g) = self.relay.groups.get(&group_id) else {
                    return Err(ProtocolError::UnknownGroup);
                };
                let mine = g.roster.contains(&me)
                    || g.roster.iter().any(|d| {
                        self.relay.devices[d].user == my_user && !self.relay.devices[d].revoked
                    });
                if !mine {
                    return Err(ProtocolError::NotMember);
                }
                Ok(Response::GroupInfo {
                    epoch: g.epoch,
                    group_info: g.group_info.clone(),
                })
            }
            Request::GetUser { user_id } => {
                let devices: Vec<DeviceId> = self
                    .relay
                    .devices
                    .iter()
                    .filter(|(_, d)| d.user == user_id && !d.revoked)
                    .map(|(id, _)| *id)
                    .collect();
                if devices.is_empty() {
                    return Err(ProtocolError::UnknownUser);
                }
                Ok(Response::User(UserEntry {
                    org_id: user_id.org(),
                    user_id,
                    display_name: String::new(),
                    role: String::new(),
                    devices,
                }))
            }
            Request::GetTrustList { org_id } => Ok(Response::TrustList {
                document: self.relay.trust_lists.get(&org_id).cloned(),
            }),
            Request::GetRevocations { org_id } => Ok(Response::Revocations {
                document: self.relay.revocations.get(&org_id).cloned(),
            }),
            Request::SearchDirectory { orgs, query } => {
                let mut by_user: BTreeMap<UserId, Vec<Bytes>> = BTreeMap::new();
                for d in self.relay.devices.values() {
                    if d.revoked || !orgs.contains(&d.user.org()) {
                        continue;
                    }
                    if !d.user.as_str().contains(&query) {
                        continue;
                    }
                    if let Some(c) = &d.cert {
                        by_user
                            .entry(d.user.clone())
                            .or_default()
                            .push(c.clone().into());
                    }
                }
                Ok(Response::Directory {
                    entries: by_user
                        .into_iter()
                        .map(|(user_id, certificates)| DirectoryEntry {
                            user_id,
                            certificates,
                        })
                        .collect(),
                })
            }
            Request::RegisterPush { .. } => Ok(Response::PushRegistered),
            Request::Ping => Ok(Response::Pong),
            Request::Typing {
                group_id,
                epoch,
                payload,
            } => {
                // Live only: to the other roster devices connected now.
                let group = self
                    .relay
                    .groups
                    .get(&group_id)
                    .ok_or(ProtocolError::UnknownGroup)?;
                if !group.roster.contains(&me) {
                    return Err(ProtocolError::NotMember);
                }
                if epoch != group.epoch {
                    return Err(ProtocolError::WrongEpoch {
                        current: group.epoch,
                    });
                }
                let to: Vec<DeviceId> =
                    group.roster.iter().filter(|d| **d != me).copied().collect();
                self.relay.typing.push((me, group_id, payload.clone()));
                for d in to {
                    self.push_typing(d, group_id, me, epoch, payload.clone());
                }
                Ok(Response::TypingRelayed)
            }
            // The simulated relay keeps no attachments.
            Request::PostBlob { .. }
            | Request::PostOwnBlob { .. }
            | Request::GetBlob { .. }
            | Request::DeleteBlob { .. } => Err(ProtocolError::Malformed {
                reason: "this relay keeps no attachments".into(),
            }),
            Request::LinkPut { .. } | Request::LinkGet { .. } => Err(ProtocolError::Malformed {
                reason: "this relay keeps no link sessions".into(),
            }),
            Request::ListGroups => {
                let group_ids = self
                    .relay
                    .groups
                    .iter()
                    .filter(|(_, g)| {
                        g.roster.iter().any(|d| {
                            self.relay.devices[d].user == my_user && !self.relay.devices[d].revoked
                        })
                    })
                    .map(|(id, _)| *id)
                    .collect();
                Ok(Response::Groups { group_ids })
            }
        }
    }

    fn commit(
        &mut self,
        me: DeviceId,
        my_user: &UserId,
        bundle: CommitBundle,
    ) -> Result<Response, ProtocolError> {
        let malformed = |reason: &str| ProtocolError::Malformed {
            reason: reason.into(),
        };
        let header = framing_header(&bundle.commit).map_err(|_| malformed("commit header"))?;
        if header.epoch != bundle.epoch {
            return Err(malformed("epochs differ"));
        }
        let external = header.sender == Some(SenderType::NewMemberCommit);
        let Some(g) = self.relay.groups.get(&bundle.group_id) else {
            return Err(ProtocolError::UnknownGroup);
        };
        let member = g.roster.contains(&me);
        if external {
            if bundle.added != [me]
                || bundle.welcome.is_some()
                || (member && !bundle.removed.is_empty())
            {
                return Err(malformed("an external commit adds exactly its sender"));
            }
            let own = g
                .roster
                .iter()
                .any(|d| &self.relay.devices[d].user == my_user);
            if !own {
                return Err(ProtocolError::NotMember);
            }
        } else if !member {
            return Err(ProtocolError::NotMember);
        }
        if bundle.epoch != g.epoch {
            return Err(ProtocolError::WrongEpoch { current: g.epoch });
        }
        // A member's external commit is a resync: its roster entry stays.
        let resync = external && member;
        for a in &bundle.added {
            match self.relay.devices.get(a) {
                Some(d) if !d.revoked => {}
                _ => return Err(ProtocolError::UnknownDevice),
            }
            if g.roster.contains(a) && !resync {
                return Err(malformed("an added device is already a member"));
            }
        }
        if !bundle.removed.iter().all(|r| g.roster.contains(r)) {
            return Err(malformed("a removed device is not a member"));
        }
        let old_roster = g.roster.clone();
        let g = self
            .relay
            .groups
            .get_mut(&bundle.group_id)
            .expect("checked");
        g.epoch += 1;
        g.seq += 1;
        let (epoch, seq) = (g.epoch, g.seq);
        for r in &bundle.removed {
            g.roster.remove(r);
        }
        for a in &bundle.added {
            g.roster.insert(*a);
        }
        if !bundle.added.is_empty() {
            g.readable_from = epoch;
        }
        g.group_info = bundle.group_info.clone();
        let mut to: BTreeSet<DeviceId> = old_roster;
        to.insert(me);
        for d in to {
            self.enqueue(
                d,
                QueueItem {
                    queue_id: 0,
                    group_id: bundle.group_id,
                    seq,
                    sender: me,
                    kind: ItemKind::Commit,
                    payload: bundle.commit.clone(),
                    addressed: false,
                },
            );
        }
        if let Some(w) = &bundle.welcome {
            for a in &bundle.added {
                self.enqueue(
                    *a,
                    QueueItem {
                        queue_id: 0,
                        group_id: bundle.group_id,
                        seq,
                        sender: me,
                        kind: ItemKind::Welcome,
                        payload: w.clone(),
                        addressed: false,
                    },
                );
            }
        }
        Ok(Response::CommitAccepted { epoch, seq })
    }

    // ----- conveniences for tests --------------------------------------------

    /// Creates a conversation on `d` and adds `others`' users, then settles.
    pub fn group(&mut self, d: D, name: &str, others: &[D]) -> GroupId {
        let now = self.now;
        let g = self.engine(d).create_group(name, now).expect("group");
        self.pump(d);
        self.settle();
        if !others.is_empty() {
            let mut users: Vec<UserId> = others.iter().map(|o| self.user(*o)).collect();
            users.dedup();
            let now = self.now;
            self.engine(d).add_members(&g, users, now).expect("add");
            self.pump(d);
            self.settle();
        }
        g
    }

    /// Sends a text from `d` (queued; moved by `run`/`settle`).
    pub fn send(&mut self, d: D, g: GroupId, text: &str) -> cascade_core::MessageId {
        let now = self.now;
        let id = self.engine(d).send_text(&g, text, now).expect("send");
        self.pump(d);
        id
    }

    /// The texts of a conversation's history on `d`.
    pub fn texts(&mut self, d: D, g: GroupId) -> Vec<String> {
        self.engine(d)
            .history(&g, None, 100_000)
            .expect("history")
            .into_iter()
            .filter_map(|m| m.text)
            .collect()
    }

    /// The conversation's state on `d`, if it has it.
    pub fn state(&mut self, d: D, g: GroupId) -> Option<ConversationState> {
        self.engine(d).conversation(&g).ok().map(|c| c.state)
    }

    /// The group's epoch on `d`.
    pub fn epoch(&mut self, d: D, g: GroupId) -> u64 {
        self.engine(d).epoch(&g).expect("epoch")
    }

    /// The devices in the group's roster at the relay.
    pub fn roster(&self, g: GroupId) -> BTreeSet<DeviceId> {
        self.relay.groups[&g].roster.clone()
    }
}

/// Whether a request is a `Commit`.
pub fn is_commit(r: &Request) -> bool {
    matches!(r, Request::Commit(_))
}

/// Whether a request is a `SendMessage`.
pub fn is_send(r: &Request) -> bool {
    matches!(r, Request::SendMessage { .. })
}

/// Whether a request is a `ListGroups`.
pub fn is_list_groups(r: &Request) -> bool {
    matches!(r, Request::ListGroups)
}

/// Whether a request is a `GetGroupInfo`.
pub fn is_get_group_info(r: &Request) -> bool {
    matches!(r, Request::GetGroupInfo { .. })
}

/// Whether a request is a `ClaimKeyPackages`.
pub fn is_claim(r: &Request) -> bool {
    matches!(r, Request::ClaimKeyPackages { .. })
}

/// Every device's events of one kind, for assertions.
pub fn failures(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::OperationFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// For `HashMap` users.
pub type Map<K, V> = HashMap<K, V>;

impl Sim {
    /// How many rows of the device's database (every table) hold `needle`.
    pub fn rows_holding(&mut self, d: D, needle: &str) -> usize {
        let path = self.path(d);
        self.crash(d);
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.pragma_update(None, "key", format!("x'{}'", hex::encode(STORE_KEY)))
            .expect("key");
        let tables: Vec<String> = conn
            // Real tables only: a virtual table (the search index) reads
            // through to `messages`; its own storage is in shadow tables,
            // which are real and scanned.
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table'
                 AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'",
            )
            .expect("tables")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("names");
        let mut n = 0;
        for t in tables {
            let rows: Vec<Vec<rusqlite::types::Value>> = {
                let mut stmt = conn
                    .prepare(&format!("SELECT * FROM \"{t}\""))
                    .expect("select");
                let cols = stmt.column_count();
                stmt.query_map([], |r| (0..cols).map(|i| r.get(i)).collect())
                    .expect("rows")
                    .collect::<Result<_, _>>()
                    .expect("values")
            };
            n += rows
                .iter()
                .filter(|row| {
                    row.iter().any(|v| match v {
                        rusqlite::types::Value::Text(s) => s.contains(needle),
                        rusqlite::types::Value::Blob(b) => {
                            b.windows(needle.len()).any(|w| w == needle.as_bytes())
                        }
                        _ => false,
                    })
                })
                .count();
        }
        drop(conn);
        self.restart(d);
        self.connect(d);
        self.settle();
        n
    }
}
