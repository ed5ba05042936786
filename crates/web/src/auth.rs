//! Access control for the web interface and the JSON API.
//!
//! People log in with a user name and password (argon2id hashes from the configuration) and
//! get a session cookie; scripts send `Authorization: Bearer imss_…` tokens, of which only a
//! SHA-256 is configured. Every path but `/healthz`, `/login` and the paths opened with
//! [`Auth::open_path`] needs one or the other ([`protect`]); routes for admins only are
//! wrapped with [`restrict`]. Requests that change state and come with a session cookie must
//! also carry the session's CSRF token in `X-CSRF-Token`.
//!
//! Sessions, the CSRF tokens and the login rate limit live in memory; the accounts are a
//! snapshot ([`Accounts`]) that configuration reloads and password changes replace at once.
//! Password changes made through the API are persisted by the server's [`AccountStore`].
//! Hashes and passwords never leave this module: not in responses, not in logs.
//!
//! The core ([`Auth::login`], [`Auth::authenticate`], [`Auth::change_password`]) takes the
//! time as an argument, so expiry and rate limits are tested without sleeping.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "imss_session";
/// Header that carries the session's CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Prefix of every API token.
pub const TOKEN_PREFIX: &str = "imss_";
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Failed logins from one client address within [`LOGIN_WINDOW`] before it must wait.
pub const LOGIN_FAILURES_ALLOWED: usize = 5;
/// Window of the login rate limit.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Name of the account made at first start when no admin is configured.
pub const ONE_TIME_ADMIN: &str = "admin";

/// Sessions kept at most; the oldest goes first beyond this.
const MAX_SESSIONS: usize = 10_000;
/// Client addresses tracked by the login rate limit at most.
const MAX_TRACKED_CLIENTS: usize = 10_000;
/// Password checks running at once: argon2 is slow on purpose, and a burst of logins must
/// not take every core.
const CONCURRENT_VERIFICATIONS: usize = 2;
/// Paths open without credentials.
const PUBLIC_PATHS: [&str; 2] = ["/healthz", "/login"];
/// Pages of the web interface: without a session they redirect to the login form instead
/// of answering 401.
/// The pages of the web interface ([`crate::pages`]); without a session they redirect to
/// `/login`.
pub const PAGE_PATHS: [&str; 9] = [
    "/",
    "/sessions",
    "/general",
    "/audio",
    "/mail",
    "/sources",
    "/tts",
    "/files",
    "/admin",
];
/// Paths a session that must change its password may still use.
const MUST_CHANGE_PATHS: [&str; 3] = ["/api/v1/password", "/api/v1/session", "/logout"];

/// What a principal may do. Admins may do everything viewers may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Looks at status and settings.
    Viewer,
    /// Changes settings and accounts.
    #[default]
    Admin,
}

impl Role {
    /// `admin` or `viewer`, as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("{other:?} is not a role: admin or viewer")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One person who may log in.
#[derive(Clone, PartialEq)]
pub struct Account {
    /// Login name.
    pub user: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// What the person may do.
    pub role: Role,
    /// The person must set a new password before anything else.
    pub must_change: bool,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .field("role", &self.role)
            .field("must_change", &self.must_change)
            .finish_non_exhaustive()
    }
}

/// One API token, known by its SHA-256 only.
#[derive(Clone, PartialEq)]
pub struct Token {
    /// Name the token was made with.
    pub name: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// What the token may do.
    pub role: Role,
    /// When it was made (RFC 3339), for the accounts page.
    pub created: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Who may log in and which tokens are valid: one snapshot, replaced as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accounts {
    users: BTreeMap<String, Account>,
    tokens: Vec<Token>,
}

impl Accounts {
    /// Accounts and tokens; a later account with the same name replaces an earlier one.
    pub fn new(users: impl IntoIterator<Item = Account>, tokens: Vec<Token>) -> Accounts {
        Accounts {
            users: users.into_iter().map(|a| (a.user.clone(), a)).collect(),
            tokens,
        }
    }

    /// The account named `user`.
    pub fn user(&self, user: &str) -> Option<&Account> {
        self.users.get(user)
    }

    /// Every account, by name.
    pub fn users(&self) -> impl Iterator<Item = &Account> {
        self.users.values()
    }

    fn has_admin(&self) -> bool {
        self.users.values().any(|a| a.role == Role::Admin)
    }

    /// The token whose SHA-256 is `sha256`; every token is compared, in constant time.
    fn token(&self, sha256: &[u8; 32]) -> Option<&Token> {
        let mut found = None;
        for t in &self.tokens {
            if ct_eq(&t.sha256, sha256) && found.is_none() {
                found = Some(t);
            }
        }
        found
    }
}

/// Settings of sessions, from `[http]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuthSettings {
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Mark the cookie `Secure`: the web interface is reached over TLS.
    pub secure_cookie: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_ttl: Duration::from_secs(8 * 3600),
            secure_cookie: false,
        }
    }
}

/// Where password changes made through the API are kept (the server's configuration file).
pub trait AccountStore: Send + Sync {
    /// Makes `password_hash` the password of `user` and clears its must-change mark; adds
    /// the user with `role` when it is not stored yet.
    fn set_password(&self, user: &str, role: Role, password_hash: &str) -> Result<(), String>;
}

/// An argon2id PHC string of `password` (default parameters, a random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `phc`; false when `phc` does not parse.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// Why a new password is refused, if it is.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password has {chars} characters; at least {MIN_PASSWORD_CHARS} are needed"
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("the password contains control characters".into());
    }
    Ok(())
}

/// A new API token: `imss_` and 32 random bytes from the OS, base64url without padding.
pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_b64(32))
}

