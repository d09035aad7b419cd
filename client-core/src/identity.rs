//! Organisation CAs and X.509 device certificates: the verifying side.
//!
//! Each organisation is a trust domain with its own CA key, held by its
//! admins (the `cascade admin` commands), never by the relay. The CA issues
//! each device a certificate binding user id, device id, organisation,
//! display name and role to the device's Ed25519 MLS signature key, with an
//! expiry. Clients verify every member's certificate against the anchors
//! they trust (their own organisation and the ones their admin pinned), so
//! the relay cannot mint an identity that clients accept.
//!
//! This module reads and verifies; it cannot issue or sign. Issuing device
//! certificates and signing trust and revocation lists is the CA's job and
//! lives in the `cascade-admin` crate, so that a device (the desktop app, the
//! mobile apps) does not even link the code that makes certificates. The
//! formats both sides share are defined here: the certificate profile (the
//! constants below) and the signed documents ([`TrustList`],
//! [`RevocationList`]).
//!
//! Certificate profile (all Ed25519):
//! - CA: self-signed, subject `O=<org id>, CN=<org name>`, basicConstraints
//!   CA with path length 0, keyUsage keyCertSign + cRLSign.
//! - Device: issuer = the CA's subject; subject `O=<org id>, CN=<display
//!   name>, title=<role>`; subjectAltName URIs `urn:cascade:user:<user id>`
//!   and `urn:cascade:device:<32 hex digits>`; keyUsage digitalSignature;
//!   the subject public key is the device's MLS signature key.
//!
//! Parsing and signature checks use `x509-parser` and `ed25519-dalek`; no
//! DER is read by hand.

use cascade_protocol::{DeviceId, OrgId, UserId};
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

/// The OID of the X.520 `title` attribute, which carries the role in a
/// device certificate's subject.
pub const TITLE_OID: [u64; 4] = [2, 5, 4, 12];
/// The prefix of the subjectAltName URI that names a device's user
/// (`urn:cascade:user:alice@north-trust`).
pub const USER_URN: &str = "urn:cascade:user:";
/// The prefix of the subjectAltName URI that names a device
/// (`urn:cascade:device:<32 hex digits>`).
pub const DEVICE_URN: &str = "urn:cascade:device:";

/// Why a certificate is not acceptable. Every variant names the reason a
/// user or admin needs to see; none carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not a parsable X.509 certificate of the Cascade profile.
    #[error("not a valid Cascade certificate: {0}")]
    Malformed(String),
    /// Issued by an organisation this device does not trust.
    #[error("organisation {0} is not trusted")]
    UntrustedOrg(String),
    /// The signature does not verify against the organisation's CA: forged
    /// or tampered with.
    #[error("the certificate is not signed by its organisation's CA")]
    BadSignature,
    /// Past its expiry.
    #[error("the certificate has expired")]
    Expired,
    /// Not yet valid.
    #[error("the certificate is not valid yet")]
    NotYetValid,
    /// The certificate's user, or its subject, claims a different
    /// organisation than the CA that signed it.
    #[error("the certificate claims organisation {claimed} but was issued by {issuer}")]
    WrongOrg {
        /// The organisation the certificate claims.
        claimed: String,
        /// The organisation whose CA signed it.
        issuer: String,
    },
    /// The device has been revoked by its organisation.
    #[error("the device has been revoked")]
    Revoked,
    /// The certificate's key is not the key the member uses in MLS.
    #[error("the certificate's key does not match the member's signature key")]
    KeyMismatch,
    /// A CA certificate is not a valid self-signed CA.
    #[error("not a valid organisation CA certificate")]
    NotCa,
}

/// What an organisation's CA vouches for about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceClaims {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// Name to show.
    pub display_name: String,
    /// Role in the organisation.
    pub role: String,
}

/// A member whose certificate verified: everything in it can be shown as
/// verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMember {
    /// The claims, checked.
    pub claims: DeviceClaims,
    /// The organisation whose CA signed the certificate.
    pub org: OrgId,
    /// The device's Ed25519 signature key.
    pub signature_key: Vec<u8>,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
}

