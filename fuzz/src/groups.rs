//! The multi-party target: real client engines (real SQLite files) around
//! the real relay (`run_connection` over in-memory sockets, a real sled
//! store), driven in the order the input chooses.
//!
//! Four devices of two organisations that trust each other (Alice has two)
//! create conversations, send, add, remove and leave; their connections
//! drop, they crash and restart from their databases, time passes, and
//! every frame waits in flight until the input moves it: the relay handles
//! a device's next request, or a device handles its next frame or a burst
//! of them. Then everyone comes back and the network settles, and:
//! - every device in a group's roster at the relay is in the conversation
//!   at the relay's epoch (no honest group forks);
//! - no device shows a message twice, or one nobody sent, and devices that
//!   show the same sequence number in a group show the same message;
//! - every outbox is empty;
//! - nothing panicked, and the relay answered every request.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Message;
use cascade_admin::OrgCa;
use cascade_core::identity::DeviceClaims;
use cascade_core::store::{SqliteStore, StoreKey};
use cascade_core::{ConversationState, Engine, GroupId, MessageId};
use cascade_protocol::frames::ServerFrame;
use cascade_protocol::http::EnrolResponse;
use cascade_protocol::{decode_client_frame, decode_server_frame, Bytes, DeviceId, OrgId, UserId};
use cascade_server::store::{
    EnrolmentTokenRecord, NewDevice, Org, SledStore, Store, TrustList, User,
};
use cascade_server::AppState;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// The key every simulated device's store is encrypted with.
const STORE_KEY: [u8; 32] = [7; 32];

/// The devices: user, device name.
const DEVICES: [(&str, &str); 4] = [
    ("alice@north", "alice-phone"),
    ("alice@north", "alice-desktop"),
    ("bob@north", "bob-phone"),
    ("carol@east", "carol-phone"),
];

/// The users a device may add or remove.
const USERS: [&str; 3] = ["alice@north", "bob@north", "carol@east"];

/// At most this many operations of an input are played.
const MAX_OPS: usize = 512;

/// At most this many conversations.
const MAX_GROUPS: usize = 3;

/// How long the relay may take to answer a request before the target
/// calls it a hang.
const ANSWER_WAIT: Duration = Duration::from_secs(20);

/// The organisations' CAs, made once per process (valid 30 days from its
/// start).
fn cas() -> &'static BTreeMap<OrgId, OrgCa> {
    static CAS: OnceLock<BTreeMap<OrgId, OrgCa>> = OnceLock::new();
    CAS.get_or_init(|| {
        let now = unix_secs();
        ["north", "east"]
            .into_iter()
            .map(|o| {
                let org = OrgId::new(o).expect("valid");
                let ca = OrgCa::generate(&org, &format!("{o} CA"), now - 86_400, 30).expect("CA");
                (org, ca)
            })
            .collect()
    })
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The target: plays `data` as operations, settles, checks.
pub fn groups(data: &[u8]) {
    play(data);
}

/// What a play ended with, for tests of the target itself: per
/// conversation at the relay, its epoch, its roster's size, and how many
/// texts each device shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Epoch, roster size, texts shown per device.
    pub groups: Vec<(u64, usize, Vec<usize>)>,
}

/// Plays `data` as operations, settles, checks, and says what it came to.
/// Each operation is four bytes (the last padded with zeros): what, which
/// device, and two arguments (see `World::step`), so that an operation
/// that cannot happen leaves the rest of the input's meaning alone.
pub fn play(data: &[u8]) -> Outcome {
    // A runtime of its own: nothing of an earlier play runs on, and tests
    // playing on several threads do not share one.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut world = World::new();
        for chunk in data.chunks(4).take(MAX_OPS) {
            let mut op = [0u8; 4];
            op[..chunk.len()].copy_from_slice(chunk);
            world.step(op).await;
        }
        world.quiesce().await;
        world.check()
    })
}

/// A connection to the relay.
struct Link {
    to_relay: UnboundedSender<Result<Message, axum::Error>>,
    from_relay: UnboundedReceiver<Message>,
    /// Client frames the engine sent that the relay has not had yet.
    up: VecDeque<Vec<u8>>,
    /// Server frames the relay sent that the engine has not handled yet.
    down: VecDeque<Vec<u8>>,
    /// Requests the relay has, not yet answered.
    unanswered: HashSet<u64>,
    /// The relay closed it.
    closed: bool,
}

