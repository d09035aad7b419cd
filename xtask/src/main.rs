//! `cargo xtask`: the project's own automation.
//!
//! - `cargo xtask test`: install what is missing (Debian packages, the
//!   front end's npm packages, tauri-driver), build, run every test: Rust,
//!   Vitest, the desktop app through WebDriver under Xvfb, and the Python
//!   binding tests.
//! - `cargo xtask ci`: fmt check, clippy -D warnings, `test`, then
//!   `bindings`.
//! - `cargo xtask bindings [--out DIR]`: build, then generate the mobile
//!   bindings of `cascade-ffi` (Kotlin, Swift, Python) into
//!   `DIR/{kotlin,swift,python}` (default `$CARGO_TARGET_DIR/bindings`); see
//!   `docs/mobile.md`.
//! - `cargo xtask demo`: a relay on the embedded store, a provisioned demo
//!   organisation, and a client to chat with.
//! - `cargo xtask bench [ARGS]`: the load generator against the relay and
//!   the raw fan-out baselines in the same run; `--compare A.json B.json`
//!   prints the change between two recorded runs.
//! - `cargo xtask bench-mls [--sizes N,N,…]`: criterion benchmarks of MLS
//!   group operations against group size, and of the engine's work for one
//!   message.
//! - `cargo xtask bench-search`: criterion benchmarks of searching a
//!   device's history of 100,000 and 1,000,000 messages, beside a history
//!   page from the same store.
//! - `cargo xtask soak [--seeds N] [--steps N] [--kills N] [--cuts N]`: the
//!   engine's seeded random interactions on the simulated relay, far longer
//!   than the test run; then the real relay SIGKILLed `N` times (100) and
//!   its power cut `N` times (100) under message load (`tests/tests/soak.rs`).
//! - `cargo xtask fuzz <target> [--secs N] [-- LIBFUZZER ARGS]`: one of
//!   `fuzz/`'s targets under libFuzzer with LLVM coverage (stable compiler
//!   options only), on its corpus in `fuzz/corpus/<target>/`, which it
//!   grows; a crash is written to `fuzz/artifacts/<target>/`. With
//!   `--minimize` it instead rewrites the corpus as the smallest set of its
//!   inputs that keeps the same coverage (libFuzzer's `-merge=1`), which is
//!   what is checked in.
//!
//! Cargo's target directory defaults to `$HOME/.cache/cascade/target`, outside
//! the clone, so that fresh clones (CI) reuse warm builds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

mod demo;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    // Where cargo was run, for relative paths in arguments.
    let cwd = std::env::current_dir()?;
    std::env::set_current_dir(&root)?;
    set_target_dir();
    match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("ci") => ci(),
        Some("demo") => demo::run(&root, &args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("bench-mls") => bench_mls(&args[1..]),
        Some("bench-search") => bench_search(),
        Some("soak") => soak(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("bindings") => bindings(&cwd, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|ci|demo|bench|bench-mls [--sizes N,N,…]|bench-search|soak [--seeds N] [--steps N] [--kills N] [--cuts N]|fuzz <target> [--secs N]|bindings [--out DIR]>"
            );
            std::process::exit(2);
        }
    }
}

/// The checkout `cargo xtask` was run in. `cargo run` gives the running
/// binary the manifest directory of the package it ran; the one compiled
/// in is only a fallback, because checkouts that share a target directory
/// share the xtask binary too (another checkout's build can replace it
/// between this one's build and its run).
fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The target directory every build here uses.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .expect("set by set_target_dir")
}

fn set_target_dir() {
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let dir = home.join(".cache/cascade/target");
        // SAFETY of set_var: single-threaded at this point.
        std::env::set_var("CARGO_TARGET_DIR", &dir);
    }
}

/// Runs a command, inheriting stdio; fails if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs Debian packages that are not installed yet.
pub fn ensure_apt(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if Command::new("apt-get")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        bail!("missing packages {missing:?} and no apt-get to install them");
    }
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| -> Result<()> {
        let mut all: Vec<&str> = sudo.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        run(Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    apt(&["update", "-q"])?;
    // With recommends: WebKit needs fonts and GL/GStreamer pieces that come
    // as recommendations; without them pages render blank on a bare machine.
    let mut args = vec!["install", "-y", "-q"];
    args.extend(missing.iter());
    apt(&args)
}

/// Debian packages the build and the tests need: the compilers, Tauri's
/// WebKitGTK stack (STACK.md), and for the desktop end-to-end test WebKit's
/// WebDriver and a virtual display.
pub const APT_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "curl",
    // The admin guide's troubleshooting reads the relay's CA with jq; the
    // documentation test runs it.
    "jq",
    // The admin guide makes the relay's TLS certificate with openssl; the
    // documentation test runs it.
    "openssl",
    "wget",
    "file",
    "libwebkit2gtk-4.1-dev",
    "libxdo-dev",
    // SQLCipher (the device's store) links libcrypto.
    "libssl-dev",
    // The desktop's keystore: the Secret Service over libdbus.
    "libdbus-1-dev",
    "libayatana-appindicator3-dev",
    "librsvg2-dev",
    "fonts-dejavu-core",
    // Reactions are emoji: without a colour emoji font WebKit draws boxes.
    "fonts-noto-color-emoji",
    "webkit2gtk-driver",
    "xvfb",
    "xauth",
    "dbus-daemon",
    "dbus-bin",
    "xdotool",
];

