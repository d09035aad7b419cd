//! Member credentials: who a leaf in an MLS group is.
//!
//! A device's MLS credential is an X.509 credential (RFC 9420 §5.3) whose
//! chain holds one certificate: the device certificate its organisation's CA
//! issued (see [`crate::identity`]). Every use goes through this module:
//! [`make_credential`] for our own leaf, [`verify_member`] wherever a member
//! enters our view (a claimed KeyPackage, a Welcome, a commit adding
//! members), and [`member_identity`] to read who an already-verified member
//! is.

use cascade_protocol::{DeviceId, OrgId, UserId};
use openmls::prelude::tls_codec::{Serialize as _, VLBytes};
use openmls::prelude::{Credential, CredentialType};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, CredentialError, Result};
use crate::identity::{read_device_cert, verify_device_cert, TrustAnchor, VerifiedMember};

/// The identity a credential claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberIdentity {
    /// The user.
    pub user: UserId,
    /// The device (one MLS leaf).
    pub device: DeviceId,
}

/// Builds the MLS credential carrying a device certificate (DER).
///
/// RFC 9420 §5.3: an X.509 credential is `Certificate chain<V>` with each
/// `Certificate` an `opaque cert_data<V>`. openmls writes the credential's
/// content as one variable-length vector itself, so the content handed to it
/// is the chain's entries without the outer length: here one entry.
pub fn make_credential(certificate: &[u8]) -> Credential {
    let entry = VLBytes::from(certificate.to_vec())
        .tls_serialize_detached()
        .expect("serialising to a Vec cannot fail");
    Credential::new(CredentialType::X509, entry)
}

/// The device certificate inside a credential.
pub fn certificate(credential: &Credential) -> Result<Vec<u8>> {
    if credential.credential_type() != CredentialType::X509 {
        return Err(CredentialError::NotX509.into());
    }
    // The content is the chain's entries (see `make_credential`), read with
    // a bounds-checked reader: a member's credential is untrusted input.
    let bad = || CoreError::Credential(CredentialError::ChainDecode);
    let (first, rest) =
        cascade_protocol::mls_header::split_vl(credential.serialized_content()).ok_or_else(bad)?;
    if !rest.is_empty() {
        return Err(CredentialError::NotOneCertificate.into());
    }
    Ok(first.to_vec())
}

/// Verifies a member's credential against the trusted anchors at `now`
/// (seconds), and that the certificate binds `signature_key`, the key the
/// member signs with in MLS.
pub fn verify_member(
    credential: &Credential,
    signature_key: &[u8],
    anchors: &[TrustAnchor],
    now: i64,
    is_revoked: &dyn Fn(&OrgId, &DeviceId) -> bool,
) -> Result<VerifiedMember> {
    let cert = certificate(credential)?;
    let member = verify_device_cert(&cert, anchors, now, is_revoked)?;
    if member.signature_key != signature_key {
        return Err(crate::identity::CertError::KeyMismatch.into());
    }
    Ok(member)
}

/// Reads who a member is, without verifying (for members already verified
/// when they entered the group).
pub fn member_identity(credential: &Credential) -> Result<MemberIdentity> {
    let claims = read_device_cert(&certificate(credential)?)?;
    Ok(MemberIdentity {
        user: claims.user,
        device: claims.device,
    })
}
