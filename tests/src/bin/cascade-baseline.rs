//! `cascade-baseline`: the physical baseline the relay is measured against
//! (`cargo xtask bench`). A raw fan-out server on the same WebSocket library
//! and the same wire frames as `cascade-server`, so `cascade-load` drives
//! both with the same workload, but with none of the relay's own work: no
//! store, no authentication (any signature is accepted), no MLS checks, no
//! queues (a device that is not connected misses the message).
//!
//! With `--fsync DIR`, every message is appended to a log file in `DIR`
//! and the log is fsynced before the message is fanned out and answered.
//! Fsyncs are shared (group commit): one writer thread takes every message
//! that arrived while the previous fsync ran, writes them, fsyncs once and
//! then answers them all, in order. This separates the cost of durability
//! from the cost of Cascade's own work.
//!
//! Prints `cascade-baseline listening on http://ADDR` once it listens.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use cascade_protocol::frames::{Bytes, ItemKind, Push, QueueItem, Response};
use cascade_protocol::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Frames waiting for one connection, as in the relay.
const CHANNEL_CAPACITY: usize = 4096;

/// A raw tokio-tungstenite fan-out server on Cascade's frames, the
/// load generator's baseline (`docs/benchmarks.md`).
#[derive(clap::Parser)]
#[command(name = "cascade-baseline")]
struct Args {
    /// Address to listen on; the chosen one is printed.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Append every message to a log in this directory and fsync it (one
    /// fsync per batch of messages) before fan-out and answer.
    #[arg(long)]
    fsync: Option<PathBuf>,
    /// WebSocket read buffer per connection, bytes.
    #[arg(long)]
    read_buffer: Option<usize>,
    /// WebSocket write buffer per connection, bytes.
    #[arg(long)]
    write_buffer: Option<usize>,
}

fn parse() -> Result<Args> {
    Ok(<Args as clap::Parser>::parse())
}

/// A frame for one connection: an encoded answer, or a shared item to
/// deliver with this device's queue id (encoded by the connection's writer,
/// as the relay does).
enum Out {
    Frame(Vec<u8>),
    Deliver(u64, Arc<QueueItem>),
}

struct Conn {
    tx: mpsc::Sender<Out>,
    next_queue_id: u64,
}

#[derive(Default)]
struct Group {
    roster: Vec<DeviceId>,
    epoch: u64,
    seq: u64,
}

#[derive(Default)]
struct State {
    conns: HashMap<DeviceId, Conn>,
    groups: HashMap<GroupId, Group>,
}

type Shared = Arc<Mutex<State>>;

/// A message waiting for the group-commit writer.
struct Pending {
    group_id: GroupId,
    sender: DeviceId,
    message: Bytes,
    request_id: u64,
    reply: mpsc::Sender<Out>,
}

fn answer(id: u64, result: Result<Response, ProtocolError>) -> Out {
    Out::Frame(encode_server_frame(&ServerFrame::Response { id, result }))
}

/// Sequences a message in its group and offers it to every other connected
/// member; answers the sender.
fn fan_out(state: &Shared, p: Pending) {
    let mut st = state.lock().expect("state poisoned");
    let State { conns, groups } = &mut *st;
    let result = match groups.get_mut(&p.group_id) {
        None => Err(ProtocolError::UnknownGroup),
        Some(g) if !g.roster.contains(&p.sender) => Err(ProtocolError::NotMember),
        Some(g) => {
            g.seq += 1;
            let item = Arc::new(QueueItem {
                queue_id: 0,
                group_id: p.group_id,
                seq: g.seq,
                sender: p.sender,
                kind: ItemKind::Application,
                payload: p.message,
                addressed: false,
            });
            for d in g.roster.iter().filter(|d| **d != p.sender) {
                if let Some(c) = conns.get_mut(d) {
                    c.next_queue_id += 1;
                    if c.tx
                        .try_send(Out::Deliver(c.next_queue_id, Arc::clone(&item)))
                        .is_err()
                    {
                        conns.remove(d);
                    }
                }
            }
            Ok(Response::MessageAccepted { seq: g.seq })
        }
    };
    let _ = p.reply.try_send(answer(p.request_id, result));
}