/// The desktop app's web front end (`desktop-app/ui`).
const UI_DIR: &str = "desktop-app/ui";

fn npm(args: &[&str]) -> Result<()> {
    run(Command::new("npm").args(args).current_dir(UI_DIR))
}

/// Installs the front end's npm packages as locked, type-checks
/// it and builds it into `desktop-app/ui/dist`, which `cascade-desktop`
/// embeds at compile time (so this comes before the cargo build).
pub fn build_ui() -> Result<()> {
    if Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        bail!("npm not found: the desktop front end needs Node.js 20.19 or later with npm");
    }
    // `npm install`, not `npm ci`: this machine's npm writes lock files
    // without the other platforms' optional packages (esbuild, rollup),
    // which `npm ci` then refuses. Direct dependencies are pinned exactly in
    // package.json and the rest by package-lock.json, which install keeps.
    npm(&["install", "--no-audit", "--no-fund"])?;
    npm(&["run", "check"])?;
    npm(&["run", "build"])
}

/// The tauri-driver version STACK.md pins (newer ones are pre-releases).
const TAURI_DRIVER_VERSION: &str = "2.1.0";

/// Installs tauri-driver into `~/.cargo/bin` unless it is there.
fn ensure_tauri_driver() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME not set")?;
    let bin = PathBuf::from(home).join(".cargo/bin/tauri-driver");
    if !bin.exists() {
        run(cargo().args([
            "install",
            "tauri-driver",
            "--version",
            TAURI_DRIVER_VERSION,
            "--locked",
        ]))?;
    }
    Ok(bin)
}

fn build_all() -> Result<()> {
    build_ui()?;
    run(cargo().args(["build", "--workspace", "--all-targets", "--locked"]))
}

fn test() -> Result<()> {
    ensure_apt(APT_PACKAGES)?;
    build_all()?;
    let bin = target_dir().join("debug");
    run(cargo()
        .args(["test", "--workspace", "--all-targets", "--locked"])
        .env("CASCADE_BIN_DIR", &bin))?;
    // Doc tests are part of "every test".
    run(cargo().args(["test", "--workspace", "--doc", "--locked"]))?;
    // The desktop front end's unit tests (Vitest).
    npm(&["test"])?;
    // The desktop app end to end: WebDriver under a virtual display.
    let driver = ensure_tauri_driver()?;
    let shots = target_dir().join("desktop-screenshots");
    run(Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1920x1080x24"])
        .arg(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "test",
            "--workspace",
            "--locked",
            "--test",
            "desktop",
            "--",
            "--ignored",
            // One app session at a time on the display: window focus is
            // part of what the notification test checks.
            "--test-threads=1",
        ])
        .env("CASCADE_BIN_DIR", &bin)
        .env("TAURI_DRIVER", &driver)
        .env("CASCADE_SCREENSHOT_DIR", &shots))?;
    eprintln!("xtask: desktop screenshots in {}", shots.display());
    // The mobile bindings, generated and driven from Python against a real
    // relay (Kotlin and Swift are generated too; no toolchain compiles them
    // here).
    ensure_apt(&["python3", "python3-venv"])?;
    run(Command::new("bash").arg("mobile-ffi/tests/run_python.sh"))?;
    Ok(())
}

fn ci() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    test()?;
    // `test` already generates every binding (run_python.sh); this also
    // checks the documented command itself.
    bindings(&workspace_root(), &[])
}

