//! Bearer-token check for `/admin/*`, and the audit line every admin action writes.
//!
//! Tokens are compared through their SHA-256 digests with a constant-time fold, so the
//! time a comparison takes says nothing about how much of a guess was right. Logs name a
//! caller by a token id (the first 8 hex digits of the digest), never by the token.

use std::fmt;

use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use runtime_contracts::Secret;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The configured admin token, kept only as its digest.
#[derive(Clone)]
pub(crate) struct TokenCheck {
    digest: Option<[u8; 32]>,
    id: String,
}

impl fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCheck").field("id", &self.id).finish()
    }
}

/// Who made an admin call, as logged: a non-secret token id.
#[derive(Clone, Debug)]
pub(crate) struct Caller(pub(crate) String);

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The first 8 hex digits of the token's SHA-256: enough to tell tokens apart in an audit
/// trail, far too little to recover or guess one.
pub(crate) fn token_id(token: &Secret) -> String {
    digest(token.expose())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl TokenCheck {
    pub(crate) fn new(token: Option<&Secret>) -> Self {
        match token.filter(|t| !t.is_empty()) {
            Some(t) => TokenCheck {
                digest: Some(digest(t.expose())),
                id: format!("token:{}", token_id(t)),
            },
            None => TokenCheck {
                digest: None,
                id: String::new(),
            },
        }
    }

    /// Decides a request: the caller, or the error to answer with.
    fn check(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(expected) = &self.digest else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin routes are disabled: no control token is configured",
            ));
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let Some(presented) = presented else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: send Authorization: Bearer <token>",
            ));
        };
        if constant_time_eq(expected, &digest(presented)) {
            Ok(Caller(self.id.clone()))
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid bearer token",
            ))
        }
    }
}

/// Middleware on `/admin`: lets authenticated calls through with their [`Caller`] in the
/// request extensions; answers 403 / 401 otherwise (and audits the refusal).
pub(crate) async fn require_token(
    State(check): State<TokenCheck>,
    mut req: Request,
    next: Next,
) -> Response {
    match check.check(req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(error) => {
            // Inside the nested `/admin` router the URI lost its prefix; log the real one.
            let path = req
                .extensions()
                .get::<OriginalUri>()
                .map_or_else(|| req.uri().path().to_owned(), |u| u.path().to_owned());
            tracing::warn!(
                target: "plba::audit",
                who = "unauthenticated",
                action = %format!("{} {path}", req.method()),
                result = "denied",
                status = error.status.as_u16(),
                "admin request refused"
            );
            let mut resp = error.into_response();
            if resp.status() == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            resp
        }
    }
}

/// Writes the audit line of an admin action: who, what, on which object, and how it went.
pub(crate) fn audit(caller: &Caller, action: &str, object: &str, status: StatusCode, result: &str) {
    tracing::info!(
        target: "plba::audit",
        who = %caller,
        action,
        object,
        status = status.as_u16(),
        result,
        "admin action"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn tokens() {
        let secret = Secret::new("abc");
        let check = TokenCheck::new(Some(&secret));
        let caller = check.check(&headers("Bearer abc")).unwrap();
        assert_eq!(caller.0, format!("token:{}", token_id(&secret)));
        assert!(!caller.0.contains("abc"));
        assert!(check.check(&headers("bearer  abc ")).is_ok());
        let status = |h: &HeaderMap| check.check(h).unwrap_err().status;
        assert_eq!(status(&headers("Bearer abd")), StatusCode::UNAUTHORIZED);
        assert_eq!(status(&headers("Basic abc")), StatusCode::UNAUTHORIZED);
        assert_eq!(status(&HeaderMap::new()), StatusCode::UNAUTHORIZED);
        let off = TokenCheck::new(None);
        assert_eq!(
            off.check(&headers("Bearer abc")).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            TokenCheck::new(Some(&Secret::new("")))
                .check(&headers("Bearer "))
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(token_id(&secret).len(), 8);
    }
}
