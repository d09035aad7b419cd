//! The admin HTTP API: two authorities.
//!
//! - The relay operator's admin token (`Authorization: Bearer <token>`)
//!   creates organisations and reads the metrics, nothing else ([`AdminAuth`]).
//!   It is created once per data directory, written to
//!   `<data-dir>/admin-token` (mode 0600) for the operator, and only its
//!   SHA-256 is stored.
//! - Everything done for an organisation (users, enrolment tokens,
//!   certificates, revocation, trust and revocation lists, CA rotation) is
//!   signed with that organisation's CA key (`Authorization: Cascade-Org
//!   …`, [`cascade_protocol::org_auth`]) and checked against the CA
//!   certificate the relay holds for it ([`OrgAdmin`]), or signed by a
//!   person the CA appointed in the organisation's admin roster, with
//!   their own key (`admin=`). It acts for that organisation only: the
//!   operator's token cannot, and neither can another organisation's key.
//!   Appointing admins and replacing the CA take the CA key itself.
//!
//! Organisation CAs, device certificates and trust lists pass through here,
//! but the CA keys stay with the organisations' admins: the relay only
//! checks what it is given (see [`crate::certificate`]) and stores it.

use std::collections::HashMap;

use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use cascade_protocol::frames::{Bytes, UserEntry};
use cascade_protocol::http::{
    CreateOrg, CreateUser, EnrolmentToken, IssueEnrolmentToken, OrgDevice, OrgUser, PendingDevice,
    SignedDocumentJson, UploadCertificate,
};
use cascade_protocol::limits::{ENROLMENT_TOKEN_TTL_SECS, MAX_NAME_BYTES};
use cascade_protocol::org_auth;
use cascade_protocol::{DeviceId, OrgId};
use sha2::{Digest, Sha256};

use crate::certificate::{check_org_ca, fingerprint, OrgCa};
use crate::ds::directory::user_entry;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::fanout::Live;
use crate::store::{EnrolmentTokenRecord, Org, StoreError, TrustList, User};
use crate::token::token_hash;
use crate::{unix_now, AppState};

/// Name of the admin token file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Longest enrolment token lifetime an admin may ask for (30 days).
pub const MAX_ENROLMENT_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;

/// Largest trust list (the signed document, decoded) the relay stores;
/// larger ones get `413`.
pub const MAX_TRUST_LIST_BYTES: usize = 256 * 1024;

/// Largest HTTP body of a trust-list upload: a [`MAX_TRUST_LIST_BYTES`]
/// document in base64 plus its signature and the JSON around them.
pub const MAX_TRUST_LIST_HTTP_BODY_BYTES: usize = MAX_TRUST_LIST_BYTES.div_ceil(3) * 4 + 4096;

mod auth;

pub use auth::*;

/// The admin routes: the relay operator's, then the organisations'
/// (behind [`org_admin_auth`]).
pub fn routes(state: AppState) -> Router<AppState> {
    let organisations = Router::new()
        .route("/v1/admin/orgs/{org}/users", get(list_users))
        .route("/v1/admin/orgs/{org}/pending-devices", get(pending_devices))
        .route(
            "/v1/admin/orgs/{org}/trust-list",
            put(put_trust_list).layer(DefaultBodyLimit::max(MAX_TRUST_LIST_HTTP_BODY_BYTES)),
        )
        .route(
            "/v1/admin/orgs/{org}/revocations",
            put(put_revocations).layer(DefaultBodyLimit::max(MAX_TRUST_LIST_HTTP_BODY_BYTES)),
        )
        .route("/v1/admin/devices/{device}/revoke", post(revoke_device))
        .route("/v1/admin/devices/{device}/wipe", put(crate::wipe::order))
        .route("/v1/admin/orgs/{org}/wipes", get(crate::wipe::list))
        .route("/v1/admin/orgs/{org}/ca", put(replace_ca))
        .route(
            "/v1/admin/orgs/{org}/admins",
            put(put_admin_roster).get(get_admin_roster),
        )
        .route("/v1/admin/users", post(create_user))
        .route("/v1/admin/enrolment-tokens", post(issue_enrolment_token))
        .route(
            "/v1/admin/devices/{device}/certificate",
            post(upload_certificate),
        )
        .route_layer(axum::middleware::from_fn_with_state(state, org_admin_auth));
    Router::new()
        .route("/v1/admin/orgs", post(create_org))
        .merge(organisations)
}