fn malformed(e: impl std::fmt::Display) -> CertError {
    CertError::Malformed(e.to_string())
}

/// SHA-256 fingerprint of a certificate, as colon-separated hex: what admins
/// read to each other out of band before pinning a partner's CA.
pub fn fingerprint(cert_der: &[u8]) -> String {
    Sha256::digest(cert_der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// PEM-encodes a DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    pem_rfc7468_encode(der)
}

fn pem_rfc7468_encode(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Decodes a PEM certificate to DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, CertError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(malformed)?;
    if p.label != "CERTIFICATE" {
        return Err(CertError::Malformed("expected a CERTIFICATE".into()));
    }
    Ok(p.contents)
}

/// A CA certificate a client trusts: its own organisation's, or a partner's
/// pinned by an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    /// The organisation the CA speaks for.
    pub org: OrgId,
    /// The CA certificate, DER.
    pub cert_der: Vec<u8>,
}

impl TrustAnchor {
    /// Checks that `der` is a self-signed CA certificate of the Cascade
    /// profile, and reads its organisation.
    pub fn from_der(der: &[u8]) -> Result<TrustAnchor, CertError> {
        let (rest, cert) = parse_x509_certificate(der).map_err(malformed)?;
        if !rest.is_empty() {
            return Err(CertError::Malformed("trailing bytes".into()));
        }
        if !cert.is_ca() || cert.subject() != cert.issuer() {
            return Err(CertError::NotCa);
        }
        cert.verify_signature(None).map_err(|_| CertError::NotCa)?;
        let org = single_org(cert.subject())?;
        Ok(TrustAnchor {
            org,
            cert_der: der.to_vec(),
        })
    }

    /// The SHA-256 fingerprint admins compare out of band.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }
}

fn single_org(name: &X509Name<'_>) -> Result<OrgId, CertError> {
    let mut orgs = name.iter_organization();
    let org = orgs
        .next()
        .ok_or_else(|| CertError::Malformed("no organisation".into()))?
        .as_str()
        .map_err(malformed)?;
    if orgs.next().is_some() {
        return Err(CertError::Malformed("several organisations".into()));
    }
    OrgId::new(org).map_err(malformed)
}

fn single_attr(
    name: &X509Name<'_>,
    oid: &x509_parser::der_parser::Oid<'_>,
) -> Result<String, CertError> {
    let mut it = name.iter_by_oid(oid);
    let v = it
        .next()
        .ok_or_else(|| CertError::Malformed(format!("missing attribute {oid}")))?
        .as_str()
        .map_err(malformed)?
        .to_owned();
    if it.next().is_some() {
        return Err(CertError::Malformed(format!("repeated attribute {oid}")));
    }
    Ok(v)
}

/// Reads the subject organisation and the claims of a device certificate.
fn read_claims(cert: &X509Certificate<'_>) -> Result<(OrgId, DeviceClaims), CertError> {
    let subject_org = single_org(cert.subject())?;
    let display_name = single_attr(
        cert.subject(),
        &x509_parser::oid_registry::OID_X509_COMMON_NAME,
    )?;
    let title = x509_parser::der_parser::Oid::from(&TITLE_OID)
        .map_err(|_| CertError::Malformed("oid".into()))?;
    let role = single_attr(cert.subject(), &title)?;
    let san = cert
        .subject_alternative_name()
        .map_err(malformed)?
        .ok_or_else(|| CertError::Malformed("no subjectAltName".into()))?;
    let mut user = None;
    let mut device = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if let Some(u) = uri.strip_prefix(USER_URN) {
                if user.replace(UserId::new(u).map_err(malformed)?).is_some() {
                    return Err(CertError::Malformed("two user ids".into()));
                }
            } else if let Some(d) = uri.strip_prefix(DEVICE_URN) {
                if device
                    .replace(d.parse::<DeviceId>().map_err(malformed)?)
                    .is_some()
                {
                    return Err(CertError::Malformed("two device ids".into()));
                }
            }
        }
    }
    Ok((
        subject_org,
        DeviceClaims {
            user: user.ok_or_else(|| CertError::Malformed("no user id".into()))?,
            device: device.ok_or_else(|| CertError::Malformed("no device id".into()))?,
            display_name,
            role,
        },
    ))
}

