//! Request extractors whose rejections are [`ApiError`]s, so every HTTP error
//! has the same JSON shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body, read within the body limit
/// ([`MAX_HTTP_BODY_BYTES`](crate::MAX_HTTP_BODY_BYTES)). The content type is
/// not checked.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("the request body could not be read")
            }
        })?;
        serde_json::from_slice(&body)
            .map(ApiJson)
            .map_err(|_| ApiError::BadRequest("the body is not JSON of the expected shape"))
    }
}
