//! The configuration as the API shows and changes it: `GET /api/v1/config`,
//! `PUT /api/v1/config/{section}`, the audit log, web interface users and API tokens.
//!
//! Secrets never leave the server: the IMAP password, the per-user IMAP passwords, the
//! metrics token, password hashes and token hashes are replaced by `…_set` marks, and a
//! change that leaves a secret out keeps it.

use super::{Admin, ApiError, Saved, etag, if_match};
use crate::config::{ApiToken, WebAccount};
use crate::{Config, config_file};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use imss_web::auth::{self, Principal, RequireAdmin, Role};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        get_config,
        put_section,
        get_audit,
        list_users,
        add_user,
        change_user,
        delete_user,
        list_tokens,
        add_token,
        delete_token
    ),
    components(schemas(
        ConfigView,
        AuditLog,
        UserInfo,
        UserList,
        NewUser,
        UserChange,
        TokenInfo,
        TokenList,
        NewToken,
        CreatedToken
    ))
)]
pub(crate) struct Doc;

/// This module's routes.
pub(crate) fn routes(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/api/v1/config", get(get_config))
        .route("/api/v1/config/{section}", put(put_section))
        .route("/api/v1/audit", get(get_audit))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{user}", put(change_user).delete(delete_user))
        .route("/api/v1/tokens", get(list_tokens).post(add_token))
        .route("/api/v1/tokens/{name}", axum::routing::delete(delete_token))
        .with_state(admin)
}

/// The sections `PUT /api/v1/config/{section}` changes. `external_audio` has its own routes
/// (`/api/v1/sources`), accounts and tokens theirs (`/api/v1/users`, `/api/v1/tokens`).
const SECTIONS: [&str; 9] = [
    "general",
    "sip",
    "mrcp",
    "rtp",
    "http",
    "audio",
    "http_audio",
    "mail",
    "tts",
];

/// The configuration, secrets masked.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConfigView {
    /// The configuration file's version (also the `ETag`); `null` without a file.
    pub version: Option<String>,
    /// Every section, keyed as in the TOML file; secrets as `…_set: true|false`.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Sections saved in the file that differ from what runs and take effect after a
    /// restart.
    pub pending_restart: Vec<String>,
}

/// `config` as JSON without its secrets.
pub(crate) fn masked(config: &Config) -> Value {
    let mut value = serde_json::to_value(config).unwrap_or(Value::Null);
    if let Some(http) = value.get_mut("http").and_then(Value::as_object_mut) {
        http.remove("admins");
        http.remove("api_tokens");
        let set = http.remove("metrics_token").is_some_and(|v| !v.is_null());
        http.insert("metrics_token_set".into(), Value::Bool(set));
    }
    if let Some(mail) = value.get_mut("mail").and_then(Value::as_object_mut) {
        let set = mail.remove("imap_password").is_some_and(|v| !v.is_null());
        mail.insert("imap_password_set".into(), Value::Bool(set));
        let users: Vec<Value> = config
            .mail
            .imap_users
            .keys()
            .map(|u| Value::String(u.clone()))
            .collect();
        mail.remove("imap_users");
        mail.insert("imap_users_set".into(), Value::Array(users));
    }
    value
}

#[utoipa::path(
    get,
    path = "/api/v1/config",
    tag = "configuration",
    responses(
        (status = 200, description = "The configuration, secrets masked; `ETag` is its version", body = ConfigView),
        (status = 401, description = "Not logged in", body = ApiError)
    )
)]
async fn get_config(State(admin): State<Arc<Admin>>, _who: Principal) -> Response {
    let view = admin
        .blocking(|admin| {
            let (config, version) = match admin.file {
                Some(_) => {
                    let (c, v) = admin.current()?;
                    (c, Some(v))
                }
                None => ((*admin.shared.applied()).clone(), None),
            };
            let pending_restart = crate::restart_sections(&admin.shared.config, &config)
                .into_iter()
                .map(String::from)
                .collect();
            Ok(ConfigView {
                version,
                config: masked(&config),
                pending_restart,
            })
        })
        .await;
    match view {
        Ok(view) => {
            let mut response = Json(&view).into_response();
            if let Some(v) = &view.version {
                response.headers_mut().insert(header::ETAG, etag(v));
            }
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, "no-store".parse().expect("valid"));
            response
        }
        Err(e) => e.into_response(),
    }
}