/// The relay operator's authority in the audit log (see [`crate::audit`]).
const OPERATOR: &str = "relay-admin-token";

fn org_id(org: String) -> Result<OrgId, ApiError> {
    OrgId::new(org).map_err(|_| ApiError::BadRequest("invalid organisation id"))
}

/// The certificates' clock: seconds since the Unix epoch.
fn now_secs() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::BadRequest(
            "names must be non-empty and at most MAX_NAME_BYTES bytes",
        ));
    }
    Ok(())
}

/// `POST /v1/admin/orgs` (the relay operator): `201` with the
/// organisation, `409` if it exists, `400 bad_request` without a CA
/// certificate (its admins act with its CA key, so an organisation without
/// one could never be administered), `400 bad_certificate` if the CA
/// certificate fails [`check_org_ca`].
async fn create_org(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateOrg>,
) -> Result<(StatusCode, Json<CreateOrg>), ApiError> {
    check_name(&req.display_name)?;
    let pem = req.ca_certificate.as_deref().ok_or(ApiError::BadRequest(
        "ca_certificate is required: an organisation's admins act with its CA key",
    ))?;
    let ca_certificate = check_org_ca(pem, &req.org_id, now_secs())?;
    let ca_fingerprint = fingerprint(&ca_certificate);
    let org = Org {
        org_id: req.org_id.clone(),
        display_name: req.display_name.clone(),
        created_at: unix_now(),
        ca_certificate: Some(Bytes::from(ca_certificate)),
    };
    match state.store().create_org(&org) {
        Ok(()) => {}
        Err(StoreError::AlreadyExists) => {
            return Err(ApiError::Conflict("the organisation exists already"))
        }
        Err(e) => return Err(e.into()),
    }
    state.flush().await?;
    tracing::info!(
        org = %org.org_id,
        ca_fingerprint = %ca_fingerprint,
        "organisation created"
    );
    state.audit(
        OPERATOR,
        "org.create",
        serde_json::json!({"org": org.org_id, "ca_sha256": ca_fingerprint}),
    )?;
    Ok((StatusCode::CREATED, Json(req)))
}

/// `POST /v1/admin/users`: `201` with the directory entry; `404` if the
/// organisation does not exist, `409` if the user does.
async fn create_user(
    admin: OrgAdmin,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserEntry>), ApiError> {
    admin.act_for(&req.user_id.org())?;
    check_name(&req.display_name)?;
    check_name(&req.role)?;
    let user = User {
        user_id: req.user_id,
        display_name: req.display_name,
        role: req.role,
        created_at: unix_now(),
    };
    match state.store().create_user(&user) {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("unknown organisation")),
        Err(StoreError::AlreadyExists) => {
            return Err(ApiError::Conflict("the user exists already"))
        }
        Err(e) => return Err(e.into()),
    }
    state.flush().await?;
    tracing::info!(user = %user.user_id, "user created");
    state.audit(
        &admin.by,
        "user.create",
        serde_json::json!({"user": user.user_id, "name": user.display_name, "role": user.role}),
    )?;
    let entry = user_entry(&**state.store(), user)?;
    Ok((StatusCode::CREATED, Json(entry)))
}

