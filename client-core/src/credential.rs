//! Member credentials: who a leaf in an MLS group is.
//!
//! For now a device's MLS credential is a `BasicCredential` whose identity is
//! the CBOR map `{ "user": user id, "device": device id }`, bound to the
//! device's signature key that the relay recorded at enrolment. The identity
//! issue replaces this with X.509 certificates issued by the organisation's
//! CA; every use goes through this module so that swap stays local.

use cascade_protocol::{DeviceId, UserId};
use openmls::prelude::{BasicCredential, Credential, CredentialType};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The identity a credential claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberIdentity {
    /// The user.
    pub user: UserId,
    /// The device (one MLS leaf).
    pub device: DeviceId,
}

/// Builds the MLS credential for a device.
pub fn make_credential(user: &UserId, device: &DeviceId) -> Credential {
    let id = MemberIdentity {
        user: user.clone(),
        device: *device,
    };
    let mut bytes = Vec::new();
    ciborium::into_writer(&id, &mut bytes).expect("serialising to a Vec cannot fail");
    BasicCredential::new(bytes).into()
}

/// Reads the identity out of a member's credential.
pub fn parse_credential(credential: &Credential) -> Result<MemberIdentity> {
    if credential.credential_type() != CredentialType::Basic {
        return Err(CoreError::Credential("unsupported credential type".into()));
    }
    let basic = BasicCredential::try_from(credential.clone())
        .map_err(|_| CoreError::Credential("not a basic credential".into()))?;
    ciborium::from_reader(basic.identity())
        .map_err(|_| CoreError::Credential("identity does not decode".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_round_trips() {
        let user = UserId::new("bob@east-ambulance").expect("valid");
        let device = DeviceId([9; 16]);
        let c = make_credential(&user, &device);
        assert_eq!(
            parse_credential(&c).expect("parses"),
            MemberIdentity { user, device }
        );
    }
}
