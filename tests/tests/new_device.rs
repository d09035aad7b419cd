//! A user's new device, set up as a user would with the `cascade` binary,
//! joins the user's conversations on its first `cascade sync`; one it cannot
//! join is reported and the command fails, instead of saying nothing.

use std::process::Command;

use anyhow::{ensure, Result};
use cascade_tests::*;

fn cascade(dir: &std::path::Path, args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(bin_dir().join("cascade"))
        .envs(CLI_ENV)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_says_which_conversation_it_could_not_join() -> Result<()> {
    let relay = Relay::start().await?;
    relay.org("north-trust").await?;
    relay.org("east-ambulance").await?;
    relay
        .trust_each_other("north-trust", "east-ambulance")
        .await?;
    let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
    let bob = relay.user("bob@north-trust", "Bob", "Porter").await?;
    let carol = relay
        .user("carol@east-ambulance", "Carol", "Paramedic")
        .await?;
    let ward = alice.create_group_with("Ward 7", &[&bob]).await?;
    let transfers = alice.create_group_with("Transfers", &[&carol]).await?;
    // Alice's phone is switched off; meanwhile her trust unpins the
    // ambulance service, so nobody has removed Carol from "Transfers" yet.
    let _phone = alice.close().await;
    relay.distrust("north-trust", "east-ambulance").await?;

    // Alice sets up her desktop.
    let desktop = tempfile::tempdir()?;
    let code = relay.enrolment_code("alice@north-trust").await?;
    let out = cascade(
        desktop.path(),
        &[
            "enrol",
            "--server",
            &relay.url,
            "--code",
            &code,
            "--device-name",
            "desktop",
        ],
    )?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    relay.issue_pending("north-trust").await?;
    let out = cascade(desktop.path(), &["sync"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the sync says it failed: {stderr}"
    );
    assert!(
        stderr.contains("east-ambulance is not trusted"),
        "it says why: {stderr}"
    );
    assert!(
        stderr.contains(&transfers.to_string()),
        "it names the conversation: {stderr}"
    );
    // The conversation it could join, it joined (its name comes from
    // Alice's other device, which is off).
    let out = cascade(desktop.path(), &["--json", "conversations"])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    let ids: Vec<&str> = list.iter().filter_map(|c| c["group_id"].as_str()).collect();
    assert_eq!(ids, [ward.to_string()], "{list:?}");
    // Nothing is left to report on the next sync.
    let out = cascade(desktop.path(), &["sync"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
