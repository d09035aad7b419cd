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
    let may: Vec<&str> = d.may.iter().map(|a| a.as_str()).collect();
    println!("you\t{} (may: {})", d.my_role, may.join(", "));
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