/// Reads the claims of a device certificate without verifying it: for
/// members that were verified when they entered a group.
pub fn read_device_cert(der: &[u8]) -> Result<DeviceClaims, CertError> {
    let (_, cert) = parse_x509_certificate(der).map_err(malformed)?;
    Ok(read_claims(&cert)?.1)
}

/// A certificate's expiry, seconds since the Unix epoch.
pub fn expires_at(der: &[u8]) -> Result<i64, CertError> {
    let (_, cert) = parse_x509_certificate(der).map_err(malformed)?;
    Ok(cert.validity().not_after.timestamp())
}

/// Verifies a device certificate against trusted anchors at time `now`
/// (seconds since the Unix epoch). `is_revoked` answers from the
/// revocation lists the client holds.
pub fn verify_device_cert(
    der: &[u8],
    anchors: &[TrustAnchor],
    now: i64,
    is_revoked: &dyn Fn(&OrgId, &DeviceId) -> bool,
) -> Result<VerifiedMember, CertError> {
    let (rest, cert) = parse_x509_certificate(der).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(CertError::Malformed("trailing bytes".into()));
    }
    let issuer_org = single_org(cert.issuer())?;
    // An organisation may have two anchors while it rotates its CA: the
    // certificate must verify under one of them.
    let candidates: Vec<&TrustAnchor> = anchors.iter().filter(|a| a.org == issuer_org).collect();
    if candidates.is_empty() {
        return Err(CertError::UntrustedOrg(issuer_org.to_string()));
    }
    let signed = candidates.iter().any(|anchor| {
        parse_x509_certificate(&anchor.cert_der).is_ok_and(|(_, ca)| {
            cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
        })
    });
    if !signed {
        return Err(CertError::BadSignature);
    }
    if cert.is_ca() {
        return Err(CertError::Malformed(
            "a CA certificate is not a device".into(),
        ));
    }
    let validity = cert.validity();
    let now_t = ASN1Time::from_timestamp(now).map_err(malformed)?;
    if now_t < validity.not_before {
        return Err(CertError::NotYetValid);
    }
    if now_t > validity.not_after {
        return Err(CertError::Expired);
    }
    // Ed25519 only: the key is the device's MLS signature key.
    if cert.public_key().algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(CertError::Malformed("the device key is not Ed25519".into()));
    }
    let signature_key = cert.public_key().subject_public_key.data.to_vec();

    let (subject_org, claims) = read_claims(&cert)?;
    for claimed in [subject_org, claims.user.org()] {
        if claimed != issuer_org {
            return Err(CertError::WrongOrg {
                claimed: claimed.to_string(),
                issuer: issuer_org.to_string(),
            });
        }
    }
    if is_revoked(&issuer_org, &claims.device) {
        return Err(CertError::Revoked);
    }
    Ok(VerifiedMember {
        claims,
        org: issuer_org,
        signature_key,
        not_after: validity.not_after.timestamp(),
    })
}

/// The body of an organisation's trust list: the partner CAs its admins
/// pinned. Signed by the organisation's CA key; the relay only stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrustList {
    /// Format version (1).
    pub v: u8,
    /// The organisation whose admins pinned these.
    pub org: OrgId,
    /// Increases with every new list; a client never goes back to an older
    /// one.
    pub serial: u64,
    /// When it was signed, seconds since the Unix epoch.
    pub issued_at: i64,
    /// The pinned partner CA certificates, DER.
    pub anchors: Vec<serde_bytes::ByteBuf>,
    /// During a CA rotation: the organisation's new CA certificate (DER),
    /// vouched for by the current CA's signature on this list. Devices
    /// accept certificates from either until they move to the new one.
    #[serde(default)]
    pub successor: Option<serde_bytes::ByteBuf>,
    /// What the organisation asks of its staff's devices; absent (not
    /// written at all, so lists without one keep their bytes) for the
    /// defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<DevicePolicy>,
}