/// RFC 7396 JSON merge patch: `patch`'s keys replace `target`'s, objects merge, `null`
/// removes.
fn merge(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let map = target.as_object_mut().expect("an object");
            for (k, v) in patch {
                if v.is_null() {
                    map.remove(&k);
                } else {
                    merge(map.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other,
    }
}

/// Parses a whole configuration from JSON, naming the key at fault
/// (`mail.imap_port: invalid type: …`).
pub(crate) fn config_from_json(value: Value) -> Result<Config, ApiError> {
    serde_path_to_error::deserialize::<_, Config>(value).map_err(|e| {
        let field = e.path().to_string();
        ApiError::invalid(field, e.into_inner().to_string())
    })
}

/// `body` applied to `section` of `config`, as `PUT /api/v1/config/{section}` does.
pub(crate) fn change_section(
    config: &mut Config,
    section: &str,
    body: Value,
) -> Result<(), ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::invalid(
            section,
            "the body must be a JSON object of the section's keys",
        ));
    };
    // What the view shows instead of secrets may come back unchanged: it changes nothing.
    for mark in ["imap_password_set", "metrics_token_set", "imap_users_set"] {
        body.remove(mark);
    }
    if section == "http" {
        for (key, route) in [
            ("admins", "/api/v1/users"),
            ("api_tokens", "/api/v1/tokens"),
        ] {
            if body.contains_key(key) {
                return Err(ApiError::invalid(
                    format!("http.{key}"),
                    format!("change these with {route}"),
                ));
            }
        }
    }
    let mut whole = serde_json::to_value(&*config).map_err(|e| ApiError::failed(e.to_string()))?;
    let slot = whole
        .as_object_mut()
        .expect("a configuration is an object")
        .entry(section.to_string())
        .or_insert(Value::Null);
    merge(slot, Value::Object(body));
    *config = config_from_json(whole)?;
    Ok(())
}

#[utoipa::path(
    put,
    path = "/api/v1/config/{section}",
    tag = "configuration",
    params(
        ("section" = String, Path, description = "general, sip, mrcp, rtp, http, audio, http_audio, mail or tts"),
        ("If-Match" = Option<String>, Header, description = "The version the change was made from")
    ),
    request_body(content = Object, description = "The section's keys to change (JSON merge patch: `null` removes an optional key; secrets left out stay)"),
    responses(
        (status = 200, description = "Saved; what applied at once and what needs a restart", body = Saved),
        (status = 400, description = "A value that cannot be used, naming the key", body = ApiError),
        (status = 403, description = "Not an admin, or no CSRF token", body = ApiError),
        (status = 404, description = "No such section", body = ApiError),
        (status = 409, description = "Changed by someone else since `If-Match`", body = ApiError)
    )
)]
async fn put_section(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    Path(section): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !SECTIONS.contains(&section.as_str()) {
        let hint = if section == "external_audio" {
            " (live sources: /api/v1/sources)"
        } else {
            ""
        };
        return ApiError::not_found(format!("no section {section:?}; one of {SECTIONS:?}{hint}"))
            .into_response();
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return ApiError::invalid("body", format!("not JSON: {e}")).into_response();
        }
    };
    let expected = if_match(&headers);
    let result = admin
        .blocking(move |admin| {
            admin.change(&who, expected.as_deref(), |config| {
                change_section(config, &section, body)
            })
        })
        .await;
    match result {
        Ok(saved) => saved.into_response_with_etag(),
        Err(e) => e.into_response(),
    }
}

/// The audit log, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditLog {
    /// `{"at", "who", "changes": [{"key", "old", "new"}]}` per change.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<Value>,
}

/// `?limit=`
#[derive(Deserialize, utoipa::IntoParams)]
struct Limit {
    /// Most entries (default 100, at most 10,000).
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "configuration",
    params(Limit),
    responses(
        (status = 200, description = "Configuration changes, newest first (secrets masked)", body = AuditLog),
        (status = 403, description = "Not an admin", body = ApiError)
    )
)]
async fn get_audit(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(_): RequireAdmin,
    Query(limit): Query<Limit>,
) -> Response {
    let limit = limit.limit.unwrap_or(100).clamp(1, 10_000);
    let result = admin
        .blocking(move |admin| {
            let path = config_file::audit_path(admin.file()?);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    return Err(ApiError::failed(format!(
                        "cannot read {}: {e}",
                        path.display()
                    )));
                }
            };
            let entries = text
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .take(limit)
                .collect();
            Ok(AuditLog { entries })
        })
        .await;
    match result {
        Ok(log) => Json(log).into_response(),
        Err(e) => e.into_response(),
    }
}

