//! Organisation CAs and X.509 device certificates.
//!
//! Each organisation is a trust domain with its own CA key, held by its
//! admins (the `cascade admin` commands), never by the relay. The CA issues
//! each device a certificate binding user id, device id, organisation,
//! display name and role to the device's Ed25519 MLS signature key, with an
//! expiry. Clients verify every member's certificate against the anchors
//! they trust (their own organisation and the ones their admin pinned), so
//! the relay cannot mint an identity that clients accept.
//!
//! Certificate profile (all Ed25519):
//! - CA: self-signed, subject `O=<org id>, CN=<org name>`, basicConstraints
//!   CA with path length 0, keyUsage keyCertSign + cRLSign.
//! - Device: issuer = the CA's subject; subject `O=<org id>, CN=<display
//!   name>, title=<role>`; subjectAltName URIs `urn:cascade:user:<user id>`
//!   and `urn:cascade:device:<32 hex digits>`; keyUsage digitalSignature;
//!   the subject public key is the device's MLS signature key.
//!
//! Generation uses `rcgen`, parsing and signature checks `x509-parser`; no
//! DER is written by hand.

use cascade_protocol::{DeviceId, OrgId, UserId};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ED25519,
};
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

/// The OID of the X.520 `title` attribute, which carries the role.
const TITLE_OID: [u64; 4] = [2, 5, 4, 12];
const USER_URN: &str = "urn:cascade:user:";
const DEVICE_URN: &str = "urn:cascade:device:";

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

fn time(secs: i64) -> Result<::time::OffsetDateTime, CertError> {
    ::time::OffsetDateTime::from_unix_timestamp(secs).map_err(malformed)
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

/// An organisation's CA: its key and self-signed certificate.
pub struct OrgCa {
    org: OrgId,
    key: KeyPair,
    cert_der: Vec<u8>,
}

impl OrgCa {
    /// Creates a new CA for `org`, valid from `now` for `valid_days`.
    pub fn generate(
        org: &OrgId,
        name: &str,
        now: i64,
        valid_days: i64,
    ) -> Result<OrgCa, CertError> {
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(malformed)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = ca_name(org, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = time(now - 300)?;
        params.not_after = time(now + valid_days * 86_400)?;
        params.serial_number = Some(rand::random::<[u8; 16]>().to_vec().into());
        let cert = params.self_signed(&key).map_err(malformed)?;
        Ok(OrgCa {
            org: org.clone(),
            key,
            cert_der: cert.der().to_vec(),
        })
    }

    /// Loads a CA from its PEM key and PEM certificate (as written by
    /// [`OrgCa::key_pem`] and [`OrgCa::cert_pem`]).
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<OrgCa, CertError> {
        let key = KeyPair::from_pem(key_pem).map_err(malformed)?;
        let cert_der = pem_to_der(cert_pem)?;
        let anchor = TrustAnchor::from_der(&cert_der)?;
        let (_, cert) = parse_x509_certificate(&cert_der).map_err(malformed)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::KeyMismatch);
        }
        Ok(OrgCa {
            org: anchor.org,
            key,
            cert_der,
        })
    }

    /// The organisation.
    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// The CA key, PEM (PKCS#8). Keep it owner-only.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        der_to_pem(&self.cert_der)
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The trust anchor for this CA.
    pub fn anchor(&self) -> TrustAnchor {
        TrustAnchor::from_der(&self.cert_der).expect("our own CA certificate parses")
    }

    /// Issues a device certificate binding `claims` to `signature_key` (the
    /// device's 32-byte Ed25519 MLS signature key), valid from `now` for
    /// `valid_days`. Refuses claims for a user of another organisation.
    pub fn issue_device(
        &self,
        claims: &DeviceClaims,
        signature_key: &[u8],
        now: i64,
        valid_days: i64,
    ) -> Result<Vec<u8>, CertError> {
        if claims.user.org() != self.org {
            return Err(CertError::WrongOrg {
                claimed: claims.user.org().to_string(),
                issuer: self.org.to_string(),
            });
        }
        self.sign_device_cert(claims, signature_key, now, valid_days)
    }

    /// Signs a device certificate without checking the claims against this
    /// CA (tests use it to make certificates a correct CA never issues).
    fn sign_device_cert(
        &self,
        claims: &DeviceClaims,
        signature_key: &[u8],
        now: i64,
        valid_days: i64,
    ) -> Result<Vec<u8>, CertError> {
        if signature_key.len() != 32 {
            return Err(CertError::Malformed("an Ed25519 key has 32 bytes".into()));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.org.as_str());
        dn.push(DnType::CommonName, claims.display_name.as_str());
        dn.push(
            DnType::CustomDnType(TITLE_OID.to_vec()),
            claims.role.as_str(),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::URI(
                format!("{USER_URN}{}", claims.user)
                    .try_into()
                    .map_err(malformed)?,
            ),
            SanType::URI(
                format!("{DEVICE_URN}{}", claims.device)
                    .try_into()
                    .map_err(malformed)?,
            ),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = time(now - 300)?;
        params.not_after = time(now + valid_days * 86_400)?;
        params.serial_number = Some(rand::random::<[u8; 16]>().to_vec().into());
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_der(&self.cert_der.clone().into(), &self.key)
            .map_err(malformed)?;
        let public = RawEd25519(signature_key.to_vec());
        let cert = params.signed_by(&public, &issuer).map_err(malformed)?;
        Ok(cert.der().to_vec())
    }
}

fn ca_name(org: &OrgId, name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org.as_str());
    dn.push(DnType::CommonName, name);
    dn
}