/// What an organisation asks of its staff's devices, carried in its signed
/// trust list (`docs/protocol.md` §14.4), so the relay cannot change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DevicePolicy {
    /// The app locks after this many seconds without input, hiding every
    /// conversation until the person unlocks it. Devices clamp it to
    /// [`MIN_IDLE_LOCK_SECS`]..=[`MAX_IDLE_LOCK_SECS`].
    pub idle_lock_secs: u32,
    /// The longest the organisation's devices keep a message, in days
    /// (from when it was sent, by its sender's clock but never later than
    /// its arrival): older messages are deleted from the device's store, in
    /// every conversation. `None`: no limit. Devices clamp it to
    /// [`MIN_RETENTION_DAYS`]..=[`MAX_RETENTION_DAYS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retention_days: Option<u32>,
}

/// The shortest maximum retention an organisation can set: one day.
pub const MIN_RETENTION_DAYS: u32 = 1;
/// The longest: ten years.
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// The shortest idle lock an organisation can set: one minute.
pub const MIN_IDLE_LOCK_SECS: u32 = 60;
/// The longest: eight hours, a shift.
pub const MAX_IDLE_LOCK_SECS: u32 = 8 * 3600;
/// The idle lock of an organisation that has not set one: five minutes.
pub const DEFAULT_IDLE_LOCK_SECS: u32 = 300;

impl Default for DevicePolicy {
    fn default() -> Self {
        DevicePolicy {
            idle_lock_secs: DEFAULT_IDLE_LOCK_SECS,
            max_retention_days: None,
        }
    }
}

impl DevicePolicy {
    /// The policy with its values within the bounds devices accept.
    pub fn clamped(self) -> Self {
        DevicePolicy {
            idle_lock_secs: self
                .idle_lock_secs
                .clamp(MIN_IDLE_LOCK_SECS, MAX_IDLE_LOCK_SECS),
            max_retention_days: self
                .max_retention_days
                .map(|d| d.clamp(MIN_RETENTION_DAYS, MAX_RETENTION_DAYS)),
        }
    }

    /// The oldest a message may be and stay on the device at `now` (ms
    /// since the Unix epoch): messages sent before this go. `None`: no
    /// limit.
    pub fn retention_cutoff(&self, now: u64) -> Option<u64> {
        self.max_retention_days
            .map(|d| now.saturating_sub(u64::from(d) * 86_400_000))
    }
}

/// The body of an organisation's revocation list: devices its admins
/// revoked. Signed by the organisation's CA key; the relay only stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RevocationList {
    /// Format version (1).
    pub v: u8,
    /// The organisation whose devices these are.
    pub org: OrgId,
    /// Increases with every new list; a client never goes back.
    pub serial: u64,
    /// When it was signed, seconds since the Unix epoch.
    pub issued_at: i64,
    /// The revoked devices.
    pub devices: Vec<DeviceId>,
}

impl TrustList {
    /// The list as the bytes a CA signs (CBOR): the body of its
    /// [`cascade_protocol::SignedDocument`], which [`verify_trust_list`]
    /// reads back.
    pub fn to_body(&self) -> Vec<u8> {
        let mut body = Vec::new();
        ciborium::into_writer(self, &mut body).expect("serialising to a Vec cannot fail");
        body
    }
}

impl RevocationList {
    /// The list as the bytes a CA signs (CBOR): the body of its
    /// [`cascade_protocol::SignedDocument`], which [`verify_revocations`]
    /// reads back.
    pub fn to_body(&self) -> Vec<u8> {
        let mut body = Vec::new();
        ciborium::into_writer(self, &mut body).expect("serialising to a Vec cannot fail");
        body
    }
}

