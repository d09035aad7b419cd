//! The Cascade desktop app: a Tauri 2 window over one cascade-core client.
//!
//! This crate is a thin shell (STYLE.md §4): commands convert ids and call
//! [`cascade_core::Client`]; core events are forwarded to the UI as the
//! Tauri event `cascade`. Messaging rules, storage and crypto live in
//! cascade-core. The one thing decided here is desktop-specific: whether a
//! new message raises an OS notification, and whether it shows content.
//!
//! Usage: `cascade-desktop [--data-dir DIR] [--relay URL] [--geometry WxH+X+Y]`.
//! The data directory (also `CASCADE_DATA_DIR`) holds one enrolled device;
//! without it the platform's app-data directory is used. Two windows for
//! two users are two processes with two data directories; `--geometry`
//! places them side by side (the demo does).

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

#[cfg(test)]
mod command_names;
mod commands;
mod message_commands;
mod room_commands;
mod unlock;
mod views;

use std::path::PathBuf;

use cascade_core::Client;
use tauri::{Emitter, Manager};
use tokio::sync::RwLock;

use views::{Settings, UiEvent};

/// What the app holds while it runs.
pub struct AppState {
    /// The device's data directory.
    data_dir: PathBuf,
    /// The relay address to suggest for enrolment.
    suggested_relay: String,
    /// The client, once the device is enrolled and opened.
    client: RwLock<Option<Client>>,
    /// Whether the device waits for its certificate (from core events).
    certificate_pending: std::sync::atomic::AtomicBool,
    /// The connection state's UI name, from core events.
    connection: std::sync::Mutex<&'static str>,
    /// Desktop preferences, kept in `desktop-settings.json`.
    settings: std::sync::Mutex<Settings>,
    /// What the window asks for before the device's data opens.
    ask: std::sync::Mutex<unlock::Ask>,
}

const SETTINGS_FILE: &str = "desktop-settings.json";
const DEFAULT_RELAY: &str = "http://127.0.0.1:7171";

struct Args {
    data_dir: Option<PathBuf>,
    relay: Option<String>,
    geometry: Option<Geometry>,
}

/// A window's size and position in logical pixels, X11 style `WxH+X+Y`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Geometry {
    width: f64,
    height: f64,
    x: f64,
    y: f64,
}

