//! Sanity checks on organisation CA certificates, device certificates and
//! documents signed by a CA.
//!
//! The relay holds no CA key, and clients verify every certificate and
//! trust list themselves against the anchors they trust, so nothing here
//! keeps a forged identity out. These checks exist so that an admin who
//! uploads something clients would refuse gets a clear error at once instead
//! of a failure on every client later.
//!
//! The profile (made by `cascade admin`, verified by `cascade-core`), all
//! Ed25519:
//! - CA: self-signed, subject `O=<org id>, CN=<name>`, basicConstraints CA.
//! - Device: issued by the CA; subject `O=<org id>, CN=<display name>,
//!   title=<role>`; subjectAltName URIs `urn:cascade:user:<user id>` and
//!   `urn:cascade:device:<32 hex digits>`; the subject public key is the
//!   device's enrolled signature key.
//!
//! Parsing and signature checks use `x509-parser`; no DER is handled by hand.

use base64::Engine as _;
use cascade_protocol::{DeviceId, OrgId, UserId};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use x509_parser::der_parser::oid::Oid;
use x509_parser::oid_registry::{OID_SIG_ED25519, OID_X509_COMMON_NAME, OID_X509_TITLE};
use x509_parser::pem::Pem;
use x509_parser::prelude::*;

use crate::store::{Device, StoreError};

const USER_URN: &str = "urn:cascade:user:";
const DEVICE_URN: &str = "urn:cascade:device:";

/// Why an uploaded certificate is refused. Each message tells the admin
/// what to fix; none carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The text is not exactly one PEM block labelled `CERTIFICATE`.
    #[error("expected exactly one PEM block labelled CERTIFICATE")]
    NotPem,
    /// The PEM block does not hold exactly one X.509 certificate (DER).
    #[error("the certificate is not valid X.509 DER")]
    NotX509,
    /// The certificate's subject public key is not an Ed25519 key.
    #[error("the certificate's key is not an Ed25519 key")]
    NotEd25519,
    /// The subject does not have exactly one `O` attribute, or it names
    /// another organisation.
    #[error(
        "the certificate's subject must have exactly one O attribute, naming organisation {0}"
    )]
    WrongOrg(OrgId),
    /// The certificate is expired or not valid yet.
    #[error("the certificate is expired or not valid yet")]
    NotValidNow,
    /// A CA certificate whose issuer is not its subject, or whose signature
    /// does not verify with its own key.
    #[error("the CA certificate is not self-signed")]
    NotSelfSigned,
    /// A CA certificate without basicConstraints `CA:true`.
    #[error("the CA certificate is not a CA (basicConstraints CA:true is missing)")]
    NotCa,
    /// A device certificate whose issuer is not the organisation CA's
    /// subject.
    #[error("the certificate's issuer is not the organisation's CA")]
    WrongIssuer,
    /// A device certificate whose signature does not verify with the
    /// organisation CA's key: forged, tampered with, or issued by another CA.
    #[error("the certificate's signature does not verify with the organisation's CA key")]
    BadSignature,
    /// A device certificate with basicConstraints `CA:true`.
    #[error("a device certificate must not be a CA")]
    DeviceIsCa,
    /// The subject lacks exactly one `CN` (display name) and one `title`
    /// (role).
    #[error("the certificate's subject needs exactly one CN (display name) and one title (role)")]
    MissingName,
    /// The subjectAltName does not name exactly this device and its user.
    #[error(
        "the certificate's subjectAltName must hold exactly one urn:cascade:user: URI naming \
         the device's user and one urn:cascade:device: URI naming this device"
    )]
    WrongSubjectAltName,
    /// The certified key is not the device's enrolled signature key.
    #[error("the certificate's public key is not the device's enrolled signature key")]
    KeyMismatch,
}

