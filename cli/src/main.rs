//! `cascade`: admin provisioning and a terminal client.
//!
//! A thin shell over `cascade-core` (the client) and `cascade-admin` (the
//! organisation CA and the relay's admin API): every subcommand parses
//! arguments, calls one of them, and prints the result (as text, or as JSON
//! with `--json`). Exit codes: 0 success, 1 failure, 2 usage error, 3 timed
//! out waiting for the relay.
//!
//! This file is the command line's surface; one module per command group
//! runs them: [`admin`] (`cascade admin …`), [`device`] (enrol, whoami,
//! sync, devices), [`passphrase`] (what unlocks the device's data),
//! [`conversation`] (conversations and their members,
//! send, history, safety numbers), [`message`] (replies, edits, deletes,
//! reactions), [`chat`] (follow, chat), [`directory`].

mod admin;
mod backup;
mod chat;
mod conversation;
mod device;
mod directory;
mod files;
mod link;
mod message;
mod output;
mod passphrase;
mod reads;
mod roles;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use cascade_core::{Client, UserId};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cascade",
    version,
    about = "Cascade: end-to-end encrypted messaging for health and care staff"
)]
struct Cli {
    /// Where this device's keys and history live.
    #[arg(long, env = "CASCADE_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for the relay before giving up (exit code 3).
    #[arg(long, global = true, default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provisioning: an organisation's CA and its admin actions (signed
    /// with the CA key), and registering organisations (with the relay's
    /// admin token).
    Admin {
        /// The relay, e.g. http://127.0.0.1:7171 (needed by the commands
        /// that talk to it).
        #[arg(long, env = "CASCADE_SERVER")]
        server: Option<String>,
        /// The relay operator's admin token (only `create-org` uses it).
        #[arg(long, env = "CASCADE_ADMIN_TOKEN", conflicts_with = "token_file")]
        token: Option<String>,
        /// A file holding the relay operator's admin token (e.g. the
        /// relay's data-dir/admin-token; only `create-org` uses it).
        #[arg(long, env = "CASCADE_ADMIN_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// For a relay whose TLS certificate comes from a private CA: that
        /// CA's certificate (PEM file).
        #[arg(long, env = "CASCADE_SERVER_CA")]
        server_ca: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Enrol this device with the one-time enrolment code from your admin.
    Enrol {
        /// The relay, e.g. https://relay.example.nhs.uk (plain http:// only
        /// for a relay on this machine). Not needed with a cascade://enrol
        /// link, which carries it.
        #[arg(long, env = "CASCADE_SERVER")]
        server: Option<String>,
        /// For a relay whose TLS certificate comes from a private CA: that
        /// CA's certificate (PEM file). Without it, the system's trusted
        /// roots verify the relay.
        #[arg(long, env = "CASCADE_SERVER_CA")]
        server_ca: Option<PathBuf>,
        /// The enrolment code from `cascade admin token`
        /// (XXXX-XXXX-XXXX-XXXX-XXXX-XXXX, any case), or its cascade://enrol
        /// link. (Earlier token.fingerprint codes may start with `-`.)
        #[arg(long, alias = "token", allow_hyphen_values = true)]
        code: String,
        /// A name for this device.
        #[arg(long, default_value = "terminal")]
        device_name: String,
    },
    /// Show this device's identity.
    Whoami,
    /// Change the passphrase of this device's data: asks for the current
    /// one and the new one twice (or reads CASCADE_PASSPHRASE and
    /// CASCADE_NEW_PASSPHRASE).
    Passphrase,
    /// Write an encrypted backup of this device's history to a file; prints
    /// the recovery key that opens it (or uses CASCADE_RECOVERY_KEY).
    Backup {
        /// The file to write.
        file: PathBuf,
    },
    /// Restore a backup made on any of your devices into this one: asks for
    /// its recovery key (or reads CASCADE_RECOVERY_KEY).
    Restore {
        /// The backup file.
        file: PathBuf,
    },
    /// On a new device: show a code to link it to your device that has your
    /// history; it then gets that history.
    Link {
        /// Also show the code as a QR code.
        #[arg(long)]
        qr: bool,
        /// Minutes to wait for the other device.
        #[arg(long, default_value_t = 10)]
        wait_mins: u64,
    },
    /// On the device with your history: send it to your new device, whose
    /// code you type; asks for the digits the new device shows.
    LinkApprove {
        /// The code the new device shows, spaces and all (or its QR
        /// payload).
        #[arg(required = true, num_args = 1..)]
        code: Vec<String>,
    },
    /// Connect, process everything waiting, send what is queued, and exit.
    Sync,
    /// List conversations.
    Conversations,
    /// Create a conversation, optionally with members.
    Create {
        /// Its name.
        name: String,
        /// Users to add (user@org), repeatable.
        #[arg(long = "member", short = 'm')]
        members: Vec<UserId>,
    },
    /// Add users (all their devices) to a conversation.
    Add {
        /// Conversation id or name.
        conversation: String,
        /// Users to add.
        #[arg(required = true)]
        users: Vec<UserId>,
    },
    /// Remove users from a conversation.
    Remove {
        /// Conversation id or name.
        conversation: String,
        /// Users to remove.
        #[arg(required = true)]
        users: Vec<UserId>,
    },
    /// Leave a conversation.
    Leave {
        /// Conversation id or name.
        conversation: String,
    },
    /// List a conversation's members (admins marked).
    Members {
        /// Conversation id or name.
        conversation: String,
    },
    /// Make a member of a conversation an admin, or an admin a member
    /// (admins only; a conversation keeps at least one admin).
    Role {
        /// Conversation id or name.
        conversation: String,
        /// The member.
        user: UserId,
        /// `admin` or `member`.
        #[arg(value_parser = parse_role)]
        role: cascade_core::Role,
    },
    /// Show who administers a conversation and who may do what in it
    /// (add, remove, rename, roles, timer); admins change it with --set.
    Policy {
        /// Conversation id or name.
        conversation: String,
        /// ACTION=ROLE: who may do ACTION (add, remove, rename, roles,
        /// timer) from now on, `admin` or `member`; repeatable.
        #[arg(long)]
        set: Vec<String>,
    },
    /// Make messages sent from now on disappear from every device some
    /// time after they are sent (or `off`), if the conversation's policy
    /// lets you (admins, at first).
    Timer {
        /// Conversation id or name.
        conversation: String,
        /// `off`, or how long: a number and s, m, h, d or w (`8h`, `7d`);
        /// a minute to a year.
        #[arg(value_parser = roles::parse_timer)]
        after: roles::TimerSetting,
    },
    /// Rename a conversation for everyone in it (if its policy lets you).
    Rename {
        /// Conversation id or name.
        conversation: String,
        /// The new name.
        name: String,
    },
    /// Send a message and wait until the relay has accepted it. `@` and a
    /// member's user id (`@bob@south`) mentions them: everyone sees their
    /// certified name, and they are notified even if they muted the
    /// conversation.
    Send {
        /// Conversation id or name.
        conversation: String,
        /// The text (`@<user id>` mentions a member).
        text: String,
        /// Answer this message (its id, or the first 8 or more hex digits
        /// of it, as `history` shows).
        #[arg(long)]
        reply_to: Option<String>,
    },
    /// Change the text of a message you sent; everyone sees it marked
    /// edited (`versions` shows what it said before).
    Edit {
        /// Conversation id or name.
        conversation: String,
        /// The message (its id, or the first 8 or more hex digits).
        message: String,
        /// The new text (`@<user id>` mentions a member).
        text: String,
    },
    /// Delete a message for everyone: yours, or anyone's if you administer
    /// the conversation. Its text is erased from every device.
    Delete {
        /// Conversation id or name.
        conversation: String,
        /// The message (its id, or the first 8 or more hex digits).
        message: String,
    },
    /// React to a message with an emoji (or take it back with --remove).
    React {
        /// Conversation id or name.
        conversation: String,
        /// The message (its id, or the first 8 or more hex digits).
        message: String,
        /// The emoji.
        emoji: String,
        /// Take back this reaction.
        #[arg(long)]
        remove: bool,
    },
    /// Search this device's history (works offline): every word of 3 or
    /// more characters must appear, anywhere in a word, in any case.
    Search {
        /// The words.
        text: String,
        /// Only this conversation (id or name).
        #[arg(long = "in")]
        conversation: Option<String>,
        /// Only messages from this user.
        #[arg(long)]
        from: Option<UserId>,
        /// Only messages from this day on (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Only messages up to and including this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        until: Option<String>,
        /// The most results, newest first (at most 200).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Who received and read a message you sent: "Delivered to 2 of 3,
    /// read by 1", then each person.
    Receipts {
        /// Conversation id or name.
        conversation: String,
        /// The message (its id, or the first 8 or more hex digits).
        message: String,
    },
    /// Show whether others see when you have read their messages, or turn
    /// it on or off. Your own devices always know what you have read.
    ReadReceipts {
        /// `on` or `off`.
        #[arg(value_parser = reads::parse_on_off)]
        set: Option<bool>,
    },
    /// Mute a conversation on this device: its messages raise no
    /// notification (`off` unmutes it).
    Mute {
        /// Conversation id or name.
        conversation: String,
        /// `on` (the default) or `off`.
        #[arg(value_parser = reads::parse_on_off, default_value = "on", action = clap::ArgAction::Set)]
        state: bool,
    },
    /// Send a file (a photo, a PDF): sealed on this device, only its
    /// ciphertext goes to the relay.
    SendFile {
        /// Conversation id or name.
        conversation: String,
        /// The file.
        path: PathBuf,
        /// Text to go with it.
        #[arg(long, default_value = "")]
        caption: String,
        /// Its media type (guessed from the name otherwise).
        #[arg(long = "type")]
        media_type: Option<String>,
    },
    /// Save the file a message carries: fetched, checked and opened.
    Save {
        /// Conversation id or name.
        conversation: String,
        /// The message (its id, or the first 8 or more hex digits).
        message: String,
        /// Where to write the file.
        to: PathBuf,
    },
    /// Tell the conversation's members who are online that you are typing
    /// (they see it for a few seconds; `follow` shows theirs).
    Typing {
        /// Conversation id or name.
        conversation: String,
    },
    /// Show what an edited message said before, oldest first.
    Versions {
        /// Conversation id or name.
        conversation: String,
        /// The message (its id, or the first 8 or more hex digits).
        message: String,
    },
    /// Show a conversation's history.
    History {
        /// Conversation id or name.
        conversation: String,
        /// How many messages.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// List your devices (enrolled, not revoked).
    Devices,
    /// Find colleagues in your own and trusted organisations by name, role
    /// or user id (works from the local cache when the relay is down).
    Directory {
        /// What to look for; empty lists everyone.
        #[arg(default_value = "")]
        query: String,
    },
    /// Show the safety number of you and a colleague in a conversation:
    /// compare it with them in person or by phone.
    SafetyNumber {
        /// Conversation id or name.
        conversation: String,
        /// The colleague.
        user: UserId,
    },
    /// Print messages as they arrive, until interrupted.
    Follow,
    /// Chat interactively in a conversation: lines you type are sent.
    Chat {
        /// Conversation id or name.
        conversation: String,
    },
}

fn parse_role(s: &str) -> std::result::Result<cascade_core::Role, String> {
    s.parse()
        .map_err(|()| format!("{s:?}: the roles are admin and member"))
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("cascade")
}

/// The relay did not answer within `--timeout`: exit code 3.
struct TimedOut;

impl std::fmt::Debug for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out waiting for the relay")
    }
}
impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out waiting for the relay")
    }
}
impl std::error::Error for TimedOut {}

