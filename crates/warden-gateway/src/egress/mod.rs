//! The egress proxy: the one way agents make direct HTTP(S) calls
//! (microsegmentation keeps every other path closed, see `warden export
//! k8s`). An HTTP/1.1 forward proxy for `http://` URLs and a `CONNECT`
//! tunnel for TLS. Each connection is authenticated (an access token issued
//! for the egress resource), checked against kill switches and the agent's
//! destination allowlist (host, port, and for plain HTTP a path prefix),
//! decided by Cedar like a tool call (resource `egress/HOST:PORT`, an
//! exfiltration-capable write; `context.in_scope` = on the allowlist;
//! `context.args` = method, host, port, and for plain HTTP the decoded
//! path and query, the forwarded headers and the body, all inspected for
//! secrets, PII and injection into `context.findings`; the monitor's view: risk, anomaly, rate, session taint; it
//! counts against rate limits, an admitted connection taints the session
//! as untrusted, and a refusal can contain the agent),
//! resolved here with DNS-level denial
//! of private, loopback and link-local addresses (SSRF, cloud metadata, DNS
//! rebinding), audited, and only then connected — to the address checked.
//!
//! Plain HTTP is one request per connection: the head is parsed strictly
//! and rebuilt for the upstream ([`head`]), the body is read by its
//! `Content-Length` (bounded) and nothing after it is forwarded, so a second
//! request cannot ride the connection past the path check ([`path`]). What
//! can carry data out — decoded path and query, header values, body, host
//! labels under a wildcard rule ([`exfil`]) — is inspected and given to
//! policy. A head must arrive whole within `head_timeout_secs`, and at most
//! `max_connections` connections are served at once (slowloris).

mod address;
mod allowlist;
mod exfil;
pub mod head;
pub mod path;

pub use address::is_public;
pub use allowlist::{EgressConfig, EgressRule};

pub use head::{HeadError, RequestHead, parse_request_head};

use crate::enforce::{self, Decided, Pipeline, Refusal, Stopped, Target, Trail, correlation_id};
use crate::state::Gateway;
use sha2::Digest;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use warden_core::{ActionClass, EventKind, Sensitivity, Tool, ToolRef, ToolStatus};
use warden_inspect::Detector;
use warden_monitor::Taint;
use warden_monitor::{Claimed, Door};

/// The bearer token from `Proxy-Authorization` (Basic with the token as the
/// password, which every HTTP client can send, or Bearer).
fn proxy_token(head: &RequestHead) -> Option<String> {
    use base64::Engine;
    let (scheme, cred) = head.proxy_authorization.as_deref()?.split_once(' ')?;
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
    linger_close(client).await;
}

