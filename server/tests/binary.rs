//! The `cascade-server` binary: `init`, and `serve` printing its address and
//! stopping cleanly on SIGTERM with its state on disk.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_cascade-server");

#[test]
fn init_creates_the_admin_token_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let run = || {
        let out = Command::new(BIN)
            .args(["init", "--data-dir"])
            .arg(&data)
            .env_remove("CASCADE_DATA_DIR")
            .output()
            .expect("run init");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf8")
    };
    let first = run();
    let path = data.join("admin-token");
    assert_eq!(first.trim(), path.display().to_string());
    let token = std::fs::read_to_string(&path).expect("token");
    let second = run();
    assert_eq!(second, first);
    assert_eq!(
        std::fs::read_to_string(&path).expect("token"),
        token,
        "idempotent"
    );
}

/// A queue expiry that is not a number of days from 0 to 36,500 stops the
/// relay at start with a clear message, before it opens anything.
#[test]
fn a_queue_expiry_out_of_range_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    for bad in ["-1", "NaN", "inf", "40000"] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg(format!("--queue-expiry-days={bad}"))
            .env_remove("CASCADE_QUEUE_EXPIRY_DAYS")
            .output()
            .expect("run serve");
        assert!(!out.status.success(), "{bad}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("queue_expiry_days must be between 0 and 36500"),
            "{bad}: {stderr}"
        );
        assert!(!out.stderr.is_empty());
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created for a bad setting"
    );
}

async fn health(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn serve_prints_its_address_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addr) = serve(dir.path(), &[]).await;
    assert!(health(&addr).await.ends_with("ok"));
    assert!(dir.path().join("admin-token").exists());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut waited = Duration::ZERO;
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(waited < Duration::from_secs(10), "did not stop on SIGTERM");
        // Polls the process state (a std child has no async wait).
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    };
    assert!(exit.success(), "{exit:?}");
}

/// Starts `cascade-server serve` with `args`; returns the child and its
/// address.
async fn serve(dir: &std::path::Path, args: &[&str]) -> (std::process::Child, String) {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args);
    spawn_serving(command, dir).await
}

/// Spawns `command` (a relay that prints its address first) with `dir` as
/// its data directory; returns the child and the address.
async fn spawn_serving(
    mut command: Command,
    dir: &std::path::Path,
) -> (std::process::Child, String) {
    let mut child = command
        .env("CASCADE_DATA_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        line
    })
    .await
    .expect("reader");
    let addr = line
        .trim()
        .strip_prefix("cascade-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

/// The connection-limit flags of `docs/admin-guide.md` §2.4 take effect.
#[tokio::test]
async fn the_connection_limit_flags_take_effect() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addr) = serve(
        dir.path(),
        &[
            "--max-connections-per-address",
            "2",
            "--header-timeout-secs",
            "1",
        ],
    )
    .await;
    let silent = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let _second = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The third from this address is refused: closed without an answer.
    let mut third = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let _ = third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut out)).await;
    assert!(
        out.is_empty(),
        "refused: {:?}",
        String::from_utf8_lossy(&out)
    );
    // The silent ones are closed after a second; then /health answers.
    let mut silent = silent;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut buf))
        .await
        .expect("closed by the header deadline")
        .expect("read");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(health(&addr).await.ends_with("ok"));
    child.kill().expect("kill");
    let _ = child.wait();

    // Nonsense limits are refused at start.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--max-connections", "0"])
        .env("CASCADE_DATA_DIR", dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1"));
}

/// At a low open-files limit the relay fits its caps under it, and one
/// address filling its share leaves room for others: `/health` still
/// answers from another address.
#[tokio::test]
async fn at_a_low_open_files_limit_one_address_cannot_lock_everyone_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 400 && exec \"$0\" serve --listen 127.0.0.1:0")
        .arg(BIN);
    let (mut child, addr) = spawn_serving(command, dir.path()).await;
    let addr: std::net::SocketAddr = addr.parse().expect("address");
    // 400 files: 144 connections in all, 72 from one address.
    let mut held = Vec::new();
    for _ in 0..100 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        held.push(socket.connect(addr).await.expect("connect"));
    }
    // A refused connection is closed at once; an admitted one stays open
    // (its header deadline is 10 s). Wait for all at once, 3 s at most.
    let closed = futures_util::future::join_all(held.iter_mut().map(|stream| async move {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await,
            Ok(Ok(0))
        )
    }))
    .await;
    let refused = closed.into_iter().filter(|closed| *closed).count();
    assert_eq!(refused, 100 - 72, "one address gets half the connections");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind");
    let mut other = socket.connect(addr).await.expect("connect");
    other
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), other.read_to_string(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    assert!(answer.ends_with("ok"), "{answer}");
    child.kill().expect("kill");
    let _ = child.wait();
}
