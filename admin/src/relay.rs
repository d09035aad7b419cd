//! The relay's admin API (`/v1/admin/…`): the relay operator registers
//! organisations with its admin token; an organisation's admins, signing
//! each request with their CA key, create users and enrolment tokens, list
//! and certify waiting devices, publish signed lists and revoke devices.

use cascade_protocol::http::OrgUser;
use cascade_protocol::http::{
    CreateOrg, CreateUser, EnrolmentToken, HttpError, IssueEnrolmentToken, PendingDevice,
    SignedDocumentJson, UploadCertificate,
};
use cascade_protocol::{OrgId, UserId};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The relay could not be reached.
    #[error("relay unreachable: {0}")]
    Unreachable(String),
    /// The relay address may not be used (plain HTTP to another machine,
    /// a pinned CA that is not a certificate, ...).
    #[error(transparent)]
    Transport(#[from] cascade_core::transport::TransportError),
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
    Certificate(#[from] cascade_core::identity::CertError),
    /// The relay listed a device with a key that is not hex.
    #[error("device {0} has a malformed key")]
    BadKey(cascade_protocol::DeviceId),
}

/// Why a call did not reach the relay: TLS's reason when it was TLS.
fn unreachable(e: reqwest::Error) -> AdminError {
    match cascade_core::transport::tls_failure(&e) {
        Some(why) => {
            AdminError::Unreachable(format!("the relay's TLS certificate is not trusted: {why}"))
        }
        None => AdminError::Unreachable(e.without_url().to_string()),
    }
}

/// A client of the relay's admin API, with one of its two authorities: the
/// relay operator's admin token (creating organisations), or an
/// organisation's CA key ([`AdminClient::as_org`]: everything done for that
/// organisation, each request signed, `docs/protocol.md` §3.2.1).
#[derive(Clone)]
pub struct AdminClient {
    base: String,
    token: Option<String>,
    org: Option<Arc<dyn crate::OrgSigner>>,
    http: reqwest::Client,
}

impl AdminClient {
    /// An admin client for the relay at `server_url` (e.g.
    /// `https://relay.example.nhs.uk`, or `http://` to this machine) with
    /// its admin token, verifying the relay against the system's roots.
    pub fn new(server_url: &str, token: &str) -> Result<Self, AdminError> {
        Self::pinned(server_url, None, token)
    }

    /// Like [`AdminClient::new`], but the relay's TLS certificate must
    /// chain to `server_ca` (PEM) when given.
    pub fn pinned(
        server_url: &str,
        server_ca: Option<&str>,
        token: &str,
    ) -> Result<Self, AdminError> {
        let mut client = Self::without_token(server_url, server_ca)?;
        client.token = Some(token.trim().to_owned());
        Ok(client)
    }

    /// A client without the relay operator's token: what an organisation's
    /// admins use, with [`AdminClient::as_org`].
    pub fn without_token(server_url: &str, server_ca: Option<&str>) -> Result<Self, AdminError> {
        Ok(Self {
            base: server_url.trim_end_matches('/').to_owned(),
            token: None,
            org: None,
            http: cascade_core::transport::http_client(server_url, server_ca)?,
        })
    }

    /// The same relay, acting for `signer`'s organisation: every request
    /// is signed with its key (the CA's, or an appointed admin's), and the
    /// operator's token is not sent.
    pub fn as_org(&self, signer: Arc<dyn crate::OrgSigner>) -> Self {
        Self {
            base: self.base.clone(),
            token: None,
            org: Some(signer),
            http: self.http.clone(),
        }
    }

    /// The relay's address, as given.
    pub fn server_url(&self) -> &str {
        &self.base
    }

    /// Sends one request with this client's authority: the organisation's
    /// signature over the method, path, time, nonce and body, or the
    /// operator's token.
    async fn send<R: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<R, AdminError> {
        let url = format!("{}{path}", self.base);
        let body = body
            .map(|b| serde_json::to_vec(b).expect("admin bodies serialise"))
            .unwrap_or_default();
        let mut request = self.http.request(method.clone(), &url);
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        if let Some(ca) = &self.org {
            let parsed = reqwest::Url::parse(&url)
                .map_err(|e| AdminError::Unreachable(format!("bad relay address: {e}")))?;
            let signed_path = match parsed.query() {
                Some(q) => format!("{}?{q}", parsed.path()),
                None => parsed.path().to_owned(),
            };
            let header = ca
                .authorize(method.as_str(), &signed_path, &body, unix_now())
                .map_err(|e| AdminError::Unreachable(format!("could not sign: {e}")))?;
            request = request.header(reqwest::header::AUTHORIZATION, header);
        } else if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let resp = request.send().await.map_err(unreachable)?;
        Self::answer(resp).await
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, AdminError> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, AdminError> {
        self.send(reqwest::Method::GET, path, None::<&()>).await
    }

    async fn put<B: Serialize>(&self, path: &str, body: &B) -> Result<(), AdminError> {
        self.send::<serde_json::Value>(reqwest::Method::PUT, path, Some(body))
            .await
            .map(|_| ())
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
        let text = resp.text().await.map_err(unreachable)?;
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
        self.get(&format!("/v1/admin/orgs/{org_id}/pending-devices"))
            .await
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
        self.put(
            &format!("/v1/admin/orgs/{org_id}/ca"),
            &cascade_protocol::http::ReplaceCa {
                ca_certificate: ca_certificate.to_owned(),
            },
        )
        .await
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

    /// Gives the relay the organisation's signed order to wipe a device;
    /// the relay revokes the device and keeps the order for it.
    pub async fn order_wipe(
        &self,
        device: &cascade_protocol::DeviceId,
        order: &cascade_protocol::SignedDocument,
    ) -> Result<(), AdminError> {
        self.put_signed(&format!("/v1/admin/devices/{device}/wipe"), order)
            .await
    }

    /// The organisation's wipe orders and the devices' confirmations, as
    /// the relay reports them (check them with
    /// [`crate::CaDir::wipes`]).
    pub async fn wipes(
        &self,
        org_id: &OrgId,
    ) -> Result<Vec<cascade_protocol::http::WipeStatus>, AdminError> {
        self.get(&format!("/v1/admin/orgs/{org_id}/wipes")).await
    }

    /// What the relay publishes about an organisation (public, unsigned):
    /// its name and CA certificate.
    pub async fn org_info(
        &self,
        org_id: &OrgId,
    ) -> Result<cascade_protocol::http::OrgInfo, AdminError> {
        let resp = self
            .http
            .get(format!("{}/v1/orgs/{org_id}", self.base))
            .send()
            .await
            .map_err(unreachable)?;
        Self::answer(resp).await
    }

    /// Appoints the organisation's admins: its roster, signed by its CA
    /// (the request must be signed by the CA key too).
    pub async fn put_admin_roster(
        &self,
        org_id: &OrgId,
        doc: &cascade_protocol::SignedDocument,
    ) -> Result<(), AdminError> {
        self.put_signed(&format!("/v1/admin/orgs/{org_id}/admins"), doc)
            .await
    }

    /// The organisation's admin roster as the relay holds it (check it
    /// with `cascade_core::identity::verify_admin_roster`).
    pub async fn admin_roster(
        &self,
        org_id: &OrgId,
    ) -> Result<cascade_protocol::SignedDocument, AdminError> {
        let doc: SignedDocumentJson = self.get(&format!("/v1/admin/orgs/{org_id}/admins")).await?;
        doc.to_document().map_err(|why| AdminError::Refused {
            status: 200,
            code: "bad_response".into(),
            message: why.into(),
        })
    }

    async fn put_signed(
        &self,
        path: &str,
        doc: &cascade_protocol::SignedDocument,
    ) -> Result<(), AdminError> {
        self.put(path, &SignedDocumentJson::from_document(doc))
            .await
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
        ca: &crate::OrgCa,
        now: i64,
        valid_days: i64,
    ) -> Result<Vec<Issued>, IssueError> {
        let mut issued = Vec::new();
        for p in self.pending_devices(ca.org()).await? {
            let key = hex::decode(&p.signature_key).map_err(|_| IssueError::BadKey(p.device_id))?;
            let claims = cascade_core::identity::DeviceClaims {
                user: p.user_id.clone(),
                device: p.device_id,
                display_name: p.display_name.clone(),
                role: p.role.clone(),
            };
            let der = ca.issue_device(&claims, &key, now, valid_days)?;
            self.upload_certificate(&p.device_id, &cascade_core::identity::der_to_pem(&der))
                .await?;
            issued.push(Issued {
                device: p.device_id,
                user: p.user_id,
                display_name: p.display_name,
                role: p.role,
                device_name: p.device_name,
                fingerprint: cascade_core::identity::fingerprint(&der),
                issued_at: now,
            });
        }
        Ok(issued)
    }

    /// Lists an organisation's users.
    pub async fn list_users(&self, org_id: &OrgId) -> Result<Vec<OrgUser>, AdminError> {
        self.get(&format!("/v1/admin/orgs/{org_id}/users")).await
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
