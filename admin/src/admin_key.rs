//! A person's own admin key (`docs/protocol.md` §3.2.2): the CA appoints
//! it in the organisation's signed roster, and from then on it signs that
//! person's requests to the relay's admin API, so the CA key can stay
//! offline and the relay's audit log names the person.

use cascade_core::identity::CertError;
use cascade_protocol::org_auth::{self, OrgAuthorization};
use cascade_protocol::OrgId;
use rcgen::{KeyPair, PKCS_ED25519};

fn malformed(e: impl std::fmt::Display) -> CertError {
    CertError::Malformed(e.to_string())
}

/// What signs an organisation's requests to the relay's admin API: its CA
/// ([`crate::OrgCa`]) or an admin it appointed ([`AdminKey`]).
pub trait OrgSigner: Send + Sync {
    /// The organisation the requests act for.
    fn org(&self) -> &OrgId;

    /// The appointed admin's id, or `None` for the CA itself.
    fn admin(&self) -> Option<&str>;

    /// Signs `message` with this signer's Ed25519 key.
    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, CertError>;

    /// The `Authorization` header value for one request: a signature over
    /// the method, the path and query, the time `now`, a fresh nonce and
    /// the body ([`cascade_protocol::org_auth`]).
    fn authorize(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: u64,
    ) -> Result<String, CertError> {
        let nonce: [u8; 16] = rand::random();
        let message = OrgAuthorization::message(
            method,
            path_and_query,
            self.org(),
            self.admin(),
            now,
            &nonce,
            body,
        );
        Ok(OrgAuthorization {
            org: self.org().clone(),
            admin: self.admin().map(str::to_owned),
            time: now,
            nonce,
            signature: self.sign_message(&message)?,
        }
        .to_header())
    }
}

/// An appointed admin's Ed25519 key, with their organisation and id.
pub struct AdminKey {
    org: OrgId,
    id: String,
    key: KeyPair,
}

impl AdminKey {
    /// A new key for admin `id` of `org`.
    pub fn generate(org: &OrgId, id: &str) -> Result<AdminKey, CertError> {
        check_id(id)?;
        Ok(AdminKey {
            org: org.clone(),
            id: id.to_owned(),
            key: KeyPair::generate_for(&PKCS_ED25519).map_err(malformed)?,
        })
    }

    /// Loads a key written by [`AdminKey::key_pem`]; refuses one that is
    /// not Ed25519.
    pub fn from_pem(org: &OrgId, id: &str, key_pem: &str) -> Result<AdminKey, CertError> {
        check_id(id)?;
        let key = KeyPair::from_pem(key_pem).map_err(malformed)?;
        if !key.is_compatible(&PKCS_ED25519) {
            return Err(CertError::Malformed("an admin key is Ed25519".into()));
        }
        Ok(AdminKey {
            org: org.clone(),
            id: id.to_owned(),
            key,
        })
    }

    /// The admin's id in the roster.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key, PEM (PKCS#8). Keep it owner-only.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The public key (32 bytes), which the CA appoints.
    pub fn public_key(&self) -> [u8; 32] {
        self.key
            .public_key_raw()
            .try_into()
            .expect("an Ed25519 public key is 32 bytes")
    }
}

fn check_id(id: &str) -> Result<(), CertError> {
    if org_auth::valid_admin_id(id) {
        Ok(())
    } else {
        Err(CertError::Malformed(format!(
            "{id:?} is not an admin id: use a-z, 0-9 and '-', at most 63"
        )))
    }
}

impl OrgSigner for AdminKey {
    fn org(&self) -> &OrgId {
        &self.org
    }

    fn admin(&self) -> Option<&str> {
        Some(&self.id)
    }

    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, CertError> {
        rcgen::SigningKey::sign(&self.key, message).map_err(malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};

    #[test]
    fn an_admin_key_signs_the_admin_message_and_reads_back_from_pem() {
        let org = OrgId::new("north-trust").expect("valid");
        let key = AdminKey::generate(&org, "dana").expect("key");
        let again = AdminKey::from_pem(&org, "dana", &key.key_pem()).expect("reads");
        assert_eq!(again.public_key(), key.public_key());
        let header = again
            .authorize(
                "GET",
                "/v1/admin/orgs/north-trust/users",
                b"",
                1_700_000_000,
            )
            .expect("signs");
        let auth = OrgAuthorization::parse(&header).expect("parses");
        assert_eq!(auth.admin.as_deref(), Some("dana"));
        let message = OrgAuthorization::message(
            "GET",
            "/v1/admin/orgs/north-trust/users",
            &org,
            Some("dana"),
            auth.time,
            &auth.nonce,
            b"",
        );
        let verifying = VerifyingKey::from_bytes(&key.public_key()).expect("key");
        let signature = Signature::from_slice(&auth.signature).expect("signature");
        assert!(verifying.verify(&message, &signature).is_ok());
        assert!(AdminKey::generate(&org, "Dana").is_err());
    }
}
