//! The web interface in the real browser: headless Chromium driven by ChromeDriver over the
//! W3C WebDriver protocol, against the real binary. Logs in with the one-time password,
//! changes it, and watches the dashboard follow a real call through the live feed.
//!
//! `IMSS_SCREENSHOTS=1` writes the screenshots to `docs/screenshots/`; otherwise they go
//! to the test's temporary directory.

mod support;

use base64::Engine as _;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Server, require, run_with_timeout, start_server};

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// ChromeDriver and the browser session it runs; both end on drop.
struct Browser {
    driver: Child,
    agent: ureq::Agent,
    base: String,
    session: String,
}

impl Browser {
    /// Starts ChromeDriver on a free port and opens a headless Chromium session.
    fn start() -> Browser {
        let chromedriver = require("chromedriver", "chromium-driver");
        let chromium = require("chromium", "chromium");
        let port = free_tcp_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: the browser it starts is ended with it.
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut browser = Browser {
            driver,
            agent,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = browser
                .agent
                .get(format!("{}/status", browser.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        let created = browser.command(
            "POST",
            "/session",
            Some(json!({
                "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--window-size=1280,900",
                        ],
                    },
                }},
            })),
        );
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id: {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; its `value`. Fails the test on a WebDriver error.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, body) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string().as_bytes()),
        };
        let mut response = result.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let answer: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: not JSON ({e}): {text}"));
        assert_eq!(status, 200, "WebDriver {method} {path}: {answer}");
        answer["value"].clone()
    }

    fn in_session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.in_session("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.in_session("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body) in the page; what it returns.
    fn run(&self, script: &str) -> Value {
        self.in_session(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Waits until `script` returns true, for at most `limit`.
    fn wait_until(&self, what: &str, limit: Duration, script: &str) {
        let deadline = Instant::now() + limit;
        while self.run(script) != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "{what} within {limit:?}; page text:\n{}",
                self.run("return document.body ? document.body.innerText : ''")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> String {
        let found = self.in_session(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.in_session("POST", &format!("/element/{id}/clear"), None);
        self.in_session(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.in_session("POST", &format!("/element/{id}/click"), None);
    }

    fn text(&self, css: &str) -> String {
        let id = self.element(css);
        self.in_session("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves a PNG screenshot of the window as `path`.
    fn screenshot(&self, path: &Path) {
        let b64 = self.in_session("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("screenshot as base64"))
            .expect("screenshot decodes");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Ends the browser; ChromeDriver's process group goes below in any case.
            let _ = self
                .agent
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        // SAFETY: kill only sends a signal to the process group this test started.
        unsafe {
            libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// The one-time password from the first-start log line.
fn one_time_password(server: &Server) -> String {
    let marker = "one-time password ";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log();
        if let Some(at) = log.find(marker)
            && let Some(p) = log[at + marker.len()..].split_whitespace().next()
        {
            return p.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no one-time password in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where screenshots go: `docs/screenshots/` with `IMSS_SCREENSHOTS=1`, else `fallback`.
fn screenshot_dir(fallback: &Path) -> PathBuf {
    if std::env::var("IMSS_SCREENSHOTS").as_deref() == Ok("1") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).expect("create docs/screenshots");
        dir
    } else {
        fallback.to_path_buf()
    }
}

#[test]
fn login_password_change_and_a_live_dashboard() {
    let browser = Browser::start();
    let server = start_server(
        "[[external_audio]]\nname = \"beep\"\nkind = \"tone\"\nfrequency_hz = 440\n",
        |_| {},
    );
    let password = one_time_password(&server);
    let shots = screenshot_dir(server.dir.path());
    let base = format!("http://{}", server.http);

    // Without a session the dashboard sends the browser to the login form.
    browser.open(&format!("{base}/"));
    assert_eq!(browser.url(), format!("{base}/login"));
    browser.wait_until(
        "the login form",
        Duration::from_secs(10),
        "return document.readyState === 'complete' && !document.getElementById('login').hidden",
    );
    browser.screenshot(&shots.join("login.png"));

    browser.type_into("#user", "admin");
    browser.type_into("#password", &password);
    browser.click("#login button[type=submit]");
    browser.wait_until(
        "the new-password form after the one-time login",
        Duration::from_secs(20),
        "return !document.getElementById('change').hidden",
    );
    let fresh = "a-new-admin-password-1";
    browser.type_into("#new-password", fresh);
    browser.type_into("#repeat-password", fresh);
    browser.click("#change button[type=submit]");

    // The dashboard, fed by the live feed.
    browser.wait_until(
        "the dashboard with live figures",
        Duration::from_secs(20),
        "return location.pathname === '/' && document.getElementById('feed') !== null \
         && document.getElementById('feed').textContent === 'live'",
    );
    assert_eq!(browser.text("#server-name"), "test");
    assert!(
        browser.text("#server-version").starts_with("imss "),
        "{}",
        browser.text("#server-version")
    );
    assert_eq!(browser.text("#sessions"), "0");
    let sources = browser.text("#sources");
    assert!(sources.contains("beep"), "{sources}");

    let paint = browser.run(
        "return performance.getEntriesByType('paint')\
         .map(e => ({ name: e.name, ms: e.startTime }))",
    );
    let first_paint = paint
        .as_array()
        .and_then(|entries| {
            entries
                .iter()
                .find(|e| e["name"] == "first-contentful-paint")
                .or(entries.first())
        })
        .and_then(|e| e["ms"].as_f64())
        .unwrap_or_else(|| panic!("no paint entries: {paint}"));
    println!("dashboard paint entries: {paint}");
    println!("dashboard first contentful paint: {first_paint:.1} ms");

    // A caller of the live source: the figures change without a reload of the page.
    browser.run("window.imssNoReload = true; return true");
    let uri = format!("sip:beep@{}", server.sip);
    let caller = std::thread::spawn(move || {
        run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_imss"))
                .args([
                    "call",
                    &uri,
                    "--seconds",
                    "6",
                    "--out",
                    "/dev/null",
                    "--json",
                ])
                .env("RUST_LOG", "warn"),
            Duration::from_secs(40),
        )
    });
    browser.wait_until(
        "one session on the dashboard during the call",
        Duration::from_secs(15),
        "return document.getElementById('sessions').textContent === '1'",
    );
    assert_eq!(browser.run("return window.imssNoReload === true"), true);
    browser.wait_until(
        "one listener of beep in the sources table",
        Duration::from_secs(5),
        "return [...document.querySelectorAll('#sources tr')]\
         .some(r => r.cells[0].textContent === 'beep' && r.cells[3].textContent === '1')",
    );
    // A few samples on the chart before the picture.
    std::thread::sleep(Duration::from_secs(2));
    browser.screenshot(&shots.join("dashboard.png"));

    let (status, out, err) = caller.join().expect("caller thread");
    assert!(status.success(), "imss call: {out}\n{err}");
    browser.wait_until(
        "no session after the call",
        Duration::from_secs(15),
        "return document.getElementById('sessions').textContent === '0'",
    );
    assert_eq!(browser.run("return window.imssNoReload === true"), true);
    println!("screenshots in {}", shots.display());
}
