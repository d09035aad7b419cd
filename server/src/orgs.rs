//! `GET /v1/orgs/{org}` and `GET /v1/orgs/{org}/revocations`: what the
//! relay publishes about an organisation.
//!
//! Public, without authentication: a client fetches its organisation's CA
//! certificate here and checks its fingerprint against the one its admin
//! gave it, so the relay cannot substitute a CA unnoticed; and a device the
//! relay refuses fetches its organisation's signed revocation list here, to
//! learn whether its organisation revoked it (then it erases itself). The
//! list names device ids only, and devices of every organisation fetch it
//! anyway.

use axum::extract::{Path as UrlPath, State};
use axum::Json;
use cascade_protocol::http::{OrgInfo, SignedDocumentJson};
use cascade_protocol::OrgId;

use crate::certificate::der_to_pem;
use crate::error::ApiError;
use crate::AppState;

/// The organisation's name and CA certificate (PEM, `null` if it has none);
/// `404` if it does not exist, `400` if `{org}` is not an organisation id.
pub async fn org_info(
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
) -> Result<Json<OrgInfo>, ApiError> {
    let org_id = OrgId::new(org).map_err(|_| ApiError::BadRequest("invalid organisation id"))?;
    let org = state
        .store()
        .get_org(&org_id)?
        .ok_or(ApiError::NotFound("unknown organisation"))?;
    Ok(Json(OrgInfo {
        org_id: org.org_id,
        display_name: org.display_name,
        ca_certificate: org.ca_certificate.as_deref().map(|der| der_to_pem(der)),
    }))
}

/// The organisation's signed revocation list, as its admins uploaded it;
/// `404` if it has none or does not exist.
pub async fn revocations(
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
) -> Result<Json<SignedDocumentJson>, ApiError> {
    let org_id = OrgId::new(org).map_err(|_| ApiError::BadRequest("invalid organisation id"))?;
    let list = state
        .store()
        .revocations(&org_id)?
        .ok_or(ApiError::NotFound("no revocation list"))?;
    Ok(Json(SignedDocumentJson::from_document(
        &cascade_protocol::SignedDocument {
            body: list.body,
            signature: list.signature,
            co_signature: list.co_signature,
        },
    )))
}