struct Device {
    user: UserId,
    id: DeviceId,
    path: std::path::PathBuf,
    engine: Option<Engine>,
    link: Option<Link>,
}

struct World {
    _dir: tempfile::TempDir,
    state: AppState,
    store: Arc<dyn Store>,
    devices: Vec<Device>,
    groups: Vec<GroupId>,
    /// Every message a device sent.
    sent: HashSet<MessageId>,
    next_text: usize,
    /// The engines' clock, ms: the wall clock at the start, then moved by
    /// the input.
    now: u64,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tmp");
        let sled = SledStore::open_temporary().expect("store");
        let now = (unix_secs() as u64) * 1000;
        for (org, ca) in cas() {
            sled.create_org(&Org {
                org_id: org.clone(),
                display_name: org.as_str().into(),
                created_at: 0,
                ca_certificate: Some(ca.cert_der().to_vec().into()),
            })
            .expect("org");
            let partners: Vec<Vec<u8>> = cas()
                .iter()
                .filter(|(o, _)| *o != org)
                .map(|(_, c)| c.cert_der().to_vec())
                .collect();
            let doc = ca
                .sign_trust_list(&partners, 1, unix_secs())
                .expect("signed");
            sled.put_trust_list(
                org,
                &TrustList {
                    body: doc.body,
                    signature: doc.signature,
                    published_at: 0,
                    co_signature: None,
                },
            )
            .expect("trust list");
        }
        for u in USERS {
            sled.create_user(&User {
                user_id: UserId::new(u).expect("valid"),
                display_name: u.into(),
                role: "Nurse".into(),
                created_at: 0,
            })
            .expect("user");
        }
        let mut devices = Vec::new();
        for (i, (user, name)) in DEVICES.into_iter().enumerate() {
            let user = UserId::new(user).expect("valid");
            let org = user.org();
            let ca = &cas()[&org];
            let path = dir.path().join(format!("{i}.db"));
            let mut engine =
                Engine::new(SqliteStore::open(&path, &StoreKey::key(STORE_KEY)).expect("db"))
                    .expect("engine");
            let public_key = engine.begin_enrolment().expect("keys");
            let token = [i as u8 + 1; 32];
            sled.put_enrolment_token(
                &token,
                &EnrolmentTokenRecord {
                    user_id: user.clone(),
                    expires_at: u64::MAX,
                    used: false,
                },
            )
            .expect("token");
            let id = DeviceId::random();
            sled.enrol_device(
                &token,
                0,
                &NewDevice {
                    device_id: id,
                    name: name.into(),
                    signature_key: Bytes::from(public_key.clone()),
                    enrolled_at: 0,
                },
            )
            .expect("enrolled");
            let cert = ca
                .issue_device(
                    &DeviceClaims {
                        user: user.clone(),
                        device: id,
                        display_name: name.into(),
                        role: "Nurse".into(),
                    },
                    &public_key,
                    unix_secs(),
                    30,
                )
                .expect("issued");
            sled.set_device_certificate(&id, &cert)
                .expect("certificate");
            engine
                .complete_enrolment(
                    "http://relay.fuzz",
                    None,
                    EnrolResponse {
                        device_id: id,
                        org_id: org,
                        user_id: user.clone(),
                        display_name: name.into(),
                        role: "Nurse".into(),
                    },
                    ca.cert_der(),
                )
                .expect("enrolment completes");
            devices.push(Device {
                user,
                id,
                path,
                engine: Some(engine),
                link: None,
            });
        }
        let store: Arc<dyn Store> = Arc::new(sled);
        World {
            _dir: dir,
            state: AppState::new(store.clone()),
            store,
            devices,
            groups: Vec::new(),
            sent: HashSet::new(),
            next_text: 0,
            now,
        }
    }

    /// One operation: `[what, device, a, b]`, where `a` picks a
    /// conversation (or an amount) and `b` a user.
    async fn step(&mut self, [op, device, a, b]: [u8; 4]) {
        // What the relay's tasks have to send is on the links first.
        settle_tasks().await;
        self.collect();
        let d = usize::from(device) % self.devices.len();
        let user = UserId::new(USERS[usize::from(b) % USERS.len()]).expect("valid");
        let now = self.now;
        if trace() {
            eprintln!("t={now} op {} device {d} a {a} user {user}", op % 16);
        }
        match op % 16 {
            0 | 1 => {
                let Some(g) = self.pick_group(a) else {
                    return;
                };
                let text = format!("text {}", self.next_text);
                self.next_text += 1;
                if let Some(e) = self.devices[d].engine.as_mut() {
                    if let Ok(id) = e.send_text(&g, &text, now) {
                        self.sent.insert(id);
                    }
                }
            }
            2 => {
                if self.groups.len() < MAX_GROUPS {
                    if let Some(e) = self.devices[d].engine.as_mut() {
                        if let Ok(g) = e.create_group("Ward", now) {
                            self.groups.push(g);
                        }
                    }
                }
            }
            3 => {
                let Some(g) = self.pick_group(a) else {
                    return;
                };
                if let Some(e) = self.devices[d].engine.as_mut() {
                    let _ = e.add_members(&g, vec![user], now);
                }
            }
            4 => {
                let Some(g) = self.pick_group(a) else {
                    return;
                };
                if user == self.devices[d].user {
                    return;
                }
                if let Some(e) = self.devices[d].engine.as_mut() {
                    let _ = e.remove_members(&g, vec![user], now);
                }
            }
            5 => {
                let Some(g) = self.pick_group(a) else {
                    return;
                };
                if let Some(e) = self.devices[d].engine.as_mut() {
                    let _ = e.leave(&g, now);
                }
            }
            6 => self.disconnect(d).await,
            7 => self.connect(d).await,
            8 => {
                // A crash: the engine is dropped mid-work; what SQLite
                // committed stays.
                self.disconnect(d).await;
                self.devices[d].engine = None;
            }
            9 => self.restart(d),
            10 => {
                let ms = u64::from(a) * 100;
                self.advance(ms);
            }
            11 | 12 => {
                self.step_up(d).await;
            }
            13 | 14 => {
                self.step_down(d, 1);
            }
            _ => {
                let n = 2 + usize::from(a) % 18;
                self.step_down(d, n);
            }
        }
        self.pump(d);
        if trace() {
            for g in &self.groups {
                let states: Vec<String> = self
                    .devices
                    .iter()
                    .map(|dev| match dev.engine.as_ref() {
                        Some(e) => format!("{:?}", e.conversation(g).ok().map(|c| c.state)),
                        None => "down".into(),
                    })
                    .collect();
                let roster = self
                    .store
                    .get_group(g)
                    .ok()
                    .flatten()
                    .map(|gr| (gr.epoch, gr.roster.len()));
                eprintln!("  {g}: {states:?} relay {roster:?}");
            }
        }
    }

    fn pick_group(&self, a: u8) -> Option<GroupId> {
        (!self.groups.is_empty()).then(|| self.groups[usize::from(a) % self.groups.len()])
    }

    /// Takes the engine's frames onto its link (dropped when offline) and
    /// throws its events and answers away.
    fn pump(&mut self, d: usize) {
        let dev = &mut self.devices[d];
        let Some(engine) = dev.engine.as_mut() else {
            return;
        };
        while let Some(f) = engine.poll_transmit() {
            if let Some(link) = dev.link.as_mut() {
                link.up.push_back(f);
            }
        }
        while let Some(event) = engine.poll_event() {
            if trace() {
                eprintln!("  device {d}: {event:?}");
            }
        }
        while engine.poll_answer().is_some() {}
    }

    /// Opens a connection to the relay.
    async fn connect(&mut self, d: usize) {
        if self.devices[d].link.is_some() || self.devices[d].engine.is_none() {
            return;
        }
        let (to_relay, from_relay) = cascade_server::ws::connect_in_memory(&self.state);
        self.devices[d].link = Some(Link {
            to_relay,
            from_relay,
            up: VecDeque::new(),
            down: VecDeque::new(),
            unanswered: HashSet::new(),
            closed: false,
        });
        if let Some(e) = self.devices[d].engine.as_mut() {
            e.handle_connected();
        }
        self.pump(d);
        // The relay's challenge is on the link before anything else moves.
        let started = Instant::now();
        loop {
            settle_tasks().await;
            self.collect();
            if self.devices[d]
                .link
                .as_ref()
                .is_none_or(|l| !l.down.is_empty() || l.closed)
            {
                return;
            }
            assert!(
                started.elapsed() < ANSWER_WAIT,
                "the relay sent no challenge"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Drops the connection: frames in flight are lost.
    async fn disconnect(&mut self, d: usize) {
        if self.devices[d].link.take().is_some() {
            if let Some(e) = self.devices[d].engine.as_mut() {
                e.handle_disconnected();
            }
            self.pump(d);
            // The relay notices the closed socket.
            settle_tasks().await;
        }
    }

    fn restart(&mut self, d: usize) {
        if self.devices[d].engine.is_none() {
            let store = SqliteStore::open(&self.devices[d].path, &StoreKey::key(STORE_KEY))
                .expect("reopen");
            self.devices[d].engine = Some(Engine::new(store).expect("engine"));
        }
    }

    /// Lets `ms` pass: each engine whose timer is due handles it.
    fn advance(&mut self, ms: u64) {
        self.now += ms;
        for d in 0..self.devices.len() {
            let now = self.now;
            if let Some(e) = self.devices[d].engine.as_mut() {
                if e.poll_timeout().is_some_and(|t| t <= now) {
                    e.handle_timeout(now).expect("timeout handled");
                }
            }
            self.pump(d);
        }
    }

    /// The relay handles the device's next frame; returns whether there
    /// was one. Waits for every answer, and whatever it pushes.
    async fn step_up(&mut self, d: usize) -> bool {
        self.pump(d);
        let Some(link) = self.devices[d].link.as_mut() else {
            return false;
        };
        let Some(frame) = link.up.pop_front() else {
            return false;
        };
        if link.closed {
            return true; // lost with the connection
        }
        let id = decode_client_frame(&frame)
            .expect("engines send valid frames")
            .id;
        if link.to_relay.send(Ok(Message::binary(frame))).is_ok() {
            link.unanswered.insert(id);
        }
        self.await_relay().await;
        true
    }

    /// Waits until the relay has answered every request it has, then
    /// collects what it sent.
    async fn await_relay(&mut self) {
        let started = Instant::now();
        loop {
            settle_tasks().await;
            self.collect();
            let waiting: Vec<(usize, &HashSet<u64>)> = self
                .devices
                .iter()
                .enumerate()
                .filter_map(|(d, dev)| dev.link.as_ref().map(|l| (d, &l.unanswered)))
                .filter(|(_, unanswered)| !unanswered.is_empty())
                .collect();
            if waiting.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < ANSWER_WAIT,
                "the relay left requests unanswered: {waiting:?}"
            );
            // A durable write is flushed on a blocking thread.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // What the relay pushes to other devices after answering (the
        // fan-out of an accepted commit or message) arrives too.
        loop {
            let before = self.in_flight_down();
            tokio::time::sleep(Duration::from_millis(1)).await;
            settle_tasks().await;
            self.collect();
            if self.in_flight_down() == before {
                return;
            }
        }
    }

    /// How many frames wait for the devices.
    fn in_flight_down(&self) -> usize {
        self.devices
            .iter()
            .filter_map(|d| d.link.as_ref())
            .map(|l| l.down.len())
            .sum()
    }

    /// Takes what the relay sent onto the links.
    fn collect(&mut self) {
        for dev in &mut self.devices {
            let Some(link) = dev.link.as_mut() else {
                continue;
            };
            while let Ok(message) = link.from_relay.try_recv() {
                match message {
                    Message::Binary(b) => {
                        if let Ok(ServerFrame::Response { id, .. }) = decode_server_frame(&b) {
                            link.unanswered.remove(&id);
                        }
                        link.down.push_back(b.to_vec());
                    }
                    Message::Close(_) => link.closed = true,
                    _ => {}
                }
            }
            if link.from_relay.is_closed() && link.from_relay.is_empty() {
                link.closed = true;
            }
            if link.closed {
                link.unanswered.clear();
            }
        }
    }

    /// The device handles up to `n` frames from the relay, in one
    /// transaction when more than one. Returns how many.
    fn step_down(&mut self, d: usize, n: usize) -> usize {
        self.collect();
        let dev = &mut self.devices[d];
        let (Some(link), Some(engine)) = (dev.link.as_mut(), dev.engine.as_mut()) else {
            return 0;
        };
        let take = n.min(link.down.len());
        let frames: Vec<Vec<u8>> = link.down.drain(..take).collect();
        let now = self.now;
        let result = match frames.as_slice() {
            [] => Ok(()),
            [one] => engine.handle_frame(one, now),
            many => engine.handle_frames(many.iter().map(Vec::as_slice), now),
        };
        if let Err(e) = result {
            panic!("device {d} failed to handle frames: {e}");
        }
        if link.closed && link.down.is_empty() {
            // The relay closed the connection; the device sees it now.
            dev.link = None;
            engine.handle_disconnected();
        }
        self.pump(d);
        take
    }

    /// Moves every frame until none is in flight.
    async fn run(&mut self) {
        for round in 0.. {
            assert!(round < 10_000, "the network never settles");
            settle_tasks().await;
            let mut moved = false;
            for d in 0..self.devices.len() {
                self.pump(d);
                while self.step_up(d).await {
                    moved = true;
                }
                while self.step_down(d, 1) > 0 {
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Runs until nothing is in flight and no timer is due within an hour.
    async fn settle(&mut self) {
        let limit = self.now + 3_600_000;
        loop {
            self.run().await;
            let next = self
                .devices
                .iter()
                .filter_map(|d| d.engine.as_ref().and_then(Engine::poll_timeout))
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

    /// Everyone back, connected, and the network quiet.
    async fn quiesce(&mut self) {
        for _ in 0..3 {
            for d in 0..self.devices.len() {
                self.restart(d);
                self.connect(d).await;
            }
            self.settle().await;
        }
    }

    fn check(&mut self) -> Outcome {
        let mut outcome = Outcome { groups: Vec::new() };
        let by_id: BTreeMap<DeviceId, usize> = self
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id, i))
            .collect();
        for g in self.groups.clone() {
            let Some(group) = self.store.get_group(&g).expect("store reads") else {
                continue;
            };
            let roster: BTreeSet<usize> = group.roster.iter().map(|id| by_id[id]).collect();
            for &d in &roster {
                let engine = self.devices[d].engine.as_ref().expect("restarted");
                let state = engine.conversation(&g).ok().map(|c| c.state);
                if state == Some(ConversationState::Left) && roster.len() == 1 {
                    continue; // the last one out: nobody could commit the leave
                }
                assert_eq!(
                    state,
                    Some(ConversationState::Active),
                    "device {d} is in {g}'s roster {roster:?} but not in the conversation"
                );
                assert_eq!(
                    engine.epoch(&g).expect("epoch"),
                    group.epoch,
                    "device {d} is out of step in {g} (a fork)"
                );
            }
            // Each sequence number is one message on every device.
            let mut at_seq: BTreeMap<u64, MessageId> = BTreeMap::new();
            let mut shown = Vec::new();
            for (d, dev) in self.devices.iter().enumerate() {
                let engine = dev.engine.as_ref().expect("restarted");
                let history = engine.history(&g, None, 1_000_000).unwrap_or_default();
                let mut seen = HashSet::new();
                let texts: Vec<_> = history.iter().filter(|m| m.kind == "text").collect();
                shown.push(texts.len());
                for m in texts {
                    assert!(
                        self.sent.contains(&m.id),
                        "device {d} shows a message nobody sent"
                    );
                    assert!(seen.insert(m.id), "device {d} shows a message twice in {g}");
                    if let Some(seq) = m.seq {
                        let first = *at_seq.entry(seq).or_insert(m.id);
                        assert_eq!(first, m.id, "two messages at seq {seq} in {g} (a fork)");
                    }
                }
            }
            outcome.groups.push((group.epoch, roster.len(), shown));
        }
        for (d, dev) in self.devices.iter().enumerate() {
            let engine = dev.engine.as_ref().expect("restarted");
            assert_eq!(
                engine.outbox_len().expect("outbox"),
                0,
                "device {d}'s outbox"
            );
        }
        outcome
    }
}

/// Lets the relay's tasks run until they wait on something.
async fn settle_tasks() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

/// Whether to print each step and every event (`CASCADE_FUZZ_TRACE=1`,
/// when replaying a finding).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("CASCADE_FUZZ_TRACE").is_some())
}
