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

/// `upstreams.NAME.tls:`, TLS to an upstream's targets (health checks
/// included): the name sent and verified, the authorities trusted (the
/// system's when no `ca_file`), and a client certificate (mTLS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// The name sent (SNI) and checked against the certificate.
    #[serde(default)]
    pub sni: Option<String>,
    /// Authorities to trust (PEM), instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Check the upstream's certificate (chain and name).
    #[serde(default = "verify_by_default")]
    pub verify: bool,
    /// The gateway's certificate chain and key for the upstream (PEM).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// What the files held when the configuration was loaded.
    #[serde(skip)]
    pub loaded: LoadedTls,
}

fn verify_by_default() -> bool {
    true
}

/// The files of an [`UpstreamTls`], read at load (so that a reload that
/// changes them makes a new pool).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LoadedTls {
    /// The authorities (DER).
    pub ca: Option<Vec<Vec<u8>>>,
    /// The client chain (DER) and key (PKCS#8, PKCS#1 or SEC1 DER).
    pub client: Option<(Vec<Vec<u8>>, Vec<u8>)>,
}

impl std::fmt::Debug for LoadedTls {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTls")
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .field("client", &self.client.as_ref().map(|(c, _)| c.len()))
            .finish()
    }
}

impl UpstreamTls {
    /// Reads and checks the files; `key` is `upstreams.NAME.tls`.
    pub(super) fn load(&mut self, key: &str) -> Result<(), ConfigError> {
        let refuse =
            |field: &str, message: String| ConfigError(format!("{key}.{field}: {message}"));
        match &self.sni {
            Some(sni) if rustls::pki_types::ServerName::try_from(sni.as_str()).is_err() => {
                return Err(refuse(
                    "sni",
                    format!("`{sni}` is not a host name or address"),
                ));
            }
            None if self.verify => {
                return Err(refuse(
                    "sni",
                    "needed to verify the upstream's certificate (the name it must hold) \
                     when the targets are not all written with one host name, or set \
                     verify: false"
                        .into(),
                ));
            }
            _ => {}
        }
        if let Some(path) = &self.ca_file {
            let ca = crate::tls::load_authorities(path).map_err(|m| refuse("ca_file", m))?;
            self.loaded.ca = Some(ca);
        }
        match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => {}
            (Some(cert), Some(key_file)) => {
                let pair =
                    crate::tls::load_pair(cert, key_file, ("client_cert_file", "client_key_file"))
                        .map_err(|e| refuse(e.key, e.message))?;
                let chain = pair.cert.iter().map(|c| c.to_vec()).collect();
                let key_der =
                    crate::tls::load_key_der(key_file).map_err(|m| refuse("client_key_file", m))?;
                self.loaded.client = Some((chain, key_der));
            }
            (Some(_), None) => {
                return Err(refuse(
                    "client_key_file",
                    "needed with client_cert_file".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(refuse(
                    "client_cert_file",
                    "needed with client_key_file".into(),
                ))
            }
        }
        Ok(())
    }
}
