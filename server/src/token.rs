//! Bearer secrets: the admin token and enrolment tokens.
//!
//! A token is 32 random bytes, base64url without padding. The relay stores
//! only its SHA-256 and compares digests without early exit.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh random token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a token, which is what the store keeps.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two digests in time independent of where they differ.
pub fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_random_bytes_and_hash_stably() {
        let t = new_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).expect("base64url").len(), 32);
        assert_ne!(t, new_token());
        assert!(digests_equal(&token_hash(&t), &token_hash(&t)));
        assert!(!digests_equal(&token_hash(&t), &token_hash("other")));
    }
}
