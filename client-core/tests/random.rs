//! Seeded random interactions on the simulated relay: several devices of
//! two organisations that trust each other send, create conversations, add,
//! remove and leave, renew their certificates, lose their connections,
//! crash and restart from their databases, while the network delays
//! frames and the relay delivers items twice. After every step nothing has
//! panicked; once everything is quiet:
//! - every device in a group's roster is in the conversation, at the
//!   group's epoch (no fork);
//! - every message the relay accepted is shown exactly once on every device
//!   that was a member when it was accepted, and on its sender;
//! - no device shows a message nobody sent;
//! - every outbox is empty.
//!
//! A failing seed is printed; replay it with
//! `CASCADE_SIM_SEED=<seed> cargo test -p cascade-core --test random`.
//! `CASCADE_SIM_SEEDS=<n>` and `CASCADE_SIM_STEPS=<n>` run more (the
//! default run is sized for CI).

mod sim;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cascade_core::{ConversationState, DeliveryState, GroupId, MessageId, UserId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sim::*;

const USERS: [&str; 4] = ["alice@north", "bob@north", "carol@east", "dave@east"];

struct World {
    sim: Sim,
    rng: StdRng,
    devices: Vec<D>,
    groups: Vec<GroupId>,
    /// Every text sent: its id, by which device.
    sent: HashMap<MessageId, (D, String)>,
    next_text: usize,
    log: Vec<String>,
    /// What each device reported (failures, rejoins), for a failing seed.
    reports: BTreeMap<D, Vec<String>>,
}

impl World {
    fn new(seed: u64) -> World {
        let mut sim = Sim::new();
        sim.trust_each_other("north", "east");
        let mut devices = Vec::new();
        for u in USERS {
            devices.push(sim.device(u, u));
        }
        // Alice has a second device.
        devices.push(sim.device("alice@north", "alice-desktop"));
        sim.settle();
        World {
            sim,
            rng: StdRng::seed_from_u64(seed),
            devices,
            groups: Vec::new(),
            sent: HashMap::new(),
            next_text: 0,
            log: Vec::new(),
            reports: BTreeMap::new(),
        }
    }

    fn pick_device(&mut self) -> D {
        self.devices[self.rng.gen_range(0..self.devices.len())]
    }

    fn pick_group(&mut self) -> Option<GroupId> {
        (!self.groups.is_empty()).then(|| self.groups[self.rng.gen_range(0..self.groups.len())])
    }

    fn running(&self, d: D) -> bool {
        self.sim.is_running(d)
    }

    /// Keeps what the devices reported.
    fn collect(&mut self) {
        for d in self.devices.clone() {
            if !self.sim.is_running(d) {
                continue;
            }
            for e in self.sim.events(d) {
                let note = match e {
                    cascade_core::Event::OperationFailed { reason, .. } => {
                        format!("failed: {reason}")
                    }
                    cascade_core::Event::Message(m) if m.kind == "system" => "rejoined".into(),
                    _ => continue,
                };
                self.reports.entry(d).or_default().push(note);
            }
        }
    }

    fn step(&mut self) {
        let roll = self.rng.gen_range(0..100);
        let d = self.pick_device();
        let now = self.sim.now;
        match roll {
            0..=27 => {
                let Some(g) = self.pick_group() else { return };
                if !self.running(d) {
                    return;
                }
                let text = format!("text {}", self.next_text);
                self.next_text += 1;
                if let Ok(id) = self.sim.engine(d).send_text(&g, &text, now) {
                    self.log.push(format!("{d:?} sends {text:?}"));
                    self.sent.insert(id, (d, text));
                }
            }
            28..=31 => {
                if !self.running(d) || self.groups.len() >= 4 {
                    return;
                }
                if let Ok(g) = self.sim.engine(d).create_group("Ward", now) {
                    self.log.push(format!("{d:?} creates {g}"));
                    self.groups.push(g);
                }
            }
            32..=39 => {
                let Some(g) = self.pick_group() else { return };
                if !self.running(d) {
                    return;
                }
                let user = UserId::new(USERS[self.rng.gen_range(0..USERS.len())]).expect("valid");
                if self
                    .sim
                    .engine(d)
                    .add_members(&g, vec![user.clone()], now)
                    .is_ok()
                {
                    self.log.push(format!("{d:?} adds {user} to {g}"));
                }
            }
            40..=42 => {
                let Some(g) = self.pick_group() else { return };
                if !self.running(d) {
                    return;
                }
                let user = UserId::new(USERS[self.rng.gen_range(0..USERS.len())]).expect("valid");
                if user == self.sim.user(d) {
                    return;
                }
                if self
                    .sim
                    .engine(d)
                    .remove_members(&g, vec![user.clone()], now)
                    .is_ok()
                {
                    self.log.push(format!("{d:?} removes {user} from {g}"));
                }
            }
            43 => {
                let Some(g) = self.pick_group() else { return };
                if self.running(d) && self.sim.engine(d).leave(&g, now).is_ok() {
                    self.log.push(format!("{d:?} leaves {g}"));
                }
            }
            44 => {
                if self.running(d) {
                    self.log.push(format!("{d:?} gets a renewed certificate"));
                    self.sim.certify_for(d, 60);
                }
            }
            45..=50 => {
                self.log.push(format!("{d:?} disconnects"));
                self.sim.disconnect(d);
            }
            51..=58 => {
                if self.running(d) {
                    self.log.push(format!("{d:?} connects"));
                    self.sim.connect(d);
                }
            }
            59..=60 => {
                self.log.push(format!("{d:?} crashes"));
                self.sim.crash(d);
            }
            61..=63 => {
                self.log.push(format!("{d:?} restarts"));
                self.sim.restart(d);
            }
            64..=65 => {
                if self.sim.redeliver(d) {
                    self.log.push(format!("{d:?} gets an item again"));
                }
            }
            66..=68 => {
                let ms = self.rng.gen_range(0..3_000);
                self.sim.advance(ms);
            }
            _ => {
                // The network: a few frames one way or the other.
                for _ in 0..self.rng.gen_range(1..8) {
                    match self.rng.gen_range(0..5) {
                        0 | 1 => {
                            self.sim.step_up(d);
                        }
                        2 | 3 => {
                            self.sim.step_down(d);
                        }
                        _ => {
                            // A burst, handled in one transaction.
                            let n = self.rng.gen_range(2..20);
                            self.sim.step_down_batch(d, n);
                        }
                    }
                }
            }
        }
    }

