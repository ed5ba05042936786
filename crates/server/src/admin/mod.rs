//! The JSON API under `/api/v1` that the web interface's pages use and operators automate
//! with, and its OpenAPI document at `/api/openapi.json`.
//!
//! Owns: the routes that read and change the configuration and the server's state
//! (configuration sections, live sources, sessions, audio files, mail and TTS tools, users,
//! tokens and the audit log), the one error shape they answer with ([`ApiError`]) and the
//! saving of changes ([`Admin::change`]: validate, write atomically, audit, apply live).
//!
//! Must not: keep state of its own beyond what the server already has — every answer is read
//! from the running server or the configuration file.
//!
//! The OpenAPI document is generated with `utoipa` from the handlers' annotations and the
//! types they exchange, so it cannot drift from the code.

pub(crate) mod config_api;
pub(crate) mod files;
pub(crate) mod sessions;
pub(crate) mod sources;
pub(crate) mod tools;

use crate::{Config, Shared, config_file};
use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use imss_web::auth::{Auth, Principal};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use utoipa::OpenApi as _;

/// Sets the log filter of the running process (`general.log_level`); `Err` says why a value
/// cannot be used.
pub type SetLogLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the API routes work on: the running server's shared state and its configuration file.
pub(crate) struct Admin {
    /// The running server.
    pub shared: Arc<Shared>,
    /// The configuration file changes are saved to; `None` when the server runs without one
    /// (changes are then refused with 409 `no_config_file`).
    pub file: Option<PathBuf>,
    /// Web accounts and tokens (replaced when `[http]` accounts change).
    pub web_auth: Arc<Auth>,
    /// Sets the log filter, when the process has one that can change.
    pub set_log_level: Option<SetLogLevel>,
    /// Talks to the SIP shell (the call table).
    pub shell: crate::sip_shell::control::Control,
    /// Turns true when the server stops: responses that could last long (listen streams)
    /// end then, so that shutdown does not wait for them.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// The one error shape of the API: `{"error": code, "message": text, "field": key}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// Machine-readable kind: `invalid`, `not_found`, `conflict`, `no_config_file`,
    /// `unavailable`, `too_large`, `failed`, …
    pub error: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The dotted configuration key or request field at fault (`mail.port`,
    /// `external_audio[2].url`, `name`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `conflict`: the version the file has now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
}

impl ApiError {
    /// Any status and code.
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            message: message.into(),
            field: None,
            current_version: None,
        }
    }
    /// 400 `invalid`, naming the field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
        }
    }
    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 500 `failed`: something on the server's side (a file that cannot be written).
    pub fn failed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", message)
    }
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, Json(&self)).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl From<config_file::UpdateError> for ApiError {
    fn from(e: config_file::UpdateError) -> ApiError {
        use config_file::UpdateError as U;
        match e {
            U::Conflict { current, .. } => ApiError {
                current_version: Some(current),
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "the configuration was changed by someone else since you loaded it: \
                     load it again, then redo your change",
                )
            },
            U::Config(crate::ConfigError::Invalid { key, message }) => {
                ApiError::invalid(key, message)
            }
            U::Refused(message) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", message),
            other => ApiError::failed(other.to_string()),
        }
    }
}

/// What [`Admin::change`] saved and applied: the body of every successful change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Saved {
    /// The configuration file's new version (also the `ETag` header).
    pub version: String,
    /// Sections applied at once.
    pub applied: Vec<String>,
    /// Sections saved that take effect only after a restart (ports, bind addresses, …).
    pub needs_restart: Vec<String>,
}

impl Saved {
    /// 200 with the body and the new version as `ETag`.
    pub fn into_response_with_etag(self) -> Response {
        let etag = etag(&self.version);
        let mut response = Json(self).into_response();
        response.headers_mut().insert(header::ETAG, etag);
        response
    }
}

/// `"version"` as an ETag header value.
pub fn etag(version: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// The version an `If-Match` header asks for (`"abc"`, `W/"abc"` or `abc`); `None` without
/// one or with `*`.
pub fn if_match(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::IF_MATCH)?.to_str().ok()?.trim();
    if value == "*" {
        return None;
    }
    let value = value.strip_prefix("W/").unwrap_or(value);
    Some(value.trim_matches('"').to_string())
}

