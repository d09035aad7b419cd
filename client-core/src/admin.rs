//! The relay's admin API, for provisioning tools (the `cascade admin`
//! commands). Authenticated with the relay's admin token.

use cascade_protocol::http::{
    CreateOrg, CreateUser, EnrolmentToken, HttpError, IssueEnrolmentToken, PendingDevice,
    SignedDocumentJson, UploadCertificate,
};
use cascade_protocol::{OrgId, UserEntry, UserId};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The relay could not be reached.
    #[error("relay unreachable: {0}")]
    Unreachable(String),
    /// The relay refused the call; `code` is its stable error code.
    #[error("{message} ({code})")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Stable machine-readable code, e.g. `unauthorized`, `conflict`.
        code: String,
        /// Explanation.
        message: String,
    },
}

/// A certificate issued by [`AdminClient::issue_pending`]: one line of the
/// admin's audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Issued {
    /// The device.
    pub device: cascade_protocol::DeviceId,
    /// Its user.
    pub user: UserId,
    /// The certified name.
    pub display_name: String,
    /// The certified role.
    pub role: String,
    /// The device's own name.
    pub device_name: String,
    /// SHA-256 fingerprint of the certificate.
    pub fingerprint: String,
    /// When, seconds since the Unix epoch.
    pub issued_at: i64,
}

/// Why issuing certificates failed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The relay refused or could not be reached.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The certificate could not be made.
    #[error(transparent)]
    Certificate(#[from] crate::identity::CertError),
    /// The relay listed a device with a key that is not hex.
    #[error("device {0} has a malformed key")]
    BadKey(cascade_protocol::DeviceId),
}

