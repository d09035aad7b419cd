//! An organisation's CA directory on an admin's machine, and the admin
//! operations that use it: one method per `cascade admin` command that
//! needs the CA, so the command, the test harness and any later admin
//! front end run the same code.
//!
//! The directory, as made by `cascade admin org init`:
//!
//! | File | What |
//! |---|---|
//! | `ca-key.pem` | the CA key (PKCS#8), owner-only; never leaves the directory |
//! | `ca-cert.pem` | the CA certificate |
//! | `trusted/<org>-<fingerprint prefix>.pem` | each pinned partner CA |
//! | `trust-serial` | serial of the last trust list published |
//! | `revoked.txt` | every device the organisation revoked, one per line |
//! | `revocation-serial` | serial of the last revocation list published |
//! | `issued.jsonl` | audit log: one line per certificate issued |
//! | `admins.json` | the admins the CA appointed (id, name, key, until) |
//! | `admin-serial` | serial of the last admin roster published |
//!
//! An appointed admin's own directory, made by `cascade admin key init`,
//! holds their key instead of the CA's: `admin-key.pem` (owner-only),
//! `admin-id`, and a copy of `ca-cert.pem`. The commands that only ask the
//! relay (users, enrolment codes, pending devices, wipes) and `revoke`'s
//! refusal at the relay work with it; the ones that sign with the CA key
//! (certificates, lists, wipe orders, appointments) say they need the CA.
//!
//! Devices never accept a list whose serial is not above the last one they
//! hold, and each list is published whole from these files. So a file that
//! cannot be read is an error, never a fresh start: a serial that restarted
//! at 1 would be ignored by every device, and an empty revocation list
//! would un-revoke every device for the clients.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cascade_core::identity::{
    der_to_pem, fingerprint_hex, pem_to_der, verify_device_cert, verify_wipe_order, CertError,
    DevicePolicy, TrustAnchor, MAX_IDLE_LOCK_SECS, MAX_RETENTION_DAYS, MIN_IDLE_LOCK_SECS,
    MIN_RETENTION_DAYS,
};
use cascade_protocol::enrolment_code;
use cascade_protocol::http::OrgUser;
use cascade_protocol::{DeviceId, OrgId, UserId};
use sha2::Digest as _;

use crate::relay::{AdminClient, AdminError, IssueError, Issued};
use crate::{AdminKey, OrgCa, OrgSigner};
use cascade_protocol::org_auth::{AdminEntry, AdminRoster};

const KEY: &str = "ca-key.pem";
const CERT: &str = "ca-cert.pem";
const TRUSTED: &str = "trusted";
const TRUST_SERIAL: &str = "trust-serial";
const REVOKED: &str = "revoked.txt";
const REVOCATION_SERIAL: &str = "revocation-serial";
const AUDIT_LOG: &str = "issued.jsonl";
const POLICY: &str = "policy.json";
const ADMINS: &str = "admins.json";
const ADMIN_SERIAL: &str = "admin-serial";
const ADMIN_KEY: &str = "admin-key.pem";
const ADMIN_ID: &str = "admin-id";

/// An organisation's CA directory (see the module documentation).
pub struct CaDir {
    path: PathBuf,
}

/// A wipe order and what became of it ([`CaDir::wipes`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WipeReport {
    /// The device.
    pub device: DeviceId,
    /// Its user.
    pub user: UserId,
    /// The name it enrolled with.
    pub device_name: String,
    /// When the relay took the order, seconds since the Unix epoch.
    pub ordered_at: u64,
    /// When the device's confirmation reached the relay.
    pub confirmed_at: Option<u64>,
    /// Whether the device confirmed, checked.
    pub state: WipeState,
}

/// Whether a device confirmed its wipe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WipeState {
    /// The device has not confirmed: it has not connected since, or it
    /// could not erase.
    Pending,
    /// The device confirmed, with a signature by the key this CA certified
    /// for it over this CA's order.
    Confirmed,
    /// The relay reports a confirmation that does not check out (why).
    Unverified(String),
}