impl std::str::FromStr for Geometry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("--geometry {s:?}: expected WIDTHxHEIGHT+X+Y, e.g. 960x800+0+0");
        let (size, pos) = s.split_once('+').ok_or_else(bad)?;
        let (w, h) = size.split_once('x').ok_or_else(bad)?;
        let (x, y) = pos.split_once('+').ok_or_else(bad)?;
        let n = |v: &str| v.parse::<u32>().map(f64::from).map_err(|_| bad());
        Ok(Geometry {
            width: n(w)?,
            height: n(h)?,
            x: n(x)?,
            y: n(y)?,
        })
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data_dir: std::env::var_os("CASCADE_DATA_DIR").map(PathBuf::from),
        relay: std::env::var("CASCADE_RELAY").ok(),
        geometry: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data-dir" => {
                args.data_dir = Some(it.next().ok_or("--data-dir needs a directory")?.into())
            }
            "--relay" => args.relay = Some(it.next().ok_or("--relay needs a URL")?),
            "--geometry" => {
                args.geometry = Some(
                    it.next()
                        .ok_or("--geometry needs WIDTHxHEIGHT+X+Y")?
                        .parse()?,
                )
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CASCADE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "cascade-desktop: {e}\nusage: cascade-desktop [--data-dir DIR] [--relay URL]"
            );
            std::process::exit(2);
        }
    };
    tauri::Builder::default()
        .plugin(tauri_plugin_notification::init())
        .invoke_handler(tauri::generate_handler![
            commands::status,
            commands::enrol,
            commands::unlock,
            commands::change_passphrase,
            commands::lock_now,
            commands::input,
            commands::conversations,
            commands::history,
            commands::send_message,
            commands::retry_message,
            message_commands::edit_message,
            message_commands::delete_message,
            message_commands::react,
            message_commands::unreact,
            message_commands::message_versions,
            message_commands::message_receipts,
            message_commands::read_receipts,
            message_commands::set_read_receipts,
            message_commands::search_messages,
            commands::mark_read,
            commands::set_muted,
            commands::set_typing,
            commands::create_conversation,
            commands::add_members,
            commands::remove_member,
            commands::leave_conversation,
            commands::members,
            commands::search_directory,
            commands::devices,
            commands::safety_number,
            room_commands::room_details,
            room_commands::set_role,
            room_commands::set_policy,
            room_commands::set_timer,
            room_commands::rename_conversation,
            commands::get_settings,
            commands::set_settings,
        ])
        .setup(move |app| {
            let data_dir = match args.data_dir.clone() {
                Some(d) => d,
                None => app.path().app_data_dir()?,
            };
            std::fs::create_dir_all(&data_dir)?;
            if let (Some(g), Some(w)) = (args.geometry, app.get_webview_window("main")) {
                w.set_size(tauri::LogicalSize::new(g.width, g.height))?;
                w.set_position(tauri::LogicalPosition::new(g.x, g.y))?;
            }
            let settings = std::fs::read(data_dir.join(SETTINGS_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            app.manage(AppState {
                ask: std::sync::Mutex::new(unlock::ask(&data_dir)),
                data_dir: data_dir.clone(),
                suggested_relay: args.relay.clone().unwrap_or_else(|| DEFAULT_RELAY.into()),
                client: RwLock::new(None),
                certificate_pending: false.into(),
                connection: std::sync::Mutex::new("offline"),
                settings: std::sync::Mutex::new(settings),
            });
            // An enrolled device whose key needs no asking starts
            // connecting at once; otherwise the window asks (`status`).
            let handle = app.handle().clone();
            tauri::async_runtime::block_on(async move {
                if matches!(
                    Client::protection(&data_dir),
                    Ok(cascade_core::Protection::Missing)
                ) {
                    return;
                }
                let key = match unlock::key_for(&data_dir) {
                    Ok(Ok(key)) => key,
                    Ok(Err(_)) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot unlock the device's data");
                        return;
                    }
                };
                match Client::open(&data_dir, &key).await {
                    Ok(client) => start(&handle, client).await,
                    Err(cascade_core::CoreError::NotEnrolled) => {}
                    Err(e) => tracing::error!(error = %e, "cannot open the device's data"),
                }
            });
            Ok(())
        })
        .run(tauri::generate_context!())
        .expect("the Tauri application runs");
}

