//! Searching a device's history (`store/search.rs`): an FTS5 trigram query
//! joined to `messages` and `conversations`, over real encrypted SQLite
//! files of 100,000 and 1,000,000 synthetic ward messages in 20
//! conversations. Queries: a rare drug name inside words ("amox", one
//! message in 1,000), a word in a third of them ("bay"), two words, one
//! conversation only, and a word that is nowhere. Beside each, the same
//! store's `history` page (the baseline every screen already pays).
//!
//! `cargo xtask bench-search` runs it (`docs/benchmarks.md`); under
//! `cargo test` it builds 2,000 messages and runs each query once, as a
//! check that the benchmark still works.

use std::time::Instant;

use cascade_core::store::{ClientStore, DeliveryState, Message, SqliteStore, StoreKey};
use cascade_core::{DeviceId, GroupId, MessageId, SearchQuery, UserId};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const WORDS: &[&str] = &[
    "obs",
    "stable",
    "bed",
    "bay",
    "porter",
    "handover",
    "BP",
    "120/80",
    "sats",
    "96%",
    "review",
    "please",
    "discharge",
    "pharmacy",
    "transfer",
    "ward",
    "theatre",
    "bloods",
    "chased",
    "fluids",
    "NEWS2",
    "score",
    "pain",
    "escalated",
    "doctor",
    "asked",
    "now",
];

/// A small deterministic generator: the same history in every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn text(rng: &mut Lcg, n: u64) -> String {
    let mut words: Vec<String> = (0..8 + rng.next() % 8)
        .map(|_| WORDS[(rng.next() % WORDS.len() as u64) as usize].to_owned())
        .collect();
    if rng.next().is_multiple_of(3) {
        words.push(format!("bay {}", rng.next() % 12));
    }
    if n % 1000 == 7 {
        words.push("Co-amoxiclav 625 mg".to_owned());
    }
    words.join(" ")
}

fn store_with(n: u64, dir: &std::path::Path) -> (SqliteStore, Vec<GroupId>) {
    let store =
        SqliteStore::open(&dir.join(format!("h{n}.db")), &StoreKey::key([7; 32])).expect("open");
    let groups: Vec<GroupId> = (0..20u8).map(|i| GroupId([i; 16])).collect();
    for (i, g) in groups.iter().enumerate() {
        store
            .insert_conversation(g, &format!("Ward {i}"), 0, 0)
            .expect("conversation");
    }
    let senders: Vec<UserId> = (0..30)
        .map(|i| UserId::new(format!("nurse{i}@north")).expect("user"))
        .collect();
    let mut rng = Lcg(42);
    let started = Instant::now();
    let t0 = 1_790_000_000_000u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        store.begin_transaction().expect("begin");
        for &i in chunk {
            let m = Message {
                id: MessageId::random(),
                group_id: groups[(rng.next() % 20) as usize],
                sender: senders[(rng.next() % 30) as usize].clone(),
                sender_device: DeviceId([1; 16]),
                sent_at: t0 + i * 1000,
                seq: Some(i),
                text: Some(text(&mut rng, i)),
                kind: "text".into(),
                state: DeliveryState::Received,
                reply_to: None,
                edited_at: None,
                deleted_by: None,
                reactions: Vec::new(),
                expires_at: None,
                read_by: 0,
                mentions: Vec::new(),
                attachment: None,
            };
            store.insert_message(&m, t0, false).expect("insert");
        }
        store.commit_transaction().expect("commit");
    }
    eprintln!(
        "search bench: {n} messages stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (store, groups)
}

fn search(c: &mut Criterion) {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let sizes: &[u64] = if benchmarking {
        &[100_000, 1_000_000]
    } else {
        &[2_000]
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("search");
    group.sample_size(20);
    for &n in sizes {
        let (store, groups) = store_with(n, dir.path());
        let query = |text: &str, group: Option<GroupId>| SearchQuery {
            text: text.into(),
            group,
            limit: 50,
            ..SearchQuery::default()
        };
        let cases = [
            ("rare word (amox)", query("amox", None)),
            ("common word (bay)", query("bay", None)),
            ("two words (amox 625)", query("amox 625", None)),
            ("one conversation (amox)", query("amox", Some(groups[3]))),
            ("nowhere (zqxj)", query("zqxj", None)),
        ];
        for (name, q) in cases {
            let hits = store.search(&q).expect("search");
            assert!(
                name.starts_with("nowhere") || !hits.is_empty(),
                "{name} finds something in {n}"
            );
            group.bench_with_input(BenchmarkId::new(name, n), &q, |b, q| {
                b.iter(|| store.search(q).expect("search"))
            });
        }
        group.bench_with_input(
            BenchmarkId::new("baseline: history page of 50", n),
            &groups[3],
            |b, g| b.iter(|| store.history(g, None, 50).expect("history")),
        );
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
