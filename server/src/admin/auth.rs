//! Who may call the admin API: the relay operator's token ([`AdminAuth`]),
//! an organisation's CA or appointed admin signing each request
//! ([`OrgAdmin`], through [`org_admin_auth`]), and the nonces that make a
//! signed request good once ([`AdminNonces`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use cascade_protocol::org_auth::{self, OrgAuthorization};
use cascade_protocol::OrgId;
use sha2::{Digest, Sha256};

use crate::certificate::{fingerprint, OrgCa};
use crate::error::{ApiError, ServerError};
use crate::store::Store;
use crate::token::{digests_equal, new_token, token_hash};
use crate::{unix_now, AppState};

use super::{ADMIN_TOKEN_FILE, MAX_TRUST_LIST_HTTP_BODY_BYTES, OPERATOR};

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

pub(super) fn write_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
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

/// Proof that an organisation's admins signed the request: set by
/// [`org_admin_auth`] on every organisation route.
#[derive(Debug, Clone)]
pub struct OrgAdmin {
    /// The organisation the request acts for.
    pub(super) org: OrgId,
    /// Who, for the audit log: the organisation and its CA's fingerprint,
    /// or the appointed admin's id, name and key fingerprint.
    pub(super) by: String,
    /// Which key signed.
    pub(super) authority: Authority,
}

/// Which key made a request an act of its organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Authority {
    /// The relay operator's token, for an organisation's first CA only.
    Operator,
    /// The organisation's CA key.
    Ca,
    /// An admin the CA appointed, with their own key.
    Appointed,
}

impl OrgAdmin {
    /// `403 ca_only` if an appointed admin's key signed: some acts
    /// (appointing admins, replacing the CA) take the CA key itself.
    pub(crate) fn not_appointed(&self) -> Result<(), ApiError> {
        match self.authority {
            Authority::Appointed => Err(ApiError::CaOnly),
            Authority::Operator | Authority::Ca => Ok(()),
        }
    }

    /// The organisation the request acts for.
    pub(crate) fn org(&self) -> &OrgId {
        &self.org
    }

    /// Who, for the audit log.
    pub(crate) fn by(&self) -> &str {
        &self.by
    }

