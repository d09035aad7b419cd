//! The Tauri commands the UI invokes: parse ids, call cascade-core, convert
//! the answer. Errors become [`UiError`] here and nowhere else.

use cascade_core::{Client, CoreError, GroupId, MessageId, StoreKey, UserId};
use serde::Serialize;
use tauri::{AppHandle, State};

use crate::views::{
    ConversationView, DevicesView, IdentityView, MemberView, MessageView, PersonView, Settings,
    StatusView,
};
use crate::{AppState, SETTINGS_FILE};

/// A failed command as the UI receives it: a stable code to branch on and a
/// sentence to show. Never contains message content or keys.
#[derive(Debug, Serialize)]
pub struct UiError {
    code: &'static str,
    message: String,
}

impl UiError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        UiError {
            code: "invalid",
            message: message.into(),
        }
    }
}

impl From<CoreError> for UiError {
    fn from(e: CoreError) -> Self {
        UiError {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, UiError>;

pub(crate) async fn client(state: &AppState) -> Result<Client> {
    state
        .client
        .read()
        .await
        .clone()
        .ok_or(UiError::from(CoreError::NotEnrolled))
}

pub(crate) fn group(id: &str) -> Result<GroupId> {
    id.parse()
        .map_err(|_| UiError::invalid("not a conversation id"))
}

pub(crate) fn user(id: &str) -> Result<UserId> {
    id.parse()
        .map_err(|_| UiError::invalid(format!("not a user id: {id}")))
}

fn users_of(ids: &[String]) -> Result<Vec<UserId>> {
    ids.iter().map(|u| user(u)).collect()
}

pub(crate) fn message(id: &str) -> Result<MessageId> {
    id.parse().map_err(|_| UiError::invalid("not a message id"))
}

/// Whether the device is enrolled, who it is, and the connection state.
#[tauri::command]
pub async fn status(state: State<'_, AppState>) -> Result<StatusView> {
    let (identity, locked) = match state.client.read().await.as_ref() {
        Some(c) => (Some(IdentityView::from(c.identity())), c.is_locked()),
        None => (None, false),
    };
    let ask = if locked {
        crate::unlock::ask_to_unlock(&state.data_dir)
    } else {
        *state.ask.lock().expect("not poisoned")
    };
    Ok(StatusView {
        identity,
        locked,
        connection: *state.connection.lock().expect("not poisoned"),
        certificate_pending: state
            .certificate_pending
            .load(std::sync::atomic::Ordering::SeqCst),
        suggested_relay: state.suggested_relay.clone(),
        ask,
    })
}

/// The key for the data when the window was asked for a passphrase (`ask`
/// in the status): the one typed, which must be there.
fn typed_key(passphrase: Option<String>) -> Result<StoreKey> {
    passphrase
        .filter(|p| !p.is_empty())
        .map(StoreKey::passphrase)
        .ok_or_else(|| UiError::invalid("type the passphrase of this device's data"))
}

/// Opens the enrolled device's data with the passphrase typed in the
/// window (a new one, for a store from before encryption, when there is
/// no keystore) and starts the client. A wrong passphrase is the error
/// `wrong_key`, and nothing changes.
#[tauri::command]
pub async fn unlock(
    app: AppHandle,
    state: State<'_, AppState>,
    passphrase: String,
) -> Result<StatusView> {
    let running = state.client.read().await.clone();
    if let Some(client) = running {
        // The app locked while running: the same passphrase (or the
        // keystore's key, which it gives only to the logged-in user).
        if client.is_locked() {
            let key = crate::unlock::key_to_unlock(&state.data_dir, passphrase)?;
            client.unlock(key).await?;
        }
        return status(state).await;
    }
    let key = typed_key(Some(passphrase))?;
    let client = match Client::open(&state.data_dir, &key).await {
        Ok(client) => client,
        // The data of an enrolment that failed: the window enrols again,
        // with this passphrase.
        Err(CoreError::NotEnrolled) => {
            *state.ask.lock().expect("not poisoned") = crate::unlock::Ask::NewPassphrase;
            return status(state).await;
        }
        Err(e) => return Err(e.into()),
    };
    crate::start(&app, client).await;
    status(state).await
}

/// Locks the app now (the person steps away): the window shows only the
/// lock screen until it is unlocked; messages still arrive.
#[tauri::command]
pub async fn lock_now(state: State<'_, AppState>) -> Result<StatusView> {
    client(&state).await?.lock();
    status(state).await
}

/// The person used the window: puts off the idle lock. The window calls it
/// on input, at most every few seconds.
#[tauri::command]
pub async fn input(state: State<'_, AppState>) -> Result<()> {
    if let Some(c) = state.client.read().await.as_ref() {
        c.input();
    }
    Ok(())
}

/// Enrols this installation with the admin's enrolment code and starts the
/// client. Refused if a device is already enrolled here. `relay_url` may be
/// empty when the code is a `cascade://enrol` link (which names the
/// relay); `server_ca` (PEM) pins the CA of a relay with a private TLS
/// certificate, and is kept with the identity. The device's data is
/// encrypted with a new key in the OS keystore, or where there is none with
/// `passphrase` (which the window asked for twice).
#[tauri::command]
pub async fn enrol(
    app: AppHandle,
    state: State<'_, AppState>,
    relay_url: String,
    code: String,
    device_name: String,
    server_ca: Option<String>,
    passphrase: Option<String>,
) -> Result<StatusView> {
    if state.client.read().await.is_some() {
        return Err(CoreError::AlreadyEnrolled.into());
    }
    let relay_url = relay_url.trim();
    if !(relay_url.is_empty()
        || relay_url.starts_with("http://")
        || relay_url.starts_with("https://"))
    {
        return Err(UiError::invalid(
            "the relay address starts with http:// or https://",
        ));
    }
    let server_ca = server_ca
        .as_deref()
        .map(str::trim)
        .filter(|pem| !pem.is_empty());
    let device_name = match device_name.trim() {
        "" => "Desktop",
        name => name,
    };
    // An earlier attempt may have enrolled and then failed to open: open
    // what is there rather than refusing with "already enrolled".
    let key = match crate::unlock::key_for(&state.data_dir)? {
        Ok(key) => key,
        Err(_) => typed_key(passphrase)?,
    };
    let client = match Client::open(&state.data_dir, &key).await {
        Ok(c) => c,
        Err(CoreError::NotEnrolled) => {
            Client::enrol_pinned(
                &state.data_dir,
                relay_url,
                server_ca,
                &code,
                device_name,
                &key,
            )
            .await?;
            Client::open(&state.data_dir, &key).await?
        }
        Err(e) => return Err(e.into()),
    };
    crate::start(&app, client).await;
    status(state).await
}

/// The conversation list, most recently active first, with the
/// organisations of each conversation's members.
#[tauri::command]
pub async fn conversations(state: State<'_, AppState>) -> Result<Vec<ConversationView>> {
    let client = client(&state).await?;
    let mut out = Vec::new();
    for c in client.conversations().await? {
        out.push(ConversationView::from(c));
    }
    Ok(out)
}

/// Up to `limit` messages (at most 200), oldest first, before `before`.
#[tauri::command]
pub async fn history(
    state: State<'_, AppState>,
    group_id: String,
    before: Option<String>,
    limit: u32,
) -> Result<Vec<MessageView>> {
    let client = client(&state).await?;
    let before = before.as_deref().map(message).transpose()?;
    let own = client.identity().user_id.to_string();
    Ok(client
        .history(group(&group_id)?, before, limit.min(200))
        .await?
        .into_iter()
        .map(|m| MessageView::new(m, &own))
        .collect())
}

/// Queues a text message (answering `replyTo` if given); its `message`
/// event follows at once.
#[tauri::command]
pub async fn send_message(
    state: State<'_, AppState>,
    group_id: String,
    text: String,
    reply_to: Option<String>,
) -> Result<String> {
    let client = client(&state).await?;
    let group = group(&group_id)?;
    let id = match reply_to {
        Some(original) => client.send_reply(group, &text, message(&original)?).await?,
        None => client.send_text(group, &text).await?,
    };
    Ok(id.to_string())
}

/// Sends a failed message of ours again.
#[tauri::command]
pub async fn retry_message(
    state: State<'_, AppState>,
    group_id: String,
    message_id: String,
) -> Result<()> {
    let client = client(&state).await?;
    Ok(client
        .retry_message(group(&group_id)?, message(&message_id)?)
        .await?)
}

/// Marks a conversation read.
#[tauri::command]
pub async fn mark_read(state: State<'_, AppState>, group_id: String) -> Result<()> {
    let client = client(&state).await?;
    Ok(client.mark_read(group(&group_id)?).await?)
}

/// Mutes a conversation on this device (no notifications), or unmutes it.
#[tauri::command]
pub async fn set_muted(state: State<'_, AppState>, group_id: String, muted: bool) -> Result<()> {
    let client = client(&state).await?;
    Ok(client.set_muted(group(&group_id)?, muted).await?)
}

/// The user is typing in a conversation (the draft changed), or cleared
/// the draft: the client decides when the others are told.
#[tauri::command]
pub async fn set_typing(state: State<'_, AppState>, group_id: String, typing: bool) -> Result<()> {
    let client = client(&state).await?;
    Ok(client.set_typing(group(&group_id)?, typing).await?)
}

/// Creates a conversation and adds the chosen people (all their devices).
#[tauri::command]
pub async fn create_conversation(
    state: State<'_, AppState>,
    name: String,
    members: Vec<String>,
) -> Result<String> {
    let client = client(&state).await?;
    let name = name.trim();
    if name.is_empty() {
        return Err(UiError::invalid("a conversation needs a name"));
    }
    let users = users_of(&members)?;
    let group = client.create_group(name).await?;
    if !users.is_empty() {
        client.add_members(group, users).await?;
    }
    Ok(group.to_string())
}

/// Adds people to a conversation (queued; a `membership` event follows).
#[tauri::command]
pub async fn add_members(
    state: State<'_, AppState>,
    group_id: String,
    users: Vec<String>,
) -> Result<()> {
    let client = client(&state).await?;
    let users = users_of(&users)?;
    Ok(client.add_members(group(&group_id)?, users).await?)
}

/// Removes a person (all their devices) from a conversation.
#[tauri::command]
pub async fn remove_member(
    state: State<'_, AppState>,
    group_id: String,
    user_id: String,
) -> Result<()> {
    let client = client(&state).await?;
    Ok(client
        .remove_members(group(&group_id)?, vec![user(&user_id)?])
        .await?)
}

/// Leaves a conversation.
#[tauri::command]
pub async fn leave_conversation(state: State<'_, AppState>, group_id: String) -> Result<()> {
    let client = client(&state).await?;
    Ok(client.leave(group(&group_id)?).await?)
}

/// The people in a conversation, with their verified identities.
#[tauri::command]
pub async fn members(state: State<'_, AppState>, group_id: String) -> Result<Vec<MemberView>> {
    let client = client(&state).await?;
    Ok(client
        .participants(group(&group_id)?)
        .await?
        .into_iter()
        .map(MemberView::from)
        .collect())
}

/// Searches the directory of the own and trusted organisations.
#[tauri::command]
pub async fn search_directory(
    state: State<'_, AppState>,
    query: String,
) -> Result<Vec<PersonView>> {
    let client = client(&state).await?;
    Ok(client
        .search_directory(query.trim())
        .await?
        .into_iter()
        .map(PersonView::from)
        .collect())
}

/// This user's devices (all of them only while the relay is reachable).
#[tauri::command]
pub async fn devices(state: State<'_, AppState>) -> Result<DevicesView> {
    let client = client(&state).await?;
    let all = client
        .my_devices()
        .await
        .ok()
        .map(|d| d.iter().map(ToString::to_string).collect());
    Ok(DevicesView {
        this_device: client.identity().device_id.to_string(),
        all,
        passphrase: Client::protection(&state.data_dir)? == cascade_core::Protection::Passphrase,
    })
}

/// Changes the passphrase of the device's data: `current` is checked
/// first (a wrong one is `wrong_key` and nothing changes), then every page
/// is encrypted again under `new` (at least 8 characters; the window asks
/// for it twice).
#[tauri::command]
pub async fn change_passphrase(
    state: State<'_, AppState>,
    current: String,
    new: String,
) -> Result<()> {
    let client = client(&state).await?;
    if Client::protection(&state.data_dir)? != cascade_core::Protection::Passphrase {
        return Err(UiError::invalid(
            "this device's data is protected by your computer's keystore: there is no passphrase to change",
        ));
    }
    let current = typed_key(Some(current))?;
    let new = typed_key(Some(new)).map_err(|_| UiError::invalid("type the new passphrase"))?;
    Ok(client.change_key(current, new).await?)
}

/// The safety number this user shares with `user_id` (compare it in person
/// or by phone to rule out a substituted key).
#[tauri::command]
pub async fn safety_number(
    state: State<'_, AppState>,
    group_id: String,
    user_id: String,
) -> Result<String> {
    let client = client(&state).await?;
    Ok(client
        .safety_number(group(&group_id)?, user(&user_id)?)
        .await?)
}

/// The desktop preferences.
#[tauri::command]
pub fn get_settings(state: State<'_, AppState>) -> Settings {
    state.settings.lock().expect("not poisoned").clone()
}

/// Changes the desktop preferences and keeps them.
#[tauri::command]
pub fn set_settings(state: State<'_, AppState>, settings: Settings) -> Result<Settings> {
    let bytes = serde_json::to_vec_pretty(&settings).expect("settings serialise");
    std::fs::write(state.data_dir.join(SETTINGS_FILE), bytes)
        .map_err(|e| UiError::invalid(format!("cannot save the settings: {e}")))?;
    *state.settings.lock().expect("not poisoned") = settings.clone();
    Ok(settings)
}
