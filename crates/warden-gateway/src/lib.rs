//! The Policy Enforcement Point: an MCP streamable-HTTP endpoint that
//! authenticates every request (DPoP-bound tokens), federates upstream MCP
//! servers, shows only the tools a token and policy allow, refuses tools whose
//! definitions changed since an operator pinned them, asks the policy engine
//! about every `tools/call` (with the monitor's risk, anomaly and session
//! taint), enforces limits and kill switches, contains agents whose risk
//! crosses the threshold, and audits each decision before answering.

mod audit_sink;
mod authn;
mod catalog;
mod containment;
mod enforce;
pub mod jsonrpc;
mod listeners;
mod mcp;
pub mod metrics;
pub mod origin;
mod peer;
mod pins;
mod sessions;
mod state;
pub mod telemetry;
mod unauthenticated;
pub mod upstream;
pub mod webhook;

pub mod egress;
pub mod sandbox;
pub use audit_sink::{AuditSink, AuditUnavailable};
pub use authn::{AuthFailure, Authenticated, bearer_refused};
pub use catalog::Naming;
pub use containment::Timings;
pub use mcp::router;
pub use peer::PeerCertificate;
pub use pins::STARTUP_LISTING_WAIT;
pub use state::{ApprovalsConfig, Gateway, GatewayConfig, Snapshot};
pub use unauthenticated::throttled_response;
pub use upstream::{Classification, Transport, Upstream, UpstreamConfig, UpstreamError};
