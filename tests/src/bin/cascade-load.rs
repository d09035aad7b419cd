//! `cascade-load`: a load generator against a real relay process
//! (`cargo xtask bench`). Traffic stays on loopback, and every loop is
//! bounded in count.
//!
//! Three modes:
//! - `relay`: raw protocol clients post synthetic MLS application messages
//!   into one group and drain their queues. This measures the relay alone:
//!   sequencing, the durable write before each answer, fan-out. The same
//!   workload also runs against `cascade-baseline` (raw fan-out, with and
//!   without a group-commit fsync) in the same run, and every relay figure
//!   is printed as a ratio to the baselines (`--target`).
//! - `e2e`: real `cascade-core` clients in several groups exchange real MLS
//!   messages. This measures the whole path: encryption, SQLite, relay,
//!   decryption.
//!
//! - `idle`: connection density, against the relay and the baseline:
//!   `--connections N` authenticated idle connections, the server's memory
//!   per connection and the time to connect them and to reconnect them all.
//!
//! Results are printed as Markdown table rows for `docs/benchmarks.md`;
//! `--json FILE` also writes them with the machine, commit and command, and
//! `--compare A.json B.json` prints the change between two such files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cascade_core::{Event, GroupId};
use cascade_protocol::*;
use cascade_tests::raw::{mls, RawConn, RawDevice};
use cascade_tests::{Peer, Relay};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Mutex;

/// The size of a synthetic message: about a short text message's MLS
/// `PrivateMessage` in Cascade (framing header, encrypted sender data,
/// the content with its signature and padding, AEAD tags).
const DEFAULT_SIZE: usize = 256;

/// A load generator against a real relay process and the raw fan-out
/// baselines (`docs/benchmarks.md`).
#[derive(clap::Parser)]
#[command(name = "cascade-load")]
struct Args {
    /// relay, e2e or idle.
    #[arg(long, default_value = "relay")]
    mode: String,
    /// relay, relay-nofsync, baseline, baseline-fsync or all (relay mode).
    #[arg(long, default_value = "all")]
    target: String,
    /// Devices in the group (relay mode).
    #[arg(long, default_value_t = 8)]
    devices: usize,
    /// How many of them post (default: all).
    #[arg(long)]
    senders: Option<usize>,
    /// Groups (e2e mode).
    #[arg(long, default_value_t = 4)]
    groups: usize,
    /// Members per group (e2e mode).
    #[arg(long, default_value_t = 4)]
    members: usize,
    /// Messages per sender.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Message size in bytes (relay mode).
    #[arg(long, default_value_t = DEFAULT_SIZE)]
    size: usize,
    /// Messages per second per sender (open loop); closed loop without it.
    #[arg(long)]
    rate: Option<f64>,
    /// Also write the figures, with machine, commit and command, here.
    #[arg(long)]
    json: Option<String>,
    /// Print the change between two JSON records, and nothing else.
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"])]
    compare: Option<Vec<String>>,
    /// Idle connections (idle mode).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// The command line, for the JSON record.
    #[arg(skip)]
    command: String,
}

fn parse() -> Result<Args> {
    let mut a = <Args as clap::Parser>::parse();
    a.command = std::env::args().collect::<Vec<_>>().join(" ");
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
    if let Ok(filter) = std::env::var("CASCADE_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let args = parse()?;
    if let Some([a, b]) = args.compare.as_deref() {
        return compare(a, b);
    }
    match args.mode.as_str() {
        "relay" => relay_mode(&args).await,
        "e2e" => e2e_mode(&args).await,
        "idle" => idle_mode(&args).await,
        m => bail!("unknown mode {m}"),
    }
}

/// Which server a `relay`-mode run drives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    /// `cascade-server` on its embedded store.
    Relay,
    /// `cascade-server` answering without durable flushes (the cost of
    /// durability, against `Relay`).
    RelayNoFsync,
    /// `cascade-baseline`: raw fan-out, nothing durable.
    Baseline,
    /// `cascade-baseline --fsync`: raw fan-out after a group-commit fsync.
    BaselineFsync,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Relay => "relay",
            Target::RelayNoFsync => "relay-nofsync",
            Target::Baseline => "baseline",
            Target::BaselineFsync => "baseline-fsync",
        }
    }
}

