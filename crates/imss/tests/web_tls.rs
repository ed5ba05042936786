//! HTTPS on the web interface's port (`http.tls_cert`, `http.tls_key`) against the real
//! server: a rustls client trusting only the test certificate, `Secure` session cookies, a
//! clear-text client refused without harm, and a renewed certificate used for new
//! connections without a restart (a broken renewal keeps the previous one).

mod support;

use rustls_pki_types::CertificateDer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::api::{config_path, imss, reload};
use support::start_server;
use tokio_rustls::rustls;

const PASSWORD: &str = "correct horse battery staple";

/// A self-signed certificate for localhost written to `cert`/`key`; its DER.
fn certificate(cert: &Path, key: &Path) -> CertificateDer<'static> {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen");
    // Written beside and renamed, as certificate renewal tools do.
    let tmp = cert.with_extension("new");
    std::fs::write(&tmp, pair.cert.pem()).expect("write cert");
    std::fs::rename(&tmp, cert).expect("rename cert");
    std::fs::write(&tmp, pair.key_pair.serialize_pem()).expect("write key");
    std::fs::rename(&tmp, key).expect("rename key");
    pair.cert.der().clone()
}

/// One HTTPS request with a client trusting only `trusted`: (status line and headers, body),
/// and the certificate the server presented; `Err` when the handshake fails.
fn https(
    addr: SocketAddr,
    trusted: &CertificateDer<'_>,
    request: &str,
) -> Result<(String, String, CertificateDer<'static>), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone().into_owned()).expect("trust");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let presented = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a server certificate")
        .clone()
        .into_owned();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    Ok((head.to_string(), body.to_string(), presented))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

#[test]
fn the_web_interface_serves_https_and_picks_up_a_renewed_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("web.pem"), certs.path().join("web.key"));
    let first = certificate(&cert, &key);
    let server = start_server(
        &format!(
            "http.tls_cert = \"{}\"\nhttp.tls_key = \"{}\"",
            cert.display(),
            key.display()
        ),
        |_| {},
    );
    let (head, body, presented) = https(server.http, &first, &get("/healthz")).expect("HTTPS");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "ok\n");
    assert_eq!(presented, first);

    // Session cookies are Secure under TLS.
    let path = config_path(&server);
    let (ok, _, err) = imss(
        &[
            "admin",
            "set-password",
            "alice",
            "--config",
            path.to_str().unwrap(),
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "{err}");
    reload(&server);
    let login = serde_json::json!({"user": "alice", "password": PASSWORD}).to_string();
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{login}",
        login.len()
    );
    let (head, _, _) = https(server.http, &first, &request).expect("login over HTTPS");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");

    // A clear-text client gets no answer; the next HTTPS client is served.
    let mut plain = TcpStream::connect(server.http).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain.write_all(get("/healthz").as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("ok\n"),
        "served in clear: {answer:?}"
    );
    assert!(https(server.http, &first, &get("/healthz")).is_ok());

    // A renewed certificate: new connections get it, without a restart.
    std::thread::sleep(Duration::from_millis(1100));
    let second = certificate(&cert, &key);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((head, _, presented)) = https(server.http, &second, &get("/healthz")) {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert_eq!(presented, second);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not used"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        https(server.http, &first, &get("/healthz")).is_err(),
        "the old certificate is still presented"
    );

    // A broken renewal is logged and the working certificate stays.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .log()
        .contains("cannot be used: the previous one stays")
    {
        let _ = https(server.http, &second, &get("/healthz"));
        assert!(
            Instant::now() < deadline,
            "no error logged:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (head, _, presented) = https(server.http, &second, &get("/healthz")).expect("still served");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(presented, second);
}

#[test]
fn a_web_certificate_that_cannot_be_used_stops_the_start_naming_the_key() {
    let certs = tempfile::tempdir().unwrap();
    let cert = certs.path().join("missing.pem");
    let key = certs.path().join("missing.key");
    let config = certs.path().join("imss.toml");
    std::fs::write(
        &config,
        format!(
            "[general]\ndata_dir = \"{}\"\n[sip]\nbind = \"127.0.0.1\"\nport = 0\n[mrcp]\nbind = \"127.0.0.1\"\nport = 0\n[http]\nbind = \"127.0.0.1\"\nport = 0\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            certs.path().join("data").display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imss"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run imss");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http.tls_cert"), "{err}");
    assert!(err.contains("missing.pem"), "{err}");
}