/// Builds the workspace, then generates the Kotlin, Swift and Python
/// bindings of `cascade-ffi` from the built library into
/// `<out>/{kotlin,swift,python}` (default `$CARGO_TARGET_DIR/bindings`), with
/// the library copied beside the Python module. Each language directory is
/// emptied first, so a stale file cannot hide a broken generation; fails if
/// a language produced no file. Must run from the workspace root:
/// uniffi-bindgen reads `cargo metadata` (`main` changes to it). A relative
/// `--out` is taken from `cwd`, where cargo was run.
fn bindings(cwd: &Path, args: &[String]) -> Result<()> {
    let out = match args {
        [] => target_dir().join("bindings"),
        // Relative to where cargo was run, not the workspace root.
        [flag, dir] if flag == "--out" => cwd.join(dir),
        _ => bail!("usage: cargo xtask bindings [--out DIR]"),
    };
    run(cargo().args(["build", "--workspace", "--locked"]))?;
    let debug = target_dir().join("debug");
    let lib = debug.join("libcascade_ffi.so");
    let bindgen = debug.join("uniffi-bindgen");
    for (language, ext) in [("kotlin", "kt"), ("swift", "swift"), ("python", "py")] {
        let dir = out.join(language);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {dir:?}"))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir:?}"))?;
        let mut cmd = Command::new(&bindgen);
        cmd.arg("generate")
            .arg("--library")
            .arg(&lib)
            .args(["--language", language]);
        if language != "python" {
            // No ktlint or swift-format here.
            cmd.arg("--no-format");
        }
        run(cmd.arg("--out-dir").arg(&dir))?;
        let files = generated(&dir, ext)?;
        if files.is_empty() {
            bail!("uniffi-bindgen generated no .{ext} file for {language} in {dir:?}");
        }
        if language == "python" {
            // Python loads the library only from beside the generated module.
            std::fs::copy(&lib, dir.join("libcascade_ffi.so"))
                .with_context(|| format!("copying {lib:?} to {dir:?}"))?;
        }
        for f in files {
            eprintln!("xtask: generated {}", f.display());
        }
    }
    Ok(())
}

/// Files ending in `.ext` under `dir`, at any depth (Kotlin nests them in
/// package directories).
fn generated(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {d:?}"))? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The criterion benchmarks of MLS group operations against group size
/// (`client-core/benches/mls_groups.rs`), by default in groups of 10, 100,
/// 1,000 and 10,000 devices; `--sizes 30000` for others. Then the engine's
/// per-message work (`engine.rs`) and the wire codec beside its baselines
/// (`codec.rs`).
fn bench_mls(args: &[String]) -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "bench",
        "--locked",
        "-p",
        "cascade-core",
        "--bench",
        "mls_groups",
        "--bench",
        "engine",
        "--bench",
        "codec",
    ]);
    match args {
        [] => {}
        [flag, sizes] if flag == "--sizes" => {
            cmd.env("CASCADE_BENCH_SIZES", sizes);
        }
        _ => bail!("usage: cargo xtask bench-mls [--sizes N,N,…]"),
    }
    run(&mut cmd)
}

/// Searching a device's history (`client-core/benches/search.rs`): builds
/// encrypted stores of 100,000 and 1,000,000 messages (a minute or two),
/// then times each kind of query beside a history page.
fn bench_search() -> Result<()> {
    run(cargo().args([
        "bench",
        "--locked",
        "-p",
        "cascade-core",
        "--bench",
        "search",
    ]))
}

/// The seeded random interactions of the client engine on the simulated
/// relay (`client-core/tests/random.rs`), for many more seeds and steps
/// than the test run has time for: by default 200 seeds of 5,000 steps
/// (some minutes). A failing seed is printed with the command that replays
/// it.
fn soak(args: &[String]) -> Result<()> {
    const USAGE: &str = "usage: cargo xtask soak [--seeds N] [--steps N] [--kills N] [--cuts N]";
    let mut seeds = "200".to_owned();
    let mut steps = "5000".to_owned();
    let mut kills = "100".to_owned();
    let mut cuts = "100".to_owned();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().context(USAGE)?;
        match flag.as_str() {
            "--seeds" => seeds = value.clone(),
            "--steps" => steps = value.clone(),
            "--kills" => kills = value.clone(),
            "--cuts" => cuts = value.clone(),
            _ => bail!(USAGE),
        }
    }
    // The client engines against a simulated relay, in random orders.
    run(cargo()
        .args([
            "test",
            "--release",
            "--locked",
            "-p",
            "cascade-core",
            "--test",
            "random",
        ])
        .env("CASCADE_SIM_SEEDS", &seeds)
        .env("CASCADE_SIM_STEPS", &steps))?;
    // The relay killed, and its power cut, under message load
    // (`tests/tests/soak.rs`; the power-cut library is a workspace cdylib).
    // The workspace as a whole, as `cargo xtask test` builds it: one
    // feature set, so nothing is rebuilt.
    build_all()?;
    run(cargo()
        .args([
            "test",
            "--workspace",
            "--locked",
            "--test",
            "soak",
            "--",
            "--nocapture",
        ])
        .env("CASCADE_BIN_DIR", target_dir().join("debug"))
        .env("CASCADE_SOAK_KILLS", &kills)
        .env("CASCADE_SOAK_CUTS", &cuts))
}

/// The fuzz targets of `fuzz/`.
const FUZZ_TARGETS: &[&str] = &[
    "frame_decoder",
    "mls_header",
    "stored_records",
    "content",
    "relay_requests",
    "groups",
];