/// A running server and what is needed to read its figures.
struct Server {
    url: String,
    pid: u32,
    _relay: Option<Relay>,
    _child: Option<tokio::process::Child>,
    _dir: tempfile::TempDir,
}

async fn start_server(target: Target) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    if matches!(target, Target::Relay | Target::RelayNoFsync) {
        // Every simulated device connects from loopback: the cap on
        // connections per source address (which protects a relay in
        // service) would refuse them, so it is lifted here.
        let lifted = ["--max-connections-per-address", "1000000"];
        let relay = match target {
            Target::Relay => Relay::start_with(&lifted).await?,
            _ => {
                Relay::start_with(&[lifted[0], lifted[1], "--unsafe-no-fsync-for-benchmarks"])
                    .await?
            }
        };
        relay.org("bench").await?;
        return Ok(Server {
            url: relay.url.clone(),
            pid: relay.pid().context("the relay has no pid")?,
            _relay: Some(relay),
            _child: None,
            _dir: dir,
        });
    }
    let mut cmd = tokio::process::Command::new(cascade_tests::bin_dir().join("cascade-baseline"));
    // The same WebSocket read buffer as the relay's.
    cmd.args(["--read-buffer", &IDLE_READ_BUFFER.to_string()]);
    if target == Target::BaselineFsync {
        cmd.arg("--fsync").arg(dir.path());
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting cascade-baseline (build it with cargo xtask bench)")?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("piped")?).lines();
    let line = lines
        .next_line()
        .await?
        .context("cascade-baseline exited before listening")?;
    let addr = line
        .strip_prefix("cascade-baseline listening on ")
        .with_context(|| format!("unexpected line from cascade-baseline: {line}"))?;
    Ok(Server {
        url: addr.to_owned(),
        pid: child.id().context("the baseline has no pid")?,
        _relay: None,
        _child: Some(child),
        _dir: dir,
    })
}

/// The server's resident memory (KiB) and CPU time (user + system).
fn process_stats(pid: u32) -> Result<(u64, Duration)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = &stat[stat.rfind(')').context("bad stat")? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, in ticks of
    // USER_HZ (100 on Linux).
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok((rss_kib, Duration::from_millis(ticks * 10)))
}

/// What one device saw.
#[derive(Default)]
struct Outcome {
    accepts: Vec<Duration>,
    deliveries: Vec<Duration>,
    done: Duration,
}

/// One `relay`-mode run's figures.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
struct RelayFigures {
    target: String,
    devices: usize,
    senders: usize,
    messages: usize,
    size: usize,
    rate: Option<f64>,
    accepted: usize,
    deliveries: usize,
    seconds: f64,
    accepted_per_s: f64,
    deliveries_per_s: f64,
    accept_ms: [f64; 3],
    delivery_ms: [f64; 3],
    rss_mib: f64,
    cpu_s_per_1k_deliveries: f64,
}

/// Raw devices in one group of `devices`; `senders` of them post `messages`
/// synthetic application messages of `size` bytes each (closed loop: each
/// waits for its durable acceptance; open loop with `--rate`: at a fixed
/// rate, latency counted from when each message was due), while every
/// device drains and acks its queue. Runs against the relay (with and
/// without fsync), the raw baseline and the baseline with group-commit
/// fsync, as `--target` says.
async fn relay_mode(args: &Args) -> Result<()> {
    let targets: Vec<Target> = match args.target.as_str() {
        "all" => vec![
            Target::Baseline,
            Target::BaselineFsync,
            Target::RelayNoFsync,
            Target::Relay,
        ],
        "relay" => vec![Target::Relay],
        "relay-nofsync" => vec![Target::RelayNoFsync],
        "baseline" => vec![Target::Baseline],
        "baseline-fsync" => vec![Target::BaselineFsync],
        t => bail!("unknown target {t}: relay, relay-nofsync, baseline, baseline-fsync or all"),
    };
    let mut results = Vec::new();
    for t in targets {
        results.push(relay_run(args, t).await?);
    }
    print_relay_table(&results);
    if let Some(path) = &args.json {
        write_json(path, args, &results)?;
    }
    Ok(())
}

