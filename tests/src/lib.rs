//! Test harness: real `cascade-server` processes and real `cascade-core`
//! clients.
//!
//! A test reads like a transcript:
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use cascade_tests::*;
//! let relay = Relay::start().await?;
//! relay.org("north-trust").await?;
//! let alice = relay.user("alice@north-trust", "Alice", "Nurse").await?;
//! # Ok(()) }
//! ```

pub mod proxy;
pub mod raw;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cascade_admin::{AdminClient, CaDir, OrgCa};
use cascade_core::{Client, Event, GroupId, KdfCost, Message, OrgId, StoreKey, UserId};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::broadcast;

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(30);

/// The passphrase of every device's data the harness enrols, which the
/// `cascade` commands a test runs on those devices are given too
/// ([`CLI_ENV`]).
pub const PASSPHRASE: &str = "correct horse battery staple";

/// The environment a `cascade` command needs to open a harness device's
/// data: its passphrase, and the test-only KDF cost (so that a test's
/// hundreds of opens do not each take a second).
pub const CLI_ENV: [(&str, &str); 2] = [
    ("CASCADE_PASSPHRASE", PASSPHRASE),
    ("CASCADE_INSECURE_TEST_KDF", "1"),
];

/// What unlocks a harness device's data: [`PASSPHRASE`], with the same
/// test-only KDF cost as [`CLI_ENV`].
pub fn store_key() -> StoreKey {
    StoreKey::passphrase_with(PASSPHRASE, KdfCost::InsecureForTests)
}

/// Directory holding the built `cascade-server` and `cascade` binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CASCADE_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/debug/deps/<test binary> → target/debug
    let exe = std::env::current_exe().expect("test binary path");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// A relay process with its own temporary data directory.
pub struct Relay {
    child: Option<Child>,
    /// Where the test sees the data directory when it is not `data`'s
    /// (a relay on a small disk of its own).
    data_view: Option<PathBuf>,
    /// Where the supervisor of a relay on a small disk writes each exit
    /// status.
    exits: Option<PathBuf>,
    /// Extra `serve` arguments, kept for restarts.
    extra: Vec<String>,
    /// Extra environment variables, kept for restarts.
    env: Vec<(String, std::ffi::OsString)>,
    /// The private CA of a TLS relay's certificate (PEM).
    server_ca: Option<String>,
    /// A TLS relay's certificate and key files.
    tls_files: Option<tempfile::TempDir>,
    data: tempfile::TempDir,
    addr: String,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    admin: AdminClient,
    clients: tempfile::TempDir,
    /// The admins' machines: each organisation's CA directories, made and
    /// used by `cascade-admin` exactly as the `cascade admin` commands do.
    admins: tempfile::TempDir,
    /// The CA directory each organisation's admins use now (after a
    /// rotation, the new one).
    ca_dirs: std::sync::Mutex<std::collections::HashMap<OrgId, PathBuf>>,
}

impl Relay {
    /// Starts a relay on a free loopback port.
    pub async fn start() -> Result<Relay> {
        Self::start_with(&[]).await
    }

    /// Starts a relay with extra `serve` arguments (e.g. a push gateway).
    pub async fn start_with(extra: &[&str]) -> Result<Relay> {
        Self::start_on(extra, None, "127.0.0.1:0").await
    }

    /// Starts a relay whose data directory is a filesystem of its own of
    /// `mib` MiB, which the test can fill: a tmpfs mounted in user, mount
    /// and PID namespaces of the relay's own (`unshare`). Inside them a
    /// shell supervises the relay as systemd's `Restart=on-failure` would:
    /// whenever it exits with an error it is started again, on the same
    /// port and disk; [`Relay::exits`] lists how it exited. The test reaches
    /// the directory through [`Relay::data_dir`] (`/proc/<pid>/root/...`).
    /// [`Relay::restart`] does not apply: the disk goes with the namespaces.
    pub async fn start_on_small_disk(mib: u64, extra: &[&str]) -> Result<Relay> {
        // A fixed port, so that the supervised restarts listen where the
        // devices connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Self::start_on(extra, Some(mib), &format!("127.0.0.1:{port}")).await
    }

