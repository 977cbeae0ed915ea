//! `[egress]` in `warden.toml`: where the proxy listens, its bounds, and the
//! allowlist of destinations per agent (host, port, and for plain HTTP a
//! path prefix) — the egress front door's own grant, which policy sees as
//! `context.in_scope`. Pure, no IO.

use super::path;
use serde::Deserialize;

/// `[egress]` in `warden.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Where the proxy listens (e.g. `0.0.0.0:8701`); off when unset.
    pub listen: Option<String>,
    #[serde(default)]
    pub allow: Vec<EgressRule>,
    /// Connections served at once; more are refused at once (503).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The whole request head must arrive within this many seconds.
    #[serde(default = "default_head_timeout_secs")]
    pub head_timeout_secs: u64,
    /// Plain HTTP request bodies are inspected up to this size; larger ones
    /// are refused (413), never forwarded unscanned.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
}

fn default_max_connections() -> usize {
    1024
}
fn default_head_timeout_secs() -> u64 {
    10
}
fn default_max_body_bytes() -> u64 {
    1 << 20
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            listen: None,
            allow: Vec::new(),
            max_connections: default_max_connections(),
            head_timeout_secs: default_head_timeout_secs(),
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    /// Agent name, or `*` for every agent.
    pub agent: String,
    /// Exact host name, `*.domain` for its subdomains, or an IP literal.
    pub host: String,
    pub port: u16,
    /// Plain HTTP only: the request path must start with this. A rule with
    /// a prefix never admits a `CONNECT` tunnel (the path is not visible).
    pub path_prefix: Option<String>,
    /// Admit addresses that are private, loopback or link-local.
    #[serde(default)]
    pub allow_private: bool,
}

impl EgressConfig {
    pub fn validate(&self) -> Result<(), String> {
        for r in &self.allow {
            if r.host.is_empty() || r.host.contains(['/', ' ']) || r.host.starts_with('*') && !r.host.starts_with("*.") {
                return Err(format!("egress.allow host {:?}: a host name, *.domain or an IP address", r.host));
            }
            if r.agent != "*" {
                warden_core::validate_name(&r.agent).map_err(|e| format!("egress.allow agent: {e}"))?;
            }
            if let Some(p) = &r.path_prefix {
                // Paths are matched decoded; a prefix that is not already in
                // that form could never match.
                if !p.starts_with('/') || path::normalize(p).as_deref() != Ok(p.as_str()) || p.contains('?') {
                    return Err(format!("egress.allow path_prefix {p:?}: a decoded path starting with /, without dot segments, ; or %"));
                }
            }
        }
        if self.max_connections == 0 || self.head_timeout_secs == 0 || self.max_body_bytes == 0 {
            return Err("egress.max_connections, head_timeout_secs and max_body_bytes must be at least 1".into());
        }
        Ok(())
    }

    /// The first rule admitting `agent` to `host:port` (and `path` for plain
    /// HTTP; `None` for a tunnel).
    pub fn admit(&self, agent: &str, host: &str, port: u16, path: Option<&str>) -> Option<&EgressRule> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow.iter().find(|r| {
            (r.agent == "*" || r.agent == agent)
                && r.port == port
                && match r.host.strip_prefix("*.") {
                    Some(domain) => host.ends_with(&format!(".{}", domain.to_ascii_lowercase())),
                    None => r.host.eq_ignore_ascii_case(&host),
                }
                && match (&r.path_prefix, path) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(prefix), Some(p)) => path::within(p, prefix),
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EgressConfig {
        let rule = |agent: &str, host: &str, port, path: Option<&str>| EgressRule {
            agent: agent.into(),
            host: host.into(),
            port,
            path_prefix: path.map(Into::into),
            allow_private: false,
        };
        EgressConfig {
            allow: vec![rule("billing", "api.stripe.com", 443, None), rule("*", "*.example.com", 80, Some("/v1/")), rule("billing", "10.0.0.5", 8080, None)],
            ..Default::default()
        }
    }

    #[test]
    fn allowlists_match_agent_host_port_and_path() {
        let c = cfg();
        assert!(c.admit("billing", "api.stripe.com", 443, None).is_some());
        assert!(c.admit("billing", "API.Stripe.com.", 443, None).is_some(), "case and a trailing dot do not matter");
        assert!(c.admit("support", "api.stripe.com", 443, None).is_none(), "another agent");
        assert!(c.admit("billing", "api.stripe.com", 80, None).is_none(), "another port");
        assert!(c.admit("billing", "evil-api.stripe.com", 443, None).is_none());
        assert!(c.admit("support", "docs.example.com", 80, Some("/v1/items?x=1")).is_some());
        assert!(c.admit("support", "example.com", 80, Some("/v1/")).is_none(), "*.domain is subdomains only");
        assert!(c.admit("support", "docs.example.com", 80, Some("/v2/items")).is_none());
        assert!(c.admit("support", "docs.example.com", 80, None).is_none(), "a tunnel cannot honour a path prefix");
        for sneaky in ["/v1/../admin", "/v1/%2e%2e/admin", "/v1/..%2fadmin", "/v1\\..\\admin", "/v1/./x"] {
            assert!(c.admit("support", "docs.example.com", 80, Some(sneaky)).is_none(), "{sneaky}");
        }
        assert!(c.validate().is_ok());
        let bad = EgressConfig { allow: vec![EgressRule { host: "*bad.com".into(), ..c.allow[0].clone() }], ..Default::default() };
        assert!(bad.validate().is_err());
        for prefix in ["v1/", "/v1/../x", "/v1/%2e", "/v1;x/", "/v1/?q"] {
            let bad = EgressConfig { allow: vec![EgressRule { path_prefix: Some(prefix.into()), ..c.allow[1].clone() }], ..Default::default() };
            assert!(bad.validate().is_err(), "{prefix}");
        }
    }
}
