//! JSON bodies of the plain-HTTP API.
//!
//! - `GET /health` → `200 ok`.
//! - Admin API. The relay operator's `Authorization: Bearer <admin token>`:
//!   `POST /v1/admin/orgs` ([`CreateOrg`] → `201`, the organisation echoed).
//!   Signed by the organisation's CA key ([`crate::org_auth`]) and acting
//!   for it alone: `PUT /v1/admin/orgs/{org}/ca` ([`ReplaceCa`] → `204`),
//!   `POST /v1/admin/users` ([`CreateUser`] → `201`, the user's
//!   [`UserEntry`](crate::UserEntry)), `POST /v1/admin/enrolment-tokens`
//!   ([`IssueEnrolmentToken`] → `201`, [`EnrolmentToken`]),
//!   `GET /v1/admin/orgs/{org}/users` (→ a JSON array of [`OrgUser`]: a
//!   `UserEntry` and its devices' details).
//!   `GET /v1/admin/orgs/{org}/pending-devices` (→ a JSON array of
//!   [`PendingDevice`]: enrolled devices awaiting a certificate),
//!   `POST /v1/admin/devices/{device}/certificate` ([`UploadCertificate`] →
//!   `204`), `PUT /v1/admin/orgs/{org}/trust-list` ([`SignedDocumentJson`] →
//!   `204`), `POST /v1/admin/devices/{device}/revoke` (→ `204`: the relay
//!   refuses the device from then on and drops its connection),
//!   `PUT /v1/admin/orgs/{org}/revocations` ([`SignedDocumentJson`] → `204`:
//!   the signed revocation list clients act on).
//! - `POST /v1/enrol` ([`EnrolRequest`] → [`EnrolResponse`]), authenticated by
//!   the one-time token in the body.
//! - `GET /v1/orgs/{org}` (→ [`OrgInfo`]): public; a client checks the CA
//!   certificate's fingerprint against the one its admin gave it.
//! - `GET /v1/orgs/{org}/revocations` (→ [`SignedDocumentJson`], `404` when
//!   there is none): public; the organisation's signed revocation list, as
//!   a device the relay refuses checks whether it was revoked.
//!
//! Errors come back as a non-2xx status with an [`HttpError`] body.

use serde::{Deserialize, Serialize};

use crate::{DeviceId, OrgId, UserId};

/// `POST /v1/admin/orgs`: create an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOrg {
    /// The new organisation's id.
    pub org_id: OrgId,
    /// Its name as people know it.
    pub display_name: String,
    /// The organisation's CA certificate (PEM), made by
    /// `cascade admin org init`. Its key never reaches the relay.
    #[serde(default)]
    pub ca_certificate: Option<String>,
}

/// `PUT /v1/admin/orgs/{org}/ca`: replace the organisation's CA certificate
/// during a CA rotation (after publishing a trust list, signed by the old
/// CA, that names the new one as successor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceCa {
    /// The new CA certificate (PEM).
    pub ca_certificate: String,
}

/// `GET /v1/orgs/{org}`: what the relay publishes about an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgInfo {
    /// The organisation.
    pub org_id: OrgId,
    /// Its name.
    pub display_name: String,
    /// Its CA certificate (PEM), if registered.
    pub ca_certificate: Option<String>,
}

/// One user of `GET /v1/admin/orgs/{org}/users`: the directory entry, and
/// for the organisation's admins what each current device is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgUser {
    /// The directory entry (its `devices` lists the current device ids).
    #[serde(flatten)]
    pub entry: crate::UserEntry,
    /// The same devices, in the same order, with what the relay knows of
    /// them. Absent from relays before it was added.
    #[serde(default)]
    pub device_details: Vec<OrgDevice>,
}

/// What the relay knows of one current (unrevoked) device, for its
/// organisation's admins: enough to tell which one was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgDevice {
    /// The device.
    pub device_id: DeviceId,
    /// The name the device gave itself at enrolment.
    pub device_name: String,
    /// When it enrolled, seconds since the Unix epoch.
    pub enrolled_at: u64,
    /// When it last authenticated, seconds since the Unix epoch; 0 if
    /// never recorded.
    pub last_seen: u64,
    /// Whether it has a certificate from the organisation's CA (`false`:
    /// waiting for `cascade admin issue`).
    pub certified: bool,
}

/// A device enrolled with a token and waiting for its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDevice {
    /// The device.
    pub device_id: DeviceId,
    /// Its user.
    pub user_id: UserId,
    /// The user's display name, as the relay's directory has it.
    pub display_name: String,
    /// The user's role, as the relay's directory has it.
    pub role: String,
    /// The name the device gave itself.
    pub device_name: String,
    /// The device's Ed25519 signature key, hex: what the certificate binds.
    pub signature_key: String,
    /// `true` if the device has a certificate that expires within
    /// [`RENEWAL_WINDOW_SECS`](crate::limits::RENEWAL_WINDOW_SECS): issue
    /// it a new one for the same key.
    #[serde(default)]
    pub renewal: bool,
}

/// `POST /v1/admin/devices/{device}/certificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadCertificate {
    /// The device certificate (PEM), issued by the organisation's CA for
    /// exactly this device's key.
    pub certificate: String,
}

/// `POST /v1/orgs/{org}/devices/{device}/wiped`: a device's confirmation
/// that it erased itself on its organisation's wipe order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WipeConfirmation {
    /// Ed25519 signature, standard base64, by the device's enrolled
    /// signature key over [`crate::auth::wiped_payload`].
    pub signature: String,
}

