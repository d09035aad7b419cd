//! The relay's disk fills up: a relay on a small filesystem of its own
//! (a tmpfs in namespaces of its own, under a supervisor that restarts it
//! when it exits with an error) that the test fills while staff are
//! sending.

use std::io::Write;

use anyhow::{Context, Result};
use cascade_core::{DeliveryState, GroupId, MessageId};
use cascade_tests::*;

const MIB: u64 = 1024 * 1024;

/// The relay's metrics (with the operator's admin token).
async fn metrics(relay: &Relay) -> Result<String> {
    let token = std::fs::read_to_string(relay.data_dir().join("admin-token"))?;
    Ok(reqwest::Client::new()
        .get(format!("{}/metrics", relay.url))
        .bearer_auth(token.trim())
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The sum of the metric lines that start with `prefix`.
fn metric(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Writes `path` until the filesystem refuses (ENOSPC); returns the open
/// file and how much it took.
fn fill(path: &std::path::Path) -> Result<(std::fs::File, u64)> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0x5au8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => return Err(e).context("filling the relay's disk"),
        }
    }
    // The last partial pages too.
    for _ in 0..64 {
        match file.write(&chunk[..512]) {
            Ok(n) if n > 0 => written += n as u64,
            _ => break,
        }
    }
    Ok((file, written))
}

/// Alice (north) and Carol (east) in a conversation with one message
/// delivered, on a relay with a small disk of its own.
async fn conversation(relay: &Relay) -> Result<(Peer, Peer, GroupId)> {
    relay.org("north").await?;
    relay.org("east").await?;
    relay.trust_each_other("north", "east").await?;
    let alice = relay.user("alice@north", "Alice", "Nurse").await?;
    let carol = relay.user("carol@east", "Carol", "Doctor").await?;
    let group = alice.create_group_with("Resus", &[&carol]).await?;
    carol.joined(group).await?;
    alice.client.send_text(group, "before").await?;
    alice.sync().await?;
    carol
        .until("the first message", || async {
            Ok(texts_on(&carol, group).await? == ["before"])
        })
        .await?;
    Ok((alice, carol, group))
}

/// Of `ids`, the messages the relay acknowledged.
async fn acknowledged(peer: &Peer, group: GroupId, ids: &[MessageId]) -> Result<usize> {
    let history = peer.client.history(group, None, 1_000).await?;
    Ok(history
        .iter()
        .filter(|m| ids.contains(&m.id) && m.state != DeliveryState::Sending)
        .count())
}

/// Once space is back: every message reaches Carol once, in order, Alice's
/// outbox empties, and the conversation goes on both ways.
async fn everything_arrives(alice: &Peer, carol: &Peer, group: GroupId, n: usize) -> Result<()> {
    let mut want = vec!["before".to_owned()];
    want.extend((0..n).map(|i| format!("full {i:02}")));
    carol
        .until("every message sent while the disk was full", || async {
            Ok(texts_on(carol, group).await?.len() >= want.len())
        })
        .await?;
    assert_eq!(texts_on(carol, group).await?, want, "once each, in order");
    alice
        .until("every message acknowledged", || async {
            Ok(alice.client.outbox_len().await? == 0)
        })
        .await?;
    carol.client.send_text(group, "received").await?;
    want.push("received".to_owned());
    alice
        .until("Carol's answer", || async {
            Ok(texts_on(alice, group).await? == want)
        })
        .await?;
    Ok(())
}

const N: usize = 30;

