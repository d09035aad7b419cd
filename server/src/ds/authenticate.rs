//! `Authenticate`: a device proves possession of its enrolled signature key
//! by signing the connection's challenge.

use cascade_protocol::auth::challenge_payload;
use cascade_protocol::frames::Response;
use cascade_protocol::DeviceId;
use ed25519_dalek::{Signature, VerifyingKey};

use super::Session;
use crate::error::DsError;
use crate::AppState;

/// Verifies the signature over the challenge `nonce` with the device's
/// enrolled key (strict Ed25519 verification). Unknown devices, revoked
/// devices and bad signatures all give `AuthenticationFailed`. On success
/// returns the session; the caller registers the connection, then answers
/// with [`authenticated`] and sends the backlog.
pub fn handle(
    state: &AppState,
    nonce: &[u8],
    device_id: &DeviceId,
    signature: &[u8],
) -> Result<Session, DsError> {
    let device = match state.store().get_device(device_id)? {
        Some(device) if !device.revoked => device,
        _ => return Err(DsError::AuthenticationFailed),
    };
    let key = <[u8; 32]>::try_from(device.signature_key.as_slice())
        .ok()
        .and_then(|k| VerifyingKey::from_bytes(&k).ok())
        .ok_or(DsError::AuthenticationFailed)?;
    let signature = Signature::from_slice(signature).map_err(|_| DsError::AuthenticationFailed)?;
    key.verify_strict(&challenge_payload(nonce, device_id), &signature)
        .map_err(|_| DsError::AuthenticationFailed)?;
    Ok(Session {
        device_id: device.device_id,
        user_id: device.user_id,
    })
}

/// The `Authenticated` answer: KeyPackage stock and the device's
/// certificate. Read after the connection registered for live delivery, so
/// a certificate uploaded at any moment reaches the device, in this answer
/// or as a `CertificateIssued` push (or both).
pub fn authenticated(state: &AppState, session: &Session) -> Result<Response, DsError> {
    let store = state.store();
    let stock = store.key_package_stock(&session.device_id)?;
    let device = store
        .get_device(&session.device_id)?
        .ok_or(DsError::AuthenticationFailed)?;
    // Checked again after the connection registered for live delivery: a
    // revocation that landed in between found nothing to disconnect, so it
    // must be caught here.
    if device.revoked {
        return Err(DsError::AuthenticationFailed);
    }
    store.set_last_seen(&session.device_id, crate::unix_now())?;
    Ok(Response::Authenticated {
        user_id: session.user_id.clone(),
        key_package_stock: stock.stock,
        has_last_resort: stock.has_last_resort,
        certificate: device.certificate,
    })
}