/// `cargo xtask fuzz <target> [--secs N] [-- ARGS]`: builds the target with
/// libFuzzer and SanitizerCoverage instrumentation (what cargo-fuzz passes,
/// minus the nightly-only address sanitizer: every option here is stable),
/// in its own target directory so the ordinary build stays warm, and runs
/// it on its corpus for `N` seconds (default 60).
fn fuzz(args: &[String]) -> Result<()> {
    const USAGE: &str =
        "usage: cargo xtask fuzz <target> [--secs N | --minimize] [-- LIBFUZZER ARGS]";
    let (ours, theirs) = match args.iter().position(|a| a == "--") {
        Some(at) => (&args[..at], &args[at + 1..]),
        None => (args, &[][..]),
    };
    let target = ours.first().context(USAGE)?;
    if !FUZZ_TARGETS.contains(&target.as_str()) {
        bail!(
            "unknown target {target:?}; the targets: {}",
            FUZZ_TARGETS.join(", ")
        );
    }
    let mut secs = "60".to_owned();
    let mut minimize = false;
    let mut it = ours[1..].iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--secs" => secs = it.next().context(USAGE)?.clone(),
            "--minimize" => minimize = true,
            _ => bail!(USAGE),
        }
    }
    let fuzz_target_dir = target_dir().join("fuzz");
    let flags = [
        "--cfg fuzzing",
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "-Cdebug-assertions",
        "-Coverflow-checks",
    ]
    .join(" ");
    // An explicit `--target` keeps RUSTFLAGS off build scripts and proc
    // macros, which are linked without libFuzzer's coverage callbacks.
    let host = host_triple()?;
    run(cargo()
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "cascade-fuzz",
            "--bin",
            target,
        ])
        .args(["--target", &host])
        .env("CARGO_TARGET_DIR", &fuzz_target_dir)
        .env("RUSTFLAGS", &flags))?;
    let corpus = Path::new("fuzz/corpus").join(target);
    let artifacts = Path::new("fuzz/artifacts").join(target);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    let binary = fuzz_target_dir.join(&host).join("release").join(target);
    if minimize {
        // Merge into an empty directory, then put it in the corpus's place.
        let merged = Path::new("fuzz/artifacts").join(format!("{target}.merged"));
        if merged.exists() {
            std::fs::remove_dir_all(&merged)?;
        }
        std::fs::create_dir_all(&merged)?;
        run(Command::new(&binary)
            .arg("-merge=1")
            .arg("-rss_limit_mb=4096")
            .arg(&merged)
            .arg(&corpus)
            .args(theirs))?;
        let before = std::fs::read_dir(&corpus)?.count();
        std::fs::remove_dir_all(&corpus)?;
        std::fs::rename(&merged, &corpus)?;
        let after = std::fs::read_dir(&corpus)?.count();
        println!("{target}: corpus minimised from {before} to {after} inputs");
        return Ok(());
    }
    run(Command::new(&binary)
        .arg(&corpus)
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-rss_limit_mb=4096")
        .arg("-max_len=65536")
        .args(theirs))
}

/// The compiler's host target triple (`rustc -vV`).
fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}

/// Builds the relay and the load generator in release mode and runs the load
/// generator (arguments are passed on; see `tests/src/bin/cascade-load.rs`).
/// Without arguments it runs the standard set recorded in
/// `docs/benchmarks.md`.
fn bench(args: &[String]) -> Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "cascade-server",
        "-p",
        "cascade-tests",
        "--bin",
        "cascade-server",
        "--bin",
        "cascade-load",
        "--bin",
        "cascade-baseline",
    ]))?;
    let load = target_dir().join("release/cascade-load");
    let bins = target_dir().join("release");
    if !args.is_empty() {
        return run(Command::new(&load).args(args).env("CASCADE_BIN_DIR", &bins));
    }
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out)?;
    // Relay shapes: each runs against the raw baseline, the baseline with
    // group-commit fsync, the relay without and with fsync, in that order,
    // in the same run.
    for (devices, senders, messages) in [
        ("2", "2", "500"),
        ("16", "16", "200"),
        ("100", "100", "20"),
        ("1000", "10", "20"),
    ] {
        let json = out.join(format!("relay-{devices}.json"));
        run(Command::new(&load)
            .args([
                "--mode",
                "relay",
                "--devices",
                devices,
                "--senders",
                senders,
                "--messages",
                messages,
                "--json",
            ])
            .arg(&json)
            .env("CASCADE_BIN_DIR", &bins))?;
    }
    for set in [
        &["--groups", "1", "--members", "2", "--messages", "200"][..],
        &["--groups", "4", "--members", "4", "--messages", "50"],
    ] {
        run(Command::new(&load)
            .args(["--mode", "e2e"])
            .args(set)
            .env("CASCADE_BIN_DIR", &bins))?;
    }
    println!("JSON records in {}", out.display());
    Ok(())
}
