//! Values typed while the YAML is read, shared by several sections: listen
//! addresses, upstream targets, HTTP methods, header names, role names.
//!
//! Each conversion runs inside the deserializer's own call for the key, so
//! that serde_yaml puts the key (and the position) in front of the refusal:
//! `routes[0].methods: `FOO` is not an HTTP method at line 3 column 14`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use http::{HeaderName, Method};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// A string converted by `parse`; a refusal is the text `parse` returns.
pub(crate) fn from_str<'de, D, T>(
    deserializer: D,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct StrVisitor<F>(F);
    impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for StrVisitor<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(StrVisitor(parse))
}

/// A list of strings, each converted by `parse`; a refusal names the list
/// (not the item), as `cors.allowed_methods: ...`.
fn list_from_str<'de, D, T>(
    deserializer: D,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
{
    struct ListVisitor<T>(fn(&str) -> Result<T, String>);
    impl<'de, T> Visitor<'de> for ListVisitor<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(text) = seq.next_element::<String>()? {
                out.push((self.0)(&text).map_err(de::Error::custom)?);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(ListVisitor(parse))
}

/// A listening address: an IP and a port (no host name).
pub(crate) fn listen<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    from_str(deserializer, |text| {
        text.parse().map_err(|_| {
            format!("`{text}` is not an address such as 0.0.0.0:8080 or 127.0.0.1:9090")
        })
    })
}

/// Upstream targets: `host:port` each, resolved once at load; a refusal
/// names the item (`upstreams.b.targets[1]`).
pub(crate) fn targets<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Targets, D::Error> {
    struct Target(SocketAddr, Option<String>);
    impl<'de> Deserialize<'de> for Target {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            from_str(deserializer, |text| {
                let addr = text
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| format!("`{text}` is not a host:port"))?;
                Ok(Target(addr, host_name(text)))
            })
        }
    }
    let targets = Vec::<Target>::deserialize(deserializer)?;
    Ok(Targets {
        addrs: targets.iter().map(|t| t.0).collect(),
        hosts: targets.into_iter().map(|t| t.1).collect(),
    })
}

/// The host of a `host:port` target as written, when it is a name: not an
/// address, nor one of the numeric forms the resolver also takes
/// (`0x7f000001`, `127.1`); in lower case, one trailing dot dropped.
fn host_name(target: &str) -> Option<String> {
    target
        .rsplit_once(':')
        .map(|(host, _)| host.strip_suffix('.').unwrap_or(host))
        .filter(|host| host.parse::<std::net::IpAddr>().is_err())
        .filter(|host| !host.starts_with('[') && !host.is_empty())
        .filter(|host| {
            !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | 'x' | 'X'))
        })
        .map(|host| host.to_ascii_lowercase())
}

#[cfg(test)]
#[test]
fn host_names_of_targets() {
    assert_eq!(
        host_name("Billing.Internal.:443").as_deref(),
        Some("billing.internal")
    );
    assert_eq!(host_name("localhost:1").as_deref(), Some("localhost"));
    for address in [
        "127.0.0.1:1",
        "[::1]:1",
        "0x7f000001:1",
        "127.1:1",
        ":1",
        "x",
    ] {
        assert_eq!(host_name(address), None, "{address}");
    }
}

/// An upstream's targets: their addresses, resolved at load, and the host
/// name each was written with (`None` for an address), the default TLS
/// name of the upstream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Targets {
    addrs: Vec<SocketAddr>,
    hosts: Vec<Option<String>>,
}

impl Targets {
    /// The one host name every target was written with, if they were.
    pub fn common_host(&self) -> Option<&str> {
        let first = self.hosts.first()?.as_deref()?;
        self.hosts
            .iter()
            .all(|h| h.as_deref() == Some(first))
            .then_some(first)
    }
}

impl std::ops::Deref for Targets {
    type Target = [SocketAddr];
    fn deref(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

/// The standard HTTP methods, whatever the case they are written in.
fn method(text: &str) -> Result<Method, String> {
    let upper = text.to_ascii_uppercase();
    match Method::from_bytes(upper.as_bytes()) {
        Ok(method) if METHODS.contains(&upper.as_str()) => Ok(method),
        _ => Err(format!("`{text}` is not an HTTP method")),
    }
}

pub(crate) fn methods<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Method>, D::Error> {
    list_from_str(deserializer, method)
}

/// A header name (an RFC 9110 token), kept in lower case.
pub(crate) fn header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("`{text}` is not a header name"))
}

pub(crate) fn header_names<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<HeaderName>, D::Error> {
    list_from_str(deserializer, header_name)
}

/// `server.trusted_proxies`: networks such as `10.0.0.0/8`; a refusal
/// names the list.
pub(crate) fn networks<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<crate::forwarded::TrustedProxies, D::Error> {
    list_from_str(deserializer, |text| text.parse()).map(crate::forwarded::TrustedProxies)
}

/// A role name as `vigile role create` accepts it: trimmed, 1 to 64
/// characters, no control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    pub fn new(text: &str) -> Result<RoleName, String> {
        let name = text.trim();
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        if name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(format!(
                "`{}` is not a role name (1 to 64 characters, no control character)",
                name.escape_debug()
            ));
        }
        Ok(RoleName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for RoleName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoleName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_str(deserializer, RoleName::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_the_standard_ones_in_any_case() {
        assert_eq!(method("get"), Ok(Method::GET));
        assert_eq!(method("Patch"), Ok(Method::PATCH));
        for bad in ["FOO", "PROPFIND", "", "GET "] {
            assert_eq!(method(bad), Err(format!("`{bad}` is not an HTTP method")));
        }
    }

    #[test]
    fn header_names_are_tokens() {
        assert_eq!(
            header_name("X-User-Id").map(|h| h.to_string()),
            Ok("x-user-id".into())
        );
        for bad in ["", "X Y", "b@d", "a:b"] {
            assert_eq!(
                header_name(bad),
                Err(format!("`{bad}` is not a header name"))
            );
        }
    }

    #[test]
    fn role_names_are_trimmed_and_bounded() {
        assert_eq!(
            RoleName::new(" Admin ").map(|r| r.to_string()),
            Ok("Admin".into())
        );
        assert_eq!(RoleName::new("  "), Err("must not be empty".into()));
        assert!(RoleName::new(&"r".repeat(65)).is_err());
        assert!(RoleName::new("a\u{7}b").is_err());
        assert!(RoleName::new(&"é".repeat(64)).is_ok());
    }
}
