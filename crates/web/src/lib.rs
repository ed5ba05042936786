//! The HTTP side of imss on `http.port` (8190): health check, the admin web interface
//! ([`pages`]), the JSON API, its live feed ([`events`]) and Prometheus metrics.
//!
//! Owns: the axum router and its listener. Must not: touch media or SIP state directly —
//! it reads figures through [`Health`] and the server's status snapshots.

pub mod auth;
pub mod events;
pub mod metrics;
pub mod pages;
pub mod tls;

use axum::{Router, extract::State, http::StatusCode, routing::get};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// What `/healthz` reports: starting (the default), ready (every listener up) or draining.
#[derive(Debug, Default)]
pub struct Health {
    state: AtomicU8,
    draining: AtomicBool,
}

const READY: u8 = 1;

impl Health {
    /// Marks every listener as up.
    pub fn set_ready(&self) {
        self.state.store(READY, Ordering::Release);
    }
    /// Marks the server as draining: `/healthz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
    /// Whether new work should be sent here.
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY && !self.draining.load(Ordering::Acquire)
    }
}

/// The OpenAPI description of this crate's routes (sessions, status, events, metrics,
/// health); the server merges it with its own.
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(
        healthz,
        auth::login,
        auth::logout,
        auth::session,
        auth::change_password,
        auth::list_accounts,
        metrics::metrics,
        metrics::status,
        metrics::status_history,
        events::events
    ))]
    struct Doc;
    <Doc as utoipa::OpenApi>::openapi()
}

/// The router: `GET /healthz`.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(health)
}

#[utoipa::path(get, path = "/healthz", tag = "monitoring",
    responses(
        (status = 200, description = "`ok`: every listener is up", content_type = "text/plain"),
        (status = 503, description = "`starting` or `draining`", content_type = "text/plain")
    ))]
async fn healthz(State(health): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if health.draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if health.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// Serves `router` on an already bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address feeds the login rate limit.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}
