//! The pages of the web interface: `GET /login` and the dashboard at `GET /`.
//!
//! Plain HTML, CSS and JavaScript embedded in the binary (no build step, nothing fetched
//! from elsewhere). The pages only call the JSON API and the live feed
//! ([`crate::events`]); they hold no state of their own beyond what the browser shows.

use crate::auth::Auth;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const LOGIN_HTML: &str = include_str!("../assets/login.html");
const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");
const STYLE_CSS: &str = include_str!("../assets/style.css");
const LOGIN_JS: &str = include_str!("../assets/login.js");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");

/// Assets the login page needs before anyone is logged in.
const PUBLIC_ASSETS: [&str; 2] = ["/assets/style.css", "/assets/login.js"];

/// `GET /login`, `GET /` and their assets under `/assets/`. Opens the login page's assets
/// in `auth`; the dashboard and its script stay behind the login.
pub fn routes(auth: &Auth) -> Router {
    for path in PUBLIC_ASSETS {
        auth.open_path(path);
    }
    Router::new()
        .route("/", get(|| async { page(DASHBOARD_HTML) }))
        .route("/login", get(|| async { page(LOGIN_HTML) }))
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/assets/login.js",
            get(|| async { asset("text/javascript; charset=utf-8", LOGIN_JS) }),
        )
        .route(
            "/assets/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", DASHBOARD_JS) }),
        )
}

fn page(html: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                ),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        html,
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Embedded in the binary: they change only with a new version.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}
