//! MLS group operations against group size, with raw openmls under
//! Cascade's own group configuration, ciphersuite, capabilities and X.509
//! credential shape: the floor under what the client core does for the same
//! operation (`docs/benchmarks.md`).
//!
//! `cargo xtask bench-mls` runs it; `CASCADE_BENCH_SIZES=10,100,1000,10000`
//! (the default) picks the group sizes, e.g. `CASCADE_BENCH_SIZES=30000`.
//! Under `cargo test` (no `--bench` argument) it runs every operation once
//! in a group of 10, as a check that the benchmark still works.
//!
//! Per size, one group is built once (a creator adds everyone in one
//! commit, an observer joins from the Welcome), then:
//! - `create`: a group of the size made from scratch (sizes up to 1,000);
//! - `process_commit`: the observer processes and merges one commit (a
//!   creator's self-update, a commit with a path);
//! - `add_one`: the creator adds one member and merges;
//! - `join_welcome`: a new member joins from an add's Welcome (with the
//!   ratchet tree in it, as Cascade sends it).
//!
//! Between iterations the member an iteration added is removed again (not
//! measured), so every iteration sees a group of the stated size.
//! - `message`: the creator encrypts a 200-byte message, the observer
//!   decrypts it, in the group as built (no past epochs yet);
//! - `message_with_past_epochs`: the same after `process_commit`'s
//!   commits, with as many past epochs kept as Cascade keeps.
//!
//! The same member operations through the client's own storage (`stored_*`:
//! a member whose openmls state lives in a [`SqliteStore`] file, as on a
//! device, `synchronous=FULL`), to show what storage adds, since the client
//! core loads a group's state from its store for every operation and writes
//! it back in one transaction:
//! - `stored_load`: loading the group's state from the store;
//! - `stored_message`: load, decrypt a message, commit;
//! - `stored_process_commit`: load, process and merge a commit, commit.
//!
//! And the same as the engine does them, with the group kept in memory
//! between operations by the store's group cache (`cached_*`, the cache
//! warm from the previous iteration):
//! - `cached_message`: decrypt a message, commit;
//! - `cached_process_commit`: process and merge a commit, commit.

use std::time::Duration;

use cascade_core::credential::make_credential;
use cascade_core::engine::{create_config, join_config, load_group, CIPHERSUITE};
use cascade_core::store::{ClientStore, SqliteStore, Transactions};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider;

/// About the size of a Cascade device certificate (DER), so the tree has
/// realistic leaf sizes.
const CERTIFICATE_BYTES: usize = 480;

struct Member {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

fn member(n: usize) -> Member {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("keys");
    signer.store(provider.storage()).expect("stored");
    // Distinct credential bytes per member (the relay's certificates are).
    let mut certificate = vec![0x30; CERTIFICATE_BYTES];
    certificate[..8].copy_from_slice(&(n as u64).to_be_bytes());
    Member {
        credential: CredentialWithKey {
            credential: make_credential(&certificate),
            signature_key: signer.public().into(),
        },
        provider,
        signer,
    }
}

fn key_package(m: &Member) -> KeyPackage {
    KeyPackage::builder()
        .leaf_node_capabilities(cascade_core::engine::capabilities())
        .build(CIPHERSUITE, &m.provider, &m.signer, m.credential.clone())
        .expect("KeyPackage")
        .key_package()
        .clone()
}

fn welcome_of(out: MlsMessageOut) -> Welcome {
    match MlsMessageIn::from(out).extract() {
        MlsMessageBodyIn::Welcome(w) => w,
        _ => panic!("not a Welcome"),
    }
}

fn join(m: &Member, welcome: Welcome) -> MlsGroup {
    StagedWelcome::new_from_welcome(&m.provider, &join_config(), welcome, None)
        .expect("staged")
        .into_group(&m.provider)
        .expect("joined")
}

/// A member whose openmls state is in the client's SQLite store.
struct Stored {
    store: SqliteStore,
    group_id: GroupId,
    _dir: tempfile::TempDir,
}

impl Stored {
    /// A new member with a store file in a fresh directory; its KeyPackage.
    fn new(n: usize) -> (Self, KeyPackage) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(
            &dir.path().join("device.db"),
            &cascade_core::StoreKey::key([7; 32]),
        )
        .expect("store");
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("keys");
        signer.store(store.mls().storage()).expect("stored");
        let mut certificate = vec![0x30; CERTIFICATE_BYTES];
        certificate[..8].copy_from_slice(&(n as u64).to_be_bytes());
        let credential = CredentialWithKey {
            credential: make_credential(&certificate),
            signature_key: signer.public().into(),
        };
        let kp = KeyPackage::builder()
            .leaf_node_capabilities(cascade_core::engine::capabilities())
            .build(CIPHERSUITE, &store.mls(), &signer, credential)
            .expect("KeyPackage")
            .key_package()
            .clone();
        let stored = Self {
            store,
            group_id: GroupId::from_slice(b"not joined"),
            _dir: dir,
        };
        (stored, kp)
    }