/// One web interface account.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    /// Login name.
    pub user: String,
    /// `admin` or `viewer`.
    pub role: String,
    /// Must change the password at the next login.
    pub must_change_password: bool,
}

/// The accounts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserList {
    /// By name.
    pub users: Vec<UserInfo>,
}

/// `POST /api/v1/users`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: 1 to 64 printable characters.
    pub user: String,
    /// Password: at least 10 characters.
    pub password: String,
    /// `admin` (default) or `viewer`.
    #[serde(default)]
    pub role: Option<String>,
    /// Ask for a new password at the first login (default true).
    #[serde(default)]
    pub must_change_password: Option<bool>,
}

/// `PUT /api/v1/users/{user}`: what to change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// A new password.
    #[serde(default)]
    pub password: Option<String>,
    /// `admin` or `viewer`.
    #[serde(default)]
    pub role: Option<String>,
    /// Ask for a new password at the next login.
    #[serde(default)]
    pub must_change_password: Option<bool>,
}

fn parse_role(role: Option<&str>, field: &str) -> Result<Option<Role>, ApiError> {
    match role {
        None => Ok(None),
        Some("admin") => Ok(Some(Role::Admin)),
        Some("viewer") => Ok(Some(Role::Viewer)),
        Some(other) => Err(ApiError::invalid(
            field,
            format!("{other:?}: the role is admin or viewer"),
        )),
    }
}

/// A JSON body of type `T`, or 400 naming the field at fault.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::invalid(field, e.into_inner().to_string())
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "administration",
    responses(
        (status = 200, description = "Web interface accounts (no password hashes)", body = UserList),
        (status = 403, description = "Not an admin", body = ApiError)
    )
)]
async fn list_users(State(admin): State<Arc<Admin>>, RequireAdmin(_): RequireAdmin) -> Response {
    let accounts = admin.web_auth.accounts();
    let mut users: Vec<UserInfo> = accounts
        .users()
        .map(|a| UserInfo {
            user: a.user.clone(),
            role: a.role.as_str().to_string(),
            must_change_password: a.must_change,
        })
        .collect();
    users.sort_by(|a, b| a.user.cmp(&b.user));
    Json(UserList { users }).into_response()
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "administration",
    request_body = NewUser,
    responses(
        (status = 201, description = "Added", body = Saved),
        (status = 400, description = "A weak password or a bad name, naming the field", body = ApiError),
        (status = 409, description = "A user of that name exists", body = ApiError)
    )
)]
async fn add_user(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let new: NewUser = json_body(&body)?;
        let role = parse_role(new.role.as_deref(), "role")?.unwrap_or(Role::Admin);
        let name = new.user.trim().to_string();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(ApiError::invalid("user", "1 to 64 printable characters"));
        }
        auth::check_new_password(&new.password).map_err(|m| ApiError::invalid("password", m))?;
        let must_change = new.must_change_password.unwrap_or(true);
        admin
            .blocking(move |admin| {
                let hash = auth::hash_password(&new.password).map_err(ApiError::failed)?;
                admin.change(&who, None, |config| {
                    if config.http.admins.iter().any(|a| a.user == name) {
                        return Err(exists("user", format!("a user named {name:?} exists")));
                    }
                    config.http.admins.push(WebAccount {
                        user: name.clone(),
                        password_hash: hash,
                        role,
                        must_change_password: must_change,
                    });
                    Ok(())
                })
            })
            .await
    }
    .await;
    created(result)
}

/// 409 `exists`, naming the field.
pub(crate) fn exists(field: &str, message: String) -> ApiError {
    ApiError {
        field: Some(field.to_string()),
        ..ApiError::new(StatusCode::CONFLICT, "exists", message)
    }
}

