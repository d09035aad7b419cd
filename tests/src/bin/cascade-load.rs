//! `cascade-load`: a load generator against a real relay process
//! (`cargo xtask bench`). Traffic stays on loopback, and every loop is
//! bounded in count.
//!
//! Two modes:
//! - `relay`: raw protocol clients post synthetic MLS application messages
//!   into one group and drain their queues. This measures the relay alone:
//!   sequencing, the durable write before each answer, fan-out.
//! - `e2e`: real `cascade-core` clients in several groups exchange real MLS
//!   messages. This measures the whole path: encryption, SQLite, relay,
//!   decryption.
//!
//! Results are printed as Markdown table rows for `docs/benchmarks.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cascade_core::{Event, GroupId};
use cascade_protocol::*;
use cascade_tests::raw::{mls, RawConn, RawDevice};
use cascade_tests::{Peer, Relay};
use tokio::sync::Mutex;

struct Args {
    mode: String,
    devices: usize,
    groups: usize,
    members: usize,
    messages: usize,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        mode: "relay".into(),
        devices: 8,
        groups: 4,
        members: 4,
        messages: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--mode" => a.mode = val()?,
            "--devices" => a.devices = val()?.parse()?,
            "--groups" => a.groups = val()?.parse()?,
            "--members" => a.members = val()?.parse()?,
            "--messages" => a.messages = val()?.parse()?,
            other => bail!(
                "unknown argument {other}; usage: cascade-load [--mode relay|e2e] [--devices N] [--groups N] [--members N] [--messages N]"
            ),
        }
    }
    Ok(a)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Prints one result as a Markdown table (header, rule, row).
async fn report(
    header: &[&str; 2],
    mode: &str,
    shape: &str,
    sent: usize,
    delivered: usize,
    elapsed: Duration,
    latencies: &Mutex<Vec<Duration>>,
) {
    let mut l = latencies.lock().await.clone();
    l.sort();
    let secs = elapsed.as_secs_f64();
    println!(
        "| mode | {} | messages sent | deliveries | seconds | sent/s | deliveries/s | {} p50 ms | p95 ms | p99 ms |",
        header[0], header[1]
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {mode} | {shape} | {sent} | {delivered} | {secs:.2} | {:.0} | {:.0} | {} | {} | {} |",
        sent as f64 / secs,
        delivered as f64 / secs,
        ms(percentile(&l, 0.5)),
        ms(percentile(&l, 0.95)),
        ms(percentile(&l, 0.99)),
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse()?;
    match args.mode.as_str() {
        "relay" => relay_mode(&args).await,
        "e2e" => e2e_mode(&args).await,
        m => bail!("unknown mode {m}"),
    }
}

/// Raw devices in one group, each posting `messages` synthetic application
/// messages one after another (each waits for its durable acceptance), while
/// every device drains and acks its queue.
async fn relay_mode(args: &Args) -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("bench").await?;
    let mut devices = Vec::new();
    for i in 0..args.devices {
        devices.push(RawDevice::enrol(&relay, &format!("u{i}@bench")).await?);
    }
    let group = GroupId::random();
    let mut owner = RawConn::authenticated(&relay, &devices[0]).await?;
    let b = |v: Vec<u8>| Bytes::from(v);
    owner
        .call(Request::CreateGroup {
            group_id: group,
            group_info: b(mls::group_info()),
        })
        .await?
        .map_err(|e| anyhow::anyhow!("create: {e}"))?;
    owner
        .call(Request::Commit(CommitBundle {
            group_id: group,
            epoch: 0,
            commit: b(mls::commit(&group, 0)),
            welcome: Some(b(vec![0, 1, 0, 3, 0])),
            group_info: b(mls::group_info()),
            added: devices[1..].iter().map(|d| d.device_id).collect(),
            removed: vec![],
        }))
        .await?
        .map_err(|e| anyhow::anyhow!("commit: {e}"))?;
    drop(owner);

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for d in devices {
        let url = relay.url.clone();
        let latencies = latencies.clone();
        let n = args.messages;
        let others = args.devices - 1;
        tasks.push(tokio::spawn(async move {
            drive_raw_device(&url, d, group, n, others, latencies).await
        }));
    }
    let mut delivered = 0;
    for t in tasks {
        delivered += t.await??;
    }
    let elapsed = start.elapsed();
    let sent = args.devices * args.messages;
    let header = ["devices", "accept"];
    report(
        &header,
        "relay",
        &args.devices.to_string(),
        sent,
        delivered,
        elapsed,
        &latencies,
    )
    .await;
    Ok(())
}