/// Close after an answer without losing it: closing a socket with unread
/// input (a refused body, bytes after a request) sends a reset that can
/// destroy the answer in flight, so the input is drained briefly first.
async fn linger_close(client: &mut TcpStream) {
    let _ = client.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left = 256 * 1024;
        while left > 0 {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left -= n.min(left),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Accept proxy connections until the listener fails; at most
/// `max_connections` at once, the rest refused without reading a byte.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(gw.config.egress.max_connections));
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let gw = gw.clone();
                    tokio::spawn(async move {
                        handle(gw, stream).await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    let max = gw.config.egress.max_connections;
                    tokio::spawn(async move {
                        let why = format!("the egress proxy is serving its maximum of {max} connections (egress.max_connections); retry shortly");
                        let _ = tokio::time::timeout(Duration::from_secs(1), reply(&mut stream, "503 Service Unavailable", "Retry-After: 1\r\n", &why)).await;
                    });
                }
            },
            Err(e) => {
                tracing::error!("egress proxy accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Why no request head could be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("the request head did not arrive within {0} s")]
    Timeout(u64),
    #[error("the request head is over {MAX_HEAD} bytes")]
    TooLarge,
    #[error("the connection closed before the request head ended")]
    Closed,
}

/// The longest request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;

/// How long the rest of a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Read until the end of the request head, all of it within `limit`;
/// returns the head and any bytes read past it.
async fn read_head(client: &mut TcpStream, limit: Duration) -> Result<(Vec<u8>, Vec<u8>), ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = buf.split_off(end + 4);
                return Ok(rest);
            }
            if buf.len() > MAX_HEAD {
                return Err(ReadError::TooLarge);
            }
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let rest = tokio::time::timeout(limit, read).await.map_err(|_| ReadError::Timeout(limit.as_secs()))??;
    if buf.len() > MAX_HEAD {
        return Err(ReadError::TooLarge);
    }
    Ok((buf, rest))
}

/// Read the rest of a `length`-byte body after the `early` bytes.
async fn read_body(client: &mut TcpStream, mut early: Vec<u8>, length: usize) -> Result<Vec<u8>, String> {
    early.truncate(length);
    let mut body = early;
    let fill = async {
        let mut chunk = vec![0u8; 16 * 1024];
        while body.len() < length {
            let want = (length - body.len()).min(chunk.len());
            match client.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => return Err("the connection closed before the request body ended".to_string()),
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(())
    };
    tokio::time::timeout(BODY_TIMEOUT, fill).await.map_err(|_| format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()))??;
    Ok(body)
}

async fn handle(gw: Arc<Gateway>, mut client: TcpStream) {
    let limit = Duration::from_secs(gw.config.egress.head_timeout_secs);
    let (raw, mut rest) = match read_head(&mut client, limit).await {
        Ok(h) => h,
        Err(e @ ReadError::Timeout(_)) => return reply(&mut client, "408 Request Timeout", "", &e.to_string()).await,
        Err(e) => return reply(&mut client, "400 Bad Request", "", &e.to_string()).await,
    };
    let head = match parse_request_head(&raw) {
        Ok(h) => h,
        Err(e) => return reply(&mut client, "400 Bad Request", "", &e.to_string()).await,
    };
    let start = Instant::now();
    // The target may carry data (a token in a query string): the audit
    // record gets its digest, and its path only once inspection found it clean.
    let target = format!("{}{}", head.host_header(), head.path.as_deref().unwrap_or_default());
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
    // As at `/mcp`: a source that keeps failing is throttled before any
    // signature check, and failures are audited in aggregate (strangers
    // must not drive audit writes).
    let peer = client.peer_addr().map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    if let Err(t) = gw.admit_stranger(peer, Door::Egress) {
        let retry = format!("Retry-After: {}\r\n", t.retry_after_secs);
        return reply(&mut client, "429 Too Many Requests", &retry, "too many failed authentications from this address; retry later").await;
    }
    let auth = match gw.authenticate_egress(&token, warden_core::clock::now_secs()) {
        Ok(a) => a,
        Err(f) => {
            let claimed = f.agent.as_deref().map_or(Claimed::Nothing, Claimed::Verified);
            gw.stranger_failed(peer, Door::Egress, &f.description, claimed);
            return reply(&mut client, "407 Proxy Authentication Required", challenge, &f.description).await;
        }
    };
    let mut trail = Trail::new(EventKind::EgressConnection, &correlation_id(), format!("egress:{}", head.method), &auth, start);
    trail.set_args_digest(hex::encode(sha2::Sha256::digest(target.as_bytes())));
    let mut p = Pipeline::new(&gw, &auth, warden_core::clock::now_secs(), trail);
    if let Err(r) = p.check_kills(None) {
        return refuse(&gw, &mut client, p.trail, r).await;
    }
    if head.form == head::Form::Origin {
        let why = "send the absolute http:// URL in the request line (proxy form), or CONNECT for https".to_string();
        return refuse(&gw, &mut client, p.trail, Refusal::Malformed(why)).await;
    }
    let (host, port) = (head.host.clone(), head.port);
    // The decoded path (no query) is what the prefix and policy see; an
    // ambiguous one is refused here rather than only missing a prefix.
    let path = match head.path.as_deref().map(|p| path::normalize(p.split('?').next().unwrap_or_default())).transpose() {
        Ok(p) => p,
        Err(e) => return refuse(&gw, &mut client, p.trail, Refusal::Malformed(format!("{e}; send it in one plain spelling"))).await,
    };
    // The body is inspected whole before anything is forwarded.
    let length = head.content_length.unwrap_or(0);
    if head.path.is_some() && length > gw.config.egress.max_body_bytes {
        let why = format!(
            "the request body of {length} bytes is over the {} bytes the egress proxy inspects (egress.max_body_bytes); send it in smaller requests",
            gw.config.egress.max_body_bytes
        );
        return refuse(&gw, &mut client, p.trail, Refusal::TooLarge(why)).await;
    }
    if head.expect_continue && length > 0 && client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
        return;
    }
    let body = match head.path {
        Some(_) => match read_body(&mut client, std::mem::take(&mut rest), length as usize).await {
            Ok(b) => b,
            Err(e) => return reply(&mut client, "400 Bad Request", "", &e).await,
        },
        None => Vec::new(),
    };
    let name = auth.agent.id.name().to_string();
    let rule = gw.config.egress.admit(&name, &host, port, head.path.as_deref()).cloned();
    if let Some(rule) = &rule {
        p.trail.add_policies([format!("egress:{}:{}:{}", rule.agent, rule.host, rule.port)]);
    }
    let mut args = exfil::args(&head, path.as_deref(), &body);
    // Everything but method and port can carry data out; the upstream sees
    // the raw target, the scanners also decode what they recognise. An IP
    // literal is the allowlist's business, not data (it reads as PII).
    let literal = host.parse::<IpAddr>().ok().and_then(|_| args.as_object_mut()?.remove("host"));
    let mut scan = gw.rules_only.scan_json(&args);
    if let Some(h) = literal {
        args["host"] = h;
    }
    let mut host_is_data = scan.findings.iter().any(|f| f.path == "/host" && matches!(f.finding.detector, Detector::Pii | Detector::Secret));
    if rule.as_ref().is_some_and(|r| exfil::encoded_labels(&host, &r.host)) {
        scan.summary.secrets.insert(exfil::ENCODED_HOST_LABEL.into());
        scan.summary.secret_count += 1;
        host_is_data = true;
    }
    let clean = scan.summary.secret_count == 0 && scan.summary.pii_count == 0;
    let found = p.take_inspection(scan.summary);
    // The host itself may be the data (a DNS exfiltration label): the
    // record (and the monitor's baselines) then name the rule that matched
    // it, never the host.
    let shown = match &rule {
        _ if !host_is_data => format!("{host}:{port}"),
        Some(r) => format!("{}:{port}", r.host),
        None => format!("(withheld):{port}"),
    };
    p.trail.tool = Some(format!("egress/{shown}"));
    if let Some(clean_path) = path.as_deref().filter(|_| clean) {
        p.trail.set_action(format!("egress:{} {clean_path}", head.method));
    }
    // The monitor sees the connection as a call of the pseudo-tool
    // `egress/HOST:PORT`: it counts against the agent's rate limits, a new
    // destination is an anomaly, the session's taint reaches policy (the
    // lethal trifecta guardrails) and an admitted connection taints the
    // session as having read untrusted content, and a refusal — an allowlist miss too:
    // probing destinations is suspicious — raises the risk score.
    let tool = Tool {
        tool: ToolRef { server: "egress".into(), tool: shown.clone() },
        sensitivity: Sensitivity::Medium,
        action_class: ActionClass::Write,
        exfil_capable: true,
        untrusted_content: true,
        pinned_hash: None,
        observed_hash: None,
        status: ToolStatus::Approved,
    };
    let call = Target { name: tool.tool.tool.clone(), kind: warden_core::TargetKind::Tool, tool, args, arg_bytes: target.len() + body.len() };
    let mcall = enforce::monitor_call(&auth, &call.tool, &call.args, call.arg_bytes, warden_core::clock::now_ms());
    let assessed = p.assess(&mcall);
    let decided = p.screen(&assessed).and_then(|()| match &rule {
        None => Err(Refusal::NotGranted(format!("{shown}{} is not in agent {name}'s egress allowlist", path.as_deref().filter(|_| clean).unwrap_or("")))),
        // The allowlist admitted it; the guardrails (risk, secrets in the
        // request, taint, …) still apply.
        Some(_) => match p.decide(&call, &found, &assessed, Some(true)) {
            Ok(Decided::Allow(_)) => Ok(()),
            // A proxied connection cannot wait for a human.
            Ok(Decided::Hold { reason, .. }) => Err(Refusal::CannotWait(reason)),
            Err(Refusal::Policy { reason, critical }) => Err(Refusal::Policy { reason: format!("refused by policy: {reason}"), critical }),
            Err(r) => Err(r),
        },
    });
    let decided = decided.and_then(|()| p.take_share(&mcall));
    let stopped = decided.err().map(Stopped::Refused);
    if stopped.is_none() {
        // What comes back is from outside the trust boundary.
        p.outcome_mut().taint = Taint { untrusted: true, sensitive: false };
    }
    p.settle(&mcall, &call, &assessed, stopped.as_ref()).await;
    if let Some(Stopped::Refused(r)) = stopped {
        return refuse(&gw, &mut client, p.trail, r).await;
    }
    // Resolve here and connect to exactly the address that was checked.
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(a) => a.collect(),
            Err(e) => return refuse(&gw, &mut client, p.trail, Refusal::Unavailable(format!("cannot resolve {host}: {e}"))).await,
        },
    };
    let allow_private = rule.is_some_and(|r| r.allow_private);
    if let Some(bad) = addrs.iter().find(|a| !allow_private && !is_public(a.ip())) {
        let why = format!("{host} resolves to {}, a private, loopback or link-local address (DNS-level denial)", bad.ip());
        return refuse(&gw, &mut client, p.trail, Refusal::NotGranted(why)).await;
    }
    let Some(addr) = addrs.first().copied() else {
        return refuse(&gw, &mut client, p.trail, Refusal::Unavailable(format!("{host} has no address"))).await;
    };
    p.trail.note(format!("to {addr}"));
    p.trail.forwarded();
    if let Err(e) = enforce::record(&gw, p.trail.record(None), None).await {
        return reply(&mut client, "503 Service Unavailable", "", &e.to_string()).await;
    }
    let upstream = match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return reply(&mut client, "502 Bad Gateway", "", &format!("cannot connect to {addr}: {e}")).await,
        Err(_) => return reply(&mut client, "504 Gateway Timeout", "", &format!("connecting to {addr} timed out")).await,
    };
    match head.path {
        None => tunnel(client, upstream, &rest).await,
        Some(_) => forward(client, upstream, &head, &body).await,
    }
}

