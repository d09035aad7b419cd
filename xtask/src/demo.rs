//! `cargo xtask demo`: build, start a relay on the embedded sled store,
//! provision a demo organisation (and a partner organisation), and open the
//! desktop app twice: as Alice (demo trust) and as Carol (the partner
//! ambulance service), side by side. Without a display it opens a terminal
//! chat as Alice instead.
//!
//! State lives in `$HOME/.local/share/cascade-demo` (override with
//! `CASCADE_DEMO_DIR`) and is reused on the next run; `--reset` starts over.
//! `--terminal` uses the terminal chat even with a display. `--no-chat`
//! provisions, prints how to chat, and keeps the relay running until Ctrl-C
//! (for machines without an interactive terminal).

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{build_ui, ensure_apt, run as run_cmd, target_dir, APT_PACKAGES};

const LISTEN: &str = "127.0.0.1:7171";
const GROUP: &str = "Ward 7 handover";

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        // SIGTERM for a graceful shutdown, then reap.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// The passphrase of the demo devices' data (printed: the demo's data is
/// not secret).
const PASSPHRASE: &str = "demo passphrase";

fn cascade(bin: &Path, data: &Path) -> Command {
    let mut c = Command::new(bin.join("cascade"));
    c.arg("--data-dir")
        .arg(data)
        .env("CASCADE_PASSPHRASE", PASSPHRASE);
    c
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("the demo directory path is not UTF-8")
}

