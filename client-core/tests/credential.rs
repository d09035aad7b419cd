//! A device's MLS credential: the X.509 credential of RFC 9420 §5.3
//! carrying its device certificate.

use cascade_admin::OrgCa;
use cascade_core::credential::*;
use cascade_core::identity::{CertError, DeviceClaims};
use cascade_core::{CoreError, DeviceId, OrgId, UserId};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{Credential, CredentialType};

#[test]
fn credential_round_trips_and_verifies() {
    let org = OrgId::new("north").expect("valid");
    let ca = OrgCa::generate(&org, "North", 1_800_000_000, 10).expect("CA");
    let claims = DeviceClaims {
        user: UserId::new("bob@north").expect("valid"),
        device: DeviceId([9; 16]),
        display_name: "Bob".into(),
        role: "Doctor".into(),
    };
    let der = ca
        .issue_device(&claims, &[4; 32], 1_800_000_000, 10)
        .expect("issued");
    let c = make_credential(&der);
    assert_eq!(certificate(&c).expect("chain"), der);
    assert_eq!(
        member_identity(&c).expect("reads"),
        MemberIdentity {
            user: claims.user.clone(),
            device: claims.device
        }
    );
    let never = |_: &OrgId, _: &DeviceId| false;
    let m = verify_member(&c, &[4; 32], &[ca.anchor()], 1_800_000_100, &never).expect("ok");
    assert_eq!(m.claims, claims);
    assert!(matches!(
        verify_member(&c, &[5; 32], &[ca.anchor()], 1_800_000_100, &never),
        Err(CoreError::Certificate(CertError::KeyMismatch))
    ));
    assert!(certificate(&Credential::new(CredentialType::Basic, vec![0])).is_err());
    // The wire bytes are RFC 9420's: type 2, then chain<V> holding one
    // cert_data<V>.
    let wire = c.tls_serialize_detached().expect("serialise");
    assert_eq!(&wire[..2], &[0, 2]);
    let (chain, rest) = cascade_protocol::mls_header::split_vl(&wire[2..]).expect("chain");
    assert!(rest.is_empty());
    let (cert, rest) = cascade_protocol::mls_header::split_vl(chain).expect("cert_data");
    assert!(rest.is_empty());
    assert_eq!(cert, der.as_slice());
    // Two certificates, or trailing bytes, are refused.
    let mut two = make_credential(&der).serialized_content().to_vec();
    two.extend_from_slice(make_credential(&der).serialized_content());
    assert!(certificate(&Credential::new(CredentialType::X509, two)).is_err());
    assert!(certificate(&Credential::new(CredentialType::X509, vec![0x40])).is_err());
}

/// The RFC 9420 §5.3 form, pinned as `docs/protocol.md` §14.2 gives it: a
/// 517-byte certificate is `00 02` (x509), then `42 07` (the certificate
/// vector, 519 bytes) and `42 05` (`cert_data`, 517 bytes), then the DER.
#[test]
fn the_credential_is_the_rfc_9420_form_byte_for_byte() {
    let mut der = vec![0x30, 0x82, 0x02, 0x01];
    der.resize(517, 0xab);
    let wire = make_credential(&der)
        .tls_serialize_detached()
        .expect("serialise");
    assert_eq!(&wire[..6], &[0x00, 0x02, 0x42, 0x07, 0x42, 0x05]);
    assert_eq!(&wire[6..], der.as_slice());
    assert_eq!(wire.len(), 2 + 2 + 2 + 517);
    // And it reads back from exactly those bytes.
    let parsed = Credential::tls_deserialize_exact(wire.as_slice()).expect("parses");
    assert_eq!(certificate(&parsed).expect("one certificate"), der);
}