/// SHA-256 of a token.
pub fn token_sha256(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// SHA-256 of a token as 64 lowercase hex digits, as written in the configuration.
pub fn token_sha256_hex(token: &str) -> String {
    token_sha256(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 64 hex digits back into 32 bytes.
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// `n` random bytes from the OS, base64url without padding.
fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Equality whose time depends on the lengths only.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Identifies the password a session was opened with, so that a password change from
/// anywhere (API, command line and reload) ends the sessions opened with the old one.
fn stamp(phc: &str) -> [u8; 32] {
    sha2::Sha256::digest(phc.as_bytes()).into()
}

/// Who made a request, once authenticated.
#[derive(Clone, PartialEq)]
pub struct Principal {
    /// User name, or the token's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// A session that must change its password first.
    pub must_change: bool,
    /// How it authenticated.
    pub via: Via,
}

/// How a principal authenticated.
#[derive(Clone, PartialEq)]
pub enum Via {
    /// A session cookie.
    Session {
        /// The session id (the cookie's value).
        id: String,
        /// The session's CSRF token.
        csrf: String,
    },
    /// A bearer token.
    Token,
}

impl std::fmt::Debug for Via {
    /// The session id and CSRF token are secrets: not shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Session { .. } => "Session",
            Via::Token => "Token",
        })
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let via = match self.via {
            Via::Session { .. } => "session",
            Via::Token => "token",
        };
        f.debug_struct("Principal")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("must_change", &self.must_change)
            .field("via", &via)
            .finish()
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Denied {
    /// No session cookie or bearer token (or an expired session): 401.
    NoCredentials,
    /// A bearer token that is not configured: 401.
    BadToken,
    /// A state-changing request with a session cookie but without its CSRF token: 403.
    Csrf,
    /// The session must change its password first: 403.
    MustChange,
    /// The principal's role is below the route's: 403.
    Role(Role),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Denied::NoCredentials => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "login required".to_string(),
            ),
            Denied::BadToken => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "invalid API token".to_string(),
            ),
            Denied::Csrf => (
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token header (GET /api/v1/session tells it)".to_string(),
            ),
            Denied::MustChange => (
                StatusCode::FORBIDDEN,
                "must_change_password",
                "password change required: POST /api/v1/password first".to_string(),
            ),
            Denied::Role(role) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("needs the {role} role"),
            ),
        };
        let mut response = (
            status,
            Json(serde_json::json!({ "error": code, "message": message })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"imss\""),
            );
        }
        response
    }
}

/// A JSON error body `{"error": code, "message": …}` with `status`, in the API's one error
/// shape (the code follows from the status).
fn error(status: StatusCode, message: &str) -> Response {
    let code = match status.as_u16() {
        400 => "invalid",
        401 => "unauthenticated",
        403 => "forbidden",
        429 => "too_many_requests",
        503 => "unavailable",
        _ => "failed",
    };
    (
        status,
        Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}

/// Why a login fails.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginError {
    /// Unknown user or wrong password (not told apart): 401.
    BadCredentials,
    /// Too many failures from this client: 429, try again after this long.
    TooMany(Duration),
    /// The password could not be checked: 500.
    Internal(String),
}

/// Why a password change fails.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeError {
    /// Bearer tokens have no password: 400.
    NotASession,
    /// The new password is not acceptable: 400.
    Weak(String),
    /// The old password is wrong: 403.
    WrongPassword,
    /// Too many wrong passwords from this client: 429.
    TooMany(Duration),
    /// The account is gone (removed by a reload): 401.
    NoAccount,
    /// The new password could not be hashed or stored: 500.
    Internal(String),
}

struct Session {
    user: String,
    csrf: String,
    created: Instant,
    expires: Instant,
    stamp: [u8; 32],
}

/// Failed logins per client within a sliding window.
#[derive(Debug)]
pub struct LoginLimiter {
    failures: HashMap<IpAddr, VecDeque<Instant>>,
    allowed: usize,
    window: Duration,
}

impl LoginLimiter {
    /// `allowed` failures per `window` and client.
    pub fn new(allowed: usize, window: Duration) -> LoginLimiter {
        LoginLimiter {
            failures: HashMap::new(),
            allowed,
            window,
        }
    }

    /// IPv6 clients are counted per /64: one host usually has the whole prefix.
    fn client(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            v4 => v4,
        }
    }

    /// `Err(wait)` while `ip` has used up its failures.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let window = self.window;
        let Some(times) = self.failures.get_mut(&Self::client(ip)) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.len() < self.allowed {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        Err(window.saturating_sub(now.saturating_duration_since(oldest)))
    }

    /// Counts a failure of `ip`.
    pub fn fail(&mut self, ip: IpAddr, now: Instant) {
        if self.failures.len() >= MAX_TRACKED_CLIENTS {
            let window = self.window;
            self.failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
        let times = self.failures.entry(Self::client(ip)).or_default();
        times.push_back(now);
        while times.len() > self.allowed {
            times.pop_front();
        }
    }
}

/// What [`Auth::login`] gives: the session's principal and its `Set-Cookie` value.
#[derive(Debug)]
pub struct LoggedIn {
    /// Who logged in.
    pub principal: Principal,
    /// Value of the `Set-Cookie` header.
    pub set_cookie: String,
}

/// The access-control state of one server.
pub struct Auth {
    accounts: RwLock<Arc<Accounts>>,
    settings: RwLock<AuthSettings>,
    /// The account made at first start, kept in memory while no admin is configured.
    one_time_admin: Mutex<Option<Account>>,
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<LoginLimiter>,
    store: Option<Arc<dyn AccountStore>>,
    open_paths: RwLock<Vec<String>>,
    /// Checked against when the user is unknown, so that the answer takes as long.
    dummy_hash: String,
    verifications: tokio::sync::Semaphore,
}