async fn relay_run(args: &Args, target: Target) -> Result<RelayFigures> {
    let server = start_server(target).await?;
    let senders = args.senders.unwrap_or(args.devices).min(args.devices);
    let mut devices = Vec::new();
    for i in 0..args.devices {
        devices.push(match target {
            Target::Relay | Target::RelayNoFsync => {
                let relay = server._relay.as_ref().context("relay")?;
                RawDevice::enrol(relay, &format!("u{i}@bench")).await?
            }
            _ => RawDevice::unenrolled(),
        });
    }
    if let Some(relay) = server._relay.as_ref() {
        // Only certified devices take part in groups.
        relay.issue_pending("bench").await?;
    }
    let group = GroupId::random();
    let mut owner = RawConn::authenticated_url(&server.url, &devices[0]).await?;
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

    // Everyone connects and drains what is queued (the Welcome) first, so
    // the baseline, which keeps no queues, loses nothing.
    let mut conns = Vec::new();
    for d in &devices {
        let mut c = RawConn::authenticated_url(&server.url, d).await?;
        let backlog = c.backlog().await?;
        let ids: Vec<u64> = backlog.iter().map(|i| i.queue_id).collect();
        for chunk in ids.chunks(limits::MAX_ACK_BATCH) {
            c.call(Request::Ack {
                queue_ids: chunk.to_vec(),
            })
            .await?
            .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        }
        conns.push(c);
    }
    let (_, cpu_before) = process_stats(server.pid)?;
    let clock = Instant::now();
    let mut tasks = Vec::new();
    for (i, c) in conns.into_iter().enumerate() {
        let sends = if i < senders { args.messages } else { 0 };
        let other_senders = senders - usize::from(i < senders);
        let plan = Plan {
            group,
            sends,
            rate: args.rate,
            size: args.size,
            expected: other_senders * args.messages,
            clock,
        };
        tasks.push(tokio::spawn(run_device(c, plan)));
    }
    let mut accepts = Vec::new();
    let mut deliveries = Vec::new();
    let mut elapsed = Duration::ZERO;
    for t in tasks {
        let o = t.await??;
        accepts.extend(o.accepts);
        deliveries.extend(o.deliveries);
        elapsed = elapsed.max(o.done);
    }
    let (rss_kib, cpu_after) = process_stats(server.pid)?;
    accepts.sort();
    deliveries.sort();
    let secs = elapsed.as_secs_f64();
    let p = |l: &[Duration]| [0.5, 0.99, 0.999].map(|q| percentile(l, q).as_secs_f64() * 1000.0);
    let cpu = (cpu_after - cpu_before).as_secs_f64();
    Ok(RelayFigures {
        target: target.name().into(),
        devices: args.devices,
        senders,
        messages: args.messages,
        size: args.size,
        rate: args.rate,
        accepted: accepts.len(),
        deliveries: deliveries.len(),
        seconds: secs,
        accepted_per_s: accepts.len() as f64 / secs,
        deliveries_per_s: deliveries.len() as f64 / secs,
        accept_ms: p(&accepts),
        delivery_ms: p(&deliveries),
        rss_mib: rss_kib as f64 / 1024.0,
        cpu_s_per_1k_deliveries: cpu / (deliveries.len().max(1) as f64 / 1000.0),
    })
}

struct Plan {
    group: GroupId,
    sends: usize,
    rate: Option<f64>,
    size: usize,
    expected: usize,
    clock: Instant,
}