    fn join(&mut self, welcome: Welcome) {
        let tx = self.store.transaction().expect("transaction");
        let group =
            StagedWelcome::new_from_welcome(&self.store.mls(), &join_config(), welcome, None)
                .expect("staged")
                .into_group(&self.store.mls())
                .expect("joined");
        tx.commit().expect("committed");
        self.group_id = group.group_id().clone();
    }

    fn load(&self) -> MlsGroup {
        MlsGroup::load(self.store.mls().storage(), &self.group_id)
            .expect("loads")
            .expect("stored")
    }

    /// Loads the group from the store, processes `message` and commits.
    fn process(&self, message: ProtocolMessage) {
        let tx = self.store.transaction().expect("transaction");
        let mut group = self.load();
        Self::apply(&self.store, &mut group, message);
        tx.commit().expect("committed");
    }

    /// Processes `message` and commits as the engine does, with the group
    /// from the store's group cache (decoded only on a miss).
    fn process_cached(&self, message: ProtocolMessage) {
        let id = cascade_protocol::GroupId(
            self.group_id
                .as_slice()
                .try_into()
                .expect("a 16-byte group id"),
        );
        let tx = self.store.transaction().expect("transaction");
        let mut group = load_group(&self.store, &id).expect("loads");
        Self::apply(&self.store, &mut group, message);
        drop(group);
        tx.commit().expect("committed");
    }

    fn apply(store: &SqliteStore, group: &mut MlsGroup, message: ProtocolMessage) {
        let processed = group
            .process_message(&store.mls(), message)
            .expect("processed");
        if let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() {
            group
                .merge_staged_commit(&store.mls(), *staged)
                .expect("merged");
        }
    }
}

/// A group of `size` members: the creator and the observer among them.
struct Sized {
    creator: Member,
    group: MlsGroup,
    observer: Member,
    observed: MlsGroup,
    next: usize,
    /// The member the last `add_one` or `join_welcome` iteration added,
    /// removed again before the next so the group keeps its size.
    added: Option<Vec<u8>>,
    /// The member with the client's storage, once it joined.
    stored: Option<Stored>,
}

impl Sized {
    /// Removes the member the previous iteration added (not measured).
    fn restore_size(&mut self) {
        let Some(key) = self.added.take() else {
            return;
        };
        let index = self
            .group
            .members()
            .find(|m| m.signature_key == key)
            .expect("the added member")
            .index;
        self.group
            .remove_members(&self.creator.provider, &self.creator.signer, &[index])
            .expect("remove");
        self.group
            .merge_pending_commit(&self.creator.provider)
            .expect("merge");
    }

