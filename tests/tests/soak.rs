//! Crash and power-cut safety of the relay under message load.
//!
//! Two organisations' staff keep sending (and a member is removed and added
//! again from time to time) while the relay is killed over and over:
//!
//! - with SIGKILL, which keeps whatever the kernel had of its writes;
//! - with a simulated power cut: the relay runs with the `cascade-powercut`
//!   library preloaded, which keeps a copy of its data directory as each
//!   file was at its last `fsync`/`fdatasync`; after the SIGKILL that copy
//!   replaces the directory, so every write that was not synced is gone.
//!
//! After every kill the relay must start again on what is left, and at the
//! end every message must have reached every member exactly once, in each
//! sender's order, every outbox must be empty and every device at the same
//! epoch. A message the relay acknowledged and then lost would never be
//! sent again, so it would be missing.
//!
//! The default test run kills a few times (`CASCADE_SOAK_KILLS`,
//! `CASCADE_SOAK_CUTS`, 3 each); `cargo xtask soak` does it 100 times each.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cascade_core::GroupId;
use cascade_tests::*;
use rand::Rng;

/// Messages each sender queues per round: enough that the relay is still
/// writing when it is killed.
const PER_ROUND: usize = 15;

fn times(var: &str) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Alice and Bob (north), Carol and Dave (east), in one conversation.
struct Story {
    alice: Peer,
    bob: Peer,
    carol: Peer,
    dave: Peer,
    group: GroupId,
    /// Messages Alice and Carol have sent.
    sent: usize,
    /// Whether Dave is a member now (as Alice asked last).
    dave_in: bool,
}

impl Story {
    async fn start(relay: &Relay) -> Result<Story> {
        relay.org("north").await?;
        relay.org("east").await?;
        relay.trust_each_other("north", "east").await?;
        let alice = relay.user("alice@north", "Alice", "Nurse").await?;
        let bob = relay.user("bob@north", "Bob", "Doctor").await?;
        let carol = relay.user("carol@east", "Carol", "Doctor").await?;
        let dave = relay.user("dave@east", "Dave", "Porter").await?;
        let group = alice
            .create_group_with("Major incident", &[&bob, &carol, &dave])
            .await?;
        for peer in [&bob, &carol, &dave] {
            peer.joined(group).await?;
        }
        Ok(Story {
            alice,
            bob,
            carol,
            dave,
            group,
            sent: 0,
            dave_in: true,
        })
    }

    /// One round of work, queued on the devices: messages from Alice and
    /// Carol, and every fifth round Dave removed or added back.
    async fn work(&mut self, round: usize) -> Result<()> {
        for _ in 0..PER_ROUND {
            let n = self.sent;
            self.alice
                .client
                .send_text(self.group, &format!("a {n:04}"))
                .await?;
            self.carol
                .client
                .send_text(self.group, &format!("c {n:04}"))
                .await?;
            self.sent += 1;
        }
        if round % 5 == 4 {
            let dave = self.dave.user();
            if self.dave_in {
                self.alice
                    .client
                    .remove_members(self.group, vec![dave])
                    .await?;
            } else {
                self.alice
                    .client
                    .add_members(self.group, vec![dave])
                    .await?;
            }
            self.dave_in = !self.dave_in;
        }
        Ok(())
    }

    /// Everything arrived once, in order, on every device; no fork.
    async fn check(&self) -> Result<()> {
        let want = 2 * self.sent;
        for sender in [&self.alice, &self.carol] {
            sender
                .until("an empty outbox", || async {
                    Ok(sender.client.outbox_len().await? == 0)
                })
                .await?;
        }
        for peer in [&self.alice, &self.bob, &self.carol] {
            peer.until("every message", || async {
                Ok(peer.texts(self.group).await?.len() >= want)
            })
            .await?;
            let texts = peer.texts(self.group).await?;
            assert_eq!(texts.len(), want, "{}: nothing twice", peer.user());
            for prefix in ["a ", "c "] {
                let got: Vec<&String> = texts.iter().filter(|t| t.starts_with(prefix)).collect();
                let expected: Vec<String> =
                    (0..self.sent).map(|n| format!("{prefix}{n:04}")).collect();
                assert!(
                    got.iter()
                        .map(|s| s.as_str())
                        .eq(expected.iter().map(String::as_str)),
                    "{}: every message of {prefix:?} once, in order: {got:?}",
                    peer.user()
                );
            }
        }
        // One history of the group: every member at the same epoch.
        let mut members = vec![&self.alice, &self.bob, &self.carol];
        if self.dave_in {
            members.push(&self.dave);
        }
        let epoch = self.alice.client.epoch(self.group).await?;
        for peer in members {
            peer.until("the group's epoch", || async {
                Ok(peer.client.epoch(self.group).await? == epoch)
            })
            .await?;
        }
        Ok(())
    }
}