fn capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed with {}", out.status);
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Runs the demo.
pub fn run(_root: &Path, args: &[String]) -> Result<()> {
    let reset = args.iter().any(|a| a == "--reset");
    let terminal = args.iter().any(|a| a == "--terminal");
    let display = std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty());
    let desktop = display && !terminal && !args.iter().any(|a| a == "--no-chat");
    let no_chat = args.iter().any(|a| a == "--no-chat") || !std::io::stdin().is_terminal();
    ensure_apt(APT_PACKAGES)?;
    build_ui()?;
    run_cmd(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "build",
            "--workspace",
            "--bins",
            "--locked",
        ]),
    )?;
    let bin = target_dir().join("debug");
    let base = std::env::var_os("CASCADE_DEMO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".local/share/cascade-demo")
        });
    if reset && base.exists() {
        std::fs::remove_dir_all(&base)?;
    }
    std::fs::create_dir_all(&base)?;
    let relay_dir = base.join("relay");

    let log_path = base.join("relay.log");
    let log = std::fs::File::create(&log_path).context("creating the relay log")?;
    let mut child = Command::new(bin.join("cascade-server"))
        .args(["serve", "--listen", LISTEN, "--data-dir"])
        .arg(&relay_dir)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting cascade-server")?;
    let stdout = child.stdout.take().expect("piped");
    let relay = Relay(child);
    let mut url = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(u) = line.strip_prefix("cascade-server listening on ") {
            url = Some(u.trim().to_owned());
            break;
        }
    }
    let Some(url) = url else {
        bail!(
            "the relay did not start (is {LISTEN} already in use?); see {}",
            log_path.display()
        );
    };

    let users = [
        ("alice@demo-trust", "Alice Okafor", "Ward Sister"),
        ("bob@demo-trust", "Bob Singh", "Junior Doctor"),
        ("carol@demo-ambulance", "Carol Hughes", "Paramedic"),
    ];
    let dir_of = |user: &str| base.join(user.split('@').next().expect("local part"));
    if !dir_of(users[0].0).join("cascade.db").exists() {
        println!("Provisioning the demo organisations…");
        let token_file = relay_dir.join("admin-token");
        let admin = |args: &[&str]| -> Result<String> {
            capture(
                Command::new(bin.join("cascade"))
                    .args(["admin", "--server", &url, "--token-file"])
                    .arg(&token_file)
                    .args(args),
            )
        };
        let orgs = [
            ("demo-trust", "Demo NHS Trust"),
            ("demo-ambulance", "Demo Ambulance Service"),
        ];
        let ca_dir = |org: &str| base.join("ca").join(org);
        for (org, name) in orgs {
            // Each organisation's admins make its CA; the key stays here.
            let dir = ca_dir(org);
            capture(
                Command::new(bin.join("cascade"))
                    .args([
                        "admin", "org", "init", "--org", org, "--name", name, "--dir",
                    ])
                    .arg(&dir),
            )?;
            admin(&[
                "create-org",
                org,
                "--name",
                name,
                "--ca-dir",
                path_str(&dir)?,
            ])?;
        }
        // The two organisations pin each other, confirming fingerprints.
        for (a, b) in [(orgs[0].0, orgs[1].0), (orgs[1].0, orgs[0].0)] {
            let cert = ca_dir(b).join("ca-cert.pem");
            let fp = capture(
                Command::new(bin.join("cascade"))
                    .args(["admin", "org", "fingerprint"])
                    .arg(&cert),
            )?;
            let fp = fp.split_whitespace().last().unwrap_or_default().to_owned();
            admin(&[
                "trust",
                "add",
                "--ca-dir",
                path_str(&ca_dir(a))?,
                "--cert",
                path_str(&cert)?,
                "--fingerprint",
                &fp,
            ])?;
        }
        for (user, name, role) in users {
            let org = user.split('@').nth(1).expect("user@org");
            admin(&[
                "add-user",
                user,
                "--name",
                name,
                "--role",
                role,
                "--ca-dir",
                path_str(&ca_dir(org))?,
            ])?;
            let code = admin(&["token", user, "--ca-dir", path_str(&ca_dir(org))?])?;
            capture(cascade(&bin, &dir_of(user)).args([
                "enrol",
                "--server",
                &url,
                "--code",
                &code,
                "--device-name",
                "demo terminal",
            ]))?;
            admin(&["issue", "--ca-dir", path_str(&ca_dir(org))?])?;
            // Connect once more: the device picks up its certificate and
            // uploads KeyPackages.
            capture(cascade(&bin, &dir_of(user)).arg("sync"))?;
        }
        capture(
            cascade(&bin, &dir_of(users[0].0))
                .args(["create", GROUP, "-m", users[1].0, "-m", users[2].0]),
        )?;
        capture(cascade(&bin, &dir_of(users[0].0)).args([
            "send",
            GROUP,
            "Morning all, handover at 08:00. Bed 12 needs a transfer to the ambulance crew.",
        ]))?;
        for (user, _, _) in &users[1..] {
            capture(cascade(&bin, &dir_of(user)).arg("sync"))?;
        }
    }

    let cli = bin.join("cascade");
    println!();
    println!(
        "Cascade demo is running: relay {url}, store {}",
        relay_dir.display()
    );
    println!("Chat as another user in a second terminal (passphrase \"{PASSPHRASE}\"):");
    // In the desktop demo Carol has a window; her data directory must not
    // be opened twice.
    let others: &[_] = if desktop { &users[1..2] } else { &users[1..] };
    for (user, name, _) in others {
        println!(
            "  {} --data-dir {} chat '{GROUP}'    # {name}",
            cli.display(),
            dir_of(user).display()
        );
    }
    println!();
    if desktop {
        // Two windows: Alice at the trust, Carol at the ambulance service.
        let mut windows = Vec::new();
        for ((user, name, _), geometry) in [(users[0], "960x800+0+0"), (users[2], "960x800+960+0")]
        {
            println!("Opening the desktop app as {name} ({user})…");
            windows.push(
                Command::new(bin.join("cascade-desktop"))
                    .env("CASCADE_PASSPHRASE", PASSPHRASE)
                    .arg("--data-dir")
                    .arg(dir_of(user))
                    .args(["--geometry", geometry])
                    .spawn()
                    .context("starting cascade-desktop")?,
            );
        }
        println!("Close both windows (or press Ctrl-C) to stop the demo.");
        for mut w in windows {
            let _ = w.wait();
        }
        drop(relay);
        return Ok(());
    }
    if no_chat {
        println!("No interactive terminal here: the relay keeps running until Ctrl-C.");
        let _ = relay.0.id();
        // Wait for the relay (Ctrl-C reaches the whole process group).
        let mut relay = relay;
        let _ = relay.0.wait();
        return Ok(());
    }
    println!(
        "You are {} ({}). Type a message and press Enter; Ctrl-D quits.",
        users[0].1, users[0].0
    );
    let status = cascade(&bin, &dir_of(users[0].0))
        .args(["chat", GROUP])
        .status()
        .context("starting the terminal client")?;
    drop(relay);
    if !status.success() {
        bail!("the terminal client exited with {status}");
    }
    Ok(())
}
