//! Conversation roles and policy: `cascade role`, `cascade policy` and
//! `cascade rename`.
//!
//! Each syncs first, so it judges the conversation as the relay has it, and
//! again after a change, which it then checks took effect: a change the
//! conversation's policy (or the relay) refused fails the command.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use cascade_core::{Action, Client, Role, RoomDetails, UserId};
use serde_json::json;

use crate::conversation::resolve;
use crate::output::say;
use crate::synced;

fn details(d: Option<RoomDetails>) -> Result<RoomDetails> {
    d.context(
        "this conversation was created before conversation roles; start a new one to use them",
    )
}

/// `cascade role <conversation> <user> <admin|member>`.
pub async fn role(
    client: &Client,
    conversation: &str,
    user: UserId,
    role: Role,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    client.set_role(group, user.clone(), role).await?;
    synced(client, timeout).await?;
    let now = details(client.room_details(group).await?)?;
    if now.admins.contains(&user) != (role == Role::Admin) {
        bail!(
            "{user} is not {} (the change was refused or is still on its way)",
            article(role)
        );
    }
    say(
        json,
        json!({ "group_id": group, "user_id": user, "role": role }),
        || format!("{user} is now {}", article(role)),
    );
    Ok(())
}

fn article(role: Role) -> &'static str {
    match role {
        Role::Admin => "an admin",
        Role::Member => "a member",
    }
}

/// `cascade policy <conversation> [--set ACTION=ROLE ...]`: shows the
/// conversation's admins, who may do what and what you may do; with
/// `--set`, changes it first.
pub async fn policy(
    client: &Client,
    conversation: &str,
    set: &[String],
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    let mut wanted = Vec::new();
    for s in set {
        let (action, role) = s
            .split_once('=')
            .with_context(|| format!("--set {s:?}: write ACTION=ROLE, e.g. remove=admin"))?;
        let action: Action = action.parse().map_err(|()| {
            anyhow::anyhow!("--set {s:?}: the actions are add, remove, rename, roles and timer")
        })?;
        let role: Role = role
            .parse()
            .map_err(|()| anyhow::anyhow!("--set {s:?}: the roles are admin and member"))?;
        wanted.push((action, role));
    }
    for (action, role) in &wanted {
        client.set_policy(group, *action, *role).await?;
    }
    if !wanted.is_empty() {
        synced(client, timeout).await?;
    }
    let d = details(client.room_details(group).await?)?;
    for (action, role) in &wanted {
        if d.policy.needs(*action) != *role {
            bail!(
                "{action} still needs {} (the change was refused or is still on its way)",
                article(d.policy.needs(*action))
            );
        }
    }
    if json {
        println!("{}", serde_json::to_string(&d)?);
        return Ok(());
    }
    let admins: Vec<String> = d.admins.iter().map(|u| u.to_string()).collect();
    println!("admins\t{}", admins.join(", "));
    for action in Action::ALL {
        let needs = d.policy.needs(action);
        println!(
            "{action}\t{}",
            match needs {
                Role::Admin => "admins",
                Role::Member => "members",
            }
        );
    }
    println!(
        "disappear\t{}",
        d.disappear_after
            .map_or("off".into(), cascade_core::engine::duration)
    );
    let may: Vec<&str> = d.may.iter().map(|a| a.as_str()).collect();
    println!("you\t{} (may: {})", d.my_role, may.join(", "));
    Ok(())
}

/// A disappearing timer as typed, in seconds (`None`: off).
#[derive(Debug, Clone, Copy)]
pub struct TimerSetting(pub Option<u64>);

/// A timer as typed: `off`, or a number with `s`, `m`, `h`, `d` or `w`.
pub fn parse_timer(s: &str) -> std::result::Result<TimerSetting, String> {
    if s == "off" {
        return Ok(TimerSetting(None));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "{s:?}: write off, or a number and s, m, h, d or w (e.g. 8h)"
            ))
        }
    };
    n.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .map(|secs| TimerSetting(Some(secs)))
        .ok_or_else(|| format!("{s:?}: write off, or a number and s, m, h, d or w (e.g. 8h)"))
}

/// `cascade timer <conversation> <off|DURATION>`.
pub async fn timer(
    client: &Client,
    conversation: &str,
    secs: Option<u64>,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    client.set_timer(group, secs).await?;
    synced(client, timeout).await?;
    let d = details(client.room_details(group).await?)?;
    if d.disappear_after != secs {
        bail!("the timer did not change (the change was refused or is still on its way)");
    }
    say(
        json,
        json!({ "group_id": group, "disappear_after": secs }),
        || match secs {
            Some(s) => format!(
                "Messages sent from now on disappear {} after they are sent",
                cascade_core::engine::duration(s)
            ),
            None => "Messages no longer disappear".into(),
        },
    );
    Ok(())
}

/// `cascade rename <conversation> <name>`.
pub async fn rename(
    client: &Client,
    conversation: &str,
    name: &str,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    synced(client, timeout).await?;
    let group = resolve(client, conversation).await?;
    client.rename(group, name).await?;
    synced(client, timeout).await?;
    say(
        json,
        json!({ "group_id": group, "name": name.trim() }),
        || format!("Renamed to {}", name.trim()),
    );
    Ok(())
}
