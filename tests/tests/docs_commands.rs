//! Every shell command in `README.md` and `docs/admin-guide.md`, run as a
//! reader types it, through the real `cascade` and `cascade-server`
//! binaries, against a real relay in a temporary directory.
//!
//! Each test reads its document, takes the commands out of its `sh` code
//! blocks (comments dropped, `\` continuations joined), and replays the
//! document in order: [`Doc::run`] names the next command exactly as it is
//! written and runs it with `sh -c`, so a command that changes in the
//! document fails the test until the test changes with it, and
//! [`Doc::finish`] fails if the document has a command the test never ran
//! (a new documented command needs its line here). Commands that cannot
//! run in a test are skipped by name, with the reason ([`Doc::skip`]).
//! Steps the document only describes in words ("once Bob is enrolled the
//! same way") are [`Doc::extra`] commands, run the same way.
//!
//! What a command sees is a reader's machine with its roots moved: `HOME`
//! is a temporary directory (so `~/cascade-ca/…` lands there), the
//! directory `cascade` and `cascade-server` are found in is the one the
//! tests were built with (first on `PATH`, and as
//! `$CARGO_TARGET_DIR/release`), and the command's text is rewritten only
//! for what must differ: `/var/lib/cascade` becomes a temporary directory,
//! the relay's port 7171 (and `relay.example:7171`) a free port, and
//! placeholders (`<enrolment code>`, `<device id>`, …) and example values
//! (a fingerprint, a device id) become the real values from earlier output.
//! A command fails the test if it exits non-zero, prints a panic, or leaves
//! a placeholder unfilled. Where the reader would type the passphrase of
//! their device's data at `cascade`'s prompt, the command gets it in
//! `CASCADE_PASSPHRASE`, as the user guide says scripts do.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use cascade_tests::bin_dir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The passphrase of every device's data the documents' commands enrol.
const DOC_PASSPHRASE: &str = "a passphrase for the docs";

/// How long one documented command may take.
const COMMAND_WAIT: Duration = Duration::from_secs(60);

/// Takes the commands out of a markdown document's shell code blocks
/// (`sh`, or `bash`, `shell`, `console` should one appear).
fn commands(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = None::<bool>;
    let mut pending = String::new();
    for line in markdown.lines() {
        let trimmed = line.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            in_sh = match in_sh {
                None => Some(matches!(info.trim(), "sh" | "bash" | "shell" | "console")),
                Some(_) => None,
            };
            continue;
        }
        if in_sh != Some(true)
            || (pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')))
        {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head.trim_end());
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                out.push(std::mem::take(&mut pending));
            }
        }
    }
    out
}

/// `NAME` if `line` only sets a variable (`NAME=value` or
/// `export NAME=value`, perhaps with a comment after it).
fn assigned_variable(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let (name, value) = rest.split_once('=')?;
    let is_name = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    let after_value = value.split_once(char::is_whitespace).map(|(_, r)| r.trim());
    (is_name && after_value.is_none_or(|r| r.is_empty() || r.starts_with('#'))).then_some(name)
}

/// A documented command running in another terminal.
struct Running {
    command: String,
    child: Child,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Running {
    /// Reads what it prints until a line containing `marker`; returns that
    /// line.
    async fn line_with(&mut self, marker: &str) -> Result<String> {
        tokio::time::timeout(COMMAND_WAIT, async {
            while let Some(l) = self.stdout.next_line().await? {
                println!("  [{}] {l}", self.command);
                if l.contains(marker) {
                    return Ok(l);
                }
            }
            bail!("{:?} ended without printing {marker:?}", self.command)
        })
        .await
        .with_context(|| format!("{:?} did not print {marker:?} in time", self.command))?
    }

    /// Types `line` into it.
    async fn type_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.child.stdin.as_mut().context("no stdin")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Waits for it to end, which it must do successfully; returns the rest
    /// of what it printed.
    async fn finish(mut self) -> Result<String> {
        let mut rest = String::new();
        while let Some(l) = self.stdout.next_line().await? {
            println!("  [{}] {l}", self.command);
            rest.push_str(&l);
            rest.push('\n');
        }
        let out = tokio::time::timeout(COMMAND_WAIT, self.child.wait_with_output())
            .await
            .with_context(|| format!("{:?} did not finish in time", self.command))??;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.success() && !stderr.contains("panicked at"),
            "{:?} failed ({}): {stderr}",
            self.command,
            out.status
        );
        Ok(rest)
    }
}

