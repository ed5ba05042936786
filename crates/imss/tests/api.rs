//! The JSON API as a whole, over real HTTP against the real binary: every route of the
//! OpenAPI document needs credentials, CSRF and the admin role to change anything; the
//! configuration routes validate (naming the key), save, apply live or report a needed
//! restart, detect conflicts and never send a secret; users, tokens and the audit log.

mod support;

use serde_json::{Value, json};
use support::api::{Api, config_path, imss, reload, tokens, wait_for_log};
use support::start_server;

const PASSWORD: &str = "correct horse battery staple";

/// An admin with a password, for cookie sessions (loaded with SIGHUP).
fn add_admin(server: &support::Server, user: &str) {
    let path = config_path(server);
    let (ok, _, err) = imss(
        &[
            "admin",
            "set-password",
            user,
            "--config",
            path.to_str().unwrap(),
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "set-password: {err}");
    reload(server);
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A stand-in for each path parameter.
fn fill(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("closing brace") + open;
        out.push_str("no-such-thing");
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_route_needs_credentials_csrf_and_the_admin_role_to_change_anything() {
    let server = start_server("", |_| {});
    let (admin, viewer) = tokens(&server);
    add_admin(&server, "alice");
    let mut api = Api::new(&server);
    let doc = api.get("/api/openapi.json", &[("Authorization", &bearer(&admin))]);
    assert_eq!(doc.status, 200, "{}", doc.body);
    let doc = doc.json();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 20, "only {} paths documented", paths.len());
    // The document itself is behind the login.
    assert_eq!(api.get("/api/openapi.json", &[]).status, 401);

    let (login, cookie) = api.login("alice", PASSWORD);
    assert_eq!(login.status, 200, "{}", login.body);
    let mut checked = 0;
    for (path, item) in paths {
        for method in ["get", "post", "put", "delete"] {
            let open = ["/login", "/healthz", "/metrics"];
            if item.get(method).is_none() || open.contains(&path.as_str()) {
                continue;
            }
            let url = fill(path);
            let upper = method.to_ascii_uppercase();
            let body = Some(("application/json", &b"{}"[..]));
            let a = api.request(&upper, &url, &[], body);
            assert_eq!(
                a.status, 401,
                "{upper} {path} without credentials: {}",
                a.body
            );
            assert_eq!(a.json()["error"], "unauthenticated", "{upper} {path}");
            // Everyone changes their own password and logs out.
            let anyone = ["/api/v1/password", "/logout"];
            if method != "get" && !anyone.contains(&path.as_str()) {
                let auth = bearer(&viewer);
                let a = api.request(&upper, &url, &[("Authorization", &auth)], body);
                assert_eq!(a.status, 403, "{upper} {path} as a viewer: {}", a.body);
            }
            if method != "get" && path != "/logout" {
                let a = api.request(&upper, &url, &[("Cookie", &cookie)], body);
                assert_eq!(a.status, 403, "{upper} {path} without CSRF: {}", a.body);
                assert_eq!(a.json()["error"], "csrf", "{upper} {path}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} routes checked");
    api.assert_no_body_contains(&[&admin, &viewer]);
}

#[test]
fn configuration_changes_are_validated_saved_applied_and_never_overwrite_another() {
    let server = start_server("", |_| {});
    let (admin, viewer) = tokens(&server);
    let auth = bearer(&admin);
    let file = config_path(&server);
    let mut api = Api::new(&server);
    let h = |extra: Option<&str>| {
        let mut v = vec![("Authorization", auth.clone())];
        if let Some(m) = extra {
            v.push(("If-Match", m.to_string()));
        }
        v
    };
    let headers = |v: &Vec<(&'static str, String)>| -> Vec<(&str, String)> { v.clone() };
    let call = |api: &mut Api, method: &str, path: &str, hs: Vec<(&str, String)>, body: Value| {
        let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        api.json(method, path, &hs, &body)
    };

    let got = api.get("/api/v1/config", &[("Authorization", &auth)]);
    assert_eq!(got.status, 200, "{}", got.body);
    let version = got.json()["version"].as_str().expect("version").to_string();
    assert_eq!(got.header("etag"), Some(format!("\"{version}\"").as_str()));
    assert_eq!(got.json()["config"]["mail"]["imap_password_set"], false);
    assert_eq!(got.json()["config"]["general"]["log_level"], "info");
    assert!(got.json()["config"]["http"].get("api_tokens").is_none());

    // A value out of range: refused, naming the key; the file stays as it was.
    let before = std::fs::read_to_string(&file).unwrap();
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/rtp",
        headers(&h(Some(&version))),
        json!({"port_min": 1000}),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["field"], "rtp.port_min", "{}", a.body);
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/mail",
        h(None),
        json!({"imap_port": "993"}),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["field"], "mail.imap_port", "{}", a.body);
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/mail",
        h(None),
        json!({"imap_portt": 993}),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["field"], "mail.imap_portt", "{}", a.body);
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/http",
        h(None),
        json!({"admins": []}),
    );
    assert_eq!(a.json()["field"], "http.admins", "{}", a.body);
    let a = api.request(
        "PUT",
        "/api/v1/config/mail",
        &[("Authorization", &auth)],
        Some(("application/json", b"{not json")),
    );
    assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("body")));
    assert_eq!(
        call(&mut api, "PUT", "/api/v1/config/nosuch", h(None), json!({})).status,
        404
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        before,
        "a refused change wrote the file"
    );

    // A change from the current version: saved, applied at once.
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/mail",
        headers(&h(Some(&version))),
        json!({"imap_host": "127.0.0.1", "imap_user": "vm", "imap_password": "Secr3t-Imap-Pass"}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["applied"], json!(["mail"]), "{}", a.body);
    assert_eq!(a.json()["needs_restart"], json!([]), "{}", a.body);
    let second = a.json()["version"].as_str().unwrap().to_string();
    assert_ne!(second, version);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("imap_host = \"127.0.0.1\""), "{text}");
    assert!(
        text.contains("Secr3t-Imap-Pass"),
        "the password is kept in the file"
    );

    // Another admin still holding the first version: refused, nothing written.
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/mail",
        headers(&h(Some(&version))),
        json!({"imap_user": "other"}),
    );
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.json()["error"], "conflict");
    assert_eq!(a.json()["current_version"], second.as_str());
    assert!(!std::fs::read_to_string(&file).unwrap().contains("other"));

    // The password is never sent back; leaving it out keeps it.
    let got = api.get("/api/v1/config", &[("Authorization", &auth)]);
    assert_eq!(got.json()["config"]["mail"]["imap_password_set"], true);
    assert_eq!(got.json()["config"]["mail"]["imap_user"], "vm");
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/mail",
        h(None),
        json!({"imap_user": "vm2", "imap_password_set": true}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("Secr3t-Imap-Pass")
    );

    // Ports need a restart, and the page is told so until then.
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/sip",
        h(None),
        json!({"port": 5070}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["needs_restart"], json!(["sip"]), "{}", a.body);
    let got = api.get("/api/v1/config", &[("Authorization", &auth)]);
    assert_eq!(got.json()["pending_restart"], json!(["sip"]));
    // A web certificate that cannot be read is refused before it is saved.
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/http",
        h(None),
        json!({"tls_cert": "/nonexistent/web.pem", "tls_key": "/nonexistent/web.key"}),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["field"], "http.tls_cert", "{}", a.body);
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/web.pem")
    );
    // Trusted networks apply at once.
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/sip",
        h(None),
        json!({"trusted_networks": ["127.0.0.0/8"]}),
    );
    assert_eq!(
        a.json()["applied"],
        json!(["sip.trusted_networks"]),
        "{}",
        a.body
    );
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/sip",
        h(None),
        json!({"trusted_networks": ["127.0.0.0/40"]}),
    );
    assert_eq!(a.json()["field"], "sip.trusted_networks[0]", "{}", a.body);

    // The log level changes at once: at `warn`, a login (an info line) is not logged.
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/general",
        h(None),
        json!({"log_level": "warn"}),
    );
    assert_eq!(
        a.json()["applied"],
        json!(["general.log_level"]),
        "{}",
        a.body
    );
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/general",
        h(None),
        json!({"log_level": "loud"}),
    );
    assert_eq!(a.json()["field"], "general.log_level", "{}", a.body);
    // A user made through the API can log in at once.
    let bob = json!({"user": "bob", "password": PASSWORD, "must_change_password": false});
    let a = call(&mut api, "POST", "/api/v1/users", h(None), bob);
    assert_eq!(a.status, 201, "{}", a.body);
    let (login, _) = api.login("bob", PASSWORD);
    assert_eq!(login.status, 200, "{}", login.body);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !server.log().contains("web interface login"),
        "{}",
        server.log()
    );
    let a = call(
        &mut api,
        "PUT",
        "/api/v1/config/general",
        h(None),
        json!({"log_level": "info"}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let (login, _) = api.login("bob", PASSWORD);
    assert_eq!(login.status, 200);
    wait_for_log(&server, "the login at info level", |log| {
        log.contains("web interface login")
    });

    // A viewer reads but does not change.
    let v = bearer(&viewer);
    assert_eq!(
        api.get("/api/v1/config", &[("Authorization", &v)]).status,
        200
    );
    let a = api.json(
        "PUT",
        "/api/v1/config/general",
        &[("Authorization", &v)],
        &json!({"location": "x"}),
    );
    assert_eq!(a.status, 403);

    // The audit log: who changed what, newest first, secrets masked.
    let log = api.get("/api/v1/audit?limit=50", &[("Authorization", &auth)]);
    assert_eq!(log.status, 200, "{}", log.body);
    let entries = log.json()["entries"].as_array().unwrap().clone();
    assert!(entries.len() >= 6, "{entries:?}");
    assert_eq!(entries[0]["who"], "test-admin");
    assert_eq!(entries[0]["changes"][0]["key"], "general.log_level");
    assert_eq!(entries[0]["changes"][0]["new"], "info");
    let password_change = entries
        .iter()
        .flat_map(|e| e["changes"].as_array().unwrap().iter())
        .find(|c| c["key"] == "mail.imap_password")
        .expect("the password change is audited");
    assert_eq!(password_change["new"], "<set>");
    assert_eq!(
        api.get("/api/v1/audit", &[("Authorization", &v)]).status,
        403
    );

    api.assert_no_body_contains(&["Secr3t-Imap-Pass", &admin, &viewer]);
    assert!(
        !server.log().contains("Secr3t-Imap-Pass"),
        "the password was logged"
    );
}

#[test]
fn users_and_tokens_are_managed_through_the_api() {
    let server = start_server("", |_| {});
    let (admin, viewer) = tokens(&server);
    let auth = bearer(&admin);
    let mut api = Api::new(&server);
    let h = [("Authorization", auth.as_str())];

    // A token made here works at once, is listed by name only, and stops when revoked.
    let a = api.json(
        "POST",
        "/api/v1/tokens",
        &h,
        &json!({"name": "wall", "role": "viewer"}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let wall = a.json()["token"].as_str().unwrap().to_string();
    let w = bearer(&wall);
    assert_eq!(
        api.get("/api/v1/status", &[("Authorization", &w)]).status,
        200
    );
    let change = api.json(
        "PUT",
        "/api/v1/config/general",
        &[("Authorization", &w)],
        &json!({}),
    );
    assert_eq!(change.status, 403);
    let list = api.get("/api/v1/tokens", &h);
    let names: Vec<&str> = list.json()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|s| Box::leak(s.to_string().into_boxed_str()) as &str)
        .collect();
    assert_eq!(names, ["test-admin", "test-viewer", "wall"]);
    assert_eq!(
        api.json("POST", "/api/v1/tokens", &h, &json!({"name": "wall"}))
            .status,
        409
    );
    let bad = api.json("POST", "/api/v1/tokens", &h, &json!({"name": "a b"}));
    assert_eq!(
        (bad.status, bad.json()["field"].as_str()),
        (400, Some("name"))
    );
    let bad = api.json(
        "POST",
        "/api/v1/tokens",
        &h,
        &json!({"name": "x", "role": "root"}),
    );
    assert_eq!(bad.json()["field"], "role");
    assert_eq!(
        api.request("DELETE", "/api/v1/tokens/wall", &h, None)
            .status,
        200
    );
    assert_eq!(
        api.get("/api/v1/status", &[("Authorization", &w)]).status,
        401
    );
    assert_eq!(
        api.request("DELETE", "/api/v1/tokens/wall", &h, None)
            .status,
        404
    );

    // Users: a weak password is refused naming the field; a new user must change theirs.
    let weak = api.json(
        "POST",
        "/api/v1/users",
        &h,
        &json!({"user": "ops", "password": "short"}),
    );
    assert_eq!(
        (weak.status, weak.json()["field"].as_str()),
        (400, Some("password"))
    );
    let typo = api.json(
        "POST",
        "/api/v1/users",
        &h,
        &json!({"user": "ops", "pasword": PASSWORD}),
    );
    assert_eq!(
        (typo.status, typo.json()["field"].as_str()),
        (400, Some("pasword")),
        "{}",
        typo.body
    );
    let a = api.json(
        "POST",
        "/api/v1/users",
        &h,
        &json!({"user": "ops", "password": PASSWORD, "role": "viewer"}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(
        api.json(
            "POST",
            "/api/v1/users",
            &h,
            &json!({"user": "ops", "password": PASSWORD})
        )
        .status,
        409
    );
    let (login, _) = api.login("ops", PASSWORD);
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.json()["must_change_password"], true);
    assert_eq!(login.json()["role"], "viewer");
    let users = api.get("/api/v1/users", &h);
    let ops = users.json()["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "ops")
        .cloned()
        .expect("ops listed");
    assert_eq!(
        ops,
        json!({"user": "ops", "role": "viewer", "must_change_password": true})
    );
    let a = api.json(
        "PUT",
        "/api/v1/users/ops",
        &h,
        &json!({"role": "admin", "must_change_password": false}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let (login, _) = api.login("ops", PASSWORD);
    assert_eq!(login.json()["role"], "admin");
    assert_eq!(
        api.json("PUT", "/api/v1/users/nobody", &h, &json!({"role": "admin"}))
            .status,
        404
    );
    // The last admin stays.
    let a = api.json("PUT", "/api/v1/users/ops", &h, &json!({"role": "viewer"}));
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(
        api.request("DELETE", "/api/v1/users/ops", &h, None).status,
        400
    );
    let (ok, _, err) = imss(
        &[
            "admin",
            "set-password",
            "root2",
            "--config",
            config_path(&server).to_str().unwrap(),
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "{err}");
    reload(&server);
    assert_eq!(
        api.request("DELETE", "/api/v1/users/ops", &h, None).status,
        200
    );
    assert_eq!(api.login("ops", PASSWORD).0.status, 401);
    // Yourself: refused.
    let (_, cookie) = api.login("root2", PASSWORD);
    let session = api.get("/api/v1/session", &[("Cookie", &cookie)]);
    let csrf = session.json()["csrf_token"].as_str().unwrap().to_string();
    let me = api.request(
        "DELETE",
        "/api/v1/users/root2",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        None,
    );
    assert_eq!(
        (me.status, me.json()["field"].as_str()),
        (400, Some("user")),
        "{}",
        me.body
    );
    assert_eq!(
        api.get("/api/v1/users", &[("Authorization", &bearer(&viewer))])
            .status,
        403
    );

    api.assert_no_body_contains(&[&admin, &viewer]);
}

#[test]
fn the_openapi_document_describes_every_route_of_the_interface() {
    let server = start_server("", |_| {});
    let (admin, _) = tokens(&server);
    let mut api = Api::new(&server);
    let doc = api
        .get("/api/openapi.json", &[("Authorization", &bearer(&admin))])
        .json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/config", &["get"][..]),
        ("/api/v1/config/{section}", &["put"]),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/users", &["get", "post"]),
        ("/api/v1/users/{user}", &["put", "delete"]),
        ("/api/v1/tokens", &["get", "post"]),
        ("/api/v1/tokens/{name}", &["delete"]),
        ("/api/v1/sources", &["get", "post"]),
        ("/api/v1/sources/{name}", &["get", "put", "delete"]),
        ("/api/v1/sources/{name}/listen", &["get"]),
        ("/api/v1/sources/{name}/test", &["post"]),
        ("/api/v1/sessions", &["get"]),
        ("/api/v1/sessions/{id}", &["delete"]),
        ("/api/v1/files", &["get"]),
        ("/api/v1/files/{path}", &["get", "put", "delete"]),
        ("/api/v1/mail/test", &["post"]),
        ("/api/v1/tts/speak", &["post"]),
        ("/api/v1/status", &["get"]),
        ("/api/v1/events", &["get"]),
        ("/api/v1/session", &["get"]),
        ("/api/v1/password", &["post"]),
        ("/login", &["post"]),
        ("/logout", &["post"]),
        ("/metrics", &["get"]),
        ("/healthz", &["get"]),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for m in methods {
            let op = item
                .get(*m)
                .unwrap_or_else(|| panic!("{m} {path} is not documented"));
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{m} {path}"
            );
        }
    }
    // The error shape is described once and used.
    assert!(doc["components"]["schemas"]["ApiError"].is_object());
}
