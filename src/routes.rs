//! The route table: which upstream a path goes to and under which policy.
//! Resolved once per request; the longest matching prefix wins.

use http::Method;

/// A route is its configuration, typed and checked at load (its upstream
/// already resolved to an index).
pub use crate::config::RouteConfig as Route;

impl Route {
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }

    /// `Allow` header value when `methods` is set.
    pub fn allow(&self) -> String {
        let names: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        names.join(", ")
    }

    /// The path the upstream sees: with the prefix removed when the route says
    /// so (keeping a leading `/`).
    pub fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        if !self.strip_prefix {
            return path.into();
        }
        let rest = path
            .strip_prefix(self.prefix.trim_end_matches('/'))
            .unwrap_or(path);
        if rest.starts_with('/') {
            rest.into()
        } else {
            format!("/{rest}").into()
        }
    }
}

pub struct RouteTable {
    /// Longest prefix first.
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(config: &[Route]) -> RouteTable {
        let mut routes = config.to_vec();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        RouteTable { routes }
    }

    /// The index of the route for `path`. `/api/stocks` matches the prefix
    /// `/api/stocks/` too. A prefix without a final `/` matches whole
    /// segments only (`/api/sp` matches `/api/sp` and `/api/sp/x`, not
    /// `/api/spx` nor `/api/sp..`): what `strip_prefix` leaves then always
    /// starts a segment, and holds no dot segment.
    pub fn find_index(&self, path: &str) -> Option<usize> {
        self.routes.iter().position(|r| {
            let prefix = r.prefix.as_str();
            match path.strip_prefix(prefix) {
                Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
                None => {
                    prefix.ends_with('/')
                        && path.len() + 1 == prefix.len()
                        && prefix.starts_with(path)
                }
            }
        })
    }

    pub fn find(&self, path: &str) -> Option<&Route> {
        self.find_index(path).and_then(|i| self.routes.get(i))
    }

    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::{AuthMode, UpstreamRef};

    fn route(name: &str, prefix: &str, strip: bool) -> Route {
        Route {
            name: name.into(),
            prefix: prefix.into(),
            upstream: UpstreamRef {
                name: "u".into(),
                index: 0,
            },
            auth: AuthMode::Required,
            roles: vec![],
            strip_prefix: strip,
            forward_authorization: true,
            methods: vec![],
            websocket: false,
        }
    }

    #[test]
    fn the_longest_prefix_wins() {
        let table = RouteTable::new(&[
            route("api", "/api/", false),
            route("stocks", "/api/stocks/", false),
            route("admin", "/api/stocks/admin/", false),
        ]);
        let name = |p: &str| table.find(p).map(|r| r.name.clone());
        assert_eq!(name("/api/stocks/1"), Some("stocks".into()));
        assert_eq!(name("/api/stocks"), Some("stocks".into()));
        assert_eq!(name("/api/stocks/admin/x"), Some("admin".into()));
        assert_eq!(name("/api/jobs/"), Some("api".into()));
        assert_eq!(name("/other"), None);
    }

    #[test]
    fn a_prefix_without_a_final_slash_matches_whole_segments() {
        let table = RouteTable::new(&[route("sp", "/api/sp", true)]);
        let name = |p: &str| table.find(p).map(|r| r.name.clone());
        assert_eq!(name("/api/sp"), Some("sp".into()));
        assert_eq!(name("/api/sp/x"), Some("sp".into()));
        for other in ["/api/spx", "/api/sp../x", "/api/sp./x", "/api/sp.."] {
            assert_eq!(name(other), None, "{other}");
        }
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        let table = RouteTable::new(&[route("s", "/api/stocks/", true)]);
        let r = table.find("/api/stocks/1").expect("route");
        assert_eq!(r.upstream_path("/api/stocks/1?x=1"), "/1?x=1");
        assert_eq!(r.upstream_path("/api/stocks"), "/");
    }
}