impl Admin {
    /// The configuration file, or 409 `no_config_file`.
    pub fn file(&self) -> Result<&std::path::Path, ApiError> {
        self.file.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no_config_file",
                "the server runs without a configuration file: changes cannot be saved",
            )
        })
    }

    /// The configuration file's content and version now.
    pub fn current(&self) -> Result<(Config, String), ApiError> {
        let file = self.file()?;
        let text = std::fs::read(file)
            .map_err(|e| ApiError::failed(format!("cannot read {}: {e}", file.display())))?;
        let config = Config::load(file).map_err(|e| ApiError::failed(e.to_string()))?;
        Ok((config, config_file::version(&text)))
    }

    /// Saves `change` to the configuration file as `who` (validated first; with
    /// `expected_version`, refused with 409 `conflict` when the file changed since), then
    /// applies the new configuration as far as it can change while calls run. Blocking: call
    /// from the blocking pool.
    pub fn change(
        &self,
        who: &Principal,
        expected_version: Option<&str>,
        change: impl FnOnce(&mut Config) -> Result<(), ApiError>,
    ) -> Result<Saved, ApiError> {
        let file = self.file()?;
        let mut refused = None;
        let result = config_file::update(file, &who.name, expected_version, |c| {
            change(c).map_err(|e| {
                let message = e.message.clone();
                refused = Some(e);
                message
            })
        });
        let updated = match result {
            Ok(u) => u,
            Err(config_file::UpdateError::Refused(_)) if refused.is_some() => {
                return Err(refused.expect("checked"));
            }
            Err(e) => return Err(e.into()),
        };
        let report = self.apply(&updated.config);
        Ok(Saved {
            version: updated.version,
            applied: report.applied.iter().map(|s| s.to_string()).collect(),
            needs_restart: report.needs_restart.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Applies `config` (already validated) to the running server; see
    /// [`crate::RunningServer::reload`].
    pub fn apply(&self, config: &Config) -> crate::ReloadReport {
        crate::apply(
            &self.shared,
            &self.web_auth,
            self.set_log_level.as_ref(),
            config,
        )
    }

    /// Runs blocking `work` (file access, decoding) off the control plane.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Admin) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let admin = Arc::clone(self);
        tokio::task::spawn_blocking(move || work(&admin))
            .await
            .unwrap_or_else(|e| Err(ApiError::failed(format!("the request's work failed: {e}"))))
    }
}

/// The OpenAPI document of every route on the HTTP port.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "imss",
        description = "The imss media server's JSON API: configuration, live sources, sessions, \
                       audio files, mail and text-to-speech tools, users, tokens and the audit \
                       log. Authenticate with `Authorization: Bearer <token>` (`imss admin \
                       create-token`) or the web interface's session cookie; with the cookie, \
                       requests that change something carry `X-CSRF-Token` from \
                       `GET /api/v1/session`. Errors are `{\"error\", \"message\", \"field\"}`."
    ),
    components(schemas(ApiError, Saved))
)]
struct ApiDoc;

/// The whole OpenAPI document: this module's routes and the web crate's.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(imss_web::openapi());
    doc.merge(config_api::Doc::openapi());
    doc.merge(files::Doc::openapi());
    doc.merge(sessions::Doc::openapi());
    doc.merge(sources::Doc::openapi());
    doc.merge(tools::Doc::openapi());
    doc
}

/// Every route of this module, and `GET /api/openapi.json` (behind the login like the rest).
pub(crate) fn routes(admin: Arc<Admin>) -> Router {
    let doc =
        Arc::new(serde_json::to_string_pretty(&openapi()).unwrap_or_else(|_| "{}".to_string()));
    Router::new()
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = Arc::clone(&doc);
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_string(),
                    )
                }
            }),
        )
        .merge(config_api::routes(Arc::clone(&admin)))
        .merge(files::routes(Arc::clone(&admin)))
        .merge(sessions::routes(Arc::clone(&admin)))
        .merge(sources::routes(Arc::clone(&admin)))
        .merge(tools::routes(admin))
}