    /// Starts a relay serving HTTPS and WSS with a certificate for
    /// 127.0.0.1 and localhost from a private CA made for it
    /// ([`Relay::server_ca`]): the admin client and every device this
    /// harness enrols pin that CA, as a private deployment's would.
    pub async fn start_tls() -> Result<Relay> {
        let pki = TestPki::new("Test")?;
        let files = tempfile::tempdir()?;
        let (cert, key) = (
            files.path().join("relay.pem"),
            files.path().join("relay.key"),
        );
        std::fs::write(&cert, &pki.cert_pem)?;
        std::fs::write(&key, &pki.key_pem)?;
        let extra = [
            "--tls-cert",
            cert.to_str().context("utf-8 path")?,
            "--tls-key",
            key.to_str().context("utf-8 path")?,
        ];
        let mut relay = Self::start_on(&extra, None, "127.0.0.1:0").await?;
        relay.url = relay.url.replacen("http://", "https://", 1);
        let token = std::fs::read_to_string(relay.data_dir().join("admin-token"))?;
        relay.admin = AdminClient::pinned(&relay.url, Some(&pki.ca_pem), token.trim())?;
        relay.server_ca = Some(pki.ca_pem);
        relay.tls_files = Some(files);
        Ok(relay)
    }

    /// The CA a relay from [`Relay::start_tls`] pins (PEM).
    pub fn server_ca(&self) -> Option<&str> {
        self.server_ca.as_deref()
    }

    async fn start_on(extra: &[&str], disk_mib: Option<u64>, listen: &str) -> Result<Relay> {
        let data = tempfile::tempdir()?;
        let admins = tempfile::tempdir()?;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let small_disk = disk_mib.map(|mib| SmallDisk {
            mib,
            exits: admins.path().join("relay-exits"),
        });
        let (child, addr) =
            spawn_relay_on(data.path(), listen, &extra, small_disk.as_ref(), &[]).await?;
        let url = format!("http://{addr}");
        let data_view = match (disk_mib, child.id()) {
            (Some(_), Some(pid)) => Some(
                PathBuf::from(format!("/proc/{}/root", supervisor_pid(pid)?)).join(
                    data.path()
                        .strip_prefix("/")
                        .context("an absolute data dir")?,
                ),
            ),
            _ => None,
        };
        let token = std::fs::read_to_string(
            data_view
                .as_deref()
                .unwrap_or(data.path())
                .join("admin-token"),
        )
        .context("relay wrote no admin token")?;
        Ok(Relay {
            child: Some(child),
            data_view,
            exits: small_disk.map(|d| d.exits),
            extra,
            env: Vec::new(),
            admin: AdminClient::new(&url, &token).expect("a loopback relay"),
            server_ca: None,
            tls_files: None,
            data,
            addr,
            url,
            clients: tempfile::tempdir()?,
            admins,
            ca_dirs: Default::default(),
        })
    }

    /// Whether this machine lets [`Relay::start_on_small_disk`] make the
    /// namespaces it needs (unprivileged user namespaces, or root). Where
    /// it does not (some containers), the tests that need a small disk
    /// say so and stop.
    pub fn small_disks_available() -> bool {
        let works = std::process::Command::new("unshare")
            .args(OWN_NAMESPACES)
            .args(["sh", "-c", "mount -t tmpfs -o size=1m cascade-probe /tmp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            eprintln!(
                "SKIPPED: this machine cannot make user and mount namespaces (unshare), \
                 which the full-disk tests need"
            );
        }
        works
    }