/// Why a CA directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaDirError {
    /// Reading or writing a file of the directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The directory already holds a CA key; a CA key is never replaced.
    #[error("{} exists already; refusing to replace a CA key", path.display())]
    KeyExists {
        /// The existing key file.
        path: PathBuf,
    },
    /// A serial file (`trust-serial`, `revocation-serial`) does not hold a
    /// number. Nothing was published: a guessed serial could be one the
    /// devices have seen, and they would ignore the list. Set the file to
    /// the last serial published (the commands print it) or above.
    #[error("{} does not hold a serial number; set it to the last serial published (or higher) and try again", path.display())]
    CorruptSerial {
        /// The serial file.
        path: PathBuf,
    },
    /// A line of `revoked.txt` is not a device id. Nothing was published: a
    /// list without that device would tell every client it is no longer
    /// revoked.
    #[error("{}, line {line}: not a device id; fix the file and try again", path.display())]
    CorruptRevocations {
        /// The revocation file.
        path: PathBuf,
        /// The line, counting from 1.
        line: usize,
    },
    /// A certificate or key in the directory, or one given to it, is not
    /// acceptable.
    #[error(transparent)]
    Certificate(#[from] CertError),
    /// `policy.json` does not hold a device policy. Nothing was published:
    /// a list without the policy would put every device back on the
    /// defaults.
    #[error("{} does not hold a device policy; set it again with cascade admin policy", path.display())]
    CorruptPolicy {
        /// The policy file.
        path: PathBuf,
    },
    /// An idle lock or a retention outside what devices accept.
    #[error(
        "the idle lock must be between {} and {} minutes, and the retention between {} and {} days",
        MIN_IDLE_LOCK_SECS / 60,
        MAX_IDLE_LOCK_SECS / 60,
        MIN_RETENTION_DAYS,
        MAX_RETENTION_DAYS
    )]
    PolicyOutOfRange,
    /// The partner certificate's fingerprint is not the one given.
    #[error("the certificate's fingerprint is {actual}, not the one confirmed out of band")]
    FingerprintMismatch {
        /// The certificate's real fingerprint.
        actual: String,
    },
    /// The CA in the directory belongs to another organisation than the one
    /// the command is about.
    #[error("the CA in that directory is {found}'s, not {wanted}'s")]
    WrongOrg {
        /// The organisation of the CA in the directory.
        found: OrgId,
        /// The organisation the command named.
        wanted: OrgId,
    },
    /// A command that signs with the CA key, run with an appointed admin's
    /// directory.
    #[error("{} holds an admin's key, not the CA key: {what} needs the organisation's CA directory", path.display())]
    NeedsCa {
        /// The directory given.
        path: PathBuf,
        /// What was asked.
        what: &'static str,
    },
    /// `admin key init` into a directory that holds a key already.
    #[error("{} holds a key already; choose an empty directory", path.display())]
    DirInUse {
        /// The directory.
        path: PathBuf,
    },
    /// `admins.json` does not hold the appointed admins. Nothing was
    /// published: a roster without them would dismiss them all.
    #[error("{} does not hold the appointed admins; restore it from a backup", path.display())]
    CorruptAdmins {
        /// The file.
        path: PathBuf,
    },
    /// An appointed admin's copy of the CA certificate is not the one the
    /// relay serves for the organisation (it was rotated).
    #[error("the relay serves another CA for the organisation than {}: after a CA rotation, replace it with the new ca-cert.pem from your CA holder", path.display())]
    CaChanged {
        /// The admin's copy.
        path: PathBuf,
    },
    /// `dismiss` of an admin who is not appointed.
    #[error("no admin {0} is appointed")]
    NotAppointed(String),
    /// The relay's admin roster is not one this CA signed for this
    /// organisation.
    #[error("the relay's admin roster does not verify with our CA: {0}")]
    RosterNotSigned(CertError),
    /// `trust remove` of an organisation that is not pinned.
    #[error("{0} is not pinned")]
    NotPinned(OrgId),
    /// `revoke --user` of a user the relay does not know.
    #[error("no user {0}")]
    UnknownUser(UserId),
    /// The relay refused or could not be reached.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Issuing the waiting devices' certificates failed.
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// What [`CaDir::rotate`] made.
pub struct Rotation {
    /// The new CA directory: use it for every command from now on.
    pub dir: CaDir,
    /// The new CA's anchor (give partners its fingerprint to pin).
    pub anchor: TrustAnchor,
    /// Serial of the trust list that announced the new CA.
    pub trust_serial: u64,
}

/// A one-time enrolment code, as [`CaDir::enrolment_code`] makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentCode {
    /// The short code (`XXXX-XXXX-XXXX-XXXX-XXXX-XXXX`): the token and the
    /// start of the CA's fingerprint, which lets the device check the CA
    /// the relay serves (`cascade_protocol::enrolment_code`).
    pub code: String,
    /// The same as a `cascade://enrol` link, with the relay's address and
    /// the CA's full fingerprint: for a QR code or a click.
    pub link: String,
    /// The user it enrols a device for.
    pub user_id: UserId,
    /// Expiry of the token, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// File name of a pinned partner CA: its organisation and the start of its
/// fingerprint, so that both CAs of a partner's rotation can be pinned.
fn partner_file(a: &TrustAnchor) -> String {
    format!("{}-{}.pem", a.org, &fingerprint_hex(&a.cert_der)[..16])
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaDirError + '_ {
    move |source| CaDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads a file, `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, CaDirError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Replaces a file's content in one step (write a sibling, then rename), so
/// that a crash leaves the old content or the new, never half of either.
fn write_atomically(path: &Path, content: &str) -> Result<(), CaDirError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, content).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// What [`CaDir::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new organisation with this CA.
    Created,
    /// The organisation existed without a CA (an older relay's) and now
    /// has this one.
    CaAdded,
}

impl CaDir {
    /// A CA directory at `path` (nothing is read until it is used).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `cascade admin org init`: makes a new CA for `org` valid from `now`
    /// for `valid_days`, in a directory at `path`. Refuses a directory that
    /// holds a CA key already.
    pub fn create(
        path: impl Into<PathBuf>,
        org: &OrgId,
        name: &str,
        now: i64,
        valid_days: i64,
    ) -> Result<CaDir, CaDirError> {
        let path = path.into();
        let key = path.join(KEY);
        if key.exists() {
            return Err(CaDirError::KeyExists { path: key });
        }
        let ca = OrgCa::generate(org, name, now, valid_days)?;
        CaDir::init(path, &ca)
    }