/// A client of the relay's admin API.
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// An admin client for the relay at `server_url` (e.g.
    /// `http://127.0.0.1:7171`) with its admin token.
    pub fn new(server_url: &str, token: &str) -> Self {
        Self {
            base: server_url.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, AdminError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| AdminError::Unreachable(e.without_url().to_string()))?;
        Self::answer(resp).await
    }

    async fn answer<R: DeserializeOwned>(resp: reqwest::Response) -> Result<R, AdminError> {
        let status = resp.status();
        if !status.is_success() {
            let (code, message) = match resp.json::<HttpError>().await {
                Ok(e) => (e.code, e.message),
                Err(_) => ("http".into(), status.to_string()),
            };
            return Err(AdminError::Refused {
                status: status.as_u16(),
                code,
                message,
            });
        }
        let text = resp
            .text()
            .await
            .map_err(|e| AdminError::Unreachable(e.without_url().to_string()))?;
        serde_json::from_str(if text.trim().is_empty() {
            "null"
        } else {
            &text
        })
        .map_err(|_| AdminError::Refused {
            status: status.as_u16(),
            code: "bad_response".into(),
            message: "unexpected answer from the relay".into(),
        })
    }

    /// Registers an organisation with its CA certificate (PEM, from
    /// `cascade admin org init`).
    pub async fn create_org(
        &self,
        org_id: &OrgId,
        display_name: &str,
        ca_certificate: &str,
    ) -> Result<(), AdminError> {
        self.post::<_, serde_json::Value>(
            "/v1/admin/orgs",
            &CreateOrg {
                org_id: org_id.clone(),
                display_name: display_name.to_owned(),
                ca_certificate: Some(ca_certificate.to_owned()),
            },
        )
        .await
        .map(|_| ())
    }

    /// Devices of the organisation enrolled with a token and waiting for a
    /// certificate.
    pub async fn pending_devices(&self, org_id: &OrgId) -> Result<Vec<PendingDevice>, AdminError> {
        let resp = self
            .http
            .get(format!(
                "{}/v1/admin/orgs/{org_id}/pending-devices",
                self.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| AdminError::Unreachable(e.without_url().to_string()))?;
        Self::answer(resp).await
    }

    /// Uploads a device's certificate (PEM).
    pub async fn upload_certificate(
        &self,
        device: &cascade_protocol::DeviceId,
        certificate: &str,
    ) -> Result<(), AdminError> {
        self.post::<_, serde_json::Value>(
            &format!("/v1/admin/devices/{device}/certificate"),
            &UploadCertificate {
                certificate: certificate.to_owned(),
            },
        )
        .await
        .map(|_| ())
    }

    /// Publishes the organisation's signed trust list.
    pub async fn put_trust_list(
        &self,
        org_id: &OrgId,
        doc: &cascade_protocol::SignedDocument,
    ) -> Result<(), AdminError> {
        self.put_signed(&format!("/v1/admin/orgs/{org_id}/trust-list"), doc)
            .await
    }

    /// Publishes the organisation's signed revocation list.
    pub async fn put_revocations(
        &self,
        org_id: &OrgId,
        doc: &cascade_protocol::SignedDocument,
    ) -> Result<(), AdminError> {
        self.put_signed(&format!("/v1/admin/orgs/{org_id}/revocations"), doc)
            .await
    }

    /// Replaces the organisation's CA certificate on the relay (a CA
    /// rotation).
    pub async fn replace_ca(&self, org_id: &OrgId, ca_certificate: &str) -> Result<(), AdminError> {
        let resp = self
            .http
            .put(format!("{}/v1/admin/orgs/{org_id}/ca", self.base))
            .bearer_auth(&self.token)
            .json(&cascade_protocol::http::ReplaceCa {
                ca_certificate: ca_certificate.to_owned(),
            })
            .send()
            .await
            .map_err(|e| AdminError::Unreachable(e.without_url().to_string()))?;
        Self::answer::<serde_json::Value>(resp).await.map(|_| ())
    }

    /// Tells the relay to refuse a device from now on (and drop its
    /// connection). Clients act on the signed revocation list.
    pub async fn revoke_device(
        &self,
        device: &cascade_protocol::DeviceId,
    ) -> Result<(), AdminError> {
        self.post::<_, serde_json::Value>(
            &format!("/v1/admin/devices/{device}/revoke"),
            &serde_json::json!({}),
        )
        .await
        .map(|_| ())
    }

    async fn put_signed(
        &self,
        path: &str,
        doc: &cascade_protocol::SignedDocument,
    ) -> Result<(), AdminError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let resp = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&SignedDocumentJson {
                body: b64.encode(&doc.body),
                signature: b64.encode(&doc.signature),
                co_signature: doc.co_signature.as_ref().map(|c| b64.encode(c)),
            })
            .send()
            .await
            .map_err(|e| AdminError::Unreachable(e.without_url().to_string()))?;
        Self::answer::<serde_json::Value>(resp).await.map(|_| ())
    }

    /// Creates a user in an existing organisation.
    pub async fn create_user(
        &self,
        user_id: &UserId,
        display_name: &str,
        role: &str,
    ) -> Result<(), AdminError> {
        self.post::<_, serde_json::Value>(
            "/v1/admin/users",
            &CreateUser {
                user_id: user_id.clone(),
                display_name: display_name.to_owned(),
                role: role.to_owned(),
            },
        )
        .await
        .map(|_| ())
    }

    /// Issues a one-time enrolment token for one device of the user.
    pub async fn issue_enrolment_token(
        &self,
        user_id: &UserId,
        ttl_secs: Option<u64>,
    ) -> Result<EnrolmentToken, AdminError> {
        self.post(
            "/v1/admin/enrolment-tokens",
            &IssueEnrolmentToken {
                user_id: user_id.clone(),
                ttl_secs,
            },
        )
        .await
    }

    /// Issues certificates for every device of the CA's organisation that
    /// waits for one, with the claims (name, role) the relay's directory
    /// holds, valid for `valid_days` from `now` (seconds). Returns what was
    /// issued, for the admin's audit log.
    pub async fn issue_pending(
        &self,
        ca: &crate::identity::OrgCa,
        now: i64,
        valid_days: i64,
    ) -> Result<Vec<Issued>, IssueError> {
        let mut issued = Vec::new();
        for p in self.pending_devices(ca.org()).await? {
            let key = hex::decode(&p.signature_key).map_err(|_| IssueError::BadKey(p.device_id))?;
            let claims = crate::identity::DeviceClaims {
                user: p.user_id.clone(),
                device: p.device_id,
                display_name: p.display_name.clone(),
                role: p.role.clone(),
            };
            let der = ca.issue_device(&claims, &key, now, valid_days)?;
            self.upload_certificate(&p.device_id, &crate::identity::der_to_pem(&der))
                .await?;
            issued.push(Issued {
                device: p.device_id,
                user: p.user_id,
                display_name: p.display_name,
                role: p.role,
                device_name: p.device_name,
                fingerprint: crate::identity::fingerprint(&der),
                issued_at: now,
            });
        }
        Ok(issued)
    }

    /// Lists an organisation's users.
    pub async fn list_users(&self, org_id: &OrgId) -> Result<Vec<UserEntry>, AdminError> {
        let resp = self
            .http
            .get(format!("{}/v1/admin/orgs/{org_id}/users", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| AdminError::Unreachable(e.without_url().to_string()))?;
        Self::answer(resp).await
    }
}