    /// How a supervised relay ([`Relay::start_on_small_disk`]) exited so
    /// far: one exit status per run that ended.
    pub fn exits(&self) -> Result<Vec<i32>> {
        let path = self
            .exits
            .as_ref()
            .context("this relay is not supervised")?;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// The CA directory of an organisation created with [`Relay::org`],
    /// as its admins use it now (after [`Relay::rotate_ca`], the new one).
    pub fn ca_dir(&self, org: &str) -> CaDir {
        let id = OrgId::new(org).expect("valid org id");
        CaDir::new(
            self.ca_dirs
                .lock()
                .expect("not poisoned")
                .get(&id)
                .cloned()
                .expect("organisation created with Relay::org"),
        )
    }

    /// The CA of an organisation created with [`Relay::org`].
    pub fn ca(&self, org: &str) -> std::sync::Arc<OrgCa> {
        std::sync::Arc::new(self.ca_dir(org).ca().expect("the CA directory loads"))
    }

    /// `org`'s admins pin `partner`'s current CA, with the fingerprint
    /// confirmed out of band, and publish the signed trust list
    /// (`cascade admin trust add`).
    pub async fn trust(&self, org: &str, partner: &str) -> Result<()> {
        let partner = self.ca_dir(partner);
        let pem = std::fs::read_to_string(partner.cert_path())?;
        let fingerprint = partner.anchor()?.fingerprint();
        self.ca_dir(org)
            .trust(&self.admin, &pem, &fingerprint, unix_now())
            .await?;
        Ok(())
    }

    /// `org`'s admins set its devices' idle lock and publish it in a signed
    /// trust list (`cascade admin policy --idle-lock-minutes`).
    pub async fn set_idle_lock(&self, org: &str, minutes: u32) -> Result<()> {
        let dir = self.ca_dir(org);
        let policy = cascade_core::identity::DevicePolicy {
            idle_lock_secs: minutes * 60,
            ..dir.policy()?.unwrap_or_default()
        };
        dir.set_policy(&self.admin, policy, unix_now()).await?;
        Ok(())
    }

    /// `org`'s admins unpin `partner` (every CA of theirs) and publish the
    /// signed trust list (`cascade admin trust remove`).
    pub async fn distrust(&self, org: &str, partner: &str) -> Result<()> {
        self.ca_dir(org)
            .distrust(&self.admin, &OrgId::new(partner)?, unix_now())
            .await?;
        Ok(())
    }

    /// `org`'s admins rotate its CA (`cascade admin rotate-ca`): the current
    /// CA vouches for a new one in a signed trust list, and the relay gets
    /// the new CA. Members move when re-issued ([`Relay::issue_pending`]);
    /// partners should pin the new CA next to the old one (their next
    /// [`Relay::trust`]).
    pub async fn rotate_ca(&self, org: &str) -> Result<()> {
        let id = OrgId::new(org)?;
        let new_dir = self
            .admins
            .path()
            .join(format!("{org}-{}", rand::random::<u32>()));
        let rotation = self
            .ca_dir(org)
            .rotate(
                &self.admin,
                &new_dir,
                &format!("{org} (test, rotated)"),
                unix_now(),
            )
            .await?;
        self.ca_dirs
            .lock()
            .expect("not poisoned")
            .insert(id, rotation.dir.path().to_owned());
        Ok(())
    }

    /// The device's organisation revokes it (`cascade admin revoke`): the
    /// relay refuses it and the signed revocation list, with every device
    /// the organisation revoked before, tells every client.
    pub async fn revoke(&self, org: &str, device: cascade_core::DeviceId) -> Result<()> {
        self.ca_dir(org)
            .revoke(&self.admin, &[device], unix_now())
            .await?;
        Ok(())
    }

    /// Both organisations pin each other.
    pub async fn trust_each_other(&self, a: &str, b: &str) -> Result<()> {
        self.trust(a, b).await?;
        self.trust(b, a).await
    }

    /// The relay's data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_view.as_deref().unwrap_or(self.data.path())
    }

    /// The admin API client, with the relay operator's token (it signs as
    /// an organisation through [`AdminClient::as_org`]).
    pub fn admin(&self) -> &AdminClient {
        &self.admin
    }

