//! `warden connect --listen`: streamable HTTP on a loopback address, for
//! hosts that connect to a URL rather than launch a process. Each request is
//! passed to the gateway with the agent's credentials and its answer (JSON,
//! or an SSE stream, byte for byte) comes back; the host's session and
//! protocol headers pass through both ways.
//!
//! Only its user may use it: the address must be loopback; every request
//! must carry `Authorization: Bearer SECRET`, the secret the user gave the
//! bridge and the host (else other users and processes of the machine
//! could act as the agent); and a request whose `Host` or `Origin` names
//! another host is refused (403), so a web page cannot reach the agent's
//! identity by DNS rebinding. A refusal
//! of the agent's credentials comes back as a JSON-RPC error rather than a
//! 401, which would send the host looking for an OAuth server the bridge
//! does not have.

use crate::relay::{MAX_MESSAGE_BYTES, Relay, challenge_description, error_reply, request_id};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use warden_core::jsonrpc_codes;

/// The request headers a host's MCP messages depend on (with the
/// `Mcp-Param-*` ones MCP 2026-07-28 mirrors arguments into); nothing else
/// (its cookies, its own `Authorization`) reaches the gateway.
const REQUEST_HEADERS: [&str; 7] = ["content-type", "accept", "mcp-session-id", "mcp-protocol-version", "last-event-id", "mcp-method", "mcp-name"];
/// The answer headers a host needs.
const ANSWER_HEADERS: [&str; 5] = ["content-type", "mcp-session-id", "cache-control", "allow", "x-warden-correlation-id"];

#[derive(Debug, thiserror::Error)]
#[error("--listen {0}: the bridge serves only this machine; use a loopback address such as 127.0.0.1:8765")]
pub struct NotLoopback(pub SocketAddr);

struct Front {
    relay: Arc<Relay>,
    port: u16,
    /// SHA-256 of `Bearer SECRET`: compared digest to digest, so the
    /// comparison's time says nothing about the secret.
    expected: [u8; 32],
}

/// The shortest secret accepted for the listener.
pub const MIN_SECRET_CHARS: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("the listener's secret must be at least {MIN_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`)")]
pub struct WeakSecret;

fn digest(v: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(v).into()
}

/// Serve `/mcp` on `listener` until the process ends, to requests that
/// carry `secret`.
pub async fn serve(relay: Arc<Relay>, listener: tokio::net::TcpListener, secret: &str) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other(NotLoopback(addr)));
    }
    if secret.chars().count() < MIN_SECRET_CHARS {
        return Err(std::io::Error::other(WeakSecret));
    }
    let expected = digest(format!("Bearer {secret}").as_bytes());
    let app = Router::new().route("/mcp", axum::routing::any(handle)).layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES)).with_state(Arc::new(Front {
        relay,
        port: addr.port(),
        expected,
    }));
    axum::serve(listener, app).await
}

/// Whether `host` (a `Host` header, or the authority of an `Origin`) is
/// this machine; `port`, when given, must be the bridge's.
fn is_local(authority: &str, port: Option<u16>) -> bool {
    let (host, p) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().ok()),
        _ => (authority, None),
    };
    let local = matches!(host.to_ascii_lowercase().as_str(), "localhost" | "127.0.0.1" | "[::1]");
    local && (port.is_none() || p.is_none() || p == port)
}

fn local_only(headers: &HeaderMap, port: u16) -> Result<(), &'static str> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_local(host, Some(port)) {
        return Err("the Host header must name this machine (localhost, 127.0.0.1 or [::1]) and the bridge's port");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
        if !is_local(authority, None) {
            return Err("requests from web pages of other hosts are refused (Origin is not this machine)");
        }
    }
    Ok(())
}

async fn handle(State(front): State<Arc<Front>>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(why) = local_only(&headers, front.port) {
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    let presented = headers.get(header::AUTHORIZATION).map(|v| digest(v.as_bytes()));
    if presented != Some(front.expected) {
        return (StatusCode::FORBIDDEN, "send the bridge's secret as `Authorization: Bearer SECRET` (WARDEN_CONNECT_SECRET)").into_response();
    }
    let mut pass = HeaderMap::new();
    for name in REQUEST_HEADERS {
        if let Some(v) = headers.get(name) {
            pass.insert(HeaderName::from_static(name), v.clone());
        }
    }
    for (name, v) in headers.iter().filter(|(n, _)| n.as_str().starts_with("mcp-param-")) {
        pass.append(name.clone(), v.clone());
    }
    let body_id = || serde_json::from_slice::<Value>(&body).ok().and_then(|m| request_id(&m).cloned());
    let resp = match front.relay.send(method, pass, body.to_vec()).await {
        Ok(r) => r,
        Err(e) => {
            return match body_id() {
                Some(id) => Json(e.reply(&id)).into_response(),
                None => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            };
        }
    };
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        let said = challenge_description(resp.headers()).unwrap_or_else(|| "no reason given".into());
        let msg = format!("the Warden gateway refused agent {}'s token: {said}", front.relay.agent());
        return match body_id() {
            Some(id) => Json(error_reply(&id, jsonrpc_codes::UNAUTHENTICATED, &msg)).into_response(),
            None => (StatusCode::FORBIDDEN, msg).into_response(),
        };
    }
    let mut answer = Response::builder().status(resp.status().as_u16());
    for name in ANSWER_HEADERS {
        for v in resp.headers().get_all(name) {
            answer = answer.header(name, v.as_bytes());
        }
    }
    answer.body(Body::from_stream(resp.bytes_stream())).unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn only_this_machine_and_this_port_may_call() {
        for ok in ["127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST:8765", "127.0.0.1"] {
            assert!(local_only(&headers(ok, None), 8765).is_ok(), "{ok}");
        }
        for bad in ["evil.example:8765", "127.0.0.1:9999", "127.0.0.1.evil.example:8765", "", "[::2]:8765"] {
            assert!(local_only(&headers(bad, None), 8765).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_web_page_of_another_host_is_refused_even_when_its_name_resolves_here() {
        assert!(local_only(&headers("127.0.0.1:8765", Some("http://localhost:3000")), 8765).is_ok());
        assert!(local_only(&headers("127.0.0.1:8765", Some("http://evil.example")), 8765).is_err());
        assert!(local_only(&headers("127.0.0.1:8765", Some("null")), 8765).is_err());
    }
}
