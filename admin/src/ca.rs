//! The organisation CA: make it, load it, issue device certificates, sign
//! trust and revocation lists.
//!
//! The certificate profile and the signed documents are defined in
//! [`cascade_core::identity`], which verifies them; this module writes
//! them. Generation uses `rcgen`; no DER is written by hand.

use cascade_core::identity::{
    der_to_pem, pem_to_der, CertError, DeviceClaims, DevicePolicy, RevocationList, TrustAnchor,
    TrustList, WipeOrder, DEVICE_URN, TITLE_OID, USER_URN,
};
use cascade_protocol::{DeviceId, OrgId, SignedDocument};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ED25519,
};

fn malformed(e: impl std::fmt::Display) -> CertError {
    CertError::Malformed(e.to_string())
}

fn time(secs: i64) -> Result<::time::OffsetDateTime, CertError> {
    ::time::OffsetDateTime::from_unix_timestamp(secs).map_err(malformed)
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
    /// [`OrgCa::key_pem`] and [`OrgCa::cert_pem`]). Refuses a key that is
    /// not the certificate's.
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<OrgCa, CertError> {
        let key = KeyPair::from_pem(key_pem).map_err(malformed)?;
        let cert_der = pem_to_der(cert_pem)?;
        let anchor = TrustAnchor::from_der(&cert_der)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).map_err(malformed)?;
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

    /// Signs a revocation list of `devices`.
    pub fn sign_revocations(
        &self,
        devices: &[DeviceId],
        serial: u64,
        now: i64,
    ) -> Result<SignedDocument, CertError> {
        let list = RevocationList {
            v: 1,
            org: self.org.clone(),
            serial,
            issued_at: now,
            devices: devices.to_vec(),
        };
        self.signed(list.to_body())
    }

    /// Signs an order to wipe one of the organisation's devices.
    pub fn sign_wipe_order(&self, device: DeviceId, now: i64) -> Result<SignedDocument, CertError> {
        self.signed(WipeOrder::new(self.org.clone(), device, now).to_body())
    }

    /// Adds this CA's co-signature to a document another CA of the same
    /// organisation signed (a CA rotation: the old CA signs, the new one
    /// co-signs).
    pub fn co_sign(&self, mut doc: SignedDocument) -> Result<SignedDocument, CertError> {
        doc.co_signature = Some(self.sign(&doc.body)?.into());
        Ok(doc)
    }

    /// Signs an organisation's roster of appointed admins (protocol
    /// §3.2.2) with serial `serial` at `now`.
    pub fn sign_admin_roster(
        &self,
        admins: Vec<cascade_protocol::org_auth::AdminEntry>,
        serial: u64,
        now: i64,
    ) -> Result<SignedDocument, CertError> {
        self.signed(
            cascade_protocol::org_auth::AdminRoster {
                v: 1,
                kind: cascade_protocol::org_auth::AdminRoster::KIND.to_owned(),
                org: self.org.clone(),
                serial,
                issued_at: now,
                admins,
            }
            .to_body(),
        )
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CertError> {
        rcgen::SigningKey::sign(&self.key, msg).map_err(malformed)
    }

    fn signed(&self, body: Vec<u8>) -> Result<SignedDocument, CertError> {
        let signature = self.sign(&body)?;
        Ok(SignedDocument {
            body: body.into(),
            signature: signature.into(),
            co_signature: None,
        })
    }

    /// Signs a trust list pinning `partners` (their CA certificates, DER).
    pub fn sign_trust_list(
        &self,
        partners: &[Vec<u8>],
        serial: u64,
        now: i64,
    ) -> Result<SignedDocument, CertError> {
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
    ) -> Result<SignedDocument, CertError> {
        self.sign_trust_list_with_policy(partners, successor, None, serial, now)
    }

    /// Signs a trust list with everything it can carry: pinned partners, a
    /// successor CA during a rotation, and the organisation's device
    /// policy (`None` for the defaults).
    pub fn sign_trust_list_with_policy(
        &self,
        partners: &[Vec<u8>],
        successor: Option<&[u8]>,
        policy: Option<DevicePolicy>,
        serial: u64,
        now: i64,
    ) -> Result<SignedDocument, CertError> {
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
            policy,
        };
        self.signed(list.to_body())
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

/// The CA signs its organisation's admin requests itself: the
/// `Authorization` header that makes a request an act of this CA's
/// organisation ([`cascade_protocol::org_auth`]).
impl crate::OrgSigner for OrgCa {
    fn org(&self) -> &OrgId {
        &self.org
    }

    fn admin(&self) -> Option<&str> {
        None
    }

    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, CertError> {
        self.sign(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_core::identity::verify_device_cert;
    use cascade_protocol::UserId;

    const NOW: i64 = 1_800_000_000;

    fn ca(org: &str) -> OrgCa {
        OrgCa::generate(&OrgId::new(org).expect("valid"), "Test", NOW, 3650).expect("CA")
    }

    fn claims(user: &str) -> DeviceClaims {
        DeviceClaims {
            user: UserId::new(user).expect("valid"),
            device: DeviceId([7; 16]),
            display_name: "Carol".into(),
            role: "Paramedic".into(),
        }
    }

    /// Kept here rather than with the other verification tests in
    /// `client-core/tests/identity.rs`: making the certificate a correct CA
    /// never issues needs the CA's private signing path.
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
        let never = |_: &OrgId, _: &DeviceId| false;
        assert_eq!(
            verify_device_cert(&der, &[north.anchor(), east.anchor()], NOW, &never),
            Err(CertError::WrongOrg {
                claimed: "east".into(),
                issuer: "north".into()
            })
        );
    }

    #[test]
    fn a_key_of_another_ca_is_refused_on_load() {
        let north = ca("north");
        let other = ca("north");
        assert_eq!(
            OrgCa::from_pem(&other.key_pem(), &north.cert_pem()).err(),
            Some(CertError::KeyMismatch)
        );
        let again = OrgCa::from_pem(&north.key_pem(), &north.cert_pem()).expect("loads");
        assert_eq!(again.cert_der(), north.cert_der());
    }

    #[test]
    fn a_ca_does_not_pin_itself_and_names_only_its_own_successor() {
        let north = ca("north");
        let next = ca("north");
        let east = ca("east");
        assert!(north
            .sign_trust_list(&[next.cert_der().to_vec()], 1, NOW)
            .is_err());
        assert!(north
            .sign_trust_list_with_successor(&[], Some(east.cert_der()), 1, NOW)
            .is_err());
        assert!(north
            .sign_trust_list_with_successor(&[], Some(next.cert_der()), 1, NOW)
            .is_ok());
    }
}