    /// Kills the relay with SIGKILL: no shutdown, no flush.
    pub async fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?; // SIGKILL on Unix
            c.wait().await?;
        }
        Ok(())
    }

    /// Stops the relay gracefully (SIGTERM: it closes connections and
    /// flushes its store) and waits for it to exit.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let pid = c.id().context("the relay has exited already")?;
            let status = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
            anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
            let exit = tokio::time::timeout(WAIT, c.wait())
                .await
                .context("the relay did not stop on SIGTERM")??;
            anyhow::ensure!(exit.success(), "the relay stopped with {exit}");
        }
        Ok(())
    }

    /// Environment variables the relay is started with from now on (for
    /// example `LD_PRELOAD`).
    pub fn set_env(&mut self, env: &[(&str, &Path)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
            .collect();
    }

    /// Starts the relay again on the same address and data directory.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill9().await?;
        self.start_again().await
    }

    /// Starts the relay, stopped or killed, again on the same address and
    /// data directory.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.data_view.is_some() {
            bail!("a relay on a small disk of its own restarts only under its supervisor");
        }
        anyhow::ensure!(self.child.is_none(), "the relay is running");
        let mut last = None;
        for _ in 0..50 {
            match spawn_relay(self.data.path(), &self.addr, &self.extra, &self.env).await {
                Ok((child, _)) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("relay did not restart")))
    }

    /// Creates an organisation: its admins make a CA in a directory of
    /// their own (`cascade admin org init`) and register it
    /// (`cascade admin create-org`).
    pub async fn org(&self, org: &str) -> Result<()> {
        let id = OrgId::new(org)?;
        let name = format!("{org} (test)");
        let dir = CaDir::create(self.admins.path().join(org), &id, &name, unix_now(), 3650)?;
        dir.register(&self.admin, &id, &name).await?;
        self.ca_dirs
            .lock()
            .expect("not poisoned")
            .insert(id, dir.path().to_owned());
        Ok(())
    }

    /// An enrolment code for one device of `user` (token and CA
    /// fingerprint), as `cascade admin token` makes it.
    pub async fn enrolment_code(&self, user: &str) -> Result<String> {
        let id = UserId::new(user)?;
        let code = self
            .ca_dir(id.org().as_str())
            .enrolment_code(&self.admin, &id, None)
            .await?;
        Ok(code.code)
    }

    /// The same as a `cascade://enrol` link (what `cascade admin token --qr`
    /// shows as a QR code).
    pub async fn enrolment_link(&self, user: &str) -> Result<String> {
        let id = UserId::new(user)?;
        let code = self
            .ca_dir(id.org().as_str())
            .enrolment_code(&self.admin, &id, None)
            .await?;
        Ok(code.link)
    }

    /// The organisation's admins issue certificates to its waiting devices
    /// (new ones, and ones due for renewal), as `cascade admin issue` does.
    pub async fn issue_pending(&self, org: &str) -> Result<usize> {
        self.issue_pending_for(org, 365).await
    }

    /// Like [`Relay::issue_pending`], valid for `days`.
    pub async fn issue_pending_for(&self, org: &str, days: i64) -> Result<usize> {
        let issued = self
            .ca_dir(org)
            .issue_pending(&self.admin, unix_now(), days)
            .await?;
        Ok(issued.len())
    }

    /// Creates a user and enrols their first device; returns a connected,
    /// synced client for it (its KeyPackages are on the relay).
    pub async fn user(&self, user: &str, name: &str, role: &str) -> Result<Peer> {
        self.add_user(user, name, role).await?;
        self.device(user, "first").await
    }

    /// Creates a user, as their organisation's admins do with
    /// `cascade admin add-user` (signed with the organisation's CA key).
    pub async fn add_user(&self, user: &str, name: &str, role: &str) -> Result<()> {
        let id = UserId::new(user)?;
        self.ca_dir(id.org().as_str())
            .create_user(&self.admin, &id, name, role)
            .await?;
        Ok(())
    }

    /// Enrols another device of an existing user.
    pub async fn device(&self, user: &str, device_name: &str) -> Result<Peer> {
        self.device_valid_for(user, device_name, 365).await
    }

    /// Enrols a device whose certificate is valid for `days`.
    pub async fn device_valid_for(&self, user: &str, device_name: &str, days: i64) -> Result<Peer> {
        self.enrol(user, device_name, days, &store_key()).await
    }

    /// Creates a user and enrols their first device with its data
    /// encrypted under `key` (e.g. a keystore's raw key) instead of
    /// [`PASSPHRASE`]; reopen it with [`Peer::open_with`].
    pub async fn user_with_key(
        &self,
        user: &str,
        name: &str,
        role: &str,
        key: &StoreKey,
    ) -> Result<Peer> {
        self.add_user(user, name, role).await?;
        self.enrol(user, "first", 365, key).await
    }

    async fn enrol(
        &self,
        user: &str,
        device_name: &str,
        days: i64,
        key: &StoreKey,
    ) -> Result<Peer> {
        let id = UserId::new(user)?;
        let code = self.enrolment_code(user).await?;
        let dir = self
            .clients
            .path()
            .join(format!("{user}-{device_name}-{}", rand::random::<u32>()));
        Client::enrol_pinned(&dir, &self.url, self.server_ca(), &code, device_name, key).await?;
        // The organisation's admins issue the certificate.
        self.issue_pending_for(id.org().as_str(), days).await?;
        // Like `cascade enrol`: connect once, so the device's KeyPackages are
        // on the relay before anyone tries to add it.
        let peer = Peer::open_with(dir, None, key).await?;
        peer.sync().await?;
        Ok(peer)
    }
}