    /// Everyone back, connected, and the network quiet.
    fn quiesce(&mut self) {
        for _ in 0..3 {
            for d in self.devices.clone() {
                self.sim.restart(d);
                self.sim.connect(d);
            }
            self.sim.settle();
        }
    }

    fn check(&mut self) {
        // No fork: every roster device follows the group at its epoch.
        let groups: Vec<(GroupId, u64, BTreeSet<cascade_protocol::DeviceId>)> = self
            .sim
            .relay
            .groups
            .iter()
            .map(|(g, r)| (*g, r.epoch, r.roster.clone()))
            .collect();
        let by_id: BTreeMap<_, _> = self.devices.iter().map(|d| (self.sim.id(*d), *d)).collect();
        for (g, epoch, roster) in &groups {
            for id in roster {
                let d = by_id[id];
                let state = self.sim.state(d, *g);
                let roster_devices: Vec<D> = roster.iter().map(|r| by_id[r]).collect();
                if state == Some(ConversationState::Left) && roster_devices == [d] {
                    continue; // the last one out: nobody could commit the leave
                }
                assert_eq!(
                    state,
                    Some(ConversationState::Active),
                    "{d:?} is in {g}'s roster ({roster_devices:?}) but not in the conversation"
                );
                assert_eq!(self.sim.epoch(d, *g), *epoch, "{d:?} is out of step in {g}");
            }
        }
        // Accepted messages: exactly once on every recipient and the sender.
        let accepted: BTreeMap<(GroupId, u64), Accepted> = self
            .sim
            .relay
            .accepted
            .iter()
            .map(|a| ((a.group, a.seq), a.clone()))
            .collect();
        let mut histories: BTreeMap<(D, GroupId), Vec<cascade_core::Message>> = BTreeMap::new();
        for d in self.devices.clone() {
            for g in self.groups.clone() {
                let h = self
                    .sim
                    .engine(d)
                    .history(&g, None, 1_000_000)
                    .unwrap_or_default();
                histories.insert((d, g), h);
            }
        }
        for ((d, g), h) in &histories {
            for m in h.iter().filter(|m| m.kind == "text") {
                assert!(
                    self.sent.contains_key(&m.id),
                    "{d:?} shows a message nobody sent in {g}"
                );
                if m.sender_device != self.sim.id(*d) {
                    continue;
                }
                match m.state {
                    DeliveryState::Sent | DeliveryState::Delivered => {}
                    DeliveryState::Failed => continue,
                    s => panic!("{d:?}'s message {:?} is still {s:?}", m.text),
                }
                let seq = m.seq.expect("a sent message has its seq");
                let a = accepted.get(&(*g, seq)).unwrap_or_else(|| {
                    panic!("{d:?}'s message {:?} at seq {seq} was not accepted", m.text)
                });
                for r in &a.recipients {
                    let rd = by_id[r];
                    let n = histories[&(rd, *g)].iter().filter(|x| x.id == m.id).count();
                    assert_eq!(
                        n, 1,
                        "{rd:?} shows {:?} (from {d:?}, seq {seq} in {g}) {n} times",
                        m.text
                    );
                }
            }
        }
        for d in self.devices.clone() {
            assert_eq!(
                self.sim.engine(d).outbox_len().expect("outbox"),
                0,
                "{d:?}'s outbox"
            );
        }
    }
}

fn run(seed: u64, steps: usize) {
    // `RUST_LOG=warn` shows what the engines skip and why.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let mut w = World::new(seed);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..steps {
            w.step();
            w.collect();
        }
        w.quiesce();
        w.collect();
        w.check();
    }));
    if let Err(e) = result {
        let tail: Vec<_> = w.log.iter().rev().take(40).rev().cloned().collect();
        eprintln!(
            "seed {seed} failed; replay with CASCADE_SIM_SEED={seed} cargo test -p cascade-core --test random\nlast steps:\n  {}\nreports: {:#?}",
            tail.join("\n  "),
            w.reports
        );
        std::panic::resume_unwind(e);
    }
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn random_interactions_keep_every_device_in_step_and_every_message_once() {
    let steps = env("CASCADE_SIM_STEPS").unwrap_or(1_500) as usize;
    if let Some(seed) = env("CASCADE_SIM_SEED") {
        return run(seed, steps);
    }
    for seed in 0..env("CASCADE_SIM_SEEDS").unwrap_or(4) {
        run(seed, steps);
    }
}
