//! The token `serve --auth-token-file` sets: every route but `/healthz` asks
//! for it, as `Authorization: Bearer TOKEN` (scripts, probes) or as the
//! password of basic authentication, any user name (a browser asks for it).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;

use crate::Shared;

/// Lets a request through when no token is set or it carries the token; a 401
/// that asks for it otherwise.
pub(crate) async fn check(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Some(token) = shared.token.as_deref() else {
        return next.run(request).await;
    };
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(secret);
    match given {
        Some(given) if same(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => {
            let mut response = crate::problem(
                StatusCode::UNAUTHORIZED,
                "this server asks for its token: `Authorization: Bearer TOKEN`, or TOKEN as the password of basic authentication"
                    .to_owned(),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="airlock", charset="UTF-8""#),
            );
            response
        }
    }
}

/// The secret an `Authorization` header carries: a bearer token, or basic
/// authentication's password.
fn secret(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(rest.trim().to_owned()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
            let pair = String::from_utf8(decoded).ok()?;
            pair.split_once(':').map(|(_, password)| password.to_owned())
        }
        _ => None,
    }
}

/// Compares in time that does not depend on where the two first differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |seen, (x, y)| seen | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_carry_the_secret() {
        assert_eq!(secret("Bearer s3cret").as_deref(), Some("s3cret"));
        assert_eq!(secret("bearer  s3cret ").as_deref(), Some("s3cret"));
        // "anyone:s3:cret": the password may hold a colon.
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3:cret");
        assert_eq!(secret(&format!("Basic {basic}")).as_deref(), Some("s3:cret"));
        assert_eq!(secret("Basic !!!"), None);
        assert_eq!(secret("Digest x"), None);
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