/// Checks an organisation CA certificate (PEM) for organisation `org` at
/// time `now` (seconds since the Unix epoch): one self-signed Ed25519 CA
/// certificate whose subject `O` is `org`. Returns its DER.
pub fn check_org_ca(pem: &str, org: &OrgId, now: i64) -> Result<Vec<u8>, CertificateError> {
    let der = pem_to_der(pem)?;
    {
        let cert = parse(&der)?;
        if cert.subject() != cert.issuer() || cert.verify_signature(None).is_err() {
            return Err(CertificateError::NotSelfSigned);
        }
        if !cert.is_ca() {
            return Err(CertificateError::NotCa);
        }
        ed25519_key(&cert)?;
        check_org(cert.subject(), org)?;
        check_validity(&cert, now)?;
    }
    Ok(der)
}

/// An organisation's CA certificate as the store holds it (checked with
/// [`check_org_ca`] when it was registered).
pub struct OrgCa<'a> {
    cert: X509Certificate<'a>,
}

impl<'a> OrgCa<'a> {
    /// Reads a stored CA certificate; `Corrupt` if it no longer parses.
    pub fn from_stored(der: &'a [u8]) -> Result<Self, StoreError> {
        parse(der)
            .map(|cert| OrgCa { cert })
            .map_err(|_| StoreError::Corrupt("organisation CA certificate".into()))
    }

    /// Checks a device certificate (PEM) for `device`, a device of
    /// organisation `org`, at time `now` (seconds since the Unix epoch):
    /// issued and signed by this CA, not a CA itself, valid now, subject
    /// `O` = `org` with one `CN` and one `title`, subjectAltName naming
    /// exactly the device and its user, and certifying the device's
    /// enrolled Ed25519 key. Returns its DER.
    pub fn check_device_certificate(
        &self,
        pem: &str,
        org: &OrgId,
        device: &Device,
        now: i64,
    ) -> Result<Vec<u8>, CertificateError> {
        let der = pem_to_der(pem)?;
        {
            let cert = parse(&der)?;
            if cert.issuer() != self.cert.subject() {
                return Err(CertificateError::WrongIssuer);
            }
            cert.verify_signature(Some(self.cert.public_key()))
                .map_err(|_| CertificateError::BadSignature)?;
            if cert.is_ca() {
                return Err(CertificateError::DeviceIsCa);
            }
            check_validity(&cert, now)?;
            let key = ed25519_key(&cert)?;
            check_org(cert.subject(), org)?;
            if !exactly_one(cert.subject(), &OID_X509_COMMON_NAME)
                || !exactly_one(cert.subject(), &OID_X509_TITLE)
            {
                return Err(CertificateError::MissingName);
            }
            check_alt_names(&cert, device)?;
            if key.as_slice() != device.signature_key.as_slice() {
                return Err(CertificateError::KeyMismatch);
            }
        }
        Ok(der)
    }

    /// Whether `signature` is a valid Ed25519 signature by this CA's key
    /// over `document` (strict verification).
    pub fn signed(&self, document: &[u8], signature: &[u8]) -> bool {
        let Ok(key) = ed25519_key(&self.cert) else {
            return false;
        };
        let (Ok(key), Ok(signature)) = (
            VerifyingKey::from_bytes(&key),
            Signature::from_slice(signature),
        ) else {
            return false;
        };
        key.verify_strict(document, &signature).is_ok()
    }
}

/// PEM-encodes a DER certificate (RFC 7468: standard base64 in lines of 64
/// characters between `BEGIN`/`END CERTIFICATE` lines).
pub fn der_to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Whether the CA certificate `ca` (DER) signed the certificate `der`.
pub fn signed_by(der: &[u8], ca: &[u8]) -> bool {
    match (parse(der), parse(ca)) {
        (Ok(cert), Ok(ca)) => {
            cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
        }
        _ => false,
    }
}

/// The expiry of a stored certificate, seconds since the Unix epoch.
pub fn expires_at(der: &[u8]) -> Option<i64> {
    parse(der).ok().map(|c| c.validity().not_after.timestamp())
}

