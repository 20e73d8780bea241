use super::*;
use crate::config::{AuthMode, IdentityHeaders, UpstreamRef};

fn route(strip_prefix: bool, forward_authorization: bool) -> Route {
    Route {
        name: "stocks".into(),
        prefix: "/api/stocks/".into(),
        upstream: UpstreamRef {
            name: "stocks".into(),
            index: 0,
        },
        auth: AuthMode::Required,
        roles: Vec::new(),
        strip_prefix,
        forward_authorization,
        methods: Vec::new(),
        websocket: false,
    }
}

fn client_request(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", target.as_bytes(), None).expect("request");
    req.set_version(http::Version::HTTP_10);
    for (name, value) in headers {
        req.append_header(name.to_string(), *value).expect("header");
    }
    req
}

fn build(req: &RequestHeader, route: &Route) -> Result<Box<RequestHeader>> {
    build_with(req, route, UnderscoreHeaders::Drop, None)
}

fn build_with(
    req: &RequestHeader,
    route: &Route,
    underscore: UnderscoreHeaders,
    target: Option<&[u8]>,
) -> Result<Box<RequestHeader>> {
    let names = IdentityHeaderNames::new(&IdentityHeaders::default(), underscore);
    let request_id = HeaderValue::from_static("abc");
    Forwarding {
        route,
        names: &names,
        identity: None,
        request_id: &request_id,
        client: Some(&Client {
            ip: IpAddr::from([192, 0, 2, 1]),
            forwarded_for: None,
        }),
        https: false,
        target,
        upstream: Some(SocketAddr::from(([127, 0, 0, 1], 9001))),
    }
    .build(req)
}

fn public(route: Route) -> Route {
    Route {
        auth: AuthMode::None,
        ..route
    }
}

#[test]
fn underscore_twins_of_identity_headers_never_pass() {
    let req = client_request(
        "/api/stocks/",
        &[
            ("Host", "gw"),
            ("X_User_Id", "1"),
            ("x_user_role", "Admin"),
            ("X-User_Email", "a@b"),
            ("X_Session-Id", "s"),
            ("X_Custom", "c"),
            ("X-Plain", "p"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("x_real-ip", "6.6.6.6"),
            ("True_Client_IP", "6.6.6.6"),
        ],
    );
    let route = public(route(false, true));
    for mode in [UnderscoreHeaders::Drop, UnderscoreHeaders::Keep] {
        let up = build_with(&req, &route, mode, None).expect("built");
        for twin in [
            "x_user_id",
            "x_user_role",
            "x-user_email",
            "x_session-id",
            "x_forwarded_for",
            "x_real-ip",
            "true_client_ip",
        ] {
            assert!(values(&up, twin).is_empty(), "{twin} passed ({mode:?})");
        }
        assert_eq!(values(&up, "x-plain"), ["p"]);
        let custom = values(&up, "x_custom");
        match mode {
            UnderscoreHeaders::Drop => assert!(custom.is_empty()),
            UnderscoreHeaders::Keep => assert_eq!(custom, ["c"]),
        }
    }
}

#[test]
fn client_claims_of_the_proxy_chain_are_replaced() {
    let req = client_request(
        "/api/stocks/",
        &[
            ("Host", "gw"),
            ("X-Real-IP", "203.0.113.9"),
            ("Forwarded", "for=203.0.113.9"),
            ("X-Original-URL", "/api/stocks/admin/x"),
            ("X-Forwarded-Prefix", "/admin"),
            ("True-Client-IP", "203.0.113.9"),
            ("CF-Connecting-IP", "203.0.113.9"),
            ("X-Forwarded-Ssl", "on"),
        ],
    );
    let up = build(&req, &route(false, true)).expect("built");
    assert_eq!(values(&up, "x-real-ip"), ["192.0.2.1"]);
    for gone in [
        "forwarded",
        "x-original-url",
        "x-forwarded-prefix",
        "true-client-ip",
        "cf-connecting-ip",
        "x-forwarded-ssl",
    ] {
        assert!(values(&up, gone).is_empty(), "{gone}");
    }
}

#[test]
fn only_a_checked_credential_goes_upstream() {
    let req = client_request(
        "/api/stocks/",
        &[("Host", "gw"), ("Authorization", "Basic eDp5")],
    );
    // Required or optional route, no verified identity: dropped.
    let up = build(&req, &route(false, true)).expect("built");
    assert!(values(&up, "authorization").is_empty());
    // A route that checks nothing leaves it to the upstream.
    let up = build(&req, &public(route(false, true))).expect("built");
    assert_eq!(values(&up, "authorization"), ["Basic eDp5"]);
}

#[test]
fn connection_may_not_name_host_and_a_missing_host_is_set() {
    let req = client_request("/api/stocks/", &[("Host", "gw"), ("Connection", "Host")]);
    let e = build(&req, &route(false, true)).expect_err("refused");
    assert_eq!(e.etype(), &ErrorType::InvalidHTTPHeader);
    let req = client_request("/api/stocks/", &[]);
    let up = build(&req, &route(false, true)).expect("built");
    assert_eq!(values(&up, "host"), ["127.0.0.1:9001"]);
}

#[test]
fn a_normalized_target_replaces_the_clients() {
    let req = client_request("/api/stocks//a/../b?x=%2F", &[("Host", "gw")]);
    let up = build_with(
        &req,
        &route(false, true),
        UnderscoreHeaders::Drop,
        Some(b"/api/stocks/b?x=%2F"),
    )
    .expect("built");
    assert_eq!(up.raw_path(), b"/api/stocks/b?x=%2F");
    let up = build_with(
        &req,
        &route(true, true),
        UnderscoreHeaders::Drop,
        Some(b"/api/stocks/b?x=%2F"),
    )
    .expect("built");
    assert_eq!(up.raw_path(), b"/b?x=%2F");
}

fn values<'a>(req: &'a RequestHeader, name: &str) -> Vec<&'a str> {
    req.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .collect()
}

