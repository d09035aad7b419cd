//! TLS end to end, through the real binaries: a relay serving HTTPS and WSS
//! with a certificate from a private CA, admins and devices that pin that
//! CA, what happens to those who do not, plain HTTP refused off loopback,
//! a certificate replaced on SIGHUP without a restart, and a silent TLS
//! client cut off by the handshake deadline.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use cascade_tests::{bin_dir, TestPki, CLI_ENV};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

struct TlsRelay {
    child: Child,
    url: String,
    token_file: PathBuf,
}

async fn start(data: &Path, cert: &Path, key: &Path, extra: &[&str]) -> Result<TlsRelay> {
    let mut child = Command::new(bin_dir().join("cascade-server"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(a) = line.strip_prefix("cascade-server listening on https://") {
                return Ok::<_, anyhow::Error>(a.trim().to_owned());
            }
        }
        bail!("the relay exited before listening")
    })
    .await
    .context("the relay did not start")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(TlsRelay {
        child,
        url: format!("https://{addr}"),
        token_file: data.join("admin-token"),
    })
}

/// Runs `cascade` with `args`; the output, whether or not it succeeded.
async fn cascade(args: &[&str]) -> Result<Output> {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(bin_dir().join("cascade"))
            .args(args)
            .envs(CLI_ENV)
            .env_remove("CASCADE_SERVER")
            .env_remove("CASCADE_SERVER_CA")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .context("cascade did not finish")??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !stderr.contains("panicked"),
        "cascade {args:?} panicked: {stderr}"
    );
    Ok(out)
}

