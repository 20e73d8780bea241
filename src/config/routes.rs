//! `routes:`, which path prefix goes to which upstream, under which policy.
//!
//! A route option is one field of `RouteConfig` (typed as it is read) and,
//! when it needs one, a line in `RouteConfig::check`; `crate::routes` and the
//! proxy read the field.

use std::collections::BTreeSet;

use http::Method;
use serde::{Deserialize, Deserializer};

use super::upstreams::UpstreamConfig;
use super::values::{self, RoleName};
use super::{err, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid access token of a live session is needed (the default).
    #[default]
    Required,
    /// A token, if sent, must be valid; without one the request goes on anonymously.
    Optional,
    /// No check at all; identity headers are still stripped.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    pub prefix: String,
    pub upstream: UpstreamRef,
    #[serde(default)]
    pub auth: AuthMode,
    #[serde(default)]
    pub roles: Vec<RoleName>,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default = "yes")]
    pub forward_authorization: bool,
    /// Empty means every method.
    #[serde(default, deserialize_with = "values::methods")]
    pub methods: Vec<Method>,
    /// Whether protocol upgrades (WebSocket) may pass.
    #[serde(default)]
    pub websocket: bool,
}

fn yes() -> bool {
    true
}

/// A route's upstream: the name written in the YAML and, once the
/// configuration is loaded, its index in `Config::upstreams` (which is also
/// the index of its pool in the gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRef {
    pub name: String,
    pub index: usize,
}

impl<'de> Deserialize<'de> for UpstreamRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Resolved by `RouteConfig::resolve`, when every upstream is known.
        String::deserialize(deserializer).map(|name| UpstreamRef {
            name,
            index: usize::MAX,
        })
    }
}

impl RouteConfig {
    /// Checks one route (`key` is `routes[i]`) against those before it.
    fn check(
        &self,
        key: &str,
        names: &mut BTreeSet<String>,
        prefixes: &mut BTreeSet<String>,
    ) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return err(
                &format!("{key}.name"),
                "must be letters, digits, '-', '_' or '.'",
            );
        }
        if !names.insert(self.name.clone()) {
            return err(
                &format!("{key}.name"),
                format!("`{}` is used by another route", self.name),
            );
        }
        let prefix = &self.prefix;
        if !prefix.starts_with('/') {
            return err(&format!("{key}.prefix"), "must start with /");
        }
        if prefix.contains(['?', '#', '%', '\\'])
            || prefix.contains("//")
            || prefix
                .split('/')
                .any(|segment| segment == "." || segment == "..")
        {
            return err(
                &format!("{key}.prefix"),
                format!(
                    "`{prefix}` is not a normalized path (no `//`, `.` or `..` segment, `%`, `?`, `#` or `\\`): requests are matched after normalization"
                ),
            );
        }
        if prefix.starts_with("/api/accounts") {
            return err(
                &format!("{key}.prefix"),
                format!("`{prefix}` is under /api/accounts/, which the gateway answers itself"),
            );
        }
        if !prefixes.insert(prefix.clone()) {
            return err(
                &format!("{key}.prefix"),
                format!("`{prefix}` is used by another route"),
            );
        }
        Ok(())
    }

    /// Finds the upstream the route names (`upstreams` is in name order).
    fn resolve(&mut self, key: &str, upstreams: &[UpstreamConfig]) -> Result<(), ConfigError> {
        let name = &self.upstream.name;
        match upstreams.binary_search_by(|up| up.name.as_str().cmp(name)) {
            Ok(index) => {
                self.upstream.index = index;
                Ok(())
            }
            Err(_) => {
                let known: Vec<&str> = upstreams.iter().map(|up| up.name.as_str()).collect();
                err(
                    &format!("{key}.upstream"),
                    format!("unknown upstream `{name}` (known: {})", known.join(", ")),
                )
            }
        }
    }
}

/// Checks every route and resolves its upstream.
pub(super) fn check(
    routes: &mut [RouteConfig],
    upstreams: &[UpstreamConfig],
) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    for (i, route) in routes.iter_mut().enumerate() {
        let key = format!("routes[{i}]");
        route.check(&key, &mut names, &mut prefixes)?;
        route.resolve(&key, upstreams)?;
        if !route.roles.is_empty() && route.auth != AuthMode::Required {
            return err(&format!("{key}.roles"), "needs auth: required");
        }
    }
    Ok(())
}
