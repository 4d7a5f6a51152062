//! CORS, so that web apps reach the API from a browser (the TypeScript SDK's Bob and Alice run
//! in a page of another origin than the node's).
//!
//! Only the JSON API (`/v1/...`) is shared across origins: the status page and `/metrics` are
//! for operators and get no CORS headers. Every `/v1/` endpoint is public (its requests are
//! signed or carry nothing secret, and no cookie or credential is ever accepted), so by default
//! any origin may call it (`[cors] allowed_origins = ["*"]`); an operator may list the origins
//! of the apps it serves instead, or list none to serve no browser app at all.
//!
//! The layer wraps the start-up gate too, so a page gets the node's 503 "starting" with its
//! reason rather than an opaque CORS failure, and preflights are answered from the first second.

use std::time::Duration;

use axum::http::{header, request::Parts, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight's answer. Chromium caps it at two hours.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The path prefix of the endpoints shared across origins.
const SHARED_PREFIX: &str = "/v1/";

/// Which origins may call the JSON API from a browser (`[cors] allowed_origins`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowedOrigins {
    /// Any origin (`["*"]`, the default).
    #[default]
    Any,
    /// These origins only, each `scheme://host[:port]` as browsers send it.
    List(Vec<HeaderValue>),
    /// No browser app: no CORS headers at all (`[]`).
    None,
}

/// Why a `[cors] allowed_origins` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OriginError(String);

impl AllowedOrigins {
    /// Parses the configuration's list: `["*"]`, `[]`, or origins such as
    /// `"https://app.example"` (no path, no trailing slash: exactly what a browser sends).
    pub fn parse(entries: &[String]) -> Result<Self, OriginError> {
        if entries.iter().any(|entry| entry == "*") {
            if entries.len() > 1 {
                return Err(OriginError(
                    "\"*\" allows every origin: list it alone, or list origins without it".into(),
                ));
            }
            return Ok(Self::Any);
        }
        if entries.is_empty() {
            return Ok(Self::None);
        }
        entries
            .iter()
            .map(|entry| parse_origin(entry))
            .collect::<Result<Vec<_>, _>>()
            .map(Self::List)
    }

    /// Whether a request from `origin` to the request `parts` may read the answer.
    fn allows(&self, origin: &HeaderValue, parts: &Parts) -> bool {
        parts.uri.path().starts_with(SHARED_PREFIX)
            && match self {
                Self::Any => true,
                Self::List(origins) => origins.contains(origin),
                Self::None => false,
            }
    }

    /// The layer answering preflights and adding the CORS headers; `None` when no origin is
    /// allowed (the API then answers exactly as without CORS).
    pub fn layer(&self) -> Option<CorsLayer> {
        if *self == Self::None {
            return None;
        }
        let origins = self.clone();
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::predicate(move |origin, parts| {
                    origins.allows(origin, parts)
                }))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE])
                // A client backs off by the node's Retry-After (429, 503, a kfrag's 404).
                .expose_headers([HeaderName::from_static("retry-after")])
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

fn parse_origin(entry: &str) -> Result<HeaderValue, OriginError> {
    let refuse = |why: &str| {
        Err(OriginError(format!(
            "{entry:?} is not an origin ({why}): write it as a browser sends it, \
             e.g. \"https://app.example\" or \"http://localhost:8080\""
        )))
    };
    let Some((scheme, rest)) = entry.split_once("://") else {
        return refuse("no scheme");
    };
    if scheme != "http" && scheme != "https" {
        return refuse("the scheme must be http or https");
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
        return refuse("only a host and an optional port may follow the scheme");
    }
    if entry.chars().any(|c| c.is_ascii_uppercase()) {
        return refuse("browsers send origins in lower case");
    }
    match HeaderValue::from_str(entry) {
        Ok(value) => Ok(value),
        Err(_) => refuse("it holds characters a header cannot"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::{
        body::Body,
        http::{Request, StatusCode},
        routing::get,
        Router,
    };
    use tower::ServiceExt;

    use super::*;

    fn app(origins: &AllowedOrigins) -> Router {
        let router = Router::new()
            .route(
                "/v1/node",
                get(|| async { "node" }).post(|| async { "posted" }),
            )
            .route("/metrics", get(|| async { "metrics" }));
        match origins.layer() {
            Some(layer) => router.layer(layer),
            None => router,
        }
    }

    async fn send(app: &Router, request: Request<Body>) -> axum::response::Response {
        app.clone().oneshot(request).await.unwrap()
    }

    fn preflight(path: &str, origin: &str) -> Request<Body> {
        Request::options(path)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    }

    fn allowed_origin(response: &axum::response::Response) -> Option<&str> {
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap())
    }

    #[test]
    fn the_configuration_list_is_checked() {
        let list = |entries: &[&str]| {
            AllowedOrigins::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(list(&["*"]), Ok(AllowedOrigins::Any));
        assert_eq!(list(&[]), Ok(AllowedOrigins::None));
        assert_eq!(
            list(&["https://app.example", "http://localhost:8080"]),
            Ok(AllowedOrigins::List(vec![
                HeaderValue::from_static("https://app.example"),
                HeaderValue::from_static("http://localhost:8080"),
            ]))
        );
        for bad in [
            "app.example",
            "ftp://app.example",
            "https://app.example/",
            "https://app.example/path",
            "https://App.example",
            "https://",
        ] {
            let error = list(&[bad]).unwrap_err().to_string();
            assert!(error.contains("is not an origin"), "{bad}: {error}");
        }
        assert!(list(&["*", "https://app.example"]).is_err());
    }

    #[tokio::test]
    async fn any_origin_gets_the_api_and_its_preflights_answered() {
        let app = app(&AllowedOrigins::Any);
        let answer = send(&app, preflight("/v1/node", "https://app.example")).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(allowed_origin(&answer), Some("https://app.example"));
        let headers = answer.headers();
        let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap();
        assert!(
            methods.contains("POST") && methods.contains("GET"),
            "{methods}"
        );
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "3600");
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));

        let get = Request::get("/v1/node")
            .header(header::ORIGIN, "https://other.example")
            .body(Body::empty())
            .unwrap();
        let answer = send(&app, get).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(allowed_origin(&answer), Some("https://other.example"));
        assert_eq!(
            answer.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            "retry-after"
        );
    }

    #[tokio::test]
    async fn operator_endpoints_are_not_shared() {
        let app = app(&AllowedOrigins::Any);
        let get = Request::get("/metrics")
            .header(header::ORIGIN, "https://app.example")
            .body(Body::empty())
            .unwrap();
        assert_eq!(allowed_origin(&send(&app, get).await), None);
        assert_eq!(
            allowed_origin(&send(&app, preflight("/metrics", "https://app.example")).await),
            None
        );
    }

    #[tokio::test]
    async fn a_list_allows_only_its_origins() {
        let origins = AllowedOrigins::parse(&["https://app.example".into()]).unwrap();
        let app = app(&origins);
        let ok = send(&app, preflight("/v1/node", "https://app.example")).await;
        assert_eq!(allowed_origin(&ok), Some("https://app.example"));
        let other = send(&app, preflight("/v1/node", "https://evil.example")).await;
        assert_eq!(allowed_origin(&other), None);
    }

    #[tokio::test]
    async fn no_origin_means_no_cors_headers() {
        let app = app(&AllowedOrigins::None);
        let get = Request::get("/v1/node")
            .header(header::ORIGIN, "https://app.example")
            .body(Body::empty())
            .unwrap();
        let answer = send(&app, get).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(allowed_origin(&answer), None);
    }
}
