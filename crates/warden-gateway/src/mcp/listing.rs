//! Listings through the MCP front door: the gateway's tools, and the
//! upstreams' resources, resource templates and prompts federated one
//! upstream page at a time under the gateway's own cursor, each item shown
//! only as the caller's grant, the poisoning scan and policy allow.

use super::{Call, codes, respond, rpc_error};
use crate::authn::Authenticated;
use crate::catalog::{self, Cursor};
use crate::enforce;
use crate::upstream::{Caller, UpstreamError};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;
use warden_core::{EventKind, TargetKind, Verdict};

pub(super) async fn list_tools(call: &Call<'_>, auth: &Authenticated, id: &Value) -> Response {
    let tools = enforce::visible_tools(call.gw, auth, call.ctx.now);
    let ev = call.event(EventKind::ToolList, Some(auth), Some("tools/list"), Verdict::Allow, Some(format!("{} tools visible", tools.len())));
    call.finish(ev, StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": { "tools": tools } }), id).await
}

/// A federated listing of the upstreams' resources, resource templates or
/// prompts.
#[derive(Clone, Copy)]
pub(super) enum Listing {
    Resources,
    Templates,
    Prompts,
}

impl Listing {
    fn method(self) -> &'static str {
        match self {
            Self::Resources => "resources/list",
            Self::Templates => "resources/templates/list",
            Self::Prompts => "prompts/list",
        }
    }

    /// The result's array.
    fn key(self) -> &'static str {
        match self {
            Self::Resources => "resources",
            Self::Templates => "resourceTemplates",
            Self::Prompts => "prompts",
        }
    }

    /// The field that names an item (federated on the way out).
    fn name_field(self) -> &'static str {
        match self {
            Self::Resources => "uri",
            Self::Templates => "uriTemplate",
            Self::Prompts => "name",
        }
    }

    fn kind(self) -> TargetKind {
        if matches!(self, Self::Prompts) { TargetKind::Prompt } else { TargetKind::Resource }
    }
}

/// Upstream pages one listing request may read (to skip pages the caller
/// sees nothing of) before it answers with what it has and a cursor.
const MAX_PAGES_PER_LISTING: usize = 16;

/// List one kind of item across the upstreams, in server-name order, one
/// upstream page at a time (the cursor says where it continues), in the
/// caller's own upstream sessions, showing only what the caller's grant and
/// policy let it see. An upstream that fails is skipped (and named in the
/// record) so that the others can still be listed.
pub(super) async fn list_catalog(call: &Call<'_>, auth: &Authenticated, id: &Value, params: &Value, caller: &Caller, l: Listing) -> Response {
    let start = match params.get("cursor") {
        None | Some(Value::Null) => None,
        Some(c) => match c.as_str().and_then(|c| Cursor::decode(c, &call.gw.cursor_key, auth.claims.agent())) {
            Some(c) => Some(c),
            None => {
                return respond(
                    StatusCode::OK,
                    rpc_error(id, codes::INVALID_PARAMS, "invalid cursor: pass nextCursor exactly as a previous page returned it", None),
                    &call.ctx.corr,
                );
            }
        },
    };
    let servers: Vec<&Arc<crate::Upstream>> = call
        .gw
        .upstreams
        .values()
        .filter(|u| start.as_ref().is_none_or(|c| u.config.name >= c.server))
        .filter(|u| enforce::item_tool(u, l.kind()).is_some_and(|t| auth.grants(&t.tool)))
        .collect();
    let (mut items, mut failed, mut next) = (Vec::new(), Vec::new(), None);
    // The cursor's upstream cursor, if its server is still the first listed.
    let mut upstream_cursor = match (&start, servers.first()) {
        (Some(c), Some(u)) if u.config.name == c.server => c.upstream.clone(),
        _ => None,
    };
    let capability = catalog::capability(l.kind());
    let (mut pages, mut i) = (0, 0);
    while i < servers.len() {
        let up = servers[i];
        // One page with something in it is an answer.
        if pages == MAX_PAGES_PER_LISTING || !items.is_empty() {
            next = Some(Cursor { server: up.config.name.clone(), upstream: upstream_cursor.take() });
            break;
        }
        pages += 1;
        if up.offers(capability) == Some(false) {
            i += 1;
            upstream_cursor = None;
            continue;
        }
        let ask = match upstream_cursor.take() {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        match up.request_for(caller, l.method(), ask).await {
            Ok(page) => {
                let listed = page.get(l.key()).and_then(Value::as_array).cloned().unwrap_or_default();
                let name_of = |v: &Value| v.get(l.name_field()).and_then(Value::as_str).map(|n| n.to_string());
                let shown = enforce::visible_items(call.gw, auth, up, l.kind(), listed, |v| v.get(l.name_field()).and_then(Value::as_str), call.ctx.now);
                for mut item in shown {
                    let name = name_of(&item).expect("visible items have names");
                    // Listed under a name only if the name reads back as this
                    // item (a bare name two servers keep is listed for neither).
                    let federated = catalog::exposed_item(&up.config.name, up.config.naming, l.kind(), &name).filter(|exposed| {
                        matches!(l, Listing::Templates) || call.gw.resolve_item(exposed, l.kind()).is_ok_and(|(s, n)| s == up.config.name && n == name)
                    });
                    if let Some(f) = federated {
                        item[l.name_field()] = f.into();
                        items.push(item);
                    }
                }
                match page.get("nextCursor").and_then(Value::as_str).filter(|c| !c.is_empty()) {
                    Some(c) => upstream_cursor = Some(c.to_string()),
                    None => i += 1,
                }
            }
            // Offers none after all.
            Err(UpstreamError::Rpc { code: codes::METHOD_NOT_FOUND, .. }) => i += 1,
            Err(e) => {
                tracing::warn!(upstream = %up.config.name, "{} failed: {e}", l.method());
                failed.push(up.config.name.clone());
                i += 1;
            }
        }
    }
    let mut reason = format!("{} {} visible", items.len(), l.key());
    if !failed.is_empty() {
        reason.push_str(&format!("; skipped, unavailable: {}", failed.join(", ")));
    }
    let ev = call.event(EventKind::ToolList, Some(auth), Some(l.method()), Verdict::Allow, Some(reason));
    let mut result = json!({ l.key(): items });
    if let Some(c) = next {
        result["nextCursor"] = c.encode(&call.gw.cursor_key, auth.claims.agent()).into();
    }
    call.finish(ev, StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": result }), id).await
}
