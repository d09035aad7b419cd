//! How an organisation's admins authorise their requests to the relay's
//! admin API (`docs/protocol.md` §3.2.1): each request is signed with the
//! organisation's CA key, which the relay checks against the CA
//! certificate it holds for that organisation. The relay operator's admin
//! token cannot act for an organisation, and one organisation's key cannot
//! act for another.
//!
//! ```text
//! Authorization: Cascade-Org org=<org id>[, admin=<admin id>],
//!                time=<unix seconds>, nonce=<32 lowercase hex>,
//!                signature=<base64url, no padding>
//! ```
//!
//! The signature is Ed25519 over [`OrgAuthorization::message`], by the CA
//! key, or, with `admin=`, by the key of a person the CA appointed in the
//! organisation's signed [`AdminRoster`] (§3.2.2), so that the CA key can
//! stay offline and the audit log names the person. No IO and no key
//! handling here: the admin tool signs, the relay verifies.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::OrgId;

/// The `Authorization` scheme.
pub const SCHEME: &str = "Cascade-Org";

/// The first line of every message signed by the CA key: the version of
/// this scheme.
pub const CONTEXT: &str = "cascade-org-admin-v1";

/// The first line of every message signed by an appointed admin's key.
pub const ADMIN_CONTEXT: &str = "cascade-org-admin-key-v1";

/// Whether `id` may name an admin: 1 to 63 of `a-z`, `0-9` and `-`, not
/// starting or ending with `-` (the rules of an organisation id).
pub fn valid_admin_id(id: &str) -> bool {
    OrgId::new(id).is_ok()
}

/// How far a request's `time` may be from the relay's clock, either way.
pub const MAX_SKEW_SECS: u64 = 300;

/// An organisation admin's `Authorization` header, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAuthorization {
    /// The organisation acting.
    pub org: OrgId,
    /// The appointed admin who signed, or `None` when the CA key signed.
    pub admin: Option<String>,
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
    ///
    /// With `admin`, what that appointed admin's key signs: the first line
    /// is `ADMIN_CONTEXT` and the admin's id follows the organisation.
    pub fn message(
        method: &str,
        path_and_query: &str,
        org: &OrgId,
        admin: Option<&str>,
        time: u64,
        nonce: &[u8; 16],
        body: &[u8],
    ) -> Vec<u8> {
        let (context, admin) = match admin {
            None => (CONTEXT, String::new()),
            Some(id) => (ADMIN_CONTEXT, format!("\n{id}")),
        };
        format!(
            "{context}\n{method}\n{path_and_query}\n{org}{admin}\n{time}\n{}\n{}",
            hex::encode(nonce),
            hex::encode(Sha256::digest(body))
        )
        .into_bytes()
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        let admin = match &self.admin {
            Some(id) => format!(", admin={id}"),
            None => String::new(),
        };
        format!(
            "{SCHEME} org={}{admin}, time={}, nonce={}, signature={}",
            self.org,
            self.time,
            hex::encode(self.nonce),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.signature)
        )
    }

    /// Parses a header value; `None` unless it is this scheme with each of
    /// the four parameters exactly once, `admin` at most once, all well
    /// formed, and nothing else.
    pub fn parse(header: &str) -> Option<Self> {
        let params = header.strip_prefix(SCHEME)?.strip_prefix(' ')?;
        let (mut org, mut time, mut nonce, mut signature) = (None, None, None, None);
        let mut admin = None;
        for param in params.split(',') {
            let (name, value) = param.trim().split_once('=')?;
            let slot = match name {
                "org" => &mut org,
                "admin" => &mut admin,
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
        if admin.is_some_and(|id| !valid_admin_id(id)) {
            return None;
        }
        Some(Self {
            org: OrgId::new(org?).ok()?,
            admin: admin.map(str::to_owned),
            time: time.parse().ok()?,
            nonce: hex::decode(nonce).ok()?.try_into().ok()?,
            signature,
        })
    }
}

/// The body of an organisation's roster of appointed admins (§3.2.2):
/// the people whose own keys may sign its admin requests. Signed by the
/// organisation's CA key (a [`crate::SignedDocument`]); the relay checks
/// the signature with the CA it holds each time it uses the roster, so a
/// roster signed by a replaced CA no longer counts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdminRoster {
    /// Format version (1).
    pub v: u8,
    /// Always [`AdminRoster::KIND`]: no other document the CA signs reads
    /// as a roster.
    pub kind: String,
    /// The organisation.
    pub org: OrgId,
    /// Increases with every roster the CA signs; the relay refuses one
    /// that is not newer than the one it holds.
    pub serial: u64,
    /// When it was signed, seconds since the Unix epoch.
    pub issued_at: i64,
    /// The admins, each id once.
    pub admins: Vec<AdminEntry>,
}

/// One appointed admin in an [`AdminRoster`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdminEntry {
    /// Short id, as in the `admin=` parameter ([`valid_admin_id`]).
    pub id: String,
    /// The person's name, for the audit log.
    pub name: String,
    /// Their Ed25519 public key (32 bytes).
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Until when the appointment holds, seconds since the Unix epoch.
    pub not_after: i64,
}

/// The most admins one roster may name.
pub const MAX_ADMINS: usize = 256;

impl AdminRoster {
    /// The value of [`AdminRoster::kind`].
    pub const KIND: &'static str = "admins";

    /// The roster as the bytes the CA signs (CBOR).
    pub fn to_body(&self) -> Vec<u8> {
        let mut body = Vec::new();
        ciborium::into_writer(self, &mut body).expect("serialising to a Vec cannot fail");
        body
    }

