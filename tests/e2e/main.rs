//! The end-to-end tests, in one binary (`cargo test --test e2e`): each
//! starts the real `vigile` binary with a temporary config and store on
//! free loopback ports, in front of real upstream processes or scripted
//! ones, and talks HTTP to it.

mod common;

mod account_limits;
mod accounts;
mod audit;
mod cli;
mod client_address;
mod django;
mod django_hashes;
mod edge_attacks;
mod edge_h2;
mod edge_tls;
mod forwarding;
mod hardening;
mod hardening_edge;
mod hardening_followup;
mod keys;
mod operations;
mod proxy;
mod reload;
mod replicas;
mod replicas_faults;
mod self_service;
mod store_copy;
mod upstream_tls;