/// Waits until the client is connected, caught up and has sent its outbox,
/// or fails with [`TimedOut`].
async fn synced(client: &Client, timeout: Duration) -> Result<()> {
    if client.sync(timeout).await? {
        Ok(())
    } else {
        Err(TimedOut.into())
    }
}

/// Seconds since the Unix epoch.
fn now_secs() -> i64 {
    cascade_core::client::now_ms() as i64 / 1000
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CASCADE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => {}
        Err(e) => {
            let code = if e.downcast_ref::<TimedOut>().is_some() {
                3
            } else {
                1
            };
            if json {
                // The core's stable code, when the core said why.
                let code = e
                    .chain()
                    .find_map(|c| c.downcast_ref::<cascade_core::CoreError>())
                    .map(|c| c.code());
                println!(
                    "{}",
                    serde_json::json!({ "error": format!("{e:#}"), "code": code })
                );
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::exit(code);
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let data_dir = cli.data_dir.unwrap_or_else(default_data_dir);
    let dir = data_dir.as_path();
    let timeout = Duration::from_secs(cli.timeout);
    let json = cli.json;
    match cli.command {
        Command::Admin {
            server,
            token,
            token_file,
            server_ca,
            command,
        } => {
            let relay = admin::Relay {
                server,
                token,
                token_file,
                server_ca,
            };
            admin::run(relay, command, json).await
        }
        Command::Enrol {
            server,
            server_ca,
            code,
            device_name,
        } => {
            let server_ca = server_ca
                .map(|path| {
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading the relay CA {}", path.display()))
                })
                .transpose()?;
            device::enrol(
                dir,
                server.as_deref().unwrap_or_default(),
                server_ca.as_deref(),
                &code,
                &device_name,
                json,
                timeout,
            )
            .await
        }
        Command::Whoami => with_client(dir, async |c| device::whoami(c, json)).await,
        Command::Passphrase => passphrase::change(dir, json).await,
        Command::Link { qr, wait_mins } => {
            let wait = Duration::from_secs(wait_mins.clamp(1, 60) * 60);
            with_client(dir, async |c| link::link(c, qr, json, wait).await).await
        }
        Command::LinkApprove { code } => {
            with_client(dir, async |c| {
                link::approve(c, &code.join(" "), json, timeout).await
            })
            .await
        }
        Command::Backup { file } => {
            with_client(dir, async |c| backup::backup(c, &file, json).await).await
        }
        Command::Restore { file } => {
            with_client(dir, async |c| {
                backup::restore(c, &file, json, timeout).await
            })
            .await
        }
        Command::Sync => with_client(dir, async |c| device::sync(c, json, timeout).await).await,
        Command::Devices => {
            with_client(dir, async |c| device::devices(c, json, timeout).await).await
        }
        Command::Conversations => {
            with_client(dir, async |c| conversation::list(c, json, timeout).await).await
        }
        Command::Create { name, members } => {
            with_client(dir, async |c| {
                conversation::create(c, &name, members, json, timeout).await
            })
            .await
        }
        Command::Add {
            conversation,
            users,
        } => {
            with_client(dir, async |c| {
                conversation::add(c, &conversation, users, json, timeout).await
            })
            .await
        }
        Command::Remove {
            conversation,
            users,
        } => {
            with_client(dir, async |c| {
                conversation::remove(c, &conversation, users, json, timeout).await
            })
            .await
        }
        Command::Leave { conversation } => {
            with_client(dir, async |c| {
                conversation::leave(c, &conversation, json, timeout).await
            })
            .await
        }
        Command::Members { conversation } => {
            with_client(dir, async |c| {
                conversation::members(c, &conversation, json, timeout).await
            })
            .await
        }
        Command::Role {
            conversation,
            user,
            role,
        } => {
            with_client(dir, async |c| {
                roles::role(c, &conversation, user, role, json, timeout).await
            })
            .await
        }
        Command::Policy { conversation, set } => {
            with_client(dir, async |c| {
                roles::policy(c, &conversation, &set, json, timeout).await
            })
            .await
        }
        Command::Timer {
            conversation,
            after,
        } => {
            with_client(dir, async |c| {
                roles::timer(c, &conversation, after.0, json, timeout).await
            })
            .await
        }
        Command::Rename { conversation, name } => {
            with_client(dir, async |c| {
                roles::rename(c, &conversation, &name, json, timeout).await
            })
            .await
        }
        Command::Send {
            conversation,
            text,
            reply_to,
        } => {
            with_client(dir, async |c| {
                conversation::send(c, &conversation, &text, reply_to.as_deref(), json, timeout)
                    .await
            })
            .await
        }
        Command::Edit {
            conversation,
            message,
            text,
        } => {
            with_client(dir, async |c| {
                message::edit(c, &conversation, &message, &text, json, timeout).await
            })
            .await
        }
        Command::Delete {
            conversation,
            message,
        } => {
            with_client(dir, async |c| {
                message::delete(c, &conversation, &message, json, timeout).await
            })
            .await
        }
        Command::React {
            conversation,
            message,
            emoji,
            remove,
        } => {
            with_client(dir, async |c| {
                message::react(c, &conversation, &message, &emoji, remove, json, timeout).await
            })
            .await
        }
        Command::Search {
            text,
            conversation,
            from,
            since,
            until,
            limit,
        } => {
            with_client(dir, async |c| {
                message::search(
                    c,
                    &text,
                    conversation.as_deref(),
                    from,
                    since.as_deref(),
                    until.as_deref(),
                    limit,
                    json,
                )
                .await
            })
            .await
        }
        Command::Receipts {
            conversation,
            message,
        } => {
            with_client(dir, async |c| {
                reads::receipts(c, &conversation, &message, json, timeout).await
            })
            .await
        }
        Command::Mute {
            conversation,
            state,
        } => {
            with_client(dir, async |c| {
                reads::mute(c, &conversation, state, json, timeout).await
            })
            .await
        }
        Command::SendFile {
            conversation,
            path,
            caption,
            media_type,
        } => {
            with_client(dir, async |c| {
                files::send_file(
                    c,
                    &conversation,
                    &path,
                    &caption,
                    media_type.as_deref(),
                    json,
                    timeout,
                )
                .await
            })
            .await
        }
        Command::Save {
            conversation,
            message,
            to,
        } => {
            with_client(dir, async |c| {
                files::save(c, &conversation, &message, &to, json, timeout).await
            })
            .await
        }
        Command::Typing { conversation } => {
            with_client(dir, async |c| {
                chat::typing(c, &conversation, json, timeout).await
            })
            .await
        }
        Command::ReadReceipts { set } => {
            with_client(dir, async |c| reads::setting(c, set, json).await).await
        }
        Command::Versions {
            conversation,
            message,
        } => {
            with_client(dir, async |c| {
                message::versions(c, &conversation, &message, json, timeout).await
            })
            .await
        }
        Command::History {
            conversation,
            limit,
        } => {
            with_client(dir, async |c| {
                conversation::history(c, &conversation, limit, json, timeout).await
            })
            .await
        }
        Command::SafetyNumber { conversation, user } => {
            with_client(dir, async |c| {
                conversation::safety_number(c, &conversation, user, json, timeout).await
            })
            .await
        }
        Command::Directory { query } => {
            with_client(dir, async |c| {
                directory::search(c, &query, json, timeout).await
            })
            .await
        }
        Command::Follow => with_client(dir, async |c| chat::follow(c, json).await).await,
        Command::Chat { conversation } => {
            with_client(dir, async |c| chat::chat(c, &conversation, timeout).await).await
        }
    }
}

/// Opens the device enrolled in `data_dir`, runs `f` with its client, and
/// shuts the client down (also when `f` fails).
async fn with_client(data_dir: &Path, f: impl AsyncFnOnce(&Client) -> Result<()>) -> Result<()> {
    let key = passphrase::store_key(data_dir, false)?;
    let client = Client::open(data_dir, &key)
        .await
        .with_context(|| format!("opening {}", data_dir.display()))?;
    let result = f(&client).await;
    client.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand's arguments are well formed (clap's own checks,
    /// which otherwise run only when that subcommand is typed).
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
