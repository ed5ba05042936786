//! Stub: filled in below.

use super::Admin;
use axum::Router;
use std::sync::Arc;

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi()]
pub(crate) struct Doc;

/// This module's routes.
pub(crate) fn routes(admin: Arc<Admin>) -> Router {
    let _ = admin;
    Router::new()
}