/// The group-commit writer: appends every message that arrived during the
/// previous fsync, fsyncs once, then fans them out and answers, in order.
fn writer(dir: PathBuf, state: Shared, mut rx: mpsc::UnboundedReceiver<Pending>) -> Result<()> {
    std::fs::create_dir_all(&dir)?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("baseline.log"))
        .context("opening the log")?;
    let mut batch = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        for p in &batch {
            log.write_all(&(p.message.len() as u32).to_be_bytes())?;
            log.write_all(p.group_id.as_bytes())?;
            log.write_all(&p.message)?;
        }
        log.sync_data()?;
        for p in batch.drain(..) {
            fan_out(&state, p);
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse()?;
    let state: Shared = Arc::default();
    let durable = args.fsync.clone().map(|dir| {
        let (tx, rx) = mpsc::unbounded_channel();
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            if let Err(e) = writer(dir, st, rx) {
                eprintln!("cascade-baseline: the writer failed: {e:#}");
                std::process::exit(1);
            }
        });
        tx
    });
    let mut config = WebSocketConfig::default();
    if let Some(n) = args.read_buffer {
        config = config.read_buffer_size(n);
    }
    if let Some(n) = args.write_buffer {
        config = config.write_buffer_size(n);
    }
    let listener = TcpListener::bind(&args.listen).await?;
    println!(
        "cascade-baseline listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let state = Arc::clone(&state);
        let durable = durable.clone();
        tokio::spawn(async move {
            if let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await {
                connection(ws, state, durable).await;
            }
        });
    }
}

async fn connection(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    state: Shared,
    durable: Option<mpsc::UnboundedSender<Pending>>,
) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Out>(CHANNEL_CAPACITY);
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let bytes = match out {
                Out::Frame(b) => b,
                Out::Deliver(queue_id, item) => {
                    encode_server_frame(&ServerFrame::Push(Push::Deliver(QueueItem {
                        queue_id,
                        ..(*item).clone()
                    })))
                }
            };
            if sink.send(WsMessage::Binary(bytes.into())).await.is_err() {
                break;
            }
        }
    });
    let challenge = Push::Challenge {
        nonce: Bytes::from(vec![0; 32]),
    };
    let _ = tx
        .send(Out::Frame(encode_server_frame(&ServerFrame::Push(
            challenge,
        ))))
        .await;
    let mut me: Option<DeviceId> = None;
    while let Some(Ok(msg)) = stream.next().await {
        let WsMessage::Binary(bytes) = msg else {
            continue;
        };
        let Ok(frame) = decode_client_frame(&bytes) else {
            continue;
        };
        let id = frame.id;
        let out = match (frame.req, me) {
            (Request::Authenticate { device_id, .. }, None) => {
                me = Some(device_id);
                state.lock().expect("state poisoned").conns.insert(
                    device_id,
                    Conn {
                        tx: tx.clone(),
                        next_queue_id: 0,
                    },
                );
                let _ = tx
                    .send(answer(
                        id,
                        Ok(Response::Authenticated {
                            user_id: UserId::new("baseline@bench").expect("valid"),
                            key_package_stock: 0,
                            has_last_resort: false,
                            certificate: None,
                        }),
                    ))
                    .await;
                Out::Frame(encode_server_frame(&ServerFrame::Push(Push::QueueDrained)))
            }
            (_, None) => answer(id, Err(ProtocolError::Unauthenticated)),
            (Request::CreateGroup { group_id, .. }, Some(d)) => {
                let mut st = state.lock().expect("state poisoned");
                st.groups.insert(
                    group_id,
                    Group {
                        roster: vec![d],
                        ..Group::default()
                    },
                );
                answer(id, Ok(Response::GroupCreated))
            }
            (Request::Commit(bundle), Some(_)) => {
                let mut st = state.lock().expect("state poisoned");
                match st.groups.get_mut(&bundle.group_id) {
                    None => answer(id, Err(ProtocolError::UnknownGroup)),
                    Some(g) => {
                        g.roster.retain(|d| !bundle.removed.contains(d));
                        g.roster.extend(bundle.added.iter().copied());
                        g.epoch += 1;
                        g.seq += 1;
                        answer(
                            id,
                            Ok(Response::CommitAccepted {
                                epoch: g.epoch,
                                seq: g.seq,
                            }),
                        )
                    }
                }
            }
            (
                Request::SendMessage {
                    group_id, message, ..
                },
                Some(sender),
            ) => {
                let p = Pending {
                    group_id,
                    sender,
                    message,
                    request_id: id,
                    reply: tx.clone(),
                };
                match &durable {
                    Some(w) => {
                        if w.send(p).is_err() {
                            break;
                        }
                    }
                    None => fan_out(&state, p),
                }
                continue;
            }
            (Request::Ack { .. }, Some(_)) => answer(id, Ok(Response::Acked)),
            (Request::Ping, Some(_)) => answer(id, Ok(Response::Pong)),
            (_, Some(_)) => answer(
                id,
                Err(ProtocolError::Malformed {
                    reason: "the baseline does not serve this request".into(),
                }),
            ),
        };
        if tx.send(out).await.is_err() {
            break;
        }
    }
    if let Some(d) = me {
        let mut st = state.lock().expect("state poisoned");
        if st.conns.get(&d).is_some_and(|c| c.tx.same_channel(&tx)) {
            st.conns.remove(&d);
        }
    }
    drop(tx);
    let _ = writer.await;
}
