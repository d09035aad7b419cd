//! A backlog of thousands, as a user makes one: Bob is away while Alice
//! types 2,500 lines into `cascade chat`; Bob's `cascade sync` reads them all
//! and leaves nothing at the relay (each acknowledgement within the relay's
//! limit of `MAX_ACK_BATCH` ids).

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{ensure, Result};
use cascade_tests::proxy::Proxy;
use cascade_tests::*;

const LINES: usize = 2_500;

fn cascade(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new(bin_dir().join("cascade"))
        .envs(CLI_ENV)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "cascade {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_thousands_is_read_and_acknowledged_in_full() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Porter").await?;
    let group = alice.create_group_with("Handover", &[&bob]).await?;
    let bob_dir = bob.close().await;
    let alice_dir = alice.close().await;

    let typed: String = (0..LINES).map(|i| format!("line {i}\n")).collect();
    cascade(&alice_dir, &["chat", "Handover"], Some(&typed))?;
    cascade(&bob_dir, &["sync"], None)?;
    let history = cascade(
        &bob_dir,
        &["--json", "history", "Handover", "--limit", "5000"],
        None,
    )?;
    let history: Vec<serde_json::Value> = serde_json::from_str(&history)?;
    let texts: Vec<String> = history
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(texts.len(), LINES, "every line, once");
    assert_eq!(texts.first().map(String::as_str), Some("line 0"));
    assert_eq!(
        texts.last().map(String::as_str),
        Some(&*format!("line {}", LINES - 1))
    );

    // Nothing is left in Bob's queue at the relay: connecting again (through
    // a proxy that counts what the relay delivers) brings no item.
    let proxy = Proxy::start(&relay.url).await?;
    let bob = Peer::open_via(bob_dir, Some(&proxy.url)).await?;
    bob.sync().await?;
    assert_eq!(
        proxy.deliveries().await.len(),
        0,
        "the relay kept no item for Bob"
    );
    assert_eq!(bob.texts(group).await?.len(), LINES);
    Ok(())
}
