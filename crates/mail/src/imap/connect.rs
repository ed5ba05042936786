//! Opening an IMAP session step by step: name resolution, TCP, TLS (implicit or
//! STARTTLS), the server greeting, and login. Each step has its own error, so that
//! [`super::test_connection`] can say which one failed.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::error::Error as ImapError;
use async_imap::imap_proto::{Response, Status};
use async_imap::{Authenticator, Client, Session};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Sleep, sleep, timeout};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::WebPkiSupportedAlgorithms;
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::{AuthMethod, ImapSettings, TlsMode};
use crate::MailError;

/// A logged-in IMAP session over this crate's transport.
pub(crate) type ImapSession = Session<MailStream>;

/// Who logs in, and how.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub user: String,
    pub password: String,
    pub method: AuthMethod,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<set>")
            .field("method", &self.method)
            .finish()
    }
}

/// A byte stream whose reads and writes fail with [`io::ErrorKind::TimedOut`] when no
/// progress is made for `limit`. The clock starts when an operation first has to wait
/// and stops at any progress, so a long download that keeps flowing never times out and
/// a stalled one always does. [`Timed::restart`] clears a clock left over from an
/// abandoned operation before a session is used again.
pub(crate) struct Timed<S> {
    inner: S,
    limit: Duration,
    read_clock: Option<Pin<Box<Sleep>>>,
    write_clock: Option<Pin<Box<Sleep>>>,
}

impl<S> Timed<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Timed {
            inner,
            limit,
            read_clock: None,
            write_clock: None,
        }
    }

    /// Forgets any running clock.
    pub(crate) fn restart(&mut self) {
        self.read_clock = None;
        self.write_clock = None;
    }
}

fn poll_clock(
    clock: &mut Option<Pin<Box<Sleep>>>,
    limit: Duration,
    cx: &mut Context<'_>,
    what: &str,
) -> Poll<io::Error> {
    let sleep = clock.get_or_insert_with(|| Box::pin(sleep(limit)));
    match sleep.as_mut().poll(cx) {
        Poll::Ready(()) => {
            *clock = None;
            Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no {what} progress for {limit:?}"),
            ))
        }
        Poll::Pending => Poll::Pending,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_clock = None;
                Poll::Ready(r)
            }
            Poll::Pending => poll_clock(&mut this.read_clock, this.limit, cx, "read").map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.write_clock = None;
                Poll::Ready(r)
            }
            Poll::Pending => poll_clock(&mut this.write_clock, this.limit, cx, "write").map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                this.write_clock = None;
                Poll::Ready(r)
            }
            Poll::Pending => poll_clock(&mut this.write_clock, this.limit, cx, "write").map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The transport under an IMAP session: plain TCP or TLS over TCP.
pub(crate) enum MailStream {
    Plain(Timed<TcpStream>),
    Tls(Box<TlsStream<Timed<TcpStream>>>),
}

impl MailStream {
    /// The timed TCP stream at the bottom.
    pub(crate) fn timed(&mut self) -> &mut Timed<TcpStream> {
        match self {
            MailStream::Plain(t) => t,
            MailStream::Tls(s) => s.get_mut().0,
        }
    }
}

impl fmt::Debug for MailStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailStream::Plain(_) => f.write_str("MailStream::Plain"),
            MailStream::Tls(_) => f.write_str("MailStream::Tls"),
        }
    }
}