impl Auth {
    /// The state for `accounts`. With no admin among them, makes the one-time admin
    /// [`ONE_TIME_ADMIN`] with a random password, which is logged once at WARN level, kept
    /// in memory only (hashed) and must be changed at the first login.
    pub fn new(
        accounts: Accounts,
        settings: AuthSettings,
        store: Option<Arc<dyn AccountStore>>,
    ) -> Result<Auth, String> {
        let (auth, password) = Self::new_quiet(accounts, settings, store)?;
        if let Some(password) = password {
            // `secret`: the line stays out of the dashboard's list of recent warnings.
            tracing::warn!(
                user = ONE_TIME_ADMIN,
                secret = true,
                "no admin is configured: log in to the web interface as user \"{ONE_TIME_ADMIN}\" \
                 with the one-time password {password} and set a new one (it is shown only now \
                 and is not written anywhere; `imss admin set-password` sets one instead)"
            );
        }
        Ok(auth)
    }

    /// [`Auth::new`] without the log line: the one-time password, if one was made, is
    /// returned.
    pub fn new_quiet(
        accounts: Accounts,
        settings: AuthSettings,
        store: Option<Arc<dyn AccountStore>>,
    ) -> Result<(Auth, Option<String>), String> {
        let mut accounts = accounts;
        let mut one_time = None;
        let mut password = None;
        if !accounts.has_admin() {
            if accounts.users.contains_key(ONE_TIME_ADMIN) {
                tracing::warn!(
                    "no account has the admin role and the name \"{ONE_TIME_ADMIN}\" is taken: \
                     use `imss admin set-password USER --role admin`"
                );
            } else {
                let secret = random_b64(15);
                let account = Account {
                    user: ONE_TIME_ADMIN.into(),
                    password_hash: hash_password(&secret)?,
                    role: Role::Admin,
                    must_change: true,
                };
                accounts.users.insert(account.user.clone(), account.clone());
                one_time = Some(account);
                password = Some(secret);
            }
        }
        let auth = Auth {
            accounts: RwLock::new(Arc::new(accounts)),
            settings: RwLock::new(settings),
            one_time_admin: Mutex::new(one_time),
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(LoginLimiter::new(LOGIN_FAILURES_ALLOWED, LOGIN_WINDOW)),
            store,
            open_paths: RwLock::new(Vec::new()),
            dummy_hash: hash_password("imss dummy password")?,
            verifications: tokio::sync::Semaphore::new(CONCURRENT_VERIFICATIONS),
        };
        Ok((auth, password))
    }

    /// Applies a reloaded configuration's accounts, tokens and settings at once. Sessions of
    /// removed users, or of users whose password changed, end; role changes apply to
    /// running sessions. The one-time admin stays while the configuration has no admin.
    /// Returns whether anything differs from what was in force.
    pub fn replace(&self, accounts: Accounts, settings: AuthSettings) -> bool {
        let mut accounts = accounts;
        {
            let mut one_time = lock(&self.one_time_admin);
            if accounts.has_admin() {
                *one_time = None;
            } else if let Some(admin) = one_time.as_ref()
                && !accounts.users.contains_key(&admin.user)
            {
                accounts.users.insert(admin.user.clone(), admin.clone());
            }
        }
        let changed = **read(&self.accounts) != accounts || *read(&self.settings) != settings;
        *write(&self.accounts) = Arc::new(accounts);
        *write(&self.settings) = settings;
        changed
    }

    /// The accounts in force now.
    pub fn accounts(&self) -> Arc<Accounts> {
        Arc::clone(&read(&self.accounts))
    }

    /// Lets requests for `path` through without credentials (e.g. `/metrics` when the
    /// configuration opens it).
    pub fn open_path(&self, path: &str) {
        let mut open = write(&self.open_paths);
        if !open.iter().any(|p| p == path) {
            open.push(path.to_string());
        }
    }

    /// Whether `path` needs no credentials.
    pub fn is_public(&self, path: &str) -> bool {
        PUBLIC_PATHS.contains(&path) || read(&self.open_paths).iter().any(|p| p == path)
    }