/// Installs an opened client and forwards its events to the window.
pub(crate) async fn start(app: &tauri::AppHandle, client: Client) {
    let state = app.state::<AppState>();
    let identity = client.identity().clone();
    state.certificate_pending.store(
        identity.certificate.is_none(),
        std::sync::atomic::Ordering::SeqCst,
    );
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.set_title(&format!(
            "Cascade · {} ({})",
            identity.display_name, identity.org_id
        ));
    }
    let mut events = client.events_since_open();
    let lock = client.clone();
    *state.client.write().await = Some(client);
    *state.ask.lock().expect("not poisoned") = unlock::Ask::Nothing;
    let app = app.clone();
    let own_user = identity.user_id.to_string();
    tauri::async_runtime::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        // Messages from others that arrived while catching up: one
        // notification for all of them once online, not one each.
        let mut caught_up = 0usize;
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "UI fell behind the event stream; reloading");
                    let _ = app.emit("cascade", UiEvent::Reload);
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            if matches!(event, cascade_core::Event::Erased) {
                // The key of data that is gone goes from the keystore too.
                unlock::forget(&app.state::<AppState>().data_dir);
            }
            let Some(ui) = UiEvent::from_core(event, &own_user) else {
                continue;
            };
            let state = app.state::<AppState>();
            // While locked the window shows only the lock screen: nothing
            // about conversations reaches it (it loads everything again
            // when unlocked), and notifications say only that something
            // came.
            let locked = lock.is_locked();
            match &ui {
                UiEvent::Connection { state: c } => {
                    *state.connection.lock().expect("not poisoned") = c;
                    if *c == "online" && caught_up > 0 {
                        let n = std::mem::take(&mut caught_up);
                        let app = app.clone();
                        tauri::async_runtime::spawn(async move {
                            notify(&app, Notice::CaughtUp(n)).await
                        });
                    }
                }
                UiEvent::Certificate { pending } => state
                    .certificate_pending
                    .store(*pending, std::sync::atomic::Ordering::SeqCst),
                UiEvent::Message { message } if !message.mine && locked => {
                    if *state.connection.lock().expect("not poisoned") == "online" {
                        let app = app.clone();
                        tauri::async_runtime::spawn(async move {
                            notify(&app, Notice::CaughtUp(1)).await
                        });
                    } else {
                        caught_up += 1;
                    }
                }
                UiEvent::Message { message } if !message.mine => {
                    if *state.connection.lock().expect("not poisoned") == "online" {
                        // Off the event loop: looking up names must not
                        // hold back the events behind it.
                        let (app, message) = (app.clone(), message.clone());
                        tauri::async_runtime::spawn(async move {
                            notify(&app, Notice::Message(&message)).await
                        });
                    } else {
                        caught_up += 1;
                    }
                }
                _ => {}
            }
            if locked && ui.shows_content() {
                continue;
            }
            let _ = app.emit("cascade", ui);
        }
    });
}

/// The title and body of a new-message notification: with the user's
/// setting off (the default) nothing about the message, not even who sent
/// it; with it on, sender, conversation and text.
fn notification_text(
    settings: &Settings,
    message: &views::MessageView,
    sender_name: Option<&str>,
    conversation: Option<&str>,
) -> (String, String) {
    if !settings.notification_content {
        return ("Cascade".to_owned(), "New message".to_owned());
    }
    let sender = sender_name.unwrap_or(&message.sender);
    let title = match conversation {
        Some(c) if !c.is_empty() && c != sender => format!("{sender} · {c}"),
        _ => sender.to_owned(),
    };
    let body = message
        .text
        .clone()
        .unwrap_or_else(|| "New message".to_owned());
    (title, body)
}

/// What a notification is about.
enum Notice<'a> {
    /// One new message, arrived live.
    Message(&'a views::MessageView),
    /// This many new messages arrived while catching up after being offline.
    CaughtUp(usize),
}

/// Raises an OS notification for messages from someone else while the
/// window is not focused; content only if the user's setting allows.
async fn notify(app: &tauri::AppHandle, notice: Notice<'_>) {
    let state = app.state::<AppState>();
    let settings = state.settings.lock().expect("not poisoned").clone();
    if !settings.notifications {
        return;
    }
    let focused = app
        .get_webview_window("main")
        .and_then(|w| w.is_focused().ok())
        .unwrap_or(false);
    if focused {
        return;
    }
    let message = match notice {
        Notice::Message(m) => m,
        Notice::CaughtUp(n) => {
            let body = if n == 1 {
                "1 new message".to_owned()
            } else {
                format!("{n} new messages")
            };
            show(app, "Cascade".to_owned(), body);
            return;
        }
    };
    // A muted conversation raises nothing (the client decides).
    if let (Some(c), Ok(g), Ok(id)) = (
        state.client.read().await.as_ref(),
        message.group_id.parse(),
        message.id.parse(),
    ) {
        let quiet = match c.message(g, id).await {
            Ok(m) => !c.notifies(m).await.unwrap_or(true),
            Err(_) => false,
        };
        if quiet {
            return;
        }
    }
    // Names only when they will be shown: the conversation's, and the
    // sender's as their organisation certified it.
    let (mut conversation, mut sender) = (None, None);
    if settings.notification_content {
        if let (Some(c), Ok(g)) = (state.client.read().await.as_ref(), message.group_id.parse()) {
            conversation = c.conversation(g).await.map(|c| c.name).ok();
            sender = c.members(g).await.ok().and_then(|ms| {
                ms.into_iter()
                    .find(|m| m.user_id.as_str() == message.sender)
                    .map(|m| m.display_name)
            });
        }
    }
    let (title, body) = notification_text(
        &settings,
        message,
        sender.as_deref(),
        conversation.as_deref(),
    );
    show(app, title, body);
}