/// Sends this device's messages and receives everyone else's, acking in
/// batches, until both are complete.
async fn run_device(conn: RawConn, plan: Plan) -> Result<Outcome> {
    use futures_util::{FutureExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let (mut ws, mut next_id, _) = conn.into_parts();
    let mut out = Outcome::default();
    let mut pending: std::collections::HashMap<u64, Instant> = Default::default();
    let mut sent = 0usize;
    let mut received = 0usize;
    let period = plan.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut due = plan.clock;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let body_len = plan.size.saturating_sub(mls::APPLICATION_HEADER_LEN).max(8);
    let mut to_ack = Vec::new();
    loop {
        let closed_loop_turn = period.is_none() && pending.is_empty() && sent < plan.sends;
        let open_loop_turn = period.is_some() && sent < plan.sends && Instant::now() >= due;
        if closed_loop_turn || open_loop_turn {
            let at = if period.is_some() {
                due
            } else {
                Instant::now()
            };
            let mut body = vec![0u8; body_len];
            body[..8].copy_from_slice(&(at - plan.clock).as_nanos().to_be_bytes()[8..]);
            let request = Request::SendMessage {
                group_id: plan.group,
                message: Bytes::from(mls::application_with(&plan.group, 1, &body)),
                to: vec![],
            };
            let id = send_request(&mut ws, &mut next_id, request).await?;
            pending.insert(id, at);
            sent += 1;
            if let Some(p) = period {
                due += p;
            }
            continue;
        }
        if sent == plan.sends && pending.is_empty() && received >= plan.expected {
            out.done = plan.clock.elapsed();
            return Ok(out);
        }
        let wake = if period.is_some() && sent < plan.sends {
            tokio::time::Instant::from_std(due)
        } else {
            deadline
        };
        let first = match tokio::time::timeout_at(wake, ws.next()).await {
            Ok(m) => m,
            Err(_) if wake < deadline => continue,
            Err(_) => bail!(
                "timed out: sent {sent}/{}, {} unanswered, received {received}/{}",
                plan.sends,
                pending.len(),
                plan.expected
            ),
        };
        let mut batch = vec![first];
        while let Some(more) = ws.next().now_or_never() {
            batch.push(more);
        }
        for msg in batch {
            let msg = msg.context("the server closed the connection")??;
            let WsMessage::Binary(bytes) = msg else {
                continue;
            };
            match decode_server_frame(&bytes)? {
                ServerFrame::Response { id, result } => {
                    if let Some(at) = pending.remove(&id) {
                        if !matches!(result, Ok(Response::MessageAccepted { .. })) {
                            bail!("send refused: {result:?}");
                        }
                        out.accepts.push(at.elapsed());
                    } else if let Err(e) = result {
                        bail!("request {id} refused: {e}");
                    }
                }
                ServerFrame::Push(Push::Deliver(item)) => {
                    let body = &item.payload[mls::APPLICATION_HEADER_LEN..];
                    let mut stamp = [0u8; 16];
                    stamp[8..].copy_from_slice(&body[..8]);
                    let at = plan.clock + Duration::from_nanos(u128::from_be_bytes(stamp) as u64);
                    out.deliveries.push(at.elapsed());
                    received += 1;
                    to_ack.push(item.queue_id);
                }
                ServerFrame::Push(_) => {}
                ServerFrame::Rejected(e) => bail!("frame rejected: {e}"),
            }
        }
        for chunk in to_ack.chunks(limits::MAX_ACK_BATCH) {
            let request = Request::Ack {
                queue_ids: chunk.to_vec(),
            };
            send_request(&mut ws, &mut next_id, request).await?;
        }
        to_ack.clear();
    }
}

/// Sends a request without waiting for its answer; returns its id.
async fn send_request(
    ws: &mut cascade_tests::raw::Ws,
    next_id: &mut u64,
    req: Request,
) -> Result<u64> {
    use futures_util::SinkExt;
    let id = *next_id;
    *next_id += 1;
    let frame = encode_client_frame(&ClientFrame { v: 1, id, req });
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        frame.into(),
    ))
    .await?;
    Ok(id)
}

