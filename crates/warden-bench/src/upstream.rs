//! `warden-upstream`: the load benchmark's MCP upstream, cheap enough per
//! call that the gateway in front of it is what the benchmark measures (the
//! reference server-everything, on Node, saturates first and hides the
//! gateway's cost). It speaks MCP over streamable HTTP in JSON mode (every
//! POST answered by one JSON body; no session id, which the transport lets
//! a server omit) or over stdio, with two tools: `echo`, and `record`, which
//! returns a realistic 4 KB JSON document as text and as structured content.
//!
//! Hand-written on axum rather than with `rmcp`: the point is the lowest
//! cost per call, and the handful of methods a tool call needs fits in one
//! match. Requests it does not serve get JSON-RPC's "method not found".

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Parser;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    /// Serve streamable HTTP at http://ADDR/mcp.
    #[arg(long, default_value = "127.0.0.1:0", conflicts_with = "stdio")]
    listen: std::net::SocketAddr,
    /// Speak MCP on standard input and output instead.
    #[arg(long)]
    stdio: bool,
}

/// What every answer needs, made once.
struct Server {
    tools: Value,
    record: Value,
}

/// A customer record with its recent orders, about 4 KB of JSON: what a CRM
/// or ticketing tool typically returns.
fn record() -> Value {
    let orders: Vec<Value> = (1..=27)
        .map(|i| {
            json!({
                "order_id": format!("ord-2026-{i:05}"),
                "placed_at": format!("2026-11-{:02}T09:{:02}:00Z", 1 + i % 28, i % 60),
                "status": if i % 3 == 0 { "shipped" } else { "delivered" },
                "items": i % 4 + 1,
                "total": { "amount": format!("{}.{:02}", 20 + i * 7, i * 13 % 100), "currency": "EUR" },
            })
        })
        .collect();
    json!({
        "customer_id": "c-1001",
        "name": "Ada Example",
        "segment": "enterprise",
        "account_manager": "sales-emea-3",
        "address": { "street": "1 Example Street", "city": "Example City", "postcode": "10115", "country": "DE" },
        "created_at": "2021-03-14T10:00:00Z",
        "tags": ["priority-support", "annual-billing", "sso"],
        "orders": orders,
    })
}

impl Server {
    fn new() -> Self {
        let object = |props: Value| json!({ "type": "object", "properties": props });
        let tools = json!([
            { "name": "echo", "description": "Echoes the message back.", "inputSchema": object(json!({ "message": { "type": "string" } })) },
            { "name": "record", "description": "A customer record with its recent orders.", "inputSchema": object(json!({ "customer_id": { "type": "string" } })) },
        ]);
        Self { tools, record: record() }
    }

    /// The answer to one JSON-RPC message; `None` for notifications and responses.
    fn answer(&self, msg: &Value) -> Option<Value> {
        let id = msg.get("id")?.clone();
        let method = msg.get("method")?.as_str().unwrap_or("");
        let params = msg.get("params").unwrap_or(&Value::Null);
        let result = match method {
            "initialize" => json!({
                "protocolVersion": params.get("protocolVersion").and_then(Value::as_str).unwrap_or("2025-06-18"),
                "capabilities": { "tools": {} },
                "serverInfo": { "name": "warden-upstream", "version": env!("CARGO_PKG_VERSION") },
            }),
            "ping" => json!({}),
            "tools/list" => json!({ "tools": self.tools }),
            "tools/call" => match params.get("name").and_then(Value::as_str) {
                Some("echo") => {
                    let message = params.pointer("/arguments/message").and_then(Value::as_str).unwrap_or("");
                    json!({ "content": [{ "type": "text", "text": format!("Echo: {message}") }] })
                }
                Some("record") => json!({ "content": [{ "type": "text", "text": self.record.to_string() }], "structuredContent": self.record }),
                other => json!({ "content": [{ "type": "text", "text": format!("unknown tool {other:?}") }], "isError": true }),
            },
            _ => return Some(json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": format!("method not found: {method}") } })),
        };
        Some(json!({ "jsonrpc": "2.0", "id": id, "result": result }))
    }
}

async fn mcp(State(s): State<Arc<Server>>, body: Bytes) -> Response {
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        let e = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32700, "message": "parse error" } });
        return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], e.to_string()).into_response();
    };
    match s.answer(&msg) {
        Some(a) => ([(header::CONTENT_TYPE, "application/json")], a.to_string()).into_response(),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

async fn stdio(s: Arc<Server>) -> Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(msg) => s.answer(&msg),
            Err(_) => Some(json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32700, "message": "parse error" } })),
        };
        if let Some(a) = answer {
            out.write_all(format!("{a}\n").as_bytes()).await?;
            out.flush().await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let s = Arc::new(Server::new());
    if a.stdio {
        return stdio(s).await;
    }
    let listener = tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("listening on {}", a.listen))?;
    eprintln!("warden-upstream: MCP at http://{}/mcp", listener.local_addr()?);
    let app = Router::new().route("/mcp", post(mcp)).with_state(s);
    axum::serve(listener, app).await.context("serving")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_answers_what_a_tool_call_needs_and_refuses_the_rest() {
        let s = Server::new();
        let init = s.answer(&json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-11-25" } })).unwrap();
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
        assert!(s.answer(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).is_none());
        let echo =
            s.answer(&json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "echo", "arguments": { "message": "hi" } } })).unwrap();
        assert_eq!(echo["result"]["content"][0]["text"], "Echo: hi");
        let rec = s.answer(&json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": { "name": "record" } })).unwrap();
        let text = rec["result"]["content"][0]["text"].as_str().unwrap();
        assert!((3_500..5_000).contains(&text.len()), "about 4 KB: {}", text.len());
        assert_eq!(rec["result"]["structuredContent"]["customer_id"], "c-1001");
        let nope = s.answer(&json!({ "jsonrpc": "2.0", "id": 4, "method": "resources/list" })).unwrap();
        assert_eq!(nope["error"]["code"], -32601);
        assert_eq!(nope["id"], 4);
    }
}