/// 201 with the saved body, or the error.
fn created(result: Result<Saved, ApiError>) -> Response {
    match result {
        Ok(saved) => {
            let mut r = saved.into_response_with_etag();
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    put,
    path = "/api/v1/users/{user}",
    tag = "administration",
    params(("user" = String, Path, description = "Login name")),
    request_body = UserChange,
    responses(
        (status = 200, description = "Changed", body = Saved),
        (status = 400, description = "A weak password or a bad role, naming the field", body = ApiError),
        (status = 404, description = "No such user", body = ApiError)
    )
)]
async fn change_user(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let change: UserChange = json_body(&body)?;
        let role = parse_role(change.role.as_deref(), "role")?;
        if let Some(p) = &change.password {
            auth::check_new_password(p).map_err(|m| ApiError::invalid("password", m))?;
        }
        admin
            .blocking(move |admin| {
                let hash = match &change.password {
                    Some(p) => Some(auth::hash_password(p).map_err(ApiError::failed)?),
                    None => None,
                };
                admin.change(&who, None, |config| {
                    let Some(account) = config.http.admins.iter_mut().find(|a| a.user == user)
                    else {
                        return Err(ApiError::not_found(format!("no user named {user:?}")));
                    };
                    if let Some(hash) = hash {
                        account.password_hash = hash;
                    }
                    if let Some(role) = role {
                        account.role = role;
                    }
                    if let Some(m) = change.must_change_password {
                        account.must_change_password = m;
                    }
                    if !config.http.admins.iter().any(|a| a.role == Role::Admin) {
                        return Err(ApiError::invalid(
                            "role",
                            "the last admin cannot become a viewer",
                        ));
                    }
                    Ok(())
                })
            })
            .await
    }
    .await;
    match result {
        Ok(saved) => saved.into_response_with_etag(),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{user}",
    tag = "administration",
    params(("user" = String, Path, description = "Login name")),
    responses(
        (status = 200, description = "Removed; the user's sessions end", body = Saved),
        (status = 400, description = "Yourself or the last admin", body = ApiError),
        (status = 404, description = "No such user", body = ApiError)
    )
)]
async fn delete_user(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    Path(user): Path<String>,
) -> Response {
    if who.name == user {
        return ApiError::invalid("user", "you cannot remove yourself").into_response();
    }
    let result = admin
        .blocking(move |admin| {
            admin.change(&who, None, |config| {
                let before = config.http.admins.len();
                config.http.admins.retain(|a| a.user != user);
                if config.http.admins.len() == before {
                    return Err(ApiError::not_found(format!("no user named {user:?}")));
                }
                if !config.http.admins.iter().any(|a| a.role == Role::Admin) {
                    return Err(ApiError::invalid(
                        "user",
                        "the last admin cannot be removed",
                    ));
                }
                Ok(())
            })
        })
        .await;
    match result {
        Ok(saved) => saved.into_response_with_etag(),
        Err(e) => e.into_response(),
    }
}

/// One API token (its value is never shown again).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Name.
    pub name: String,
    /// `admin` or `viewer`.
    pub role: String,
    /// When it was made (RFC 3339).
    pub created: String,
}

/// The tokens.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenList {
    /// In the order they were made.
    pub tokens: Vec<TokenInfo>,
}

/// `POST /api/v1/tokens`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Name to tell it apart: 1 to 64 characters of letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// `admin` (default) or `viewer`.
    #[serde(default)]
    pub role: Option<String>,
}