    /// Checks `user` and `password` for a request from `ip` and opens a session. Slow on
    /// purpose (argon2): call it off the async threads.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
        now: Instant,
    ) -> Result<LoggedIn, LoginError> {
        lock(&self.limiter)
            .check(ip, now)
            .map_err(LoginError::TooMany)?;
        let accounts = self.accounts();
        let account = accounts.user(user);
        let phc = account.map_or(self.dummy_hash.as_str(), |a| a.password_hash.as_str());
        let matches = verify_password(password, phc);
        let Some(account) = account.filter(|_| matches) else {
            lock(&self.limiter).fail(ip, now);
            return Err(LoginError::BadCredentials);
        };
        let settings = *read(&self.settings);
        let id = random_b64(32);
        let csrf = random_b64(32);
        {
            let mut sessions = lock(&self.sessions);
            if sessions.len() >= MAX_SESSIONS {
                sessions.retain(|_, s| s.expires > now);
            }
            if sessions.len() >= MAX_SESSIONS
                && let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.created)
                    .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
            sessions.insert(
                id.clone(),
                Session {
                    user: account.user.clone(),
                    csrf: csrf.clone(),
                    created: now,
                    expires: now + settings.session_ttl,
                    stamp: stamp(&account.password_hash),
                },
            );
        }
        Ok(LoggedIn {
            set_cookie: session_cookie(&id, settings),
            principal: Principal {
                name: account.user.clone(),
                role: account.role,
                must_change: account.must_change,
                via: Via::Session { id, csrf },
            },
        })
    }

    /// Ends the session `id`.
    pub fn logout(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    /// The principal behind a request's `Authorization` header or session cookie, with the
    /// CSRF and must-change rules applied for `method` and `path`.
    pub fn authenticate(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        now: Instant,
    ) -> Result<Principal, Denied> {
        let principal = if let Some(token) = bearer_token(headers) {
            let accounts = self.accounts();
            let token = accounts
                .token(&token_sha256(token))
                .ok_or(Denied::BadToken)?;
            Principal {
                name: token.name.clone(),
                role: token.role,
                must_change: false,
                via: Via::Token,
            }
        } else if let Some(id) = cookie(headers, SESSION_COOKIE) {
            let principal = self.session(id, now).ok_or(Denied::NoCredentials)?;
            if changes_state(method) {
                let Via::Session { csrf, .. } = &principal.via else {
                    return Err(Denied::Csrf);
                };
                let sent = headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !ct_eq(sent.as_bytes(), csrf.as_bytes()) {
                    return Err(Denied::Csrf);
                }
            }
            principal
        } else {
            return Err(Denied::NoCredentials);
        };
        if principal.must_change && !MUST_CHANGE_PATHS.contains(&path) {
            return Err(Denied::MustChange);
        }
        Ok(principal)
    }

    /// The live session `id`, with its account's current role.
    fn session(&self, id: &str, now: Instant) -> Option<Principal> {
        let accounts = self.accounts();
        let mut sessions = lock(&self.sessions);
        let session = sessions.get(id)?;
        let account = accounts.user(&session.user);
        let valid = session.expires > now
            && account.is_some_and(|a| stamp(&a.password_hash) == session.stamp);
        let (Some(account), true) = (account, valid) else {
            sessions.remove(id);
            return None;
        };
        Some(Principal {
            name: account.user.clone(),
            role: account.role,
            must_change: account.must_change,
            via: Via::Session {
                id: id.to_string(),
                csrf: session.csrf.clone(),
            },
        })
    }

    /// Changes the password of the session `principal` from `old` to `new`, persists it
    /// through the [`AccountStore`] and ends the user's other sessions. Returns whether it
    /// was persisted (false when the server runs without a configuration file). Slow on
    /// purpose (argon2): call it off the async threads.
    pub fn change_password(
        &self,
        principal: &Principal,
        old: &str,
        new: &str,
        ip: IpAddr,
        now: Instant,
    ) -> Result<bool, ChangeError> {
        let Via::Session { id, .. } = &principal.via else {
            return Err(ChangeError::NotASession);
        };
        lock(&self.limiter)
            .check(ip, now)
            .map_err(ChangeError::TooMany)?;
        let account = self
            .accounts()
            .user(&principal.name)
            .cloned()
            .ok_or(ChangeError::NoAccount)?;
        if !verify_password(old, &account.password_hash) {
            lock(&self.limiter).fail(ip, now);
            return Err(ChangeError::WrongPassword);
        }
        check_new_password(new).map_err(ChangeError::Weak)?;
        if new == old {
            return Err(ChangeError::Weak(
                "the new password must differ from the old one".into(),
            ));
        }
        let hash = hash_password(new).map_err(ChangeError::Internal)?;
        let persisted = match &self.store {
            Some(store) => {
                store
                    .set_password(&account.user, account.role, &hash)
                    .map_err(ChangeError::Internal)?;
                true
            }
            None => false,
        };
        let changed = Account {
            password_hash: hash,
            must_change: false,
            ..account
        };
        {
            let mut one_time = lock(&self.one_time_admin);
            if one_time.as_ref().is_some_and(|a| a.user == changed.user) {
                // Once in the file the account is an ordinary configured one.
                *one_time = (!persisted).then(|| changed.clone());
            }
            let mut accounts = write(&self.accounts);
            let mut next = Accounts::clone(&accounts);
            next.users.insert(changed.user.clone(), changed.clone());
            *accounts = Arc::new(next);
        }
        let new_stamp = stamp(&changed.password_hash);
        let mut sessions = lock(&self.sessions);
        sessions.retain(|sid, s| s.user != changed.user || sid == id);
        if let Some(s) = sessions.get_mut(id) {
            s.stamp = new_stamp;
        }
        Ok(persisted)
    }
}

/// The `Set-Cookie` value of session `id`.
fn session_cookie(id: &str, settings: AuthSettings) -> String {
    format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        settings.session_ttl.as_secs(),
        if settings.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
fn expired_cookie(settings: AuthSettings) -> String {
    format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if settings.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    )
}

fn changes_state(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method)
}

/// The token of an `Authorization: Bearer …` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The value of cookie `name` in the `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `router` with this module's [`routes`], every path but the public ones needing a session
/// or a bearer token ([`protect`]). Routes merged into the result afterwards are not covered:
/// build the whole router first.
pub fn secure(router: Router, auth: Arc<Auth>) -> Router {
    protect(router.merge(routes(Arc::clone(&auth))), auth)
}

/// Makes every path of `router` but the public ones need a session or a bearer token; the
/// [`Principal`] is then in the request's extensions. Add it last, over all routes.
pub fn protect(router: Router, auth: Arc<Auth>) -> Router {
    router.layer(middleware::from_fn_with_state(auth, gate))
}

/// Restricts the routes of `router` to principals with at least `role` (403 below it).
/// Routes under [`protect`] only.
pub fn restrict<S: Clone + Send + Sync + 'static>(router: Router<S>, role: Role) -> Router<S> {
    router.route_layer(middleware::from_fn_with_state(role, require_role))
}

/// Middleware: 401 without a [`Principal`], 403 when its role is below `role`.
pub async fn require_role(State(role): State<Role>, request: Request, next: Next) -> Response {
    match request.extensions().get::<Principal>() {
        None => Denied::NoCredentials.into_response(),
        Some(p) if p.role < role => Denied::Role(role).into_response(),
        Some(_) => next.run(request).await,
    }
}