    /// Creates a CA directory holding `ca`: the key owner-only (0600), never
    /// replacing an existing key.
    pub fn init(path: impl Into<PathBuf>, ca: &OrgCa) -> Result<CaDir, CaDirError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let dir = CaDir::new(path);
        std::fs::create_dir_all(&dir.path).map_err(io(&dir.path))?;
        let key = dir.path.join(KEY);
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(CaDirError::KeyExists { path: key })
            }
            Err(e) => return Err(io(&key)(e)),
        };
        file.write_all(ca.key_pem().as_bytes()).map_err(io(&key))?;
        let cert = dir.path.join(CERT);
        std::fs::write(&cert, ca.cert_pem()).map_err(io(&cert))?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The CA certificate file (`ca-cert.pem`): what the relay and partners
    /// get.
    pub fn cert_path(&self) -> PathBuf {
        self.path.join(CERT)
    }

    /// The CA key file (`ca-key.pem`).
    pub fn key_path(&self) -> PathBuf {
        self.path.join(KEY)
    }

    /// Loads the CA (key and certificate).
    pub fn ca(&self) -> Result<OrgCa, CaDirError> {
        self.ca_for("this command")
    }

    /// Loads the CA for `what`: [`CaDirError::NeedsCa`] in an appointed
    /// admin's directory.
    fn ca_for(&self, what: &'static str) -> Result<OrgCa, CaDirError> {
        if self.is_admins() {
            return Err(CaDirError::NeedsCa {
                path: self.path.clone(),
                what,
            });
        }
        let key = self.path.join(KEY);
        let cert = self.path.join(CERT);
        let key_pem = std::fs::read_to_string(&key).map_err(io(&key))?;
        let cert_pem = std::fs::read_to_string(&cert).map_err(io(&cert))?;
        Ok(OrgCa::from_pem(&key_pem, &cert_pem)?)
    }

    /// The CA certificate as a trust anchor, without touching the key.
    pub fn anchor(&self) -> Result<TrustAnchor, CaDirError> {
        let cert = self.path.join(CERT);
        let pem = std::fs::read_to_string(&cert).map_err(io(&cert))?;
        Ok(TrustAnchor::from_der(&pem_to_der(&pem)?)?)
    }

    /// Whether this is an appointed admin's directory (their key, no CA
    /// key).
    pub fn is_admins(&self) -> bool {
        self.path.join(ADMIN_KEY).exists() && !self.path.join(KEY).exists()
    }

    /// `cascade admin key init`: makes a new admin key for `id` in a new
    /// directory at `path`, with a copy of the organisation's CA
    /// certificate (PEM). Give [`AdminKey::public_key`] to the CA's holder
    /// to appoint ([`CaDir::appoint`]).
    pub fn create_admin(
        path: impl Into<PathBuf>,
        ca_cert_pem: &str,
        id: &str,
    ) -> Result<(CaDir, AdminKey), CaDirError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let anchor = TrustAnchor::from_der(&pem_to_der(ca_cert_pem)?)?;
        let key = AdminKey::generate(&anchor.org, id)?;
        let dir = CaDir::new(path);
        if dir.path.join(KEY).exists() || dir.path.join(ADMIN_KEY).exists() {
            return Err(CaDirError::DirInUse { path: dir.path });
        }
        std::fs::create_dir_all(&dir.path).map_err(io(&dir.path))?;
        let key_path = dir.path.join(ADMIN_KEY);
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(CaDirError::DirInUse { path: dir.path })
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        file.write_all(key.key_pem().as_bytes())
            .map_err(io(&key_path))?;
        let id_path = dir.path.join(ADMIN_ID);
        std::fs::write(&id_path, format!("{id}\n")).map_err(io(&id_path))?;
        let cert = dir.path.join(CERT);
        std::fs::write(&cert, der_to_pem(&anchor.cert_der)).map_err(io(&cert))?;
        Ok((dir, key))
    }

    /// In an appointed admin's directory, whose CA certificate is a copy:
    /// [`CaDirError::CaChanged`] if the relay now serves another CA for the
    /// organisation (after a rotation, codes made with the old one would
    /// be refused by every device). The relay's copy is not adopted: the
    /// admin replaces theirs with the one their CA holder sends.
    async fn check_ca_current(
        &self,
        admin: &AdminClient,
        anchor: &TrustAnchor,
    ) -> Result<(), CaDirError> {
        let served = admin.org_info(&anchor.org).await?.ca_certificate;
        let same = served
            .as_deref()
            .and_then(|pem| pem_to_der(pem).ok())
            .is_some_and(|der| der == anchor.cert_der);
        if same {
            Ok(())
        } else {
            Err(CaDirError::CaChanged {
                path: self.cert_path(),
            })
        }
    }

    /// The appointed admin's key of this directory.
    pub fn admin_key(&self) -> Result<AdminKey, CaDirError> {
        let org = self.anchor()?.org;
        let id_path = self.path.join(ADMIN_ID);
        let id = std::fs::read_to_string(&id_path).map_err(io(&id_path))?;
        let key_path = self.path.join(ADMIN_KEY);
        let pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        Ok(AdminKey::from_pem(&org, id.trim(), &pem)?)
    }

    /// What signs this directory's requests for `org`: the appointed
    /// admin's key in an admin's directory, else the CA.
    fn authority(&self, org: &OrgId) -> Result<Arc<dyn OrgSigner>, CaDirError> {
        if self.is_admins() {
            let key = self.admin_key()?;
            if key.org() != org {
                return Err(CaDirError::WrongOrg {
                    found: key.org().clone(),
                    wanted: org.clone(),
                });
            }
            return Ok(Arc::new(key));
        }
        Ok(Arc::new(self.ca_of(org)?))
    }

    /// The appointed admins, as last published from this CA directory.
    pub fn admins(&self) -> Result<Vec<AdminEntry>, CaDirError> {
        #[derive(serde::Deserialize)]
        struct Saved {
            id: String,
            name: String,
            key: String,
            not_after: i64,
        }
        let path = self.path.join(ADMINS);
        let Some(text) = read_optional(&path)? else {
            return Ok(Vec::new());
        };
        let saved: Vec<Saved> = serde_json::from_str(&text)
            .map_err(|_| CaDirError::CorruptAdmins { path: path.clone() })?;
        saved
            .into_iter()
            .map(|a| {
                Ok(AdminEntry {
                    key: hex::decode(&a.key)
                        .ok()
                        .filter(|k| k.len() == 32)
                        .ok_or_else(|| CaDirError::CorruptAdmins { path: path.clone() })?,
                    id: a.id,
                    name: a.name,
                    not_after: a.not_after,
                })
            })
            .collect()
    }

    fn write_admins(&self, admins: &[AdminEntry]) -> Result<(), CaDirError> {
        let saved: Vec<serde_json::Value> = admins
            .iter()
            .map(|a| {
                serde_json::json!({
                    "id": a.id, "name": a.name, "key": hex::encode(&a.key), "not_after": a.not_after
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&saved).expect("serialisable");
        write_atomically(&self.path.join(ADMINS), &format!("{text}\n"))
    }

    /// Signs the roster of `admins` with the next serial, records both and
    /// gives it to the relay.
    async fn publish_admins(
        &self,
        admin: &AdminClient,
        ca: Arc<OrgCa>,
        admins: Vec<AdminEntry>,
        now: i64,
    ) -> Result<u64, CaDirError> {
        let serial = self.read_serial(ADMIN_SERIAL)? + 1;
        let doc = ca.sign_admin_roster(admins.clone(), serial, now)?;
        // As for the lists: the serial is spent before publishing.
        self.write_serial(ADMIN_SERIAL, serial)?;
        self.write_admins(&admins)?;
        let org = ca.org().clone();
        admin.as_org(ca).put_admin_roster(&org, &doc).await?;
        Ok(serial)
    }

    /// `cascade admin appoint`: appoints (or re-appoints, with a new key or
    /// term) admin `id`, a person named `name` holding the Ed25519 public
    /// key `key`, until `not_after`: their own key then signs their admin
    /// requests. Returns the roster's serial.
    pub async fn appoint(
        &self,
        admin: &AdminClient,
        entry: AdminEntry,
        now: i64,
    ) -> Result<u64, CaDirError> {
        let ca = Arc::new(self.ca_for("appointing an admin")?);
        let mut admins = self.admins()?;
        admins.retain(|a| a.id != entry.id);
        admins.push(entry);
        let probe = AdminRoster {
            v: 1,
            kind: AdminRoster::KIND.into(),
            org: ca.org().clone(),
            serial: 0,
            issued_at: now,
            admins: admins.clone(),
        };
        AdminRoster::from_body(&probe.to_body())
            .map_err(|why| CaDirError::Certificate(CertError::Malformed(why.into())))?;
        self.publish_admins(admin, ca, admins, now).await
    }

    /// `cascade admin dismiss`: removes admin `id` from the roster; the
    /// relay refuses their key from then on. Returns the roster's serial.
    pub async fn dismiss(
        &self,
        admin: &AdminClient,
        id: &str,
        now: i64,
    ) -> Result<u64, CaDirError> {
        let ca = Arc::new(self.ca_for("dismissing an admin")?);
        let mut admins = self.admins()?;
        let before = admins.len();
        admins.retain(|a| a.id != id);
        if admins.len() == before {
            return Err(CaDirError::NotAppointed(id.to_owned()));
        }
        self.publish_admins(admin, ca, admins, now).await
    }

    /// `cascade admin admins`: the roster the relay holds, checked against
    /// this directory's CA certificate (so the relay cannot add anyone).
    /// `None` if the organisation has none.
    pub async fn roster(&self, admin: &AdminClient) -> Result<Option<AdminRoster>, CaDirError> {
        let anchor = self.anchor()?;
        let signer = self.authority(&anchor.org)?;
        let doc = match admin.as_org(signer).admin_roster(&anchor.org).await {
            Ok(doc) => doc,
            Err(AdminError::Refused { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        cascade_core::identity::verify_admin_roster(&doc, &anchor)
            .map(Some)
            .map_err(CaDirError::RosterNotSigned)
    }

    /// The CA, checked to be `org`'s.
    fn ca_of(&self, org: &OrgId) -> Result<OrgCa, CaDirError> {
        let ca = self.ca()?;
        if ca.org() != org {
            return Err(CaDirError::WrongOrg {
                found: ca.org().clone(),
                wanted: org.clone(),
            });
        }
        Ok(ca)
    }

    /// `cascade admin create-org` (the relay operator's `admin`):
    /// registers the organisation on the relay with this directory's CA
    /// certificate (never the key). An organisation that an older relay
    /// registered without a CA gets this one instead, once
    /// ([`Registered::CaAdded`]); one that has a CA is a `conflict`.
    pub async fn register(
        &self,
        admin: &AdminClient,
        org: &OrgId,
        name: &str,
    ) -> Result<Registered, CaDirError> {
        let ca = self.ca_of(org)?;
        let pem = ca.cert_pem();
        match admin.create_org(org, name, &pem).await {
            Ok(()) => Ok(Registered::Created),
            Err(AdminError::Refused { code, .. }) if code == "conflict" => {
                match admin.replace_ca(org, &pem).await {
                    Ok(()) => Ok(Registered::CaAdded),
                    // It has a CA: only its key acts for it.
                    Err(AdminError::Refused { status: 401, .. }) => Err(AdminError::Refused {
                        status: 409,
                        code,
                        message: "the organisation exists already, with its CA".into(),
                    }
                    .into()),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `cascade admin token`: a one-time enrolment code for one device of
    /// `user`, valid for `ttl_secs` (the relay's default if `None`).
    pub async fn enrolment_code(
        &self,
        admin: &AdminClient,
        user: &UserId,
        ttl_secs: Option<u64>,
    ) -> Result<EnrolmentCode, CaDirError> {
        let signer = self.authority(&user.org())?;
        let anchor = self.anchor()?;
        if self.is_admins() {
            self.check_ca_current(admin, &anchor).await?;
        }
        let t = admin
            .as_org(signer)
            .issue_enrolment_token(user, ttl_secs)
            .await?;
        let digest: [u8; 32] = sha2::Sha256::digest(&anchor.cert_der).into();
        let code = enrolment_code::short_code(&t.token, &digest);
        Ok(EnrolmentCode {
            link: enrolment_code::link(admin.server_url(), &code, &digest),
            code,
            user_id: t.user_id,
            expires_at: t.expires_at,
        })
    }

    /// `cascade admin issue`: certifies every device of the organisation
    /// that waits for a certificate (valid for `valid_days` from `now`) and
    /// appends them to the audit log.
    pub async fn issue_pending(
        &self,
        admin: &AdminClient,
        now: i64,
        valid_days: i64,
    ) -> Result<Vec<Issued>, CaDirError> {
        let ca = Arc::new(self.ca_for("issuing certificates")?);
        let issued = admin
            .as_org(ca.clone())
            .issue_pending(&ca, now, valid_days)
            .await?;
        self.audit(&issued)?;
        Ok(issued)
    }

    /// Rotates the organisation's CA (`cascade admin rotate-ca`): makes a
    /// new CA in `new_dir` (carrying over pinned partners, revocations and
    /// serials), publishes a trust list signed by the current CA and
    /// co-signed by the new one that names the new one as successor (so
    /// devices accept certificates from either), and registers the new CA
    /// with the relay. Then re-issue every device from the new directory
    /// ([`CaDir::issue_pending`]; the relay lists them) and give partners
    /// the new fingerprint to pin.
    pub async fn rotate(
        &self,
        admin: &AdminClient,
        new_dir: &Path,
        name: &str,
        now: i64,
    ) -> Result<Rotation, CaDirError> {
        let old = Arc::new(self.ca_for("rotating the CA")?);
        // Both requests are the current CA's: the relay holds it until the
        // second one.
        let admin = admin.as_org(old.clone());
        let partners = self.partners()?;
        let serial = self.trust_serial()? + 1;
        let revoked = self.revoked()?;
        let revocation_serial = self.revocation_serial()?;
        let new = OrgCa::generate(old.org(), name, now, 3650)?;
        let next = CaDir::init(new_dir, &new)?;
        let trusted = next.path.join(TRUSTED);
        std::fs::create_dir_all(&trusted).map_err(io(&trusted))?;
        for p in &partners {
            let to = trusted.join(partner_file(p));
            std::fs::write(&to, der_to_pem(&p.cert_der)).map_err(io(&to))?;
        }
        next.write_revoked(&revoked)?;
        if revocation_serial > 0 {
            next.write_serial(REVOCATION_SERIAL, revocation_serial)?;
        }
        let ders: Vec<Vec<u8>> = partners.into_iter().map(|a| a.cert_der).collect();
        let policy = self.policy()?;
        if let Some(policy) = policy {
            next.write_policy(&policy)?;
        }
        let doc =
            old.sign_trust_list_with_policy(&ders, Some(new.cert_der()), policy, serial, now)?;
        // Co-signed by the new CA: devices already moved to it (and new
        // devices enrolled under it) accept the list too.
        let doc = new.co_sign(doc)?;
        // The serial is taken before publishing: if publishing fails, the
        // next list skips a number, which devices accept; reusing a number
        // they have seen would not be.
        self.write_serial(TRUST_SERIAL, serial)?;
        next.write_serial(TRUST_SERIAL, serial)?;
        let admins = self.admins()?;
        let admin_serial = self.read_serial(ADMIN_SERIAL)?;
        if admin_serial > 0 {
            next.write_serial(ADMIN_SERIAL, admin_serial)?;
        }
        admin.put_trust_list(old.org(), &doc).await?;
        admin.replace_ca(old.org(), &new.cert_pem()).await?;
        // The relay checks the roster with the CA it holds: signed again
        // by the new one, so appointed admins keep acting.
        if admin_serial > 0 {
            next.publish_admins(&admin, Arc::new(new), admins, now)
                .await?;
            return Ok(Rotation {
                anchor: next.anchor()?,
                dir: next,
                trust_serial: serial,
            });
        }
        Ok(Rotation {
            dir: next,
            anchor: new.anchor(),
            trust_serial: serial,
        })
    }

    fn read_serial(&self, file: &str) -> Result<u64, CaDirError> {
        let path = self.path.join(file);
        match read_optional(&path)? {
            None => Ok(0),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| CaDirError::CorruptSerial { path }),
        }
    }

    fn write_serial(&self, file: &str, serial: u64) -> Result<(), CaDirError> {
        write_atomically(&self.path.join(file), &format!("{serial}\n"))
    }

    /// The serial of the last trust list published from this directory (0
    /// before the first).
    pub fn trust_serial(&self) -> Result<u64, CaDirError> {
        self.read_serial(TRUST_SERIAL)
    }

    /// The serial of the last revocation list published from this
    /// directory (0 before the first).
    pub fn revocation_serial(&self) -> Result<u64, CaDirError> {
        self.read_serial(REVOCATION_SERIAL)
    }

    /// `cascade admin trust list`: the pinned partner CA certificates,
    /// sorted by organisation.
    pub fn partners(&self) -> Result<Vec<TrustAnchor>, CaDirError> {
        let dir = self.path.join(TRUSTED);
        let mut out = Vec::new();
        if dir.exists() {
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let p = entry.map_err(io(&dir))?.path();
                let pem = std::fs::read_to_string(&p).map_err(io(&p))?;
                out.push(TrustAnchor::from_der(&pem_to_der(&pem)?)?);
            }
        }
        out.sort_by(|a, b| a.org.cmp(&b.org).then(a.cert_der.cmp(&b.cert_der)));
        Ok(out)
    }

    /// Pins a partner's CA certificate after checking the fingerprint the
    /// admins confirmed out of band (colons and case do not matter). Pins
    /// nothing if it differs.
    pub fn add_partner(&self, cert_pem: &str, fingerprint: &str) -> Result<OrgId, CaDirError> {
        let der = pem_to_der(cert_pem)?;
        let anchor = TrustAnchor::from_der(&der)?;
        let want: String = fingerprint
            .chars()
            .filter(|c| c.is_ascii_hexdigit())
            .collect::<String>()
            .to_ascii_lowercase();
        if want != fingerprint_hex(&der) {
            return Err(CaDirError::FingerprintMismatch {
                actual: anchor.fingerprint(),
            });
        }
        let dir = self.path.join(TRUSTED);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let p = dir.join(partner_file(&anchor));
        std::fs::write(&p, der_to_pem(&der)).map_err(io(&p))?;
        Ok(anchor.org)
    }

    /// Unpins a partner (every CA of theirs that was pinned, e.g. both
    /// sides of their rotation). Returns whether any was pinned.
    pub fn remove_partner(&self, org: &OrgId) -> Result<bool, CaDirError> {
        let mut removed = false;
        for a in self.partners()? {
            if &a.org == org {
                let p = self.path.join(TRUSTED).join(partner_file(&a));
                std::fs::remove_file(&p).map_err(io(&p))?;
                removed = true;
            }
        }
        Ok(removed)
    }

    /// `cascade admin trust add`: pins a partner's CA after the fingerprint
    /// check ([`CaDir::add_partner`]) and publishes the trust list. Returns
    /// the partner and the list's serial.
    pub async fn trust(
        &self,
        admin: &AdminClient,
        cert_pem: &str,
        fingerprint: &str,
        now: i64,
    ) -> Result<(OrgId, u64), CaDirError> {
        self.ca_for("a trust list")?;
        let org = self.add_partner(cert_pem, fingerprint)?;
        let serial = self.publish_trust_list(admin, now).await?;
        Ok((org, serial))
    }

    /// `cascade admin trust remove`: unpins a partner and publishes the
    /// trust list. Returns the list's serial.
    pub async fn distrust(
        &self,
        admin: &AdminClient,
        org: &OrgId,
        now: i64,
    ) -> Result<u64, CaDirError> {
        self.ca_for("a trust list")?;
        if !self.remove_partner(org)? {
            return Err(CaDirError::NotPinned(org.clone()));
        }
        self.publish_trust_list(admin, now).await
    }

    /// Signs the current partner list with the next serial and publishes it
    /// on the relay. Returns the serial.
    pub async fn publish_trust_list(
        &self,
        admin: &AdminClient,
        now: i64,
    ) -> Result<u64, CaDirError> {
        let ca = Arc::new(self.ca_for("a trust list")?);
        let admin = admin.as_org(ca.clone());
        let serial = self.trust_serial()? + 1;
        let partners: Vec<Vec<u8>> = self.partners()?.into_iter().map(|a| a.cert_der).collect();
        let doc = ca.sign_trust_list_with_policy(&partners, None, self.policy()?, serial, now)?;
        self.write_serial(TRUST_SERIAL, serial)?;
        admin.put_trust_list(ca.org(), &doc).await?;
        Ok(serial)
    }

    /// The device policy this organisation set (`policy.json`), which
    /// every trust list it publishes carries; `None` for the defaults.
    pub fn policy(&self) -> Result<Option<DevicePolicy>, CaDirError> {
        let path = self.path.join(POLICY);
        read_optional(&path)?
            .map(|text| {
                serde_json::from_str::<DevicePolicy>(&text)
                    .map_err(|_| CaDirError::CorruptPolicy { path: path.clone() })
            })
            .transpose()
    }

    fn write_policy(&self, policy: &DevicePolicy) -> Result<(), CaDirError> {
        let text = serde_json::to_string_pretty(policy).expect("a policy serialises");
        write_atomically(&self.path.join(POLICY), &format!("{text}\n"))
    }

    /// `cascade admin policy --idle-lock-minutes N --max-retention-days
    /// D`: sets the organisation's device policy and publishes it in a new
    /// trust list (its devices apply it when they fetch the list). Returns
    /// the list's serial. Refuses an idle lock outside
    /// [`MIN_IDLE_LOCK_SECS`]..=[`MAX_IDLE_LOCK_SECS`], or a retention
    /// outside [`MIN_RETENTION_DAYS`]..=[`MAX_RETENTION_DAYS`], before
    /// anything is written.
    pub async fn set_policy(
        &self,
        admin: &AdminClient,
        policy: DevicePolicy,
        now: i64,
    ) -> Result<u64, CaDirError> {
        if !(MIN_IDLE_LOCK_SECS..=MAX_IDLE_LOCK_SECS).contains(&policy.idle_lock_secs)
            || policy
                .max_retention_days
                .is_some_and(|d| !(MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(&d))
        {
            return Err(CaDirError::PolicyOutOfRange);
        }
        // The CA loads (the directory is whole) before the file changes.
        self.ca_for("a device policy")?;
        self.write_policy(&policy)?;
        self.publish_trust_list(admin, now).await
    }

    /// The devices this organisation has revoked (`revoked.txt`).
    pub fn revoked(&self) -> Result<Vec<DeviceId>, CaDirError> {
        let path = self.path.join(REVOKED);
        let Some(text) = read_optional(&path)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match line.parse() {
                Ok(d) => out.push(d),
                Err(_) => {
                    return Err(CaDirError::CorruptRevocations { path, line: i + 1 });
                }
            }
        }
        Ok(out)
    }

    fn write_revoked(&self, devices: &[DeviceId]) -> Result<(), CaDirError> {
        let text: String = devices.iter().map(|d| format!("{d}\n")).collect();
        write_atomically(&self.path.join(REVOKED), &text)
    }

    /// `cascade admin revoke --device`: the relay refuses the devices at
    /// once, and a new signed revocation list, holding every device this
    /// organisation ever revoked, tells every client to remove them from
    /// their conversations. Returns the list's serial.
    pub async fn revoke(
        &self,
        admin: &AdminClient,
        devices: &[DeviceId],
        now: i64,
    ) -> Result<Option<u64>, CaDirError> {
        if self.is_admins() {
            // An appointed admin cuts the devices off at the relay now;
            // the signed list that makes every client remove them takes
            // the CA key (run the command again from the CA directory).
            let org = self.anchor()?.org;
            let admin = admin.as_org(self.authority(&org)?);
            for d in devices {
                admin.revoke_device(d).await?;
            }
            return Ok(None);
        }
        let ca = Arc::new(self.ca()?);
        let admin = admin.as_org(ca.clone());
        // Read both before the relay revokes anything: a directory that
        // cannot publish must not leave devices revoked on the relay only.
        let mut all = self.revoked()?;
        let serial = self.revocation_serial()? + 1;
        for d in devices {
            admin.revoke_device(d).await?;
            if !all.contains(d) {
                all.push(*d);
                // Recorded as soon as the relay has it, so a failure on a
                // later device loses none (running the command again
                // publishes them).
                self.write_revoked(&all)?;
            }
        }
        let doc = ca.sign_revocations(&all, serial, now)?;
        self.write_serial(REVOCATION_SERIAL, serial)?;
        admin.put_revocations(ca.org(), &doc).await?;
        Ok(Some(serial))
    }

    /// `cascade admin wipe`: orders one of the organisation's devices to
    /// erase its store and keys, and revokes it ([`CaDir::revoke`]). The
    /// relay refuses the device at once; when it next connects it finds
    /// the order, checks that its own organisation's CA signed it, erases
    /// everything and confirms. Returns the revocation list's serial.
    pub async fn wipe(
        &self,
        admin: &AdminClient,
        device: DeviceId,
        now: i64,
    ) -> Result<u64, CaDirError> {
        let ca = Arc::new(self.ca_for("a wipe order")?);
        let order = ca.sign_wipe_order(device, now)?;
        admin.as_org(ca).order_wipe(&device, &order).await?;
        Ok(self
            .revoke(admin, &[device], now)
            .await?
            .expect("the CA's directory publishes the list"))
    }

    /// `cascade admin wipes`: the organisation's wipe orders and whether
    /// each device confirmed its erasure. A confirmation counts only if it
    /// verifies with the key of a certificate this CA issued to that
    /// device, over an order this CA signed: the relay cannot make one up.
    pub async fn wipes(&self, admin: &AdminClient) -> Result<Vec<WipeReport>, CaDirError> {
        let anchor = self.anchor()?;
        let org = anchor.org.clone();
        let statuses = admin.as_org(self.authority(&org)?).wipes(&org).await?;
        Ok(statuses
            .into_iter()
            .map(|s| {
                let state = match (&s.confirmation, s.confirmed_at) {
                    (Some(signature), Some(_)) => match check_wipe(&s, signature, &anchor) {
                        Ok(()) => WipeState::Confirmed,
                        Err(why) => WipeState::Unverified(why.to_owned()),
                    },
                    _ => WipeState::Pending,
                };
                WipeReport {
                    device: s.device_id,
                    user: s.user_id,
                    device_name: s.device_name,
                    ordered_at: s.ordered_at,
                    confirmed_at: s.confirmed_at,
                    state,
                }
            })
            .collect())
    }

    /// `cascade admin revoke --user`: revokes every current device of a
    /// user of this organisation ([`CaDir::revoke`]). Returns the devices
    /// and the list's serial.
    pub async fn revoke_user(
        &self,
        admin: &AdminClient,
        user: &UserId,
        now: i64,
    ) -> Result<(Vec<DeviceId>, Option<u64>), CaDirError> {
        self.authority(&user.org())?;
        let entry = self
            .users(admin)
            .await?
            .into_iter()
            .map(|u| u.entry)
            .find(|e| &e.user_id == user)
            .ok_or_else(|| CaDirError::UnknownUser(user.clone()))?;
        let serial = self.revoke(admin, &entry.devices, now).await?;
        Ok((entry.devices, serial))
    }

    /// `cascade admin add-user`: creates a user of this organisation.
    pub async fn create_user(
        &self,
        admin: &AdminClient,
        user: &UserId,
        display_name: &str,
        role: &str,
    ) -> Result<(), CaDirError> {
        admin
            .as_org(self.authority(&user.org())?)
            .create_user(user, display_name, role)
            .await?;
        Ok(())
    }

    /// `cascade admin pending`: the organisation's devices waiting for a
    /// certificate (new, or due for renewal), as the relay lists them.
    pub async fn pending(
        &self,
        admin: &AdminClient,
    ) -> Result<Vec<cascade_protocol::http::PendingDevice>, CaDirError> {
        let org = self.anchor()?.org;
        Ok(admin
            .as_org(self.authority(&org)?)
            .pending_devices(&org)
            .await?)
    }

    /// `cascade admin users`: the organisation's users.
    pub async fn users(&self, admin: &AdminClient) -> Result<Vec<OrgUser>, CaDirError> {
        let org = self.anchor()?.org;
        Ok(admin.as_org(self.authority(&org)?).list_users(&org).await?)
    }

    /// Appends issued certificates to the audit log `issued.jsonl`.
    pub fn audit(&self, issued: &[Issued]) -> Result<(), CaDirError> {
        let p = self.path.join(AUDIT_LOG);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io(&p))?;
        for i in issued {
            let line = serde_json::to_string(i).expect("serialisable");
            writeln!(f, "{line}").map_err(io(&p))?;
        }
        Ok(())
    }
}

/// Checks a device's confirmation of its wipe (base64 `signature`) against
/// the key of the certificate `anchor` issued it, over the order `anchor`
/// signed; says what is wrong otherwise.
fn check_wipe(
    s: &cascade_protocol::http::WipeStatus,
    signature: &str,
    anchor: &TrustAnchor,
) -> Result<(), &'static str> {
    use base64::Engine as _;
    let order = s
        .order
        .to_document()
        .map_err(|_| "the order is malformed")?;
    let signed =
        verify_wipe_order(&order, anchor).map_err(|_| "the order was not signed by this CA")?;
    if signed.device != s.device_id {
        return Err("the order names another device");
    }
    let pem = s
        .certificate
        .as_deref()
        .ok_or("the device has no certificate to check it with")?;
    let der = pem_to_der(pem).map_err(|_| "the certificate is malformed")?;
    let member = verify_device_cert(
        &der,
        std::slice::from_ref(anchor),
        signed.issued_at,
        &|_, _| false,
    )
    .map_err(|_| "the certificate was not issued by this CA")?;
    if member.claims.device != s.device_id {
        return Err("the certificate is another device's");
    }
    let key = <[u8; 32]>::try_from(member.signature_key.as_slice())
        .ok()
        .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
        .ok_or("the certificate's key is not Ed25519")?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .ok()
        .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
        .ok_or("the confirmation is malformed")?;
    key.verify_strict(
        &cascade_protocol::auth::wiped_payload(&s.device_id, &order.body),
        &sig,
    )
    .map_err(|_| "the confirmation does not verify with the device's key")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn dir() -> (tempfile::TempDir, CaDir) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let org = OrgId::new("north").expect("valid");
        let dir = CaDir::create(tmp.path().join("ca"), &org, "North", NOW, 30).expect("CA");
        (tmp, dir)
    }

    /// A relay that is never reached: the tests show the directory fails
    /// before anything would be sent.
    fn nowhere() -> AdminClient {
        AdminClient::new("http://127.0.0.1:9", "token").expect("loopback")
    }

    #[test]
    fn a_fresh_directory_starts_at_serial_zero_with_nothing_revoked() {
        let (_tmp, dir) = dir();
        assert_eq!(dir.trust_serial().expect("serial"), 0);
        assert_eq!(dir.revocation_serial().expect("serial"), 0);
        assert_eq!(dir.revoked().expect("revoked"), Vec::<DeviceId>::new());
    }

    #[tokio::test]
    async fn a_corrupt_serial_file_is_an_error_not_a_restart() {
        let (_tmp, dir) = dir();
        std::fs::write(dir.path().join(TRUST_SERIAL), "7\n").expect("write");
        assert_eq!(dir.trust_serial().expect("serial"), 7);
        std::fs::write(dir.path().join(TRUST_SERIAL), "\u{0}\u{0}garbage").expect("write");
        assert!(matches!(
            dir.trust_serial(),
            Err(CaDirError::CorruptSerial { path }) if path.ends_with(TRUST_SERIAL)
        ));
        assert!(matches!(
            dir.publish_trust_list(&nowhere(), NOW).await,
            Err(CaDirError::CorruptSerial { .. })
        ));
        // The same for revocations, before the relay is asked to revoke.
        std::fs::write(dir.path().join(REVOCATION_SERIAL), "").expect("write");
        assert!(matches!(
            dir.revoke(&nowhere(), &[DeviceId([1; 16])], NOW).await,
            Err(CaDirError::CorruptSerial { path }) if path.ends_with(REVOCATION_SERIAL)
        ));
        assert_eq!(dir.revoked().expect("revoked"), Vec::<DeviceId>::new());
    }

    #[tokio::test]
    async fn an_unreadable_revocation_file_is_an_error_not_an_empty_list() {
        let (_tmp, dir) = dir();
        let path = dir.path().join(REVOKED);
        std::fs::write(
            &path,
            format!("{}\n\n{}\n", DeviceId([1; 16]), DeviceId([2; 16])),
        )
        .expect("write");
        assert_eq!(
            dir.revoked().expect("revoked"),
            vec![DeviceId([1; 16]), DeviceId([2; 16])]
        );
        // A damaged line.
        std::fs::write(&path, format!("{}\nnot-a-device\n", DeviceId([1; 16]))).expect("write");
        assert!(matches!(
            dir.revoked(),
            Err(CaDirError::CorruptRevocations { line: 2, .. })
        ));
        assert!(matches!(
            dir.revoke(&nowhere(), &[DeviceId([3; 16])], NOW).await,
            Err(CaDirError::CorruptRevocations { .. })
        ));
        // A file that exists but cannot be read (a directory in its place
        // stands in for a permission or disk error, even for root).
        std::fs::remove_file(&path).expect("remove");
        std::fs::create_dir(&path).expect("mkdir");
        assert!(matches!(dir.revoked(), Err(CaDirError::Io { .. })));
        assert!(matches!(
            dir.revoke(&nowhere(), &[DeviceId([3; 16])], NOW).await,
            Err(CaDirError::Io { .. })
        ));
    }

    #[test]
    fn a_ca_key_is_never_replaced() {
        let (_tmp, dir) = dir();
        let org = OrgId::new("north").expect("valid");
        let before = std::fs::read(dir.key_path()).expect("key");
        assert!(matches!(
            CaDir::create(dir.path(), &org, "Again", NOW, 30),
            Err(CaDirError::KeyExists { .. })
        ));
        let other = OrgCa::generate(&org, "Other", NOW, 30).expect("CA");
        assert!(matches!(
            CaDir::init(dir.path(), &other),
            Err(CaDirError::KeyExists { .. })
        ));
        assert_eq!(std::fs::read(dir.key_path()).expect("key"), before);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.key_path())
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_partner_is_pinned_only_with_its_fingerprint() {
        let (_tmp, dir) = dir();
        let east =
            OrgCa::generate(&OrgId::new("east").expect("valid"), "East", NOW, 30).expect("CA");
        let wrong = fingerprint_hex(dir.ca().expect("CA").cert_der());
        assert!(matches!(
            dir.add_partner(&east.cert_pem(), &wrong),
            Err(CaDirError::FingerprintMismatch { actual }) if actual == east.anchor().fingerprint()
        ));
        assert!(dir.partners().expect("partners").is_empty());
        // Colons and case do not matter.
        let fp = east.anchor().fingerprint().to_ascii_lowercase();
        assert_eq!(
            dir.add_partner(&east.cert_pem(), &fp)
                .expect("pinned")
                .as_str(),
            "east"
        );
        assert_eq!(dir.partners().expect("partners"), vec![east.anchor()]);
        assert!(dir.remove_partner(&east.org().clone()).expect("removed"));
        assert!(!dir.remove_partner(&east.org().clone()).expect("none left"));
    }
}
