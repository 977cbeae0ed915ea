//! The egress proxy: the one way agents make direct HTTP(S) calls
//! (microsegmentation keeps every other path closed, see `warden export
//! k8s`). An HTTP/1.1 forward proxy for `http://` URLs and a `CONNECT`
//! tunnel for TLS. Each connection is authenticated (an access token issued
//! for the egress resource), checked against kill switches and the agent's
//! destination allowlist (host, port, and for plain HTTP a path prefix),
//! decided by Cedar like a tool call (resource `egress/HOST:PORT`, an
//! exfiltration-capable write; `context.in_scope` = on the allowlist;
//! `context.args` = method, host, port, path, inspected for secrets and
//! injection; the monitor's view: risk, anomaly, rate, session taint; it
//! counts against rate limits, an admitted connection taints the session
//! as untrusted, and a refusal can contain the agent),
//! resolved here with DNS-level denial
//! of private, loopback and link-local addresses (SSRF, cloud metadata, DNS
//! rebinding), audited, and only then connected — to the address checked.
//!
//! Plain HTTP is one request per connection: the request body is forwarded
//! by its `Content-Length` and nothing after it, so a second request cannot
//! ride the connection past the path check.

use crate::mcp::{self, MonitorView};
use crate::state::Gateway;
use serde::Deserialize;
use sha2::Digest;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warden_core::{ActionClass, AuditEvent, Decision, EventKind, Sensitivity, Tool, ToolRef, ToolStatus};
use warden_monitor::{Outcome, Refusal, Taint};

/// `[egress]` in `warden.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Where the proxy listens (e.g. `0.0.0.0:8701`); off when unset.
    pub listen: Option<String>,
    #[serde(default)]
    pub allow: Vec<EgressRule>,
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
            if r.path_prefix.as_deref().is_some_and(|p| !p.starts_with('/')) {
                return Err(format!("egress.allow path_prefix {:?} must start with /", r.path_prefix.as_deref().unwrap_or_default()));
            }
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
                    (Some(prefix), Some(p)) => path_within(p, prefix),
                }
        })
    }
}

/// Is `path` under `prefix` once dot segments and encoded separators are
/// taken into account (`/v1/../admin` is not under `/v1/`)?
fn path_within(path: &str, prefix: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
        return false;
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return false;
    }
    path.starts_with(prefix)
}

/// May the proxy connect to `ip` without an explicit `allow_private`?
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space (CGNAT)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b)) // NAT64 of any IPv4
        }
    }
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    /// `host:port` (CONNECT) or an absolute `http://` URL.
    target: String,
    /// Header lines as received, in order.
    headers: Vec<(String, String)>,
}

/// The longest request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;

fn parse_head(raw: &str) -> Result<Head, String> {
    let mut lines = raw.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("malformed request line".into());
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(format!("unsupported protocol {version}"));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':').ok_or_else(|| format!("malformed header line {line:?}"))?;
        if k.is_empty() || k.contains([' ', '\t']) {
            return Err(format!("malformed header name {k:?}"));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Ok(Head { method: method.to_string(), target: target.to_string(), headers })
}