impl Relay {
    /// The relay process's id, while it runs (for the load generator's
    /// memory and CPU figures).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Stops the relay process where it is (SIGSTOP): connections stay
    /// open and nothing is answered, as with a relay that hangs.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Lets a paused relay go on (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().context("the relay is not running")?;
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} {pid}: {status}");
        Ok(())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.start_kill();
        }
    }
}

async fn spawn_relay(
    data: &Path,
    listen: &str,
    extra: &[String],
    env: &[(String, std::ffi::OsString)],
) -> Result<(Child, String)> {
    spawn_relay_on(data, listen, extra, None, env).await
}

/// `unshare`'s options for a relay on a small disk: user (root inside),
/// mount and PID namespaces of its own, all killed with `unshare`.
const OWN_NAMESPACES: [&str; 5] = [
    "--user",
    "--map-root-user",
    "--mount",
    "--pid",
    "--kill-child",
];

/// A relay's own small disk (see [`Relay::start_on_small_disk`]).
struct SmallDisk {
    mib: u64,
    /// The supervisor appends each exit status here.
    exits: PathBuf,
}

/// The shell that mounts a small disk and supervises the relay on it:
/// `sh -c SCRIPT sh <data dir> <exits file> <MiB> <relay> <args>...`.
const SMALL_DISK_SUPERVISOR: &str = r#"
data="$1"; exits="$2"; size="$3"; shift 3
mount -t tmpfs -o "size=${size}m,mode=0700" cascade-test "$data" || exit 97
while :; do
  "$@"
  status=$?
  echo "$status" >> "$exits"
  [ "$status" -eq 0 ] && exit 0
  sleep 0.2
done
"#;