/// A new token: shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The token: `Authorization: Bearer <token>`.
    pub token: String,
    /// The configuration file's new version.
    pub version: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "administration",
    responses(
        (status = 200, description = "API tokens (names only)", body = TokenList),
        (status = 403, description = "Not an admin", body = ApiError)
    )
)]
async fn list_tokens(State(admin): State<Arc<Admin>>, RequireAdmin(_): RequireAdmin) -> Response {
    let result = admin
        .blocking(|admin| {
            let config = match admin.file {
                Some(_) => admin.current()?.0,
                None => (*admin.shared.applied()).clone(),
            };
            Ok(TokenList {
                tokens: config
                    .http
                    .api_tokens
                    .iter()
                    .map(|t| TokenInfo {
                        name: t.name.clone(),
                        role: t.role.as_str().to_string(),
                        created: t.created.clone(),
                    })
                    .collect(),
            })
        })
        .await;
    match result {
        Ok(list) => Json(list).into_response(),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "administration",
    request_body = NewToken,
    responses(
        (status = 201, description = "The new token, shown once", body = CreatedToken),
        (status = 400, description = "A bad name or role", body = ApiError),
        (status = 409, description = "A token of that name exists", body = ApiError)
    )
)]
async fn add_token(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let new: NewToken = json_body(&body)?;
        let role = parse_role(new.role.as_deref(), "role")?.unwrap_or(Role::Admin);
        let name = new.name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ApiError::invalid(
                "name",
                "1 to 64 characters: letters, digits, '-', '_' and '.'",
            ));
        }
        let token = auth::new_api_token();
        let entry = ApiToken {
            name: name.clone(),
            hash: auth::token_sha256_hex(&token),
            role,
            created: config_file::now_rfc3339(),
        };
        let saved = admin
            .blocking(move |admin| {
                admin.change(&who, None, |config| {
                    if config.http.api_tokens.iter().any(|t| t.name == entry.name) {
                        return Err(exists(
                            "name",
                            format!("a token named {:?} exists", entry.name),
                        ));
                    }
                    config.http.api_tokens.push(entry);
                    Ok(())
                })
            })
            .await?;
        Ok(CreatedToken {
            name,
            role: role.as_str().to_string(),
            token,
            version: saved.version,
        })
    }
    .await;
    match result {
        Ok(created) => {
            let mut r = (StatusCode::CREATED, Json(&created)).into_response();
            r.headers_mut().insert(header::ETAG, etag(&created.version));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, "no-store".parse().expect("valid"));
            r
        }
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{name}",
    tag = "administration",
    params(("name" = String, Path, description = "The token's name")),
    responses(
        (status = 200, description = "Revoked at once", body = Saved),
        (status = 404, description = "No such token", body = ApiError)
    )
)]
async fn delete_token(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    Path(name): Path<String>,
) -> Response {
    let result = admin
        .blocking(move |admin| {
            admin.change(&who, None, |config| {
                let before = config.http.api_tokens.len();
                config.http.api_tokens.retain(|t| t.name != name);
                if config.http.api_tokens.len() == before {
                    return Err(ApiError::not_found(format!("no token named {name:?}")));
                }
                Ok(())
            })
        })
        .await;
    match result {
        Ok(saved) => saved.into_response_with_etag(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_secret() {
        let mut c = Config::default();
        c.mail.imap_password = Some("s3cret-imap".into());
        c.mail.imap_users.insert("alice".into(), "alice-pw".into());
        c.http.metrics = crate::config::MetricsAccess::Token;
        c.http.metrics_token = Some("metrics-token-0123456789".into());
        c.http.api_tokens.push(ApiToken {
            name: "ci".into(),
            hash: "ab".repeat(32),
            role: Role::Admin,
            created: "2026-01-01T00:00:00Z".into(),
        });
        let text = masked(&c).to_string();
        for secret in [
            "s3cret-imap",
            "alice-pw",
            "metrics-token-0123456789",
            &"ab".repeat(32),
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let v = masked(&c);
        assert_eq!(v["mail"]["imap_password_set"], true);
        assert_eq!(v["mail"]["imap_users_set"], serde_json::json!(["alice"]));
        assert_eq!(v["http"]["metrics_token_set"], true);
    }

    #[test]
    fn a_section_change_merges_keeps_secrets_and_names_the_field() {
        let mut c = Config::default();
        c.mail.imap_password = Some("kept".into());
        change_section(
            &mut c,
            "mail",
            serde_json::json!({"imap_host": "mail.example", "imap_password_set": true}),
        )
        .unwrap();
        assert_eq!(c.mail.imap_host.as_deref(), Some("mail.example"));
        assert_eq!(c.mail.imap_password.as_deref(), Some("kept"));
        change_section(&mut c, "mail", serde_json::json!({"imap_host": null})).unwrap();
        assert_eq!(c.mail.imap_host, None);
        let e = change_section(&mut c, "mail", serde_json::json!({"imap_port": "x"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("mail.imap_port"), "{e:?}");
        let e = change_section(&mut c, "mail", serde_json::json!({"no_such_key": 1})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("mail.no_such_key"), "{e:?}");
        let e = change_section(&mut c, "http", serde_json::json!({"admins": []})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("http.admins"));
        let e = change_section(
            &mut c,
            "sip",
            serde_json::json!({"trusted_networks": ["10.0.0.0/33"]}),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("sip.trusted_networks[0]"), "{e:?}");
    }
}
