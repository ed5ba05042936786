//! Access control of the web interface and API, over real HTTP against the real binary:
//! `imss admin` accounts and tokens, logins, cookies, CSRF, roles, the login rate limit and
//! the one-time admin of a first start.

mod support;

use std::path::Path;
use support::api::{Api as Client, imss, reload, wait_for_log};
use support::start_server;

/// The one-time password from the first-start log line.
fn one_time_password(log: &str) -> String {
    let marker = "one-time password ";
    let at = log.find(marker).expect("one-time password in the log") + marker.len();
    log[at..]
        .split_whitespace()
        .next()
        .expect("password after the marker")
        .to_string()
}

#[test]
fn first_start_makes_a_one_time_admin_that_must_change_its_password() {
    let server = start_server("", |_| {});
    let config_path = server.dir.path().join("imss.toml");
    let log = wait_for_log(&server, "the one-time password", |l| {
        l.contains("one-time password ")
    });
    let line = log
        .lines()
        .find(|l| l.contains("one-time password "))
        .unwrap();
    assert!(line.contains("WARN"), "{line}");
    let password = one_time_password(&log);
    assert!(password.chars().count() >= 16, "{password}");
    assert_eq!(log.matches(&password).count(), 1, "{log}");
    let file = std::fs::read_to_string(&config_path).unwrap();
    assert!(
        !file.contains(&password) && !file.contains("admins"),
        "{file}"
    );

    let mut c = Client::new(&server);
    let health = c.get("/healthz", &[]);
    assert_eq!(health.status, 200, "{}", health.body);

    let (a, cookie) = c.login("admin", &password);
    assert_eq!(a.status, 200, "{}", a.body);
    let set_cookie = a.header("set-cookie").unwrap().to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let me = a.json();
    assert_eq!(me["must_change_password"], true);
    let csrf = me["csrf_token"].as_str().unwrap().to_string();

    // Nothing but the password change, the session and logout until the password changes.
    let blocked = c.get("/api/v1/accounts", &[("Cookie", &cookie)]);
    assert_eq!(blocked.status, 403, "{}", blocked.body);
    assert!(
        blocked.json()["message"]
            .as_str()
            .unwrap()
            .contains("password change")
    );
    let session = c.get("/api/v1/session", &[("Cookie", &cookie)]);
    assert_eq!(session.status, 200);
    assert_eq!(session.header("cache-control"), Some("no-store"));
    assert_eq!(session.json()["csrf_token"], csrf.as_str());
    assert_eq!(session.json()["user"], "admin");

    let new_password = "a-new-admin-password-42";
    let change =
        serde_json::json!({ "old_password": password, "new_password": new_password }).to_string();
    let no_csrf = c.post_json("/api/v1/password", &[("Cookie", &cookie)], &change);
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    let weak = serde_json::json!({ "old_password": password, "new_password": "short" });
    let weak = c.post_json(
        "/api/v1/password",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        &weak.to_string(),
    );
    assert_eq!(weak.status, 400, "{}", weak.body);
    let changed = c.post_json(
        "/api/v1/password",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        &change,
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.json()["persisted"], true);

    // The same session may now do everything.
    let accounts = c.get("/api/v1/accounts", &[("Cookie", &cookie)]);
    assert_eq!(accounts.status, 200, "{}", accounts.body);
    assert_eq!(accounts.json()["users"][0]["user"], "admin");
    assert_eq!(accounts.json()["users"][0]["must_change_password"], false);

    // Stored in the file as a hash, which loads and validates.
    let file = std::fs::read_to_string(&config_path).unwrap();
    assert!(file.contains("$argon2id$"), "{file}");
    assert!(!file.contains(new_password) && !file.contains(&password));
    assert!(server.dir.path().join("imss.toml.bak").exists());
    let (ok, _, err) = imss(&["check-config", config_path.to_str().unwrap()], "");
    assert!(ok, "{err}");

    // The one-time password is spent; the new one works.
    assert_eq!(c.login("admin", &password).0.status, 401);
    let (again, cookie) = c.login("admin", new_password);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["must_change_password"], false);
    // The dashboard lists recent warnings, but not the one carrying the password.
    let status = c.get("/api/v1/status", &[("Cookie", &cookie)]);
    assert_eq!(status.status, 200, "{}", status.body);
    assert!(status.json()["warnings"].is_array(), "{}", status.body);

    let log = server.log();
    assert_eq!(log.matches(&password).count(), 1, "logged again:\n{log}");
    assert!(!log.contains(new_password), "{log}");
    c.assert_no_body_contains(&[&password, new_password]);
}