async fn gate(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    if auth.is_public(request.uri().path()) {
        return next.run(request).await;
    }
    match auth.authenticate(
        request.method(),
        request.uri().path(),
        request.headers(),
        Instant::now(),
    ) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(Denied::NoCredentials | Denied::MustChange)
            if PAGE_PATHS.contains(&request.uri().path())
                && matches!(*request.method(), Method::GET | Method::HEAD) =>
        {
            // People open pages in a browser: send them to the login form, which also
            // asks for the new password of a session that must change it.
            (StatusCode::FOUND, [(header::LOCATION, "/login")]).into_response()
        }
        Err(denied) => denied.into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Denied;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Principal, Denied> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(Denied::NoCredentials)
    }
}

/// Extractor for routes of admins only: 401 without credentials, 403 for viewers.
#[derive(Debug, Clone)]
pub struct RequireAdmin(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for RequireAdmin {
    type Rejection = Denied;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<RequireAdmin, Denied> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if principal.role < Role::Admin {
            return Err(Denied::Role(Role::Admin));
        }
        Ok(RequireAdmin(principal))
    }
}

/// The client's address (unspecified when the listener does not record it).
pub(crate) struct ClientIp(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip()),
        ))
    }
}

/// The routes of this module: `POST /login`, `POST /logout`, `GET /api/v1/session`,
/// `POST /api/v1/password`, and for admins `GET /api/v1/accounts`.
pub fn routes(auth: Arc<Auth>) -> Router {
    let admin = restrict(
        Router::new().route("/api/v1/accounts", get(list_accounts)),
        Role::Admin,
    );
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/v1/session", get(session))
        .route("/api/v1/password", post(change_password))
        .merge(admin)
        .with_state(auth)
}

/// `user`/`password` of a login, from a JSON or an HTML form body.
#[derive(Deserialize)]
struct LoginBody {
    user: String,
    password: String,
}

#[derive(Deserialize)]
struct PasswordBody {
    #[serde(alias = "old")]
    old_password: String,
    #[serde(alias = "new")]
    new_password: String,
}

/// Parses a JSON body, or an `application/x-www-form-urlencoded` one.
fn parse_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Option<T> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let map: serde_json::Map<String, serde_json::Value> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
            .collect();
        serde_json::from_value(serde_json::Value::Object(map)).ok()
    } else {
        serde_json::from_slice(body).ok()
    }
}

fn principal_json(p: &Principal) -> serde_json::Value {
    let (via, csrf) = match &p.via {
        Via::Session { csrf, .. } => ("session", Some(csrf.as_str())),
        Via::Token => ("token", None),
    };
    serde_json::json!({
        "user": p.name,
        "role": p.role,
        "must_change_password": p.must_change,
        "via": via,
        "csrf_token": csrf,
    })
}

fn too_many(wait: Duration) -> Response {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed attempts from this address; try again later",
    );
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

#[utoipa::path(post, path = "/login", tag = "session",
    request_body(content = Object, description = "`{\"user\", \"password\"}` as JSON or a form"),
    responses(
        (status = 200, description = "Logged in: the session cookie is set; `{user, role, must_change_password, via, csrf_token}`"),
        (status = 401, description = "Wrong user name or password"),
        (status = 429, description = "Too many failed attempts from this address (`Retry-After`)")
    ))]
pub(crate) async fn login(
    State(auth): State<Arc<Auth>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(body) = parse_body::<LoginBody>(&headers, &body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected user and password (JSON or form)",
        );
    };
    let Ok(_permit) = auth.verifications.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let checker = Arc::clone(&auth);
    let result = tokio::task::spawn_blocking(move || {
        checker.login(&body.user, &body.password, ip, Instant::now())
    })
    .await
    .unwrap_or_else(|e| Err(LoginError::Internal(e.to_string())));
    match result {
        Ok(LoggedIn {
            principal,
            set_cookie,
        }) => {
            tracing::info!(user = %principal.name, peer = %ip, "web interface login");
            let mut response = (
                [(header::CACHE_CONTROL, "no-store")],
                Json(principal_json(&principal)),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&set_cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Err(LoginError::BadCredentials) => {
            tracing::warn!(peer = %ip, "web interface login failed");
            error(StatusCode::UNAUTHORIZED, "wrong user name or password")
        }
        Err(LoginError::TooMany(wait)) => {
            tracing::warn!(peer = %ip, "web interface login refused: too many failures");
            too_many(wait)
        }
        Err(LoginError::Internal(e)) => {
            tracing::error!(error = %e, "web interface login could not be checked");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "login could not be checked",
            )
        }
    }
}

#[utoipa::path(post, path = "/logout", tag = "session",
    responses((status = 204, description = "Logged out; the cookie is cleared")))]
pub(crate) async fn logout(State(auth): State<Arc<Auth>>, principal: Principal) -> Response {
    let settings = *read(&auth.settings);
    if let Via::Session { id, .. } = &principal.via {
        auth.logout(id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&expired_cookie(settings)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// Who is logged in, with the CSRF token: never cached.
#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses(
        (status = 200, description = "Who is logged in and the CSRF token for changes: `{user, role, must_change_password, via, csrf_token}`"),
        (status = 401, description = "Not logged in")
    ))]
pub(crate) async fn session(principal: Principal) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(principal_json(&principal)),
    )
        .into_response()
}

#[utoipa::path(post, path = "/api/v1/password", tag = "session",
    request_body(content = Object, description = "`{\"old_password\", \"new_password\"}`"),
    responses(
        (status = 200, description = "Changed; other sessions of the user end"),
        (status = 400, description = "A weak new password, or a token (tokens have no password)"),
        (status = 403, description = "The old password is wrong, or no CSRF token")
    ))]
