//! Crash safety of configuration saves: `imss admin create-token` (a real save: load,
//! change, validate, write atomically, audit) is killed with SIGKILL at random moments, many
//! times. After every kill the file on disk must be a valid configuration, either the one
//! before the save or the one after it — never a mix, never empty.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use imss_server::Config;

/// The API token names in the file, which must load and validate.
fn token_names(path: &Path) -> BTreeSet<String> {
    let config = Config::load(path).unwrap_or_else(|e| {
        panic!(
            "the file does not load after a kill: {e}\n{}",
            std::fs::read_to_string(path).unwrap_or_default()
        )
    });
    config.http.api_tokens.into_iter().map(|t| t.name).collect()
}

#[test]
fn a_save_killed_at_any_moment_leaves_the_old_or_the_new_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("imss.toml");
    std::fs::write(
        &path,
        "# imss on host A\n[general]\nname = \"a\"\n[sip]\nport = 5070\n",
    )
    .expect("write config");
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut random = move |below: u64| {
        // xorshift64: enough to spread the kills over the save.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let mut names = token_names(&path);
    let (mut completed, mut interrupted) = (0, 0);
    let rounds = 60;
    for round in 0..rounds {
        let name = format!("token-{round}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_imss"))
            .args(["admin", "create-token", &name, "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("imss admin");
        // Up to 30 ms: the whole command takes a few milliseconds to a few tens.
        let delay = Duration::from_micros(random(30_000));
        let start = Instant::now();
        while start.elapsed() < delay {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.kill();
        let status = child.wait().expect("wait");
        let after = token_names(&path);
        let mut with_new = names.clone();
        with_new.insert(name.clone());
        if after == with_new {
            completed += 1;
            assert!(
                status.success() || status.code().is_none(),
                "round {round}: {status}"
            );
        } else {
            assert_eq!(
                after, names,
                "round {round}: the file is neither the old nor the new version"
            );
            interrupted += 1;
        }
        names = after;
    }
    // Both outcomes happened, or the test did not test the interruption.
    assert!(
        completed > 0 && interrupted > 0,
        "{completed} saves completed, {interrupted} interrupted"
    );
    // The audit log holds whole lines (a save killed after writing the file may miss its
    // line), and no token or token hash.
    let audit = std::fs::read_to_string(dir.path().join("imss.toml.audit")).unwrap_or_default();
    assert!(audit.lines().count() >= 1, "{audit}");
    for line in audit.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a broken audit line ({e}): {line:?}"));
        assert!(
            entry["who"]
                .as_str()
                .is_some_and(|w| w.starts_with("imss admin"))
        );
    }
    let hashes: Vec<String> = Config::load(&path)
        .expect("load")
        .http
        .api_tokens
        .into_iter()
        .map(|t| t.hash)
        .collect();
    assert!(
        !audit.contains("imss_") && hashes.iter().all(|h| !audit.contains(h.as_str())),
        "a token or its hash in the audit log"
    );
    // The comment outside the changed section survives every save.
    assert!(
        std::fs::read_to_string(&path)
            .expect("read")
            .contains("# imss on host A")
    );
}

/// Starts `imss serve --config path`; returns the child and its HTTP address.
fn serve(path: &Path) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_imss"))
        .args(["serve", "--config"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("imss serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let http = ready["http"]
        .as_str()
        .expect("http address")
        .parse()
        .expect("address");
    (child, http)
}

#[test]
fn the_server_killed_while_saving_from_the_api_leaves_the_old_or_the_new_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("imss.toml");
    std::fs::write(
        &path,
        format!(
            "# imss on host B\n[general]\nname = \"b\"\nlocation = \"start\"\ndata_dir = \"{}\"\n\
             [sip]\nbind = \"127.0.0.1\"\nport = 0\n[mrcp]\nbind = \"127.0.0.1\"\nport = 0\n\
             [http]\nbind = \"127.0.0.1\"\nport = 0\n[rtp]\nbind = \"127.0.0.1\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write config");
    let token = {
        let out = Command::new(env!("CARGO_BIN_EXE_imss"))
            .args(["admin", "create-token", "crash", "--config"])
            .arg(&path)
            .output()
            .expect("create-token");
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
        | 1;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let location = |path: &Path| -> String {
        Config::load(path)
            .unwrap_or_else(|e| {
                panic!(
                    "the file does not load after a kill: {e}\n{}",
                    std::fs::read_to_string(path).unwrap_or_default()
                )
            })
            .general
            .location
    };
    let (mut completed, mut interrupted) = (0, 0);
    let mut before = location(&path);
    for round in 0..25 {
        let (mut child, http) = serve(&path);
        let new = format!("site-{round}");
        let url = format!("http://{http}/api/v1/config/general");
        let body = serde_json::json!({ "location": new }).to_string();
        let request = {
            let agent = agent.clone();
            let auth = format!("Bearer {token}");
            std::thread::spawn(move || {
                agent
                    .put(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .send(body.as_bytes())
                    .map(|r| r.status().as_u16())
            })
        };
        // The save takes a few milliseconds after the request arrives.
        std::thread::sleep(Duration::from_micros(random(12_000)));
        let _ = child.kill();
        let _ = child.wait();
        let answered = request.join().expect("request thread");
        let after = location(&path);
        if after == new {
            completed += 1;
        } else {
            assert_eq!(
                after, before,
                "round {round}: neither the old nor the new file"
            );
            assert!(
                !matches!(answered, Ok(200)),
                "round {round}: the save was confirmed but is not in the file"
            );
            interrupted += 1;
        }
        before = after;
    }
    assert!(
        completed > 0 && interrupted > 0,
        "{completed} saves completed, {interrupted} interrupted"
    );
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("# imss on host B")
    );
}
