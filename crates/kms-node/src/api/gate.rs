//! The API from the node's first second: until the daemon has checked the chain, its bond and
//! its node record, every request is answered 503 with what the node is waiting for (and a
//! `Retry-After`), instead of a port that accepts connections and never answers. Once the node
//! is ready, [`Gate::open`] hands every request to the real router.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Router,
};
use tower::ServiceExt;

use super::ApiError;

/// Seconds a client is asked to wait while the node starts.
const STARTING_RETRY_AFTER_SECS: u64 = 2;

/// What the API answers while the node starts, and the router once it is ready.
#[derive(Debug)]
pub struct Gate {
    phase: Mutex<String>,
    app: OnceLock<Router>,
}

impl Gate {
    /// A closed gate, answering that the node is `phase` (e.g. "connecting to the chain").
    pub fn new(phase: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(phase.into()),
            app: OnceLock::new(),
        })
    }

    /// What the node is doing now, as a 503 tells it.
    pub fn set_phase(&self, phase: impl Into<String>) {
        let phase = phase.into();
        tracing::info!(%phase, "starting");
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }

    /// What the node is doing now.
    pub fn phase(&self) -> String {
        self.phase
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The node is ready: every request goes to `app` from now on.
    pub fn open(&self, app: Router) {
        if self.app.set(app).is_err() {
            tracing::warn!("the API gate was opened twice; the first router stays");
        }
    }

    /// Whether [`Gate::open`] was called.
    pub fn is_open(&self) -> bool {
        self.app.get().is_some()
    }

    /// The router to serve: the gate's answer until it opens, then the real router's.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(through).with_state(self.clone())
    }
}

async fn through(State(gate): State<Arc<Gate>>, request: Request) -> Response {
    match gate.app.get() {
        Some(app) => match app.clone().oneshot(request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        },
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the node is starting: {}", gate.phase()),
        )
        .retry_after(STARTING_RETRY_AFTER_SECS)
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::{body::Body, routing::get};
    use http_body_util::BodyExt;

    use super::*;

    async fn ask(app: &Router) -> (StatusCode, String) {
        let response = app
            .clone()
            .oneshot(Request::get("/v1/node").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn answers_503_with_the_phase_until_opened() {
        let gate = Gate::new("connecting to the chain");
        let app = gate.router();
        let (status, body) = ask(&app).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("starting: connecting to the chain"), "{body}");
        gate.set_phase("waiting for the node record");
        assert!(ask(&app).await.1.contains("waiting for the node record"));
        gate.open(Router::new().route("/v1/node", get(|| async { "ready" })));
        assert_eq!(ask(&app).await, (StatusCode::OK, "ready".into()));
    }
}