/// One entry of `GET /v1/admin/orgs/{org}/wipes`: a device its admins
/// ordered wiped, and whether it confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WipeStatus {
    /// The device.
    pub device_id: DeviceId,
    /// Its user.
    pub user_id: UserId,
    /// The name it was enrolled with.
    pub device_name: String,
    /// When the relay stored the order, seconds since the Unix epoch.
    pub ordered_at: u64,
    /// When the device confirmed its erasure; `None` until it does.
    pub confirmed_at: Option<u64>,
    /// The device's confirming signature (standard base64), for the admin
    /// to check against the key they certified; `None` until confirmed.
    pub confirmation: Option<String>,
    /// The signed order (so the admin can check the signature covers it).
    pub order: SignedDocumentJson,
    /// The device's certificate (PEM) as the relay holds it, for the admin
    /// to check against their own CA before trusting its key; `None` if
    /// it was never issued one.
    pub certificate: Option<String>,
}

/// A [`SignedDocument`](crate::SignedDocument) in JSON: base64 fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDocumentJson {
    /// The document, standard base64.
    pub body: String,
    /// The signature, standard base64.
    pub signature: String,
    /// The co-signature of a CA rotation, standard base64, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co_signature: Option<String>,
}

impl SignedDocumentJson {
    /// The JSON form of a signed document.
    pub fn from_document(doc: &crate::SignedDocument) -> Self {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        Self {
            body: b64.encode(&doc.body),
            signature: b64.encode(&doc.signature),
            co_signature: doc.co_signature.as_ref().map(|c| b64.encode(c)),
        }
    }

    /// The signed document, or which field is not standard base64.
    pub fn to_document(&self) -> Result<crate::SignedDocument, &'static str> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (Ok(body), Ok(signature)) = (b64.decode(&self.body), b64.decode(&self.signature))
        else {
            return Err("body and signature must be standard base64");
        };
        let co_signature = match &self.co_signature {
            Some(c) => Some(
                b64.decode(c)
                    .map_err(|_| "co_signature must be standard base64")?
                    .into(),
            ),
            None => None,
        };
        Ok(crate::SignedDocument {
            body: body.into(),
            signature: signature.into(),
            co_signature,
        })
    }
}

/// `POST /v1/admin/users`: create a user in an existing organisation (the org
/// is the part of `user_id` after `@`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateUser {
    /// The new user.
    pub user_id: UserId,
    /// Name to show.
    pub display_name: String,
    /// Role in the organisation.
    pub role: String,
}

/// `POST /v1/admin/enrolment-tokens`: issue a one-time token with which one
/// device of the user can enrol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueEnrolmentToken {
    /// The user the device will belong to.
    pub user_id: UserId,
    /// Lifetime in seconds; defaults to
    /// [`ENROLMENT_TOKEN_TTL_SECS`](crate::limits::ENROLMENT_TOKEN_TTL_SECS).
    pub ttl_secs: Option<u64>,
}

/// A freshly issued enrolment token. The relay keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentToken {
    /// The secret token to hand to the user (out of band).
    pub token: String,
    /// The user it enrols a device for.
    pub user_id: UserId,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// `POST /v1/enrol`: enrol a device with a one-time token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// The one-time enrolment token (a short code's 10 characters, in any
    /// case; or an earlier long token).
    pub token: String,
    /// The device's Ed25519 signature public key (its MLS signature key), hex.
    pub signature_key: String,
    /// A name for the device ("Ward 7 desktop").
    pub device_name: String,
    /// The organisation's CA fingerprint as the enrolment code carries it:
    /// the SHA-256 of its certificate in 64 hex digits, or its first 14
    /// characters in Crockford base32 (a short code,
    /// [`crate::enrolment_code`]). If given, the relay refuses with
    /// `409 fingerprint_mismatch`, without spending the token, when the
    /// token's organisation has another CA. (The device checks the CA it is
    /// served against the code itself as well; this only keeps a mistyped
    /// or wrong code from using up the token.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
}

/// The answer to a successful enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolResponse {
    /// The device's id, assigned by the relay.
    pub device_id: DeviceId,
    /// The user the device belongs to.
    pub user_id: UserId,
    /// The user's organisation.
    pub org_id: OrgId,
    /// The user's display name.
    pub display_name: String,
    /// The user's role.
    pub role: String,
}

/// Error body of every non-2xx HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpError {
    /// A stable machine-readable code, e.g. `invalid_token`.
    pub code: String,
    /// A human-readable explanation without secrets.
    pub message: String,
}

/// The body the relay POSTs to its push gateway when an offline device has
/// new messages. Deliberately nothing but the device's push token: no
/// content, no sender, no group, no count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushNotification {
    /// The token the device registered.
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET /v1/admin/orgs/{org}/users` as protocol §3.2.3 shows it; an
    /// answer from a relay before `device_details` still reads.
    #[test]
    fn an_org_user_is_pinned_and_reads_without_details() {
        let json = r#"{"user_id":"alice@north-trust","org_id":"north-trust","display_name":"Alice Okafor","role":"Ward Sister","devices":["9e53f381c0ce273101dc106fc87a9ebc"],"device_details":[{"device_id":"9e53f381c0ce273101dc106fc87a9ebc","device_name":"Ward 7 desktop","enrolled_at":1700000000,"last_seen":1700003600,"certified":true}]}"#;
        let user: OrgUser = serde_json::from_str(json).expect("reads");
        assert_eq!(serde_json::to_string(&user).expect("writes"), json);
        assert_eq!(user.device_details[0].device_id, user.entry.devices[0]);
        assert_eq!(user.device_details[0].last_seen, 1_700_003_600);

        let old = r#"{"user_id":"alice@north-trust","org_id":"north-trust","display_name":"Alice Okafor","role":"Ward Sister","devices":[]}"#;
        let user: OrgUser = serde_json::from_str(old).expect("reads");
        assert!(user.device_details.is_empty());
    }
}