fn show(app: &tauri::AppHandle, title: String, body: String) {
    use tauri_plugin_notification::NotificationExt;
    if let Err(e) = app.notification().builder().title(title).body(body).show() {
        tracing::debug!(error = %e, "no desktop notification");
    }
}

#[cfg(test)]
mod tests {
    use crate::views::{MessageView, Settings};

    fn message() -> MessageView {
        MessageView {
            id: "00".into(),
            group_id: "00".into(),
            sender: "bob@east-ambulance".into(),
            sender_device: "00".into(),
            mine: false,
            sent_at: 0,
            seq: Some(1),
            text: Some("Patient in bay 3 deteriorating".into()),
            kind: "text".into(),
            state: "received",
            reply_to: None,
            edited_at: None,
            deleted_by: None,
            reactions: Vec::new(),
            expires_at: None,
            read_by: 0,
            segments: Vec::new(),
            mentions_me: false,
            typed_text: None,
        }
    }

    #[test]
    fn geometry_parses_x11_style() {
        let g: super::Geometry = "960x800+960+40".parse().expect("valid");
        assert_eq!(
            g,
            super::Geometry {
                width: 960.0,
                height: 800.0,
                x: 960.0,
                y: 40.0
            }
        );
        for bad in ["960x800", "960+0+0", "ax800+0+0", "960x800+0", ""] {
            assert!(bad.parse::<super::Geometry>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn notifications_hide_content_unless_the_user_allows_it() {
        let hidden = Settings::default();
        let (title, body) =
            super::notification_text(&hidden, &message(), Some("Bob Jones"), Some("Ward 7"));
        assert_eq!((title.as_str(), body.as_str()), ("Cascade", "New message"));

        let shown = Settings {
            notifications: true,
            notification_content: true,
        };
        let (title, body) =
            super::notification_text(&shown, &message(), Some("Bob Jones"), Some("Ward 7"));
        assert_eq!(title, "Bob Jones · Ward 7");
        assert_eq!(body, "Patient in bay 3 deteriorating");
        // A 1:1 chat named after the sender says the name once; an unknown
        // sender (left since) is shown by user id.
        let (title, _) =
            super::notification_text(&shown, &message(), Some("Bob Jones"), Some("Bob Jones"));
        assert_eq!(title, "Bob Jones");
        let (title, _) = super::notification_text(&shown, &message(), None, None);
        assert_eq!(title, "bob@east-ambulance");
    }

    /// The window may call exactly the app's commands: each has its
    /// `allow-…` permission in the capability, and nothing else is allowed
    /// beyond listening to events.
    #[test]
    fn the_capability_allows_exactly_the_app_commands() {
        let cap: serde_json::Value =
            serde_json::from_str(include_str!("../capabilities/main.json")).expect("JSON");
        let mut allowed: Vec<String> = cap["permissions"]
            .as_array()
            .expect("permissions")
            .iter()
            .map(|p| p.as_str().expect("string").to_owned())
            .collect();
        allowed.sort();
        let mut want: Vec<String> = crate::command_names::COMMANDS
            .iter()
            .map(|c| format!("allow-{}", c.replace('_', "-")))
            .chain([
                "core:event:allow-listen".into(),
                "core:event:allow-unlisten".into(),
            ])
            .collect();
        want.sort();
        assert_eq!(allowed, want);
    }
}