    /// `403 forbidden` unless this is `org`'s admin.
    pub(crate) fn act_for(&self, org: &OrgId) -> Result<(), ApiError> {
        if &self.org == org {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

impl FromRequestParts<AppState> for OrgAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<OrgAdmin>()
            .cloned()
            .ok_or(ApiError::OrgUnauthorized("missing organisation signature"))
    }
}

/// Most nonces remembered at once; past it (only after pruning expired
/// ones) signed requests get `429` until old nonces expire. Only requests
/// with a valid organisation signature are remembered.
pub const MAX_ADMIN_NONCES: usize = 100_000;

/// The nonces of recent organisation requests, so none is taken twice
/// ([`org_auth::MAX_SKEW_SECS`] either way of its time). They are kept in
/// the store too, so a request replayed after a restart is refused as
/// well; memory is filled from it on the first signed request.
#[derive(Default)]
pub struct AdminNonces {
    seen: std::sync::Mutex<Option<SeenNonces>>,
}

pub(super) struct SeenNonces {
    until: HashMap<(OrgId, [u8; 16]), u64>,
    pruned_at: u64,
}

/// How often (seconds) expired nonces are forgotten, in memory and store.
pub(super) const NONCE_PRUNE_SECS: u64 = 60;

impl AdminNonces {
    /// Records `nonce` of `org`, forgettable after `until`; `false` if it
    /// was seen already; `429` when full.
    fn take(
        &self,
        store: &dyn Store,
        org: &OrgId,
        nonce: [u8; 16],
        until: u64,
        now: u64,
    ) -> Result<bool, ApiError> {
        let mut guard = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let seen = match &mut *guard {
            Some(seen) => seen,
            empty => empty.insert(SeenNonces {
                until: store
                    .admin_nonces(now)?
                    .into_iter()
                    .map(|(org, nonce, until)| ((org, nonce), until))
                    .collect(),
                pruned_at: now,
            }),
        };
        let key = (org.clone(), nonce);
        if seen.until.contains_key(&key) {
            return Ok(false);
        }
        if seen.until.len() >= MAX_ADMIN_NONCES || now >= seen.pruned_at + NONCE_PRUNE_SECS {
            seen.until.retain(|_, until| *until >= now);
            store.forget_admin_nonces(now)?;
            seen.pruned_at = now;
            if seen.until.len() >= MAX_ADMIN_NONCES {
                return Err(ApiError::RateLimited {
                    retry_after_secs: org_auth::MAX_SKEW_SECS,
                });
            }
        }
        store.put_admin_nonce(org, &nonce, until)?;
        seen.until.insert(key, until);
        Ok(true)
    }
}

/// Checks the `Cascade-Org` signature of an organisation route (protocol
/// §3.2.1): the header (`401`), the body, read here to be hashed (`413`),
/// the time (`401`), the signature by the CA the relay holds for the
/// organisation (`401`) and the nonce (`401` when replayed). Then the
/// handler runs with [`OrgAdmin`] and the body as it came.
pub(super) async fn org_admin_auth(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if header.starts_with("Bearer ") {
        let org = first_ca_by_operator(&state, &mut parts).await?;
        parts.extensions.insert(OrgAdmin {
            org,
            by: OPERATOR.to_owned(),
            authority: Authority::Operator,
        });
        return Ok(next
            .run(axum::extract::Request::from_parts(parts, body))
            .await);
    }
    let auth = OrgAuthorization::parse(header).ok_or(ApiError::OrgUnauthorized(
        "missing or malformed Cascade-Org authorization",
    ))?;
    let body = axum::body::to_bytes(body, MAX_TRUST_LIST_HTTP_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let now = unix_now();
    if now.abs_diff(auth.time) > org_auth::MAX_SKEW_SECS {
        state.metrics().admin_refused("stale");
        return Err(ApiError::OrgUnauthorized(
            "the request's time is more than 5 minutes from the relay's clock",
        ));
    }
    const NOT_SIGNED: ApiError = ApiError::OrgUnauthorized(
        "the signature does not verify with the CA the relay holds for the organisation",
    );
    let ca_der = state
        .store()
        .get_org(&auth.org)?
        .and_then(|org| org.ca_certificate)
        .ok_or(NOT_SIGNED)?;
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    let message = OrgAuthorization::message(
        parts.method.as_str(),
        path,
        &auth.org,
        auth.admin.as_deref(),
        auth.time,
        &auth.nonce,
        &body,
    );
    let ca = OrgCa::from_stored(&ca_der)?;
    let (by, authority) = match &auth.admin {
        None => {
            if !ca.signed(&message, &auth.signature) {
                state.metrics().admin_refused("bad_signature");
                return Err(NOT_SIGNED);
            }
            let by = format!("org:{} ca-sha256:{}", auth.org, fingerprint(&ca_der));
            (by, Authority::Ca)
        }
        Some(id) => {
            let admin = appointed(&state, &ca, &auth.org, id, now)?;
            if !verify_ed25519(&admin.key, &message, &auth.signature) {
                state.metrics().admin_refused("bad_signature");
                return Err(ApiError::OrgUnauthorized(
                    "the signature does not verify with the admin's key in the roster",
                ));
            }
            let by = format!(
                "org:{} admin:{} ({}) key-sha256:{}",
                auth.org,
                admin.id,
                admin.name,
                hex::encode(Sha256::digest(&admin.key))
            );
            (by, Authority::Appointed)
        }
    };
    let until = auth.time + org_auth::MAX_SKEW_SECS;
    let fresh = state
        .admin_nonces()
        .take(&**state.store(), &auth.org, auth.nonce, until, now)?;
    if !fresh {
        state.metrics().admin_refused("replayed");
        return Err(ApiError::OrgUnauthorized(
            "this request was received already (its nonce was used)",
        ));
    }
    parts.extensions.insert(OrgAdmin {
        by,
        org: auth.org,
        authority,
    });
    Ok(next
        .run(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(body),
        ))
        .await)
}

/// The admin `id` of the organisation's roster, if the roster the relay
/// holds verifies with the organisation's current CA and their
/// appointment holds at `now`; `401` otherwise (one answer for an unknown,
/// expired or dismissed admin, so the roster's names are not probed).
pub(super) fn appointed(
    state: &AppState,
    ca: &OrgCa,
    org: &OrgId,
    id: &str,
    now: u64,
) -> Result<org_auth::AdminEntry, ApiError> {
    const NOT_APPOINTED: ApiError = ApiError::OrgUnauthorized(
        "no admin of this id is appointed now in the organisation's roster signed by its CA",
    );
    let Some(doc) = state.store().admin_roster(org)? else {
        state.metrics().admin_refused("not_appointed");
        return Err(NOT_APPOINTED);
    };
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let admin = ca
        .signed(&doc.body, &doc.signature)
        .then(|| org_auth::AdminRoster::from_body(&doc.body).ok())
        .flatten()
        .filter(|roster| &roster.org == org)
        .and_then(|roster| roster.current(id, now).cloned());
    admin.ok_or_else(|| {
        state.metrics().admin_refused("not_appointed");
        NOT_APPOINTED
    })
}

/// Whether `signature` over `message` verifies with the Ed25519 `key`.
pub(super) fn verify_ed25519(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use ed25519_dalek::{Signature, VerifyingKey};
    let Ok(key) = <[u8; 32]>::try_from(key) else {
        return false;
    };
    match (
        VerifyingKey::from_bytes(&key),
        Signature::from_slice(signature),
    ) {
        (Ok(key), Ok(signature)) => key.verify_strict(message, &signature).is_ok(),
        _ => false,
    }
}

/// The one organisation action the relay operator's token may take: giving
/// an organisation that has no CA (one created before organisations
/// needed one) its first, with `PUT /v1/admin/orgs/{org}/ca`. Once it has
/// one, only that CA's key acts for it. Anything else with the token is
/// `401`.
pub(super) async fn first_ca_by_operator(
    state: &AppState,
    parts: &mut Parts,
) -> Result<OrgId, ApiError> {
    const REFUSED: ApiError = ApiError::OrgUnauthorized(
        "an organisation's admin actions are signed with its CA key (Cascade-Org); \
         the relay's admin token cannot act for an organisation",
    );
    let org = (parts.method == axum::http::Method::PUT)
        .then(|| parts.uri.path().strip_prefix("/v1/admin/orgs/"))
        .flatten()
        .and_then(|rest| rest.strip_suffix("/ca"))
        .and_then(|org| OrgId::new(org).ok())
        .ok_or(REFUSED)?;
    AdminAuth::from_request_parts(parts, state).await?;
    match state.store().get_org(&org)? {
        Some(record) if record.ca_certificate.is_none() => Ok(org),
        Some(_) => Err(REFUSED),
        None => Err(ApiError::NotFound("unknown organisation")),
    }
}