/// Audit a refusal, then answer it: the proxy's rendering of a refusal is
/// its status line and the reason as the body.
async fn refuse(gw: &Gateway, client: &mut TcpStream, trail: Trail, r: Refusal) {
    let status = match &r {
        Refusal::Malformed(_) => "400 Bad Request",
        Refusal::TooLarge(_) => "413 Content Too Large",
        Refusal::Unavailable(_) => "502 Bad Gateway",
        _ => "403 Forbidden",
    };
    let body = match &r {
        // An HTTP client shows the body as is: say what stopped it.
        Refusal::Killed(k) => format!("kill switch engaged: {}", k.describe()),
        r => r.reason(),
    };
    if let Err(e) = enforce::record(gw, trail.record(Some(&Stopped::Refused(r))), None).await {
        return reply(client, "503 Service Unavailable", "", &e.to_string()).await;
    }
    reply(client, status, "", &body).await
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

/// Forward one plain HTTP request (the rebuilt head and the inspected body)
/// and stream the response.
async fn forward(mut client: TcpStream, mut upstream: TcpStream, head: &RequestHead, body: &[u8]) {
    if upstream.write_all(&head.to_upstream()).await.is_err() || upstream.write_all(body).await.is_err() {
        return;
    }
    let _ = tokio::io::copy(&mut upstream, &mut client).await;
    linger_close(&mut client).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first line the proxy answers a `CONNECT` with.
    async fn connect_status(proxy: SocketAddr, port: u16, token: &str) -> String {
        let mut s = TcpStream::connect(proxy).await.expect("proxy listens");
        let head = format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nProxy-Authorization: Bearer {token}\r\n\r\n");
        s.write_all(head.as_bytes()).await.expect("head sent");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        while !buf.windows(2).any(|w| w == b"\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&buf).lines().next().unwrap_or_default().to_string()
    }

    /// Assessing a connection only checks the limits; until the proxy
    /// admitted it with the monitor, no connection was ever counted.
    #[tokio::test]
    async fn egress_connections_count_against_the_agents_rate_limit() {
        use crate::enforce::tests::{EGRESS, Fixture, Options};
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = target.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = target.accept().await {
                drop(s);
            }
        });
        let rule = EgressRule { agent: "bot".into(), host: "127.0.0.1".into(), port, path_prefix: None, allow_private: true };
        let limit = warden_monitor::LimitRule {
            name: "one-connection".into(),
            metric: warden_monitor::Metric::Calls,
            max: 1.0,
            window_secs: 60,
            tools: vec!["egress/*".parse().unwrap()],
            agents: Vec::new(),
            per: vec![warden_monitor::Dimension::Agent],
        };
        let fx = Fixture::with(Options { limits: vec![limit], egress_allow: vec![rule], ..Default::default() }).await;
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        tokio::spawn(serve(fx.gw.clone(), proxy));
        let token = fx.issuer.issue(&warden_identity::AccessClaims { aud: EGRESS.into(), ..fx.claims() });
        assert_eq!(connect_status(proxy_addr, port, &token).await, "HTTP/1.1 200 Connection Established");
        assert_eq!(connect_status(proxy_addr, port, &token).await, "HTTP/1.1 403 Forbidden", "the second connection is over the limit");
        let refused = fx.log().await.into_iter().rfind(|e| e.kind == Some(EventKind::EgressConnection)).expect("the refusal is on record");
        assert_eq!(
            (refused.decision, refused.policies.as_slice()),
            (warden_core::Verdict::Deny, &["egress:bot:127.0.0.1:".to_string() + &port.to_string(), "limit:one-connection".into()][..])
        );
    }

    #[test]
    fn request_heads_parse_strictly() {
        let parse = |s: &str| parse_request_head(format!("{s}\r\n").as_bytes());
        let dest = |h: &RequestHead| (h.host.clone(), h.port, h.path.clone());
        let h = parse("CONNECT api.stripe.com:443 HTTP/1.1\r\nHost: api.stripe.com:443\r\nProxy-Authorization: Bearer t\r\n").unwrap();
        assert_eq!(dest(&h), ("api.stripe.com".into(), 443, None));
        assert_eq!(proxy_token(&h).as_deref(), Some("t"));
        let h = parse("GET http://docs.example.com/v1/a?b HTTP/1.1\r\nProxy-Authorization: Basic YWdlbnQ6dG9r\r\n").unwrap();
        assert_eq!(dest(&h), ("docs.example.com".into(), 80, Some("/v1/a?b".into())));
        assert_eq!(proxy_token(&h).as_deref(), Some("tok"));
        assert_eq!(dest(&parse("GET http://[::1]:8080/ HTTP/1.1\r\n").unwrap()), ("::1".into(), 8080, Some("/".into())));
        assert!(parse("GET https://x/ HTTP/1.1\r\n").is_err(), "https goes through CONNECT");
        assert!(parse("CONNECT x HTTP/1.1\r\n").is_err(), "a tunnel needs a port");
        assert!(parse("GET http://user@evil/ HTTP/1.1\r\n").is_err());
        assert!(parse("GET / HTTP/2\r\n").is_err());
        assert!(parse("GET  / HTTP/1.1\r\n").is_err());
        assert!(parse("GET / HTTP/1.1\r\nBad Header: x\r\n").is_err());
    }
}
