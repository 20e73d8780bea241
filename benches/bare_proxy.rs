//! The `pingora` contender of benches/load.sh: a bare Pingora pass-through
//! proxy with no authentication, the ceiling vigile is measured against.
//!
//! `bare_proxy --listen 127.0.0.1:7001 --upstream 127.0.0.1:7000 --threads 1`
//! (`--tls-listen ADDR --tls-cert PEM --tls-key PEM`: also over TLS, ALPN
//! h2 and http/1.1, as vigile's `server.tls`).

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    listen: String,
    #[arg(long)]
    upstream: std::net::SocketAddr,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Peer timeouts to set, as vigile does: any of c (connect), r (read),
    /// w (write), i (idle).
    #[arg(long, default_value = "")]
    timeouts: String,
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_listen: Option<String>,
    #[arg(long)]
    tls_cert: Option<String>,
    #[arg(long)]
    tls_key: Option<String>,
}

struct Bare {
    upstream: std::net::SocketAddr,
    timeouts: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        let secs = |n| Some(std::time::Duration::from_secs(n));
        for t in self.timeouts.chars() {
            match t {
                'c' => peer.options.connection_timeout = secs(2),
                'r' => peer.options.read_timeout = secs(30),
                'w' => peer.options.write_timeout = secs(30),
                'i' => peer.options.idle_timeout = secs(60),
                _ => {}
            }
        }
        Ok(Box::new(peer))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut service = pingora::proxy::http_proxy_service(
        &server.configuration,
        Bare {
            upstream: args.upstream,
            timeouts: args.timeouts,
        },
    );
    service.add_tcp(&args.listen);
    if let (Some(addr), Some(cert), Some(key)) = (&args.tls_listen, &args.tls_cert, &args.tls_key) {
        let mut settings =
            pingora::listeners::tls::TlsSettings::intermediate(cert, key).expect("TLS settings");
        settings.enable_h2();
        service.add_tls_with_settings(addr, None, settings);
    }
    server.add_service(service);
    server.run(RunArgs::default());
}