async fn drive_raw_device(
    url: &str,
    device: RawDevice,
    group: GroupId,
    n: usize,
    others: usize,
    latencies: Arc<Mutex<Vec<Duration>>>,
) -> Result<usize> {
    let mut c = RawConn::authenticated_url(url, &device).await?;
    let expected = n * others;
    let mut received = 0usize;
    let mut mine = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = c
            .call(Request::SendMessage {
                group_id: group,
                message: Bytes::from(mls::application(&group, 1)),
            })
            .await?;
        if !matches!(r, Ok(Response::MessageAccepted { .. })) {
            bail!("send refused: {r:?}");
        }
        mine.push(t.elapsed());
        received += ack_pushes(&mut c).await?;
    }
    latencies.lock().await.extend(mine);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Acking can bring in more pushes (read while waiting for the ack's
        // answer); drain until none are left before waiting on the socket.
        while c.pushes.iter().any(|p| matches!(p, Push::Deliver(_))) {
            received += ack_pushes(&mut c).await?;
        }
        if received >= expected || Instant::now() > deadline {
            break;
        }
        match c.next().await {
            Ok(ServerFrame::Push(p)) => c.pushes.push(p),
            Ok(_) => {}
            Err(e) => {
                drop(c);
                let mut again = RawConn::authenticated_url(url, &device).await?;
                let mut left = 0;
                loop {
                    match again.next().await? {
                        ServerFrame::Push(Push::Deliver(_)) => left += 1,
                        ServerFrame::Push(Push::QueueDrained) => break,
                        _ => {}
                    }
                }
                left += again
                    .pushes
                    .iter()
                    .filter(|p| matches!(p, Push::Deliver(_)))
                    .count();
                bail!("device {} waited for {expected} deliveries, got {received}: {e}; {left} still queued at the relay", device.device_id)
            }
        }
    }
    Ok(received)
}

async fn ack_pushes(c: &mut RawConn) -> Result<usize> {
    let ids: Vec<u64> = c
        .pushes
        .drain(..)
        .filter_map(|p| match p {
            Push::Deliver(i) => Some(i.queue_id),
            _ => None,
        })
        .collect();
    let n = ids.len();
    for chunk in ids.chunks(limits::MAX_ACK_BATCH) {
        c.call(Request::Ack {
            queue_ids: chunk.to_vec(),
        })
        .await?
        .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
    }
    Ok(n)
}

/// Real clients: `groups` groups of `members` users; everyone sends
/// `messages` messages; latency is from the sender's send call to each
/// recipient's event.
async fn e2e_mode(args: &Args) -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("bench").await?;
    let mut groups: Vec<(GroupId, Vec<Peer>)> = Vec::new();
    for g in 0..args.groups {
        let mut peers = Vec::new();
        for m in 0..args.members {
            let p = relay
                .user(&format!("g{g}m{m}@bench"), &format!("G{g} M{m}"), "Bench")
                .await?;
            p.sync().await?;
            peers.push(p);
        }
        let id = peers[0].client.create_group(&format!("bench {g}")).await?;
        let users = peers[1..].iter().map(|p| p.user()).collect();
        peers[0].client.add_members(id, users).await?;
        peers[0].sync().await?;
        for p in &peers[1..] {
            p.joined(id).await?;
            p.sync().await?;
        }
        groups.push((id, peers));
    }
    let total_peers = args.groups * args.members;
    let expected_per_peer = (args.members - 1) * args.messages;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (group, peers) in groups {
        for p in peers {
            let latencies = latencies.clone();
            let n = args.messages;
            tasks.push(tokio::spawn(async move {
                let mut events = p.client.subscribe();
                // Sending and receiving run side by side, so a long burst
                // does not overrun the event channel.
                let send = async {
                    for i in 0..n {
                        let stamp = cascade_core::client::now_ms();
                        p.client.send_text(group, &format!("{stamp} {i}")).await?;
                    }
                    anyhow::Ok(())
                };
                let receive = async {
                    let mut got = 0;
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
                    while got < expected_per_peer {
                        let ev = tokio::time::timeout_at(deadline, events.recv()).await??;
                        if let Event::Message(m) = ev {
                            if m.state == cascade_core::DeliveryState::Received {
                                got += 1;
                                let sent: u64 = m
                                    .text
                                    .as_deref()
                                    .and_then(|t| t.split(' ').next())
                                    .and_then(|s| s.parse().ok())
                                    .unwrap_or(0);
                                let now = cascade_core::client::now_ms();
                                latencies
                                    .lock()
                                    .await
                                    .push(Duration::from_millis(now.saturating_sub(sent)));
                            }
                        }
                    }
                    anyhow::Ok(got)
                };
                let ((), got) = tokio::try_join!(send, receive)?;
                // Everyone has everything now; the delivery receipts that
                // follow (after their batching delay) are not counted.
                let done = start.elapsed();
                p.sync().await?;
                anyhow::Ok((got, done))
            }));
        }
    }
    let mut delivered = 0;
    let mut elapsed = Duration::ZERO;
    for t in tasks {
        let (got, done) = t.await??;
        delivered += got;
        elapsed = elapsed.max(done);
    }
    let sent = total_peers * args.messages;
    let header = ["groups × members", "e2e"];
    let shape = format!("{} × {}", args.groups, args.members);
    report(&header, "e2e", &shape, sent, delivered, elapsed, &latencies).await;
    Ok(())
}