    /// The creator adds the member of `kp` and merges; returns the Welcome.
    fn add(&mut self, kp: KeyPackage) -> MlsMessageOut {
        let (_, welcome, _) = self
            .group
            .add_members(&self.creator.provider, &self.creator.signer, &[kp])
            .expect("add");
        self.group
            .merge_pending_commit(&self.creator.provider)
            .expect("merge");
        welcome
    }

    /// The creator's self-update (a commit with a path), merged on its
    /// side; what members process.
    fn self_update(&mut self) -> ProtocolMessage {
        let bundle = self
            .group
            .self_update(
                &self.creator.provider,
                &self.creator.signer,
                LeafNodeParameters::default(),
            )
            .expect("commit");
        self.group
            .merge_pending_commit(&self.creator.provider)
            .expect("merge");
        let (commit, _, _) = bundle.into_contents();
        MlsMessageIn::from(commit)
            .try_into_protocol_message()
            .expect("protocol message")
    }

    /// Adds the member with the client's storage (the group grows by one;
    /// the in-memory observer is left behind and not used after this).
    fn add_stored(&mut self) {
        self.restore_size();
        self.next += 1;
        let (mut stored, kp) = Stored::new(self.next);
        let welcome = self.add(kp);
        stored.join(welcome_of(welcome));
        self.stored = Some(stored);
    }

    /// A new member and its KeyPackage (not measured).
    fn newcomer(&mut self) -> (Member, KeyPackage) {
        self.restore_size();
        self.next += 1;
        let m = member(self.next);
        let kp = key_package(&m);
        self.added = Some(m.signer.public().to_vec());
        (m, kp)
    }
}

fn create(size: usize) -> (Member, MlsGroup, Vec<Member>, MlsMessageOut) {
    let creator = member(0);
    let mut group = MlsGroup::new(
        &creator.provider,
        &creator.signer,
        &create_config(),
        creator.credential.clone(),
    )
    .expect("group");
    let members: Vec<Member> = (1..size).map(member).collect();
    let kps: Vec<KeyPackage> = members.iter().map(key_package).collect();
    let (_, welcome, _) = group
        .add_members(&creator.provider, &creator.signer, &kps)
        .expect("add");
    group
        .merge_pending_commit(&creator.provider)
        .expect("merge");
    (creator, group, members, welcome)
}

fn build(size: usize) -> Sized {
    let (creator, group, mut members, welcome) = create(size);
    let observer = members.swap_remove(0);
    let observed = join(&observer, welcome_of(welcome));
    Sized {
        creator,
        group,
        observer,
        observed,
        next: size,
        added: None,
        stored: None,
    }
}