/// The SHA-256 fingerprint of a certificate (DER) as colon-separated
/// upper-case hex, the form admins compare out of band.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The DER of exactly one PEM `CERTIFICATE` block (text around it is
/// ignored, as PEM allows).
fn pem_to_der(pem: &str) -> Result<Vec<u8>, CertificateError> {
    let mut blocks = Pem::iter_from_buffer(pem.as_bytes());
    match (blocks.next(), blocks.next()) {
        (Some(Ok(block)), None) if block.label == "CERTIFICATE" => Ok(block.contents),
        _ => Err(CertificateError::NotPem),
    }
}

/// One certificate with nothing after it.
fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertificateError> {
    match parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(CertificateError::NotX509),
    }
}

/// The raw 32-byte Ed25519 subject public key.
fn ed25519_key(cert: &X509Certificate<'_>) -> Result<[u8; 32], CertificateError> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 {
        return Err(CertificateError::NotEd25519);
    }
    spki.subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| CertificateError::NotEd25519)
}

fn check_org(name: &X509Name<'_>, org: &OrgId) -> Result<(), CertificateError> {
    let mut orgs = name.iter_organization();
    match (orgs.next().map(|o| o.as_str()), orgs.next()) {
        (Some(Ok(found)), None) if found == org.as_str() => Ok(()),
        _ => Err(CertificateError::WrongOrg(org.clone())),
    }
}

fn check_validity(cert: &X509Certificate<'_>, now: i64) -> Result<(), CertificateError> {
    match ASN1Time::from_timestamp(now) {
        Ok(now) if cert.validity().is_valid_at(now) => Ok(()),
        _ => Err(CertificateError::NotValidNow),
    }
}

/// Whether `name` has exactly one attribute `oid`, a readable string.
fn exactly_one(name: &X509Name<'_>, oid: &Oid<'_>) -> bool {
    let mut values = name.iter_by_oid(oid);
    matches!(
        (values.next().map(|v| v.as_str().is_ok()), values.next()),
        (Some(true), None)
    )
}

/// Exactly one user URN naming the device's user and exactly one device URN
/// naming the device; other names are ignored, as clients ignore them.
fn check_alt_names(cert: &X509Certificate<'_>, device: &Device) -> Result<(), CertificateError> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Err(CertificateError::WrongSubjectAltName);
    };
    let mut users = Vec::new();
    let mut devices = Vec::new();
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if let Some(user) = uri.strip_prefix(USER_URN) {
                users.push(user);
            } else if let Some(id) = uri.strip_prefix(DEVICE_URN) {
                devices.push(id);
            }
        }
    }
    let user_ok = matches!(
        users.as_slice(),
        [user] if UserId::new(*user).is_ok_and(|user| user == device.user_id)
    );
    let device_ok = matches!(
        devices.as_slice(),
        [id] if id.parse::<DeviceId>().is_ok_and(|id| id == device.device_id)
    );
    if user_ok && device_ok {
        Ok(())
    } else {
        Err(CertificateError::WrongSubjectAltName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_base64_at_64_columns_and_reads_back() {
        let der: Vec<u8> = (0..=255u8).cycle().take(100).collect();
        let pem = der_to_pem(&der);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
        assert_eq!(lines[1].len(), 64);
        assert_eq!(pem_to_der(&pem), Ok(der));
        assert_eq!(
            pem_to_der(&format!("{pem}{pem}")),
            Err(CertificateError::NotPem)
        );
        assert_eq!(
            pem_to_der(&pem.replace("CERTIFICATE", "PRIVATE KEY")),
            Err(CertificateError::NotPem)
        );
        assert_eq!(pem_to_der("no pem here"), Err(CertificateError::NotPem));
    }

    #[test]
    fn fingerprints_are_colon_separated_sha256() {
        let fp = fingerprint(b"abc");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.starts_with("BA:78:16:BF:"));
    }
}
