//! TLS to an upstream (`upstreams.NAME.tls`), as Pingora's connector takes
//! it: the name sent and verified, the authorities, the client certificate.
//! Built once per pool from what the configuration loaded; each request's
//! peer and each health check get a copy (`Arc`s).

use std::sync::Arc;

use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::{HttpPeer, PeerOptions};
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};

use crate::config::UpstreamTls;

/// What a connection to one upstream's targets needs for TLS.
pub struct PeerTls {
    sni: String,
    verify: bool,
    ca: Option<Arc<CaType>>,
    client: Option<Arc<CertKey>>,
    /// Pingora pools connections by a hash of the peer that leaves the
    /// authorities out: without this key, a connection verified against
    /// one upstream's `ca_file` would serve another upstream with the same
    /// target and name but other authorities.
    group: u64,
}

impl PeerTls {
    pub fn new(cfg: &UpstreamTls) -> PeerTls {
        let ca = cfg.loaded.ca.as_ref().map(|certs| {
            let wrapped: Vec<WrappedX509> = certs
                .iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect();
            Arc::<CaType>::from(wrapped.into_boxed_slice())
        });
        let client = cfg
            .loaded
            .client
            .as_ref()
            .map(|(chain, key)| Arc::new(CertKey::new(chain.clone(), key.clone())));
        let group = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            cfg.loaded.ca.hash(&mut hasher);
            hasher.finish()
        };
        PeerTls {
            sni: cfg.sni.clone().unwrap_or_default(),
            verify: cfg.verify,
            ca,
            client,
            group,
        }
    }

    fn options(&self, options: &mut PeerOptions) {
        options.verify_cert = self.verify;
        options.verify_hostname = self.verify;
        options.ca.clone_from(&self.ca);
    }

    /// The name sent: without `sni` (only with `verify: false`), the
    /// target's address, which rustls takes but does not send.
    fn name_for(&self, ip: std::net::IpAddr) -> String {
        if self.sni.is_empty() {
            ip.to_string()
        } else {
            self.sni.clone()
        }
    }

    /// A peer of Pingora's path to `addr` over TLS.
    pub fn peer(&self, addr: std::net::SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, true, self.name_for(addr.ip()));
        self.options(&mut peer.options);
        peer.client_cert_key.clone_from(&self.client);
        peer.group_key = self.group;
        peer
    }

    /// An HTTP health check over TLS (`Host` is the SNI name).
    pub fn http_check(&self) -> HttpHealthCheck {
        let host = if self.sni.is_empty() {
            "localhost"
        } else {
            &self.sni
        };
        let mut check = HttpHealthCheck::new(host, true);
        self.options(&mut check.peer_template.options);
        check.peer_template.client_cert_key.clone_from(&self.client);
        check
    }

    /// A TCP health check: a TLS handshake, or, when the upstream wants
    /// a client certificate (which Pingora's TCP check cannot present), a
    /// TCP connect.
    pub fn tcp_check(&self) -> Box<TcpHealthCheck> {
        if self.client.is_some() {
            return TcpHealthCheck::new();
        }
        let host = if self.sni.is_empty() {
            "localhost"
        } else {
            &self.sni
        };
        let mut check = TcpHealthCheck::new_tls(host);
        self.options(&mut check.peer_template.options);
        check
    }
}
