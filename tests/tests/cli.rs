//! The `cascade` binary's offline admin commands.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use anyhow::Result;
use cascade_tests::bin_dir;

fn cascade(args: &[&str]) -> std::process::Output {
    Command::new(bin_dir().join("cascade"))
        .args(args)
        .output()
        .expect("cascade runs")
}

#[test]
fn org_init_creates_an_owner_only_ca_key_and_refuses_to_overwrite_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_str().expect("utf-8 path");
    let out = cascade(&[
        "--json",
        "admin",
        "org",
        "init",
        "--org",
        "north-trust",
        "--name",
        "North NHS Trust",
        "--dir",
        d,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mode = std::fs::metadata(dir.path().join("ca-key.pem"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the CA key is owner-only");

    let cert = dir.path().join("ca-cert.pem");
    let out = cascade(&[
        "--json",
        "admin",
        "org",
        "fingerprint",
        cert.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success());
    let fp: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(fp["fingerprint"], made["fingerprint"]);
    assert_eq!(fp["org_id"], "north-trust");

    let again = cascade(&[
        "admin",
        "org",
        "init",
        "--org",
        "north-trust",
        "--name",
        "X",
        "--dir",
        d,
    ]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing CA key is never replaced"
    );
    Ok(())
}

/// Enrolment codes are base64url, so one in 64 starts with `-`: the code is
/// still taken as the code, not as an option (found by the admin guide's
/// test, which types a fresh code each run).
#[test]
fn an_enrolment_code_that_starts_with_a_dash_is_read_as_the_code() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().expect("utf-8 temp dir");
    let out = cascade(&[
        "--data-dir",
        data_dir,
        "enrol",
        "--server",
        "http://127.0.0.1:9",
        "--code",
        "-n-BX-O2Uv01kvXrIpSDLchPRMz92e7rMhj5hByjSYs.79cf6fd148b4e078058a4062944dd25680088bb7ad512e5bfb6897c4ad025a52",
        "--device-name",
        "phone",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nothing listens on port 9");
    assert!(
        !stderr.contains("unexpected argument"),
        "the code was taken for an option: {stderr}"
    );
    Ok(())
}
