//! Device authentication on the WebSocket.
//!
//! The relay pushes a fresh 32-byte nonce; the device answers with an Ed25519
//! signature, made with its MLS signature key, over
//! [`challenge_payload`]. The domain-separation label keeps this signature
//! from ever being valid as an MLS signature or anything else.

use crate::DeviceId;

/// Domain-separation label of the challenge signature.
pub const CHALLENGE_LABEL: &[u8] = b"cascade-ws-auth-v1\0";

/// Length of the challenge nonce in bytes.
pub const NONCE_LEN: usize = 32;

/// The bytes a device signs to authenticate: label, nonce, device id.
pub fn challenge_payload(nonce: &[u8], device_id: &DeviceId) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHALLENGE_LABEL.len() + nonce.len() + 16);
    out.extend_from_slice(CHALLENGE_LABEL);
    out.extend_from_slice(nonce);
    out.extend_from_slice(device_id.as_bytes());
    out
}

/// Domain-separation label of a device's confirmation that it carried out
/// its organisation's wipe order.
pub const WIPED_LABEL: &[u8] = b"cascade-wiped-v1\0";

/// The bytes a device signs, with its MLS signature key, to confirm that it
/// erased itself on `order` (the body of the signed wipe order): label,
/// device id, order (`docs/protocol.md` §14.6).
pub fn wiped_payload(device_id: &DeviceId, order: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(WIPED_LABEL.len() + 16 + order.len());
    out.extend_from_slice(WIPED_LABEL);
    out.extend_from_slice(device_id.as_bytes());
    out.extend_from_slice(order);
    out
}