/// A placeholder left in a command: `<` and `>` around words.
fn placeholder(command: &str) -> Option<&str> {
    let start = command.find('<')?;
    let len = command[start..].find('>')?;
    let inner = &command[start + 1..start + len];
    (!inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _-.…".contains(c)))
    .then(|| &command[start..=start + len])
}

/// What a command printed.
struct Output {
    stdout: String,
    stderr: String,
}

impl Output {
    /// The first line that starts with `prefix`, without the prefix.
    fn after(&self, prefix: &str) -> Result<String> {
        self.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(|s| s.trim().to_owned())
            .with_context(|| format!("no line starting {prefix:?} in {:?}", self.stdout))
    }

    /// The word after `marker` (e.g. the device id after "as device ").
    fn word_after(&self, marker: &str) -> Result<String> {
        let (_, rest) = self
            .stdout
            .split_once(marker)
            .with_context(|| format!("{marker:?} not in {:?}", self.stdout))?;
        Ok(rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned())
    }
}

/// One document being replayed.
struct Doc {
    /// The relay the document started (first, so it stops before its
    /// directory goes).
    relay: Option<Child>,
    name: &'static str,
    left: VecDeque<String>,
    /// The reader's machine (removed when the run ends).
    _tmp: tempfile::TempDir,
    home: PathBuf,
    /// Environment of every command: a clean one, plus what the document
    /// exported.
    env: Vec<(String, String)>,
    /// Text replaced in every command before it runs.
    rewrites: Vec<(String, String)>,
    skipped: Vec<(String, &'static str)>,
}

impl Doc {
    /// Reads `file` (relative to the workspace) and prepares a machine to
    /// replay it on.
    fn open(name: &'static str) -> Result<Doc> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let tmp = tempfile::tempdir()?;
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join("work"))?;
        std::fs::create_dir_all(tmp.path().join("var/lib"))?;
        // `${CARGO_TARGET_DIR:-…}/release` is where the README's commands
        // find the binaries: point it at the ones under test.
        let target = tmp.path().join("target");
        std::fs::create_dir_all(&target)?;
        std::os::unix::fs::symlink(bin_dir(), target.join("release"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let var_lib = tmp.path().join("var/lib/cascade").display().to_string();
        let path_var = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        Ok(Doc {
            name,
            left: commands(&text).into(),
            env: vec![
                ("PATH".into(), path_var),
                ("HOME".into(), home.display().to_string()),
                ("CARGO_TARGET_DIR".into(), target.display().to_string()),
                ("LANG".into(), "C.UTF-8".into()),
                // What the reader types when `cascade` asks for the
                // passphrase of a device's data: a command here has no
                // terminal to ask on, so it is given the way the user
                // guide gives it to scripts.
                ("CASCADE_PASSPHRASE".into(), DOC_PASSPHRASE.into()),
            ],
            rewrites: vec![
                ("/var/lib/cascade".into(), var_lib),
                ("relay.example:7171".into(), format!("127.0.0.1:{port}")),
                ("127.0.0.1:7171".into(), format!("127.0.0.1:{port}")),
            ],
            _tmp: tmp,
            home,
            relay: None,
            skipped: Vec::new(),
        })
    }

    /// From now on, `text` in a command stands for `value` (a placeholder
    /// or an example value in the document).
    fn fill(&mut self, text: &str, value: &str) {
        self.rewrites.push((text.to_owned(), value.to_owned()));
    }

    /// Takes the next documented command, which must be `expected`.
    fn next(&mut self, expected: &str) -> Result<String> {
        let Some(next) = self.left.pop_front() else {
            bail!(
                "{}: the test runs {expected:?}, but the document has no more commands",
                self.name
            );
        };
        ensure!(
            next == expected,
            "{}: the next documented command is\n    {next}\nbut the test expected\n    {expected}\n\
             (a documented command changed, or one was added or removed: update the test with it)",
            self.name
        );
        Ok(next)
    }

    fn rewrite(&self, command: &str) -> Result<String> {
        let mut c = command.to_owned();
        for (from, to) in &self.rewrites {
            c = c.replace(from, to);
        }
        if let Some(p) = placeholder(&c) {
            bail!("{}: no value for {p} in {command:?}", self.name);
        }
        Ok(c)
    }

    fn shell(&self, script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.home.join("work"))
            .kill_on_drop(true);
        cmd
    }

    /// Runs the next documented command, which must be `expected`, and
    /// returns what it printed.
    async fn run(&mut self, expected: &str) -> Result<Output> {
        self.run_with_input(expected, "").await
    }

    /// Like [`Doc::run`], with `input` on standard input.
    async fn run_with_input(&mut self, expected: &str, input: &str) -> Result<Output> {
        let command = self.next(expected)?;
        self.execute(&command, input).await
    }

    /// Runs a step the document describes only in words.
    async fn extra(&mut self, command: &str) -> Result<Output> {
        self.execute(command, "").await
    }

    /// The next documented command is `expected`, and is not run, because
    /// `why`.
    fn skip(&mut self, expected: &str, why: &'static str) -> Result<()> {
        let command = self.next(expected)?;
        println!("SKIPPED  {command}\n         ({why})");
        self.skipped.push((command, why));
        Ok(())
    }

    async fn execute(&mut self, command: &str, input: &str) -> Result<Output> {
        self.execute_expecting(command, input, false).await
    }

    /// A command that is not in the document, which must fail (cleanly).
    async fn extra_failing(&mut self, command: &str) -> Result<Output> {
        self.execute_expecting(command, "", true).await
    }

    async fn execute_expecting(
        &mut self,
        command: &str,
        input: &str,
        fails: bool,
    ) -> Result<Output> {
        let line = self.rewrite(command)?;
        println!("$ {line}");
        if let Some(name) = assigned_variable(&line) {
            // A variable for the commands after it, as in the reader's
            // shell.
            let script = format!("{line}\nprintf '%s' \"${name}\"");
            let out = self.shell(&script).output().await?;
            ensure!(out.status.success(), "{command:?} failed");
            let value = String::from_utf8(out.stdout)?;
            self.env.retain(|(k, _)| k != name);
            self.env.push((name.to_owned(), value));
            return Ok(Output {
                stdout: String::new(),
                stderr: String::new(),
            });
        }
        let mut child = self
            .shell(&line)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(input.as_bytes()).await?;
        drop(stdin);
        let out = tokio::time::timeout(COMMAND_WAIT, child.wait_with_output())
            .await
            .with_context(|| format!("{command:?} did not finish in time"))??;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        for l in stdout.lines() {
            println!("  {l}");
        }
        for l in stderr.lines() {
            println!("  (stderr) {l}");
        }
        ensure!(
            !["panicked at", "internal error", "RUST_BACKTRACE"]
                .iter()
                .any(|p| stderr.contains(p) || stdout.contains(p)),
            "{}: {command:?} panicked:\n{stderr}",
            self.name
        );
        ensure!(
            out.status.success() != fails,
            "{}: {command:?} {} ({}):\n{stdout}{stderr}",
            self.name,
            if fails {
                "succeeded, but should fail"
            } else {
                "failed"
            },
            out.status
        );
        Ok(Output { stdout, stderr })
    }

    /// Starts the next documented command, which must be `expected`, as the
    /// reader would in another terminal (or on another machine: `env` is
    /// that machine's), to talk to it while it runs.
    fn spawn(&mut self, expected: &str, env: &[(&str, String)]) -> Result<Running> {
        let command = self.next(expected)?;
        let line = self.rewrite(&command)?;
        println!("$ {line} &   (in another terminal)");
        let mut child = self
            .shell(&line)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        Ok(Running {
            command,
            child,
            stdout,
        })
    }

    /// Starts the next documented command, which must be `expected`, as the
    /// relay the reader runs in another terminal, and waits until it
    /// listens.
    async fn serve(&mut self, expected: &str) -> Result<()> {
        let command = self.next(expected)?;
        self.start_relay(&command, "").await
    }

    /// Runs `command` (rewritten) in the background as the relay, and waits
    /// until it listens.
    async fn start_relay(&mut self, command: &str, note: &str) -> Result<()> {
        let line = self.rewrite(command)?;
        println!("$ {line} &{note}");
        let mut child = self
            .shell(&format!("exec {line}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        tokio::time::timeout(COMMAND_WAIT, async {
            while let Some(l) = lines.next_line().await? {
                println!("  {l}");
                if l.contains("listening on") {
                    return Ok(());
                }
            }
            bail!("{command:?} exited before listening")
        })
        .await
        .with_context(|| format!("{command:?} did not start in time"))??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.relay = Some(child);
        Ok(())
    }

    /// Starts `command`, which the document does not show (a relay the
    /// reader's administrator runs), and waits until it listens.
    async fn serve_extra(&mut self, command: &str) -> Result<()> {
        self.start_relay(command, "   (not in the document)").await
    }

    /// Every documented command was run or skipped.
    fn finish(self) -> Result<()> {
        ensure!(
            self.left.is_empty(),
            "{}: these documented commands are not run by the test: {:#?}",
            self.name,
            self.left
        );
        println!(
            "{}: every command run, except {} skipped",
            self.name,
            self.skipped.len()
        );
        Ok(())
    }
}

#[test]
fn commands_are_taken_from_sh_blocks_only() {
    let md = "text `cascade x`\n```sh\n# comment\nfoo --a \\\n    --b <c d>\n\nbar  # note\n```\n```\nnot a command\n```\n   ```sh\n   baz\n   ```\n";
    assert_eq!(
        commands(md),
        vec!["foo --a --b <c d>", "bar  # note", "baz"]
    );
    assert_eq!(assigned_variable("export A_B=/x   # or --y"), Some("A_B"));
    assert_eq!(
        assigned_variable("target=${X:-$HOME/y}/release"),
        Some("target")
    );
    assert_eq!(assigned_variable("A=1 cascade sync"), None);
    assert_eq!(assigned_variable("cascade --x=1"), None);
    assert_eq!(
        placeholder("x --code <enrolment code>"),
        Some("<enrolment code>")
    );
    assert_eq!(placeholder("jq -r .a > relay-ca.pem"), None);
}

/// README.md, top to bottom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_commands_work_as_documented() -> Result<()> {
    let mut doc = Doc::open("README.md")?;
    doc.skip(
        "cargo xtask demo    # build, start a relay with a demo organisation, open the app and chat",
        "builds the workspace, installs packages and opens windows; its steps are the ones below",
    )?;
    doc.skip(
        "cargo xtask test    # install what is missing, build, run every test",
        "it is the test run this test is part of",
    )?;
    doc.skip(
        "~/.cache/cascade/target/debug/cascade --data-dir ~/.local/share/cascade-demo/bob chat 'Ward 7 handover'",
        "needs the demo's data directory, which `cargo xtask demo` makes; `cascade chat` runs below",
    )?;
    doc.skip(
        "cargo build --workspace --release",
        "the test runs the binaries it was built with; $target points at them",
    )?;
    doc.run("target=${CARGO_TARGET_DIR:-$HOME/.cache/cascade/target}/release")
        .await?;
    doc.serve("$target/cascade-server serve --data-dir /var/lib/cascade --listen 127.0.0.1:7171")
        .await?;

    doc.run("export CASCADE_SERVER=http://127.0.0.1:7171")
        .await?;
    doc.run("export CASCADE_ADMIN_TOKEN_FILE=/var/lib/cascade/admin-token")
        .await?;
    doc.run("$target/cascade admin org init --org north-trust --name \"North NHS Trust\" --dir ~/cascade-ca/north-trust").await?;
    doc.run("$target/cascade admin create-org north-trust --name \"North NHS Trust\" --ca-dir ~/cascade-ca/north-trust").await?;
    doc.run("$target/cascade admin add-user alice@north-trust --name \"Alice Okafor\" --role \"Ward Sister\" --ca-dir ~/cascade-ca/north-trust").await?;
    let code = doc
        .run("$target/cascade admin token alice@north-trust --ca-dir ~/cascade-ca/north-trust")
        .await?;
    doc.fill("<enrolment code>", code.stdout.trim());
    let enrolled = doc
        .run("$target/cascade enrol --server http://127.0.0.1:7171 --code <enrolment code>")
        .await?;
    let alice_device = enrolled.word_after("as device ")?;
    let issued = doc
        .run("$target/cascade admin issue --ca-dir ~/cascade-ca/north-trust")
        .await?;
    ensure!(
        issued.stdout.contains(&alice_device),
        "alice's device is issued"
    );

    // "Once Bob is enrolled the same way".
    doc.extra("$target/cascade admin add-user bob@north-trust --name \"Bob Singh\" --role \"Junior Doctor\" --ca-dir ~/cascade-ca/north-trust").await?;
    let bob_code = doc
        .extra("$target/cascade admin token bob@north-trust --ca-dir ~/cascade-ca/north-trust")
        .await?;
    doc.extra(&format!(
        "$target/cascade --data-dir ~/bob enrol --server $CASCADE_SERVER --code {}",
        bob_code.stdout.trim()
    ))
    .await?;
    doc.extra("$target/cascade admin issue --ca-dir ~/cascade-ca/north-trust")
        .await?;
    doc.extra("$target/cascade --data-dir ~/bob sync").await?;

    doc.run("$target/cascade sync      # picks up the certificate")
        .await?;
    doc.run("$target/cascade create \"Ward 7\" -m bob@north-trust")
        .await?;
    doc.run("$target/cascade send \"Ward 7\" \"Handover at 08:00\"")
        .await?;
    let chat = doc
        .run_with_input("$target/cascade chat \"Ward 7\"", "On my way\n")
        .await?;
    ensure!(
        chat.stdout.contains("Handover at 08:00"),
        "chat shows the history"
    );
    let bob_sees = doc
        .extra("$target/cascade --data-dir ~/bob history \"Ward 7\"")
        .await?;
    ensure!(
        bob_sees.stdout.contains("Handover at 08:00") && bob_sees.stdout.contains("On my way"),
        "Bob reads both messages"
    );

    // The partner's admins made their CA and sent its certificate.
    let partner = doc
        .extra("$target/cascade admin org init --org east-ambulance --name \"East Ambulance Service\" --dir ~/partner-ca")
        .await?;
    let partner_fp = partner.after("fingerprint:")?;
    doc.extra("cp ~/partner-ca/ca-cert.pem partner-ca.pem")
        .await?;
    let fp = doc
        .run("$target/cascade admin org fingerprint partner-ca.pem     # compare with what the partner read out")
        .await?;
    ensure!(
        fp.stdout.contains(&partner_fp),
        "the fingerprint printed is the partner's"
    );
    doc.fill("<fingerprint read out by the partner>", &partner_fp);
    let trusted = doc
        .run("$target/cascade admin trust add --ca-dir ~/cascade-ca/north-trust --cert partner-ca.pem --fingerprint <fingerprint read out by the partner>")
        .await?;
    ensure!(trusted.stdout.contains("Now trusting east-ambulance"));
    let list = doc
        .run("$target/cascade admin trust list --ca-dir ~/cascade-ca/north-trust")
        .await?;
    ensure!(list
        .stdout
        .contains(&format!("east-ambulance  {partner_fp}")));

    doc.fill("<device id>", &alice_device);
    let revoked = doc
        .run("$target/cascade admin revoke --ca-dir ~/cascade-ca/north-trust --device <device id>")
        .await?;
    ensure!(revoked
        .stdout
        .contains("Revoked 1 device(s) (revocation list 1 published)"));
    doc.finish()
}

/// docs/admin-guide.md, top to bottom: one organisation from its first
/// relay start to its CA rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_guide_commands_work_as_documented() -> Result<()> {
    const CA: &str = "~/cascade-ca/north-trust";
    let mut doc = Doc::open("docs/admin-guide.md")?;

    // §2 Running the relay: its TLS certificate first. The document's
    // relay is `relay.example`, which the test reaches as 127.0.0.1: the
    // certificate names that address too.
    doc.fill(
        "subjectAltName=DNS:relay.example",
        "subjectAltName=DNS:relay.example,IP:127.0.0.1",
    );
    doc.run("mkdir -p ~/cascade-tls").await?;
    doc.run("openssl req -x509 -newkey ed25519 -nodes -days 3650 -subj \"/CN=North NHS Trust relay CA\" -keyout ~/cascade-tls/tls-ca.key -out ~/cascade-tls/tls-ca.pem").await?;
    doc.run("openssl req -newkey ed25519 -nodes -subj \"/CN=relay.example\" -addext \"subjectAltName=DNS:relay.example\" -keyout ~/cascade-tls/relay.key -out ~/cascade-tls/relay.csr").await?;
    doc.run("openssl x509 -req -in ~/cascade-tls/relay.csr -CA ~/cascade-tls/tls-ca.pem -CAkey ~/cascade-tls/tls-ca.key -days 365 -copy_extensions copy -out ~/cascade-tls/relay.pem").await?;
    doc.serve("cascade-server serve --data-dir /var/lib/cascade --listen 127.0.0.1:7171 --tls-cert ~/cascade-tls/relay.pem --tls-key ~/cascade-tls/relay.key")
        .await?;
    doc.run("export CASCADE_SERVER=https://relay.example:7171")
        .await?;
    doc.run("export CASCADE_SERVER_CA=$HOME/cascade-tls/tls-ca.pem   # or --server-ca; not needed with a public CA")
        .await?;
    doc.run("export CASCADE_ADMIN_TOKEN_FILE=/var/lib/cascade/admin-token   # or --token-file")
        .await?;

    // §3 Setting up an organisation.
    let init = doc
        .run("cascade admin org init --org north-trust --name \"North NHS Trust\" --dir ~/cascade-ca/north-trust")
        .await?;
    ensure!(init.stdout.starts_with("Created the CA of north-trust."));
    let our_fp = init.after("fingerprint:")?;
    doc.run("cascade admin create-org north-trust --name \"North NHS Trust\" --ca-dir ~/cascade-ca/north-trust").await?;
    let org = doc
        .run("curl -s --cacert \"$CASCADE_SERVER_CA\" \"$CASCADE_SERVER/v1/orgs/north-trust\"")
        .await?;
    ensure!(
        org.stdout.contains("BEGIN CERTIFICATE"),
        "the relay publishes the CA"
    );
    let policy = doc
        .run("cascade admin policy --ca-dir ~/cascade-ca/north-trust --idle-lock-minutes 10")
        .await?;
    ensure!(
        policy.stdout.trim()
            == "Devices lock after 10 minutes without input\n\
                Messages are kept on devices until deleted\n\
                (trust list 1 published)",
        "{}",
        policy.stdout
    );
    let retention = doc
        .run("cascade admin policy --ca-dir ~/cascade-ca/north-trust --max-retention-days 90")
        .await?;
    ensure!(
        retention.stdout.trim()
            == "Devices lock after 10 minutes without input\n\
                Messages are deleted from devices after 90 days\n\
                (trust list 2 published)",
        "{}",
        retention.stdout
    );
    let shown = doc
        .run("cascade admin policy --ca-dir ~/cascade-ca/north-trust")
        .await?;
    ensure!(
        shown.stdout.trim()
            == "Devices lock after 10 minutes without input\n\
                Messages are deleted from devices after 90 days",
        "{}",
        shown.stdout
    );
    let bad = doc
        .extra_failing(
            "cascade admin policy --ca-dir ~/cascade-ca/north-trust --max-retention-days 0",
        )
        .await?;
    ensure!(
        bad.stderr
            .contains("a number of days from 1 to 3650, or off"),
        "{}",
        bad.stderr
    );

    // §3.5 Appointing an admin: Dana makes her key with the CA
    // certificate the CA holder sent her.
    doc.extra("cp ~/cascade-ca/north-trust/ca-cert.pem ca-cert.pem")
        .await?;
    let made = doc
        .run("cascade admin key init --dir ~/cascade-admin --ca-cert ca-cert.pem --id dana-price")
        .await?;
    ensure!(
        made.stdout
            .starts_with("Created the admin key of dana-price (north-trust) in "),
        "{}",
        made.stdout
    );
    let dana_key = made.word_after("--key ")?;
    ensure!(dana_key.len() == 64, "{dana_key}");
    doc.fill("<admin public key>", &dana_key);
    let appointed = doc
        .run("cascade admin appoint --ca-dir ~/cascade-ca/north-trust --id dana-price --name \"Dana Price\" --key <admin public key>")
        .await?;
    ensure!(
        appointed
            .stdout
            .starts_with("Appointed dana-price (Dana Price) until ")
            && appointed
                .stdout
                .trim_end()
                .ends_with("(admin roster 1 published)"),
        "{}",
        appointed.stdout
    );
    let admins = doc
        .run("cascade admin admins --ca-dir ~/cascade-admin")
        .await?;
    ensure!(
        admins.stdout.starts_with("dana-price\tDana Price\tuntil ")
            && admins
                .stdout
                .trim_end()
                .ends_with(&format!("\tkey {dana_key}")),
        "{}",
        admins.stdout
    );
    let pending = doc
        .run("cascade admin pending --ca-dir ~/cascade-admin")
        .await?;
    ensure!(
        pending.stdout.trim() == "No device is waiting for a certificate.",
        "{}",
        pending.stdout
    );
    // What her directory cannot do, it says.
    let refused = doc
        .extra_failing("cascade admin issue --ca-dir ~/cascade-admin")
        .await?;
    ensure!(
        refused
            .stderr
            .contains("holds an admin's key, not the CA key: issuing certificates needs the organisation's CA directory"),
        "{}",
        refused.stderr
    );
    let dismissed = doc
        .run("cascade admin dismiss --ca-dir ~/cascade-ca/north-trust --id dana-price")
        .await?;
    ensure!(
        dismissed.stdout.trim()
            == "Dismissed dana-price (admin roster 2 published); the relay refuses their key now",
        "{}",
        dismissed.stdout
    );
    let refused = doc
        .extra_failing("cascade admin users --ca-dir ~/cascade-admin")
        .await?;
    ensure!(
        refused
            .stderr
            .contains("no admin of this id is appointed now"),
        "{}",
        refused.stderr
    );
    // Appointed again, for the CA rotation of §8 to carry over.
    doc.extra(&format!(
        "cascade admin appoint --ca-dir {CA} --id dana-price --name \"Dana Price\" --key {dana_key}"
    ))
    .await?;

    // §4 Enrolling staff.
    doc.run(
        "cascade admin add-user alice@north-trust --name \"Alice Okafor\" --role \"Ward Sister\" --ca-dir ~/cascade-ca/north-trust",
    )
    .await?;
    let code = doc
        .run("cascade admin token alice@north-trust --ca-dir ~/cascade-ca/north-trust")
        .await?;
    let short = code.stdout.trim();
    ensure!(
        short.len() == 29 && short.split('-').all(|g| g.len() == 4),
        "a short code in six groups of four: {short:?}"
    );
    doc.fill("<enrolment code>", short);
    let qr = doc
        .run("cascade admin token alice@north-trust --ca-dir ~/cascade-ca/north-trust --qr")
        .await?;
    ensure!(
        qr.stdout.contains('█')
            && qr
                .stdout
                .contains("cascade://enrol?server=https%3A%2F%2F127.0.0.1%3A"),
        "a QR code and the link it holds: {}",
        qr.stdout
    );
    // The admin gave Alice the relay's TLS CA with the code.
    doc.extra("cp ~/cascade-tls/tls-ca.pem tls-ca.pem").await?;
    let enrolled = doc
        .run("cascade enrol --server https://relay.example:7171 --server-ca tls-ca.pem --code <enrolment code> --device-name \"Alice's phone\"")
        .await?;
    ensure!(enrolled
        .stdout
        .starts_with("Enrolled Alice Okafor (alice@north-trust, Ward Sister) as device "));
    let alice_phone = enrolled.word_after("as device ")?;
    let issued = doc
        .run("cascade admin issue --ca-dir ~/cascade-ca/north-trust")
        .await?;
    ensure!(issued.stdout.starts_with(&format!(
        "Issued alice@north-trust (Alice Okafor, Ward Sister) device {alice_phone} \"Alice's phone\"  "
    )));
    let audit = std::fs::read_to_string(doc.home.join("cascade-ca/north-trust/issued.jsonl"))?;
    ensure!(
        audit.contains(&alice_phone),
        "issued.jsonl records the certificate"
    );
    // §4.6: what waits (nothing, now).
    let pending = doc
        .run("cascade admin pending --ca-dir ~/cascade-ca/north-trust")
        .await?;
    ensure!(
        pending.stdout.trim() == "No device is waiting for a certificate.",
        "nothing waits: {}",
        pending.stdout
    );

    // §5 Pinning a partner organisation. The partner's admins made their
    // CA and emailed its certificate.
    let partner = doc
        .extra("cascade admin org init --org east-ambulance --name \"East Ambulance Service\" --dir ~/east-ca")
        .await?;
    let east_fp = partner.after("fingerprint:")?;
    doc.extra("cp ~/east-ca/ca-cert.pem east-ambulance-ca.pem")
        .await?;
    let ours = doc
        .run("cascade admin org fingerprint ~/cascade-ca/north-trust/ca-cert.pem    # ours: read it out")
        .await?;
    ensure!(ours.stdout.trim() == format!("north-trust  {our_fp}"));
    let theirs = doc
        .run("cascade admin org fingerprint east-ambulance-ca.pem                  # theirs: compare")
        .await?;
    ensure!(theirs.stdout.trim() == format!("east-ambulance  {east_fp}"));
    // The guide's example fingerprint is the one read out by phone.
    doc.fill(
        "14:67:2F:D7:6F:64:21:2D:5A:5D:17:05:6F:FA:36:14:3B:41:74:F1:CF:A6:BD:74:1B:F2:8D:AF:DE:5B:AE:B4",
        &east_fp,
    );
    let pinned = doc
        .run("cascade admin trust add --ca-dir ~/cascade-ca/north-trust --cert east-ambulance-ca.pem --fingerprint 14:67:2F:D7:6F:64:21:2D:5A:5D:17:05:6F:FA:36:14:3B:41:74:F1:CF:A6:BD:74:1B:F2:8D:AF:DE:5B:AE:B4")
        .await?;
    ensure!(pinned.stdout.trim() == "Now trusting east-ambulance (trust list 3 published)");
    let unpinned = doc
        .run("cascade admin trust remove --ca-dir ~/cascade-ca/north-trust east-ambulance")
        .await?;
    ensure!(unpinned.stdout.trim() == "No longer trusting east-ambulance (trust list 4 published)");

    // §6 Revoking a lost phone: Alice's old phone, enrolled and issued
    // like the first.
    let old_code = doc
        .extra(&format!(
            "cascade admin token alice@north-trust --ca-dir {CA}"
        ))
        .await?;
    let old = doc
        .extra(&format!(
            "cascade --data-dir ~/old-phone enrol --server $CASCADE_SERVER --code {} --device-name \"Alice's old phone\"",
            old_code.stdout.trim()
        ))
        .await?;
    let old_phone = old.word_after("as device ")?;
    doc.extra(&format!("cascade admin issue --ca-dir {CA}"))
        .await?;
    let users = doc
        .run("cascade admin users --ca-dir ~/cascade-ca/north-trust")
        .await?;
    ensure!(
        users.stdout.lines().any(|l| l.contains(&old_phone)
            && l.contains("Alice's old phone")
            && l.contains("enrolled 20")
            && l.contains("certified")),
        "the lost phone is listed with its name:\n{}",
        users.stdout
    );
    doc.fill("9e53f381c0ce273101dc106fc87a9ebc", &old_phone);
    let revoked = doc
        .run("cascade admin revoke --ca-dir ~/cascade-ca/north-trust --device 9e53f381c0ce273101dc106fc87a9ebc")
        .await?;
    ensure!(revoked.stdout.trim() == "Revoked 1 device(s) (revocation list 1 published)");

    // §6.1 Wiping it, with a confirmation: the old phone connects once
    // more, erases itself and confirms.
    let wiped = doc
        .run("cascade admin wipe --ca-dir ~/cascade-ca/north-trust --device 9e53f381c0ce273101dc106fc87a9ebc")
        .await?;
    ensure!(
        wiped.stdout.trim()
            == format!("Wipe ordered for device {old_phone}, and revoked (revocation list 2 published).\nThe device erases itself when it next connects; `cascade admin wipes` shows when it confirms."),
        "{}",
        wiped.stdout
    );
    let pending = doc
        .extra(&format!("cascade admin wipes --ca-dir {CA}"))
        .await?;
    ensure!(
        pending.stdout.starts_with(&format!(
            "{old_phone}\talice@north-trust\tAlice's old phone\tordered "
        )) && pending
            .stdout
            .trim_end()
            .ends_with("\tpending: not confirmed yet"),
        "{}",
        pending.stdout
    );
    let last_run = doc
        .extra_failing("cascade --data-dir ~/old-phone sync")
        .await?;
    ensure!(
        last_run
            .stderr
            .contains("its data on this device has been erased"),
        "{}",
        last_run.stderr
    );
    let wipes = doc
        .run("cascade admin wipes --ca-dir ~/cascade-ca/north-trust")
        .await?;
    ensure!(
        wipes.stdout.starts_with(&format!(
            "{old_phone}\talice@north-trust\tAlice's old phone\tordered "
        )) && wipes.stdout.contains("\tconfirmed by the device at "),
        "{}",
        wipes.stdout
    );

    // §7 Certificate expiry and renewal: Bob's laptop got a certificate
    // that expires within 30 days. Dana, appointed in §3.5, added him and
    // made his code with her own key.
    doc.extra(
        "cascade admin add-user bob@north-trust --name \"Bob Singh\" --role \"Junior Doctor\" --ca-dir ~/cascade-admin",
    )
    .await?;
    let bob_code = doc
        .extra("cascade admin token bob@north-trust --ca-dir ~/cascade-admin")
        .await?;
    doc.extra(&format!(
        "cascade --data-dir ~/bob enrol --server $CASCADE_SERVER --code {} --device-name laptop",
        bob_code.stdout.trim()
    ))
    .await?;
    doc.extra(&format!("cascade admin issue --ca-dir {CA} --days 10"))
        .await?;
    let renewed = doc
        .run("cascade admin issue --ca-dir ~/cascade-ca/north-trust")
        .await?;
    ensure!(
        renewed
            .stdout
            .starts_with("Issued bob@north-trust (Bob Singh, Junior Doctor) device "),
        "the next issue renews Bob's certificate"
    );

    // §8 Rotating the CA.
    let rotated = doc
        .run("cascade admin rotate-ca --ca-dir ~/cascade-ca/north-trust --new-dir ~/cascade-ca/north-trust-2027 --name \"North NHS Trust\"")
        .await?;
    ensure!(
        rotated
            .stdout
            .starts_with("Rotated the CA of north-trust (trust list 5 published)."),
        "{}",
        rotated.stdout
    );
    let new_fp = rotated.after("fingerprint:")?;
    ensure!(new_fp != our_fp, "a new CA");
    let policy = doc
        .extra("cascade admin policy --ca-dir ~/cascade-ca/north-trust-2027")
        .await?;
    ensure!(
        policy.stdout.trim()
            == "Devices lock after 10 minutes without input\n\
                Messages are deleted from devices after 90 days",
        "the new CA directory keeps the policy: {}",
        policy.stdout
    );
    // Dana takes the new CA certificate and goes on with her own key: the
    // rotation signed the roster again with the new CA.
    let stale = doc
        .extra_failing("cascade admin token bob@north-trust --ca-dir ~/cascade-admin")
        .await?;
    ensure!(
        stale
            .stderr
            .contains("after a CA rotation, replace it with the new ca-cert.pem"),
        "{}",
        stale.stderr
    );
    doc.extra("cp ~/cascade-ca/north-trust-2027/ca-cert.pem north-trust-2027-ca-cert.pem")
        .await?;
    doc.run("cp north-trust-2027-ca-cert.pem ~/cascade-admin/ca-cert.pem")
        .await?;
    let users = doc
        .extra("cascade admin users --ca-dir ~/cascade-admin")
        .await?;
    ensure!(users.stdout.contains("bob@north-trust"), "{}", users.stdout);
    let code = doc
        .extra("cascade admin token bob@north-trust --ca-dir ~/cascade-admin")
        .await?;
    ensure!(code.stdout.trim().len() == 29, "{}", code.stdout);
    let audit = std::fs::read_to_string(doc.home.join("../var/lib/cascade/audit.jsonl"))
        .context("the relay's audit log")?;
    ensure!(
        audit.lines().any(|l| l.contains("\"user.create\"")
            && l.contains("bob@north-trust")
            && l.contains("admin:dana-price (Dana Price) key-sha256:")),
        "the audit log names Dana: {audit}"
    );

    let reissued = doc
        .run("cascade admin issue --ca-dir ~/cascade-ca/north-trust-2027")
        .await?;
    ensure!(
        reissued.stdout.contains(&alice_phone) && reissued.stdout.contains("bob@north-trust"),
        "every device is re-issued by the new CA, the revoked one is not"
    );
    ensure!(!reissued.stdout.contains(&old_phone));
    doc.extra("cascade --data-dir ~/bob sync").await?;
    // §9 Troubleshooting: the relay's CA against ours.
    doc.run(
        "curl -s --cacert \"$CASCADE_SERVER_CA\" \"$CASCADE_SERVER/v1/orgs/north-trust\" | jq -r .ca_certificate > relay-ca.pem",
    )
    .await?;
    let relay_ca = doc
        .run("cascade admin org fingerprint relay-ca.pem")
        .await?;
    ensure!(
        relay_ca.stdout.trim() == format!("north-trust  {new_fp}"),
        "the relay serves the new CA"
    );
    doc.run("cascade admin org fingerprint ~/cascade-ca/north-trust/ca-cert.pem")
        .await?;
    doc.finish()
}

