//! Cascade's fuzz targets.
//!
//! Each target is a function from bytes that must never panic, hang or
//! break a property on any input:
//!
//! - [`frame_decoder`]: the CBOR frame decoder, both directions; a frame
//!   that decodes re-encodes to one that decodes to the same frame.
//! - [`mls_header`]: the relay's reader of the public MLS framing header.
//! - [`stored_records`]: every record the relay's store and the device's
//!   store decode, as a damaged database would present them.
//! - [`relay_requests`]: the relay's handling of a device connection, in
//!   process (the real `run_connection` over an in-memory socket, a real
//!   store): any sequence of WebSocket messages, before or after
//!   authentication, is answered or refused, a `Ping` sent after them is
//!   still answered (or the connection closed), and a fresh connection is
//!   still served.
//! - [`groups`]: several client engines and the relay in process, in the
//!   order the input chooses, crashing and reconnecting; no honest group
//!   forks and no message is shown twice (see [`groups`]'s module).
//!
//! `cargo xtask fuzz <target> [--secs N]` builds a target with LLVM's
//! coverage instrumentation and libFuzzer (`--cfg fuzzing`; all stable
//! compiler options) and runs it on `fuzz/corpus/<target>/`. Built
//! normally, a target replays the files or directories it is given, and
//! `tests/corpus.rs` replays the checked-in corpus in every test run.

mod groups;

pub use groups::{groups, play, Outcome};

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::Message;
use cascade_protocol::frames::{ClientFrame, Push, Request, Response, ServerFrame};
use cascade_protocol::limits::PROTOCOL_VERSION;
use cascade_protocol::{
    decode_client_frame, decode_server_frame, encode_client_frame, encode_server_frame, Bytes,
    DeviceId, UserId,
};
use cascade_server::store::{EnrolmentTokenRecord, NewDevice, Org, SledStore, Store, User};
use cascade_server::AppState;
use ed25519_dalek::{Signer, SigningKey};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Makes a target's `main`: libFuzzer's under `--cfg fuzzing`, otherwise
/// one that replays the files and directories named on the command line.
#[macro_export]
macro_rules! target {
    ($f:path) => {
        #[cfg(fuzzing)]
        libfuzzer_sys::fuzz_target!(|data: &[u8]| $f(data));

        #[cfg(not(fuzzing))]
        fn main() -> std::process::ExitCode {
            $crate::replay_main($f)
        }
    };
}