/// A device's raw Ed25519 public key, for rcgen.
struct RawEd25519(Vec<u8>);

impl rcgen::PublicKeyData for RawEd25519 {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &PKCS_ED25519
    }
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

impl OrgCa {
    /// Signs a revocation list of `devices`.
    pub fn sign_revocations(
        &self,
        devices: &[DeviceId],
        serial: u64,
        now: i64,
    ) -> Result<cascade_protocol::SignedDocument, CertError> {
        let list = RevocationList {
            v: 1,
            org: self.org.clone(),
            serial,
            issued_at: now,
            devices: devices.to_vec(),
        };
        let mut body = Vec::new();
        ciborium::into_writer(&list, &mut body).expect("serialising to a Vec cannot fail");
        let signature = self.sign(&body)?;
        Ok(cascade_protocol::SignedDocument {
            body: body.into(),
            signature: signature.into(),
            co_signature: None,
        })
    }

    /// Adds this CA's co-signature to a document another CA of the same
    /// organisation signed (a CA rotation: the old CA signs, the new one
    /// co-signs).
    pub fn co_sign(
        &self,
        mut doc: cascade_protocol::SignedDocument,
    ) -> Result<cascade_protocol::SignedDocument, CertError> {
        doc.co_signature = Some(self.sign(&doc.body)?.into());
        Ok(doc)
    }

    /// Signs raw bytes with the CA key (Ed25519).
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CertError> {
        rcgen::SigningKey::sign(&self.key, msg).map_err(malformed)
    }

    /// Signs a trust list pinning `partners` (their CA certificates, DER).
    pub fn sign_trust_list(
        &self,
        partners: &[Vec<u8>],
        serial: u64,
        now: i64,
    ) -> Result<cascade_protocol::SignedDocument, CertError> {
        self.sign_trust_list_with_successor(partners, None, serial, now)
    }

