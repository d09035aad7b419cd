//! `POST /v1/enrol`: a device enrols with a one-time token.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::Json;
use cascade_protocol::enrolment_code::{canonical_token, Fingerprint};
use cascade_protocol::frames::Bytes;
use cascade_protocol::http::{EnrolRequest, EnrolResponse};
use cascade_protocol::limits::MAX_NAME_BYTES;
use cascade_protocol::DeviceId;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::store::{NewDevice, StoreError};
use crate::token::token_hash;
use crate::{unix_now, AppState};

/// Parses a hex Ed25519 public key, refusing weak (small-order) keys.
fn signature_key(hex_key: &str) -> Result<[u8; 32], ApiError> {
    const BAD_KEY: ApiError =
        ApiError::BadRequest("signature_key must be a 32-byte Ed25519 public key in hex");
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(BAD_KEY)?;
    match VerifyingKey::from_bytes(&bytes) {
        Ok(key) if !key.is_weak() => Ok(bytes),
        _ => Err(BAD_KEY),
    }
}

/// Refuses, before the token is spent, a code whose fingerprint is not the
/// CA of the token's organisation. An unknown token is left for
/// `enrol_device` to refuse as such.
fn check_fingerprint(state: &AppState, hash: &[u8; 32], expected: &str) -> Result<(), ApiError> {
    let store = state.store();
    let Some(token) = store.enrolment_token(hash)? else {
        return Ok(());
    };
    let ca = store
        .get_org(&token.user_id.org())?
        .and_then(|o| o.ca_certificate);
    let matches = match (ca, Fingerprint::parse(expected)) {
        (Some(der), Ok(fingerprint)) => fingerprint.matches(&Sha256::digest(&der).into()),
        _ => false,
    };
    if !matches {
        tracing::info!("enrolment refused: the code's fingerprint is not the organisation's CA");
        return Err(ApiError::FingerprintMismatch);
    }
    Ok(())
}

/// Spends the token and creates the device with a fresh random id. The
/// request is validated before the token is touched, so a bad request does
/// not burn it. `401 invalid_token` for an unknown, used or expired token.
///
/// After [`crate::ENROL_FAILURES_PER_ADDRESS`] refused tokens or codes from
/// one source address (one /64 for IPv6) within [`crate::ENROL_WINDOW`],
/// every request from it gets `429 rate_limited` until the window ends, and
/// after [`crate::ENROL_FAILURES_TOTAL`] from all addresses together, every
/// request does: tokens cannot be guessed at speed, from one address or
/// many.
pub async fn enrol(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<EnrolRequest>,
) -> Result<Json<EnrolResponse>, ApiError> {
    let limits = state.limits();
    let address = address_key(peer.ip());
    if let Err(wait) = limits
        .enrol_failures
        .check(&address)
        .and_then(|()| limits.enrol_failures_total.check(&()))
    {
        state.metrics().limited("enrolment");
        tracing::info!("enrolment refused: too many failed enrolments");
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    if state.room_to_write().is_err() {
        return Err(ApiError::Unavailable {
            retry_after_secs: crate::disk::RETRY_AFTER_MS / 1000,
        });
    }
    let result = enrol_device(&state, req).await;
    if matches!(
        result,
        Err(ApiError::InvalidToken | ApiError::FingerprintMismatch)
    ) {
        // A full table refuses new addresses at their next attempt (the
        // check above), not this one, which was answered already.
        let _ = limits.enrol_failures.attempt(&address);
        let _ = limits.enrol_failures_total.attempt(&());
    }
    result
}

/// The key a source address is limited under: an IPv4 address itself, an
/// IPv6 address's /64 (one host commonly holds a whole /64).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

async fn enrol_device(
    state: &AppState,
    req: EnrolRequest,
) -> Result<Json<EnrolResponse>, ApiError> {
    if req.device_name.trim().is_empty() || req.device_name.len() > MAX_NAME_BYTES {
        return Err(ApiError::BadRequest(
            "device_name must be non-empty and at most MAX_NAME_BYTES bytes",
        ));
    }
    let key = signature_key(&req.signature_key)?;
    let new = NewDevice {
        device_id: DeviceId::random(),
        name: req.device_name,
        signature_key: Bytes::from(key.to_vec()),
        enrolled_at: unix_now(),
    };
    let store = state.store();
    // A short-code token reads however it was typed.
    let hash = token_hash(&canonical_token(&req.token));
    if let Some(expected) = &req.ca_fingerprint {
        check_fingerprint(state, &hash, expected)?;
    }
    let device = match store.enrol_device(&hash, unix_now(), &new) {
        Ok(device) => device,
        Err(StoreError::InvalidToken) => {
            tracing::info!("enrolment refused: invalid token");
            return Err(ApiError::InvalidToken);
        }
        Err(e) => return Err(e.into()),
    };
    let user = store
        .get_user(&device.user_id)?
        .ok_or(StoreError::Corrupt("device of an unknown user".into()))?;
    state.flush().await?;
    tracing::info!(user = %user.user_id, device = %device.device_id, "device enrolled");
    state.audit(
        "enrolment-token",
        "device.enrol",
        serde_json::json!({
            "user": user.user_id,
            "device": device.device_id.to_string(),
            "name": device.name,
        }),
    )?;
    Ok(Json(EnrolResponse {
        device_id: device.device_id,
        org_id: user.user_id.org(),
        user_id: user.user_id,
        display_name: user.display_name,
        role: user.role,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_limited_as_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("v6");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let v4: IpAddr = "192.0.2.7".parse().expect("v4");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("mapped");
        assert_eq!(address_key(mapped), v4);
        assert_eq!(address_key(v4), v4);
    }
}