impl AsyncRead for MailStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The rustls configuration the settings ask for: Mozilla's roots, or only the private
/// CA in `ca_file`, or no verification at all.
pub(crate) fn tls_config(settings: &ImapSettings) -> Result<Arc<ClientConfig>, MailError> {
    let tls_error = |detail: String| MailError::Tls {
        host: settings.host.clone(),
        detail,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("TLS set-up: {e}")))?;
    let config = if !settings.verify_certificates {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match &settings.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| tls_error(format!("reading CA file {}: {e}", path.display())))?;
                for cert in certs {
                    let cert = cert.map_err(|e| {
                        tls_error(format!("reading CA file {}: {e}", path.display()))
                    })?;
                    roots
                        .add(cert)
                        .map_err(|e| tls_error(format!("CA file {}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(tls_error(format!(
                        "CA file {} holds no certificate",
                        path.display()
                    )));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// For `verify_certificates = false`: any certificate is accepted, but the handshake's
/// signatures are still checked so the session keys belong to whoever sent it.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Step `dns`: the server's addresses.
pub(crate) async fn resolve(settings: &ImapSettings) -> Result<Vec<SocketAddr>, MailError> {
    let host = settings.host.trim_start_matches('[').trim_end_matches(']');
    let dns_error = |detail: String| MailError::Dns {
        host: settings.host.clone(),
        detail,
    };
    let lookup = tokio::net::lookup_host((host, settings.port));
    let addrs: Vec<SocketAddr> = match timeout(settings.connect_timeout, lookup).await {
        Err(_) => {
            return Err(MailError::Timeout {
                step: format!("resolving {}", settings.host),
                after: settings.connect_timeout,
            });
        }
        Ok(Err(e)) => return Err(dns_error(e.to_string())),
        Ok(Ok(addrs)) => addrs.collect(),
    };
    if addrs.is_empty() {
        return Err(dns_error("no address".to_owned()));
    }
    Ok(addrs)
}

/// Step `tcp`: a connection to the first address that answers, all within
/// `connect_timeout`.
pub(crate) async fn connect_tcp(
    settings: &ImapSettings,
    addrs: &[SocketAddr],
) -> Result<TcpStream, MailError> {
    let attempt = async {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some((addr, e)),
            }
        }
        Err(match last {
            Some((addr, e)) => MailError::Connect {
                addr: addr.to_string(),
                detail: e.to_string(),
            },
            None => MailError::Connect {
                addr: format!("{}:{}", settings.host, settings.port),
                detail: "no address".to_owned(),
            },
        })
    };
    match timeout(settings.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(MailError::Timeout {
            step: format!("connecting to {}:{}", settings.host, settings.port),
            after: settings.connect_timeout,
        }),
    }
}

/// Step `tls` (and the greeting): the transport the settings ask for, with the server's
/// greeting read. For STARTTLS the greeting is read in plain text first, as RFC 3501
/// §6.2.1 has it; nothing read before the handshake is kept.
pub(crate) async fn establish(
    settings: &ImapSettings,
    tls: Option<&Arc<ClientConfig>>,
    tcp: TcpStream,
) -> Result<Client<MailStream>, MailError> {
    let timed = Timed::new(tcp, settings.read_timeout);
    match settings.tls {
        TlsMode::None => {
            let mut client = Client::new(MailStream::Plain(timed));
            read_greeting(settings, &mut client).await?;
            Ok(client)
        }
        TlsMode::Implicit => {
            let stream = handshake(settings, tls, timed).await?;
            let mut client = Client::new(stream);
            read_greeting(settings, &mut client).await?;
            Ok(client)
        }
        TlsMode::StartTls => {
            let mut client = Client::new(MailStream::Plain(timed));
            read_greeting(settings, &mut client).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| match e {
                    ImapError::No(text) | ImapError::Bad(text) => MailError::Tls {
                        host: settings.host.clone(),
                        detail: format!("server refused STARTTLS: {}", server_text(&text)),
                    },
                    e => imap_error(e, "starting TLS (STARTTLS)", settings.read_timeout),
                })?;
            let MailStream::Plain(timed) = client.into_inner() else {
                return Err(MailError::Protocol {
                    detail: "STARTTLS on a connection that already uses TLS".to_owned(),
                });
            };
            let stream = handshake(settings, tls, timed).await?;
            Ok(Client::new(stream))
        }
    }
}

async fn handshake(
    settings: &ImapSettings,
    tls: Option<&Arc<ClientConfig>>,
    timed: Timed<TcpStream>,
) -> Result<MailStream, MailError> {
    let tls_error = |detail: String| MailError::Tls {
        host: settings.host.clone(),
        detail,
    };
    let config = tls.ok_or_else(|| tls_error("TLS is not configured".to_owned()))?;
    let host = settings.host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| tls_error(format!("{host:?} is not a valid TLS server name: {e}")))?;
    let connect = TlsConnector::from(config.clone()).connect(name, timed);
    match timeout(settings.connect_timeout, connect).await {
        Err(_) => Err(MailError::Timeout {
            step: "in the TLS handshake".to_owned(),
            after: settings.connect_timeout,
        }),
        Ok(Err(e)) => Err(tls_error(describe_tls_error(&e))),
        Ok(Ok(stream)) => Ok(MailStream::Tls(Box::new(stream))),
    }
}

fn describe_tls_error(e: &io::Error) -> String {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match inner {
            rustls::Error::InvalidCertificate(cert) => {
                format!("server certificate rejected: {cert:?}")
            }
            other => other.to_string(),
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
            "server closed the connection during the TLS handshake".to_owned()
        }
        io::ErrorKind::TimedOut => format!("handshake stalled: {e}"),
        _ => e.to_string(),
    }
}

