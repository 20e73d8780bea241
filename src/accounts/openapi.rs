//! `GET /api/accounts/openapi.json`: the OpenAPI 3.1 description of the
//! account API, kept beside the endpoints (`openapi.json`) and served
//! byte for byte, public and cacheable. Its tests hold it to the code: every
//! path it describes resolves to the endpoint it says, with the methods it
//! says, and every endpoint and every error code it names exists.
//! `tests/ops/openapi.rs` holds the gateway's real answers to it
//! (schemathesis).

/// The document, as kept in the repository.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// How long clients and caches may keep it (it changes with the binary only).
pub const CACHE_CONTROL: &str = "public, max-age=3600";

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::super::{resolve, Endpoint};
    use super::DOCUMENT;
    use crate::error::ErrorCode;

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    const METHODS: [&str; 5] = ["get", "post", "patch", "put", "delete"];

    #[test]
    fn every_described_operation_is_an_endpoint_and_every_endpoint_is_described() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let mut described = BTreeSet::new();
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for method in METHODS {
                let upper = method.to_ascii_uppercase();
                let resolved = resolve(&upper, path).unwrap_or_else(|| panic!("{path}: not ours"));
                match (item.get(method), resolved) {
                    (Some(_), Ok(endpoint)) => {
                        described.insert(format!("{endpoint:?}"));
                        // Without the trailing slash too.
                        let bare = path.trim_end_matches('/');
                        assert_eq!(resolve(&upper, bare), Some(Ok(endpoint)), "{bare}");
                    }
                    (None, Err(e)) => assert_eq!(e.status, 405, "{upper} {path}"),
                    (Some(_), Err(e)) => panic!("{upper} {path} is described but answers {e:?}"),
                    (None, Ok(e)) => panic!("{upper} {path} answers {e:?} but is not described"),
                }
            }
        }
        let every = [
            Endpoint::Register,
            Endpoint::Login,
            Endpoint::Refresh,
            Endpoint::Logout,
            Endpoint::Profile,
            Endpoint::UpdateProfile,
            Endpoint::PasswordChange,
            Endpoint::PasswordForgotten,
            Endpoint::PasswordReset,
            Endpoint::Jwks,
            Endpoint::OpenApi,
        ];
        let every: BTreeSet<String> = every.iter().map(|e| format!("{e:?}")).collect();
        assert_eq!(described, every);
    }

    #[test]
    fn the_error_codes_it_names_are_the_gateways() {
        let doc = document();
        let codes = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("the codes");
        let known: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        for code in codes {
            let code = code.as_str().expect("a string");
            assert!(known.contains(code), "{code} is no ErrorCode");
        }
        // And every code a response's description names is in the enum.
        let listed: BTreeSet<&str> = codes.iter().filter_map(Value::as_str).collect();
        for word in DOCUMENT.split('`') {
            if known.contains(word) {
                assert!(listed.contains(word), "{word} is named but not in the enum");
            }
        }
    }

    #[test]
    fn operations_that_need_a_token_say_so_and_answer_401() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let bearer = op["security"] != serde_json::json!([]);
                let has_401 = op["responses"]["401"]["$ref"]
                    .as_str()
                    .is_some_and(|r| r.ends_with("/Unauthenticated"));
                assert_eq!(bearer, has_401, "{method} {path}");
            }
        }
    }
}
