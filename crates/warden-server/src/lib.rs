//! The control plane's HTTP face: the OAuth 2.1 authorization server (token
//! endpoint with `private_key_jwt` client authentication and DPoP, RFC 8693
//! token exchange, RFC 7009 revocation, RFC 8414 and RFC 9728 metadata, JWKS,
//! and the authorization code grant for hosts acting for a human)
//! next to the gateway's MCP endpoint; the admin REST API, `/metrics` and the
//! dashboard; configuration and start-up.

mod admin;
mod app;
mod config;
mod interactive;
mod oauth;
mod policy_files;
mod tls;

pub use admin::{OPENAPI, promotion_report};
pub use app::{Running, StartError, ensure_data_dir, load_or_create_key, open_store, start, write_private};
pub use config::{ConfigError, HostConfig, InteractiveConfig, ServerConfig};
pub use policy_files::{load_policy_dir, load_test_files, read_policy_dir};
pub use tls::{TlsConfig, load_or_create_ca};
