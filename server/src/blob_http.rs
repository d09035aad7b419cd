//! The blob endpoints (protocol §3.6): `PUT /v1/blobs/{digest}?offset=N`
//! streams an upload to disk from octet N, `GET /v1/blobs/{digest}` streams
//! a download (`Range: bytes=N-` resumes one). Both take a ticket from the
//! device's WebSocket (`PostBlob`, `GetBlob`) as `Authorization: Bearer
//! <hex>`. A body is read as it comes, one piece at a time, for as long as
//! it keeps coming: a pause of [`IDLE_TIMEOUT`] ends it (what arrived is
//! kept, and the upload resumes from there).

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::blobs::{Access, Blobs, UploadError};
use crate::error::ApiError;
use crate::AppState;

/// How long an upload's body may pause before the relay stops reading it.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The blob routes, with the URI and header checks of [`crate::guard`] but
/// not its body limit or request deadline.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/blobs/{digest}", put(upload).get(download))
        .layer(axum::middleware::from_fn(light_guard))
}

async fn light_guard(request: Request, next: Next) -> Response {
    if request.uri().to_string().len() > crate::guard::MAX_URI_BYTES {
        return ApiError::BadRequest("the request target is too long").into_response();
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > crate::guard::MAX_HEADER_BYTES {
        return ApiError::BadRequest("the request headers are too large").into_response();
    }
    next.run(request).await
}

/// Where an upload continues.
#[derive(Debug, Deserialize)]
pub struct UploadAt {
    /// The octet of the blob the body starts at.
    #[serde(default)]
    pub offset: u64,
}

/// The answer to an upload: how much of the blob the relay has, and
/// whether that is all of it (its digest checked).
#[derive(Debug, Serialize, Deserialize)]
pub struct UploadAnswer {
    /// Octets the relay has.
    pub offset: u64,
    /// The blob is whole and its digest checked.
    pub complete: bool,
}

fn blobs(state: &AppState) -> Result<&Blobs, ApiError> {
    state
        .blobs()
        .map(|b| &**b)
        .ok_or(ApiError::NotFound("this relay keeps no attachments"))
}

fn digest(hex_digest: &str) -> Result<[u8; 32], ApiError> {
    hex::decode(hex_digest)
        .ok()
        .and_then(|d| <[u8; 32]>::try_from(d).ok())
        .ok_or(ApiError::NotFound("no such blob"))
}

/// The ticket in `Authorization: Bearer <hex>`, checked for the blob and
/// what it is used for.
fn ticket(
    blobs: &Blobs,
    headers: &HeaderMap,
    digest: &[u8; 32],
    access: Access,
) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| hex::decode(t.trim()).ok())
        .and_then(|t| <[u8; 32]>::try_from(t).ok())
        .ok_or(ApiError::BlobTicket)?;
    blobs
        .check(&token, digest, access)
        .map(|_| ())
        .ok_or(ApiError::BlobTicket)
}

async fn upload(
    State(state): State<AppState>,
    Path(hex_digest): Path<String>,
    Query(at): Query<UploadAt>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UploadAnswer>, ApiError> {
    let blobs = state
        .blobs()
        .cloned()
        .ok_or(ApiError::NotFound("this relay keeps no attachments"))?;
    let digest = digest(&hex_digest)?;
    ticket(&blobs, &headers, &digest, Access::Upload)?;
    let (file, size) = blobs
        .begin_upload(&digest, at.offset)
        .map_err(upload_error)?;
    let mut file = tokio::fs::File::from_std(file);
    file.seek(std::io::SeekFrom::End(0)).await?;
    let mut offset = at.offset;
    let mut stream = body.into_data_stream();
    loop {
        let next = match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
            Ok(next) => next,
            // Paused too long: keep what came, the client resumes.
            Err(_) => break,
        };
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            // The connection broke: keep what came.
            Some(Err(_)) => break,
        };
        if offset + chunk.len() as u64 > size {
            file.flush().await?;
            return Err(ApiError::PayloadTooLarge);
        }
        file.write_all(&chunk).await?;
        offset += chunk.len() as u64;
    }
    file.flush().await?;
    drop(file);
    if offset < size {
        return Ok(Json(UploadAnswer {
            offset,
            complete: false,
        }));
    }
    let finished = {
        let blobs = blobs.clone();
        tokio::task::spawn_blocking(move || blobs.finish(&digest))
            .await
            .map_err(|_| ApiError::Internal)?
    };
    finished.map_err(upload_error)?;
    Ok(Json(UploadAnswer {
        offset: size,
        complete: true,
    }))
}

fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::Offset(at) => ApiError::BlobOffset(at),
        UploadError::TooLong => ApiError::PayloadTooLarge,
        UploadError::Digest => ApiError::BadRequest("the blob's digest is not the one posted"),
        UploadError::Io(e) => e.into(),
    }
}

/// `Range: bytes=N-` (or `bytes=N-M`): the first octet asked for.
fn range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let (start, _) = v.strip_prefix("bytes=")?.split_once('-')?;
    start.trim().parse().ok()
}

async fn download(
    State(state): State<AppState>,
    Path(hex_digest): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let blobs = blobs(&state)?;
    let digest = digest(&hex_digest)?;
    ticket(blobs, &headers, &digest, Access::Download)?;
    let path = blobs
        .file(&digest)
        .ok_or(ApiError::NotFound("no such blob"))?;
    let mut file = tokio::fs::File::open(&path).await?;
    let size = file.metadata().await?.len();
    let start = range_start(&headers).unwrap_or(0);
    if start > size {
        return Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{size}"))],
        )
            .into_response());
    }
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024));
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size - start)
        .header(header::ACCEPT_RANGES, "bytes");
    if headers.contains_key(header::RANGE) {
        response = response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", size.saturating_sub(1)),
        );
    }
    response.body(body).map_err(|_| ApiError::Internal)
}
