//! The wire codec and the MLS framing-header reader, each beside a
//! baseline measured in the same run (`docs/benchmarks.md`):
//!
//! - `decode_client_frame` of a `SendMessage` frame against an untyped
//!   CBOR parse of the same bytes (`ciborium::Value`): what the relay's
//!   typed decoding costs over reading the CBOR at all;
//! - `encode_server_frame` of a `Deliver` frame against writing the same
//!   frame as an untyped CBOR value;
//! - `framing_header` (the relay's read of group, epoch and content type)
//!   against openmls parsing the whole `MlsMessage`, which is what the
//!   relay would otherwise do.
//!
//! The MLS messages are real: a PrivateMessage of a 200-byte and of a
//! 4 KiB text, encrypted in a two-member group under Cascade's group
//! configuration. `cargo xtask bench-mls` runs it; under `cargo test` each
//! function runs once, as a check that the benchmark still works.

use cascade_core::credential::make_credential;
use cascade_core::engine::{create_config, CIPHERSUITE};
use cascade_protocol::frames::{
    Bytes, ClientFrame, ItemKind, Push, QueueItem, Request, ServerFrame,
};
use cascade_protocol::mls_header::framing_header;
use cascade_protocol::{
    decode_client_frame, encode_client_frame, encode_server_frame, DeviceId, GroupId,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

/// Real MLS PrivateMessages (TLS bytes) of `sizes` bytes of text.
fn private_messages(sizes: &[usize]) -> Vec<Vec<u8>> {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("keys");
    signer.store(provider.storage()).expect("stored");
    let credential = CredentialWithKey {
        credential: make_credential(&[0x30; 480]),
        signature_key: signer.public().into(),
    };
    let mut group = MlsGroup::new(&provider, &signer, &create_config(), credential).expect("group");
    sizes
        .iter()
        .map(|&n| {
            group
                .create_message(&provider, &signer, &vec![b'a'; n])
                .expect("encrypted")
                .tls_serialize_detached()
                .expect("serialised")
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let sizes = [200, 4096];
    let messages = private_messages(&sizes);
    let group_id = GroupId([7; 16]);
    let mut g = c.benchmark_group("codec");
    for (size, mls) in sizes.iter().zip(&messages) {
        let frame = encode_client_frame(&ClientFrame {
            v: cascade_protocol::limits::PROTOCOL_VERSION,
            id: 42,
            req: Request::SendMessage {
                group_id,
                message: Bytes::from(mls.clone()),
                to: Vec::new(),
            },
        });
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("decode_client_frame SendMessage", size),
            &frame,
            |b, frame| {
                b.iter(|| decode_client_frame(std::hint::black_box(frame)).expect("decodes"))
            },
        );
        g.bench_with_input(
            BenchmarkId::new("baseline: untyped CBOR parse", size),
            &frame,
            |b, frame| {
                b.iter(|| {
                    ciborium::from_reader::<ciborium::Value, _>(std::hint::black_box(&frame[..]))
                        .expect("CBOR")
                })
            },
        );

        let deliver = ServerFrame::Push(Push::Deliver(QueueItem {
            queue_id: 1_000_000,
            group_id,
            seq: 123_456,
            sender: DeviceId([9; 16]),
            kind: ItemKind::Application,
            payload: Bytes::from(mls.clone()),
            addressed: false,
        }));
        let mut untyped = Vec::new();
        ciborium::into_writer(&deliver, &mut untyped).expect("CBOR");
        let value: ciborium::Value = ciborium::from_reader(&untyped[..]).expect("CBOR");
        g.bench_with_input(
            BenchmarkId::new("encode_server_frame Deliver", size),
            &deliver,
            |b, frame| b.iter(|| encode_server_frame(std::hint::black_box(frame))),
        );
        g.bench_with_input(
            BenchmarkId::new("baseline: untyped CBOR write", size),
            &value,
            |b, value| {
                b.iter(|| {
                    let mut out = Vec::with_capacity(untyped.len());
                    ciborium::into_writer(std::hint::black_box(value), &mut out).expect("CBOR");
                    out
                })
            },
        );

        g.throughput(Throughput::Bytes(mls.len() as u64));
        g.bench_with_input(BenchmarkId::new("framing_header", size), mls, |b, mls| {
            b.iter(|| framing_header(std::hint::black_box(mls)).expect("header"))
        });
        g.bench_with_input(
            BenchmarkId::new("baseline: openmls MlsMessageIn parse", size),
            mls,
            |b, mls| {
                b.iter(|| {
                    MlsMessageIn::tls_deserialize_exact(std::hint::black_box(&mls[..]))
                        .expect("MLS")
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
