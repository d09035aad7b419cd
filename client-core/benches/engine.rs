//! The client engine's per-message work, end to end in one process: a
//! device encrypts a text and stores it with its outbox operation, the
//! simulated relay sequences it, the other device decrypts it, stores it
//! and acknowledges it, and the sender records the acceptance. Real
//! engines over real SQLite files (`synchronous=FULL`), the simulated relay
//! of the engine's tests (`client-core/tests/sim`). Beside `mls_groups`'
//! `message` (raw openmls encrypt + decrypt in memory), the difference is
//! the core's own overhead (`docs/benchmarks.md`).
//!
//! `cargo xtask bench-mls` runs it with `mls_groups`; under `cargo test`
//! it sends one message, as a check that the benchmark still works.

#[path = "../tests/sim/mod.rs"]
mod sim;

use criterion::{criterion_group, criterion_main, Criterion};
use sim::Sim;

fn one_message(c: &mut Criterion) {
    let mut s = Sim::new();
    let alice = s.device("alice@north", "Alice");
    let bob = s.device("bob@north", "Bob");
    let g = s.group(alice, "Ward", &[bob]);
    let mut n = 0u64;
    let mut group = c.benchmark_group("engine");
    group.sample_size(30);
    group.bench_function(
        "message (encrypt, store; sequence; decrypt, store, ack)",
        |b| {
            b.iter(|| {
                n += 1;
                s.send(alice, g, &format!("observation {n}: BP 120/80"));
                s.run();
            })
        },
    );
    group.finish();
    let texts = s.texts(bob, g);
    assert_eq!(
        texts.last().map(String::as_str),
        Some(format!("observation {n}: BP 120/80").as_str()),
        "every message arrived"
    );
}

criterion_group!(benches, one_message);
criterion_main!(benches);
