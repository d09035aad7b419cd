//! `cascade admin …`: the organisation's CA and the relay's admin API.
//!
//! `org init` and `org fingerprint` work offline; every other command needs
//! the relay's address ([`Relay`]). `create-org` is the relay operator's
//! and takes the relay's admin token; every other command acts for an
//! organisation and signs its requests with the key in its `--ca-dir`:
//! the CA's, or an appointed admin's (`admin key init`, `admin appoint`),
//! which does everything that does not sign with the CA key.
//! Each command is one call into `cascade-admin` ([`CaDir`]) and prints
//! its result.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cascade_admin::{AdminClient, CaDir, WipeState};
use cascade_core::identity::{
    pem_to_der, DevicePolicy, TrustAnchor, MAX_RETENTION_DAYS, MIN_RETENTION_DAYS,
};
use cascade_core::{OrgId, UserId};
use clap::Subcommand;
use serde_json::json;

use crate::now_secs;
use crate::output::say;

#[derive(Subcommand)]
pub enum OrgCommand {
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
pub enum TrustCommand {
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
pub enum KeyCommand {
    /// Make your own admin key (offline), to be appointed by your
    /// organisation's CA holder with `admin appoint`. The directory then
    /// serves as `--ca-dir` for the commands that do not sign with the CA.
    Init {
        /// Directory for admin-key.pem (owner-only), admin-id and a copy
        /// of the CA certificate.
        #[arg(long)]
        dir: PathBuf,
        /// Your organisation's CA certificate (PEM).
        #[arg(long)]
        ca_cert: PathBuf,
        /// Your admin id (a-z, 0-9, '-'), as the audit log will name you.
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// The organisation's certificate authority (runs offline).
    #[command(subcommand)]
    Org(OrgCommand),
    /// Your own admin key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Appoint an admin: their own key (from `admin key init`) then signs
    /// their requests, so the CA key can stay offline. Also renews an
    /// appointment or replaces its key.
    Appoint {
        /// The CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The admin's id.
        #[arg(long)]
        id: String,
        /// The person's name.
        #[arg(long)]
        name: String,
        /// Their public key, as `admin key init` printed it (64 hex).
        #[arg(long)]
        key: String,
        /// How long the appointment holds, in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Dismiss an appointed admin: the relay refuses their key at once.
    Dismiss {
        /// The CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The admin's id.
        #[arg(long)]
        id: String,
    },
    /// List the appointed admins, as the relay holds them (checked against
    /// the CA certificate).
    Admins {
        /// The CA directory, or an appointed admin's directory.
        #[arg(long)]
        ca_dir: PathBuf,
    },
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
        /// The CA directory. With an appointed admin's directory the relay
        /// refuses the devices at once, and the CA's directory must then
        /// publish the list that makes clients remove them.
        #[arg(long)]
        ca_dir: PathBuf,
        /// A device id.
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        device: Option<cascade_core::DeviceId>,
        /// A user: all of their devices.
        #[arg(long)]
        user: Option<UserId>,
    },
    /// Wipe a lost device: order it, signed by the CA, to erase every
    /// message and key it holds, and revoke it. The device carries the
    /// order out when it next connects and confirms; see `wipes`.
    Wipe {
        /// The CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The device id.
        #[arg(long)]
        device: cascade_core::DeviceId,
    },
    /// List the organisation's wipe orders and whether each device
    /// confirmed its erasure (checked against the key the CA certified).
    Wipes {
        /// The CA directory, or an appointed admin's directory.
        #[arg(long)]
        ca_dir: PathBuf,
    },
    /// Create a user.
    AddUser {
        /// user@org.
        user: UserId,
        /// The CA directory of the user's organisation, or an appointed
        /// admin's directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Role.
        #[arg(long, default_value = "Staff")]
        role: String,
    },
    /// Issue a one-time enrolment code for one device of a user: 24
    /// letters and digits to read out (the token and the start of the
    /// organisation CA's fingerprint).
    Token {
        /// user@org.
        user: UserId,
        /// The CA directory, or an appointed admin's directory (for the
        /// fingerprint).
        #[arg(long)]
        ca_dir: PathBuf,
        /// Lifetime in seconds [default: 3 days].
        #[arg(long)]
        ttl: Option<u64>,
        /// Also print the code as a QR code (and the `cascade://enrol` link
        /// it holds), for a device with a camera.
        #[arg(long)]
        qr: bool,
    },
    /// List the organisation's devices that wait for a certificate (new,
    /// or due for renewal), to check before `issue`.
    Pending {
        /// The CA directory of the organisation, or an appointed admin's
        /// directory.
        #[arg(long)]
        ca_dir: PathBuf,
    },
    /// List the organisation's users.
    Users {
        /// The CA directory of the organisation, or an appointed admin's
        /// directory.
        #[arg(long)]
        ca_dir: PathBuf,
    },
    /// Show the organisation's device policy, or set it and publish it to
    /// every device in a new trust list.
    Policy {
        /// The CA directory of the organisation.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Lock the app after this many minutes without input (1 to 480).
        #[arg(long)]
        idle_lock_minutes: Option<u32>,
        /// Delete messages from the organisation's devices once they are
        /// this many days old (1 to 3650), in every conversation; `off`
        /// keeps them until someone deletes them.
        #[arg(long, value_parser = parse_retention)]
        max_retention_days: Option<Retention>,
    },
}

/// `--max-retention-days`: a number of days, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct Retention(Option<u32>);

fn parse_retention(s: &str) -> Result<Retention, String> {
    if s == "off" {
        return Ok(Retention(None));
    }
    s.parse::<u32>()
        .ok()
        .filter(|d| (MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(d))
        .map(|d| Retention(Some(d)))
        .ok_or_else(|| {
            format!(
                "{s:?}: a number of days from {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}, or off"
            )
        })
}

/// What a device policy says, in words.
fn describe(policy: &DevicePolicy, set: bool) -> String {
    let minutes = policy.idle_lock_secs / 60;
    let default = if set { "" } else { " (the default)" };
    let kept = match policy.max_retention_days {
        Some(1) => "Messages are deleted from devices after 1 day".to_owned(),
        Some(d) => format!("Messages are deleted from devices after {d} days"),
        None => "Messages are kept on devices until deleted".to_owned(),
    };
    format!("Devices lock after {minutes} minutes without input{default}\n{kept}")
}

/// Where the relay is and how to authenticate to it, as given to
/// `cascade admin`.
pub struct Relay {
    /// `--server` / `CASCADE_SERVER`.
    pub server: Option<String>,
    /// `--token` / `CASCADE_ADMIN_TOKEN`.
    pub token: Option<String>,
    /// `--token-file` / `CASCADE_ADMIN_TOKEN_FILE`.
    pub token_file: Option<PathBuf>,
    /// `--server-ca` / `CASCADE_SERVER_CA`.
    pub server_ca: Option<PathBuf>,
}

impl Relay {
    /// The admin API client with the relay operator's token; fails if the
    /// address or the token is missing.
    fn operator(self) -> Result<AdminClient> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim()
                .to_owned(),
            (None, None) => bail!("give the relay's admin token with --token or --token-file"),
        };
        let (server, server_ca) = self.address()?;
        Ok(AdminClient::pinned(&server, server_ca.as_deref(), &token)?)
    }

