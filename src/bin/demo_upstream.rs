//! A small upstream service for the quick start and the end-to-end tests.
//!
//! It answers every request with JSON describing what it received (method,
//! path, query, headers), so one can see the identity headers vigile sets and
//! check that client-sent copies never arrive. `/health` answers
//! `{"status":"ok"}`; `?delay_ms=N` waits N ms first (for timeout tests).
//!
//! `vigile-demo-upstream --listen 127.0.0.1:9001 --name stocks`; with
//! `--tls-cert FILE --tls-key FILE` it speaks TLS instead, and with
//! `--client-ca FILE` it also requires a client certificate of that
//! authority (mTLS).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use http::Response;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;
use serde_json::json;

#[derive(Parser)]
#[command(about = "Echo upstream for trying vigile out")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: String,
    /// Service name reported in every answer.
    #[arg(long, default_value = "demo")]
    name: String,
    /// Speak TLS with this certificate chain (PEM)...
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// ... and this key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Require a client certificate signed by this authority (PEM).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<std::path::PathBuf>,
}

struct Echo {
    name: String,
}

fn delay_of(query: Option<&str>) -> Option<Duration> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("delay_ms="))
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

#[async_trait]
impl ServeHttp for Echo {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let method = req.method.to_string();
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_string);
        // The caller's address: the same one on two requests means a kept-alive connection.
        let peer = session.client_addr().map(|a| a.to_string());
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in req.headers.iter() {
            headers
                .entry(name.as_str().to_string())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        // Over TLS: the version, and the client certificate's serial (mTLS).
        let tls = session
            .digest()
            .and_then(|d| d.ssl_digest.clone())
            .map(|d| json!({"version": d.version, "client_serial": d.serial_number}));
        let mut body_bytes = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body_bytes += chunk.len();
        }
        if let Some(delay) = delay_of(query.as_deref()) {
            tokio::time::sleep(delay).await;
        }
        let body = if path == "/health" {
            json!({"status": "ok", "service": self.name})
        } else {
            json!({
                "service": self.name,
                "method": method,
                "path": path,
                "query": query,
                "peer": peer,
                "headers": headers,
                "body_bytes": body_bytes,
                "tls": tls,
            })
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, bytes.len())
            .body(bytes)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

fn exit(message: &str) -> ! {
    eprintln!("vigile-demo-upstream: {message}");
    std::process::exit(2)
}

/// Client certificates signed by the authority in `ca`, required.
fn client_verifier(
    ca: &std::path::Path,
) -> std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier> {
    let mut roots = rustls::RootCertStore::empty();
    for der in vigile::tls::load_authorities(ca).unwrap_or_else(|e| exit(&e)) {
        roots
            .add(der.into())
            .unwrap_or_else(|e| exit(&e.to_string()));
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap_or_else(|e| exit(&e.to_string()))
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut service = Service::new(
        format!("demo upstream {}", args.name),
        HttpServer::new_app(Echo {
            name: args.name.clone(),
        }),
    );
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let pair = vigile::tls::load_pair(cert, key, ("--tls-cert", "--tls-key"))
                .unwrap_or_else(|e| exit(&e.to_string()));
            let mut settings = pingora::listeners::tls::TlsSettings::intermediate("", "")
                .unwrap_or_else(|e| exit(&e.to_string()));
            settings.set_cert_resolver(std::sync::Arc::new(vigile::tls::ServerCert::new(pair)));
            if let Some(ca) = &args.client_ca {
                settings.set_client_cert_verifier(client_verifier(ca));
            }
            service.add_tls_with_settings(&args.listen, None, settings);
        }
        _ => service.add_tcp(&args.listen),
    }
    server.add_service(service);
    eprintln!(
        "vigile-demo-upstream {} listening on {}",
        args.name, args.listen
    );
    server.run(RunArgs::default());
}
