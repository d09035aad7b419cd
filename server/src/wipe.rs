//! Remote wipe (`docs/protocol.md` §14.6): an organisation's admins order
//! one of its devices to erase itself, and the device confirms.
//!
//! - `PUT /v1/admin/devices/{device}/wipe` (the organisation's admins): the
//!   order, signed by the organisation's CA key. The relay checks the
//!   signature and that the order names this device of this organisation,
//!   keeps it, revokes the device and drops its connection.
//! - `GET /v1/orgs/{org}/devices/{device}/wipe` (public): the order, for
//!   the device, which asks when the relay refuses its login. The device
//!   believes it only if its own organisation's CA signed it, so the relay
//!   cannot make a device erase itself.
//! - `POST /v1/orgs/{org}/devices/{device}/wiped` (public): the device's
//!   confirmation, signed with its enrolled key before it erased that key;
//!   the relay checks it against the key and keeps it for the admins.
//! - `GET /v1/admin/orgs/{org}/wipes` (the organisation's admins): the
//!   orders and their confirmations, for the admin to check the device's
//!   signature against the key they certified.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use cascade_protocol::frames::Bytes;
use cascade_protocol::http::{SignedDocumentJson, WipeConfirmation, WipeStatus};
use cascade_protocol::{DeviceId, OrgId};
use ed25519_dalek::{Signature, VerifyingKey};

use crate::admin::OrgAdmin;
use crate::certificate::{der_to_pem, OrgCa};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::store::{Device, Wipe, WipeConfirmed};
use crate::{unix_now, AppState};

/// The largest signed order accepted (its CBOR body names an organisation
/// and a device; a kilobyte is generous).
const MAX_ORDER_BYTES: usize = 1024;

/// The fields of an order the relay reads (the format is the client's:
/// `cascade-core`'s `identity::WipeOrder`).
#[derive(serde::Deserialize)]
struct Order {
    v: u8,
    kind: String,
    org: OrgId,
    device: DeviceId,
}

fn device_id(device: &str) -> Result<DeviceId, ApiError> {
    device
        .parse()
        .map_err(|_| ApiError::BadRequest("invalid device id"))
}

/// `device` if it belongs to `org`; another organisation's devices are
/// unknown.
fn device_of(state: &AppState, org: &OrgId, device: &DeviceId) -> Result<Device, ApiError> {
    match state.store().get_device(device)? {
        Some(d) if &d.user_id.org() == org => Ok(d),
        _ => Err(ApiError::NotFound("unknown device")),
    }
}

