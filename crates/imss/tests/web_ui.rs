//! The web interface in the real browser: headless Chromium driven by ChromeDriver over the
//! W3C WebDriver protocol, against the real binary. Logs in with the one-time password,
//! changes it, watches the dashboard follow a real call through the live feed, and works
//! every page: settings saved to the file (and refused after someone else's change), a live
//! source added and listened to, a session ended, a file uploaded and played in a SIP call.
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
use support::{Server, read_wav, require, run_with_timeout, start_server, write_wav};

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
                            "--disable-dev-shm-usage",
                            "--window-size=1280,900",
                            // Listen and Play start audio from a click; no speakers here.
                            "--autoplay-policy=no-user-gesture-required",
                            "--mute-audio",
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
        match self.try_command(method, path, body) {
            Ok(value) => value,
            Err(answer) => panic!("WebDriver {method} {path}: {answer}"),
        }
    }

    /// One WebDriver command: its `value`, or the whole answer of a WebDriver error.
    fn try_command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
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
        if status == 200 {
            Ok(answer["value"].clone())
        } else {
            Err(answer)
        }
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

    /// Waits until `script` returns true, for at most `limit`; a script that throws (an
    /// element not there yet) counts as false.
    fn wait_until(&self, what: &str, limit: Duration, script: &str) {
        let deadline = Instant::now() + limit;
        let path = format!("/session/{}/execute/sync", self.session);
        let body = json!({ "script": script, "args": [] });
        while self.try_command("POST", &path, Some(body.clone())) != Ok(Value::Bool(true)) {
            assert!(
                Instant::now() < deadline,
                "{what} within {limit:?}; audio elements: {}; page text:\n{}",
                self.run(
                    "return [...document.querySelectorAll('audio')].map(a => ({ id: a.id, \
                     src: a.src, paused: a.paused, time: a.currentTime, ready: a.readyState, \
                     network: a.networkState, error: a.error && a.error.message }))"
                ),
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

    /// Types a file's path into an `<input type=file>`: the browser picks that file.
    fn choose_file(&self, css: &str, file: &Path) {
        let id = self.element(css);
        self.in_session(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": file.display().to_string() })),
        );
    }

    /// Waits for a `confirm()` dialog (at most 5 s) and accepts it; its text.
    fn accept_confirm(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let path = format!("/session/{}/alert/text", self.session);
            if let Ok(text) = self.try_command("GET", &path, None) {
                self.in_session("POST", "/alert/accept", Some(json!({})));
                return text.as_str().unwrap_or_default().to_string();
            }
            assert!(Instant::now() < deadline, "no confirm() dialog within 5 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The handle of the window in use.
    fn window(&self) -> String {
        self.in_session("GET", "/window", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Opens a new tab and switches to it; the tab before keeps running (and playing).
    fn new_tab(&self) -> String {
        let made = self.in_session("POST", "/window/new", Some(json!({ "type": "tab" })));
        let handle = made["handle"]
            .as_str()
            .expect("new tab's handle")
            .to_string();
        self.switch_to(&handle);
        handle
    }

    fn switch_to(&self, handle: &str) {
        self.in_session("POST", "/window", Some(json!({ "handle": handle })));
    }

    /// Saves a PNG screenshot of the whole page (not only the window) as `path`.
    fn screenshot(&self, path: &Path) {
        // The capture's clip is relative to the scrolled position: from the top.
        let height = self
            .run("window.scrollTo(0, 0); return Math.ceil(document.documentElement.scrollHeight)")
            .as_f64()
            .unwrap_or(900.0)
            .clamp(600.0, 4000.0);
        let shot = self.in_session(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": "Page.captureScreenshot", "params": {
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": 1280, "height": height, "scale": 1 },
            }})),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot as base64"))
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

/// The admin's password after the first login.
const ADMIN_PASSWORD: &str = "a-new-admin-password-1";

/// On the login page: logs in as admin with the one-time `password`, sets
/// [`ADMIN_PASSWORD`] and waits for the dashboard.
fn log_in_first_time(browser: &Browser, password: &str) {
    browser.wait_until(
        "the login form",
        Duration::from_secs(10),
        "return document.readyState === 'complete' && !document.getElementById('login').hidden",
    );
    browser.type_into("#user", "admin");
    browser.type_into("#password", password);
    browser.click("#login button[type=submit]");
    browser.wait_until(
        "the new-password form after the one-time login",
        Duration::from_secs(20),
        "return !document.getElementById('change').hidden",
    );
    browser.type_into("#new-password", ADMIN_PASSWORD);
    browser.type_into("#repeat-password", ADMIN_PASSWORD);
    browser.click("#change button[type=submit]");
    browser.wait_until(
        "the dashboard after the password change",
        Duration::from_secs(20),
        "return location.pathname === '/' && document.getElementById('who') !== null",
    );
}

/// A browser logged in to a new server started with `extra_toml`.
fn logged_in(extra_toml: &str) -> (Browser, Server, String) {
    let browser = Browser::start();
    let server = start_server(extra_toml, |_| {});
    let password = one_time_password(&server);
    let base = format!("http://{}", server.http);
    browser.open(&format!("{base}/login"));
    log_in_first_time(&browser, &password);
    (browser, server, base)
}

/// Opens `path` and waits until its navigation bar is there, its entry marked, and
/// `ready` (a script returning a boolean) holds.
fn open_page(browser: &Browser, base: &str, path: &str, label: &str, ready: &str) {
    browser.open(&format!("{base}{path}"));
    browser.wait_until(
        &format!("the {label} page"),
        Duration::from_secs(15),
        &format!(
            "const marked = document.querySelector('nav a[aria-current=page]');\
             if (!marked || marked.textContent !== {label:?}) return false;\
             return (() => {{ {ready} }})() === true;"
        ),
    );
}

/// The loud part of 8 kHz `samples` (20 ms frames above −26 dBFS RMS): its length in
/// seconds and its frequency by zero crossings (counted across the frames' edges too).
fn loud_tone(samples: &[f32]) -> (f64, f64) {
    let loud: Vec<bool> = samples
        .chunks(160)
        .map(|frame| (frame.iter().map(|x| x * x).sum::<f32>() / frame.len() as f32).sqrt() > 0.05)
        .collect();
    let is_loud = |i: usize| loud[i / 160];
    let crossings = (1..samples.len())
        .filter(|&i| is_loud(i) && is_loud(i - 1))
        .filter(|&i| (samples[i - 1] < 0.0) != (samples[i] < 0.0))
        .count();
    let seconds = (0..samples.len()).filter(|&i| is_loud(i)).count() as f64 / 8000.0;
    (seconds, crossings as f64 / 2.0 / seconds.max(1e-9))
}

/// A sine of `hz` at 0.5 full scale.
fn sine(rate: u32, hz: f64, seconds: f64) -> Vec<f32> {
    (0..(seconds * f64::from(rate)) as usize)
        .map(|i| (0.5 * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate)).sin()) as f32)
        .collect()
}

/// `imss call URI --seconds S --out OUT`, on a thread: its exit status, stdout and stderr.
fn call_in_background(
    uri: String,
    seconds: u32,
    out: PathBuf,
) -> std::thread::JoinHandle<(std::process::ExitStatus, String, String)> {
    std::thread::spawn(move || {
        run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_imss"))
                .args([
                    "call",
                    &uri,
                    "--seconds",
                    &seconds.to_string(),
                    "--json",
                    "--out",
                ])
                .arg(&out)
                .env("RUST_LOG", "warn"),
            Duration::from_secs(u64::from(seconds) + 30),
        )
    })
}

fn config_text(server: &Server) -> String {
    std::fs::read_to_string(server.dir.path().join("imss.toml")).expect("read imss.toml")
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

    log_in_first_time(&browser, &password);

    // The dashboard, fed by the live feed, under the navigation bar.
    browser.wait_until(
        "the dashboard with live figures",
        Duration::from_secs(20),
        "return location.pathname === '/' && document.getElementById('feed') !== null \
         && document.getElementById('feed').textContent === 'live'",
    );
    assert_eq!(browser.text("#server-name"), "test");
    assert_eq!(
        browser.text("nav a[aria-current=page]"),
        "Dashboard",
        "the current page is marked in the navigation bar"
    );
    assert!(
        browser.text("#who").contains("admin"),
        "{}",
        browser.text("#who")
    );
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

    // The charts start with the server's own history, from before the page opened.
    browser.wait_until(
        "chart samples older than the page",
        Duration::from_secs(5),
        "return samples.length > 1 && samples[0].t < performance.timeOrigin",
    );
    browser.wait_until(
        "the mail server's state",
        Duration::from_secs(5),
        "return document.getElementById('mail').textContent === 'not configured'",
    );

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

#[test]
fn settings_pages_save_to_the_file_and_explain_errors_and_conflicts() {
    let browser = Browser::start();
    let server = start_server("", |_| {});
    let password = one_time_password(&server);
    let shots = screenshot_dir(server.dir.path());
    let base = format!("http://{}", server.http);
    let toml = server.dir.path().join("imss.toml");

    // Without a login, every page sends the browser to the login form.
    for path in [
        "/sessions",
        "/general",
        "/audio",
        "/mail",
        "/sources",
        "/tts",
        "/files",
        "/admin",
    ] {
        browser.open(&format!("{base}{path}"));
        assert_eq!(
            browser.url(),
            format!("{base}/login"),
            "{path} without a login"
        );
    }
    log_in_first_time(&browser, &password);

    // General: a change of location is saved to the file and applied at once.
    let loaded = "return document.querySelector('input[name=location]').value !== ''";
    open_page(&browser, &base, "/general", "General", loaded);
    assert_eq!(
        browser.run("return document.querySelector('input[name=location]').value"),
        "default"
    );
    browser.type_into("input[name=location]", "lab-7");
    browser.click("form[data-section=general] button[type=submit]");
    browser.wait_until(
        "the saved location",
        Duration::from_secs(10),
        "const r = document.querySelector('form[data-section=general] .result');\
         return r.classList.contains('ok') && r.textContent.startsWith('Saved location.')",
    );
    assert!(
        config_text(&server).contains("location = \"lab-7\""),
        "{}",
        config_text(&server)
    );
    browser.screenshot(&shots.join("general.png"));

    // Someone else changes the file: a save from the page's older version is refused and
    // says why, and nothing is written.
    let mut text = config_text(&server);
    text.push_str("\n# edited by hand\n");
    std::fs::write(&toml, &text).expect("edit imss.toml");
    browser.type_into("input[name=location]", "lab-8");
    browser.click("form[data-section=general] button[type=submit]");
    browser.wait_until(
        "the conflict explained",
        Duration::from_secs(10),
        "const r = document.querySelector('form[data-section=general] .result');\
         return r.classList.contains('conflict')",
    );
    let message = browser.text("form[data-section=general] .result");
    assert!(message.contains("someone else changed"), "{message}");
    assert!(config_text(&server).contains("location = \"lab-7\""));
    // Loading again, then saving, works.
    browser.click("form[data-section=general] .result button");
    browser.wait_until(
        "the settings loaded again",
        Duration::from_secs(10),
        "const r = document.querySelector('form[data-section=general] .result');\
         return r.textContent.startsWith('Loaded the current settings')",
    );
    browser.type_into("input[name=location]", "lab-8");
    browser.click("form[data-section=general] button[type=submit]");
    browser.wait_until(
        "the second save",
        Duration::from_secs(10),
        "return document.querySelector('form[data-section=general] .result').classList.contains('ok')",
    );
    let text = config_text(&server);
    assert!(text.contains("location = \"lab-8\""), "{text}");

    // Audio: the RTP range as the file has it.
    open_page(
        &browser,
        &base,
        "/audio",
        "Audio",
        "return document.querySelector('input[name=port_min]').value !== '' \
         && !document.getElementById('caches').textContent.includes('Loading')",
    );
    let port_min = browser.run("return document.querySelector('input[name=port_min]').value");
    assert!(
        text.contains(&format!("port_min = {}", port_min.as_str().unwrap_or("?"))),
        "port_min {port_min} in\n{text}"
    );
    browser.screenshot(&shots.join("audio.png"));

    // Mail server: the test of the form's values names the step that failed; a value out
    // of range is refused with its message next to its input.
    open_page(
        &browser,
        &base,
        "/mail",
        "Mail server",
        "return document.getElementById('imap-users').textContent !== ''",
    );
    let closed = free_tcp_port();
    browser.type_into("input[name=imap_host]", "127.0.0.1");
    browser.type_into("input[name=imap_port]", &closed.to_string());
    browser.run(
        "const s = document.querySelector('select[name=imap_tls]'); s.value = 'none'; return true",
    );
    browser.click("#mail-test");
    browser.wait_until(
        "the connection test's result",
        Duration::from_secs(20),
        "return document.getElementById('mail-test-result').classList.contains('bad')",
    );
    let result = browser.text("#mail-test-result");
    assert!(
        result.contains("TCP connection"),
        "the TCP step fails on a closed port: {result}"
    );
    browser.type_into("input[name=imap_port]", "70000");
    browser.click("form[data-section=mail] button[type=submit]");
    browser.wait_until(
        "the port refused next to its input",
        Duration::from_secs(10),
        "const i = document.querySelector('input[name=imap_port]');\
         const e = i.closest('.field').querySelector('.field-error');\
         return e !== null && i.getAttribute('aria-invalid') === 'true'",
    );
    let error = browser.text("input[name=imap_port] ~ .field-error, .field-error");
    assert!(error.contains("70000"), "{error}");
    assert!(!config_text(&server).contains("imap_port"));
    browser.screenshot(&shots.join("mail.png"));

    // Text-to-speech: the spoken text plays in the page.
    open_page(
        &browser,
        &base,
        "/tts",
        "Text-to-speech",
        "return document.querySelector('input[name=voice]').value !== ''",
    );
    browser.type_into("#speak-text", "Thank you for calling. Please hold.");
    browser.click("#speak-button");
    browser.wait_until(
        "the spoken text decoded by the browser",
        Duration::from_secs(20),
        "const a = document.getElementById('speak-audio');\
         return a.src.startsWith('blob:') && a.duration > 1 && a.duration < 10",
    );
    browser.screenshot(&shots.join("tts.png"));

    // Administration: a token made here works, and the audit log has the changes above.
    open_page(
        &browser,
        &base,
        "/admin",
        "Administration",
        "return document.querySelector('#users tr[data-user=admin]') !== null \
         && document.querySelector('#audit td') !== null \
         && !document.getElementById('audit').textContent.includes('Loading')",
    );
    browser.type_into("#token-name", "monitoring");
    browser.click("#token-create");
    browser.wait_until(
        "the new token shown once",
        Duration::from_secs(10),
        "return document.getElementById('token-value').value.length > 16 \
         && document.querySelector('#tokens tr[data-token=monitoring]') !== null",
    );
    let token = browser.run("return document.getElementById('token-value').value");
    let token = token.as_str().expect("token").to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let status = agent
        .get(format!("{base}/api/v1/status"))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .expect("status with the new token")
        .status();
    assert_eq!(status, 200, "the token made on the page is accepted");
    // The log level applies at once, and the page says so.
    browser.type_into("form[data-section=general] input[name=log_level]", "debug");
    browser.click("form[data-section=general] button[type=submit]");
    browser.wait_until(
        "the log level applied",
        Duration::from_secs(10),
        "const r = document.querySelector('form[data-section=general] .result');\
         return r.classList.contains('ok') && r.textContent.includes('Applied at once: general.log_level')",
    );
    assert!(config_text(&server).contains("log_level = \"debug\""));
    browser.wait_until(
        "the audit log updated",
        Duration::from_secs(10),
        "return document.getElementById('audit').textContent.includes('general.log_level')",
    );
    let audit = browser.text("#audit");
    assert!(audit.contains("general.location"), "{audit}");
    assert!(audit.contains("lab-8"), "{audit}");
    browser.screenshot(&shots.join("admin.png"));

    // A viewer made here sees the settings but cannot change them.
    browser.type_into("#user-name", "watcher");
    browser.type_into("#user-password", "watcher-password-1");
    browser.run("document.getElementById('user-role').value = 'viewer'; return true");
    browser.click("#user-must-change");
    browser.click("#user-save");
    browser.wait_until(
        "the viewer in the users table",
        Duration::from_secs(10),
        "return document.querySelector('#users tr[data-user=watcher]') !== null",
    );
    browser.click("#logout");
    browser.wait_until(
        "the login form after logging out",
        Duration::from_secs(10),
        "return location.pathname === '/login' && document.readyState === 'complete'",
    );
    browser.open(&format!("{base}/general"));
    assert_eq!(browser.url(), format!("{base}/login"), "logged out");
    browser.type_into("#user", "watcher");
    browser.type_into("#password", "watcher-password-1");
    browser.click("#login button[type=submit]");
    browser.wait_until(
        "the viewer's dashboard",
        Duration::from_secs(20),
        "return location.pathname === '/' && document.getElementById('who') !== null",
    );
    assert!(browser.text("#who").contains("watcher (viewer)"));
    open_page(&browser, &base, "/general", "General", loaded);
    browser.wait_until(
        "the settings read-only for a viewer",
        Duration::from_secs(10),
        "return document.querySelector('input[name=location]').disabled \
         && document.querySelector('form[data-section=general] button[type=submit]').disabled \
         && document.querySelector('main .note').textContent.includes('viewer')",
    );
}

#[test]
fn a_live_source_added_in_the_browser_plays_and_its_caller_is_ended() {
    let (browser, server, base) = logged_in("");
    let shots = screenshot_dir(server.dir.path());
    let sources_ready =
        "return !document.getElementById('sources').textContent.includes('Loading')";
    open_page(&browser, &base, "/sources", "External audio", sources_ready);

    // A source the server refuses: the reason is shown next to the key at fault.
    browser.type_into("#source-form input[name=name]", "radio");
    browser.run(
        "const k = document.querySelector('#source-form select[name=kind]');\
         k.value = 'http'; k.dispatchEvent(new Event('change')); return true",
    );
    browser.type_into("#source-form input[name=url]", "ftp://radio.example/stream");
    browser.click("#source-save");
    browser.wait_until(
        "the URL refused next to its input",
        Duration::from_secs(10),
        "const i = document.querySelector('#source-form input[name=url]');\
         const e = i.closest('.field').querySelector('.field-error');\
         return e !== null && e.textContent.includes('ftp://') \
         && i.getAttribute('aria-invalid') === 'true'",
    );
    assert!(!config_text(&server).contains("radio"));

    // A 600 Hz tone, added with the form.
    browser.type_into("#source-form input[name=name]", "beep");
    browser.run(
        "const k = document.querySelector('#source-form select[name=kind]');\
         k.value = 'tone'; k.dispatchEvent(new Event('change')); return true",
    );
    browser.type_into("#source-form input[name=frequency_hz]", "600");
    browser.click("#source-save");
    browser.wait_until(
        "the new source in the table",
        Duration::from_secs(10),
        "return document.querySelector('#sources tr[data-name=beep]') !== null \
         && document.getElementById('source-result').classList.contains('ok')",
    );
    let text = config_text(&server);
    assert!(
        text.contains("name = \"beep\"") && text.contains("frequency_hz = 600"),
        "{text}"
    );

    // Listened to in the page: the browser plays the WAV stream, the source runs.
    browser.click("#sources tr[data-name=beep] button[data-action=listen]");
    browser.wait_until(
        "a second of the source heard in the page",
        Duration::from_secs(10),
        "return parseFloat(document.getElementById('listen').dataset.seconds || '0') >= 1.5",
    );
    let hz = browser.run("return parseFloat(document.getElementById('listen').dataset.hz)");
    let hz = hz.as_f64().unwrap_or(0.0);
    assert!((hz - 600.0).abs() < 15.0, "the page heard {hz:.1} Hz");
    browser.wait_until(
        "the source playing with one listener",
        Duration::from_secs(10),
        "const r = document.querySelector('#sources tr[data-name=beep]');\
         return r.cells[2].textContent === 'playing' && r.cells[3].textContent === '1'",
    );
    browser.screenshot(&shots.join("sources.png"));

    // The dashboard, in another tab while the first one listens, shows it playing.
    let listening = browser.window();
    browser.new_tab();
    browser.open(&format!("{base}/"));
    browser.wait_until(
        "the source playing on the dashboard",
        Duration::from_secs(15),
        "return [...document.querySelectorAll('#sources tr')].some(r => \
         r.cells[0].textContent === 'beep' && r.cells[2].textContent === 'playing' \
         && r.cells[3].textContent === '1')",
    );

    // A caller of the source is listed on the Sessions page, and ended from there.
    let out = server.dir.path().join("beep.wav");
    let started = Instant::now();
    let caller = call_in_background(format!("sip:beep@{}", server.sip), 25, out.clone());
    open_page(
        &browser,
        &base,
        "/sessions",
        "Sessions",
        "const r = document.querySelector('#sessions tr[data-id]');\
         return r !== null && parseInt(r.cells[6].textContent, 10) >= 3",
    );
    let row = browser.text("#sessions tr[data-id]");
    assert!(row.contains("SIP") && row.contains("beep"), "{row}");
    browser.screenshot(&shots.join("sessions.png"));
    browser.click("#sessions tr[data-id] button");
    let asked = browser.accept_confirm();
    assert!(asked.contains("hung up"), "{asked}");
    browser.wait_until(
        "the session ended",
        Duration::from_secs(10),
        "return document.getElementById('sessions-state').classList.contains('ok') \
         && document.querySelector('#sessions tr[data-id]') === null",
    );
    let (status, stdout, stderr) = caller.join().expect("caller thread");
    assert!(status.success(), "imss call: {stdout}\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the call of 25 s was ended from the page after {:?}",
        started.elapsed()
    );
    let (rate, samples) = read_wav(&out);
    assert_eq!(rate, 8000);
    let (seconds, hz) = loud_tone(&samples);
    assert!(seconds >= 2.0, "{seconds:.2} s of the tone heard");
    assert!((hz - 600.0).abs() < 15.0, "the caller heard {hz:.1} Hz");

    // Tested, changed and removed from the page.
    browser.switch_to(&listening);
    browser.click("#sources tr[data-name=beep] button[data-action=test]");
    browser.wait_until(
        "the upstream test's result",
        Duration::from_secs(15),
        "const r = document.getElementById('test-result');\
         return r.classList.contains('ok') || r.classList.contains('bad')",
    );
    let tested = browser.text("#test-result");
    assert!(tested.starts_with("beep works"), "{tested}");
    browser.click("#sources tr[data-name=beep] button[data-action=edit]");
    browser.wait_until(
        "the source in the editor",
        Duration::from_secs(5),
        "return document.querySelector('#source-form input[name=frequency_hz]').value === '600'",
    );
    browser.type_into("#source-form input[name=frequency_hz]", "800");
    browser.click("#source-save");
    browser.wait_until(
        "the source saved",
        Duration::from_secs(10),
        "return document.getElementById('source-result').classList.contains('ok')",
    );
    assert!(config_text(&server).contains("frequency_hz = 800"));
    browser.click("#sources tr[data-name=beep] button[data-action=remove]");
    browser.accept_confirm();
    browser.wait_until(
        "the source removed",
        Duration::from_secs(10),
        "return document.querySelector('#sources tr[data-name=beep]') === null",
    );
    assert!(!config_text(&server).contains("beep"));

    let heard = browser.run("return parseFloat(document.getElementById('listen').dataset.seconds)");
    assert!(
        heard.as_f64().unwrap_or(0.0) > 5.0,
        "the first tab listened all along: {heard} s"
    );
}

#[test]
fn an_uploaded_file_plays_in_a_sip_call() {
    let (browser, server, base) = logged_in("");
    let shots = screenshot_dir(server.dir.path());
    let upload_dir = server.dir.path().join("to-upload");
    std::fs::create_dir_all(&upload_dir).expect("mkdir");
    let wav = upload_dir.join("tone700.wav");
    write_wav(&wav, 16_000, &sine(16_000, 700.0, 2.5));
    let not_audio = upload_dir.join("notes.wav");
    std::fs::write(&not_audio, "these are not the sounds you are looking for").expect("write");
    let files_ready = "return document.getElementById('files-state').textContent !== ''";
    open_page(&browser, &base, "/files", "Audio files", files_ready);

    // Uploaded into a folder; decoded by the server, listed with its length.
    browser.choose_file("#upload-file", &wav);
    browser.type_into("#upload-folder", "prompts/web");
    browser.click("#upload-button");
    let row = "#files tr[data-path='prompts/web/tone700.wav']";
    browser.wait_until(
        "the uploaded file in the table",
        Duration::from_secs(15),
        &format!(
            "return document.getElementById('upload-result').classList.contains('ok') \
             && document.querySelector(\"{row}\") !== null"
        ),
    );
    let listed = browser.text(row);
    assert!(listed.contains("2.5 s"), "{listed}");
    assert!(server.audio().join("prompts/web/tone700.wav").exists());

    // The same again: it exists; replaced when asked to.
    browser.choose_file("#upload-file", &wav);
    browser.type_into("#upload-folder", "prompts/web");
    browser.click("#upload-button");
    browser.wait_until(
        "the offer to replace the file",
        Duration::from_secs(10),
        "return document.getElementById('upload-overwrite') !== null",
    );
    browser.click("#upload-overwrite");
    browser.wait_until(
        "the file replaced",
        Duration::from_secs(10),
        "return document.getElementById('upload-result').classList.contains('ok')",
    );

    // Played in the page, decoded to WAV by the server.
    browser.click(&format!("{row} button[data-action=play]"));
    browser.wait_until(
        "the file playing in the page",
        Duration::from_secs(10),
        "const a = document.getElementById('play-audio');\
         return a.currentTime > 0.3 && Math.abs(a.duration - 2.5) < 0.1",
    );
    browser.screenshot(&shots.join("files.png"));

    // Something that is not audio is refused with the decoder's reason.
    browser.choose_file("#upload-file", &not_audio);
    browser.click("#upload-button");
    browser.wait_until(
        "the refusal next to the file input",
        Duration::from_secs(10),
        "const e = document.querySelector('#upload .field-error');\
         return e !== null && e.textContent.length > 3",
    );
    assert!(!server.audio().join("notes.wav").exists());

    // Played to a SIP caller: the tone as uploaded.
    let out = server.dir.path().join("annc.wav");
    let caller = call_in_background(
        format!("sip:annc@{};play=prompts/web/tone700.wav", server.sip),
        8,
        out.clone(),
    );
    let (status, stdout, stderr) = caller.join().expect("caller thread");
    assert!(status.success(), "imss call: {stdout}\n{stderr}");
    let (rate, samples) = read_wav(&out);
    assert_eq!(rate, 8000);
    let (seconds, hz) = loud_tone(&samples);
    assert!(
        (seconds - 2.5).abs() < 0.15,
        "{seconds:.2} s of a 2.5 s file"
    );
    assert!((hz - 700.0).abs() < 10.0, "the caller heard {hz:.1} Hz");

    // Deleted from the page.
    browser.click(&format!("{row} button[data-action=delete]"));
    browser.accept_confirm();
    browser.wait_until(
        "the file gone from the table",
        Duration::from_secs(10),
        &format!("return document.querySelector(\"{row}\") === null"),
    );
    assert!(!server.audio().join("prompts/web/tone700.wav").exists());
}