    /// The admin API client for an organisation's admins, who sign each
    /// request with their CA key (the `--ca-dir` of the command); the
    /// relay's token is neither needed nor sent.
    fn connect(self) -> Result<AdminClient> {
        let (server, server_ca) = self.address()?;
        Ok(AdminClient::without_token(&server, server_ca.as_deref())?)
    }

    fn address(self) -> Result<(String, Option<String>)> {
        let server = self
            .server
            .context("give the relay with --server or CASCADE_SERVER")?;
        let server_ca = self
            .server_ca
            .map(|path| {
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the relay CA {}", path.display()))
            })
            .transpose()?;
        Ok((server, server_ca))
    }
}

/// Runs a `cascade admin` command.
pub async fn run(relay: Relay, command: AdminCommand, json: bool) -> Result<()> {
    match command {
        AdminCommand::Org(cmd) => org(cmd, json),
        AdminCommand::Key(KeyCommand::Init { dir, ca_cert, id }) => {
            let pem = std::fs::read_to_string(&ca_cert)
                .with_context(|| format!("reading {}", ca_cert.display()))?;
            let (dir, key) = CaDir::create_admin(dir, &pem, &id)?;
            let public = hex::encode(key.public_key());
            let org = dir.anchor()?.org;
            say(
                json,
                json!({ "org_id": org, "id": id, "key": public, "dir": dir.path() }),
                || {
                    format!(
                        "Created the admin key of {id} ({org}) in {}.\nGive this public key to your CA holder, who appoints you with:\n  cascade admin appoint --ca-dir CA_DIR --id {id} --name \"YOUR NAME\" --key {public}",
                        dir.path().display()
                    )
                },
            );
            Ok(())
        }
        AdminCommand::Appoint {
            ca_dir,
            id,
            name,
            key,
            days,
        } => {
            let key = hex::decode(key.trim())
                .ok()
                .filter(|k| k.len() == 32)
                .context("--key is the 64 hex digits `cascade admin key init` printed")?;
            if !(1..=3650).contains(&days) {
                bail!("--days is between 1 and 3650");
            }
            let admin = relay.connect()?;
            let now = now_secs();
            let not_after = now + days * 86_400;
            let entry = cascade_protocol::org_auth::AdminEntry {
                id: id.clone(),
                name: name.clone(),
                key,
                not_after,
            };
            let serial = CaDir::new(ca_dir).appoint(&admin, entry, now).await?;
            say(
                json,
                json!({ "appointed": id, "not_after": not_after, "serial": serial }),
                || {
                    format!(
                        "Appointed {id} ({name}) until {} (admin roster {serial} published)",
                        format_time(not_after.try_into().unwrap_or_default())
                    )
                },
            );
            Ok(())
        }
        AdminCommand::Dismiss { ca_dir, id } => {
            let admin = relay.connect()?;
            let serial = CaDir::new(ca_dir).dismiss(&admin, &id, now_secs()).await?;
            say(json, json!({ "dismissed": id, "serial": serial }), || {
                format!("Dismissed {id} (admin roster {serial} published); the relay refuses their key now")
            });
            Ok(())
        }
        AdminCommand::Admins { ca_dir } => {
            let admin = relay.connect()?;
            let roster = CaDir::new(ca_dir).roster(&admin).await?;
            let admins = roster.map(|r| r.admins).unwrap_or_default();
            if json {
                let list: Vec<_> = admins
                    .iter()
                    .map(|a| json!({ "id": a.id, "name": a.name, "key": hex::encode(&a.key), "not_after": a.not_after }))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if admins.is_empty() {
                println!("No admin is appointed; the CA key signs every request.");
            } else {
                let now = now_secs();
                for a in admins {
                    let until = format_time(a.not_after.try_into().unwrap_or_default());
                    let state = if a.not_after < now {
                        "EXPIRED"
                    } else {
                        "until"
                    };
                    println!(
                        "{}\t{}\t{state} {until}\tkey {}",
                        a.id,
                        a.name,
                        hex::encode(&a.key)
                    );
                }
            }
            Ok(())
        }
        AdminCommand::CreateOrg { org, name, ca_dir } => {
            let admin = relay.operator()?;
            let registered = CaDir::new(ca_dir).register(&admin, &org, &name).await?;
            let ca_added = registered == cascade_admin::Registered::CaAdded;
            say(json, json!({ "org_id": org, "ca_added": ca_added }), || {
                if ca_added {
                    format!("Organisation {org} existed without a CA; it now has this one")
                } else {
                    format!("Created organisation {org}")
                }
            });
            Ok(())
        }
        AdminCommand::AddUser {
            user,
            ca_dir,
            name,
            role,
        } => {
            let admin = relay.connect()?;
            CaDir::new(ca_dir)
                .create_user(&admin, &user, &name, &role)
                .await?;
            say(json, json!({ "user_id": user }), || {
                format!("Created user {user}")
            });
            Ok(())
        }
        AdminCommand::Token {
            user,
            ca_dir,
            ttl,
            qr,
        } => {
            let admin = relay.connect()?;
            let c = CaDir::new(ca_dir)
                .enrolment_code(&admin, &user, ttl)
                .await?;
            if qr && !json {
                let code = qrcode::QrCode::new(c.link.as_bytes())
                    .context("the link does not fit a QR code")?;
                let picture = code
                    .render::<qrcode::render::unicode::Dense1x2>()
                    .quiet_zone(true)
                    .build();
                println!("{picture}\n{}", c.link);
            }
            say(
                json,
                json!({
                    "code": c.code,
                    "link": c.link,
                    "user_id": c.user_id,
                    "expires_at": c.expires_at,
                }),
                || c.code.clone(),
            );
            Ok(())
        }
        AdminCommand::Issue { ca_dir, days } => {
            let admin = relay.connect()?;
            let issued = CaDir::new(ca_dir)
                .issue_pending(&admin, now_secs(), days)
                .await?;
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
            Ok(())
        }
        AdminCommand::Trust(cmd) => trust(relay, cmd, json).await,
        AdminCommand::Policy {
            ca_dir,
            idle_lock_minutes,
            max_retention_days,
        } => {
            let dir = CaDir::new(ca_dir);
            let (mut policy, set) = match dir.policy()? {
                Some(policy) => (policy, true),
                None => (DevicePolicy::default(), false),
            };
            let summary = |policy: &DevicePolicy, set: bool| {
                json!({
                    "idle_lock_minutes": policy.idle_lock_secs / 60,
                    "max_retention_days": policy.max_retention_days,
                    "set": set,
                })
            };
            if idle_lock_minutes.is_none() && max_retention_days.is_none() {
                say(json, summary(&policy, set), || describe(&policy, set));
                return Ok(());
            }
            // What is not given stays as it was.
            if let Some(minutes) = idle_lock_minutes {
                policy.idle_lock_secs = minutes.saturating_mul(60);
            }
            if let Some(Retention(days)) = max_retention_days {
                policy.max_retention_days = days;
            }
            let serial = dir
                .set_policy(&relay.connect()?, policy, now_secs())
                .await?;
            let mut out = summary(&policy, true);
            out["serial"] = json!(serial);
            say(json, out, || {
                format!(
                    "{}\n(trust list {serial} published)",
                    describe(&policy, true)
                )
            });
            Ok(())
        }
        AdminCommand::RotateCa {
            ca_dir,
            new_dir,
            name,
        } => {
            let admin = relay.connect()?;
            let r = CaDir::new(ca_dir)
                .rotate(&admin, &new_dir, &name, now_secs())
                .await?;
            let (org, fp, serial) = (&r.anchor.org, r.anchor.fingerprint(), r.trust_serial);
            let (dir, cert) = (r.dir.path(), r.dir.cert_path());
            say(
                json,
                json!({ "org_id": org, "dir": dir, "cert": cert, "fingerprint": fp, "serial": serial }),
                || {
                    format!(
                        "Rotated the CA of {org} (trust list {serial} published).\n  new CA directory (use it from now on): {}\n  certificate: {}\n  fingerprint: {fp}\nNext: give partners the new fingerprint to pin, and re-issue every device with `cascade admin issue --ca-dir {}`.",
                        dir.display(),
                        cert.display(),
                        dir.display()
                    )
                },
            );
            Ok(())
        }
        AdminCommand::Revoke {
            ca_dir,
            device,
            user,
        } => {
            let admin = relay.connect()?;
            let dir = CaDir::new(ca_dir);
            let (devices, serial) = match (device, user) {
                (Some(d), _) => (vec![d], dir.revoke(&admin, &[d], now_secs()).await?),
                (None, Some(u)) => dir.revoke_user(&admin, &u, now_secs()).await?,
                (None, None) => bail!("give --device or --user"),
            };
            say(
                json,
                json!({ "revoked": devices, "serial": serial }),
                || {
                    match serial {
                    Some(serial) => format!(
                        "Revoked {} device(s) (revocation list {serial} published)",
                        devices.len()
                    ),
                    None => format!(
                        "The relay refuses {} device(s) from now on. Clients remove them from their conversations once the CA holder publishes the revocation list: the same command with the CA directory.",
                        devices.len()
                    ),
                }
                },
            );
            Ok(())
        }
        AdminCommand::Wipe { ca_dir, device } => {
            let admin = relay.connect()?;
            let serial = CaDir::new(ca_dir).wipe(&admin, device, now_secs()).await?;
            say(
                json,
                json!({ "wipe_ordered": device, "revoked": [device], "serial": serial }),
                || {
                    format!(
                        "Wipe ordered for device {device}, and revoked (revocation list {serial} published).\nThe device erases itself when it next connects; `cascade admin wipes` shows when it confirms."
                    )
                },
            );
            Ok(())
        }
        AdminCommand::Wipes { ca_dir } => {
            let admin = relay.connect()?;
            let wipes = CaDir::new(ca_dir).wipes(&admin).await?;
            if json {
                println!("{}", serde_json::to_string(&wipes)?);
            } else if wipes.is_empty() {
                println!("No wipe orders.");
            } else {
                for w in wipes {
                    let state = match &w.state {
                        WipeState::Pending => "pending: not confirmed yet".to_owned(),
                        WipeState::Confirmed => format!(
                            "confirmed by the device at {}",
                            w.confirmed_at.map(format_time).unwrap_or_default()
                        ),
                        WipeState::Unverified(why) => format!("NOT CONFIRMED: {why}"),
                    };
                    println!(
                        "{}\t{}\t{}\tordered {}\t{state}",
                        w.device,
                        w.user,
                        w.device_name,
                        format_time(w.ordered_at)
                    );
                }
            }
            Ok(())
        }
        AdminCommand::Pending { ca_dir } => {
            let admin = relay.connect()?;
            let pending = CaDir::new(ca_dir).pending(&admin).await?;
            if json {
                println!("{}", serde_json::to_string(&pending)?);
            } else if pending.is_empty() {
                println!("No device is waiting for a certificate.");
            } else {
                for p in pending {
                    println!(
                        "{} ({}, {}) device {} \"{}\"{}",
                        p.user_id,
                        p.display_name,
                        p.role,
                        p.device_id,
                        p.device_name,
                        if p.renewal { "  renewal" } else { "" }
                    );
                }
            }
            Ok(())
        }
        AdminCommand::Users { ca_dir } => {
            let admin = relay.connect()?;
            let users = CaDir::new(ca_dir).users(&admin).await?;
            if json {
                println!("{}", serde_json::to_string(&users)?);
            } else {
                for u in users {
                    let e = &u.entry;
                    println!(
                        "{}\t{}\t{}\t{} device(s)",
                        e.user_id,
                        e.display_name,
                        e.role,
                        e.devices.len()
                    );
                    for d in &u.device_details {
                        println!(
                            "  {}\t{}\tenrolled {}\t{}\t{}",
                            d.device_id,
                            d.device_name,
                            format_time(d.enrolled_at),
                            if d.last_seen == 0 {
                                "never seen".to_owned()
                            } else {
                                format!("last seen {}", format_time(d.last_seen))
                            },
                            if d.certified {
                                "certified"
                            } else {
                                "waiting for its certificate"
                            }
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

/// `cascade admin org …`, offline.
fn org(command: OrgCommand, json: bool) -> Result<()> {
    match command {
        OrgCommand::Init {
            org,
            name,
            dir,
            days,
        } => {
            let dir = CaDir::create(dir, &org, &name, now_secs(), days)?;
            let fp = dir.anchor()?.fingerprint();
            let (key, cert) = (dir.key_path(), dir.cert_path());
            say(
                json,
                json!({ "org_id": org, "key": key, "cert": cert, "fingerprint": fp }),
                || {
                    format!(
                        "Created the CA of {org}.\n  key (keep it secret, owner-only): {}\n  certificate: {}\n  fingerprint: {fp}",
                        key.display(),
                        cert.display()
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

/// `cascade admin trust …`.
async fn trust(relay: Relay, command: TrustCommand, json: bool) -> Result<()> {
    // Every trust command needs the relay, even `list` (the admin guide
    // says so; kept for compatibility).
    let admin = relay.connect()?;
    match command {
        TrustCommand::Add {
            ca_dir,
            cert,
            fingerprint,
        } => {
            let pem = std::fs::read_to_string(&cert)
                .with_context(|| format!("reading {}", cert.display()))?;
            let (org, serial) = CaDir::new(ca_dir)
                .trust(&admin, &pem, &fingerprint, now_secs())
                .await?;
            say(json, json!({ "trusted": org, "serial": serial }), || {
                format!("Now trusting {org} (trust list {serial} published)")
            });
        }
        TrustCommand::Remove { ca_dir, org } => {
            let serial = CaDir::new(ca_dir)
                .distrust(&admin, &org, now_secs())
                .await?;
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
    Ok(())
}

/// A time for people: RFC 3339, UTC (`2026-12-05T12:15:27Z`).
fn format_time(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} s after the epoch"))
}