/// The host PID of the supervising shell: the only child of `unshare`.
fn supervisor_pid(unshare: u32) -> Result<u32> {
    let children = format!("/proc/{unshare}/task/{unshare}/children");
    for _ in 0..100 {
        if let Some(pid) = std::fs::read_to_string(&children)?
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("unshare started no supervisor")
}

/// Spawns the relay; with `disk`, on a tmpfs of that size mounted at `data`
/// in namespaces of its own, under a supervisor.
async fn spawn_relay_on(
    data: &Path,
    listen: &str,
    extra: &[String],
    disk: Option<&SmallDisk>,
    env: &[(String, std::ffi::OsString)],
) -> Result<(Child, String)> {
    let bin = bin_dir().join("cascade-server");
    if !bin.exists() {
        bail!(
            "{} not built: run `cargo build --workspace` first (cargo xtask test does)",
            bin.display()
        );
    }
    let mut command = match disk {
        None => Command::new(&bin),
        Some(disk) => {
            let mut c = Command::new("unshare");
            c.args(OWN_NAMESPACES)
                .args(["sh", "-c", SMALL_DISK_SUPERVISOR, "sh"])
                .arg(data)
                .arg(&disk.exits)
                .arg(disk.mib.to_string())
                .arg(&bin);
            c
        }
    };
    let mut child = command
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data)
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(
            "RUST_LOG",
            std::env::var("CASCADE_RELAY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(u) = line
                .strip_prefix("cascade-server listening on http://")
                .or_else(|| line.strip_prefix("cascade-server listening on https://"))
            {
                return Ok::<_, anyhow::Error>(u.trim().to_owned());
            }
        }
        bail!("relay exited before listening")
    })
    .await
    .context("relay did not start in time")??;
    // Keep draining stdout so the relay never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}

/// A test participant: one device's client and its event stream.
pub struct Peer {
    /// The client.
    pub client: Client,
    events: broadcast::Receiver<Event>,
    /// The device's data directory.
    pub dir: PathBuf,
}

impl Peer {
    /// Opens (or reopens, after a restart) a device's data directory.
    pub async fn open(dir: PathBuf) -> Result<Peer> {
        Self::open_via(dir, None).await
    }

    /// Opens a device that connects through `url` (e.g. a [`proxy::Proxy`]).
    pub async fn open_via(dir: PathBuf, url: Option<&str>) -> Result<Peer> {
        Self::open_with(dir, url, &store_key()).await
    }

    /// Opens a device whose data `key` unlocks (see
    /// [`Relay::user_with_key`]), connecting through `url` if given.
    pub async fn open_with(dir: PathBuf, url: Option<&str>, key: &StoreKey) -> Result<Peer> {
        let client = Client::open_via(&dir, url, key).await?;
        let events = client.events_since_open();
        Ok(Peer {
            client,
            events,
            dir,
        })
    }

    /// The user this device belongs to.
    pub fn user(&self) -> UserId {
        self.client.identity().user_id.clone()
    }

    /// Waits until connected, caught up and with an empty outbox.
    pub async fn sync(&self) -> Result<()> {
        if !self.client.sync(WAIT).await? {
            bail!("{} did not sync in time", self.user());
        }
        Ok(())
    }

    /// Waits for an event matching `pred`, returning it.
    pub async fn wait_event(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Result<Event> {
        let user = self.user();
        tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Ok(ev) if pred(&ev) => return Ok(ev),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => bail!("event stream closed: {e}"),
                }
            }
        })
        .await
        .with_context(|| format!("{user} waited in vain for {what}"))?
    }

    /// Polls until `check` holds (for state rather than events).
    pub async fn until<F, Fut>(&self, what: &str, mut check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let user = self.user();
        poll_until(|| {
            let done = check();
            async {
                Ok(if done.await? {
                    Ok(())
                } else {
                    Err(format!("{user} waited in vain for {what}"))
                })
            }
        })
        .await
    }

    /// Creates a conversation with these members and waits until every one
    /// of them has joined.
    pub async fn create_group_with(&self, name: &str, members: &[&Peer]) -> Result<GroupId> {
        let group = self.client.create_group(name).await?;
        if !members.is_empty() {
            self.client
                .add_members(group, members.iter().map(|p| p.user()).collect())
                .await?;
        }
        self.sync().await?;
        for m in members {
            m.joined(group).await?;
        }
        Ok(group)
    }

    /// Waits until the device is in the conversation.
    pub async fn joined(&self, group: GroupId) -> Result<()> {
        self.until("joining the conversation", || async {
            Ok(self.client.conversation(group).await.is_ok())
        })
        .await
    }

    /// Waits until the conversation holds `n` messages; returns them.
    pub async fn messages(&self, group: GroupId, n: usize) -> Result<Vec<Message>> {
        self.until(&format!("{n} messages"), || async {
            Ok(self
                .client
                .history(group, None, 10_000)
                .await
                .map(|h| h.len() >= n)
                .unwrap_or(false))
        })
        .await?;
        Ok(self.client.history(group, None, 10_000).await?)
    }

    /// The texts of a conversation, oldest first.
    pub async fn texts(&self, group: GroupId) -> Result<Vec<String>> {
        Ok(self
            .client
            .history(group, None, 10_000)
            .await?
            .into_iter()
            .filter_map(|m| m.text)
            .collect())
    }

    /// The users in a conversation, sorted, deduplicated.
    pub async fn member_users(&self, group: GroupId) -> Result<Vec<UserId>> {
        let mut users: Vec<UserId> = self
            .client
            .members(group)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        users.sort();
        users.dedup();
        Ok(users)
    }

    /// Stops the client (as if the app were closed).
    pub async fn close(self) -> PathBuf {
        let dir = self.dir.clone();
        self.client.shutdown().await;
        dir
    }
}