fn print_relay_table(results: &[RelayFigures]) {
    let base = |name: &str| {
        results
            .iter()
            .find(|r| r.target == name)
            .map(|r| r.deliveries_per_s)
    };
    let (raw, fsync) = (base("baseline"), base("baseline-fsync"));
    println!("| target | devices | senders × messages | size B | rate/s | accepted/s | deliveries/s | accept p50 / p99 / p99.9 ms | delivery p50 / p99 / p99.9 ms | RSS MiB | CPU s per 1k deliveries | × baseline | × baseline-fsync |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let ratio = |b: Option<f64>| {
            b.map_or("–".to_owned(), |b| {
                format!("{:.3}", r.deliveries_per_s / b)
            })
        };
        println!(
            "| {} | {} | {} × {} | {} | {} | {:.0} | {:.0} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} | {:.1} | {:.3} | {} | {} |",
            r.target,
            r.devices,
            r.senders,
            r.messages,
            r.size,
            r.rate.map_or("closed".to_owned(), |x| format!("{x}")),
            r.accepted_per_s,
            r.deliveries_per_s,
            r.accept_ms[0],
            r.accept_ms[1],
            r.accept_ms[2],
            r.delivery_ms[0],
            r.delivery_ms[1],
            r.delivery_ms[2],
            r.rss_mib,
            r.cpu_s_per_1k_deliveries,
            ratio(raw),
            ratio(fsync),
        );
    }
}

/// A run's JSON record: the machine, the commit, the command and the
/// figures (`cargo xtask bench --compare A.json B.json` reads two).
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    date: String,
    machine: String,
    commit: String,
    command: String,
    results: Vec<RelayFigures>,
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn write_json(path: &str, args: &Args, results: &[RelayFigures]) -> Result<()> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let record = Record {
        date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        machine: format!(
            "{} CPUs ({cpu}), {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            command_output("uname", &["-sr"])
        ),
        commit: command_output(
            "git",
            &[
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "rev-parse",
                "--short",
                "HEAD",
            ],
        ),
        command: args.command.clone(),
        results: results.to_vec(),
    };
    std::fs::write(path, serde_json::to_vec_pretty(&record)?)?;
    eprintln!("wrote {path}");
    Ok(())
}

/// Prints the change of every figure from run `a` to run `b`, matching
/// results by target and shape.
fn compare(a: &str, b: &str) -> Result<()> {
    let read = |p: &str| -> Result<Record> {
        Ok(serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {p}"))?,
        )?)
    };
    let (a, b) = (read(a)?, read(b)?);
    println!(
        "A: {} {} ({})\nB: {} {} ({})\n",
        a.commit, a.date, a.command, b.commit, b.date, b.command
    );
    println!("| target | devices | senders × messages | deliveries/s A → B | change | delivery p99 ms A → B | accept p99 ms A → B | RSS MiB A → B |");
    println!("|---|---|---|---|---|---|---|---|");
    for rb in &b.results {
        let Some(ra) = a.results.iter().find(|r| {
            r.target == rb.target
                && r.devices == rb.devices
                && r.senders == rb.senders
                && r.size == rb.size
                && r.rate == rb.rate
        }) else {
            continue;
        };
        println!(
            "| {} | {} | {} × {} | {:.0} → {:.0} | {:+.1} % | {:.2} → {:.2} | {:.2} → {:.2} | {:.1} → {:.1} |",
            rb.target,
            rb.devices,
            rb.senders,
            rb.messages,
            ra.deliveries_per_s,
            rb.deliveries_per_s,
            (rb.deliveries_per_s / ra.deliveries_per_s - 1.0) * 100.0,
            ra.delivery_ms[1],
            rb.delivery_ms[1],
            ra.accept_ms[1],
            rb.accept_ms[1],
            ra.rss_mib,
            rb.rss_mib,
        );
    }
    Ok(())
}

/// The WebSocket read buffer both servers and the idle clients use in
/// `idle` mode, as the relay sets it (`server/src/ws.rs`).
const IDLE_READ_BUFFER: usize = 4096;

