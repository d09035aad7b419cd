//! The window's commands on a conversation's roles and policy: its
//! details, promoting and demoting, who may do what, and renaming. Each
//! calls cascade-core, which checks this user's role first; the
//! `conversation` event that follows the accepted commit reloads the panel.

use cascade_core::{Action, Role};
use serde::Serialize;
use tauri::State;

use crate::commands::{client, group, user, Result, UiError};
use crate::AppState;

/// Which role one action needs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    /// `add`, `remove`, `rename`, `roles` or `timer`.
    pub action: &'static str,
    /// `admin` or `member`.
    pub needs: &'static str,
}

/// A conversation's admins and policy, and what this user may do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomView {
    /// Messages sent now disappear this many seconds after; none: never.
    pub disappear_after: Option<u64>,
    pub admins: Vec<String>,
    pub policy: Vec<RuleView>,
    pub my_role: &'static str,
    pub may: Vec<&'static str>,
}

fn role(s: &str) -> Result<Role> {
    s.parse()
        .map_err(|()| UiError::invalid(format!("not a role: {s}")))
}

fn action(s: &str) -> Result<Action> {
    s.parse()
        .map_err(|()| UiError::invalid(format!("not an action: {s}")))
}

/// A conversation's admins, policy and what this user may do; none for a
/// conversation created before conversation roles.
#[tauri::command]
pub async fn room_details(
    state: State<'_, AppState>,
    group_id: String,
) -> Result<Option<RoomView>> {
    let client = client(&state).await?;
    Ok(client
        .room_details(group(&group_id)?)
        .await?
        .map(|d| RoomView {
            disappear_after: d.disappear_after,
            admins: d.admins.iter().map(ToString::to_string).collect(),
            policy: Action::ALL
                .into_iter()
                .map(|a| RuleView {
                    action: a.as_str(),
                    needs: d.policy.needs(a).as_str(),
                })
                .collect(),
            my_role: d.my_role.as_str(),
            may: d.may.iter().map(|a| a.as_str()).collect(),
        }))
}

/// Makes a member an admin, or an admin a member.
#[tauri::command]
pub async fn set_role(
    state: State<'_, AppState>,
    group_id: String,
    user_id: String,
    role_name: String,
) -> Result<()> {
    let client = client(&state).await?;
    Ok(client
        .set_role(group(&group_id)?, user(&user_id)?, role(&role_name)?)
        .await?)
}

/// Lets an action need a role from now on.
#[tauri::command]
pub async fn set_policy(
    state: State<'_, AppState>,
    group_id: String,
    action_name: String,
    role_name: String,
) -> Result<()> {
    let client = client(&state).await?;
    Ok(client
        .set_policy(group(&group_id)?, action(&action_name)?, role(&role_name)?)
        .await?)
}

/// Lets messages sent from now on disappear `secs` seconds after they are
/// sent (none: they stay).
#[tauri::command]
pub async fn set_timer(
    state: State<'_, AppState>,
    group_id: String,
    secs: Option<u64>,
) -> Result<()> {
    let client = client(&state).await?;
    Ok(client.set_timer(group(&group_id)?, secs).await?)
}

/// Renames a conversation for everyone in it.
#[tauri::command]
pub async fn rename_conversation(
    state: State<'_, AppState>,
    group_id: String,
    name: String,
) -> Result<()> {
    let client = client(&state).await?;
    Ok(client.rename(group(&group_id)?, &name).await?)
}
