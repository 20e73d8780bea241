//! `upstreams:`, the backends routes forward to, by name.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::tls::UpstreamTls;
use super::{duration, err, values, ConfigError};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The key under `upstreams:`.
    #[serde(skip)]
    pub name: String,
    /// Resolved at load.
    #[serde(deserialize_with = "values::targets")]
    pub targets: values::Targets,
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    #[serde(default = "two_seconds", deserialize_with = "duration::deserialize")]
    pub connect_timeout: Duration,
    #[serde(default = "thirty_seconds", deserialize_with = "duration::deserialize")]
    pub read_timeout: Duration,
    /// TLS to the targets (`tls.rs`); plain HTTP when `None`.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// HTTP GET on this path; TCP connect when `None`.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "five_seconds", deserialize_with = "duration::deserialize")]
    pub interval: Duration,
}

fn two_seconds() -> Duration {
    Duration::from_secs(2)
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

/// The `upstreams:` map as a list in name order, each knowing its name:
/// routes and the gateway's pools refer to an upstream by its index here.
pub(super) fn by_name<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<UpstreamConfig>, D::Error> {
    let map = BTreeMap::<String, UpstreamConfig>::deserialize(deserializer)?;
    Ok(map
        .into_iter()
        .map(|(name, up)| UpstreamConfig { name, ..up })
        .collect())
}

impl UpstreamConfig {
    pub(super) fn check(&mut self) -> Result<(), ConfigError> {
        let key = format!("upstreams.{}", self.name);
        if self.targets.is_empty() {
            return err(&format!("{key}.targets"), "needs at least one host:port");
        }
        if let Some(tls) = &mut self.tls {
            // The name the certificate must hold: `sni`, or else the host
            // name all the targets are written with (only when it is
            // verified: without verification the name sent stays the
            // address's, as before, which sends none).
            if tls.sni.is_none() && tls.verify {
                tls.sni = self
                    .targets
                    .common_host()
                    .filter(|host| rustls::pki_types::ServerName::try_from(*host).is_ok())
                    .map(str::to_string);
            }
            tls.load(&format!("{key}.tls"))?;
        }
        if let Some(hc) = &self.health_check {
            if hc.path.as_ref().is_some_and(|p| !p.starts_with('/')) {
                return err(&format!("{key}.health_check.path"), "must start with /");
            }
            if hc.interval < Duration::from_millis(100) {
                return err(
                    &format!("{key}.health_check.interval"),
                    "must be at least 100ms",
                );
            }
        }
        if self.connect_timeout.is_zero() {
            return err(&format!("{key}.connect_timeout"), "must be longer than 0");
        }
        if self.read_timeout.is_zero() {
            return err(&format!("{key}.read_timeout"), "must be longer than 0");
        }
        Ok(())
    }
}