/// The disk falls under the relay's reserve while Alice sends to Carol
/// (another organisation): the relay refuses her messages with the typed,
/// retryable `Unavailable` before writing anything, refuses a new
/// enrolment with `503 unavailable`, keeps serving (`/health`, reads,
/// acknowledgements) and does not restart. Once space is freed, Alice's
/// device retries on its own and every message reaches Carol exactly once,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_disk_reserve_the_relay_refuses_new_writes_for_now() -> Result<()> {
    if !Relay::small_disks_available() {
        return Ok(());
    }
    let relay = Relay::start_on_small_disk(48, &["--min-free-disk-mib", "16"]).await?;
    let (alice, carol, group) = conversation(&relay).await?;

    // Fill the disk, then give back 8 MiB: under the 16 MiB reserve, with
    // room for the store to go on working.
    let ballast = relay.data_dir().join("ballast");
    let (file, filled) = fill(&ballast)?;
    file.set_len(filled.saturating_sub(8 * MIB))?;
    drop(file);
    poll_until(|| async {
        let text = metrics(&relay).await?;
        let (free, reserve) = (
            metric(&text, "cascade_disk_free_bytes "),
            metric(&text, "cascade_disk_reserve_bytes "),
        );
        if reserve == 16 * MIB && free < reserve {
            Ok(Ok(()))
        } else {
            Ok(Err(format!("free {free}, reserve {reserve}")))
        }
    })
    .await?;

    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(
            alice
                .client
                .send_text(group, &format!("full {i:02}"))
                .await?,
        );
    }
    poll_until(|| async {
        let text = metrics(&relay).await?;
        Ok(
            if metric(&text, "cascade_refusals_total{kind=\"Unavailable\"}") > 0 {
                Ok(())
            } else {
                Err("the relay refused nothing".to_owned())
            },
        )
    })
    .await?;
    assert_eq!(
        acknowledged(&alice, group, &ids).await?,
        0,
        "under the reserve the relay acknowledges nothing new"
    );
    // A new device cannot enrol for now, and is told why.
    let refused = relay
        .user("dave@north", "Dave", "Porter")
        .await
        .err()
        .context("an enrolment under the disk reserve")?;
    assert!(
        format!("{refused:#}").contains("disk is nearly full"),
        "{refused:#}"
    );
    let health = reqwest::get(format!("{}/health", relay.url)).await?;
    assert!(health.status().is_success(), "health: {health:?}");

    std::fs::remove_file(&ballast)?;
    everything_arrives(&alice, &carol, group, N).await?;
    assert_eq!(relay.exits()?, Vec::<i32>::new(), "the relay never stopped");
    Ok(())
}

/// With no reserve, the disk fills to the last byte while Alice sends: the
/// store fails to write, the relay answers what was waiting with an error,
/// stops and exits non-zero (it never serves from a store that failed), and
/// its supervisor starts it again on what is durable. Once space is freed,
/// every message reaches Carol exactly once, in order: nothing acknowledged
/// before or while the disk filled is lost, and nothing is delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_to_the_last_byte_stops_the_relay_and_loses_nothing() -> Result<()> {
    if !Relay::small_disks_available() {
        return Ok(());
    }
    let relay = Relay::start_on_small_disk(48, &["--min-free-disk-mib", "0"]).await?;
    let (alice, carol, group) = conversation(&relay).await?;

    let ballast = relay.data_dir().join("ballast");
    let (file, filled) = fill(&ballast)?;
    drop(file);
    eprintln!("the relay's disk took {filled} more bytes");
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(
            alice
                .client
                .send_text(group, &format!("full {i:02}"))
                .await?,
        );
    }
    poll_until(|| async {
        let exits = relay.exits()?;
        Ok(if exits.is_empty() {
            Err("the relay is still running".to_owned())
        } else {
            Ok(())
        })
    })
    .await?;
    let acked = acknowledged(&alice, group, &ids).await?;
    eprintln!("{acked} of {N} acknowledged before the relay stopped");
    assert!(acked < N, "a full disk cannot have taken every message");

    std::fs::remove_file(&ballast)?;
    everything_arrives(&alice, &carol, group, N).await?;
    let exits = relay.exits()?;
    assert!(
        exits.iter().all(|status| *status != 0),
        "the relay stopped with an error each time: {exits:?}"
    );
    Ok(())
}

async fn texts_on(peer: &Peer, group: GroupId) -> Result<Vec<String>> {
    peer.texts(group).await
}
