//! TLS to the database, through rustls: used when the connection string says
//! `sslmode=require`. The server's certificate must chain to Mozilla's roots
//! or to a certificate of `store.ca_file`, and name the host connected to
//! (stricter than libpq's `require`, which checks neither: an unchecked
//! certificate does not stop a man in the middle). Without `sslmode`, or
//! with `disable` or `prefer`, the connection is plain TCP (or a Unix
//! socket): keep those to loopback or a private network.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{StoreError, StoreResult};

/// The connector `settings` ask for: `None` for plain connections.
pub(super) fn connector(
    settings: &tokio_postgres::Config,
    ca_file: Option<&Path>,
) -> StoreResult<Option<MakeRustlsConnect>> {
    if settings.get_ssl_mode() != SslMode::Require {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let bad = |e: &dyn std::fmt::Display| {
            StoreError::Db(format!("store.ca_file: {}: {e}", path.display()))
        };
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad(&"no PEM certificate in it"));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Db(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}
