//! `cascade link` (on the new device) and `cascade link-approve` (on the
//! device the user has): a new device gets the user's history, sealed
//! under a key the two devices agree and checked by six digits the person
//! types. The protocol is cascade-core's ([`cascade_core::link`]).

use std::io::{BufRead as _, IsTerminal as _};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use cascade_core::Client;
use serde_json::json;

use crate::output::say;

/// `cascade link`: shows a code (and a QR code), waits for the user's
/// other device, shows the digits to type there, and takes in the history.
pub async fn link(client: &Client, qr: bool, json: bool, wait: Duration) -> Result<()> {
    if !client.sync(wait).await? {
        bail!("linking needs the relay, which cannot be reached");
    }
    let offer = client.link_start().await?;
    if qr && !json {
        let picture = qrcode::QrCode::new(offer.qr.as_bytes())
            .context("the payload does not fit a QR code")?
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build();
        println!("{picture}");
    }
    say(json, json!({ "code": offer.code, "qr": offer.qr }), || {
        format!(
            "Link code: {}\nOn your other device run `cascade link-approve {}` (or scan the \
                 QR code in the app). Waiting up to {} minutes…",
            offer.code,
            offer.code,
            wait.as_secs() / 60
        )
    });
    let peer = client.link_wait(wait).await?;
    say(
        json,
        json!({
            "device_id": peer.device_id.to_string(),
            "display_name": peer.display_name,
            "digits": peer.digits,
        }),
        || {
            format!(
                "Your other device {} ({}) answered. Type these digits there: {}",
                peer.device_id, peer.display_name, peer.digits
            )
        },
    );
    let done = client.link_receive(wait).await?;
    let joined = client.sync(wait).await?;
    say(
        json,
        json!({
            "messages": done.messages,
            "conversations": done.conversations,
            "joined": joined,
        }),
        || {
            format!(
                "Linked: {} messages, {} conversations new to this device.{}",
                done.messages,
                done.conversations,
                if joined {
                    ""
                } else {
                    " It joins them when it next connects."
                }
            )
        },
    );
    Ok(())
}

/// `cascade link-approve`: answers the new device whose code was typed,
/// asks for the digits it shows, and sends it this device's history.
pub async fn approve(client: &Client, code: &str, json: bool, wait: Duration) -> Result<()> {
    if !client.sync(wait).await? {
        bail!("linking needs the relay, which cannot be reached");
    }
    let peer = client.link_approve(code).await?;
    say(
        json,
        json!({
            "device_id": peer.device_id.to_string(),
            "display_name": peer.display_name,
        }),
        || {
            format!(
                "Your new device {} ({}) is waiting. Type the six digits it shows:",
                peer.device_id, peer.display_name
            )
        },
    );
    let digits = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Digits: ").unwrap_or_default()
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line
    };
    let sent = match client.link_send(&digits).await {
        Ok(sent) => sent,
        Err(e) => {
            client.link_cancel();
            return Err(e.into());
        }
    };
    say(
        json,
        json!({
            "messages": sent.messages,
            "conversations": sent.conversations,
            "bytes": sent.bytes,
        }),
        || {
            format!(
                "Sent {} messages in {} conversations ({} bytes, encrypted for the new device).",
                sent.messages, sent.conversations, sent.bytes
            )
        },
    );
    Ok(())
}
