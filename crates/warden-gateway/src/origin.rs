//! DNS-rebinding protection for `/mcp`, as the MCP transport requires of
//! servers: a browser page whose name an attacker pointed at the gateway's
//! address sends its own name as `Host` (and, on a POST, as `Origin`), so a
//! request naming a host or origin the gateway does not serve is refused
//! (403) before anything else reads it. Pure: headers in, a verdict out.
//!
//! Allowed by default: the gateway's public URL (its origin, its host and
//! port) and, when it listens on a loopback address, `localhost`,
//! `127.0.0.1` and `[::1]` on its port. `[http] allowed_origins` and
//! `allowed_hosts` add more; `allowed_hosts = ["*"]` turns the host check
//! off behind a proxy that rewrites `Host` (the origin check stays).

use std::net::SocketAddr;

const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// `[http]` in warden.toml.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Origins (`scheme://host[:port]`) of web pages allowed to call `/mcp`.
    pub allowed_origins: Vec<String>,
    /// `Host` values (`host[:port]`) the gateway answers to; `"*"`: any.
    pub allowed_hosts: Vec<String>,
}

/// A request refused as a possible DNS rebinding; the text says which
/// header and what the operator can allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rebinding {
    #[error("the Host header {0:?} is not a name this gateway serves (DNS rebinding protection); an operator can add it to [http] allowed_hosts")]
    Host(String),
    #[error("requests from web pages at {0:?} are refused (DNS rebinding protection); an operator can add the origin to [http] allowed_origins")]
    Origin(String),
}

#[derive(Debug, Clone)]
pub struct OriginPolicy {
    origins: Vec<String>,
    /// `None`: any host.
    hosts: Option<Vec<String>>,
    /// The port a `Host` without one means: the public URL's scheme's.
    host_port: u16,
}

/// `scheme://host:port` of an HTTP(S) origin, as the `url` crate parses it
/// (host lowercased and IDNA-normalized, the scheme's default port made
/// explicit); `None` for anything else, or one with user info.
fn normal_origin(origin: &str) -> Option<String> {
    let u = url::Url::parse(origin.trim()).ok()?;
    if !matches!(u.scheme(), "http" | "https") || !u.username().is_empty() || u.password().is_some() {
        return None;
    }
    Some(format!("{}://{}:{}", u.scheme(), u.host_str()?, u.port_or_known_default()?))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `authority` with `port` added when it names none (`[::1]` stays bracketed).
fn with_port(authority: &str, port: u16) -> String {
    let has_port =
        authority.rsplit_once(':').is_some_and(|(h, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (!h.starts_with('[') || h.ends_with(']')));
    if has_port { authority.to_string() } else { format!("{authority}:{port}") }
}

impl OriginPolicy {
    /// For a gateway at `public_url` listening on `listen`.
    pub fn new(public_url: &str, listen: SocketAddr, cfg: &HttpConfig) -> Self {
        let host_port = public_url.split_once("://").and_then(|(s, _)| default_port(&s.to_ascii_lowercase())).unwrap_or(80);
        let mut origins: Vec<String> = normal_origin(public_url).into_iter().collect();
        origins.extend(cfg.allowed_origins.iter().filter_map(|o| normal_origin(o)));
        // The gateway's own pages under another of its loopback names.
        if listen.ip().is_loopback() {
            let scheme = public_url.split_once("://").map_or("http", |(s, _)| s).to_ascii_lowercase();
            origins.extend(LOOPBACK.map(|h| format!("{scheme}://{h}:{}", listen.port())));
        }
        let hosts = if cfg.allowed_hosts.iter().any(|h| h == "*") {
            None
        } else {
            let mut hosts: Vec<String> = origins.first().and_then(|o| o.split_once("://")).map(|(_, a)| a.to_string()).into_iter().collect();
            if listen.ip().is_loopback() {
                hosts.extend(LOOPBACK.map(|h| format!("{h}:{}", listen.port())));
            }
            hosts.extend(cfg.allowed_hosts.iter().map(|h| with_port(&h.to_ascii_lowercase(), host_port)));
            Some(hosts)
        };
        Self { origins, hosts, host_port }
    }

    /// Whether a request with these `Host` and `Origin` headers may reach
    /// `/mcp`. A request without `Origin` is not from a web page's script
    /// (browsers send one on every cross-origin and every POST request).
    pub fn check(&self, host: Option<&str>, origin: Option<&str>) -> Result<(), Rebinding> {
        if let Some(hosts) = &self.hosts {
            let h = host.unwrap_or("").trim().to_ascii_lowercase();
            if h.is_empty() || !hosts.contains(&with_port(&h, self.host_port)) {
                return Err(Rebinding::Host(warden_core::untrusted_text(&h, 200)));
            }
        }
        if let Some(o) = origin {
            match normal_origin(o) {
                Some(n) if self.origins.contains(&n) => {}
                _ => return Err(Rebinding::Origin(warden_core::untrusted_text(o, 200))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> OriginPolicy {
        OriginPolicy::new("http://127.0.0.1:8700", "127.0.0.1:8700".parse().unwrap(), &HttpConfig::default())
    }

    #[test]
    fn the_gateways_own_names_are_served_and_a_rebound_name_is_not() {
        let p = local();
        for ok in ["127.0.0.1:8700", "localhost:8700", "LOCALHOST:8700", "[::1]:8700"] {
            assert_eq!(p.check(Some(ok), None), Ok(()), "{ok}");
        }
        for bad in ["evil.example:8700", "127.0.0.1:9999", "attacker.example", ""] {
            assert!(matches!(p.check(Some(bad), None), Err(Rebinding::Host(_))), "{bad}");
        }
        assert!(p.check(None, None).is_err(), "no Host at all");
        assert_eq!(p.check(Some("localhost:8700"), Some("http://localhost:8700")), Ok(()), "its own page by another loopback name");
        assert!(p.check(Some("localhost:8700"), Some("http://localhost:3000")).is_err(), "another local server's page");
    }

    #[test]
    fn only_listed_origins_may_call_and_default_ports_compare_equal() {
        let cfg = HttpConfig { allowed_origins: vec!["https://console.example.com".into()], allowed_hosts: vec!["warden.internal".into()] };
        let p = OriginPolicy::new("https://warden.example.com", "0.0.0.0:443".parse().unwrap(), &cfg);
        assert_eq!(p.check(Some("warden.example.com"), Some("https://warden.example.com")), Ok(()));
        assert_eq!(p.check(Some("warden.example.com:443"), Some("https://console.example.com:443/path")), Ok(()));
        assert_eq!(p.check(Some("warden.internal"), None), Ok(()));
        assert!(matches!(p.check(Some("localhost:443"), None), Err(Rebinding::Host(_))), "not loopback: localhost is not its name");
        for bad in ["https://evil.example", "http://warden.example.com", "null", "https://warden.example.com.evil.example", "https://u@warden.example.com"] {
            assert!(matches!(p.check(Some("warden.example.com"), Some(bad)), Err(Rebinding::Origin(_))), "{bad}");
        }
    }

    #[test]
    fn a_wildcard_host_list_turns_off_only_the_host_check() {
        let cfg = HttpConfig { allowed_hosts: vec!["*".into()], ..HttpConfig::default() };
        let p = OriginPolicy::new("http://127.0.0.1:8700", "127.0.0.1:8700".parse().unwrap(), &cfg);
        assert_eq!(p.check(Some("anything.example"), None), Ok(()));
        assert!(p.check(Some("anything.example"), Some("http://evil.example")).is_err());
    }
}
