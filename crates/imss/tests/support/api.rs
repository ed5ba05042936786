//! A blocking HTTP client for the JSON API that keeps every body it received (to check that
//! no secret was ever sent), and `imss admin` for accounts and tokens.

use super::Server;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {:?}", self.status, self.body))
    }
}

/// The client.
pub struct Api {
    agent: ureq::Agent,
    pub base: String,
    pub bodies: Vec<String>,
}

impl Api {
    pub fn new(server: &Server) -> Api {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Api {
            agent,
            base: format!("http://{}", server.http),
            bodies: Vec::new(),
        }
    }

    /// `method path` with `headers` and an optional body (content type, bytes).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let result = match method {
            "GET" | "DELETE" => {
                let mut r = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.call()
            }
            _ => {
                let mut r = match method {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    other => panic!("method {other}"),
                };
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                match body {
                    Some((content_type, bytes)) => {
                        r.header("Content-Type", content_type).send(bytes)
                    }
                    None => r.send_empty(),
                }
            }
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body).into_owned();
        self.bodies.push(body.clone());
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.request("GET", path, headers, None)
    }

    pub fn json(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> Answer {
        let text = body.to_string();
        self.request(
            method,
            path,
            headers,
            Some(("application/json", text.as_bytes())),
        )
    }

    /// `POST path` with a JSON `body` written out.
    pub fn post_json(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        self.request(
            "POST",
            path,
            headers,
            Some(("application/json", body.as_bytes())),
        )
    }

    /// Logs in; returns the answer and the `Cookie` header value of the session.
    pub fn login(&mut self, user: &str, password: &str) -> (Answer, String) {
        let body = serde_json::json!({ "user": user, "password": password });
        let a = self.json("POST", "/login", &[], &body);
        let cookie = a
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .unwrap_or("")
            .to_string();
        (a, cookie)
    }

    /// Asserts that no body received so far contains any of `secrets` or a password hash.
    pub fn assert_no_body_contains(&self, secrets: &[&str]) {
        for body in &self.bodies {
            for secret in secrets {
                assert!(
                    !body.contains(secret),
                    "a response body contains a secret ({secret}): {body}"
                );
            }
            assert!(
                !body.contains("$argon2"),
                "a password hash was sent: {body}"
            );
        }
    }
}

/// Runs `imss ARGS` with `stdin`; returns (success, stdout, stderr).
pub fn imss(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imss"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run imss");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("imss output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A new API token of `role` made with `imss admin create-token` in the server's config.
/// The running server picks it up on SIGHUP; make tokens before it starts, in `prepare`.
pub fn create_token(config: &std::path::Path, name: &str, role: &str) -> String {
    let config = config.to_str().expect("utf-8 path");
    let (ok, out, err) = imss(
        &[
            "admin",
            "create-token",
            name,
            "--config",
            config,
            "--role",
            role,
        ],
        "",
    );
    assert!(ok, "create-token: {err}");
    out.trim().to_string()
}

/// Waits until the server's log satisfies `done`.
pub fn wait_for_log(server: &Server, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log();
        if done(&log) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not log {what}; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGHUP and waits for the reload to be logged.
pub fn reload(server: &Server) {
    let before = server.log().matches("configuration reloaded").count();
    // SAFETY: kill only sends a signal to the child the test started.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "SIGHUP to imss");
    wait_for_log(server, "the reload", |log| {
        log.matches("configuration reloaded").count() > before
    });
}

/// The server's configuration file.
pub fn config_path(server: &Server) -> std::path::PathBuf {
    server.dir.path().join("imss.toml")
}

/// Bearer tokens for an admin and a viewer, made with `imss admin create-token` and loaded
/// with SIGHUP.
pub fn tokens(server: &Server) -> (String, String) {
    let path = config_path(server);
    let admin = create_token(&path, "test-admin", "admin");
    let viewer = create_token(&path, "test-viewer", "viewer");
    reload(server);
    (admin, viewer)
}
