//! TLS and HTTP/2 for the end-to-end tests: a test authority and
//! certificates made by the `openssl` command, and a client that speaks
//! HTTP/1.1 or HTTP/2 over TLS (ALPN as asked), or HTTP/2 in clear text
//! with prior knowledge, several requests on one connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types};

/// A test authority and certificates it signed, in a directory.
pub struct Authority {
    pub dir: PathBuf,
}

impl Authority {
    /// A new authority in `dir` (`ca.pem`, `ca.key`).
    pub fn new(dir: &Path) -> Authority {
        std::fs::create_dir_all(dir).expect("certificate dir");
        openssl(
            dir,
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
             -keyout ca.key -out ca.pem -days 2 -subj '/CN=vigile e2e authority'",
        );
        Authority {
            dir: dir.to_path_buf(),
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `NAME.pem` (the certificate, then the authority's) and `NAME.key`
    /// for `localhost` and 127.0.0.1, common name `NAME`; `client` makes a
    /// client certificate.
    pub fn issue(&self, name: &str, client: bool) -> (PathBuf, PathBuf) {
        let usage = if client { "clientAuth" } else { "serverAuth" };
        openssl(
            &self.dir,
            &format!(
                "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                 -keyout {name}.key -out {name}.csr -subj /CN={name}
                 printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage={usage}\\n' > {name}.ext
                 openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                 -out {name}.crt -days 2 -extfile {name}.ext
                 cat {name}.crt ca.pem > {name}.pem"
            ),
        );
        (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        )
    }
}

fn openssl(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .args(["-c", &format!("set -e\n{script}")])
        .current_dir(dir)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An answer: status, headers (names in lower case), body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the client offers and trusts.
pub struct Client {
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    /// Trusts `ca`; offers `alpn` (empty: no ALPN), TLS 1.2 and 1.3 or
    /// TLS 1.2 only.
    pub fn new(ca: &Path, alpn: &[&[u8]], tls12_only: bool) -> Client {
        Client::with_identity(ca, alpn, tls12_only, None)
    }

    pub fn with_identity(
        ca: &Path,
        alpn: &[&[u8]],
        tls12_only: bool,
        identity: Option<(&Path, &Path)>,
    ) -> Client {
        use pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in pki_types::CertificateDer::pem_file_iter(ca).expect("ca") {
            roots.add(cert.expect("ca cert")).expect("add ca");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS12, &rustls::version::TLS13]
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => {
                let chain = pki_types::CertificateDer::pem_file_iter(cert)
                    .expect("cert")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("certs");
                let key = pki_types::PrivateKeyDer::from_pem_file(key).expect("key");
                builder.with_client_auth_cert(chain, key).expect("identity")
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // Each connection a full handshake (a resumed one shows the
        // certificate of the first).
        config.resumption = rustls::client::Resumption::disabled();
        Client {
            config: Arc::new(config),
        }
    }

    /// Connects over TLS to `addr` (`localhost`), after writing `prefix` in
    /// clear (a PROXY header), and runs `f` on the connection.
    pub fn connect<T>(
        &self,
        addr: SocketAddr,
        prefix: &[u8],
        f: impl AsyncFnOnce(Tls) -> T,
    ) -> Result<T, String> {
        self.connect_late(addr, prefix, std::time::Duration::ZERO, f)
    }

    /// As `connect`, the handshake begun `late` after the prefix.
    pub fn connect_late<T>(
        &self,
        addr: SocketAddr,
        prefix: &[u8],
        late: std::time::Duration,
        f: impl AsyncFnOnce(Tls) -> T,
    ) -> Result<T, String> {
        runtime().block_on(async {
            let mut tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            tcp.write_all(prefix).await.map_err(|e| e.to_string())?;
            tokio::time::sleep(late).await;
            let connector = tokio_rustls::TlsConnector::from(self.config.clone());
            let name = pki_types::ServerName::try_from("localhost").expect("name");
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            Ok(f(tls).await)
        })
    }
}

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The protocol ALPN chose, and the certificate the server presented.
pub fn session_of(tls: &Tls) -> (Option<Vec<u8>>, Vec<u8>) {
    let (_, conn) = tls.get_ref();
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    (conn.alpn_protocol().map(<[u8]>::to_vec), cert)
}

/// A request for [`h2_send`]: method, path, headers, body.
pub type Request<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, Vec<u8>);

/// `requests` one after the other on one HTTP/2 connection with prior
/// knowledge (h2c) to `addr`, as `authority`; each answer, or why none.
pub fn h2c(
    addr: SocketAddr,
    authority: &str,
    requests: Vec<Request<'_>>,
) -> Vec<Result<Answer, String>> {
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut send = h2_open(tcp).await;
        let mut out = Vec::new();
        for request in requests {
            out.push(h2_send(&mut send, authority, request).await);
        }
        out
    })
}

/// An HTTP/2 connection (`io`) ready for requests.
pub async fn h2_open<IO>(io: IO) -> h2::client::SendRequest<bytes::Bytes>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

/// One request on an HTTP/2 connection; `Err` when the stream or the
/// connection was reset.
pub async fn h2_send(
    send: &mut h2::client::SendRequest<bytes::Bytes>,
    authority: &str,
    request: Request<'_>,
) -> Result<Answer, String> {
    let (method, path, headers, body) = request;
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("https://{authority}{path}"));
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let req = builder.body(()).map_err(|e| e.to_string())?;
    let ready = send.clone().ready().await.map_err(|e| e.to_string())?;
    *send = ready;
    let (response, mut stream) = send
        .send_request(req, body.is_empty())
        .map_err(|e| e.to_string())?;
    if !body.is_empty() {
        send_body(&mut stream, body).await?;
    }
    let response = response.await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        headers: parts.headers,
        body: bytes,
    })
}

async fn send_body(stream: &mut h2::SendStream<bytes::Bytes>, body: Vec<u8>) -> Result<(), String> {
    let mut rest = bytes::Bytes::from(body);
    while !rest.is_empty() {
        stream.reserve_capacity(rest.len().min(64 * 1024));
        let granted = std::future::poll_fn(|cx| stream.poll_capacity(cx))
            .await
            .ok_or("stream closed")?
            .map_err(|e| e.to_string())?;
        let chunk = rest.split_to(granted.min(rest.len()));
        stream
            .send_data(chunk, rest.is_empty())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One HTTP/1.1 request (`Connection: close`) on `io`; the answer.
pub async fn h1_send<IO>(mut io: IO, authority: &str, request: Request<'_>) -> Answer
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (method, path, headers, body) = request;
    let mut text =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    io.write_all(text.as_bytes()).await.expect("write");
    io.write_all(&body).await.expect("write");
    let mut bytes = Vec::new();
    let _ = io.read_to_end(&mut bytes).await;
    let (raw, _) = super::scripted::split_answer(&bytes);
    let mut headers = http::HeaderMap::new();
    for line in raw.head.lines().skip(1) {
        if let Some((n, v)) = line.split_once(':') {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n.trim().as_bytes()),
                http::HeaderValue::from_str(v.trim()),
            ) {
                headers.append(n, v);
            }
        }
    }
    Answer {
        status: raw.status,
        headers,
        body: raw.body,
    }
}