/// The body of an admin's order to wipe one device of their organisation
/// (`cascade admin wipe`): the device erases its store and keys when it
/// sees it, and confirms. Signed by the organisation's CA key; the relay
/// only stores and serves it (`docs/protocol.md` §14.6).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WipeOrder {
    /// Format version (1).
    pub v: u8,
    /// Always [`WipeOrder::KIND`]: no other document the CA signs reads as
    /// an order.
    pub kind: String,
    /// The organisation whose device this is.
    pub org: OrgId,
    /// The device to wipe.
    pub device: DeviceId,
    /// When it was signed, seconds since the Unix epoch.
    pub issued_at: i64,
}

impl WipeOrder {
    /// The value of [`WipeOrder::kind`].
    pub const KIND: &'static str = "wipe";

    /// An order to wipe `device` of `org`.
    pub fn new(org: OrgId, device: DeviceId, issued_at: i64) -> Self {
        WipeOrder {
            v: 1,
            kind: Self::KIND.to_owned(),
            org,
            device,
            issued_at,
        }
    }

    /// The order as the bytes a CA signs (CBOR): the body of its
    /// [`cascade_protocol::SignedDocument`], which [`verify_wipe_order`]
    /// reads back.
    pub fn to_body(&self) -> Vec<u8> {
        let mut body = Vec::new();
        ciborium::into_writer(self, &mut body).expect("serialising to a Vec cannot fail");
        body
    }
}

/// Verifies a wipe order against the organisation's CA.
pub fn verify_wipe_order(
    doc: &cascade_protocol::SignedDocument,
    anchor: &TrustAnchor,
) -> Result<WipeOrder, CertError> {
    verify_signed(doc, anchor)?;
    let order: WipeOrder = ciborium::from_reader(doc.body.as_slice()).map_err(malformed)?;
    if order.v != 1 || order.kind != WipeOrder::KIND {
        return Err(CertError::Malformed("not a version 1 wipe order".into()));
    }
    if order.org != anchor.org {
        return Err(CertError::WrongOrg {
            claimed: order.org.to_string(),
            issuer: anchor.org.to_string(),
        });
    }
    Ok(order)
}

/// Verifies an organisation's roster of appointed admins (protocol
/// §3.2.2) against its CA: what an admin's tool checks before believing
/// the relay's copy.
pub fn verify_admin_roster(
    doc: &cascade_protocol::SignedDocument,
    anchor: &TrustAnchor,
) -> Result<cascade_protocol::org_auth::AdminRoster, CertError> {
    verify_signed(doc, anchor)?;
    let roster = cascade_protocol::org_auth::AdminRoster::from_body(&doc.body)
        .map_err(|why| CertError::Malformed(why.into()))?;
    if roster.org != anchor.org {
        return Err(CertError::WrongOrg {
            claimed: roster.org.to_string(),
            issuer: anchor.org.to_string(),
        });
    }
    Ok(roster)
}

/// Checks a document's signature against an organisation's CA.
fn verify_signed(
    doc: &cascade_protocol::SignedDocument,
    ca_anchor: &TrustAnchor,
) -> Result<(), CertError> {
    let (_, ca) = parse_x509_certificate(&ca_anchor.cert_der).map_err(malformed)?;
    let key: [u8; 32] = ca
        .public_key()
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| CertError::NotCa)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| CertError::NotCa)?;
    let verifies = |sig: &[u8]| {
        ed25519_dalek::Signature::from_slice(sig)
            .is_ok_and(|sig| key.verify_strict(&doc.body, &sig).is_ok())
    };
    // The signature, or (during a CA rotation) the co-signature by the
    // organisation's new CA.
    if verifies(&doc.signature) || doc.co_signature.as_deref().is_some_and(|c| verifies(c)) {
        Ok(())
    } else {
        Err(CertError::BadSignature)
    }
}

/// Verifies an organisation's revocation list against that organisation's
/// CA.
pub fn verify_revocations(
    doc: &cascade_protocol::SignedDocument,
    anchor: &TrustAnchor,
) -> Result<RevocationList, CertError> {
    verify_signed(doc, anchor)?;
    let list: RevocationList = ciborium::from_reader(doc.body.as_slice()).map_err(malformed)?;
    if list.v != 1 {
        return Err(CertError::Malformed(
            "unknown revocation list version".into(),
        ));
    }
    if list.org != anchor.org {
        return Err(CertError::WrongOrg {
            claimed: list.org.to_string(),
            issuer: anchor.org.to_string(),
        });
    }
    Ok(list)
}

