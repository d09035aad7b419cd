//! A device's MLS credential: the X.509 credential of RFC 9420 §5.3
//! carrying its device certificate.

use cascade_admin::OrgCa;
use cascade_core::credential::*;
use cascade_core::identity::{CertError, DeviceClaims};
use cascade_core::{CoreError, DeviceId, OrgId, UserId};
use openmls::prelude::tls_codec::Serialize as _;
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