pub(crate) async fn change_password(
    State(auth): State<Arc<Auth>>,
    ClientIp(ip): ClientIp,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(body) = parse_body::<PasswordBody>(&headers, &body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected old_password and new_password (JSON or form)",
        );
    };
    let Ok(_permit) = auth.verifications.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let changer = Arc::clone(&auth);
    let who = principal.clone();
    let result = tokio::task::spawn_blocking(move || {
        changer.change_password(
            &who,
            &body.old_password,
            &body.new_password,
            ip,
            Instant::now(),
        )
    })
    .await
    .unwrap_or_else(|e| Err(ChangeError::Internal(e.to_string())));
    match result {
        Ok(persisted) => {
            if persisted {
                tracing::info!(user = %principal.name, peer = %ip, "web interface password changed");
            } else {
                tracing::warn!(
                    user = %principal.name,
                    "web interface password changed in memory only: the server runs without a \
                     configuration file, so it is lost at restart"
                );
            }
            Json(serde_json::json!({ "changed": true, "persisted": persisted })).into_response()
        }
        Err(ChangeError::NotASession) => error(
            StatusCode::BAD_REQUEST,
            "API tokens have no password; log in to change one",
        ),
        Err(ChangeError::Weak(why)) => error(StatusCode::BAD_REQUEST, &why),
        Err(ChangeError::WrongPassword) => {
            tracing::warn!(user = %principal.name, peer = %ip, "password change: wrong old password");
            error(StatusCode::FORBIDDEN, "the old password is wrong")
        }
        Err(ChangeError::TooMany(wait)) => too_many(wait),
        Err(ChangeError::NoAccount) => Denied::NoCredentials.into_response(),
        Err(ChangeError::Internal(e)) => {
            tracing::error!(user = %principal.name, error = %e, "password change not stored");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the password could not be stored: {e}"),
            )
        }
    }
}

#[utoipa::path(get, path = "/api/v1/accounts", tag = "administration",
    responses(
        (status = 200, description = "Accounts and tokens by name and role (no hashes)"),
        (status = 403, description = "Not an admin")
    ))]