/// Connection density: `connections` authenticated idle WebSocket
/// connections to the relay and to the baseline, from several 127.0.0.x
/// source addresses; the server's RSS per connection, the time to accept
/// and authenticate them all, and the time to take them all again after
/// they dropped at once (a burst of reconnections).
async fn idle_mode(args: &Args) -> Result<()> {
    let targets = match args.target.as_str() {
        "all" => vec![Target::Baseline, Target::Relay],
        "relay" => vec![Target::Relay],
        "baseline" => vec![Target::Baseline],
        t => bail!("idle mode runs against relay, baseline or all, not {t}"),
    };
    println!("| target | connections | connect + authenticate s | per s | RSS idle MiB | RSS connected MiB | KiB per connection | reconnect burst s | per s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for target in targets {
        let server = start_server(target).await?;
        let n = args.connections;
        let devices: Vec<RawDevice> = match &server._relay {
            Some(relay) => {
                use futures_util::StreamExt;
                futures_util::stream::iter(0..n)
                    .map(
                        |i| async move { RawDevice::enrol(relay, &format!("idle{i}@bench")).await },
                    )
                    .buffer_unordered(8)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<Result<_>>()?
            }
            None => (0..n).map(|_| RawDevice::unenrolled()).collect(),
        };
        let addr: std::net::SocketAddr = server
            .url
            .trim_start_matches("http://")
            .parse()
            .context("server address")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss_idle, _) = process_stats(server.pid)?;
        let start = Instant::now();
        let conns = connect_all(addr, &devices).await?;
        let connect = start.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss_connected, _) = process_stats(server.pid)?;
        drop(conns);
        // Let the server see every connection close before they come back.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let start = Instant::now();
        let conns = connect_all(addr, &devices).await?;
        let burst = start.elapsed();
        drop(conns);
        println!(
            "| {} | {n} | {:.2} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} |",
            target.name(),
            connect.as_secs_f64(),
            n as f64 / connect.as_secs_f64(),
            rss_idle as f64 / 1024.0,
            rss_connected as f64 / 1024.0,
            rss_connected.saturating_sub(rss_idle) as f64 / n as f64,
            burst.as_secs_f64(),
            n as f64 / burst.as_secs_f64(),
        );
    }
    Ok(())
}

/// Connects and authenticates every device, 64 at a time, spreading the
/// connections over source addresses 127.0.0.2, .3, … (1,000 each: binding
/// a source address to an ephemeral port searches that address's used
/// ports, which at 10,000 per address made the load generator, not the
/// server, the limit).
async fn connect_all(addr: std::net::SocketAddr, devices: &[RawDevice]) -> Result<Vec<RawConn>> {
    use futures_util::StreamExt;
    futures_util::stream::iter(devices.iter().enumerate())
        .map(|(i, d)| async move {
            let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i / 1_000) as u8);
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((source, 0).into())?;
            let tcp = socket.connect(addr).await?;
            tcp.set_nodelay(true)?;
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(IDLE_READ_BUFFER);
            let (ws, _) = tokio_tungstenite::client_async_with_config(
                format!("ws://{addr}/v1/ws"),
                tokio_tungstenite::MaybeTlsStream::Plain(tcp),
                Some(config),
            )
            .await?;
            let mut conn = RawConn::from_ws(ws).await?;
            conn.authenticate(d).await?;
            anyhow::Ok(conn)
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
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
    // Everyone listens before anyone sends: an event sent before a
    // subscription is not seen by it.
    let groups: Vec<_> = groups
        .into_iter()
        .map(|(g, peers)| {
            let peers: Vec<_> = peers
                .into_iter()
                .map(|p| {
                    let events = p.client.subscribe();
                    (p, events)
                })
                .collect();
            (g, peers)
        })
        .collect();
    let mut tasks = Vec::new();
    for (group, peers) in groups {
        for (p, mut events) in peers {
            let latencies = latencies.clone();
            let n = args.messages;
            tasks.push(tokio::spawn(async move {
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
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                    while got < expected_per_peer {
                        let ev = tokio::time::timeout_at(deadline, events.recv())
                            .await
                            .with_context(|| {
                                format!(
                                    "{} received {got} of {expected_per_peer} messages",
                                    p.user()
                                )
                            })??;
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