impl Head {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// (host, port, path) of the destination; path `None` for a tunnel.
    fn destination(&self) -> Result<(String, u16, Option<String>), String> {
        let split_port = |hp: &str, default: Option<u16>| -> Result<(String, u16), String> {
            let (host, port) = match hp.rsplit_once(':') {
                Some((h, _)) if !h.ends_with(']') && h.contains(':') => (hp.to_string(), default.ok_or("a port is required")?.to_string()),
                Some((h, p)) => (h.to_string(), p.to_string()),
                None => (hp.to_string(), default.ok_or("a port is required")?.to_string()),
            };
            let port: u16 = port.parse().map_err(|_| format!("bad port in {hp:?}"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            if host.is_empty() || host.contains(['/', '@', ' ']) {
                return Err(format!("bad host in {hp:?}"));
            }
            Ok((host, port))
        };
        if self.method == "CONNECT" {
            let (h, p) = split_port(&self.target, None)?;
            return Ok((h, p, None));
        }
        let rest = self.target.strip_prefix("http://").ok_or("only absolute http:// URLs are forwarded; use CONNECT for https")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (h, p) = split_port(authority, Some(80))?;
        Ok((h, p, Some(path.to_string())))
    }
}

/// The bearer token from `Proxy-Authorization` (Basic with the token as the
/// password, which every HTTP client can send, or Bearer).
fn proxy_token(head: &Head) -> Option<String> {
    use base64::Engine;
    let v = head.header("proxy-authorization");
    let [v] = v.as_slice() else { return None };
    let (scheme, cred) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(cred.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD.decode(cred.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        return text.split_once(':').map(|(_, token)| token.to_string());
    }
    None
}

async fn reply(client: &mut TcpStream, status: &str, extra: &str, message: &str) {
    let body = format!("{message}\n");
    let _ = client
        .write_all(
            format!("HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
        )
        .await;
}

/// Accept proxy connections until the listener fails.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let gw = gw.clone();
                tokio::spawn(async move { handle(gw, stream).await });
            }
            Err(e) => {
                tracing::error!("egress proxy accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Read until the end of the request head; returns the head and any bytes
/// read past it.
async fn read_head(client: &mut TcpStream) -> Result<(String, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            let head = String::from_utf8(buf).map_err(|_| "request head is not UTF-8".to_string())?;
            return Ok((head, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(format!("request head over {MAX_HEAD} bytes"));
        }
        let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut chunk)).await.map_err(|_| "timed out reading the request".to_string())?;
        match n {
            Ok(0) | Err(_) => return Err("connection closed".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn handle(gw: Arc<Gateway>, mut client: TcpStream) {
    let (raw, rest) = match read_head(&mut client).await {
        Ok(h) => h,
        Err(e) => return reply(&mut client, "400 Bad Request", "", &e).await,
    };
    let head = match parse_head(&raw) {
        Ok(h) => h,
        Err(e) => return reply(&mut client, "400 Bad Request", "", &e).await,
    };
    let mut ev = AuditEvent { kind: Some(EventKind::EgressConnection), decision: "deny".into(), ..Default::default() };
    // The target may carry data (a token in a query string): the audit
    // record gets its digest, and its path only once inspection found it clean.
    ev.action = Some(format!("egress:{}", head.method));
    ev.args_sha256 = Some(hex::encode(sha2::Sha256::digest(head.target.as_bytes())));
    if let Some(why) = gw.registry_stale() {
        return reply(&mut client, "503 Service Unavailable", "", &why).await;
    }
    let challenge = "Proxy-Authenticate: Basic realm=\"warden-egress\"\r\n";
    let Some(token) = proxy_token(&head) else {
        return reply(
            &mut client,
            "407 Proxy Authentication Required",
            challenge,
            "authenticate with an access token for the egress resource (Proxy-Authorization: Basic with the token as password, or Bearer)",
        )
        .await;
    };
    let auth = match gw.authenticate_egress(&token, crate::now_secs()) {
        Ok(a) => a,
        Err(f) => {
            ev.agent = f.agent;
            ev.reason = Some(f.description.clone());
            return finish(&gw, &mut client, ev, "407 Proxy Authentication Required", challenge, &f.description).await;
        }
    };
    ev.agent = Some(auth.agent.id.to_string());
    ev.subject = Some(auth.claims.sub.clone());
    ev.token_id = Some(auth.claims.jti.clone());
    ev.delegation = auth.claims.delegation().iter().map(|s| s.to_string()).collect();
    if let Some(k) = gw.kill_covering(&auth, None) {
        let why = format!("kill switch engaged: {}", k.describe());
        ev.reason = Some(why.clone());
        return finish(&gw, &mut client, ev, "403 Forbidden", "", &why).await;
    }
    let (host, port, path) = match head.destination() {
        Ok(d) => d,
        Err(e) => {
            ev.reason = Some(e.clone());
            return finish(&gw, &mut client, ev, "400 Bad Request", "", &e).await;
        }
    };
    ev.tool = Some(format!("egress/{host}:{port}"));
    let name = auth.agent.id.name().to_string();
    let rule = gw.config.egress.admit(&name, &host, port, path.as_deref()).cloned();
    if let Some(rule) = &rule {
        ev.policies = vec![format!("egress:{}:{}:{}", rule.agent, rule.host, rule.port)];
    }
    let args = serde_json::json!({ "method": head.method, "host": host, "port": port, "path": path.clone().unwrap_or_default() });
    // The path and query are what can carry data out (host and method are
    // the allowlist's business).
    let scan = gw.inspector.scan_json(&serde_json::json!({ "path": path.clone().unwrap_or_default() }));
    ev.findings = crate::mcp::finding_labels("args", &scan.summary);
    if let Some(p) = path.as_deref().filter(|_| scan.summary.secret_count == 0 && scan.summary.pii_count == 0) {
        ev.action = Some(format!("egress:{} {}", head.method, p.split('?').next().unwrap_or_default()));
    }
    // The monitor sees the connection as a call of the pseudo-tool
    // `egress/HOST:PORT`: it counts against the agent's rate limits, a new
    // destination is an anomaly, the session's taint reaches policy (the
    // lethal trifecta guardrails) and an admitted connection taints the
    // session as having read untrusted content, and a refusal — an allowlist miss too:
    // probing destinations is suspicious — raises the risk score.
    let tool = Tool {
        tool: ToolRef { server: "egress".into(), tool: format!("{host}:{port}") },
        sensitivity: Sensitivity::Medium,
        action_class: ActionClass::Write,
        exfil_capable: true,
        untrusted_content: true,
        pinned_hash: None,
        observed_hash: None,
        status: ToolStatus::Approved,
    };
    let mcall = mcp::monitor_call(&auth, &tool, &args, head.target.len());
    let seen = gw.monitor.assess(&mcall);
    let assessed = Instant::now();
    ev.risk = Some(seen.risk);
    ev.anomaly = Some(seen.anomaly.score);
    let mut outcome = Outcome { injection_in_args: scan.summary.injection_score >= 50, secret_in_args: scan.summary.secret_count > 0, ..Default::default() };
    let refused = if let Some(cause) = &seen.contain {
        ev.policies.push("monitor:risk".into());
        Some(format!("the agent is contained: {cause}"))
    } else if let Some(r) = &seen.refusal {
        outcome.limit_hit = matches!(r, Refusal::Limit(_));
        ev.policies.push(r.id());
        Some(r.to_string())
    } else if rule.is_none() {
        Some(format!("{host}:{port}{} is not in agent {name}'s egress allowlist", path.as_deref().unwrap_or("")))
    } else {
        // The allowlist admitted it; the guardrails (risk, secrets in the
        // URL, taint, …) still apply.
        let policy = gw.policy();
        let mut facts = mcp::facts(&auth, &tool, &args, mcp::Ask::Call(&scan.summary), crate::now_secs(), &MonitorView::from(&seen));
        facts.request.in_scope = true;
        match policy.decide(&facts) {
            Decision::Allow { policies, .. } => {
                ev.policies.extend(policies);
                // What comes back is from outside the trust boundary.
                outcome.taint = Taint { untrusted: true, sensitive: false };
                None
            }
            Decision::Deny { policies, reason } => {
                outcome.critical = policies.iter().find(|p| policy.is_critical(p)).cloned();
                ev.policies.extend(policies);
                Some(format!("refused by policy: {reason}"))
            }
            // A proxied connection cannot wait for a human.
            Decision::NeedsApproval { policies, reason, .. } => {
                outcome.trifecta = seen.taint.both();
                ev.policies.extend(policies);
                Some(format!("refused by policy (it needs a human's approval, which the proxy cannot wait for): {reason}"))
            }
        }
    };
    outcome.denied = refused.is_some();
    mcp::settle(&gw, &mcall, &seen, assessed, &outcome).await;
    if let Some(why) = refused {
        ev.reason = Some(why.clone());
        return finish(&gw, &mut client, ev, "403 Forbidden", "", &why).await;
    }
    // Resolve here and connect to exactly the address that was checked.
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                let why = format!("cannot resolve {host}: {e}");
                ev.reason = Some(why.clone());
                return finish(&gw, &mut client, ev, "502 Bad Gateway", "", &why).await;
            }
        },
    };
    let allow_private = rule.is_some_and(|r| r.allow_private);
    if let Some(bad) = addrs.iter().find(|a| !allow_private && !is_public(a.ip())) {
        let why = format!("{host} resolves to {}, a private, loopback or link-local address (DNS-level denial)", bad.ip());
        ev.reason = Some(why.clone());
        return finish(&gw, &mut client, ev, "403 Forbidden", "", &why).await;
    }
    let Some(addr) = addrs.first().copied() else {
        return finish(&gw, &mut client, ev, "502 Bad Gateway", "", &format!("{host} has no address")).await;
    };
    ev.decision = "allow".into();
    ev.reason = Some(format!("to {addr}"));
    ev.forwarded = true;
    if let Err(e) = gw.audit.record(ev).await {
        return reply(&mut client, "503 Service Unavailable", "", &e.to_string()).await;
    }
    let upstream = match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return reply(&mut client, "502 Bad Gateway", "", &format!("cannot connect to {addr}: {e}")).await,
        Err(_) => return reply(&mut client, "504 Gateway Timeout", "", &format!("connecting to {addr} timed out")).await,
    };
    match path {
        None => tunnel(client, upstream, &rest).await,
        Some(path) => forward(client, upstream, &head, &host, port, &path, rest).await,
    }
}

/// Audit a refusal, then answer it.
async fn finish(gw: &Gateway, client: &mut TcpStream, ev: AuditEvent, status: &str, extra: &str, message: &str) {
    if let Err(e) = gw.audit.record(ev).await {
        return reply(client, "503 Service Unavailable", "", &e.to_string()).await;
    }
    reply(client, status, extra, message).await
}

async fn tunnel(mut client: TcpStream, mut upstream: TcpStream, early: &[u8]) {
    if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_err() {
        return;
    }
    if !early.is_empty() && upstream.write_all(early).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Forward one plain HTTP request in origin form and stream the response.
async fn forward(mut client: TcpStream, mut upstream: TcpStream, head: &Head, host: &str, port: u16, path: &str, mut body: Vec<u8>) {
    if !head.header("transfer-encoding").is_empty() {
        return reply(&mut client, "411 Length Required", "", "chunked request bodies are not forwarded; send Content-Length").await;
    }
    let length: usize = match head.header("content-length").as_slice() {
        [] => 0,
        [v] => match v.parse() {
            Ok(n) => n,
            Err(_) => return reply(&mut client, "400 Bad Request", "", "bad Content-Length").await,
        },
        _ => return reply(&mut client, "400 Bad Request", "", "more than one Content-Length").await,
    };
    let mut out = format!("{} {path} HTTP/1.1\r\nHost: {}\r\n", head.method, if port == 80 { host.to_string() } else { format!("{host}:{port}") });
    for (k, v) in &head.headers {
        let k_low = k.to_ascii_lowercase();
        if !matches!(k_low.as_str(), "host" | "connection" | "proxy-authorization" | "proxy-connection" | "keep-alive") {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    body.truncate(length);
    let mut remaining = length - body.len();
    if upstream.write_all(out.as_bytes()).await.is_err() || upstream.write_all(&body).await.is_err() {
        return;
    }
    let mut chunk = vec![0u8; 16 * 1024];
    while remaining > 0 {
        let want = remaining.min(chunk.len());
        match client.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if upstream.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                remaining -= n;
            }
        }
    }
    let _ = tokio::io::copy(&mut upstream, &mut client).await;
    let _ = client.shutdown().await;
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
            listen: None,
            allow: vec![rule("billing", "api.stripe.com", 443, None), rule("*", "*.example.com", 80, Some("/v1/")), rule("billing", "10.0.0.5", 8080, None)],
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
        let bad = EgressConfig { allow: vec![EgressRule { host: "*bad.com".into(), ..c.allow[0].clone() }], listen: None };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_not_public() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn request_heads_parse_strictly() {
        let h = parse_head("CONNECT api.stripe.com:443 HTTP/1.1\r\nHost: api.stripe.com:443\r\nProxy-Authorization: Bearer t\r\n").unwrap();
        assert_eq!(h.destination().unwrap(), ("api.stripe.com".into(), 443, None));
        assert_eq!(proxy_token(&h).as_deref(), Some("t"));
        let h = parse_head("GET http://docs.example.com/v1/a?b HTTP/1.1\r\nProxy-Authorization: Basic YWdlbnQ6dG9r\r\n").unwrap();
        assert_eq!(h.destination().unwrap(), ("docs.example.com".into(), 80, Some("/v1/a?b".into())));
        assert_eq!(proxy_token(&h).as_deref(), Some("tok"));
        assert_eq!(parse_head("GET http://[::1]:8080/ HTTP/1.1\r\n").unwrap().destination().unwrap(), ("::1".into(), 8080, Some("/".into())));
        assert!(parse_head("GET https://x/ HTTP/1.1\r\n").unwrap().destination().is_err(), "https goes through CONNECT");
        assert!(parse_head("CONNECT x HTTP/1.1\r\n").unwrap().destination().is_err(), "a tunnel needs a port");
        assert!(parse_head("GET http://user@evil/ HTTP/1.1\r\n").unwrap().destination().is_err());
        assert!(parse_head("GET / HTTP/2\r\n").is_err());
        assert!(parse_head("GET  / HTTP/1.1\r\n").is_err());
        assert!(parse_head("GET / HTTP/1.1\r\nBad Header: x\r\n").is_err());
    }
}