/// `PUT /v1/admin/devices/{device}/wipe`: keeps the organisation's signed
/// order to wipe the device, revokes the device and drops its connection.
/// `204`; `404` for an unknown device or another organisation's, `409
/// no_ca`, `400 bad_signature` if the CA did not sign it, `400
/// bad_request` if it is not an order for this device. Idempotent: the
/// first order stays.
pub async fn order(
    admin: OrgAdmin,
    State(state): State<AppState>,
    UrlPath(device): UrlPath<String>,
    ApiJson(req): ApiJson<SignedDocumentJson>,
) -> Result<StatusCode, ApiError> {
    let device_id = device_id(&device)?;
    let device = device_of(&state, admin.org(), &device_id)?;
    let doc = req.to_document().map_err(ApiError::BadRequest)?;
    if doc.body.len() > MAX_ORDER_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    let store = state.store();
    let ca_der = store
        .get_org(admin.org())?
        .ok_or(ApiError::NotFound("unknown organisation"))?
        .ca_certificate
        .ok_or(ApiError::NoCa)?;
    let ca = OrgCa::from_stored(&ca_der)?;
    let signed = ca.signed(&doc.body, &doc.signature)
        || doc
            .co_signature
            .as_deref()
            .is_some_and(|c| ca.signed(&doc.body, c));
    if !signed {
        return Err(ApiError::BadSignature);
    }
    let order: Order = ciborium::from_reader(doc.body.as_slice())
        .map_err(|_| ApiError::BadRequest("the document is not a wipe order"))?;
    if order.v != 1 || order.kind != "wipe" {
        return Err(ApiError::BadRequest(
            "the document is not a version 1 wipe order",
        ));
    }
    if &order.org != admin.org() || order.device != device_id {
        return Err(ApiError::BadRequest("the order names another device"));
    }
    store.order_wipe(
        &device_id,
        &Wipe {
            body: doc.body,
            signature: doc.signature,
            co_signature: doc.co_signature,
            ordered_at: unix_now(),
            confirmed: None,
        },
    )?;
    // Refused from now on (the write is visible to new logins already);
    // the device asks why and finds the order.
    state.registry().disconnect(&device_id);
    state.flush().await?;
    tracing::info!(device = %device_id, "device wipe ordered");
    state.audit(
        admin.by(),
        "device.wipe",
        serde_json::json!({"device": device_id.to_string(), "user": device.user_id}),
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/admin/orgs/{org}/wipes`: the organisation's wipe orders and
/// their confirmations, by user then device.
pub async fn list(
    admin: OrgAdmin,
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
) -> Result<Json<Vec<WipeStatus>>, ApiError> {
    let org_id = OrgId::new(org).map_err(|_| ApiError::BadRequest("invalid organisation id"))?;
    admin.act_for(&org_id)?;
    let store = state.store();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for user in store.list_users(&org_id)? {
        for device in store.devices_of_user(&user.user_id)? {
            let Some(wipe) = device.wipe else { continue };
            out.push(WipeStatus {
                device_id: device.device_id,
                user_id: device.user_id,
                device_name: device.name,
                ordered_at: wipe.ordered_at,
                confirmed_at: wipe.confirmed.as_ref().map(|c| c.at),
                confirmation: wipe.confirmed.as_ref().map(|c| b64.encode(&c.signature)),
                order: SignedDocumentJson::from_document(&cascade_protocol::SignedDocument {
                    body: wipe.body,
                    signature: wipe.signature,
                    co_signature: wipe.co_signature,
                }),
                certificate: device.certificate.as_deref().map(|der| der_to_pem(der)),
            });
        }
    }
    Ok(Json(out))
}

/// `GET /v1/orgs/{org}/devices/{device}/wipe`: the order to wipe the
/// device, as its organisation signed it; `404` if there is none.
pub async fn fetch(
    State(state): State<AppState>,
    UrlPath((org, device)): UrlPath<(String, String)>,
) -> Result<Json<SignedDocumentJson>, ApiError> {
    let org_id = OrgId::new(org).map_err(|_| ApiError::BadRequest("invalid organisation id"))?;
    let device = device_of(&state, &org_id, &device_id(&device)?)?;
    let wipe = device.wipe.ok_or(ApiError::NotFound("no wipe order"))?;
    Ok(Json(SignedDocumentJson::from_document(
        &cascade_protocol::SignedDocument {
            body: wipe.body,
            signature: wipe.signature,
            co_signature: wipe.co_signature,
        },
    )))
}

/// `POST /v1/orgs/{org}/devices/{device}/wiped`: the device confirms it
/// erased itself. `204`; `404` without an order, `400 bad_signature` if
/// the signature does not verify with the device's enrolled key over the
/// order it was given. Idempotent: the first confirmation stays.
pub async fn confirm(
    State(state): State<AppState>,
    UrlPath((org, device)): UrlPath<(String, String)>,
    ApiJson(req): ApiJson<WipeConfirmation>,
) -> Result<StatusCode, ApiError> {
    let org_id = OrgId::new(org).map_err(|_| ApiError::BadRequest("invalid organisation id"))?;
    let device_id = device_id(&device)?;
    let device = device_of(&state, &org_id, &device_id)?;
    let wipe = device.wipe.ok_or(ApiError::NotFound("no wipe order"))?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&req.signature)
        .map_err(|_| ApiError::BadRequest("the signature is not base64"))?;
    let key = <[u8; 32]>::try_from(device.signature_key.as_slice())
        .ok()
        .and_then(|k| VerifyingKey::from_bytes(&k).ok())
        .ok_or(ApiError::BadDeviceSignature)?;
    let signature = Signature::from_slice(&signature).map_err(|_| ApiError::BadDeviceSignature)?;
    key.verify_strict(
        &cascade_protocol::auth::wiped_payload(&device_id, &wipe.body),
        &signature,
    )
    .map_err(|_| ApiError::BadDeviceSignature)?;
    if wipe.confirmed.is_some() {
        return Ok(StatusCode::NO_CONTENT);
    }
    state.store().confirm_wipe(
        &device_id,
        &WipeConfirmed {
            at: unix_now(),
            signature: Bytes::from(signature.to_bytes().to_vec()),
        },
    )?;
    state.flush().await?;
    tracing::info!(device = %device_id, "device confirmed its wipe");
    state.audit(
        &format!("device:{device_id}"),
        "device.wipe_confirmed",
        serde_json::json!({"device": device_id.to_string(), "user": device.user_id}),
    )?;
    Ok(StatusCode::NO_CONTENT)
}