    /// Signs a trust list that also names this organisation's successor CA
    /// (DER), for a rotation.
    pub fn sign_trust_list_with_successor(
        &self,
        partners: &[Vec<u8>],
        successor: Option<&[u8]>,
        serial: u64,
        now: i64,
    ) -> Result<cascade_protocol::SignedDocument, CertError> {
        if let Some(next) = successor {
            if TrustAnchor::from_der(next)?.org != self.org {
                return Err(CertError::Malformed(
                    "a successor CA belongs to the same organisation".into(),
                ));
            }
        }
        for p in partners {
            let a = TrustAnchor::from_der(p)?;
            if a.org == self.org {
                return Err(CertError::Malformed(
                    "an organisation does not pin itself".into(),
                ));
            }
        }
        let list = TrustList {
            v: 1,
            org: self.org.clone(),
            serial,
            issued_at: now,
            anchors: partners
                .iter()
                .map(|p| serde_bytes::ByteBuf::from(p.clone()))
                .collect(),
            successor: successor.map(|s| serde_bytes::ByteBuf::from(s.to_vec())),
        };
        let mut body = Vec::new();
        ciborium::into_writer(&list, &mut body).expect("serialising to a Vec cannot fail");
        let signature = self.sign(&body)?;
        Ok(cascade_protocol::SignedDocument {
            body: body.into(),
            signature: signature.into(),
            co_signature: None,
        })
    }
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

    const NOW: i64 = 1_800_000_000;

    fn claims(user: &str) -> DeviceClaims {
        DeviceClaims {
            user: UserId::new(user).expect("valid"),
            device: DeviceId([7; 16]),
            display_name: "Alice Okafor".into(),
            role: "Ward Sister".into(),
        }
    }

    fn ca(org: &str) -> OrgCa {
        OrgCa::generate(
            &OrgId::new(org).expect("valid"),
            "North NHS Trust",
            NOW,
            3650,
        )
        .expect("CA")
    }

    fn never(_: &OrgId, _: &DeviceId) -> bool {
        false
    }

    #[test]
    fn a_device_certificate_verifies_with_every_claim() {
        let north = ca("north");
        let key = [9u8; 32];
        let der = north
            .issue_device(&claims("alice@north"), &key, NOW, 365)
            .expect("issued");
        let m = verify_device_cert(&der, &[north.anchor()], NOW + 10, &never).expect("verifies");
        assert_eq!(m.claims, claims("alice@north"));
        assert_eq!(m.org.as_str(), "north");
        assert_eq!(m.signature_key, key.to_vec());
        assert!(m.not_after > NOW + 364 * 86_400);
    }

    #[test]
    fn a_certificate_from_an_untrusted_org_is_refused() {
        let north = ca("north");
        let east = ca("east");
        let der = east
            .issue_device(&claims("bob@east"), &[1; 32], NOW, 365)
            .expect("issued");
        assert_eq!(
            verify_device_cert(&der, &[north.anchor()], NOW, &never),
            Err(CertError::UntrustedOrg("east".into()))
        );
        // Once pinned, it verifies.
        assert!(verify_device_cert(&der, &[north.anchor(), east.anchor()], NOW, &never).is_ok());
    }

