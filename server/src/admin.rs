//! The admin HTTP API and the admin token.
//!
//! Every request carries `Authorization: Bearer <admin token>`. The token is
//! created once per data directory, written to `<data-dir>/admin-token`
//! (mode 0600) for the operator, and only its SHA-256 is stored.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::{FromRequestParts, Path as UrlPath, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cascade_protocol::frames::UserEntry;
use cascade_protocol::http::{CreateOrg, CreateUser, EnrolmentToken, IssueEnrolmentToken};
use cascade_protocol::limits::{ENROLMENT_TOKEN_TTL_SECS, MAX_NAME_BYTES};
use cascade_protocol::OrgId;

use crate::ds::directory::user_entry;
use crate::error::{ApiError, ServerError};
use crate::extract::ApiJson;
use crate::store::{EnrolmentTokenRecord, Org, Store, StoreError, User};
use crate::token::{digests_equal, new_token, token_hash};
use crate::{unix_now, AppState};

/// Name of the admin token file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Longest enrolment token lifetime an admin may ask for (30 days).
pub const MAX_ENROLMENT_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;

/// Where the admin token is, and the token itself when it was just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// `<data-dir>/admin-token`.
    pub path: PathBuf,
    /// The token, if this call created it (otherwise read the file).
    pub created: Option<String>,
}

/// Makes sure the store has an admin token: if it has none, creates one,
/// writes it to `<data_dir>/admin-token` with mode 0600 (before storing its
/// hash, so a crash never leaves a hash without its token) and stores its
/// SHA-256. Idempotent.
pub fn ensure_admin_token(data_dir: &Path, store: &dyn Store) -> Result<AdminToken, ServerError> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if store.admin_token_hash()?.is_some() {
        return Ok(AdminToken {
            path,
            created: None,
        });
    }
    let token = new_token();
    write_secret_file(&path, token.as_bytes())?;
    store.set_admin_token_hash(&token_hash(&token))?;
    store.flush()?;
    tracing::info!(path = %path.display(), "created the admin token");
    Ok(AdminToken {
        path,
        created: Some(token),
    })
}

fn write_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // The mode above applies only to a new file.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Proof that the request carried the admin token.
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        let expected = state
            .store()
            .admin_token_hash()?
            .ok_or(ApiError::Unauthorized)?;
        if digests_equal(&token_hash(presented), &expected) {
            Ok(AdminAuth)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// The admin routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/orgs", post(create_org))
        .route("/v1/admin/orgs/{org}/users", get(list_users))
        .route("/v1/admin/users", post(create_user))
        .route("/v1/admin/enrolment-tokens", post(issue_enrolment_token))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::BadRequest(
            "names must be non-empty and at most MAX_NAME_BYTES bytes",
        ));
    }
    Ok(())
}

/// `POST /v1/admin/orgs`: `201` with the organisation, `409` if it exists.
async fn create_org(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateOrg>,
) -> Result<(StatusCode, Json<CreateOrg>), ApiError> {
    check_name(&req.display_name)?;
    let org = Org {
        org_id: req.org_id.clone(),
        display_name: req.display_name.clone(),
        created_at: unix_now(),
    };
    match state.store().create_org(&org) {
        Ok(()) => {}
        Err(StoreError::AlreadyExists) => {
            return Err(ApiError::Conflict("the organisation exists already"))
        }
        Err(e) => return Err(e.into()),
    }
    state.flush().await?;
    tracing::info!(org = %org.org_id, "organisation created");
    Ok((StatusCode::CREATED, Json(req)))
}

/// `POST /v1/admin/users`: `201` with the directory entry; `404` if the
/// organisation does not exist, `409` if the user does.
async fn create_user(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserEntry>), ApiError> {
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
    let entry = user_entry(&**state.store(), user)?;
    Ok((StatusCode::CREATED, Json(entry)))
}

/// `GET /v1/admin/orgs/{org}/users`: the organisation's users with their
/// current devices; `404` if it does not exist.
async fn list_users(
    _: AdminAuth,
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
) -> Result<Json<Vec<UserEntry>>, ApiError> {
    let org = OrgId::new(org).map_err(|_| ApiError::BadRequest("invalid organisation id"))?;
    let store = &**state.store();
    if store.get_org(&org)?.is_none() {
        return Err(ApiError::NotFound("unknown organisation"));
    }
    let users = store
        .list_users(&org)?
        .into_iter()
        .map(|user| user_entry(store, user))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(users))
}

/// `POST /v1/admin/enrolment-tokens`: `201` with a fresh one-time token;
/// `404` if the user does not exist.
async fn issue_enrolment_token(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<IssueEnrolmentToken>,
) -> Result<(StatusCode, Json<EnrolmentToken>), ApiError> {
    let ttl = req.ttl_secs.unwrap_or(ENROLMENT_TOKEN_TTL_SECS);
    if ttl == 0 || ttl > MAX_ENROLMENT_TOKEN_TTL_SECS {
        return Err(ApiError::BadRequest(
            "ttl_secs must be between 1 and 30 days",
        ));
    }
    if state.store().get_user(&req.user_id)?.is_none() {
        return Err(ApiError::NotFound("unknown user"));
    }
    let token = new_token();
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
    Ok((
        StatusCode::CREATED,
        Json(EnrolmentToken {
            token,
            user_id: req.user_id,
            expires_at,
        }),
    ))
}
