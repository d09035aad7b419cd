//! This device: `cascade enrol`, `whoami`, `sync`, `devices`.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cascade_core::{Client, Event};
use serde_json::json;
use tokio::sync::broadcast;

use crate::output::say;
use crate::synced;

/// `cascade enrol`: enrols the device in `data_dir`, then connects once so
/// its KeyPackages are on the relay and colleagues can add it straight
/// away.
pub async fn enrol(
    data_dir: &Path,
    server: &str,
    server_ca: Option<&str>,
    code: &str,
    device_name: &str,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    let key = crate::passphrase::store_key(data_dir, true)?;
    let id = Client::enrol_pinned(data_dir, server, server_ca, code, device_name, &key).await?;
    let client = Client::open(data_dir, &key).await?;
    let synced = synced(&client, timeout).await;
    client.shutdown().await;
    synced.context("enrolled, but could not connect to the relay afterwards")?;
    if json {
        println!("{}", serde_json::to_string(&id)?);
    } else {
        println!(
            "Enrolled {} ({}, {}) as device {} on {}",
            id.display_name, id.user_id, id.role, id.device_id, id.server_url
        );
    }
    Ok(())
}

/// `cascade whoami`.
pub fn whoami(client: &Client, json: bool) -> Result<()> {
    let id = client.identity();
    if json {
        println!("{}", serde_json::to_string(id)?);
    } else {
        println!(
            "{} ({}, {}) device {} on {}",
            id.display_name, id.user_id, id.role, id.device_id, id.server_url
        );
    }
    Ok(())
}

/// `cascade sync`: waits until caught up and idle; reports what could not
/// be carried out meanwhile (a conversation this new device could not
/// join, say) and then fails.
pub async fn sync(client: &Client, json: bool, timeout: Duration) -> Result<()> {
    let mut events = client.events_since_open();
    synced(client, timeout).await?;
    let mut failures = Vec::new();
    loop {
        match events.try_recv() {
            Ok(Event::OperationFailed { group_id, reason }) => failures.push(match group_id {
                Some(g) => format!("{g}: {reason}"),
                None => reason,
            }),
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("could not be done: {f}");
        }
        if json {
            println!("{}", json!({ "synced": true, "failed": failures }));
        }
        bail!("{} operation(s) could not be carried out", failures.len());
    }
    say(json, json!({ "synced": true, "failed": [] }), || {
        "Synced".into()
    });
    Ok(())
}

/// `cascade devices`: the user's enrolled, unrevoked devices.
pub async fn devices(client: &Client, json: bool, timeout: Duration) -> Result<()> {
    synced(client, timeout).await?;
    let me = client.identity().device_id;
    let devices = client.my_devices().await?;
    if json {
        println!("{}", serde_json::to_string(&devices)?);
    } else {
        for d in devices {
            println!("{d}{}", if d == me { "\t(this device)" } else { "" });
        }
    }
    Ok(())
}