/// The inputs under `paths` (files, and the files of directories), sorted.
pub fn inputs(paths: impl IntoIterator<Item = PathBuf>) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                let p = entry?.path();
                if p.is_file() {
                    files.push(p);
                }
            }
        } else {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A target's `main` when not fuzzing: runs `target` on every input named.
pub fn replay_main(target: fn(&[u8])) -> std::process::ExitCode {
    let paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        eprintln!("usage: <target> FILE|DIR...   (replays inputs; `cargo xtask fuzz` fuzzes)");
        return std::process::ExitCode::from(2);
    }
    match inputs(paths) {
        Ok(files) => {
            for file in &files {
                match std::fs::read(file) {
                    Ok(data) => target(&data),
                    Err(e) => {
                        eprintln!("{}: {e}", file.display());
                        return std::process::ExitCode::FAILURE;
                    }
                }
            }
            println!("replayed {} inputs", files.len());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The frame decoder, both directions.
pub fn frame_decoder(data: &[u8]) {
    if let Ok(frame) = decode_client_frame(data) {
        let again = decode_client_frame(&encode_client_frame(&frame)).expect("re-encoded decodes");
        assert_eq!(again, frame, "a client frame does not survive a round trip");
    }
    if let Ok(frame) = decode_server_frame(data) {
        let again = decode_server_frame(&encode_server_frame(&frame)).expect("re-encoded decodes");
        assert_eq!(again, frame, "a server frame does not survive a round trip");
    }
}

/// The public MLS framing header reader, and the relay's reader of a
/// GroupInfo's room (protocol §11.4): what they read is in the message, and
/// a room that decodes encodes back to one that decodes equal.
pub fn mls_header(data: &[u8]) {
    use cascade_protocol::room::{Room, ROOM_EXTENSION};
    let _ = cascade_protocol::mls_header::wire_format(data);
    if let Ok(header) = cascade_protocol::mls_header::framing_header(data) {
        // What it read is in the message.
        assert!(header.group_id.len() <= data.len());
    }
    let _ = cascade_protocol::mls_header::split_vl(data);
    if let Ok(Some(ext)) = cascade_protocol::mls_header::group_info_extension(data, ROOM_EXTENSION)
    {
        assert!(ext.len() <= data.len());
    }
    if let Some(room) = Room::decode(data) {
        let again = Room::decode(&room.encode()).expect("a re-encoded room decodes");
        assert_eq!(
            again.encode(),
            room.encode(),
            "a room's encoding is not stable"
        );
    }
}

/// Application content as a device reads it from a decrypted message:
/// today's v1 envelope and the MIMI content format. What MIMI decodes
/// encodes deterministically to a message that decodes again to an equal
/// one (unless an extension holds a NaN, which equals nothing), and whose
/// encoding is stable.
pub fn content(data: &[u8]) {
    use cascade_core::content::mimi::MimiContent;
    let _ = cascade_core::Content::decode(data);
    if let Ok(m) = MimiContent::decode(data) {
        let bytes = m.encode();
        let again = MimiContent::decode(&bytes).expect("a re-encoded message decodes");
        assert_eq!(
            again.encode(),
            bytes,
            "the deterministic encoding is not stable"
        );
        if !m.extensions.iter().any(|(_, v)| has_nan(v)) {
            assert_eq!(again, m, "a MIMI message does not survive a round trip");
        }
    }
}

/// Whether a CBOR value holds a NaN anywhere.
fn has_nan(v: &ciborium::Value) -> bool {
    use ciborium::Value;
    match v {
        Value::Float(f) => f.is_nan(),
        Value::Array(a) => a.iter().any(has_nan),
        Value::Map(m) => m.iter().any(|(k, v)| has_nan(k) || has_nan(v)),
        Value::Tag(_, inner) => has_nan(inner),
        _ => false,
    }
}

/// Stored records of the relay and of the device.
pub fn stored_records(data: &[u8]) {
    cascade_server::store::sled::fuzz_decode_records(data);
    cascade_core::store::fuzz_decode_records(data);
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// How long the relay may take to answer the `Ping` that follows the
/// fuzzed messages before the target calls it a hang.
const ANSWER_WAIT: Duration = Duration::from_secs(20);

/// The relay's handling of one device connection. The input: its first
/// byte's low bit says whether the device authenticates first; then
/// chunks of a kind byte (binary, text or a WebSocket ping) and a 16-bit
/// length, each sent as one WebSocket message.
pub fn relay_requests(data: &[u8]) {
    runtime().block_on(async {
        let relay = Relay::new();
        let (authenticate, rest) = match data.split_first() {
            Some((first, rest)) => (first & 1 == 1, rest),
            None => (false, data),
        };
        let mut peer = relay.connect();
        let nonce = peer.challenge().await;
        if authenticate {
            peer.authenticate(&relay, nonce).await;
        }
        let mut rest = rest;
        while rest.len() >= 3 {
            let kind = rest[0] % 3;
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
            let body = &rest[3..3 + len];
            rest = &rest[3 + len..];
            let message = match kind {
                0 => Message::binary(body.to_vec()),
                1 => Message::text(String::from_utf8_lossy(body).into_owned()),
                _ => Message::Ping(body.to_vec().into()),
            };
            if peer.to_relay.send(Ok(message)).is_err() {
                break; // the relay closed the connection
            }
        }
        peer.ping_answered_or_closed().await;
        // Whatever that connection did, the relay serves a new one.
        let mut fresh = relay.connect();
        let nonce = fresh.challenge().await;
        fresh.authenticate(&relay, nonce).await;
        assert!(
            fresh.ping_answered_or_closed().await,
            "a fresh connection was closed instead of answered"
        );
    });
}

/// A relay over a temporary store with one enrolled device.
struct Relay {
    state: AppState,
    device_id: DeviceId,
    key: SigningKey,
}

impl Relay {
    fn new() -> Self {
        let store = SledStore::open_temporary().expect("store");
        let user_id = UserId::new("alice@north").expect("valid");
        store
            .create_org(&Org {
                org_id: user_id.org(),
                display_name: "North".into(),
                created_at: 0,
                ca_certificate: None,
            })
            .expect("org");
        store
            .create_user(&User {
                user_id: user_id.clone(),
                display_name: "Alice".into(),
                role: "Nurse".into(),
                created_at: 0,
            })
            .expect("user");
        store
            .put_enrolment_token(
                &[1; 32],
                &EnrolmentTokenRecord {
                    user_id,
                    expires_at: u64::MAX,
                    used: false,
                },
            )
            .expect("token");
        let key = SigningKey::from_bytes(&[7; 32]);
        let device = store
            .enrol_device(
                &[1; 32],
                0,
                &NewDevice {
                    device_id: DeviceId([2; 16]),
                    name: "desk".into(),
                    signature_key: Bytes::from(key.verifying_key().to_bytes().to_vec()),
                    enrolled_at: 0,
                },
            )
            .expect("enrol");
        let store: Arc<dyn Store> = Arc::new(store);
        Self {
            state: AppState::new(store),
            device_id: device.device_id,
            key,
        }
    }

    fn connect(&self) -> Peer {
        let (to_relay, from_relay) = cascade_server::ws::connect_in_memory(&self.state);
        Peer {
            to_relay,
            from_relay,
        }
    }
}

/// The device's end of a connection.
struct Peer {
    to_relay: UnboundedSender<Result<Message, axum::Error>>,
    from_relay: UnboundedReceiver<Message>,
}

/// The request id of the `Ping` that follows the fuzzed messages.
const LAST: u64 = u64::MAX;

impl Peer {
    /// The next frame the relay sends, `None` once it closed.
    async fn frame(&mut self) -> Option<ServerFrame> {
        loop {
            let message = tokio::time::timeout(ANSWER_WAIT, self.from_relay.recv())
                .await
                .expect("the relay stopped answering (a hang)")?;
            match message {
                Message::Binary(b) => {
                    return Some(decode_server_frame(&b).expect("the relay sends valid frames"))
                }
                Message::Close(_) => return None,
                _ => {} // pongs
            }
        }
    }

    async fn challenge(&mut self) -> Bytes {
        match self.frame().await {
            Some(ServerFrame::Push(Push::Challenge { nonce })) => nonce,
            other => panic!("expected the challenge, got {other:?}"),
        }
    }

    fn send(&self, id: u64, req: Request) -> bool {
        let frame = encode_client_frame(&ClientFrame {
            v: PROTOCOL_VERSION,
            id,
            req,
        });
        self.to_relay.send(Ok(Message::binary(frame))).is_ok()
    }

    async fn authenticate(&mut self, relay: &Relay, nonce: Bytes) {
        let signature = relay.key.sign(&cascade_protocol::auth::challenge_payload(
            &nonce,
            &relay.device_id,
        ));
        self.send(
            0,
            Request::Authenticate {
                device_id: relay.device_id,
                signature: Bytes::from(signature.to_bytes().to_vec()),
            },
        );
        loop {
            match self.frame().await {
                Some(ServerFrame::Response {
                    id: 0,
                    result: Ok(Response::Authenticated { .. }),
                }) => return,
                Some(ServerFrame::Response { id: 0, result }) => {
                    panic!("authentication refused: {result:?}")
                }
                Some(_) => {}
                None => panic!("closed while authenticating"),
            }
        }
    }

    /// Sends a `Ping` with id [`LAST`] and waits for its answer (`true`) or
    /// for the relay to close the connection (`false`).
    async fn ping_answered_or_closed(&mut self) -> bool {
        if !self.send(LAST, Request::Ping) {
            return false;
        }
        loop {
            match self.frame().await {
                Some(ServerFrame::Response { id: LAST, .. }) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    }
}
