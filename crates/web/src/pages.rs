//! The pages of the web interface: `GET /login`, the dashboard at `GET /` and the pages
//! listed in [`crate::auth::PAGE_PATHS`] (sessions, settings, live sources, audio files,
//! administration), with their scripts and stylesheet under `/assets/`.
//!
//! Plain HTML, CSS and JavaScript embedded in the binary (no build step, nothing fetched
//! from elsewhere). The pages only call the JSON API and the live feed
//! ([`crate::events`]); they hold no state of their own beyond what the browser shows.
//! `common.js` (navigation, login state, API calls with the CSRF token, error display)
//! and `settings.js` (forms over configuration sections) are shared by the pages.

use crate::auth::Auth;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Every page: its path and its HTML.
const PAGES: [(&str, &str); 10] = [
    ("/login", include_str!("../assets/login.html")),
    ("/", include_str!("../assets/dashboard.html")),
    ("/sessions", include_str!("../assets/sessions.html")),
    ("/general", include_str!("../assets/general.html")),
    ("/audio", include_str!("../assets/audio.html")),
    ("/mail", include_str!("../assets/mail.html")),
    ("/sources", include_str!("../assets/sources.html")),
    ("/tts", include_str!("../assets/tts.html")),
    ("/files", include_str!("../assets/files.html")),
    ("/admin", include_str!("../assets/admin.html")),
];

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every asset: its path, content type and content.
const ASSETS: [(&str, &str, &str); 13] = [
    (
        "/assets/style.css",
        CSS,
        include_str!("../assets/style.css"),
    ),
    ("/assets/login.js", JS, include_str!("../assets/login.js")),
    ("/assets/common.js", JS, include_str!("../assets/common.js")),
    (
        "/assets/settings.js",
        JS,
        include_str!("../assets/settings.js"),
    ),
    (
        "/assets/dashboard.js",
        JS,
        include_str!("../assets/dashboard.js"),
    ),
    (
        "/assets/sessions.js",
        JS,
        include_str!("../assets/sessions.js"),
    ),
    (
        "/assets/general.js",
        JS,
        include_str!("../assets/general.js"),
    ),
    ("/assets/audio.js", JS, include_str!("../assets/audio.js")),
    ("/assets/mail.js", JS, include_str!("../assets/mail.js")),
    (
        "/assets/sources.js",
        JS,
        include_str!("../assets/sources.js"),
    ),
    ("/assets/tts.js", JS, include_str!("../assets/tts.js")),
    ("/assets/files.js", JS, include_str!("../assets/files.js")),
    ("/assets/admin.js", JS, include_str!("../assets/admin.js")),
];

/// Assets the login page needs before anyone is logged in.
const PUBLIC_ASSETS: [&str; 2] = ["/assets/style.css", "/assets/login.js"];

/// The pages and their assets. Opens the login page's assets in `auth`; every other page
/// and asset stays behind the login.
pub fn routes(auth: &Auth) -> Router {
    for path in PUBLIC_ASSETS {
        auth.open_path(path);
    }
    let mut router = Router::new();
    for (path, html) in PAGES {
        router = router.route(path, get(move || async move { page(html) }));
    }
    for (path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    router
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
                // Audio plays from the API (`'self'`) and from spoken text fetched as a blob.
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; \
                     frame-ancestors 'none'",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_behind_the_login_is_served() {
        for path in crate::auth::PAGE_PATHS {
            assert!(PAGES.iter().any(|(p, _)| *p == path), "{path} has no page");
        }
    }

    #[test]
    fn every_script_and_stylesheet_a_page_names_is_served() {
        for (page, html) in PAGES {
            for attribute in ["src=\"", "href=\""] {
                for part in html.split(attribute).skip(1) {
                    let url = part.split('"').next().unwrap_or_default();
                    if !url.starts_with("/assets/") {
                        continue;
                    }
                    assert!(
                        ASSETS.iter().any(|(p, _, _)| *p == url),
                        "{page} names {url}, which is not served"
                    );
                }
            }
        }
    }

    #[test]
    fn pages_run_no_inline_script() {
        // The Content-Security-Policy (`default-src 'self'`) would block them.
        for (page, html) in PAGES {
            for part in html.split("<script").skip(1) {
                let tag = part.split('>').next().unwrap_or_default();
                assert!(tag.contains("src="), "{page} has an inline script");
            }
            assert!(!html.contains(" onclick="), "{page} has an inline handler");
            assert!(!html.contains(" style="), "{page} has an inline style");
        }
    }
}
