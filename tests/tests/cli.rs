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

/// `cascade enrol` on a terminal: a new passphrase is asked for twice and
/// two that differ stop it before anything is written; once the device's
/// data exists, the passphrase is asked for once, and a wrong one is
/// refused. (`script` gives the command a terminal; the relay here is
/// unreachable, which enrolment reports after the store is made.)
#[test]
fn on_a_terminal_a_new_passphrase_is_asked_for_twice() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("device");
    let on_terminal = |typed: &str| -> Result<(Option<i32>, String)> {
        let command = format!(
            "{} --data-dir {} enrol --server http://127.0.0.1:9 --code 7KQM-2D9X-PAWE-RC8G-MRZG-E196",
            bin_dir().join("cascade").display(),
            data.display()
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '{typed}' | script -qec \"$0\" /dev/null",))
            .arg(command)
            .env_remove("CASCADE_PASSPHRASE")
            .output()?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    let (code, out) = on_terminal("tea at eleven\\ntea at twelve\\n")?;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("New passphrase:") && out.contains("The same again:"),
        "{out}"
    );
    assert!(out.contains("the two passphrases differ"), "{out}");
    assert!(!data.exists(), "nothing was written");

    let (code, out) = on_terminal("tea at eleven\\ntea at eleven\\n")?;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("the relay is unreachable"), "{out}");
    assert!(data.join("store-key.json").exists(), "the store was made");

    let (code, out) = on_terminal("tea at twelve\\n")?;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("Passphrase for this device's data:") && !out.contains("New passphrase"),
        "{out}"
    );
    assert!(out.contains("does not unlock this device's data"), "{out}");
    Ok(())
}
