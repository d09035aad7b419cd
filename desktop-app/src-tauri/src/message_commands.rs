//! The window's commands on one message: edit, delete for everyone,
//! react, its earlier versions, who received and read it; whether this
//! user sends read receipts; and search over this device's history. Each calls cascade-core; the events
//! that follow (`changed`) carry the message as it now is.

use tauri::State;

use crate::commands::{client, group, message, Result};
use crate::views::{ReceiptsView, SearchHitView, VersionView};
use crate::AppState;

/// Replaces the text of a message this user sent.
#[tauri::command]
pub async fn edit_message(
    state: State<'_, AppState>,
    group_id: String,
    message_id: String,
    text: String,
) -> Result<()> {
    let client = client(&state).await?;
    Ok(client
        .edit_message(group(&group_id)?, message(&message_id)?, &text)
        .await?)
}

/// Deletes a message for everyone (this user's, or anyone's as an admin).
#[tauri::command]
pub async fn delete_message(
    state: State<'_, AppState>,
    group_id: String,
    message_id: String,
) -> Result<()> {
    let client = client(&state).await?;
    Ok(client
        .delete_message(group(&group_id)?, message(&message_id)?)
        .await?)
}

/// Reacts to a message.
#[tauri::command]
pub async fn react(
    state: State<'_, AppState>,
    group_id: String,
    message_id: String,
    emoji: String,
) -> Result<()> {
    let client = client(&state).await?;
    Ok(client
        .react(group(&group_id)?, message(&message_id)?, &emoji)
        .await?)
}

/// Takes back this user's reaction.
#[tauri::command]
pub async fn unreact(
    state: State<'_, AppState>,
    group_id: String,
    message_id: String,
    emoji: String,
) -> Result<()> {
    let client = client(&state).await?;
    Ok(client
        .unreact(group(&group_id)?, message(&message_id)?, &emoji)
        .await?)
}

/// What an edited message said before, oldest first.
#[tauri::command]
pub async fn message_versions(
    state: State<'_, AppState>,
    group_id: String,
    message_id: String,
) -> Result<Vec<VersionView>> {
    let client = client(&state).await?;
    Ok(client
        .message_versions(group(&group_id)?, message(&message_id)?)
        .await?
        .into_iter()
        .map(|v| VersionView {
            text: v.text,
            at: v.at,
        })
        .collect())
}

/// Who has received and read one of this user's messages.
#[tauri::command]
pub async fn message_receipts(
    state: State<'_, AppState>,
    group_id: String,
    message_id: String,
) -> Result<ReceiptsView> {
    let client = client(&state).await?;
    Ok(client
        .receipts(group(&group_id)?, message(&message_id)?)
        .await?
        .into())
}

/// Whether this user sends read receipts.
#[tauri::command]
pub async fn read_receipts(state: State<'_, AppState>) -> Result<bool> {
    Ok(client(&state).await?.read_receipts().await?)
}

/// Turns sending read receipts on or off (this user's own devices are
/// told what was read either way).
#[tauri::command]
pub async fn set_read_receipts(state: State<'_, AppState>, on: bool) -> Result<bool> {
    let client = client(&state).await?;
    client.set_read_receipts(on).await?;
    Ok(client.read_receipts().await?)
}

/// Searches this device's history (works offline): every word of 3 or
/// more characters, anywhere in a word, any case; newest first.
#[tauri::command]
pub async fn search_messages(
    state: State<'_, AppState>,
    text: String,
    group_id: Option<String>,
    limit: u32,
) -> Result<Vec<SearchHitView>> {
    let client = client(&state).await?;
    let own = client.identity().user_id.to_string();
    let query = cascade_core::SearchQuery {
        text,
        group: group_id.as_deref().map(group).transpose()?,
        limit,
        ..Default::default()
    };
    Ok(client
        .search(query)
        .await?
        .into_iter()
        .map(|h| SearchHitView::new(h, &own))
        .collect())
}
