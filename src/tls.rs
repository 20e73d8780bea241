//! The gateway's own certificate on its TLS listener (`server.tls`): read
//! and checked from PEM files (the chain, then a key that must match its
//! first certificate), and swapped on a reload or `SIGHUP` while
//! connections stay open: each new handshake takes the pair in force (one
//! atomic load); open connections keep the one they began with. A pair that
//! does not load leaves the one in force.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate pair was refused, with the config key it concerns.
#[derive(Debug, PartialEq, Eq)]
pub struct PairError {
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for PairError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A certificate chain (PEM, the server's certificate first) and its key
/// (PEM: PKCS#8, PKCS#1 or SEC1), checked to match. `keys` names the two
/// config keys for the refusals (`server.tls.cert_file`, ...).
pub fn load_pair(
    cert_file: &Path,
    key_file: &Path,
    keys: (&'static str, &'static str),
) -> Result<CertifiedKey, PairError> {
    let refuse = |key, message: String| PairError { key, message };
    let chain = read(cert_file).map_err(|m| refuse(keys.0, m))?;
    let chain = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            refuse(
                keys.0,
                format!("{}: not PEM certificates: {e}", cert_file.display()),
            )
        })?;
    if chain.is_empty() {
        return Err(refuse(
            keys.0,
            format!("{}: holds no PEM certificate", cert_file.display()),
        ));
    }
    let key = read(key_file).map_err(|m| refuse(keys.1, m))?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
        refuse(
            keys.1,
            format!("{}: no PEM private key: {e}", key_file.display()),
        )
    })?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider()).map_err(|e| {
        refuse(
            keys.1,
            format!(
                "{}: does not go with the certificate of {} ({e})",
                key_file.display(),
                cert_file.display()
            ),
        )
    })
}

/// The certificates of a PEM file of authorities (DER), at least one.
pub fn load_authorities(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no PEM certificate", path.display()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in &certs {
        roots
            .add(CertificateDer::from(cert.clone()))
            .map_err(|e| format!("{}: not a usable authority: {e}", path.display()))?;
    }
    Ok(certs)
}

/// The private key of a PEM file, as DER.
pub fn load_key_der(path: &Path) -> Result<Vec<u8>, String> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map(|k| k.secret_der().to_vec())
        .map_err(|e| format!("{}: no PEM private key: {e}", path.display()))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The certificate the TLS listener presents, swapped by reloads.
#[derive(Debug)]
pub struct ServerCert {
    current: ArcSwap<CertifiedKey>,
}

impl ServerCert {
    pub fn new(pair: CertifiedKey) -> ServerCert {
        ServerCert {
            current: ArcSwap::from_pointee(pair),
        }
    }

    /// The pair new handshakes present from now on.
    pub fn replace(&self, pair: CertifiedKey) {
        self.current.store(Arc::new(pair));
    }

    /// The pair in force.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
