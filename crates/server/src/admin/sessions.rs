//! `/api/v1/sessions`: who is connected (plain SIP calls and MRCPv2 sessions), and ending a
//! session. The call table belongs to the SIP shell; these handlers ask it over its control
//! channel.

use super::{Admin, ApiError};
use crate::sip_shell::control::{self, SessionInfo, ShellGone};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use imss_web::auth::{Principal, RequireAdmin};
use serde::Serialize;
use std::sync::Arc;

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_sessions, end_session),
    components(schemas(SessionList, SessionEntry, SessionKind))
)]
pub(crate) struct Doc;

/// This module's routes.
pub(crate) fn routes(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/api/v1/sessions", axum::routing::get(list_sessions))
        .route("/api/v1/sessions/{id}", axum::routing::delete(end_session))
        .with_state(admin)
}

/// Every session connected now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// Oldest first.
    pub sessions: Vec<SessionEntry>,
}

/// What kind of session.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// An MRCPv2 session (RFC 6787): speech synthesis and audio played over its channels.
    Mrcp,
    /// A plain SIP call: a live source or an RFC 4240 announcement.
    Sip,
}

/// One connected session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionEntry {
    /// The session's id, for `DELETE /api/v1/sessions/{id}` (`call-N`).
    #[schema(example = "call-12")]
    pub id: String,
    /// `mrcp` or `sip`.
    pub kind: SessionKind,
    /// The SIP peer the INVITE came from (`ip:port`).
    #[schema(example = "192.0.2.10:5060")]
    pub peer: String,
    /// The SIP Call-ID (also accepted by `DELETE`, percent-encoded).
    pub call_id: String,
    /// The MRCPv2 Channel-Identifier (several are separated by `, `); `null` for plain SIP.
    #[schema(example = "6e1d8b2c@speechsynth")]
    pub channel: Option<String>,
    /// What it plays now: `source:NAME`, an announcement's URI, or a SPEAK's URIs and the
    /// start of its text in quotes; `null` while an MRCPv2 session has no SPEAK active.
    pub playing: Option<String>,
    /// When the INVITE arrived (RFC 3339, UTC).
    #[schema(example = "2026-11-24T05:30:00Z")]
    pub since: String,
    /// Whole seconds since then.
    pub seconds: u64,
    /// The negotiated codec (`PCMU`, `PCMA`); `null` before an answer was given.
    #[schema(example = "PCMU")]
    pub codec: Option<String>,
    /// RTP packets sent to the peer so far.
    pub packets: u64,
}

impl From<SessionInfo> for SessionEntry {
    fn from(s: SessionInfo) -> SessionEntry {
        let since = s
            .since
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        SessionEntry {
            id: s.id,
            kind: match s.kind {
                control::SessionKind::Mrcp => SessionKind::Mrcp,
                control::SessionKind::Sip => SessionKind::Sip,
            },
            peer: s.peer.to_string(),
            call_id: s.call_id,
            channel: (!s.channels.is_empty()).then(|| s.channels.join(", ")),
            playing: s.playing,
            since: crate::config_file::rfc3339(since),
            seconds: s.seconds,
            codec: s.codec.map(str::to_string),
            packets: s.packets,
        }
    }
}

/// 503 `unavailable`: the call table is gone (the server is stopping).
fn shell_gone(_: ShellGone) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the server is shutting down: its sessions cannot be read or ended",
    )
}

/// Lists the sessions connected now.
#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    tag = "sessions",
    responses(
        (status = 200, description = "The sessions connected now, oldest first", body = SessionList),
        (status = 401, description = "No or expired credentials", body = ApiError),
        (status = 503, description = "The server is shutting down", body = ApiError),
    )
)]
async fn list_sessions(
    State(admin): State<Arc<Admin>>,
    _who: Principal,
) -> Result<Response, ApiError> {
    let sessions = admin.shell.sessions().await.map_err(shell_gone)?;
    let body = SessionList {
        sessions: sessions.into_iter().map(SessionEntry::from).collect(),
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// Ends a session as the server does at shutdown: BYE to the peer, its RTP stream stopped,
/// its MRCPv2 channels closed.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}",
    tag = "sessions",
    params(
        ("id" = String, Path, description = "The session's `id`, or its SIP Call-ID (percent-encoded)")
    ),
    responses(
        (status = 204, description = "The session is being ended (BYE sent)"),
        (status = 401, description = "No or expired credentials", body = ApiError),
        (status = 403, description = "Not an admin, or a cookie session without its CSRF token", body = ApiError),
        (status = 404, description = "No such session", body = ApiError),
        (status = 503, description = "The server is shutting down", body = ApiError),
    )
)]
async fn end_session(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if id.is_empty() || id.len() > 1024 {
        return Err(ApiError::invalid(
            "id",
            "a session id is 1 to 1024 characters",
        ));
    }
    if admin.shell.end(id.clone()).await.map_err(shell_gone)? {
        tracing::info!(session = %id, by = %who.name, "session ended through the API");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no session {id:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_session_reads_as_the_api_documents() {
        let info = SessionInfo {
            id: "call-3".into(),
            kind: control::SessionKind::Mrcp,
            peer: "192.0.2.10:5062".parse().expect("addr"),
            call_id: "abc@host".into(),
            channels: vec!["1a@speechsynth".into()],
            playing: Some("source:hold".into()),
            since: UNIX_EPOCH + Duration::from_secs(1_764_000_000),
            seconds: 42,
            codec: Some("PCMA"),
            packets: 2100,
        };
        let json = serde_json::to_value(SessionEntry::from(info)).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "id": "call-3", "kind": "mrcp", "peer": "192.0.2.10:5062",
                "call_id": "abc@host", "channel": "1a@speechsynth",
                "playing": "source:hold", "since": "2025-11-24T16:00:00Z",
                "seconds": 42, "codec": "PCMA", "packets": 2100
            })
        );
        let plain = SessionInfo {
            id: "call-4".into(),
            kind: control::SessionKind::Sip,
            peer: "[2001:db8::1]:5060".parse().expect("addr"),
            call_id: "x".into(),
            channels: Vec::new(),
            playing: None,
            since: UNIX_EPOCH,
            seconds: 0,
            codec: None,
            packets: 0,
        };
        let json = serde_json::to_value(SessionEntry::from(plain)).expect("JSON");
        assert_eq!(json["kind"], "sip");
        assert_eq!(json["peer"], "[2001:db8::1]:5060");
        assert!(json["channel"].is_null() && json["playing"].is_null());
        assert!(json["codec"].is_null());
        assert_eq!(json["since"], "1970-01-01T00:00:00Z");
    }
}
