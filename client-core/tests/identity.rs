//! Device certificates, trust lists and revocation lists: what a device
//! accepts and refuses. The certificates are made by the organisation CA in
//! `cascade-admin`, exactly as `cascade admin` makes them; the checks are
//! `cascade_core::identity`'s.

use cascade_admin::OrgCa;
use cascade_core::identity::*;
use cascade_core::{DeviceId, OrgId, UserId};

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
    tampered.body = list2.to_body().into();
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
fn revocation_lists_verify_only_under_their_own_ca() {
    let north = ca("north");
    let revoked = [DeviceId([1; 16]), DeviceId([2; 16])];
    let doc = north.sign_revocations(&revoked, 3, NOW).expect("signed");
    let list = verify_revocations(&doc, &north.anchor()).expect("verifies");
    assert_eq!((list.serial, list.devices.as_slice()), (3, &revoked[..]));
    // Nobody without north's key can take a device off the list.
    let mut shorter = list.clone();
    shorter.devices.pop();
    let mut tampered = doc.clone();
    tampered.body = shorter.to_body().into();
    assert_eq!(
        verify_revocations(&tampered, &north.anchor()).err(),
        Some(CertError::BadSignature)
    );
    // During a rotation the new CA's co-signature is enough.
    let next = ca("north");
    let co_signed = north
        .sign_revocations(&revoked, 4, NOW)
        .and_then(|d| next.co_sign(d))
        .expect("co-signed");
    assert!(verify_revocations(&co_signed, &next.anchor()).is_ok());
    assert_eq!(
        verify_revocations(&co_signed, &ca("north").anchor()).err(),
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
