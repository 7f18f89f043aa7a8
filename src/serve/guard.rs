//! What every request passes before its route: the API key, the drain, the limit on
//! requests at once and the deadline; and after it, one log line and the metrics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::api::{AnsweredDocuments, ApiError, ROUTES};
use super::App;
use crate::logging;

/// Probes a platform calls without a key, and answered while draining.
const PROBES: [&str; 2] = ["/health", "/ready"];

pub async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_of(request.uri().path());
    let method = request.method().to_string();
    let number = app.next_request.fetch_add(1, Ordering::Relaxed) + 1;
    let response = admit(&app, route, request, next).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    app.metrics.request(route, status, elapsed);
    let documents = response.extensions().get::<AnsweredDocuments>().map(|d| d.0);
    let ms = (elapsed.as_secs_f64() * 1e4).round() / 10.0;
    logging::info(
        "request",
        &format!("{method} {route} {status} in {ms} ms"),
        json!({"request": number, "method": method, "route": route, "status": status, "ms": ms, "documents": documents}),
    );
    response
}

async fn admit(app: &App, route: &'static str, request: Request, next: Next) -> Response {
    if PROBES.contains(&route) {
        return next.run(request).await;
    }
    if let Some(expected) = &app.settings.api_key_sha256 {
        if !bearer_matches(request.headers().get(header::AUTHORIZATION), expected) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server requires `Authorization: Bearer KEY` (--api-key-file)",
            )
            .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    if route == "/metrics" {
        return next.run(request).await;
    }
    // Counted before the drain flag is read, so that a drain that finds no request in
    // flight cannot miss one that is about to start.
    let _in_flight = InFlight::enter(&app.in_flight);
    if app.draining.load(Ordering::SeqCst) {
        let mut response =
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "draining", "the server is shutting down").into_response();
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    if app.in_flight.load(Ordering::SeqCst) > app.settings.max_concurrent_requests {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!("more than {} requests at once (--max-concurrent-requests)", app.settings.max_concurrent_requests),
        );
        error.retry_after_seconds = Some(1);
        return error.into_response();
    }
    let timeout = app.settings.request_timeout;
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("not answered within {} s (--request-timeout)", timeout.as_secs_f64()),
        )
        .into_response(),
    }
}

/// The API's own path, or `other`: metrics and logs never carry what a client made up.
fn route_of(path: &str) -> &'static str {
    ROUTES.iter().map(|(_, route)| *route).find(|route| *route == path).unwrap_or("other")
}

/// Compares digests, in time independent of where they differ, so that the key cannot
/// be found byte by byte from response times; hashing first hides its length too.
fn bearer_matches(value: Option<&HeaderValue>, expected: &[u8; 32]) -> bool {
    let Some(key) = value.and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) else {
        return false;
    };
    let given = super::Settings::api_key_digest(key);
    given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// One accepted request, counted while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_bearer_key_passes() {
        let expected = super::super::Settings::api_key_digest("s3cret\n");
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(bearer_matches(Some(&header("Bearer s3cret")), &expected));
        assert!(!bearer_matches(Some(&header("Bearer s3cre")), &expected));
        assert!(!bearer_matches(Some(&header("Basic s3cret")), &expected));
        assert!(!bearer_matches(None, &expected));
    }

    #[test]
    fn unknown_paths_are_one_route() {
        assert_eq!(route_of("/v1/classify"), "/v1/classify");
        assert_eq!(route_of("/v1/classify/../../etc"), "other");
    }
}