async fn read_greeting(
    settings: &ImapSettings,
    client: &mut Client<MailStream>,
) -> Result<(), MailError> {
    let response = client
        .read_response()
        .await
        .map_err(|e| io_error(e, "reading the server greeting", settings.read_timeout))?;
    let Some(response) = response else {
        return Err(MailError::Closed {
            during: "reading the server greeting".to_owned(),
        });
    };
    match response.parsed() {
        Response::Data {
            status: Status::Ok, ..
        } => Ok(()),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(MailError::Closed {
            during: format!(
                "greeting (server said BYE: {})",
                outcome.information.as_deref().unwrap_or("")
            ),
        }),
        Response::Data {
            status: Status::PreAuth,
            ..
        } => Err(MailError::Protocol {
            detail: "server pre-authenticated the connection; a login is required".to_owned(),
        }),
        other => Err(MailError::Protocol {
            detail: format!("unexpected greeting {:?}", truncate_debug(other)),
        }),
    }
}

struct PlainAuth<'a> {
    user: &'a str,
    password: &'a str,
}

impl Authenticator for PlainAuth<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Self::Response {
        // RFC 4616: authzid (empty) NUL authcid NUL passwd.
        let mut out = Vec::with_capacity(self.user.len() + self.password.len() + 2);
        out.push(0);
        out.extend_from_slice(self.user.as_bytes());
        out.push(0);
        out.extend_from_slice(self.password.as_bytes());
        out
    }
}

/// Step `login`: LOGIN or AUTHENTICATE PLAIN. The password never appears in an error.
pub(crate) async fn login(
    settings: &ImapSettings,
    client: Client<MailStream>,
    creds: &Credentials,
) -> Result<ImapSession, MailError> {
    let result = match creds.method {
        AuthMethod::Login => client.login(&creds.user, &creds.password).await,
        AuthMethod::Plain => {
            client
                .authenticate(
                    "PLAIN",
                    PlainAuth {
                        user: &creds.user,
                        password: &creds.password,
                    },
                )
                .await
        }
    };
    result.map_err(|(e, _client)| match e {
        ImapError::No(text) | ImapError::Bad(text) => MailError::Auth {
            user: creds.user.clone(),
            detail: server_text(&text),
        },
        ImapError::Validate(_) => MailError::Auth {
            user: creds.user.clone(),
            detail: "the user name or password contains a line break".to_owned(),
        },
        e => imap_error(e, "logging in", settings.read_timeout),
    })
}

/// All steps: a logged-in session.
pub(crate) async fn open(
    settings: &ImapSettings,
    tls: Option<&Arc<ClientConfig>>,
    creds: &Credentials,
) -> Result<ImapSession, MailError> {
    let addrs = resolve(settings).await?;
    let tcp = connect_tcp(settings, &addrs).await?;
    let client = establish(settings, tls, tcp).await?;
    login(settings, client, creds).await
}

/// The human part of async-imap's rendering of a NO or BAD response
/// (`code: …, info: Some("text")`).
pub(crate) fn server_text(text: &str) -> String {
    if let Some(start) = text.find("info: Some(\"") {
        let rest = &text[start + "info: Some(\"".len()..];
        if let Some(end) = rest.rfind("\")") {
            return rest[..end].replace("\\\"", "\"");
        }
    }
    text.to_owned()
}

fn truncate_debug<T: fmt::Debug>(value: &T) -> String {
    let mut s = format!("{value:?}");
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Maps a transport error.
pub(crate) fn io_error(e: io::Error, during: &str, read_timeout: Duration) -> MailError {
    match e.kind() {
        io::ErrorKind::TimedOut => MailError::Timeout {
            step: during.to_owned(),
            after: read_timeout,
        },
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::NotConnected => MailError::Closed {
            during: during.to_owned(),
        },
        _ => MailError::Protocol {
            detail: format!("{during}: {e}"),
        },
    }
}

/// Maps an async-imap error that has no more specific meaning where it happened.
pub(crate) fn imap_error(e: ImapError, during: &str, read_timeout: Duration) -> MailError {
    match e {
        ImapError::Io(e) => io_error(e, during, read_timeout),
        ImapError::ConnectionLost => MailError::Closed {
            during: during.to_owned(),
        },
        ImapError::No(text) | ImapError::Bad(text) => MailError::Protocol {
            detail: format!("{during}: server answered {}", server_text(&text)),
        },
        other => MailError::Protocol {
            detail: format!("{during}: {other}"),
        },
    }
}