    /// Reads a roster body back; `Err` with the reason unless it is a
    /// version 1 roster with at most [`MAX_ADMINS`] admins, each with a
    /// valid, unique id, a name and a 32-byte key.
    pub fn from_body(body: &[u8]) -> Result<Self, &'static str> {
        let roster: AdminRoster = ciborium::from_reader(body)
            .map_err(|_| "the roster is not CBOR of the roster format")?;
        if roster.v != 1 || roster.kind != Self::KIND {
            return Err("the document is not a version 1 admin roster");
        }
        if roster.admins.len() > MAX_ADMINS {
            return Err("the roster names more than 256 admins");
        }
        let mut ids = std::collections::HashSet::new();
        for admin in &roster.admins {
            if !valid_admin_id(&admin.id) || !ids.insert(admin.id.as_str()) {
                return Err("an admin id in the roster is invalid or repeated");
            }
            if admin.key.len() != 32 || admin.name.trim().is_empty() || admin.name.len() > 128 {
                return Err("an admin in the roster has no name or a key that is not 32 bytes");
            }
        }
        Ok(roster)
    }

    /// The admin `id`, if the roster names them and their appointment
    /// holds at `now`.
    pub fn current(&self, id: &str, now: i64) -> Option<&AdminEntry> {
        self.admins
            .iter()
            .find(|a| a.id == id)
            .filter(|a| now <= a.not_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OrgAuthorization {
        OrgAuthorization {
            org: OrgId::new("north-trust").expect("valid"),
            admin: None,
            time: 1_700_000_000,
            nonce: [0x5a; 16],
            signature: vec![0xab; 64],
        }
    }

    fn by_admin() -> OrgAuthorization {
        OrgAuthorization {
            admin: Some("dana".into()),
            ..sample()
        }
    }

    #[test]
    fn a_header_reads_back_as_written() {
        for auth in [sample(), by_admin()] {
            assert_eq!(OrgAuthorization::parse(&auth.to_header()), Some(auth));
        }
        assert_eq!(
            by_admin().to_header(),
            format!(
                "Cascade-Org org=north-trust, admin=dana, time=1700000000, \
                 nonce=5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a, signature={}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xab; 64])
            )
        );
    }

    #[test]
    fn an_admins_signed_message_is_pinned_and_differs_from_the_cas() {
        let org = OrgId::new("north-trust").expect("valid");
        let by_admin = OrgAuthorization::message(
            "POST",
            "/v1/admin/users",
            &org,
            Some("dana"),
            1_700_000_000,
            &[0x5a; 16],
            b"{}",
        );
        assert_eq!(
            String::from_utf8(by_admin.clone()).expect("text"),
            "cascade-org-admin-key-v1\nPOST\n/v1/admin/users\nnorth-trust\ndana\n1700000000\n\
             5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\n\
             44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let by_ca = OrgAuthorization::message(
            "POST",
            "/v1/admin/users",
            &org,
            None,
            1_700_000_000,
            &[0x5a; 16],
            b"{}",
        );
        assert_ne!(by_admin, by_ca);
    }

    #[test]
    fn the_signed_message_is_pinned() {
        let message = OrgAuthorization::message(
            "POST",
            "/v1/admin/users",
            &OrgId::new("north-trust").expect("valid"),
            None,
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
    fn a_roster_reads_back_and_malformed_ones_are_refused() {
        let dana = AdminEntry {
            id: "dana".into(),
            name: "Dana Price".into(),
            key: vec![7; 32],
            not_after: 1_800_000_000,
        };
        let roster = AdminRoster {
            v: 1,
            kind: AdminRoster::KIND.into(),
            org: OrgId::new("north-trust").expect("valid"),
            serial: 3,
            issued_at: 1_700_000_000,
            admins: vec![dana.clone()],
        };
        let read = AdminRoster::from_body(&roster.to_body()).expect("reads");
        assert_eq!(read, roster);
        assert_eq!(read.current("dana", 1_800_000_000), Some(&dana));
        assert_eq!(read.current("dana", 1_800_000_001), None, "expired");
        assert_eq!(read.current("erin", 1_700_000_000), None);
        let bad = [
            AdminRoster {
                v: 2,
                ..roster.clone()
            },
            AdminRoster {
                kind: "wipe".into(),
                ..roster.clone()
            },
            AdminRoster {
                admins: vec![dana.clone(), dana.clone()],
                ..roster.clone()
            },
            AdminRoster {
                admins: vec![AdminEntry {
                    id: "Dana".into(),
                    ..dana.clone()
                }],
                ..roster.clone()
            },
            AdminRoster {
                admins: vec![AdminEntry {
                    key: vec![7; 31],
                    ..dana.clone()
                }],
                ..roster.clone()
            },
            AdminRoster {
                admins: vec![AdminEntry {
                    name: " ".into(),
                    ..dana.clone()
                }],
                ..roster.clone()
            },
        ];
        for roster in bad {
            assert!(
                AdminRoster::from_body(&roster.to_body()).is_err(),
                "{roster:?}"
            );
        }
        assert!(AdminRoster::from_body(b"\xff\x00").is_err());
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
            good.replacen(", time=", ", admin=Dana, time=", 1),
            good.replacen(", time=", ", admin=, time=", 1),
            good.replacen(", time=", ", admin=a, admin=b, time=", 1),
        ];
        for header in bad {
            assert_eq!(OrgAuthorization::parse(&header), None, "{header}");
        }
    }
}