/// Waits a random moment into the round's work, with the devices
/// connected, so that the kill lands mid-work.
async fn mid_work(story: &Story) -> Result<()> {
    story
        .alice
        .until("Alice connected", || async {
            Ok(story.alice.client.is_online().await?)
        })
        .await?;
    let pause = rand::thread_rng().gen_range(0..150);
    tokio::time::sleep(Duration::from_millis(pause)).await;
    Ok(())
}

/// The relay is SIGKILLed mid-work again and again; it keeps what the
/// kernel had of its writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_killed_again_and_again_loses_and_doubles_nothing() -> Result<()> {
    let kills = times("CASCADE_SOAK_KILLS");
    let mut relay = Relay::start().await?;
    let mut story = Story::start(&relay).await?;
    for round in 0..kills {
        story.work(round).await?;
        mid_work(&story).await?;
        relay
            .restart()
            .await
            .context("the relay did not start again")?;
    }
    story.check().await?;
    eprintln!(
        "{kills} kills: {} messages, each delivered once",
        2 * story.sent
    );
    Ok(())
}

/// The power fails mid-work again and again: every write the relay had not
/// synced is lost each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_lose_nothing_acknowledged_and_fork_nothing() -> Result<()> {
    let cuts = times("CASCADE_SOAK_CUTS");
    let library = bin_dir().join("libcascade_powercut.so");
    anyhow::ensure!(
        library.exists(),
        "{} not built: run `cargo build --workspace` first (cargo xtask test does)",
        library.display()
    );
    let mut relay = Relay::start().await?;
    let mut story = Story::start(&relay).await?;
    // What is on disk now is durable: the relay stopped gracefully.
    relay.stop().await?;
    let data = std::fs::canonicalize(relay.data_dir())?;
    let shadow = tempfile::tempdir()?;
    copy_dir(&data, shadow.path())?;
    relay.set_env(&[
        ("LD_PRELOAD", &library),
        ("CASCADE_POWERCUT_DATA", &data),
        ("CASCADE_POWERCUT_SHADOW", shadow.path()),
    ]);
    relay.start_again().await?;
    let log = Path::new("db").join("db");
    let baseline = std::fs::read(shadow.path().join(&log))?;
    let mut lost = 0;
    for round in 0..cuts {
        story.work(round).await?;
        mid_work(&story).await?;
        relay.kill9().await?;
        // The power cut: only what was synced is left.
        lost += unsynced_bytes(&data, shadow.path())?;
        empty_dir(&data)?;
        copy_dir(shadow.path(), &data)?;
        relay
            .start_again()
            .await
            .context("the relay did not start again after a power cut")?;
    }
    story.check().await?;
    // The library saw the relay's syncs (else the cuts would have thrown
    // away everything since the start).
    assert_ne!(
        std::fs::read(shadow.path().join(&log))?,
        baseline,
        "the shadow followed the store's syncs"
    );
    eprintln!(
        "{cuts} power cuts: {} messages, each delivered once; {lost} bytes of unsynced \
         writes dropped in all",
        2 * story.sent
    );
    Ok(())
}

/// How many bytes of the files in `data` a power cut changes: those that
/// differ from the shadow, and those beyond its end.
fn unsynced_bytes(data: &Path, shadow: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(data)? {
        let entry = entry?;
        let twin = shadow.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            total += unsynced_bytes(&entry.path(), &twin)?;
            continue;
        }
        let now = std::fs::read(entry.path())?;
        let kept = std::fs::read(&twin).unwrap_or_default();
        let common = now.len().min(kept.len());
        let differ = now[..common]
            .iter()
            .zip(&kept[..common])
            .filter(|(a, b)| a != b)
            .count();
        total += (differ + now.len().abs_diff(kept.len())) as u64;
    }
    Ok(total)
}

fn empty_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
