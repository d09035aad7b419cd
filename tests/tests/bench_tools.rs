//! The benchmark tools, run through their binaries with the arguments
//! `docs/benchmarks.md` documents (`cargo xtask bench ARGS` passes ARGS to
//! `cascade-load`), on tiny workloads: every mode completes, counts every
//! delivery it should, and the JSON records compare. Speed is not checked
//! here; `cargo xtask bench` measures it.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use cascade_tests::bin_dir;

fn load(args: &[&str]) -> Result<String> {
    let out = Command::new(bin_dir().join("cascade-load"))
        .args(args)
        .env("CASCADE_BIN_DIR", bin_dir())
        .output()
        .context("running cascade-load (cargo build --workspace --bins)")?;
    let stdout = String::from_utf8(out.stdout)?;
    ensure!(
        out.status.success(),
        "cascade-load {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

fn read_results(path: &Path) -> Result<Vec<serde_json::Value>> {
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    for field in ["date", "machine", "command"] {
        ensure!(record[field].is_string(), "{field} missing in {record}");
    }
    Ok(record["results"].as_array().context("results")?.clone())
}

#[test]
fn relay_mode_runs_every_target_and_counts_every_delivery() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let closed = dir.path().join("closed.json");
    let out = load(&[
        "--mode",
        "relay",
        "--devices",
        "3",
        "--messages",
        "5",
        "--json",
        closed.to_str().context("path")?,
    ])?;
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("| ")).collect();
    ensure!(rows.len() == 5, "a header and four rows: {out}");
    let results = read_results(&closed)?;
    let targets: Vec<&str> = results
        .iter()
        .map(|r| r["target"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        targets,
        ["baseline", "baseline-fsync", "relay-nofsync", "relay"]
    );
    for r in &results {
        assert_eq!(r["accepted"], 15, "{r}");
        assert_eq!(r["deliveries"], 30, "each message reaches both others: {r}");
    }

    // Open loop, some senders only, against the relay alone.
    let open = dir.path().join("open.json");
    load(&[
        "--mode",
        "relay",
        "--target",
        "relay",
        "--devices",
        "3",
        "--senders",
        "1",
        "--messages",
        "5",
        "--rate",
        "50",
        "--json",
        open.to_str().context("path")?,
    ])?;
    let open_results = read_results(&open)?;
    assert_eq!(open_results.len(), 1);
    assert_eq!(open_results[0]["deliveries"], 10);
    assert_eq!(open_results[0]["rate"], 50.0);

    let compared = load(&[
        "--compare",
        closed.to_str().context("path")?,
        closed.to_str().context("path")?,
    ])?;
    ensure!(
        compared
            .lines()
            .any(|l| l.starts_with("| relay | 3 |") && l.contains("+0.0 %")),
        "a run compared with itself has not changed: {compared}"
    );
    Ok(())
}

#[test]
fn idle_mode_connects_and_reconnects_every_device() -> Result<()> {
    let out = load(&["--mode", "idle", "--connections", "20"])?;
    for target in ["baseline", "relay"] {
        ensure!(
            out.lines()
                .any(|l| l.starts_with(&format!("| {target} | 20 |"))),
            "a {target} row: {out}"
        );
    }
    Ok(())
}

#[test]
fn e2e_mode_delivers_every_message_between_real_clients() -> Result<()> {
    let out = load(&[
        "--mode",
        "e2e",
        "--groups",
        "1",
        "--members",
        "2",
        "--messages",
        "3",
    ])?;
    ensure!(
        out.lines()
            .any(|l| l.starts_with("| e2e | 1 × 2 | 6 | 6 |")),
        "6 sent, 6 delivered: {out}"
    );
    Ok(())
}

/// Both tools explain themselves, and a mistyped flag is an error that
/// names it, not a crash.
#[test]
fn the_tools_print_their_usage_and_refuse_unknown_flags() -> Result<()> {
    for tool in ["cascade-load", "cascade-baseline"] {
        let help = Command::new(bin_dir().join(tool)).arg("--help").output()?;
        assert!(help.status.success(), "{tool} --help");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains("Usage:"), "{tool}: {text}");
        let bad = Command::new(bin_dir().join(tool))
            .arg("--devcies")
            .output()?;
        assert_eq!(bad.status.code(), Some(2), "{tool} --devcies");
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(err.contains("--devcies"), "{tool}: {err}");
        assert!(!err.contains("panicked"), "{tool}: {err}");
    }
    Ok(())
}
