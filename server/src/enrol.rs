//! `POST /v1/enrol`: a device enrols with a one-time token.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::Json;
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
    let actual = ca.map(|der| hex::encode(Sha256::digest(&der)));
    if actual.as_deref() != Some(expected.to_ascii_lowercase().as_str()) {
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
/// one source address within [`crate::ENROL_WINDOW`], every request from
/// it gets `429 rate_limited` until the window ends, so tokens cannot be
/// guessed at speed.
pub async fn enrol(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<EnrolRequest>,
) -> Result<Json<EnrolResponse>, ApiError> {
    let failures = &state.limits().enrol_failures;
    if let Err(wait) = failures.check(&peer.ip()) {
        state.metrics().limited("enrolment");
        tracing::info!("enrolment refused: too many failures from one address");
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let result = enrol_device(&state, req).await;
    if matches!(
        result,
        Err(ApiError::InvalidToken | ApiError::FingerprintMismatch)
    ) {
        // A full table refuses new addresses at their next attempt (the
        // check above), not this one, which was answered already.
        let _ = failures.attempt(&peer.ip());
    }
    result
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
    if let Some(expected) = &req.ca_fingerprint {
        check_fingerprint(state, &token_hash(&req.token), expected)?;
    }
    let device = match store.enrol_device(&token_hash(&req.token), unix_now(), &new) {
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