#[test]
fn the_direct_path_drops_hop_by_hop_and_nominated_headers() {
    let req = client_request(
        "/api/stocks/a?b=1",
        &[
            ("Host", "gw"),
            ("Connection", "keep-alive, X-Hop"),
            ("Connection", "X-Other"),
            ("X-Hop", "1"),
            ("X-Other", "2"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic x"),
            ("X-User-Id", "forged"),
            ("X-User-Id", "forged again"),
            ("Authorization", "Bearer t"),
            ("Accept", "application/json"),
        ],
    );
    let up = build(&req, &route(false, false)).expect("built");
    assert_eq!(up.version, http::Version::HTTP_11);
    for gone in [
        "connection",
        "x-hop",
        "x-other",
        "keep-alive",
        "te",
        "proxy-authorization",
        "x-user-id",
        "authorization",
    ] {
        assert!(values(&up, gone).is_empty(), "{gone} went upstream");
    }
    assert_eq!(values(&up, "accept"), ["application/json"]);
    assert_eq!(values(&up, "x-forwarded-for"), ["192.0.2.1"]);
    assert_eq!(values(&up, "x-forwarded-host"), ["gw"]);
    assert_eq!(values(&up, "x-request-id"), ["abc"]);
    assert_eq!(up.uri.to_string(), "/api/stocks/a?b=1");
    // The client's request is left as it was.
    assert_eq!(values(&req, "x-hop"), ["1"]);
}

#[test]
fn the_direct_path_keeps_the_target_and_strips_the_prefix() {
    let req = client_request("/api/stocks/x%20y?q=%C3%A9", &[("Host", "gw")]);
    let up = build(&req, &route(false, true)).expect("built");
    assert_eq!(up.raw_path(), b"/api/stocks/x%20y?q=%C3%A9");
    let up = build(&req, &route(true, true)).expect("built");
    assert_eq!(up.uri.path(), "/x%20y");
}

#[test]
fn too_many_connection_nominations_are_refused() {
    let many: Vec<String> = (0..40).map(|i| format!("x-{i}")).collect();
    let req = client_request("/api/stocks/", &[("Connection", &many.join(", "))]);
    let e = build(&req, &route(false, true)).expect_err("refused");
    assert_eq!(e.etype(), &ErrorType::InvalidHTTPHeader);
}