pub(crate) async fn list_accounts(State(auth): State<Arc<Auth>>) -> Json<serde_json::Value> {
    let accounts = auth.accounts();
    let one_time = lock(&auth.one_time_admin).as_ref().map(|a| a.user.clone());
    let users: Vec<_> = accounts
        .users
        .values()
        .map(|a| {
            serde_json::json!({
                "user": a.user,
                "role": a.role,
                "must_change_password": a.must_change,
                "one_time": one_time.as_deref() == Some(a.user.as_str()),
            })
        })
        .collect();
    let tokens: Vec<_> = accounts
        .tokens
        .iter()
        .map(|t| serde_json::json!({ "name": t.name, "role": t.role, "created": t.created }))
        .collect();
    Json(serde_json::json!({ "users": users, "api_tokens": tokens }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn account(user: &str, password: &str, role: Role) -> Account {
        Account {
            user: user.into(),
            password_hash: hash_password(password).expect("hash"),
            role,
            must_change: false,
        }
    }

    fn auth_with(users: Vec<Account>, tokens: Vec<Token>) -> Auth {
        Auth::new_quiet(Accounts::new(users, tokens), AuthSettings::default(), None)
            .expect("auth")
            .0
    }

    fn cookie_headers(p: &Principal, csrf: Option<&str>) -> HeaderMap {
        let Via::Session { id, .. } = &p.via else {
            panic!("not a session")
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {SESSION_COOKIE}={id}")).unwrap(),
        );
        if let Some(csrf) = csrf {
            h.insert(CSRF_HEADER, HeaderValue::from_str(csrf).unwrap());
        }
        h
    }

    fn csrf_of(p: &Principal) -> String {
        match &p.via {
            Via::Session { csrf, .. } => csrf.clone(),
            Via::Token => panic!("not a session"),
        }
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("anything", "not a phc string"));
        // A fresh salt each time.
        assert_ne!(h, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let t = new_api_token();
        assert!(t.starts_with("imss_"));
        assert_eq!(t.len(), 5 + 43, "{t}");
        assert_ne!(t, new_api_token());
        let hex = token_sha256_hex(&t);
        assert_eq!(parse_sha256_hex(&hex), Some(token_sha256(&t)));
        assert_eq!(
            token_sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_sha256_hex("zz"), None);
    }

    #[test]
    fn weak_passwords_are_refused() {
        assert!(check_new_password("").is_err());
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("123456789").is_err());
        assert!(check_new_password("1234567890").is_ok());
        assert!(check_new_password("bad\npassword!").is_err());
    }

    #[test]
    fn login_opens_a_session_with_cookie_flags() {
        let auth = auth_with(vec![account("ann", "ann-password-1", Role::Admin)], vec![]);
        let now = Instant::now();
        let ok = auth.login("ann", "ann-password-1", IP, now).unwrap();
        assert!(ok.set_cookie.starts_with("imss_session="));
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
            assert!(ok.set_cookie.contains(flag), "{}", ok.set_cookie);
        }
        assert!(!ok.set_cookie.contains("Secure"));
        let h = cookie_headers(&ok.principal, None);
        let p = auth
            .authenticate(&Method::GET, "/api/v1/status", &h, now)
            .unwrap();
        assert_eq!(p.name, "ann");
        assert_eq!(
            auth.login("ann", "wrong-password", IP, now).unwrap_err(),
            LoginError::BadCredentials
        );
        assert_eq!(
            auth.login("nobody", "ann-password-1", IP, now).unwrap_err(),
            LoginError::BadCredentials
        );
    }

    #[test]
    fn secure_flag_follows_the_setting() {
        let settings = AuthSettings {
            session_ttl: Duration::from_secs(60),
            secure_cookie: true,
        };
        assert!(session_cookie("x", settings).ends_with("Max-Age=60; Secure"));
        assert!(expired_cookie(settings).contains("Max-Age=0"));
    }

    #[test]
    fn sessions_expire() {
        let auth = auth_with(vec![account("ann", "ann-password-1", Role::Admin)], vec![]);
        let now = Instant::now();
        let ok = auth.login("ann", "ann-password-1", IP, now).unwrap();
        let h = cookie_headers(&ok.principal, None);
        let later = now + Duration::from_secs(8 * 3600 - 1);
        assert!(auth.authenticate(&Method::GET, "/x", &h, later).is_ok());
        let expired = now + Duration::from_secs(8 * 3600);
        assert_eq!(
            auth.authenticate(&Method::GET, "/x", &h, expired),
            Err(Denied::NoCredentials)
        );
        // Gone for good, even if asked with an earlier time.
        assert!(auth.authenticate(&Method::GET, "/x", &h, now).is_err());
    }

    #[test]
    fn csrf_is_required_on_state_changes_by_cookie() {
        let auth = auth_with(vec![account("ann", "ann-password-1", Role::Admin)], vec![]);
        let now = Instant::now();
        let p = auth
            .login("ann", "ann-password-1", IP, now)
            .unwrap()
            .principal;
        let csrf = csrf_of(&p);
        let without = cookie_headers(&p, None);
        let wrong = cookie_headers(&p, Some("nope"));
        let right = cookie_headers(&p, Some(&csrf));
        assert!(auth.authenticate(&Method::GET, "/x", &without, now).is_ok());
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(
                auth.authenticate(&m, "/x", &without, now),
                Err(Denied::Csrf)
            );
            assert_eq!(auth.authenticate(&m, "/x", &wrong, now), Err(Denied::Csrf));
            assert!(auth.authenticate(&m, "/x", &right, now).is_ok());
        }
        // Another session's token does not do.
        let other = auth
            .login("ann", "ann-password-1", IP, now)
            .unwrap()
            .principal;
        assert_ne!(csrf_of(&other), csrf);
        let mixed = cookie_headers(&p, Some(&csrf_of(&other)));
        assert_eq!(
            auth.authenticate(&Method::POST, "/x", &mixed, now),
            Err(Denied::Csrf)
        );
    }

    #[test]
    fn bearer_tokens_need_no_csrf_and_wrong_ones_fail() {
        let token = new_api_token();
        let auth = auth_with(
            vec![account("ann", "ann-password-1", Role::Admin)],
            vec![Token {
                name: "ci".into(),
                sha256: token_sha256(&token),
                role: Role::Viewer,
                created: "2026-01-01T00:00:00Z".into(),
            }],
        );
        let now = Instant::now();
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let p = auth.authenticate(&Method::POST, "/x", &h, now).unwrap();
        assert_eq!(
            (p.name.as_str(), p.role, &p.via),
            ("ci", Role::Viewer, &Via::Token)
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", new_api_token())).unwrap(),
        );
        assert_eq!(
            auth.authenticate(&Method::GET, "/x", &h, now),
            Err(Denied::BadToken)
        );
        assert_eq!(
            auth.authenticate(&Method::GET, "/x", &HeaderMap::new(), now),
            Err(Denied::NoCredentials)
        );
    }

    #[test]
    fn rate_limit_after_five_failures_per_minute() {
        let mut l = LoginLimiter::new(5, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(l.check(IP, t0 + Duration::from_secs(i)).is_ok());
            l.fail(IP, t0 + Duration::from_secs(i));
        }
        let wait = l.check(IP, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        // Another client is not affected.
        assert!(l.check("192.0.2.2".parse().unwrap(), t0).is_ok());
        // The oldest failure leaves the window after a minute.
        assert!(l.check(IP, t0 + Duration::from_secs(60)).is_ok());
        // IPv6 clients count per /64.
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        for _ in 0..5 {
            l.fail(a, t0);
        }
        assert!(l.check(b, t0).is_err());
    }

    #[test]
    fn login_is_refused_while_limited_even_with_the_right_password() {
        let auth = auth_with(vec![account("ann", "ann-password-1", Role::Admin)], vec![]);
        let now = Instant::now();
        for _ in 0..LOGIN_FAILURES_ALLOWED {
            assert_eq!(
                auth.login("ann", "wrong-password", IP, now).unwrap_err(),
                LoginError::BadCredentials
            );
        }
        assert!(matches!(
            auth.login("ann", "ann-password-1", IP, now),
            Err(LoginError::TooMany(_))
        ));
        assert!(
            auth.login("ann", "ann-password-1", IP, now + LOGIN_WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn one_time_admin_must_change_first() {
        let (auth, password) = Auth::new_quiet(
            Accounts::new([account("val", "val-password-1", Role::Viewer)], vec![]),
            AuthSettings::default(),
            None,
        )
        .unwrap();
        let password = password.expect("a one-time password");
        assert!(password.chars().count() >= 16, "{password}");
        let now = Instant::now();
        let p = auth
            .login(ONE_TIME_ADMIN, &password, IP, now)
            .unwrap()
            .principal;
        assert!(p.must_change);
        let csrf = csrf_of(&p);
        let h = cookie_headers(&p, Some(&csrf));
        assert_eq!(
            auth.authenticate(&Method::GET, "/api/v1/status", &h, now),
            Err(Denied::MustChange)
        );
        assert!(
            auth.authenticate(&Method::GET, "/api/v1/session", &h, now)
                .is_ok()
        );
        assert!(
            auth.authenticate(&Method::POST, "/api/v1/password", &h, now)
                .is_ok()
        );
        assert_eq!(
            auth.change_password(&p, &password, "short", IP, now),
            Err(ChangeError::Weak(
                "the password has 5 characters; at least 10 are needed".into()
            ))
        );
        assert_eq!(
            auth.change_password(&p, "wrong-old-password", "new-password-1", IP, now),
            Err(ChangeError::WrongPassword)
        );
        assert_eq!(
            auth.change_password(&p, &password, "new-password-1", IP, now),
            Ok(false)
        );
        let p = auth
            .authenticate(&Method::GET, "/api/v1/status", &h, now)
            .unwrap();
        assert!(!p.must_change);
        assert!(auth.login(ONE_TIME_ADMIN, &password, IP, now).is_err());
        assert!(
            auth.login(ONE_TIME_ADMIN, "new-password-1", IP, now)
                .is_ok()
        );
        // Not persisted: a reload without admins keeps the changed one-time account.
        auth.replace(
            Accounts::new([account("val", "val-password-1", Role::Viewer)], vec![]),
            AuthSettings::default(),
        );
        assert!(
            auth.login(ONE_TIME_ADMIN, "new-password-1", IP, now)
                .is_ok()
        );
        // A configured admin replaces it.
        auth.replace(
            Accounts::new([account("ann", "ann-password-1", Role::Admin)], vec![]),
            AuthSettings::default(),
        );
        assert!(auth.accounts().user(ONE_TIME_ADMIN).is_none());
    }

    #[test]
    fn no_one_time_admin_when_an_admin_is_configured() {
        let (auth, password) = Auth::new_quiet(
            Accounts::new([account("ann", "ann-password-1", Role::Admin)], vec![]),
            AuthSettings::default(),
            None,
        )
        .unwrap();
        assert!(password.is_none());
        assert!(auth.accounts().user(ONE_TIME_ADMIN).is_none());
    }

    struct Recorder(Mutex<Vec<(String, Role, String)>>);
    impl AccountStore for Recorder {
        fn set_password(&self, user: &str, role: Role, hash: &str) -> Result<(), String> {
            lock(&self.0).push((user.into(), role, hash.into()));
            Ok(())
        }
    }

    #[test]
    fn password_changes_are_stored_and_end_other_sessions() {
        let store = Arc::new(Recorder(Mutex::new(Vec::new())));
        let (auth, _) = Auth::new_quiet(
            Accounts::new([account("ann", "ann-password-1", Role::Admin)], vec![]),
            AuthSettings::default(),
            Some(store.clone()),
        )
        .unwrap();
        let now = Instant::now();
        let mine = auth
            .login("ann", "ann-password-1", IP, now)
            .unwrap()
            .principal;
        let other = auth
            .login("ann", "ann-password-1", IP, now)
            .unwrap()
            .principal;
        assert_eq!(
            auth.change_password(&mine, "ann-password-1", "ann-password-2", IP, now),
            Ok(true)
        );
        let stored = lock(&store.0).clone();
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].0.as_str(), stored[0].1), ("ann", Role::Admin));
        assert!(verify_password("ann-password-2", &stored[0].2));
        assert!(
            auth.authenticate(&Method::GET, "/x", &cookie_headers(&mine, None), now)
                .is_ok()
        );
        assert_eq!(
            auth.authenticate(&Method::GET, "/x", &cookie_headers(&other, None), now),
            Err(Denied::NoCredentials)
        );
    }

    #[test]
    fn reload_applies_roles_and_removals_at_once() {
        let auth = auth_with(vec![account("ann", "ann-password-1", Role::Admin)], vec![]);
        let now = Instant::now();
        let p = auth
            .login("ann", "ann-password-1", IP, now)
            .unwrap()
            .principal;
        let h = cookie_headers(&p, None);
        let ann = auth.accounts().user("ann").cloned().unwrap();
        let boss = account("boss", "boss-password", Role::Admin);
        auth.replace(
            Accounts::new(
                [
                    Account {
                        role: Role::Viewer,
                        ..ann
                    },
                    boss.clone(),
                ],
                vec![],
            ),
            AuthSettings::default(),
        );
        assert_eq!(
            auth.authenticate(&Method::GET, "/x", &h, now).unwrap().role,
            Role::Viewer
        );
        auth.replace(Accounts::new([boss], vec![]), AuthSettings::default());
        assert_eq!(
            auth.authenticate(&Method::GET, "/x", &h, now),
            Err(Denied::NoCredentials)
        );
    }

    #[test]
    fn public_paths_and_the_open_path_hook() {
        let auth = auth_with(vec![account("ann", "ann-password-1", Role::Admin)], vec![]);
        assert!(auth.is_public("/healthz"));
        assert!(auth.is_public("/login"));
        assert!(!auth.is_public("/metrics"));
        assert!(!auth.is_public("/api/v1/status"));
        auth.open_path("/metrics");
        assert!(auth.is_public("/metrics"));
    }

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Viewer < Role::Admin);
        assert_eq!("viewer".parse::<Role>(), Ok(Role::Viewer));
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn debug_output_shows_no_secrets() {
        let a = account("ann", "ann-password-1", Role::Admin);
        let shown = format!("{a:?}");
        assert!(!shown.contains("argon2"), "{shown}");
        let auth = auth_with(vec![a], vec![]);
        let p = auth
            .login("ann", "ann-password-1", IP, Instant::now())
            .unwrap()
            .principal;
        let shown = format!("{p:?}");
        assert!(!shown.contains(&csrf_of(&p)), "{shown}");
    }

    #[test]
    fn cookies_and_bearer_headers_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; imss_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  imss_abc "),
        );
        assert_eq!(bearer_token(&h), Some("imss_abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        assert_eq!(bearer_token(&h), None);
    }
}