/// An organisation's CA directory on an admin's machine, as made by
/// `cascade admin org init`: `ca-key.pem` (owner-only), `ca-cert.pem`,
/// `trusted/<org>.pem` for each pinned partner, `trust-serial`, and the
/// audit log `issued.jsonl` of every certificate issued.
pub struct CaDir {
    path: std::path::PathBuf,
}

/// Why a CA directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaDirError {
    /// Reading or writing the directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A certificate or key in it is not acceptable.
    #[error(transparent)]
    Certificate(#[from] crate::identity::CertError),
    /// The partner certificate's fingerprint is not the one given.
    #[error("the certificate's fingerprint is {actual}, not the one confirmed out of band")]
    FingerprintMismatch {
        /// The certificate's real fingerprint.
        actual: String,
    },
    /// The relay refused.
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// File name of a pinned partner CA: its organisation and the start of its
/// fingerprint, so that both CAs of a partner's rotation can be pinned.
fn partner_file(a: &crate::identity::TrustAnchor) -> String {
    format!(
        "{}-{}.pem",
        a.org,
        &crate::identity::fingerprint_hex(&a.cert_der)[..16]
    )
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CaDirError + '_ {
    move |source| CaDirError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl CaDir {
    /// A CA directory at `path`.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Creates a CA directory holding `ca`: the key owner-only (0600), never
    /// replacing an existing key.
    pub fn init(
        path: impl Into<std::path::PathBuf>,
        ca: &crate::identity::OrgCa,
    ) -> Result<CaDir, CaDirError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let dir = CaDir::new(path);
        std::fs::create_dir_all(&dir.path).map_err(io(&dir.path))?;
        let key = dir.path.join("ca-key.pem");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .map_err(io(&key))?
            .write_all(ca.key_pem().as_bytes())
            .map_err(io(&key))?;
        let cert = dir.path.join("ca-cert.pem");
        std::fs::write(&cert, ca.cert_pem()).map_err(io(&cert))?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Rotates the organisation's CA: makes a new CA in `new_dir` (carrying
    /// over pinned partners, revocations and serials), publishes a trust
    /// list signed by the current CA that names the new one as successor
    /// (so devices accept certificates from either), and registers the new
    /// CA with the relay. Then re-issue every device from the new directory
    /// (`issue`; the relay lists them) and give partners the new
    /// fingerprint to pin.
    pub async fn rotate(
        &self,
        admin: &AdminClient,
        new_dir: &std::path::Path,
        name: &str,
        now: i64,
    ) -> Result<CaDir, CaDirError> {
        let old = self.ca()?;
        let new = crate::identity::OrgCa::generate(old.org(), name, now, 3650)?;
        let next = CaDir::init(new_dir, &new)?;
        for file in ["revoked.txt", "trust-serial", "revocation-serial"] {
            let from = self.path.join(file);
            if from.exists() {
                let to = next.path.join(file);
                std::fs::copy(&from, &to).map_err(io(&to))?;
            }
        }
        let partners = self.partners()?;
        let trusted = next.path.join("trusted");
        std::fs::create_dir_all(&trusted).map_err(io(&trusted))?;
        for p in &partners {
            let to = trusted.join(partner_file(p));
            std::fs::write(&to, crate::identity::der_to_pem(&p.cert_der)).map_err(io(&to))?;
        }
        let serial = self.next_serial("trust-serial")?;
        let ders: Vec<Vec<u8>> = partners.into_iter().map(|a| a.cert_der).collect();
        let doc = old.sign_trust_list_with_successor(&ders, Some(new.cert_der()), serial, now)?;
        // Co-signed by the new CA: devices already moved to it (and new
        // devices enrolled under it) accept the list too.
        let doc = new.co_sign(doc)?;
        admin.put_trust_list(old.org(), &doc).await?;
        for dir in [&self.path, &next.path] {
            let p = dir.join("trust-serial");
            std::fs::write(&p, serial.to_string()).map_err(io(&p))?;
        }
        admin.replace_ca(old.org(), &new.cert_pem()).await?;
        Ok(next)
    }

    fn next_serial(&self, file: &str) -> Result<u64, CaDirError> {
        let p = self.path.join(file);
        Ok(std::fs::read_to_string(&p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
            + 1)
    }

    /// Loads the CA.
    pub fn ca(&self) -> Result<crate::identity::OrgCa, CaDirError> {
        let key = self.path.join("ca-key.pem");
        let cert = self.path.join("ca-cert.pem");
        let key_pem = std::fs::read_to_string(&key).map_err(io(&key))?;
        let cert_pem = std::fs::read_to_string(&cert).map_err(io(&cert))?;
        Ok(crate::identity::OrgCa::from_pem(&key_pem, &cert_pem)?)
    }

    /// The pinned partner CA certificates (DER), sorted by organisation.
    pub fn partners(&self) -> Result<Vec<crate::identity::TrustAnchor>, CaDirError> {
        let dir = self.path.join("trusted");
        let mut out = Vec::new();
        if dir.exists() {
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let p = entry.map_err(io(&dir))?.path();
                let pem = std::fs::read_to_string(&p).map_err(io(&p))?;
                out.push(crate::identity::TrustAnchor::from_der(
                    &crate::identity::pem_to_der(&pem)?,
                )?);
            }
        }
        out.sort_by(|a, b| a.org.cmp(&b.org));
        Ok(out)
    }

    /// Pins a partner's CA certificate after checking the fingerprint the
    /// admins confirmed out of band (colons and case do not matter).
    pub fn add_partner(&self, cert_pem: &str, fingerprint: &str) -> Result<OrgId, CaDirError> {
        let der = crate::identity::pem_to_der(cert_pem)?;
        let anchor = crate::identity::TrustAnchor::from_der(&der)?;
        let want: String = fingerprint
            .chars()
            .filter(|c| c.is_ascii_hexdigit())
            .collect::<String>()
            .to_ascii_lowercase();
        let actual = crate::identity::fingerprint_hex(&der);
        if want != actual {
            return Err(CaDirError::FingerprintMismatch {
                actual: anchor.fingerprint(),
            });
        }
        let dir = self.path.join("trusted");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let p = dir.join(partner_file(&anchor));
        std::fs::write(&p, crate::identity::der_to_pem(&der)).map_err(io(&p))?;
        Ok(anchor.org)
    }

    /// Unpins a partner (every CA of theirs that was pinned, e.g. both
    /// sides of their rotation). Returns whether any was pinned.
    pub fn remove_partner(&self, org: &OrgId) -> Result<bool, CaDirError> {
        let mut removed = false;
        for a in self.partners()? {
            if &a.org == org {
                let p = self.path.join("trusted").join(partner_file(&a));
                std::fs::remove_file(&p).map_err(io(&p))?;
                removed = true;
            }
        }
        Ok(removed)
    }

    /// Signs the current partner list with a fresh serial and publishes it
    /// on the relay. Returns the serial.
    pub async fn publish_trust_list(
        &self,
        admin: &AdminClient,
        now: i64,
    ) -> Result<u64, CaDirError> {
        let ca = self.ca()?;
        let serial_path = self.path.join("trust-serial");
        let last: u64 = std::fs::read_to_string(&serial_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let serial = last + 1;
        let partners: Vec<Vec<u8>> = self.partners()?.into_iter().map(|a| a.cert_der).collect();
        let doc = ca.sign_trust_list(&partners, serial, now)?;
        admin.put_trust_list(ca.org(), &doc).await?;
        std::fs::write(&serial_path, serial.to_string()).map_err(io(&serial_path))?;
        Ok(serial)
    }

    /// The devices this organisation has revoked (`revoked.txt`).
    pub fn revoked(&self) -> Result<Vec<cascade_protocol::DeviceId>, CaDirError> {
        let p = self.path.join("revoked.txt");
        let Ok(text) = std::fs::read_to_string(&p) else {
            return Ok(Vec::new());
        };
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Revokes devices: the relay refuses them at once, and a new signed
    /// revocation list tells every client to remove them from their
    /// conversations. Returns the list's serial.
    pub async fn revoke(
        &self,
        admin: &AdminClient,
        devices: &[cascade_protocol::DeviceId],
        now: i64,
    ) -> Result<u64, CaDirError> {
        let ca = self.ca()?;
        let mut all = self.revoked()?;
        for d in devices {
            admin.revoke_device(d).await?;
            if !all.contains(d) {
                all.push(*d);
            }
        }
        let p = self.path.join("revoked.txt");
        let text: String = all.iter().map(|d| format!("{d}\n")).collect();
        std::fs::write(&p, text).map_err(io(&p))?;
        let serial_path = self.path.join("revocation-serial");
        let serial = std::fs::read_to_string(&serial_path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        let doc = ca.sign_revocations(&all, serial, now)?;
        admin.put_revocations(ca.org(), &doc).await?;
        std::fs::write(&serial_path, serial.to_string()).map_err(io(&serial_path))?;
        Ok(serial)
    }

    /// Appends issued certificates to the audit log `issued.jsonl`.
    pub fn audit(&self, issued: &[Issued]) -> Result<(), CaDirError> {
        use std::io::Write as _;
        let p = self.path.join("issued.jsonl");
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
