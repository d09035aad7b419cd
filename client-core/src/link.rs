//! Linking a new device with its history (protocol §14.12): what the two
//! devices write to their link session at the relay, and the key they
//! agree on.
//!
//! 1. The **new** device makes an X25519 key share and a code of
//!    [`CODE_DIGITS`] random digits, and writes its [`Offer`] (its
//!    certificate, the share, the code, signed with its device key) to the
//!    session under the code. It shows the code, and a QR payload that also
//!    commits to the offer's hash.
//! 2. The **existing** device, given the code (typed or scanned), reads the
//!    offer, checks it (the code; the certificate verified against the
//!    organisations it trusts, of the **same user**, another device, not
//!    revoked; the signature; the QR's hash when scanned), and writes its
//!    own signed [`Answer`] with its share.
//! 3. Both compute `X25519`, and from it and the hash of what both wrote,
//!    with HKDF-SHA-256, the key for the history and six digits
//!    ([`Agreed::digits`]) that both show. The person types the new
//!    device's digits into the existing one: only if they are the same
//!    does it seal its history (an archive, [`crate::store::history`])
//!    under the key, upload it for the user's own devices, and write
//!    [`Ready`] with its digest and size.
//! 4. The new device fetches the sealed history, opens it with the key (a
//!    blob from anyone else does not open) and takes it in.
//!
//! The relay sees certificates, key shares and ciphertext only. A device
//! of another user is refused by the relay (it shows a session only to
//! the user's own devices) and by both devices (the certificate must name
//! the same user); a wrong code finds nothing and fails safe; a relay that
//! put in shares of its own would make the digits differ.

use cascade_protocol::DeviceId;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Digits of a link code.
pub const CODE_DIGITS: usize = 8;

/// The start of a link QR payload.
pub const QR_PREFIX: &str = "cascade-link:1:";

/// The version of the offer and answer layout.
pub const LINK_VERSION: u32 = 1;

/// Why a link did not go ahead. Nothing in it is secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a link code or QR payload.
    #[error("a link code is {CODE_DIGITS} digits (spaces do not matter), or the QR payload")]
    BadCode,
    /// No device of this user waits with this code (a wrong code, one that
    /// lapsed after 10 minutes, or one of another user's).
    #[error("no device of yours is waiting to be linked with this code")]
    NoSuchCode,
    /// The device that offered or answered is not one of this user's.
    #[error("that device belongs to {0}, not to you: linking refused")]
    OtherUser(cascade_protocol::UserId),
    /// The code is this device's own.
    #[error("this is this device's own code: enter it on your other device")]
    OwnCode,
    /// An offer or answer that does not verify (its signature, its code,
    /// the QR's hash) or does not decode.
    #[error("the other device's part does not verify ({0}): linking refused")]
    Invalid(&'static str),
    /// The digits typed are not the ones this link agreed.
    #[error(
        "the digits differ: this is not your new device, or a digit was mistyped; nothing was sent"
    )]
    WrongDigits,
    /// A step that needs an earlier one (or a link that was cancelled).
    #[error("no link is under way on this device")]
    NotStarted,
    /// The other device did not answer in time.
    #[error("the other device did not answer in time")]
    TimedOut,
    /// The history did not open under the agreed key.
    #[error("the history sent is not the one agreed (it does not open)")]
    NotOpened,
}

/// The new device's part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// [`LINK_VERSION`].
    pub version: u32,
    /// The code it shows.
    pub code: String,
    /// The new device.
    pub device_id: DeviceId,
    /// Its certificate (DER).
    pub certificate: ByteBuf,
    /// Its X25519 share, 32 octets.
    pub share: ByteBuf,
    /// Its Ed25519 signature over [`Offer::to_be_signed`].
    pub signature: ByteBuf,
}

impl Offer {
    /// What the signature covers.
    pub fn to_be_signed(&self) -> Vec<u8> {
        let mut b = b"cascade link offer v1".to_vec();
        b.extend_from_slice(self.code.as_bytes());
        b.push(0);
        b.extend_from_slice(self.device_id.as_bytes());
        b.extend_from_slice(&self.share);
        b.extend_from_slice(&Sha256::digest(&self.certificate));
        b
    }
}

/// The existing device's part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// [`LINK_VERSION`].
    pub version: u32,
    /// The existing device.
    pub device_id: DeviceId,
    /// Its certificate (DER).
    pub certificate: ByteBuf,
    /// Its X25519 share, 32 octets.
    pub share: ByteBuf,
    /// Its Ed25519 signature over [`Answer::to_be_signed`] with the hash of
    /// the offer it answers.
    pub signature: ByteBuf,
}

impl Answer {
    /// What the signature covers: the offer answered, and this answer.
    pub fn to_be_signed(&self, offer: &[u8]) -> Vec<u8> {
        let mut b = b"cascade link answer v1".to_vec();
        b.extend_from_slice(&Sha256::digest(offer));
        b.extend_from_slice(self.device_id.as_bytes());
        b.extend_from_slice(&self.share);
        b.extend_from_slice(&Sha256::digest(&self.certificate));
        b
    }
}

/// Where the sealed history is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// SHA-256 of the sealed history (its blob at the relay).
    pub digest: ByteBuf,
    /// Its octets.
    pub size: u64,
}

/// CBOR of a link part.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut b = Vec::new();
    ciborium::into_writer(v, &mut b).expect("a link part encodes");
    b
}

/// A link part from CBOR.
pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, LinkError> {
    ciborium::from_reader(b).map_err(|_| LinkError::Invalid("it does not decode"))
}