/// Verifies an organisation's trust list against the organisation's own CA
/// (`own`), returning the partner anchors it pins.
pub fn verify_trust_list(
    doc: &cascade_protocol::SignedDocument,
    own: &TrustAnchor,
) -> Result<(TrustList, Vec<TrustAnchor>), CertError> {
    verify_signed(doc, own)?;
    let list: TrustList = ciborium::from_reader(doc.body.as_slice()).map_err(malformed)?;
    if list.v != 1 {
        return Err(CertError::Malformed("unknown trust list version".into()));
    }
    if list.org != own.org {
        return Err(CertError::WrongOrg {
            claimed: list.org.to_string(),
            issuer: own.org.to_string(),
        });
    }
    let mut anchors = list
        .anchors
        .iter()
        .map(|a| TrustAnchor::from_der(a))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(next) = &list.successor {
        let next = TrustAnchor::from_der(next)?;
        if next.org != own.org {
            return Err(CertError::WrongOrg {
                claimed: next.org.to_string(),
                issuer: own.org.to_string(),
            });
        }
        anchors.push(next);
    }
    Ok((list, anchors))
}

/// The fingerprint as 64 lowercase hex digits, the form carried in an
/// enrolment code.
pub fn fingerprint_hex(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(policy: Option<DevicePolicy>) -> TrustList {
        TrustList {
            v: 1,
            org: OrgId::new("north").expect("valid"),
            serial: 2,
            issued_at: 1_700_000_000,
            anchors: vec![],
            successor: None,
            policy,
        }
    }

    /// The trust list's bytes are what CAs sign and devices verify: pinned,
    /// and a list without a policy keeps the bytes it had before policies.
    #[test]
    fn trust_list_bodies_are_pinned() {
        let without = hex::encode(list(None).to_body());
        assert_eq!(
            without,
            "a6617601636f7267656e6f7274686673657269616c026969737375656\
             45f61741a6553f10067616e63686f7273806973756363657373\
             6f72f6"
        );
        let with = hex::encode(
            list(Some(DevicePolicy {
                idle_lock_secs: 600,
                max_retention_days: None,
            }))
            .to_body(),
        );
        assert_eq!(
            with,
            "a7617601636f7267656e6f7274686673657269616c026969737375656\
             45f61741a6553f10067616e63686f7273806973756363657373\
             6f72f666706f6c696379a16e69646c655f6c6f636b5f73656373190258"
        );
        // Read back, and a body from a newer admin tool with keys this
        // version does not know still reads.
        let body = list(Some(DevicePolicy {
            idle_lock_secs: 600,
            max_retention_days: None,
        }))
        .to_body();
        let read: TrustList = ciborium::from_reader(body.as_slice()).expect("reads");
        assert_eq!(read.policy.map(|p| p.idle_lock_secs), Some(600));
        // A maximum retention adds one key; the rest is as before.
        let retained = hex::encode(
            list(Some(DevicePolicy {
                idle_lock_secs: 600,
                max_retention_days: Some(90),
            }))
            .to_body(),
        );
        assert_eq!(retained, RETAINED_GOLDEN);
        let read: TrustList =
            ciborium::from_reader(hex::decode(RETAINED_GOLDEN).expect("hex").as_slice())
                .expect("reads");
        assert_eq!(read.policy.and_then(|p| p.max_retention_days), Some(90));
    }

    /// The body above with `max_retention_days: 90` in the policy.
    const RETAINED_GOLDEN: &str = "a7617601636f7267656e6f7274686673657269616c02696973737565\
645f61741a6553f10067616e63686f72738069737563636573736f72f666706f6c696379a26e69646c655f6c6f636b\
5f73656373190258726d61785f726574656e74696f6e5f64617973185a";
}
