//! `server.tls:`, the TLS listener: its address and the certificate pair
//! it presents (re-read by each reload).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{values, ConfigError};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN.
    #[serde(deserialize_with = "values::listen")]
    pub listen: SocketAddr,
    /// The certificate chain, PEM, the server's own first.
    pub cert_file: PathBuf,
    /// Its private key, PEM.
    pub key_file: PathBuf,
}

impl ServerTls {
    /// The pair loads and matches (what the listener, and each reload, reads).
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        self.load()
            .map(drop)
            .map_err(|e| ConfigError(e.to_string()))
    }

    /// The certificate pair the files hold now.
    pub fn load(&self) -> Result<rustls::sign::CertifiedKey, crate::tls::PairError> {
        crate::tls::load_pair(
            &self.cert_file,
            &self.key_file,
            ("server.tls.cert_file", "server.tls.key_file"),
        )
    }
}
