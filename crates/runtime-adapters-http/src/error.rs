//! The one error shape every failing response has, and the middleware that enforces it.
//!
//! `{"error": {"code": 404, "message": "..."}}` — for our own errors, and also for what
//! axum answers by itself (unknown path, wrong method, bad JSON, body too large), which
//! [`json_errors`] rewrites from plain text. Panics and timeouts become JSON too, and so
//! do the answers hyper gives by itself before any route runs (an oversized head, a
//! request line that does not parse), which the connection's writer in `server.rs` swaps.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use runtime_contracts::AdminError;
use serde::de::DeserializeOwned;
use serde_json::json;

/// An error answer: a status and a message (never a secret).
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The stable error body.
pub(crate) fn error_body(status: StatusCode, message: &str) -> serde_json::Value {
    json!({"error": {"code": status.as_u16(), "message": message}})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(error_body(self.status, &self.message))).into_response()
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let status = match &e {
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            // A variant added later: the server cannot classify it, the caller is not at fault.
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// `Json<T>` whose rejections use our shape: bad syntax or a wrong shape is 400 (not
/// axum's 422), a missing content type 415, a body over the limit 413.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => {
                let status = match &rejection {
                    JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
                        StatusCode::BAD_REQUEST
                    }
                    other => other.status(),
                };
                Err(ApiError::new(status, rejection.body_text()))
            }
        }
    }
}

/// Rewrites any error answer that is not JSON yet (axum's own rejections, its 404 and
/// 405) into the stable shape, keeping status and headers (`Allow` on a 405).
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Axum's rejection texts are short; anything long is cut rather than buffered.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        default_message(status)
    } else {
        text
    };
    let body = serde_json::to_vec(&error_body(status, &message)).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "no such route".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_owned(),
        s => s
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    }
}

/// Refuses a body whose declared length is over the limit before anything reads it
/// (chunked bodies are cut by the extractor's limit instead).
pub(crate) async fn declared_length_limit(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Bounds the time of a request; a slow one gets 503 with our shape.
pub(crate) async fn time_limit(limit: Duration, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(%path, timeout = ?limit, "control plane request timed out");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("request timed out after {limit:?}"),
            )
            .into_response()
        }
    }
}

/// Turns a panic in a handler (or in the control plane it calls) into a 500 JSON answer
/// instead of a dropped connection.
pub(crate) async fn catch_panic(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::error!(%path, "control plane request panicked");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_errors_map_to_statuses() {
        let s = |e| ApiError::from(e).status;
        assert_eq!(s(AdminError::NotFound("x".into())), StatusCode::NOT_FOUND);
        assert_eq!(s(AdminError::Invalid("x".into())), StatusCode::BAD_REQUEST);
        assert_eq!(s(AdminError::Conflict("x".into())), StatusCode::CONFLICT);
        assert_eq!(
            s(AdminError::Unavailable("x".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
