//! Drives the desktop app through WebDriver: `tauri-driver` in front of
//! WebKitWebDriver, which starts the real `cascade-desktop` binary.
//!
//! The W3C WebDriver protocol is JSON over HTTP; the handful of endpoints a
//! test needs (session, find, click, type, text, attribute, screenshot,
//! script) are called directly with reqwest, as STACK.md found works.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::{poll_until, WAIT};

/// The W3C key code of Enter.
pub const ENTER: &str = "\u{E007}";
/// Shift, held for the keys that follow in the same `send_keys` call.
pub const SHIFT: &str = "\u{E008}";
/// Control, held likewise.
pub const CONTROL: &str = "\u{E009}";

/// A WebDriver session on one app window.
pub struct Driver {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    screenshots: PathBuf,
}

/// An element of the page (a WebDriver element reference).
#[derive(Debug, Clone)]
pub struct Element(String);

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Where `tauri-driver` is: `TAURI_DRIVER`, else `~/.cargo/bin`, else PATH.
fn tauri_driver() -> PathBuf {
    if let Some(p) = std::env::var_os("TAURI_DRIVER") {
        return p.into();
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cargo/bin/tauri-driver");
        if p.exists() {
            return p;
        }
    }
    "tauri-driver".into()
}

impl Driver {
    /// Starts `tauri-driver` and the app `application` with `env` set,
    /// saving screenshots to `screenshots`.
    pub async fn start(
        application: &Path,
        env: &[(&str, &str)],
        screenshots: &Path,
    ) -> Result<Driver> {
        if !application.exists() {
            bail!(
                "{} not built: build the UI and the workspace first (cargo xtask test does)",
                application.display()
            );
        }
        std::fs::create_dir_all(screenshots)?;
        let port = free_port()?;
        let native = free_port()?;
        let mut cmd = Command::new(tauri_driver());
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // Its own process group, so that WebKitWebDriver and the app,
        // which tauri-driver starts, are stopped with it.
        .process_group(0)
        .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let driver = cmd.spawn().context("starting tauri-driver")?;
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "wry",
                    "tauri:options": { "application": application },
                }
            }
        });
        let deadline = tokio::time::Instant::now() + WAIT;
        let session = loop {
            match http
                .post(format!("{base}/session"))
                .json(&caps)
                .send()
                .await
            {
                Ok(r) => {
                    let v: Value = r.json().await?;
                    let id = v["value"]["sessionId"]
                        .as_str()
                        .ok_or_else(|| anyhow!("no WebDriver session: {v}"))?;
                    break id.to_owned();
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e).context("tauri-driver did not answer"),
            }
        };
        Ok(Driver {
            http,
            base,
            session,
            driver,
            screenshots: screenshots.to_owned(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!("WebDriver {path}: {status} {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// All elements matching a CSS selector now.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(|s| Element(s.to_owned())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until an element matches `css` and returns the first.
    pub async fn find(&self, css: &str) -> Result<Element> {
        self.wait_for(css, |_| true).await
    }

    /// Waits until some element matching `css` has text satisfying `check`.
    pub async fn wait_for_text(&self, css: &str, check: impl Fn(&str) -> bool) -> Result<Element> {
        let check = &check;
        poll_until(|| async move {
            let mut seen = Vec::new();
            for e in self.find_all(css).await? {
                match self.text(&e).await {
                    Ok(t) if check(&t) => return Ok(Ok(e)),
                    Ok(t) => seen.push(t),
                    Err(e) => seen.push(format!("<{e}>")),
                }
            }
            Ok(Err(format!(
                "no {css} with the expected text appeared; seen: {seen:?}"
            )))
        })
        .await
    }

    /// Waits until an element matching `css` satisfies `check` (on the
    /// list of matches' count, for "at least one" use `|_| true`).
    pub async fn wait_for(&self, css: &str, check: impl Fn(usize) -> bool) -> Result<Element> {
        let check = &check;
        poll_until(|| async move {
            let found = self.find_all(css).await?;
            Ok(match found.first() {
                Some(e) if check(found.len()) => Ok(e.clone()),
                _ => Err(format!("{css} did not appear")),
            })
        })
        .await
    }

    /// Waits until nothing matches `css`.
    pub async fn wait_gone(&self, css: &str) -> Result<()> {
        poll_until(|| async move {
            Ok(if self.find_all(css).await?.is_empty() {
                Ok(())
            } else {
                Err(format!("{css} did not go away"))
            })
        })
        .await
    }

    /// Clicks an element.
    pub async fn click(&self, e: &Element) -> Result<()> {
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await
            .map(drop)
    }

    /// Types into an element (use [`ENTER`] and [`SHIFT`] for those keys).
    pub async fn send_keys(&self, e: &Element, text: &str) -> Result<()> {
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text }))
            .await
            .map(drop)
    }

    /// Empties an input.
    pub async fn clear(&self, e: &Element) -> Result<()> {
        self.post(&format!("/element/{}/clear", e.0), json!({}))
            .await
            .map(drop)
    }

    /// The element's text content. (WebDriver's "visible text" atom in
    /// WebKit reports an empty string for text in an `overflow: hidden`
    /// box with ellipsis, so the DOM's text is read instead; what is
    /// visible is checked by layout assertions and screenshots.)
    pub async fn text(&self, e: &Element) -> Result<String> {
        Ok(self
            .get(&format!("/element/{}/property/textContent", e.0))
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// An attribute of the element, if set.
    pub async fn attr(&self, e: &Element, name: &str) -> Result<Option<String>> {
        Ok(self
            .get(&format!("/element/{}/attribute/{name}", e.0))
            .await?
            .as_str()
            .map(str::to_owned))
    }

    /// The element's position and size: (x, y, width, height) in CSS pixels.
    pub async fn rect(&self, e: &Element) -> Result<(f64, f64, f64, f64)> {
        let v = self.get(&format!("/element/{}/rect", e.0)).await?;
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        Ok((f("x"), f("y"), f("width"), f("height")))
    }

    /// Resizes the window (CSS pixels).
    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await
            .map(drop)
    }

    /// Runs a script in the page and returns its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Runs an asynchronous script: it gets a callback as its last
    /// argument and its result is what it passes to the callback.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.post("/execute/async", json!({ "script": script, "args": args }))
            .await
    }

    /// Saves a PNG of the window as `<screenshots>/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let v = self.get("/screenshot").await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().ok_or_else(|| anyhow!("no screenshot data"))?)?;
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the session (closing the app) and stops the driver.
    pub async fn quit(mut self) -> Result<()> {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        self.kill_group();
        let _ = self.driver.wait().await;
        Ok(())
    }

    /// Stops tauri-driver, WebKitWebDriver and the app (one process group).
    fn kill_group(&mut self) {
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
        let _ = self.driver.start_kill();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A failed test never reaches `quit`: leave no processes behind.
        self.kill_group();
    }
}