fn sizes(quick: bool) -> Vec<usize> {
    if quick {
        return vec![10];
    }
    std::env::var("CASCADE_BENCH_SIZES")
        .unwrap_or_else(|_| "10,100,1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("CASCADE_BENCH_SIZES: numbers"))
        .collect()
}

fn groups(c: &mut Criterion) {
    let quick = !std::env::args().any(|a| a == "--bench");
    for size in sizes(quick) {
        let mut bench = c.benchmark_group("mls");
        bench.sample_size(10);
        bench.measurement_time(Duration::from_secs(if size >= 10_000 { 30 } else { 5 }));
        if size <= 1_000 {
            bench.bench_with_input(BenchmarkId::new("create", size), &size, |b, &n| {
                b.iter(|| create(n))
            });
        }
        // Setup and measured closures both change the group.
        let cell = std::cell::RefCell::new(build(size));

        let message = |b: &mut criterion::Bencher| {
            b.iter(|| {
                let g = &mut *cell.borrow_mut();
                let out = g
                    .group
                    .create_message(&g.creator.provider, &g.creator.signer, &[7u8; 200])
                    .expect("encrypt");
                let protocol = MlsMessageIn::from(out)
                    .try_into_protocol_message()
                    .expect("protocol message");
                g.observed
                    .process_message(&g.observer.provider, protocol)
                    .expect("decrypt")
            })
        };
        bench.bench_function(BenchmarkId::new("message", size), message);

        bench.bench_function(BenchmarkId::new("process_commit", size), |b| {
            b.iter_batched(
                || cell.borrow_mut().self_update(),
                |commit| {
                    let g = &mut *cell.borrow_mut();
                    let processed = g
                        .observed
                        .process_message(&g.observer.provider, commit)
                        .expect("processed");
                    let ProcessedMessageContent::StagedCommitMessage(staged) =
                        processed.into_content()
                    else {
                        panic!("not a commit");
                    };
                    g.observed
                        .merge_staged_commit(&g.observer.provider, *staged)
                        .expect("merged");
                },
                BatchSize::PerIteration,
            )
        });

        // The same once the group has past epochs (the commits just processed), as
        // in a group in use: openmls stores the past epochs' state with
        // every message it encrypts or decrypts.
        bench.bench_function(BenchmarkId::new("message_with_past_epochs", size), message);

        // Through the client's storage. Commits first, so the stored
        // member has past epochs as in a group in use.
        cell.borrow_mut().add_stored();
        bench.bench_function(BenchmarkId::new("stored_process_commit", size), |b| {
            b.iter_batched(
                || cell.borrow_mut().self_update(),
                |commit| {
                    let g = cell.borrow();
                    g.stored.as_ref().expect("joined").process(commit)
                },
                BatchSize::PerIteration,
            )
        });
        bench.bench_function(BenchmarkId::new("stored_load", size), |b| {
            b.iter(|| cell.borrow().stored.as_ref().expect("joined").load())
        });
        bench.bench_function(BenchmarkId::new("stored_message", size), |b| {
            b.iter_batched(
                || {
                    let g = &mut *cell.borrow_mut();
                    let out = g
                        .group
                        .create_message(&g.creator.provider, &g.creator.signer, &[7u8; 200])
                        .expect("encrypt");
                    MlsMessageIn::from(out)
                        .try_into_protocol_message()
                        .expect("protocol message")
                },
                |message| {
                    let g = cell.borrow();
                    g.stored.as_ref().expect("joined").process(message)
                },
                BatchSize::PerIteration,
            )
        });

        bench.bench_function(BenchmarkId::new("cached_process_commit", size), |b| {
            b.iter_batched(
                || cell.borrow_mut().self_update(),
                |commit| {
                    let g = cell.borrow();
                    g.stored.as_ref().expect("joined").process_cached(commit)
                },
                BatchSize::PerIteration,
            )
        });
        bench.bench_function(BenchmarkId::new("cached_message", size), |b| {
            b.iter_batched(
                || {
                    let g = &mut *cell.borrow_mut();
                    let out = g
                        .group
                        .create_message(&g.creator.provider, &g.creator.signer, &[7u8; 200])
                        .expect("encrypt");
                    MlsMessageIn::from(out)
                        .try_into_protocol_message()
                        .expect("protocol message")
                },
                |message| {
                    let g = cell.borrow();
                    g.stored.as_ref().expect("joined").process_cached(message)
                },
                BatchSize::PerIteration,
            )
        });

        bench.bench_function(BenchmarkId::new("add_one", size), |b| {
            b.iter_batched(
                || cell.borrow_mut().newcomer(),
                |(m, kp)| (m, cell.borrow_mut().add(kp)),
                BatchSize::PerIteration,
            )
        });

        bench.bench_function(BenchmarkId::new("join_welcome", size), |b| {
            b.iter_batched(
                || {
                    let g = &mut *cell.borrow_mut();
                    let (m, kp) = g.newcomer();
                    let welcome = g.add(kp);
                    (m, welcome_of(welcome))
                },
                |(m, welcome)| join(&m, welcome),
                BatchSize::PerIteration,
            )
        });
        bench.finish();
    }
}

criterion_group!(benches, groups);
criterion_main!(benches);