/// Runs `cascade` with `args`, which must succeed; its standard output.
async fn ok(args: &[&str]) -> Result<String> {
    let out = cascade(args).await?;
    ensure!(
        out.status.success(),
        "cascade {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs `cascade` with `args`, which must fail; its standard error.
async fn fails(args: &[&str]) -> Result<String> {
    let out = cascade(args).await?;
    ensure!(
        !out.status.success(),
        "cascade {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `cascade_tls_certificate_expiry_timestamp_seconds` from the relay's
/// metrics, read over TLS with its CA pinned.
async fn expiry_metric(relay: &TlsRelay, ca_pem: &str) -> Result<i64> {
    let token = std::fs::read_to_string(&relay.token_file)?;
    let client = cascade_core::transport::http_client(&relay.url, Some(ca_pem))?;
    let text = client
        .get(format!("{}/metrics", relay.url))
        .bearer_auth(token.trim())
        .send()
        .await?
        .text()
        .await?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cascade_tls_certificate_expiry_timestamp_seconds "))
        .context("no expiry metric")?;
    Ok(line.rsplit(' ').next().unwrap_or_default().parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_relay_serves_admins_and_devices_that_pin_its_ca() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = TestPki::expiring("first", (2031, 1, 2))?;
    let ca = dir.path().join("relay-ca.pem");
    let cert = dir.path().join("relay.pem");
    let key = dir.path().join("relay.key");
    std::fs::write(&ca, &first.ca_pem)?;
    std::fs::write(&cert, &first.cert_pem)?;
    std::fs::write(&key, &first.key_pem)?;
    let relay = start(&dir.path().join("relay"), &cert, &key, &[]).await?;
    let url = relay.url.as_str();
    let token = s(&relay.token_file).to_owned();
    // The relay reports when its certificate expires (2031-01-02).
    assert_eq!(expiry_metric(&relay, &first.ca_pem).await?, 1_925_078_400);
    let ca_dir = dir.path().join("ca");
    let admin = |rest: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "admin",
            "--server",
            url,
            "--server-ca",
            s(&ca),
            "--token-file",
            &token,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.extend(rest.iter().map(|a| a.to_string()));
        v
    };
    let run_admin = |rest: &[&str]| {
        let args = admin(rest);
        async move { ok(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };

    ok(&[
        "admin",
        "org",
        "init",
        "--org",
        "north-trust",
        "--name",
        "North NHS Trust",
        "--dir",
        s(&ca_dir),
    ])
    .await?;
    // An admin who does not pin the relay's CA is refused by TLS, with the
    // reason, before the token is sent.
    let unpinned = fails(&[
        "admin",
        "--server",
        url,
        "--token-file",
        &token,
        "create-org",
        "north-trust",
        "--name",
        "North NHS Trust",
        "--ca-dir",
        s(&ca_dir),
    ])
    .await?;
    ensure!(
        unpinned.contains("TLS certificate is not trusted") && unpinned.contains("UnknownIssuer"),
        "unpinned admin: {unpinned}"
    );
    run_admin(&[
        "create-org",
        "north-trust",
        "--name",
        "North NHS Trust",
        "--ca-dir",
        s(&ca_dir),
    ])
    .await?;
    let mut codes = Vec::new();
    for (user, name) in [
        ("alice@north-trust", "Alice Okafor"),
        ("bob@north-trust", "Bob Singh"),
    ] {
        run_admin(&[
            "add-user",
            user,
            "--name",
            name,
            "--role",
            "Nurse",
            "--ca-dir",
            s(&ca_dir),
        ])
        .await?;
        codes.push(
            run_admin(&["token", user, "--ca-dir", s(&ca_dir)])
                .await?
                .trim()
                .to_owned(),
        );
    }
    let alice = dir.path().join("alice");
    let bob = dir.path().join("bob");

    // A device that does not pin the CA cannot enrol (the system's roots do
    // not know it), and the code is not spent by trying.
    let refused = fails(&[
        "--data-dir",
        s(&dir.path().join("nobody")),
        "enrol",
        "--server",
        url,
        "--code",
        &codes[0],
    ])
    .await?;
    ensure!(
        refused.contains("TLS certificate is not trusted"),
        "unpinned device: {refused}"
    );
    // Plain HTTP to another machine is refused before anything is sent.
    let plain = fails(&[
        "--data-dir",
        s(&dir.path().join("nobody")),
        "enrol",
        "--server",
        "http://192.0.2.1:7171",
        "--code",
        &codes[0],
    ])
    .await?;
    ensure!(
        plain.contains("refusing plain http:// to 192.0.2.1"),
        "plain: {plain}"
    );
    // And plain HTTP to the TLS port gets no answer a client could use.
    let mismatch = fails(&[
        "--data-dir",
        s(&dir.path().join("nobody")),
        "enrol",
        "--server",
        &url.replace("https://", "http://"),
        "--code",
        &codes[0],
    ])
    .await?;
    ensure!(!mismatch.is_empty());

    for (data, code) in [(&alice, &codes[0]), (&bob, &codes[1])] {
        ok(&[
            "--data-dir",
            s(data),
            "enrol",
            "--server",
            url,
            "--server-ca",
            s(&ca),
            "--code",
            code,
        ])
        .await?;
    }
    run_admin(&["issue", "--ca-dir", s(&ca_dir)]).await?;
    ok(&["--data-dir", s(&bob), "sync"]).await?;
    ok(&["--data-dir", s(&alice), "sync"]).await?;
    ok(&[
        "--data-dir",
        s(&alice),
        "create",
        "Ward 7",
        "-m",
        "bob@north-trust",
    ])
    .await?;
    ok(&[
        "--data-dir",
        s(&alice),
        "send",
        "Ward 7",
        "Handover at 08:00, over TLS",
    ])
    .await?;
    let history = ok(&["--data-dir", s(&bob), "history", "Ward 7"]).await?;
    ensure!(
        history.contains("Handover at 08:00, over TLS"),
        "bob reads it: {history}"
    );

    // A new certificate from another CA, loaded on SIGHUP without a
    // restart: new connections get it, so clients pinning the old CA stop
    // trusting the relay and clients pinning the new one start.
    let second = TestPki::expiring("second", (2032, 3, 4))?;
    let ca2 = dir.path().join("relay-ca-2.pem");
    std::fs::write(&ca2, &second.ca_pem)?;
    std::fs::write(&cert, &second.cert_pem)?;
    std::fs::write(&key, &second.key_pem)?;
    let pid = relay.child.id().context("relay running")?;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    ensure!(status.success());
    let with_new_ca = |who: &str| {
        let who = who.to_owned();
        let (url, token, ca2) = (url.to_owned(), token.clone(), s(&ca2).to_owned());
        let ca_dir = s(&ca_dir).to_owned();
        async move {
            cascade(&[
                "admin",
                "--server",
                &url,
                "--server-ca",
                &ca2,
                "--token-file",
                &token,
                "add-user",
                &who,
                "--name",
                "Carol",
                "--role",
                "Nurse",
                "--ca-dir",
                &ca_dir,
            ])
            .await
        }
    };
    let mut reloaded = false;
    for attempt in 0..50 {
        if with_new_ca(&format!("carol{attempt}@north-trust"))
            .await?
            .status
            .success()
        {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(reloaded, "the relay never served the new certificate");
    let old = fails(
        &admin(&[
            "add-user",
            "dave@north-trust",
            "--name",
            "Dave",
            "--role",
            "Nurse",
            "--ca-dir",
            s(&ca_dir),
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    )
    .await?;
    ensure!(old.contains("UnknownIssuer"), "old pin after reload: {old}");
    assert_eq!(expiry_metric(&relay, &second.ca_pem).await?, 1_961_971_200); // 2032-03-04

    // A reload that fails (a key that is not the certificate's) keeps the
    // certificate served so far.
    std::fs::write(&key, &first.key_pem)?;
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        with_new_ca("erin@north-trust").await?.status.success(),
        "a failed reload keeps the served certificate"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_client_is_cut_off_at_the_handshake_deadline() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::expiring("deadline", (2031, 1, 2))?;
    let cert = dir.path().join("relay.pem");
    let key = dir.path().join("relay.key");
    std::fs::write(&cert, &pki.cert_pem)?;
    std::fs::write(&key, &pki.key_pem)?;
    let relay = start(
        &dir.path().join("relay"),
        &cert,
        &key,
        &["--header-timeout-secs", "1"],
    )
    .await?;
    let addr = relay.url.trim_start_matches("https://");
    let mut silent = tokio::net::TcpStream::connect(addr).await?;
    // Sends nothing: the relay closes it once the deadline passes (well
    // within the generous wait here).
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf))
        .await
        .context("the silent connection was still open after 20 s")?;
    ensure!(matches!(read, Ok(0) | Err(_)), "closed without an answer");
    // The relay still serves: /health over TLS with the pinned CA.
    let client = cascade_core::transport::http_client(&relay.url, Some(&pki.ca_pem))?;
    let health = client.get(format!("{}/health", relay.url)).send().await?;
    ensure!(health.status().is_success());
    Ok(())
}