/// A fresh code of [`CODE_DIGITS`] digits.
pub fn new_code() -> String {
    use rand::Rng as _;
    let mut rng = rand::thread_rng();
    (0..CODE_DIGITS)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// A code as people read it: two groups of four.
pub fn shown_code(code: &str) -> String {
    if code.len() == CODE_DIGITS {
        format!("{} {}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

/// The QR payload for an offer: the code and the offer's hash.
pub fn qr_payload(code: &str, offer: &[u8]) -> String {
    format!("{QR_PREFIX}{code}:{}", hex::encode(Sha256::digest(offer)))
}

/// What the user typed or scanned: the code, and the offer's hash if it
/// was the QR payload.
pub fn parse_code(input: &str) -> Result<(String, Option<[u8; 32]>), LinkError> {
    let input = input.trim();
    if let Some(rest) = input.strip_prefix(QR_PREFIX) {
        let (code, hash) = rest.split_once(':').ok_or(LinkError::BadCode)?;
        let hash: [u8; 32] = hex::decode(hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or(LinkError::BadCode)?;
        return Ok((parse_digits(code)?, Some(hash)));
    }
    Ok((parse_digits(input)?, None))
}

fn parse_digits(typed: &str) -> Result<String, LinkError> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if code.len() != CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LinkError::BadCode);
    }
    Ok(code)
}

/// One device's X25519 secret for one link.
pub struct Share {
    secret: StaticSecret,
}

impl Share {
    /// A fresh share.
    pub fn new() -> Share {
        Share {
            secret: StaticSecret::random_from_rng(rand::rngs::OsRng),
        }
    }

    /// Its public half.
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.secret).to_bytes()
    }

    /// The key and digits agreed with the other device, given the offer
    /// and answer as written to the session.
    pub fn agree(&self, theirs: &[u8], offer: &[u8], answer: &[u8]) -> Result<Agreed, LinkError> {
        let theirs: [u8; 32] = theirs
            .try_into()
            .map_err(|_| LinkError::Invalid("a key share is 32 octets"))?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(theirs));
        if !shared.was_contributory() {
            return Err(LinkError::Invalid("a key share of low order"));
        }
        let mut transcript = Sha256::new();
        transcript.update(b"cascade link v1");
        transcript.update(Sha256::digest(offer));
        transcript.update(Sha256::digest(answer));
        let hk = Hkdf::<Sha256>::new(Some(&transcript.finalize()), shared.as_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(b"cascade link v1 history key", key.as_mut_slice())
            .expect("32 octets");
        let mut digits = [0u8; 8];
        hk.expand(b"cascade link v1 digits", &mut digits)
            .expect("8 octets");
        let n = u64::from_be_bytes(digits) % 1_000_000;
        Ok(Agreed {
            key,
            digits: format!("{:03} {:03}", n / 1000, n % 1000),
        })
    }
}

impl Default for Share {
    fn default() -> Self {
        Self::new()
    }
}

/// What the two devices agreed.
pub struct Agreed {
    /// The key the history is sealed under.
    pub key: Zeroizing<[u8; 32]>,
    /// Six digits both devices show, `123 456`.
    pub digits: String,
}

impl std::fmt::Debug for Agreed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agreed")
            .field("digits", &self.digits)
            .finish_non_exhaustive()
    }
}

/// Whether the digits typed are the agreed ones (spaces do not count).
pub fn same_digits(typed: &str, agreed: &str) -> bool {
    let strip = |s: &str| -> String { s.chars().filter(char::is_ascii_digit).collect() };
    let (a, b) = (strip(typed), strip(agreed));
    a.len() == 6 && a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_anyone_else_does_not() {
        let (new, old, relay) = (Share::new(), Share::new(), Share::new());
        let (offer, answer) = (b"offer".to_vec(), b"answer".to_vec());
        let a = new.agree(&old.public(), &offer, &answer).expect("agreed");
        let b = old.agree(&new.public(), &offer, &answer).expect("agreed");
        assert_eq!(*a.key, *b.key);
        assert_eq!(a.digits, b.digits);
        assert_eq!(a.digits.len(), 7);
        // A relay that swapped in its own share agrees with each side on
        // something else: the digits differ (but for one in a million).
        let with_relay = new.agree(&relay.public(), &offer, &answer).expect("agreed");
        assert_ne!(*with_relay.key, *b.key);
        // Another transcript, another key.
        let other = new.agree(&old.public(), &offer, b"other").expect("agreed");
        assert_ne!(*other.key, *a.key);
        assert!(matches!(
            new.agree(&[0u8; 32], &offer, &answer),
            Err(LinkError::Invalid(_))
        ));
    }

    #[test]
    fn codes_are_read_typed_or_scanned() {
        let code = new_code();
        assert_eq!(code.len(), CODE_DIGITS);
        assert_eq!(
            parse_code(&shown_code(&code)).expect("typed"),
            (code.clone(), None)
        );
        let qr = qr_payload(&code, b"offer");
        let (c, hash) = parse_code(&qr).expect("scanned");
        assert_eq!(c, code);
        assert_eq!(
            hash.expect("a hash").as_slice(),
            Sha256::digest(b"offer").as_slice()
        );
        for bad in ["1234", "1234 567a", "", "cascade-link:1:12345678:zz"] {
            assert_eq!(parse_code(bad), Err(LinkError::BadCode), "{bad:?}");
        }
        assert!(same_digits("123456", "123 456"));
        assert!(!same_digits("123 457", "123 456"));
        assert!(!same_digits("", ""));
    }
}
