//! `cascade`: admin provisioning and a terminal client.
//!
//! A thin shell over `cascade-core`: every subcommand parses arguments, calls
//! the core, and prints the result (as text, or as JSON with `--json`). Exit
//! codes: 0 success, 1 failure, 2 usage error, 3 timed out waiting for the
//! relay.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cascade_admin::{AdminClient, CaDir};
use cascade_core::{Client, Conversation, Event, GroupId, Message, OrgId, UserId};
use clap::{Parser, Subcommand};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

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
    /// Provisioning, with the relay's admin token.
    Admin {
        /// The relay, e.g. http://127.0.0.1:7171 (needed by the commands
        /// that talk to it).
        #[arg(long, env = "CASCADE_SERVER")]
        server: Option<String>,
        /// The admin token.
        #[arg(long, env = "CASCADE_ADMIN_TOKEN", conflicts_with = "token_file")]
        token: Option<String>,
        /// A file holding the admin token (e.g. the relay's data-dir/admin-token).
        #[arg(long, env = "CASCADE_ADMIN_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Enrol this device with the one-time enrolment code from your admin.
    Enrol {
        /// The relay, e.g. http://127.0.0.1:7171.
        #[arg(long, env = "CASCADE_SERVER")]
        server: String,
        /// The enrolment code (token.fingerprint) from `cascade admin token`.
        #[arg(long, alias = "token")]
        code: String,
        /// A name for this device.
        #[arg(long, default_value = "terminal")]
        device_name: String,
    },
    /// Show this device's identity.
    Whoami,
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
    /// List a conversation's members.
    Members {
        /// Conversation id or name.
        conversation: String,
    },
    /// Send a message and wait until the relay has accepted it.
    Send {
        /// Conversation id or name.
        conversation: String,
        /// The text.
        text: String,
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

#[derive(Subcommand)]
enum OrgCommand {
    /// Create the organisation's CA key and self-signed certificate on this
    /// machine. The key never goes to the relay.
    Init {
        /// Organisation id (a-z, 0-9, '-').
        #[arg(long)]
        org: OrgId,
        /// Its name.
        #[arg(long)]
        name: String,
        /// Directory for ca-key.pem (owner-only) and ca-cert.pem.
        #[arg(long)]
        dir: PathBuf,
        /// Validity of the CA certificate in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
    /// Print the SHA-256 fingerprint of a CA certificate, to compare out of
    /// band before trusting a partner organisation.
    Fingerprint {
        /// The certificate (PEM).
        cert: PathBuf,
    },
}

#[derive(Subcommand)]
enum TrustCommand {
    /// Pin a partner organisation's CA, after confirming its fingerprint
    /// with the partner's admins out of band; publishes the signed trust
    /// list.
    Add {
        /// Our CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The partner's CA certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// The fingerprint confirmed out of band.
        #[arg(long)]
        fingerprint: String,
    },
    /// Unpin a partner organisation; publishes the signed trust list.
    Remove {
        /// Our CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The partner organisation.
        org: OrgId,
    },
    /// List the pinned partners.
    List {
        /// Our CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// The organisation's certificate authority (runs offline).
    #[command(subcommand)]
    Org(OrgCommand),
    /// Register an organisation on the relay with its CA certificate.
    CreateOrg {
        /// Organisation id (a-z, 0-9, '-').
        org: OrgId,
        /// Its name.
        #[arg(long)]
        name: String,
        /// The CA directory made by `admin org init`.
        #[arg(long)]
        ca_dir: PathBuf,
    },
    /// Issue certificates to every device of the organisation that enrolled
    /// and waits for one (with the names and roles in the directory), and
    /// append them to the CA directory's audit log.
    Issue {
        /// The CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Pin or unpin partner organisations.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Rotate the organisation's CA: make a new one in NEW_DIR, vouched for
    /// by the current one, and register it with the relay. Then re-issue
    /// every device with `issue --ca-dir NEW_DIR` and give partners the new
    /// fingerprint to pin.
    RotateCa {
        /// The current CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Where to create the new CA directory.
        #[arg(long)]
        new_dir: PathBuf,
        /// The organisation's name for the new CA certificate.
        #[arg(long)]
        name: String,
    },
    /// Revoke a lost or compromised device, or every device of a user: the
    /// relay refuses them at once and every client removes them from its
    /// conversations.
    Revoke {
        /// The CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// A device id.
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        device: Option<cascade_core::DeviceId>,
        /// A user: all of their devices.
        #[arg(long)]
        user: Option<UserId>,
    },
    /// Create a user.
    AddUser {
        /// user@org.
        user: UserId,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Role.
        #[arg(long, default_value = "Staff")]
        role: String,
    },
    /// Issue a one-time enrolment code for one device of a user: the token
    /// and the organisation CA's fingerprint, for the user to type in.
    Token {
        /// user@org.
        user: UserId,
        /// The CA directory (for the fingerprint).
        #[arg(long)]
        ca_dir: PathBuf,
        /// Lifetime in seconds.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// List an organisation's users.
    Users {
        /// Organisation id.
        org: OrgId,
    },
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("cascade")
}

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
                println!("{}", json!({ "error": format!("{e:#}") }));
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::exit(code);
        }
    }
}

fn admin_token(token: Option<String>, file: Option<PathBuf>) -> Result<String> {
    match (token, file) {
        (Some(t), _) => Ok(t),
        (None, Some(f)) => Ok(std::fs::read_to_string(&f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_owned()),
        (None, None) => bail!("give the admin token with --token or --token-file"),
    }
}

async fn run(cli: Cli) -> Result<()> {
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let timeout = Duration::from_secs(cli.timeout);
    let json = cli.json;
    match cli.command {
        Command::Admin {
            server,
            token,
            token_file,
            command,
        } => {
            if let AdminCommand::Org(org) = command {
                return org_command(org, json);
            }
            let server = server.context("give the relay with --server or CASCADE_SERVER")?;
            let admin = AdminClient::new(&server, &admin_token(token, token_file)?);
            admin_command(&admin, command, json).await
        }
        Command::Enrol {
            server,
            code,
            device_name,
        } => {
            let id = Client::enrol(&data_dir, &server, &code, &device_name).await?;
            // Connect once so the device's KeyPackages are on the relay and
            // colleagues can add it to conversations straight away.
            let client = Client::open(&data_dir).await?;
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
        command => user_command(&data_dir, command, json, timeout).await,
    }
}

fn org_command(command: OrgCommand, json: bool) -> Result<()> {
    use cascade_admin::OrgCa;
    use cascade_core::identity::{pem_to_der, TrustAnchor};
    match command {
        OrgCommand::Init {
            org,
            name,
            dir,
            days,
        } => {
            let key_path = dir.join("ca-key.pem");
            let cert_path = dir.join("ca-cert.pem");
            if key_path.exists() {
                bail!(
                    "{} exists already; refusing to replace a CA key",
                    key_path.display()
                );
            }
            let now = cascade_core::client::now_ms() as i64 / 1000;
            let ca = OrgCa::generate(&org, &name, now, days)?;
            CaDir::init(&dir, &ca)?;
            let fp = ca.anchor().fingerprint();
            say(
                json,
                json!({ "org_id": org, "key": key_path, "cert": cert_path, "fingerprint": fp }),
                || {
                    format!(
                        "Created the CA of {org}.\n  key (keep it secret, owner-only): {}\n  certificate: {}\n  fingerprint: {fp}",
                        key_path.display(),
                        cert_path.display()
                    )
                },
            );
        }
        OrgCommand::Fingerprint { cert } => {
            let pem = std::fs::read_to_string(&cert)
                .with_context(|| format!("reading {}", cert.display()))?;
            let anchor = TrustAnchor::from_der(&pem_to_der(&pem)?)?;
            let fp = anchor.fingerprint();
            say(
                json,
                json!({ "org_id": anchor.org, "fingerprint": fp }),
                || format!("{}  {fp}", anchor.org),
            );
        }
    }
    Ok(())
}

async fn admin_command(admin: &AdminClient, command: AdminCommand, json: bool) -> Result<()> {
    match command {
        AdminCommand::Org(_) => unreachable!("runs offline, handled before"),
        AdminCommand::RotateCa { .. } => unreachable!("handled with the relay"),
        AdminCommand::CreateOrg { org, name, ca_dir } => {
            let ca = CaDir::new(ca_dir).ca()?;
            if ca.org() != &org {
                bail!("the CA in that directory is {}'s, not {org}'s", ca.org());
            }
            admin.create_org(&org, &name, &ca.cert_pem()).await?;
            say(json, json!({ "org_id": org }), || {
                format!("Created organisation {org}")
            });
        }
        AdminCommand::AddUser { user, name, role } => {
            admin.create_user(&user, &name, &role).await?;
            say(json, json!({ "user_id": user }), || {
                format!("Created user {user}")
            });
        }
        AdminCommand::Token { user, ca_dir, ttl } => {
            let ca = CaDir::new(ca_dir).ca()?;
            let t = admin.issue_enrolment_token(&user, ttl).await?;
            let code = format!(
                "{}.{}",
                t.token,
                cascade_core::identity::fingerprint_hex(ca.cert_der())
            );
            say(
                json,
                json!({ "code": code, "user_id": t.user_id, "expires_at": t.expires_at }),
                || code.clone(),
            );
        }
        AdminCommand::Issue { ca_dir, days } => {
            let dir = CaDir::new(ca_dir);
            let ca = dir.ca()?;
            let now = cascade_core::client::now_ms() as i64 / 1000;
            let issued = admin.issue_pending(&ca, now, days).await?;
            dir.audit(&issued)?;
            if json {
                println!("{}", serde_json::to_string(&issued)?);
            } else if issued.is_empty() {
                println!("No device is waiting for a certificate.");
            } else {
                for i in issued {
                    println!(
                        "Issued {} ({}, {}) device {} \"{}\"  {}",
                        i.user, i.display_name, i.role, i.device, i.device_name, i.fingerprint
                    );
                }
            }
        }
        AdminCommand::Revoke {
            ca_dir,
            device,
            user,
        } => {
            let dir = CaDir::new(ca_dir);
            let devices = match (device, user) {
                (Some(d), _) => vec![d],
                (None, Some(u)) => {
                    let entry = admin
                        .list_users(&u.org())
                        .await?
                        .into_iter()
                        .find(|e| e.user_id == u)
                        .ok_or_else(|| anyhow!("no user {u}"))?;
                    entry.devices
                }
                (None, None) => bail!("give --device or --user"),
            };
            let now = cascade_core::client::now_ms() as i64 / 1000;
            let serial = dir.revoke(admin, &devices, now).await?;
            say(
                json,
                json!({ "revoked": devices, "serial": serial }),
                || {
                    format!(
                        "Revoked {} device(s) (revocation list {serial} published)",
                        devices.len()
                    )
                },
            );
        }
        AdminCommand::Trust(cmd) => {
            let now = cascade_core::client::now_ms() as i64 / 1000;
            match cmd {
                TrustCommand::Add {
                    ca_dir,
                    cert,
                    fingerprint,
                } => {
                    let dir = CaDir::new(ca_dir);
                    let pem = std::fs::read_to_string(&cert)
                        .with_context(|| format!("reading {}", cert.display()))?;
                    let org = dir.add_partner(&pem, &fingerprint)?;
                    let serial = dir.publish_trust_list(admin, now).await?;
                    say(json, json!({ "trusted": org, "serial": serial }), || {
                        format!("Now trusting {org} (trust list {serial} published)")
                    });
                }
                TrustCommand::Remove { ca_dir, org } => {
                    let dir = CaDir::new(ca_dir);
                    if !dir.remove_partner(&org)? {
                        bail!("{org} is not pinned");
                    }
                    let serial = dir.publish_trust_list(admin, now).await?;
                    say(json, json!({ "removed": org, "serial": serial }), || {
                        format!("No longer trusting {org} (trust list {serial} published)")
                    });
                }
                TrustCommand::List { ca_dir } => {
                    let partners = CaDir::new(ca_dir).partners()?;
                    if json {
                        let v: Vec<_> = partners
                            .iter()
                            .map(|a| json!({ "org_id": a.org, "fingerprint": a.fingerprint() }))
                            .collect();
                        println!("{}", serde_json::Value::Array(v));
                    } else {
                        for a in partners {
                            println!("{}  {}", a.org, a.fingerprint());
                        }
                    }
                }
            }
        }
        AdminCommand::Users { org } => {
            let users = admin.list_users(&org).await?;
            if json {
                println!("{}", serde_json::to_string(&users)?);
            } else {
                for u in users {
                    println!(
                        "{}\t{}\t{}\t{} device(s)",
                        u.user_id,
                        u.display_name,
                        u.role,
                        u.devices.len()
                    );
                }
            }
        }
    }
    Ok(())
}

fn say(json: bool, value: serde_json::Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

async fn resolve(client: &Client, reference: &str) -> Result<GroupId> {
    if let Ok(id) = reference.parse::<GroupId>() {
        return Ok(id);
    }
    let convs = client.conversations().await?;
    let matches: Vec<&Conversation> = convs.iter().filter(|c| c.name == reference).collect();
    match matches.as_slice() {
        [one] => Ok(one.group_id),
        [] => bail!("no conversation named {reference:?}"),
        _ => bail!("several conversations are named {reference:?}; use the id"),
    }
}

async fn synced(client: &Client, timeout: Duration) -> Result<()> {
    if client.sync(timeout).await? {
        Ok(())
    } else {
        Err(TimedOut.into())
    }
}

fn print_message(json: bool, m: &Message) {
    if json {
        println!("{}", serde_json::to_string(m).expect("messages serialise"));
    } else {
        let text = m
            .text
            .clone()
            .unwrap_or_else(|| format!("[unsupported message: {}]", m.kind));
        println!(
            "{} [{}] {}: {}",
            m.group_id,
            format_state(m),
            m.sender,
            text
        );
    }
}

/// One line of the interactive chat: who and what, without ids.
fn print_chat_line(m: &Message) {
    let text = m
        .text
        .clone()
        .unwrap_or_else(|| format!("[unsupported message: {}]", m.kind));
    let mark = match m.state {
        cascade_core::DeliveryState::Failed => " [not delivered]",
        cascade_core::DeliveryState::Sending => " [sending]",
        _ => "",
    };
    println!("{}: {text}{mark}", m.sender);
}

fn format_state(m: &Message) -> &'static str {
    match m.state {
        cascade_core::DeliveryState::Failed => "FAILED",
        other => other.as_str(),
    }
}

async fn user_command(
    data_dir: &std::path::Path,
    command: Command,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    let client = Client::open(data_dir)
        .await
        .with_context(|| format!("opening {}", data_dir.display()))?;
    let result = user_command_inner(&client, command, json, timeout).await;
    client.shutdown().await;
    result
}

async fn user_command_inner(
    client: &Client,
    command: Command,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    match command {
        Command::Whoami => {
            let id = client.identity();
            if json {
                println!("{}", serde_json::to_string(id)?);
            } else {
                println!(
                    "{} ({}, {}) device {} on {}",
                    id.display_name, id.user_id, id.role, id.device_id, id.server_url
                );
            }
        }
        Command::Sync => {
            synced(client, timeout).await?;
            say(json, json!({ "synced": true }), || "Synced".into());
        }
        Command::Conversations => {
            synced(client, timeout).await?;
            let convs = client.conversations().await?;
            if json {
                println!("{}", serde_json::to_string(&convs)?);
            } else {
                for c in convs {
                    println!(
                        "{}\t{}\t{:?}\tepoch {}\t{} unread",
                        c.group_id, c.name, c.state, c.epoch, c.unread
                    );
                }
            }
        }
        Command::Create { name, members } => {
            synced(client, timeout).await?;
            let group = client.create_group(&name).await?;
            if !members.is_empty() {
                client.add_members(group, members.clone()).await?;
            }
            synced(client, timeout).await?;
            let got = client.members(group).await?;
            let missing: Vec<&UserId> = members
                .iter()
                .filter(|u| !got.iter().any(|m| &m.user_id == *u))
                .collect();
            if !missing.is_empty() {
                bail!(
                    "conversation {group} created, but these users could not be added: {missing:?}"
                );
            }
            say(json, json!({ "group_id": group, "name": name }), || {
                format!("{group}")
            });
        }
        Command::Add {
            conversation,
            users,
        } => {
            synced(client, timeout).await?;
            let group = resolve(client, &conversation).await?;
            client.add_members(group, users.clone()).await?;
            synced(client, timeout).await?;
            let got = client.members(group).await?;
            let missing: Vec<&UserId> = users
                .iter()
                .filter(|u| !got.iter().any(|m| &m.user_id == *u))
                .collect();
            if !missing.is_empty() {
                bail!("could not add {missing:?}");
            }
            say(json, json!({ "group_id": group, "added": users }), || {
                "Added".into()
            });
        }
        Command::Remove {
            conversation,
            users,
        } => {
            synced(client, timeout).await?;
            let group = resolve(client, &conversation).await?;
            client.remove_members(group, users.clone()).await?;
            synced(client, timeout).await?;
            say(json, json!({ "group_id": group, "removed": users }), || {
                "Removed".into()
            });
        }
        Command::Leave { conversation } => {
            synced(client, timeout).await?;
            let group = resolve(client, &conversation).await?;
            client.leave(group).await?;
            synced(client, timeout).await?;
            say(json, json!({ "group_id": group, "left": true }), || {
                "Leave requested".into()
            });
        }
        Command::Members { conversation } => {
            synced(client, timeout).await?;
            let group = resolve(client, &conversation).await?;
            let members = client.members(group).await?;
            if json {
                println!("{}", serde_json::to_string(&members)?);
            } else {
                for m in members {
                    println!(
                        "{}\t{}\t{}\t[{}]\tdevice {}{}",
                        m.display_name,
                        m.role,
                        m.user_id,
                        m.org_id,
                        m.device_id,
                        if m.is_self { "\t(this device)" } else { "" }
                    );
                }
            }
        }
        Command::Send { conversation, text } => {
            synced(client, timeout).await?;
            let group = resolve(client, &conversation).await?;
            let id = client.send_text(group, &text).await?;
            synced(client, timeout).await?;
            let state = client
                .history(group, None, 200)
                .await?
                .into_iter()
                .find(|m| m.id == id)
                .map(|m| m.state)
                .ok_or_else(|| anyhow!("sent message not in history"))?;
            if !matches!(
                state,
                cascade_core::DeliveryState::Sent | cascade_core::DeliveryState::Delivered
            ) {
                bail!("the relay did not accept the message ({state:?})");
            }
            say(
                json,
                json!({ "message_id": id.to_string(), "state": state }),
                || format!("Sent {id}"),
            );
        }
        Command::History {
            conversation,
            limit,
        } => {
            synced(client, timeout).await?;
            let group = resolve(client, &conversation).await?;
            let msgs = client.history(group, None, limit).await?;
            client.mark_read(group).await?;
            if json {
                println!("{}", serde_json::to_string(&msgs)?);
            } else {
                for m in msgs {
                    print_message(false, &m);
                }
            }
        }
        Command::Devices => {
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
        }
        Command::Directory { query } => {
            // Best effort: search the relay if it answers in time, the local
            // cache otherwise.
            let _ = client.sync(timeout.min(Duration::from_secs(5))).await;
            let people = client.search_directory(&query).await?;
            if json {
                println!("{}", serde_json::to_string(&people)?);
            } else {
                for p in people {
                    println!(
                        "{}\t{}\t{}\t[{}]",
                        p.display_name, p.role, p.user_id, p.org_id
                    );
                }
            }
        }
        Command::SafetyNumber { conversation, user } => {
            synced(client, timeout).await?;
            let group = resolve(client, &conversation).await?;
            let number = client.safety_number(group, user.clone()).await?;
            say(
                json,
                json!({ "user_id": user, "safety_number": number }),
                || number.clone(),
            );
        }
        Command::Follow => {
            let mut events = client.subscribe();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    ev = events.recv() => match ev {
                        Ok(Event::Message(m)) => print_message(json, &m),
                        Ok(Event::Connection(state)) if !json => eprintln!("[{state:?}]"),
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
                std::io::stdout().flush()?;
            }
        }
        Command::Chat { conversation } => {
            let mut events = client.subscribe();
            synced(client, timeout).await?;
            let group = resolve(client, &conversation).await?;
            let conv = client.conversation(group).await?;
            println!(
                "— {} — type a message and press Enter; Ctrl-D to quit",
                conv.name
            );
            for m in client.history(group, None, 20).await? {
                print_chat_line(&m);
            }
            client.mark_read(group).await?;
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            loop {
                tokio::select! {
                    line = lines.next_line() => match line? {
                        None => break,
                        Some(l) if l.trim().is_empty() => {}
                        Some(l) => { client.send_text(group, &l).await?; }
                    },
                    ev = events.recv() => match ev {
                        Ok(Event::Message(m)) if m.group_id == group && m.state == cascade_core::DeliveryState::Received => print_chat_line(&m),
                        Ok(Event::DeliveryState { state: cascade_core::DeliveryState::Failed, .. }) => eprintln!("[a message could not be delivered]"),
                        Ok(Event::Connection(state)) => eprintln!("[{state:?}]"),
                        _ => {}
                    }
                }
                std::io::stdout().flush()?;
            }
            synced(client, timeout).await?;
        }
        Command::Admin { .. } | Command::Enrol { .. } => {
            unreachable!("handled before opening a client")
        }
    }
    Ok(())
}
