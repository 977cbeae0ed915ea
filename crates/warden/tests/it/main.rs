//! The integration tests of the `warden` binary, as one test binary (as
//! rustls does): each module was a binary of its own, and every one of them
//! linked the whole workspace again. Run one area with a filter:
//! `cargo test -p warden --test it security::`.

mod common;

mod admin_api;
mod approvals;
mod cli;
mod connect;
mod control_plane;
mod crash;
mod egress;
mod faults;
mod gateway;
mod guardrails;
mod mcp_protocol;
mod monitor;
mod mtls;
mod replicas;
mod sandbox;
mod security;
mod token_binding;
mod upstream_http;
mod workload;