/// `GET /v1/admin/orgs/{org}/users`: the organisation's users with their
/// current devices; `404` if it does not exist.
async fn list_users(
    admin: OrgAdmin,
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
) -> Result<Json<Vec<OrgUser>>, ApiError> {
    let org = org_id(org)?;
    admin.act_for(&org)?;
    let store = &**state.store();
    if store.get_org(&org)?.is_none() {
        return Err(ApiError::NotFound("unknown organisation"));
    }
    let users = store
        .list_users(&org)?
        .into_iter()
        .map(|user| {
            let device_details = store
                .devices_of_user(&user.user_id)?
                .into_iter()
                .filter(|d| !d.revoked)
                .map(|d| OrgDevice {
                    device_id: d.device_id,
                    device_name: d.name,
                    enrolled_at: d.enrolled_at,
                    last_seen: d.last_seen,
                    certified: d.certificate.is_some(),
                })
                .collect();
            Ok(OrgUser {
                entry: user_entry(store, user)?,
                device_details,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Json(users))
}

/// `POST /v1/admin/enrolment-tokens`: `201` with a fresh one-time token;
/// `404` if the user does not exist.
async fn issue_enrolment_token(
    admin: OrgAdmin,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<IssueEnrolmentToken>,
) -> Result<(StatusCode, Json<EnrolmentToken>), ApiError> {
    admin.act_for(&req.user_id.org())?;
    let ttl = req.ttl_secs.unwrap_or(ENROLMENT_TOKEN_TTL_SECS);
    if ttl == 0 || ttl > MAX_ENROLMENT_TOKEN_TTL_SECS {
        return Err(ApiError::BadRequest(
            "ttl_secs must be between 1 and 30 days",
        ));
    }
    if state.store().get_user(&req.user_id)?.is_none() {
        return Err(ApiError::NotFound("unknown user"));
    }
    // A short-code token (50 bits): guessing is held off by the enrolment
    // rate limits (`enrol.rs`), and the code stays short enough to read out.
    let token = cascade_protocol::enrolment_code::new_token();
    let expires_at = unix_now() + ttl;
    let record = EnrolmentTokenRecord {
        user_id: req.user_id.clone(),
        expires_at,
        used: false,
    };
    state
        .store()
        .put_enrolment_token(&token_hash(&token), &record)?;
    state.flush().await?;
    tracing::info!(user = %req.user_id, expires_at, "enrolment token issued");
    state.audit(
        &admin.by,
        "enrolment_token.issue",
        serde_json::json!({"user": req.user_id, "expires_at": expires_at}),
    )?;
    Ok((
        StatusCode::CREATED,
        Json(EnrolmentToken {
            token,
            user_id: req.user_id,
            expires_at,
        }),
    ))
}

/// `GET /v1/admin/orgs/{org}/pending-devices`: the organisation's enrolled,
/// unrevoked devices that have no certificate yet, ordered by user then
/// device, with what the admin needs to issue one; `404` if the
/// organisation does not exist.
async fn pending_devices(
    admin: OrgAdmin,
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
) -> Result<Json<Vec<PendingDevice>>, ApiError> {
    let org = org_id(org)?;
    admin.act_for(&org)?;
    let store = &**state.store();
    if store.get_org(&org)?.is_none() {
        return Err(ApiError::NotFound("unknown organisation"));
    }
    let users: HashMap<_, _> = store
        .list_users(&org)?
        .into_iter()
        .map(|user| (user.user_id.clone(), user))
        .collect();
    // Devices without a certificate, then certified devices whose
    // certificate expires within the renewal window.
    let now = now_secs();
    let mut devices: Vec<(crate::store::Device, bool)> = store
        .pending_devices(&org)?
        .into_iter()
        .map(|d| (d, false))
        .collect();
    let current_ca = store
        .get_org(&org)?
        .and_then(|o| o.ca_certificate)
        .map(|c| c.to_vec());
    for user in users.values() {
        for d in store.devices_of_user(&user.user_id)? {
            let due = !d.revoked
                && d.certificate.as_deref().is_some_and(|c| {
                    let expiring = crate::certificate::expires_at(c).is_some_and(|t| {
                        t - now < cascade_protocol::limits::RENEWAL_WINDOW_SECS as i64
                    });
                    // After a CA rotation: issued by the previous CA.
                    let stale = current_ca
                        .as_deref()
                        .is_some_and(|ca| !crate::certificate::signed_by(c, ca));
                    expiring || stale
                });
            if due {
                devices.push((d, true));
            }
        }
    }
    let pending = devices
        .into_iter()
        .map(|(device, renewal)| {
            let user = users
                .get(&device.user_id)
                .ok_or_else(|| StoreError::Corrupt("device of an unknown user".into()))?;
            Ok(PendingDevice {
                device_id: device.device_id,
                user_id: device.user_id,
                display_name: user.display_name.clone(),
                role: user.role.clone(),
                device_name: device.name,
                signature_key: hex::encode(&device.signature_key),
                renewal,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Json(pending))
}

/// `POST /v1/admin/devices/{device}/certificate`: stores the device's
/// certificate, issued by its organisation's CA, and pushes it to the
/// device if it is connected. `204`; `404` for an unknown or revoked
/// device, `409 no_ca` if the organisation has no CA, `400
/// bad_certificate` if the certificate fails
/// [`OrgCa::check_device_certificate`]. A later upload replaces the
/// certificate (renewal).
async fn upload_certificate(
    admin: OrgAdmin,
    State(state): State<AppState>,
    UrlPath(device): UrlPath<String>,
    ApiJson(req): ApiJson<UploadCertificate>,
) -> Result<StatusCode, ApiError> {
    const UNKNOWN_DEVICE: ApiError = ApiError::NotFound("unknown or revoked device");
    let device_id: DeviceId = device
        .parse()
        .map_err(|_| ApiError::BadRequest("invalid device id"))?;
    let store = state.store();
    // Another organisation's devices are unknown to this admin.
    let device = match store.get_device(&device_id)? {
        Some(device) if !device.revoked && device.user_id.org() == admin.org => device,
        _ => return Err(UNKNOWN_DEVICE),
    };
    let org_id = device.user_id.org();
    let org = store
        .get_org(&org_id)?
        .ok_or_else(|| StoreError::Corrupt("device of an unknown organisation".into()))?;
    let ca_der = org.ca_certificate.ok_or(ApiError::NoCa)?;
    let der = OrgCa::from_stored(&ca_der)?.check_device_certificate(
        &req.certificate,
        &org_id,
        &device,
        now_secs(),
    )?;
    let renewal = device.certificate.is_some();
    match store.set_device_certificate(&device_id, &der) {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(UNKNOWN_DEVICE),
        Err(e) => return Err(e.into()),
    }
    if renewal {
        // KeyPackages carry the old certificate: withdraw them, so nobody
        // adds the device with a credential about to expire. The device
        // uploads new ones when it learns of its new certificate.
        store.withdraw_key_packages(&device_id)?;
    }
    state.flush().await?;
    tracing::info!(
        device = %device_id,
        user = %device.user_id,
        org = %org_id,
        fingerprint = %fingerprint(&der),
        "device certificate stored"
    );
    state.audit(
        &admin.by,
        "certificate.store",
        serde_json::json!({
            "device": device_id.to_string(),
            "user": device.user_id,
            "sha256": fingerprint(&der),
            "renewal": renewal,
        }),
    )?;
    let certificate = Bytes::from(der);
    state
        .registry()
        .offer([(device_id, Live::CertificateIssued { certificate })]);
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/admin/orgs/{org}/ca` ([`ReplaceCa`]): sets the organisation's
/// CA certificate, checked like a new one: in a CA rotation the successor
/// that the organisation's current trust list (signed by the current CA,
/// checked when it was stored) names; or, set by the relay operator, the
/// first CA of an organisation created before organisations needed one
/// ([`first_ca_by_operator`]). The relay operator cannot put a CA of its
/// choosing in an organisation's place.
/// From then on device certificates are checked against the new CA, and
/// devices whose certificate it did not sign are listed for re-issue.
/// `204` (also for the CA in place); `404` unknown organisation; `400
/// bad_certificate`; `409 successor_not_announced`.
async fn replace_ca(
    admin: OrgAdmin,
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
    ApiJson(req): ApiJson<cascade_protocol::http::ReplaceCa>,
) -> Result<StatusCode, ApiError> {
    let org_id = org_id(org)?;
    admin.act_for(&org_id)?;
    admin.not_appointed()?;
    let der = check_org_ca(&req.ca_certificate, &org_id, now_secs())?;
    let org = state
        .store()
        .get_org(&org_id)?
        .ok_or(ApiError::NotFound("unknown organisation"))?;
    match org.ca_certificate {
        None => {}
        Some(current) if current == der => return Ok(StatusCode::NO_CONTENT),
        Some(_) => {
            let announced = state
                .store()
                .trust_list(&org_id)?
                .and_then(|list| announced_successor(&list.body));
            if announced.as_deref() != Some(der.as_slice()) {
                return Err(ApiError::SuccessorNotAnnounced);
            }
        }
    }
    match state.store().set_org_ca(&org_id, &der) {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("unknown organisation")),
        Err(e) => return Err(e.into()),
    }
    state.flush().await?;
    tracing::info!(org = %org_id, fingerprint = %fingerprint(&der), "organisation CA replaced");
    state.audit(
        &admin.by,
        "org.ca.set",
        serde_json::json!({"org": org_id, "ca_sha256": fingerprint(&der)}),
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/admin/orgs/{org}/admins` ([`SignedDocumentJson`] of an
/// [`org_auth::AdminRoster`]): appoints the organisation's admins, whose
/// own keys may then sign its requests (protocol §3.2.2). Only the CA key
/// may send it (`403 ca_only` for an appointed admin). `204`; `404`
/// unknown organisation; `409 no_ca`; `413` over [`MAX_TRUST_LIST_BYTES`];
/// `400 bad_signature` unless the CA signed it; `400 bad_request` unless
/// it is a valid roster of this organisation; `409 conflict` unless its
/// serial is above the roster's in place.
async fn put_admin_roster(
    admin: OrgAdmin,
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
    ApiJson(req): ApiJson<SignedDocumentJson>,
) -> Result<StatusCode, ApiError> {
    let org_id = org_id(org)?;
    admin.act_for(&org_id)?;
    admin.not_appointed()?;
    let store = state.store();
    let doc = signed_by_the_ca(&state, &org_id, &req)?;
    let roster = org_auth::AdminRoster::from_body(&doc.body).map_err(ApiError::BadRequest)?;
    if roster.org != org_id {
        return Err(ApiError::BadRequest("the roster is another organisation's"));
    }
    let current = store
        .admin_roster(&org_id)?
        .and_then(|d| org_auth::AdminRoster::from_body(&d.body).ok());
    if current.is_some_and(|c| c.serial >= roster.serial) {
        return Err(ApiError::Conflict(
            "the roster's serial is not above the one the relay holds",
        ));
    }
    let record = TrustList {
        body: doc.body,
        signature: doc.signature,
        published_at: unix_now(),
        co_signature: None,
    };
    match store.put_admin_roster(&org_id, &record) {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("unknown organisation")),
        Err(e) => return Err(e.into()),
    }
    state.flush().await?;
    let admins: Vec<&str> = roster.admins.iter().map(|a| a.id.as_str()).collect();
    tracing::info!(org = %org_id, serial = roster.serial, admins = admins.len(), "admin roster stored");
    state.audit(
        &admin.by,
        "admin_roster.store",
        serde_json::json!({"org": org_id, "serial": roster.serial, "admins": admins}),
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/admin/orgs/{org}/admins`: the organisation's signed admin
/// roster as stored, for its admins to check against their CA; `404` if
/// it has none.
async fn get_admin_roster(
    admin: OrgAdmin,
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
) -> Result<Json<SignedDocumentJson>, ApiError> {
    let org_id = org_id(org)?;
    admin.act_for(&org_id)?;
    let doc = state
        .store()
        .admin_roster(&org_id)?
        .ok_or(ApiError::NotFound("the organisation has no admin roster"))?;
    Ok(Json(SignedDocumentJson::from_document(
        &cascade_protocol::SignedDocument {
            body: doc.body,
            signature: doc.signature,
            co_signature: None,
        },
    )))
}

/// The successor CA (DER) a trust list body names, if any. The body was
/// signed by the organisation's CA (checked when it was stored); the relay
/// reads only this field (`docs/protocol.md` §14.4).
fn announced_successor(body: &[u8]) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Announced {
        #[serde(default)]
        successor: Option<serde_bytes::ByteBuf>,
    }
    let announced: Announced = ciborium::from_reader(body).ok()?;
    announced.successor.map(serde_bytes::ByteBuf::into_vec)
}

/// `GET /metrics` (relay operator's admin token): the relay's metrics in
/// the OpenMetrics text format that Prometheus reads ([`crate::metrics`]).
pub async fn metrics(_: AdminAuth, State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(&state),
    )
}

/// `POST /v1/admin/devices/{device}/revoke`: the relay refuses the device
/// from now on (authentication, claims, additions) and drops its live
/// connection at once. `204`; `404` for an unknown device. Idempotent.
/// Clients act on the organisation's signed revocation list, not on this.
async fn revoke_device(
    admin: OrgAdmin,
    State(state): State<AppState>,
    UrlPath(device): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    let device_id: DeviceId = device
        .parse()
        .map_err(|_| ApiError::BadRequest("invalid device id"))?;
    let store = state.store();
    // Another organisation's devices are unknown to this admin.
    if store
        .get_device(&device_id)?
        .is_none_or(|d| d.user_id.org() != admin.org)
    {
        return Err(ApiError::NotFound("unknown device"));
    }
    store.revoke_device(&device_id)?;
    // Drop the connection at once (the write is visible to new
    // authentications already); the 204 still waits for durability.
    state.registry().disconnect(&device_id);
    state.flush().await?;
    tracing::info!(device = %device_id, "device revoked");
    state.audit(
        &admin.by,
        "device.revoke",
        serde_json::json!({"device": device_id.to_string()}),
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/admin/orgs/{org}/trust-list`: stores the organisation's trust
/// list after checking its signature with the organisation's CA key. `204`;
/// `404` for an unknown organisation, `409 no_ca` if it has no CA, `400
/// bad_request` for invalid base64, `413` for a document over
/// [`MAX_TRUST_LIST_BYTES`], `400 bad_signature` if the signature does not
/// verify. Replaces the previous list.
async fn put_trust_list(
    admin: OrgAdmin,
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
    ApiJson(req): ApiJson<SignedDocumentJson>,
) -> Result<StatusCode, ApiError> {
    put_signed_document(admin, state, org, req, SignedKind::TrustList).await
}

/// `PUT /v1/admin/orgs/{org}/revocations`: stores the organisation's signed
/// revocation list, checked like a trust list, and tells every connected
/// device to fetch it.
async fn put_revocations(
    admin: OrgAdmin,
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
    ApiJson(req): ApiJson<SignedDocumentJson>,
) -> Result<StatusCode, ApiError> {
    put_signed_document(admin, state, org, req, SignedKind::Revocations).await
}

/// `req` as a document of `org_id`'s CA: `404` for an unknown
/// organisation, `409 no_ca`, `400 bad_request` for invalid base64, `413`
/// over [`MAX_TRUST_LIST_BYTES`], `400 bad_signature` unless its CA signed
/// it.
fn signed_by_the_ca(
    state: &AppState,
    org_id: &OrgId,
    req: &SignedDocumentJson,
) -> Result<cascade_protocol::SignedDocument, ApiError> {
    let ca_der = state
        .store()
        .get_org(org_id)?
        .ok_or(ApiError::NotFound("unknown organisation"))?
        .ca_certificate
        .ok_or(ApiError::NoCa)?;
    let doc = req.to_document().map_err(ApiError::BadRequest)?;
    if doc.body.len() > MAX_TRUST_LIST_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    if !OrgCa::from_stored(&ca_der)?.signed(&doc.body, &doc.signature) {
        return Err(ApiError::BadSignature);
    }
    Ok(doc)
}

/// The documents an organisation's CA signs and the relay only stores.
#[derive(Clone, Copy)]
enum SignedKind {
    TrustList,
    Revocations,
}

async fn put_signed_document(
    admin: OrgAdmin,
    state: AppState,
    org: String,
    req: SignedDocumentJson,
    kind: SignedKind,
) -> Result<StatusCode, ApiError> {
    let org_id = org_id(org)?;
    admin.act_for(&org_id)?;
    let store = state.store();
    let doc = signed_by_the_ca(&state, &org_id, &req)?;
    if doc.co_signature.as_ref().is_some_and(|c| c.len() != 64) {
        return Err(ApiError::BadRequest(
            "co_signature must be a base64 Ed25519 signature",
        ));
    }
    let digest = hex::encode(Sha256::digest(&doc.body));
    let list = TrustList {
        body: doc.body,
        signature: doc.signature,
        published_at: unix_now(),
        co_signature: doc.co_signature,
    };
    let stored = match kind {
        SignedKind::TrustList => store.put_trust_list(&org_id, &list),
        SignedKind::Revocations => store.put_revocations(&org_id, &list),
    };
    match stored {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("unknown organisation")),
        Err(e) => return Err(e.into()),
    }
    state.flush().await?;
    let bytes = list.body.len();
    let devices = match kind {
        SignedKind::TrustList => {
            tracing::info!(org = %org_id, bytes, sha256 = %digest, "trust list stored");
            state.audit(
                &admin.by,
                "trust_list.store",
                serde_json::json!({"org": org_id, "sha256": digest}),
            )?;
            // The organisation's own devices fetch it.
            let mut devices = Vec::new();
            for user in store.list_users(&org_id)? {
                devices.extend(
                    store
                        .devices_of_user(&user.user_id)?
                        .into_iter()
                        .map(|d| d.device_id),
                );
            }
            devices
        }
        SignedKind::Revocations => {
            tracing::info!(org = %org_id, bytes, sha256 = %digest, "revocation list stored");
            state.audit(
                &admin.by,
                "revocation_list.store",
                serde_json::json!({"org": org_id, "sha256": digest}),
            )?;
            // Any device may share a group with the organisation's members.
            state.registry().connected()
        }
    };
    state.registry().offer(devices.into_iter().map(|d| {
        let org_id = org_id.clone();
        let live = match kind {
            SignedKind::TrustList => Live::TrustListUpdated { org_id },
            SignedKind::Revocations => Live::RevocationsUpdated { org_id },
        };
        (d, live)
    }));
    Ok(StatusCode::NO_CONTENT)
}