/// Polls `check` every 50 ms for at most [`WAIT`]. `check` answers
/// `Ok(Ok(value))` when done, `Ok(Err(why))` while not yet (the last `why`
/// is the error on time-out, so it can say what was seen), or an error that
/// ends the wait at once.
pub async fn poll_until<T, F, Fut>(mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<std::result::Result<T, String>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match check().await? {
            Ok(value) => return Ok(value),
            Err(why) if tokio::time::Instant::now() > deadline => bail!("{why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A private CA (its certificate in PEM) and a relay certificate and key
/// it signed, for 127.0.0.1 and localhost.
pub struct TestPki {
    /// The CA's certificate.
    pub ca_pem: String,
    /// The relay's certificate.
    pub cert_pem: String,
    /// The relay's private key.
    pub key_pem: String,
}

impl TestPki {
    /// A new CA named after `name`, and a certificate valid for a year.
    pub fn new(name: &str) -> Result<TestPki> {
        let now = time_now_year()?;
        Self::expiring(name, (now + 1, 1, 1))
    }

    /// Like [`TestPki::new`], with the relay certificate expiring on the
    /// given (year, month, day).
    pub fn expiring(name: &str, expires: (i32, u8, u8)) -> Result<TestPki> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} relay CA"));
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
        leaf.not_after = rcgen::date_time_ymd(expires.0, expires.1, expires.2);
        leaf.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse()?));
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// This year (UTC).
fn time_now_year() -> Result<i32> {
    let days = unix_now() / 86_400;
    // 1970 + days / 365.2425, good to the year for certificate validity.
    Ok(1970 + (days as f64 / 365.2425) as i32)
}

/// Copies the directory tree `from` into `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Whether any file under `dir` contains `needle` (as raw bytes).
pub fn dir_contains(dir: &Path, needle: &[u8]) -> Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let found = if entry.file_type()?.is_dir() {
            dir_contains(&entry.path(), needle)?
        } else {
            std::fs::read(entry.path())?
                .windows(needle.len())
                .any(|w| w == needle)
        };
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    (cascade_core::client::now_ms() / 1000) as i64
}

/// Parses a user id (panics on an invalid literal: test code).
pub fn uid(s: &str) -> UserId {
    UserId::new(s).expect("valid user id literal")
}

impl Peer {
    /// Forgets the events received so far, so that the next
    /// [`Peer::wait_event`] waits for a new one (e.g. a second
    /// `CertificateReceived`, not the one of the first connection, which
    /// the stream since opening still holds).
    pub fn forget_events(&mut self) {
        self.events_so_far();
    }

    /// The events received and not yet waited for (those the stream lost
    /// by lagging are skipped).
    pub fn events_so_far(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(e) => events.push(e),
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return events,
            }
        }
    }
}