#[test]
fn cli_accounts_and_tokens_with_roles_csrf_and_rate_limit() {
    let mut server = start_server("http.session_ttl_s = 600", |_| {});
    let path = server.dir.path().join("imss.toml");
    let config = path.to_str().unwrap();

    // Passwords come from standard input and must be long enough.
    let (ok, _, err) = imss(&["admin", "set-password", "ann", "--config", config], "\n");
    assert!(!ok && err.contains("empty"), "{err}");
    let (ok, _, err) = imss(
        &["admin", "set-password", "ann", "--config", config],
        "short\n",
    );
    assert!(!ok && err.contains("at least 10"), "{err}");
    let ann_password = "ann-password-123";
    let (ok, _, err) = imss(
        &[
            "admin",
            "set-password",
            "ann",
            "--config",
            config,
            "--role",
            "admin",
        ],
        &format!("{ann_password}\n"),
    );
    assert!(ok, "{err}");
    let val_password = "val-password-456";
    let (ok, _, err) = imss(
        &[
            "admin",
            "set-password",
            "val",
            "--config",
            config,
            "--role",
            "viewer",
        ],
        &format!("{val_password}\n"),
    );
    assert!(ok, "{err}");
    let (ok, admin_token, err) = imss(&["admin", "create-token", "ci", "--config", config], "");
    assert!(ok, "{err}");
    let admin_token = admin_token.trim().to_string();
    assert!(admin_token.starts_with("imss_"), "{admin_token}");
    let (ok, viewer_token, err) = imss(
        &[
            "admin",
            "create-token",
            "ro",
            "--config",
            config,
            "--role",
            "viewer",
        ],
        "",
    );
    assert!(ok, "{err}");
    let viewer_token = viewer_token.trim().to_string();
    let (ok, _, err) = imss(&["admin", "create-token", "ci", "--config", config], "");
    assert!(!ok && err.contains("exists"), "{err}");

    let file = std::fs::read_to_string(&path).unwrap();
    for secret in [ann_password, val_password, &admin_token, &viewer_token] {
        assert!(!file.contains(secret), "{secret} in the file:\n{file}");
    }
    let admin_hash = sha256_hex_of_token_in(&file, "ci");
    let viewer_hash = sha256_hex_of_token_in(&file, "ro");
    assert!(file.contains("session_ttl_s = 600"), "{file}");

    reload(&server);
    assert!(server.alive());
    let log = server.log();
    assert!(
        !log.contains("take effect after a restart"),
        "accounts and tokens apply without a restart:\n{log}"
    );

    let mut c = Client::new(&server);
    // Without credentials everything but /healthz and /login is closed.
    for p in [
        "/api/v1/session",
        "/api/v1/accounts",
        "/api/v1/status",
        "/nowhere",
    ] {
        let a = c.get(p, &[]);
        assert_eq!(a.status, 401, "{p}: {}", a.body);
        assert!(a.json()["error"].is_string(), "{p}: {}", a.body);
    }
    assert_eq!(c.get("/healthz", &[]).status, 200);

    // Admin by cookie; the session's lifetime follows session_ttl_s.
    let (a, ann) = c.login("ann", ann_password);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("set-cookie").unwrap().contains("Max-Age=600"));
    let csrf = a.json()["csrf_token"].as_str().unwrap().to_string();
    let accounts = c.get("/api/v1/accounts", &[("Cookie", &ann)]);
    assert_eq!(accounts.status, 200, "{}", accounts.body);
    let names: Vec<_> = accounts.json()["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["ann", "val"]);
    assert_eq!(accounts.json()["api_tokens"][1]["role"], "viewer");

    // CSRF: state changes by cookie need the session's token.
    let no_csrf = c.request("POST", "/logout", &[("Cookie", &ann)], None);
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    let wrong = c.request(
        "POST",
        "/logout",
        &[("Cookie", &ann), ("X-CSRF-Token", "not-the-token")],
        None,
    );
    assert_eq!(wrong.status, 403);
    let out = c.request(
        "POST",
        "/logout",
        &[("Cookie", &ann), ("X-CSRF-Token", &csrf)],
        None,
    );
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(c.get("/api/v1/session", &[("Cookie", &ann)]).status, 401);

    // A form login works as well; a viewer may look but not use admin routes.
    let form = format!("user=val&password={val_password}");
    let a = c.request(
        "POST",
        "/login",
        &[],
        Some(("application/x-www-form-urlencoded", form.as_bytes())),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let val = a
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me = c.get("/api/v1/session", &[("Cookie", &val)]);
    assert_eq!(me.json()["role"], "viewer");
    let denied = c.get("/api/v1/accounts", &[("Cookie", &val)]);
    assert_eq!(denied.status, 403, "{}", denied.body);

    // Bearer tokens: no CSRF needed, roles apply, unknown tokens are refused.
    let bearer = format!("Bearer {admin_token}");
    let a = c.get("/api/v1/accounts", &[("Authorization", &bearer)]);
    assert_eq!(a.status, 200, "{}", a.body);
    let a = c.request("POST", "/logout", &[("Authorization", &bearer)], None);
    assert_eq!(a.status, 204, "{}", a.body);
    let viewer = format!("Bearer {viewer_token}");
    assert_eq!(
        c.get("/api/v1/accounts", &[("Authorization", &viewer)])
            .status,
        403
    );
    assert_eq!(
        c.get("/api/v1/session", &[("Authorization", &viewer)])
            .status,
        200
    );
    let forged = format!("Bearer imss_{}", "A".repeat(43));
    let a = c.get("/api/v1/session", &[("Authorization", &forged)]);
    assert_eq!(a.status, 401, "{}", a.body);

    // Five failed logins a minute from one address, then 429 even for the right password.
    for i in 0..5 {
        let a = c.login("ann", "wrong-password").0;
        assert_eq!(a.status, 401, "attempt {i}: {}", a.body);
    }
    let (limited, _) = c.login("ann", ann_password);
    assert_eq!(limited.status, 429, "{}", limited.body);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Unknown users count too, and are answered like wrong passwords.
    assert_eq!(c.login("nobody", "whatever-password").0.status, 429);

    c.assert_no_body_contains(&[
        ann_password,
        val_password,
        &admin_token,
        &viewer_token,
        &admin_hash,
        &viewer_hash,
    ]);
    let log = server.log();
    for secret in [ann_password, val_password, &admin_token, &admin_hash] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}

#[test]
fn admin_commands_refuse_a_file_that_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let (ok, _, err) = imss(
        &[
            "admin",
            "set-password",
            "ann",
            "--config",
            missing.to_str().unwrap(),
        ],
        "a-long-enough-password\n",
    );
    assert!(!ok && err.contains("missing.toml"), "{err}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[http]\nsession_ttl_s = 1\n").unwrap();
    let (ok, out, err) = imss(
        &[
            "admin",
            "create-token",
            "ci",
            "--config",
            bad.to_str().unwrap(),
        ],
        "",
    );
    assert!(!ok && err.contains("http.session_ttl_s"), "{err}");
    assert!(out.is_empty(), "a token was printed: {out}");
    assert_eq!(
        std::fs::read_to_string(&bad).unwrap(),
        "[http]\nsession_ttl_s = 1\n"
    );
    let (ok, _, _) = imss(&["admin", "create-token", "ci"], "");
    assert!(!ok, "--config is required");
}

/// The `hash` of the `[[http.api_tokens]]` entry named `name` in a config file.
fn sha256_hex_of_token_in(file: &str, name: &str) -> String {
    let config = imss_server::Config::from_toml(file, Path::new("imss.toml")).expect("config");
    let token = config
        .http
        .api_tokens
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("token {name} in {file}"));
    assert_eq!(token.hash.len(), 64, "{}", token.hash);
    token.hash.clone()
}
