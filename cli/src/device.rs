//! This device: `cascade enrol`, `whoami`, `sync`, `devices`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cascade_core::Client;
use serde_json::json;

use crate::output::say;
use crate::synced;

/// `cascade enrol`: enrols the device in `data_dir`, then connects once so
/// its KeyPackages are on the relay and colleagues can add it straight
/// away.
pub async fn enrol(
    data_dir: &Path,
    server: &str,
    code: &str,
    device_name: &str,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    let id = Client::enrol(data_dir, server, code, device_name).await?;
    let client = Client::open(data_dir).await?;
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

/// `cascade sync`.
pub async fn sync(client: &Client, json: bool, timeout: Duration) -> Result<()> {
    synced(client, timeout).await?;
    say(json, json!({ "synced": true }), || "Synced".into());
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