/// docs/user-guide.md, top to bottom, as a member of staff: enrol, find
/// colleagues, talk, check a safety number, list devices, leave. The
/// administrator's part (the relay, the organisation, the colleagues'
/// devices) is done with extra commands, as the guide assumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_guide_commands_work_as_documented() -> Result<()> {
    const CA: &str = "~/cascade-ca/north-trust";
    let mut doc = Doc::open("docs/user-guide.md")?;
    doc.serve_extra("cascade-server serve --data-dir /var/lib/cascade --listen 127.0.0.1:7171")
        .await?;
    doc.extra("export CASCADE_SERVER=http://127.0.0.1:7171")
        .await?;
    doc.extra("export CASCADE_ADMIN_TOKEN_FILE=/var/lib/cascade/admin-token")
        .await?;
    doc.extra(&format!(
        "cascade admin org init --org north-trust --name \"North NHS Trust\" --dir {CA}"
    ))
    .await?;
    doc.extra(&format!(
        "cascade admin create-org north-trust --name \"North NHS Trust\" --ca-dir {CA}"
    ))
    .await?;
    for (user, name, role) in [
        ("alice@north-trust", "Alice Okafor", "Ward Sister"),
        ("bob@north-trust", "Bob Singh", "Junior Doctor"),
        ("carol@north-trust", "Carol Hughes", "Staff Nurse"),
    ] {
        doc.extra(&format!(
            "cascade admin add-user {user} --name \"{name}\" --role \"{role}\" --ca-dir {CA}"
        ))
        .await?;
    }
    // Bob and Carol are enrolled already, each on their own device.
    for who in ["bob", "carol"] {
        let code = doc
            .extra(&format!(
                "cascade admin token {who}@north-trust --ca-dir {CA}"
            ))
            .await?;
        doc.extra(&format!(
            "cascade --data-dir ~/{who} enrol --server $CASCADE_SERVER --code {} --device-name desk",
            code.stdout.trim()
        ))
        .await?;
    }
    let code = doc
        .extra(&format!(
            "cascade admin token alice@north-trust --ca-dir {CA}"
        ))
        .await?;
    doc.fill("<enrolment code>", code.stdout.trim());

    // §1: Alice enrols; her administrator issues the certificates.
    let enrolled = doc
        .run("cascade enrol --server http://127.0.0.1:7171 --code <enrolment code> --device-name \"Ward 7 desktop\"")
        .await?;
    let device = enrolled.word_after("as device ")?;
    doc.extra(&format!("cascade admin issue --ca-dir {CA}"))
        .await?;
    for who in ["bob", "carol"] {
        doc.extra(&format!("cascade --data-dir ~/{who} sync"))
            .await?;
    }
    let me = doc.run("cascade whoami").await?;
    ensure!(
        me.stdout.contains("Alice Okafor") && me.stdout.contains(&device),
        "whoami shows the certified identity"
    );

    // §2: conversations.
    let found = doc.run("cascade directory \"junior doctor\"").await?;
    ensure!(
        found.stdout.contains("bob@north-trust"),
        "Bob is found by role"
    );
    doc.run("cascade create \"Ward 7 handover\" -m bob@north-trust")
        .await?;
    let sent = doc
        .run("cascade send \"Ward 7 handover\" \"Bed 4 needs obs at 14:00\"")
        .await?;
    let message_id = sent.word_after("Sent ")?;
    let history = doc.run("cascade history \"Ward 7 handover\"").await?;
    ensure!(history.stdout.contains("Bed 4 needs obs at 14:00"));
    doc.run("cascade add \"Ward 7 handover\" carol@north-trust")
        .await?;
    let members = doc.run("cascade members \"Ward 7 handover\"").await?;
    ensure!(
        ["alice@north-trust", "bob@north-trust", "carol@north-trust"]
            .iter()
            .all(|u| members.stdout.contains(u)),
        "three members:\n{}",
        members.stdout
    );
    let conversations = doc.run("cascade conversations").await?;
    ensure!(conversations.stdout.contains("Ward 7 handover"));
    let bob_reads = doc
        .extra("cascade --data-dir ~/bob history \"Ward 7 handover\"")
        .await?;
    ensure!(bob_reads.stdout.contains("Bed 4 needs obs at 14:00"));

    // §2: answering, correcting, deleting and reacting, by the id history
    // shows (a prefix of it, as a person would type it).
    let history = doc.extra("cascade history \"Ward 7 handover\"").await?;
    ensure!(
        history.stdout.contains(&message_id),
        "history shows the id: {}",
        history.stdout
    );
    doc.fill("<message id>", &message_id[..12]);
    let edited = doc
        .run("cascade edit \"Ward 7 handover\" <message id> \"Bed 4 needs obs at 15:00\"")
        .await?;
    ensure!(edited.stdout.contains("Edited"), "{}", edited.stdout);
    let versions = doc
        .run("cascade versions \"Ward 7 handover\" <message id>")
        .await?;
    ensure!(
        versions.stdout.contains("14:00") && versions.stdout.contains("15:00\t(now)"),
        "{}",
        versions.stdout
    );
    let reply = doc
        .run("cascade send \"Ward 7 handover\" \"Obs are every 4 hours now\" --reply-to <message id>")
        .await?;
    doc.fill("<reply id>", &reply.word_after("Sent ")?);
    doc.run("cascade react \"Ward 7 handover\" <message id> 👍")
        .await?;
    doc.run("cascade delete \"Ward 7 handover\" <reply id>")
        .await?;
    let bob_reads = doc
        .extra("cascade --data-dir ~/bob history \"Ward 7 handover\"")
        .await?;
    for shown in [
        "Bed 4 needs obs at 15:00 (edited)",
        "👍 1 (alice@north-trust)",
        "[deleted by alice@north-trust]",
    ] {
        ensure!(
            bob_reads.stdout.contains(shown),
            "Bob sees {shown:?}:\n{}",
            bob_reads.stdout
        );
    }
    ensure!(
        !bob_reads.stdout.contains("Obs are every 4 hours now"),
        "the deleted reply is gone from Bob's device:\n{}",
        bob_reads.stdout
    );

    // §2: finding a message, by words inside words; the deleted reply
    // is not found.
    for command in [
        "cascade search \"obs 15:00\"",
        "cascade search \"needs obs\" --in \"Ward 7 handover\" --from alice@north-trust --since 2026-01-01",
    ] {
        let found = doc.run(command).await?;
        ensure!(
            found.stdout.contains("Ward 7 handover") && found.stdout.contains("»obs« at"),
            "{command}: {}",
            found.stdout
        );
        ensure!(
            !found.stdout.contains("every 4 hours"),
            "{command}: {}",
            found.stdout
        );
    }
    let none = doc.extra("cascade search \"every 4 hours\"").await?;
    ensure!(none.stdout.contains("Nothing found"), "{}", none.stdout);

    // §2: who has read your message: Bob read Alice's first message (his
    // history marked it read); Alice's device was told.
    let receipts = doc
        .run("cascade receipts \"Ward 7 handover\" <message id>")
        .await?;
    ensure!(
        receipts.stdout.contains("read by")
            && receipts
                .stdout
                .lines()
                .any(|l| l.starts_with("bob@north-trust\tread ")),
        "{}",
        receipts.stdout
    );
    let mine = doc.extra("cascade history \"Ward 7 handover\"").await?;
    ensure!(
        mine.stdout
            .lines()
            .any(|l| l.contains("read by") && l.contains("Bed 4 needs obs at 15:00")),
        "{}",
        mine.stdout
    );
    let off = doc.run("cascade read-receipts off").await?;
    ensure!(off.stdout.contains("Read receipts: off"), "{}", off.stdout);
    let on = doc.run("cascade read-receipts on").await?;
    ensure!(on.stdout.contains("Read receipts: on"), "{}", on.stdout);

    // §2: muting: the list says so, then not.
    let muted = doc.run("cascade mute \"Ward 7 handover\"").await?;
    ensure!(
        muted.stdout.contains("Muted Ward 7 handover"),
        "{}",
        muted.stdout
    );
    let listed = doc.extra("cascade conversations").await?;
    ensure!(
        listed
            .stdout
            .lines()
            .any(|l| l.contains("Ward 7 handover") && l.ends_with("\tmuted")),
        "{}",
        listed.stdout
    );
    let unmuted = doc.run("cascade mute \"Ward 7 handover\" off").await?;
    ensure!(
        unmuted.stdout.contains("Unmuted Ward 7 handover"),
        "{}",
        unmuted.stdout
    );

    // §2: sending a file: Alice sends a rota and saves it back; Bob's
    // device lists it.
    doc.extra("head -c 200000 /dev/urandom > rota.pdf").await?;
    let sent = doc
        .run("cascade send-file \"Ward 7 handover\" rota.pdf --caption \"Rota for next week\"")
        .await?;
    doc.fill("<file message id>", &sent.word_after("Sent ")?);
    let saved = doc
        .run("cascade save \"Ward 7 handover\" <file message id> ~/rota-copy.pdf")
        .await?;
    ensure!(saved.stdout.contains("(200000 bytes)"), "{}", saved.stdout);
    let same = doc.extra("cmp rota.pdf ~/rota-copy.pdf").await?;
    ensure!(same.stdout.is_empty(), "{}", same.stdout);
    let listed = doc
        .extra("cascade --data-dir ~/bob history \"Ward 7 handover\"")
        .await?;
    ensure!(
        listed
            .stdout
            .contains("[file rota.pdf (application/pdf, 200000 bytes)] Rota for next week"),
        "{}",
        listed.stdout
    );

    // §2: mentioning someone: Bob's device shows his certified name and
    // marks the message as mentioning him.
    let mention = doc
        .run("cascade send \"Ward 7 handover\" \"@bob@north-trust can you check bed 4?\"")
        .await?;
    ensure!(mention.stdout.contains("Sent "), "{}", mention.stdout);
    let bob_sees = doc
        .extra("cascade --data-dir ~/bob history \"Ward 7 handover\"")
        .await?;
    ensure!(
        bob_sees
            .stdout
            .lines()
            .any(|l| l.contains("@Bob Singh can you check bed 4? (mentions you)")),
        "{}",
        bob_sees.stdout
    );
    // §2: who is typing.
    let typing = doc.run("cascade typing \"Ward 7 handover\"").await?;
    ensure!(
        typing
            .stdout
            .contains("Told Ward 7 handover you are typing"),
        "{}",
        typing.stdout
    );

    // §2: admins and who may do what: Alice makes Bob an admin and keeps
    // renaming for admins; Bob's device shows both.
    let policy = doc.run("cascade policy \"Ward 7 handover\"").await?;
    ensure!(
        policy.stdout.contains("admins\talice@north-trust\n")
            && policy.stdout.contains("remove\tadmins")
            && policy.stdout.contains("you\tadmin"),
        "{}",
        policy.stdout
    );
    let made = doc
        .run("cascade role \"Ward 7 handover\" bob@north-trust admin")
        .await?;
    ensure!(
        made.stdout.contains("bob@north-trust is now an admin"),
        "{}",
        made.stdout
    );
    let set = doc
        .run("cascade policy \"Ward 7 handover\" --set rename=admin")
        .await?;
    ensure!(set.stdout.contains("rename\tadmins"), "{}", set.stdout);
    let bob_sees = doc
        .extra("cascade --data-dir ~/bob policy \"Ward 7 handover\"")
        .await?;
    ensure!(
        bob_sees
            .stdout
            .contains("admins\talice@north-trust, bob@north-trust")
            && bob_sees.stdout.contains("rename\tadmins")
            && bob_sees.stdout.contains("you\tadmin"),
        "{}",
        bob_sees.stdout
    );
    // Carol is a member: renaming and roles are refused, with the typed
    // code in JSON; a mistyped policy is a clear error.
    let refused = doc
        .extra_failing(
            "cascade --json --data-dir ~/carol rename \"Ward 7 handover\" \"Carol's ward\"",
        )
        .await?;
    ensure!(
        refused.stdout.contains("\"code\":\"forbidden\"")
            && refused
                .stdout
                .contains("only a conversation admin may rename it"),
        "{}",
        refused.stdout
    );
    let refused = doc
        .extra_failing(
            "cascade --data-dir ~/carol role \"Ward 7 handover\" carol@north-trust admin",
        )
        .await?;
    ensure!(
        refused
            .stderr
            .contains("only a conversation admin may change roles"),
        "{}",
        refused.stderr
    );
    let mistyped = doc
        .extra_failing("cascade policy \"Ward 7 handover\" --set everything=admin")
        .await?;
    ensure!(
        mistyped
            .stderr
            .contains("the actions are add, remove, rename, roles and timer"),
        "{}",
        mistyped.stderr
    );
    // Bob, an admin now, renames it; Alice's device shows the new name, and
    // he puts the old one back.
    doc.extra("cascade --data-dir ~/bob rename \"Ward 7 handover\" \"Ward 7 nights\"")
        .await?;
    let renamed = doc.extra("cascade conversations").await?;
    ensure!(
        renamed.stdout.contains("\tWard 7 nights\t"),
        "{}",
        renamed.stdout
    );
    doc.extra("cascade --data-dir ~/bob rename \"Ward 7 nights\" \"Ward 7 handover\"")
        .await?;
    let members = doc.extra("cascade members \"Ward 7 handover\"").await?;
    ensure!(
        members
            .stdout
            .lines()
            .any(|l| l.contains("bob@north-trust") && l.contains("\tadmin")),
        "{}",
        members.stdout
    );

    // §2: disappearing messages: Alice (an admin) sets the timer; Bob's
    // device holds the same value, and a message sent now says when it
    // goes; off again before the next sections.
    let set = doc.run("cascade timer \"Ward 7 handover\" 8h").await?;
    ensure!(
        set.stdout.contains("disappear 8 hours after they are sent"),
        "{}",
        set.stdout
    );
    let shown = doc.run("cascade policy \"Ward 7 handover\"").await?;
    ensure!(
        shown.stdout.contains("disappear\t8 hours"),
        "{}",
        shown.stdout
    );
    let bob_sees = doc
        .extra("cascade --data-dir ~/bob policy \"Ward 7 handover\"")
        .await?;
    ensure!(
        bob_sees.stdout.contains("disappear\t8 hours"),
        "{}",
        bob_sees.stdout
    );
    doc.extra("cascade send \"Ward 7 handover\" \"Bay 2 keys with the porter\"")
        .await?;
    let bob_reads = doc
        .extra("cascade --data-dir ~/bob history \"Ward 7 handover\"")
        .await?;
    ensure!(
        bob_reads
            .stdout
            .lines()
            .any(|l| l.contains("Bay 2 keys with the porter (disappears 20")),
        "{}",
        bob_reads.stdout
    );
    let bad = doc
        .extra_failing("cascade timer \"Ward 7 handover\" 5s")
        .await?;
    ensure!(
        bad.stderr.contains("60 seconds at the soonest"),
        "{}",
        bad.stderr
    );
    let off = doc.run("cascade timer \"Ward 7 handover\" off").await?;
    ensure!(off.stdout.contains("no longer disappear"), "{}", off.stdout);

    // §3: the safety number is the same on both sides.
    let mine = doc
        .run("cascade safety-number \"Ward 7 handover\" bob@north-trust")
        .await?;
    let bobs = doc
        .extra("cascade --data-dir ~/bob safety-number \"Ward 7 handover\" alice@north-trust")
        .await?;
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    ensure!(
        !digits(&mine.stdout).is_empty() && digits(&mine.stdout) == digits(&bobs.stdout),
        "the safety numbers match: {} / {}",
        mine.stdout,
        bobs.stdout
    );

    // §6: devices.
    let devices = doc.run("cascade devices").await?;
    ensure!(devices.stdout.contains(&device));

    // §6: a new passphrase; the old one no longer opens the data. Then
    // back to the old one (as an extra step) for the commands after it.
    const NEW_PASSPHRASE: &str = "new-phrase-for-ward-7";
    doc.extra(&format!("export CASCADE_NEW_PASSPHRASE={NEW_PASSPHRASE}"))
        .await?;
    let changed = doc.run("cascade passphrase").await?;
    ensure!(changed.stdout.contains("is changed"), "{}", changed.stdout);
    let refused = doc.extra_failing("cascade whoami").await?;
    ensure!(
        refused.stderr.contains("does not unlock"),
        "the old passphrase is refused: {}",
        refused.stderr
    );
    doc.extra(&format!(
        "CASCADE_PASSPHRASE='{NEW_PASSPHRASE}' cascade whoami"
    ))
    .await?;
    doc.extra(&format!(
        "CASCADE_PASSPHRASE='{NEW_PASSPHRASE}' CASCADE_NEW_PASSPHRASE='{DOC_PASSPHRASE}' cascade passphrase"
    ))
    .await?;

    // §6: a new laptop of Alice's, enrolled (its administrator's part and
    // the enrolment as in §1), is linked from her desktop and gets her
    // history.
    let code = doc
        .extra(&format!(
            "cascade admin token alice@north-trust --ca-dir {CA}"
        ))
        .await?;
    doc.extra(&format!(
        "cascade --data-dir ~/laptop enrol --server $CASCADE_SERVER --code {} --device-name laptop",
        code.stdout.trim()
    ))
    .await?;
    doc.extra(&format!("cascade admin issue --ca-dir {CA}"))
        .await?;
    doc.extra("cascade --data-dir ~/laptop sync").await?;
    let laptop_dir = doc.home.join("laptop").display().to_string();
    let mut laptop = doc.spawn("cascade link", &[("CASCADE_DATA_DIR", laptop_dir)])?;
    let code = laptop.line_with("Link code: ").await?;
    let code = code.trim_start_matches("Link code: ").trim().to_owned();
    doc.fill("<link code>", &code);
    let mut desktop = doc.spawn("cascade link-approve <link code>", &[])?;
    desktop.line_with("Type the six digits it shows").await?;
    let digits = laptop.line_with("Type these digits there: ").await?;
    let digits = digits
        .rsplit_once(": ")
        .map(|(_, d)| d.to_owned())
        .context("no digits")?;
    desktop.type_line(&digits).await?;
    let sent = desktop.finish().await?;
    ensure!(sent.contains("Sent "), "{sent}");
    let linked = laptop.finish().await?;
    ensure!(linked.contains("Linked: "), "{linked}");
    let on_laptop = doc
        .extra("cascade --data-dir ~/laptop history \"Ward 7 handover\"")
        .await?;
    let on_desktop = doc.extra("cascade history \"Ward 7 handover\"").await?;
    ensure!(
        on_laptop.stdout == on_desktop.stdout,
        "the laptop shows the same history:\n{}\n---\n{}",
        on_laptop.stdout,
        on_desktop.stdout
    );

    // §6: a backup, and restoring it (here on the same device, where it
    // adds nothing; a new device's restore is tests/backup.rs).
    let made = doc.run("cascade backup ~/cascade-backup").await?;
    let key = made
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Recovery key: "))
        .with_context(|| format!("no recovery key in {}", made.stdout))?
        .to_owned();
    ensure!(
        made.stdout.contains("Backed up 1 conversation and"),
        "{}",
        made.stdout
    );
    doc.extra(&format!("export CASCADE_RECOVERY_KEY='{key}'"))
        .await?;
    let restored = doc.run("cascade restore ~/cascade-backup").await?;
    ensure!(
        restored
            .stdout
            .starts_with("Restored 0 messages (0 conversations new"),
        "{}",
        restored.stdout
    );

    // §8: leaving.
    doc.run("cascade leave \"Ward 7 handover\"").await?;
    doc.extra("cascade --data-dir ~/bob sync").await?;
    // Alice's laptop follows when it is next on, and Bob's device commits.
    doc.extra("cascade --data-dir ~/laptop sync").await?;
    doc.extra("cascade --data-dir ~/bob sync").await?;
    let left = doc
        .extra("cascade --data-dir ~/bob members \"Ward 7 handover\"")
        .await?;
    ensure!(
        !left.stdout.contains("alice@north-trust"),
        "Alice left:\n{}",
        left.stdout
    );
    doc.finish()
}