    #[test]
    fn a_forged_certificate_is_refused() {
        let north = ca("north");
        // Mallory makes her own CA that calls itself "north" too.
        let fake = ca("north");
        let der = fake
            .issue_device(&claims("alice@north"), &[1; 32], NOW, 365)
            .expect("issued");
        assert_eq!(
            verify_device_cert(&der, &[north.anchor()], NOW, &never),
            Err(CertError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_certificate_is_refused() {
        let north = ca("north");
        let mut der = north
            .issue_device(&claims("alice@north"), &[1; 32], NOW, 365)
            .expect("issued");
        let pos = der
            .windows(5)
            .position(|w| w == b"Alice")
            .expect("the name is in the certificate");
        der[pos] = b'M';
        assert_eq!(
            verify_device_cert(&der, &[north.anchor()], NOW, &never),
            Err(CertError::BadSignature)
        );
    }

    #[test]
    fn expiry_and_not_yet_valid_are_refused() {
        let north = ca("north");
        let der = north
            .issue_device(&claims("alice@north"), &[1; 32], NOW, 30)
            .expect("issued");
        assert_eq!(
            verify_device_cert(&der, &[north.anchor()], NOW + 31 * 86_400, &never),
            Err(CertError::Expired)
        );
        assert_eq!(
            verify_device_cert(&der, &[north.anchor()], NOW - 3600, &never),
            Err(CertError::NotYetValid)
        );
    }

    #[test]
    fn a_certificate_claiming_another_org_is_refused() {
        let north = ca("north");
        let east = ca("east");
        // The CA refuses to issue it...
        assert!(matches!(
            north.issue_device(&claims("carol@east"), &[1; 32], NOW, 365),
            Err(CertError::WrongOrg { .. })
        ));
        // ...and a client refuses one that a careless or hostile CA signed:
        // north cannot vouch for a user of east, even if both are trusted.
        let der = north
            .sign_device_cert(&claims("carol@east"), &[1; 32], NOW, 365)
            .expect("signed");
        assert_eq!(
            verify_device_cert(&der, &[north.anchor(), east.anchor()], NOW, &never),
            Err(CertError::WrongOrg {
                claimed: "east".into(),
                issuer: "north".into()
            })
        );
    }

    #[test]
    fn a_revoked_device_is_refused() {
        let north = ca("north");
        let der = north
            .issue_device(&claims("alice@north"), &[1; 32], NOW, 365)
            .expect("issued");
        let revoked = |o: &OrgId, d: &DeviceId| o.as_str() == "north" && d == &DeviceId([7; 16]);
        assert_eq!(
            verify_device_cert(&der, &[north.anchor()], NOW, &revoked),
            Err(CertError::Revoked)
        );
    }

    #[test]
    fn a_ca_round_trips_through_pem_and_keeps_issuing() {
        let north = ca("north");
        let again = OrgCa::from_pem(&north.key_pem(), &north.cert_pem()).expect("loads");
        assert_eq!(again.cert_der(), north.cert_der());
        assert_eq!(again.anchor().fingerprint(), north.anchor().fingerprint());
        assert_eq!(north.anchor().fingerprint().len(), 32 * 3 - 1);
        let der = again
            .issue_device(&claims("alice@north"), &[1; 32], NOW, 365)
            .expect("issued");
        assert!(verify_device_cert(&der, &[north.anchor()], NOW, &never).is_ok());
        // A key that is not the certificate's is refused.
        let other = ca("north");
        assert_eq!(
            OrgCa::from_pem(&other.key_pem(), &north.cert_pem()).err(),
            Some(CertError::KeyMismatch)
        );
    }

    #[test]
    fn trust_lists_verify_only_under_the_own_ca() {
        let north = ca("north");
        let east = ca("east");
        let doc = north
            .sign_trust_list(&[east.cert_der().to_vec()], 1, NOW)
            .expect("signed");
        let (list, anchors) = verify_trust_list(&doc, &north.anchor()).expect("verifies");
        assert_eq!(list.serial, 1);
        assert_eq!(anchors, vec![east.anchor()]);
        // The relay (or anyone without north's key) cannot add an org.
        let mallory = ca("mallory");
        let mut tampered = doc.clone();
        let mut list2 = list.clone();
        list2
            .anchors
            .push(serde_bytes::ByteBuf::from(mallory.cert_der().to_vec()));
        let mut body = Vec::new();
        ciborium::into_writer(&list2, &mut body).expect("encode");
        tampered.body = body.into();
        assert_eq!(
            verify_trust_list(&tampered, &north.anchor()).err(),
            Some(CertError::BadSignature)
        );
        // A list signed by another org's CA is not north's.
        let forged = mallory
            .sign_trust_list(&[east.cert_der().to_vec()], 9, NOW)
            .expect("signed");
        assert_eq!(
            verify_trust_list(&forged, &north.anchor()).err(),
            Some(CertError::BadSignature)
        );
    }

    #[test]
    fn a_device_certificate_is_not_an_anchor() {
        let north = ca("north");
        let der = north
            .issue_device(&claims("alice@north"), &[1; 32], NOW, 365)
            .expect("issued");
        assert_eq!(TrustAnchor::from_der(&der), Err(CertError::NotCa));
        assert!(matches!(
            TrustAnchor::from_der(b"junk"),
            Err(CertError::Malformed(_))
        ));
    }
}
