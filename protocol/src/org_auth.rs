//! How an organisation's admins authorise their requests to the relay's
//! admin API (`docs/protocol.md` §3.2.1): each request is signed with the
//! organisation's CA key, which the relay checks against the CA
//! certificate it holds for that organisation. The relay operator's admin
//! token cannot act for an organisation, and one organisation's key cannot
//! act for another.
//!
//! ```text
//! Authorization: Cascade-Org org=<org id>, time=<unix seconds>,
//!                nonce=<32 lowercase hex>, signature=<base64url, no padding>
//! ```
//!
//! The signature is Ed25519 over [`OrgAuthorization::message`]. No IO and
//! no key handling here: the admin tool signs, the relay verifies.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::OrgId;

/// The `Authorization` scheme.
pub const SCHEME: &str = "Cascade-Org";

/// The first line of every signed message: the version of this scheme.
pub const CONTEXT: &str = "cascade-org-admin-v1";

/// How far a request's `time` may be from the relay's clock, either way.
pub const MAX_SKEW_SECS: u64 = 300;

/// An organisation admin's `Authorization` header, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAuthorization {
    /// The organisation acting.
    pub org: OrgId,
    /// When the request was signed, seconds since the Unix epoch.
    pub time: u64,
    /// 16 random bytes, never used twice within [`MAX_SKEW_SECS`].
    pub nonce: [u8; 16],
    /// Ed25519 signature (64 bytes) over [`OrgAuthorization::message`].
    pub signature: Vec<u8>,
}

impl OrgAuthorization {
    /// The bytes the organisation's CA key signs: the lines `CONTEXT`,
    /// the method (upper case), the path and query exactly as sent, the
    /// organisation, the time (decimal), the nonce (lowercase hex) and the
    /// SHA-256 of the body (lowercase hex; of the empty string when there
    /// is no body), joined by `\n` with no newline at the end.
    pub fn message(
        method: &str,
        path_and_query: &str,
        org: &OrgId,
        time: u64,
        nonce: &[u8; 16],
        body: &[u8],
    ) -> Vec<u8> {
        format!(
            "{CONTEXT}\n{method}\n{path_and_query}\n{org}\n{time}\n{}\n{}",
            hex::encode(nonce),
            hex::encode(Sha256::digest(body))
        )
        .into_bytes()
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        format!(
            "{SCHEME} org={}, time={}, nonce={}, signature={}",
            self.org,
            self.time,
            hex::encode(self.nonce),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.signature)
        )
    }

    /// Parses a header value; `None` unless it is this scheme with each of
    /// the four parameters exactly once, well formed, and nothing else.
    pub fn parse(header: &str) -> Option<Self> {
        let params = header.strip_prefix(SCHEME)?.strip_prefix(' ')?;
        let (mut org, mut time, mut nonce, mut signature) = (None, None, None, None);
        for param in params.split(',') {
            let (name, value) = param.trim().split_once('=')?;
            let slot = match name {
                "org" => &mut org,
                "time" => &mut time,
                "nonce" => &mut nonce,
                "signature" => &mut signature,
                _ => return None,
            };
            if slot.replace(value).is_some() {
                return None;
            }
        }
        let time = time?;
        if time.is_empty() || !time.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let nonce = nonce?;
        if nonce.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature?)
            .ok()
            .filter(|s| s.len() == 64)?;
        Some(Self {
            org: OrgId::new(org?).ok()?,
            time: time.parse().ok()?,
            nonce: hex::decode(nonce).ok()?.try_into().ok()?,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OrgAuthorization {
        OrgAuthorization {
            org: OrgId::new("north-trust").expect("valid"),
            time: 1_700_000_000,
            nonce: [0x5a; 16],
            signature: vec![0xab; 64],
        }
    }

    #[test]
    fn a_header_reads_back_as_written() {
        let auth = sample();
        assert_eq!(OrgAuthorization::parse(&auth.to_header()), Some(auth));
    }

    #[test]
    fn the_signed_message_is_pinned() {
        let message = OrgAuthorization::message(
            "POST",
            "/v1/admin/users",
            &OrgId::new("north-trust").expect("valid"),
            1_700_000_000,
            &[0x5a; 16],
            b"{}",
        );
        assert_eq!(
            String::from_utf8(message).expect("text"),
            "cascade-org-admin-v1\nPOST\n/v1/admin/users\nnorth-trust\n1700000000\n\
             5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\n\
             44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = sample().to_header();
        let bad = [
            String::new(),
            "Bearer x".into(),
            good.replacen("Cascade-Org", "cascade-org", 1),
            good.replacen("time=1700000000", "time=-1", 1),
            good.replacen("time=1700000000", "time=", 1),
            good.replacen("time=1700000000", "time=99999999999999999999999", 1),
            good.replacen("nonce=5a", "nonce=5A", 1),
            good.replacen("nonce=5a", "nonce=", 1),
            good.replacen("org=north-trust", "org=North", 1),
            format!("{good}, extra=1"),
            format!("{good}, time=1"),
            good.replacen(", signature=", ", sig=", 1),
            good[..good.len() - 4].to_owned(),
        ];
        for header in bad {
            assert_eq!(OrgAuthorization::parse(&header), None, "{header}");
        }
    }
}
