//! `cascade backup` and `cascade restore`: the device's history sealed in
//! a file under a recovery key, and brought back on a new device of the
//! same user. The sealing and checking are cascade-core's
//! ([`cascade_core::backup`]).

use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use cascade_core::backup::RecoveryKey;
use cascade_core::Client;
use serde_json::json;

use crate::output::say;
use crate::passphrase::kdf_cost;

/// The environment variable that holds the recovery key (for scripts: a
/// backup made every night under one key kept safe; on a terminal
/// `restore` asks for it instead).
pub const RECOVERY_KEY_ENV: &str = "CASCADE_RECOVERY_KEY";

fn key_from_env() -> Result<Option<RecoveryKey>> {
    match std::env::var(RECOVERY_KEY_ENV) {
        Ok(k) if !k.is_empty() => Ok(Some(RecoveryKey::parse(&k)?)),
        _ => Ok(None),
    }
}

/// `1 message`, `2 messages`.
fn counted(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// `cascade backup`.
pub async fn backup(client: &Client, to: &Path, json: bool) -> Result<()> {
    let (key, generated) = match key_from_env()? {
        Some(key) => (key, false),
        None => (RecoveryKey::generate(), true),
    };
    let summary = client.backup(to, &key, kdf_cost()?).await?;
    let written = key.written();
    say(
        json,
        json!({
            "path": to,
            "conversations": summary.conversations,
            "messages": summary.messages,
            "bytes": summary.bytes,
            "recovery_key": generated.then(|| written.as_str()),
        }),
        || {
            let mut out = format!(
                "Backed up {} and {} to {} ({} bytes).",
                counted(summary.conversations, "conversation"),
                counted(summary.messages, "message"),
                to.display(),
                summary.bytes
            );
            if generated {
                out.push_str(&format!(
                    "\nRecovery key: {}\nWrite it down and keep it apart from the file: \
                     without it the backup cannot be opened, and with it anyone who has \
                     the file can read your messages.",
                    written.as_str()
                ));
            }
            out
        },
    );
    Ok(())
}

/// `cascade restore`.
pub async fn restore(client: &Client, from: &Path, json: bool, timeout: Duration) -> Result<()> {
    let key = match key_from_env()? {
        Some(key) => key,
        None if std::io::stdin().is_terminal() => {
            RecoveryKey::parse(&rpassword::prompt_password("Recovery key: ")?)?
        }
        None => bail!("type the backup's recovery key on a terminal, or set {RECOVERY_KEY_ENV}"),
    };
    let done = client.restore(from, &key).await?;
    // The conversations new to this device are joined now if the relay is
    // there, else at the next connection.
    let joined = client.sync(timeout).await?;
    say(
        json,
        json!({
            "conversations": done.conversations,
            "messages": done.messages,
            "joined": joined,
        }),
        || {
            let mut out = format!(
                "Restored {} ({} new to this device).",
                counted(done.messages, "message"),
                counted(done.conversations, "conversation")
            );
            if !joined {
                out.push_str(" This device joins them when it next connects.");
            }
            out
        },
    );
    Ok(())
}
