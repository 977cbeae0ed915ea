//! How the gateway names what it federates besides tools, and how it pages
//! through several upstreams' listings. Pure, no IO.
//!
//! - **Resources** are named `SERVER+URI`: the server's name is put in
//!   front of the URI's scheme (`onboarding+file:///a.md`, `everything+test://static/1`),
//!   which keeps the result a valid absolute URI (a scheme may contain `+`,
//!   a server name may not) and URI templates valid templates. The original
//!   URI is what the upstream sees.
//! - **Tools** are named `SERVER__TOOL` by default; an upstream may name
//!   its tools as the upstream does (`naming = "bare"`, for agents that
//!   move behind the gateway without renaming what they call) and give
//!   some of them other names (`aliases`). A name that would stand for two
//!   tools is not listed and not resolved.
//! - **Prompts** are named `SERVER__PROMPT`.
//! - A **bare** upstream's resources keep their URIs and its prompts their
//!   names; one upstream at most can be bare for each (with two, a bare
//!   name would be ambiguous: refused).
//! - A **cursor** names the upstream a listing continues at and that
//!   upstream's own cursor, MACed with a key of the gateway's (one all
//!   replicas share) and bound to the agent it was given to: the upstream
//!   cursor goes to the upstream as it is, so a client must not be able to
//!   put its own data there, nor use another agent's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

/// How an upstream's tools are named to clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// `SERVER__TOOL`.
    #[default]
    Prefixed,
    /// The upstream's own tool names.
    Bare,
}

/// One upstream's tool naming, as [`exposed_name`] and [`resolve_tool`] read it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Names<'a> {
    pub(crate) server: &'a str,
    pub(crate) naming: Naming,
    /// Exposed name → the upstream's tool name.
    pub(crate) aliases: &'a std::collections::BTreeMap<String, String>,
}

/// The name clients call `tool` by.
pub(crate) fn exposed_name(names: Names<'_>, tool: &warden_core::ToolRef) -> String {
    if let Some((alias, _)) = names.aliases.iter().find(|(_, t)| **t == tool.tool) {
        return alias.clone();
    }
    match names.naming {
        Naming::Prefixed => tool.federated_name(),
        Naming::Bare => tool.tool.clone(),
    }
}

/// Why a name a client called resolves to no single tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameError {
    Unknown,
    /// More than one answers to it (two bare upstreams, or an alias): what.
    Ambiguous(Vec<String>),
}

/// The server and the upstream's name a client's resource URI or prompt
/// name stands for: `SERVER+URI` / `SERVER__PROMPT` of a prefixed upstream,
/// or anything else of the one bare upstream among `upstreams` (those that
/// offer such items, with their naming).
pub(crate) fn resolve_item(name: &str, kind: warden_core::TargetKind, upstreams: &[(&str, Naming)]) -> Result<(String, String), NameError> {
    let prefixed = if kind == warden_core::TargetKind::Resource { resolve_uri(name) } else { resolve_name(name) };
    if let Some((server, item)) = prefixed
        && upstreams.iter().any(|(u, n)| *u == server && *n == Naming::Prefixed)
    {
        return Ok((server.to_string(), item.to_string()));
    }
    let bare: Vec<&str> = upstreams.iter().filter(|(_, n)| *n == Naming::Bare).map(|(u, _)| *u).collect();
    match bare.as_slice() {
        [] => Err(NameError::Unknown),
        [one] => Ok((one.to_string(), name.to_string())),
        many => Err(NameError::Ambiguous(many.iter().map(|s| s.to_string()).collect())),
    }
}

/// The server capability that offers items of `kind` (`resources`,
/// `prompts`; `tools` for tools).
pub(crate) fn capability(kind: warden_core::TargetKind) -> &'static str {
    match kind {
        warden_core::TargetKind::Tool => "tools",
        warden_core::TargetKind::Resource => "resources",
        warden_core::TargetKind::Prompt => "prompts",
    }
}

/// A listed resource URI (or template) or prompt name as clients see it;
/// `None` for a resource URI that cannot be federated.
pub(crate) fn exposed_item(server: &str, naming: Naming, kind: warden_core::TargetKind, name: &str) -> Option<String> {
    match (naming, kind) {
        (Naming::Bare, _) => Some(name.to_string()),
        (Naming::Prefixed, warden_core::TargetKind::Resource) => federate_uri(server, name),
        (Naming::Prefixed, _) => Some(federate_name(server, name)),
    }
}

/// The tool a client's name stands for: an alias, a bare upstream's tool
/// that `exists`, or `SERVER__TOOL` of a prefixed upstream.
pub(crate) fn resolve_tool<'a>(
    name: &str,
    upstreams: impl IntoIterator<Item = Names<'a>>,
    exists: impl Fn(&warden_core::ToolRef) -> bool,
) -> Result<warden_core::ToolRef, NameError> {
    let prefixed = warden_core::ToolRef::from_federated_name(name);
    let mut found: Vec<warden_core::ToolRef> = Vec::new();
    for u in upstreams {
        let candidates: [Option<warden_core::ToolRef>; 3] = [
            u.aliases.get(name).and_then(|t| warden_core::ToolRef::new(u.server, t).ok()),
            (u.naming == Naming::Bare)
                .then(|| warden_core::ToolRef::new(u.server, name).ok())
                .flatten()
                .filter(|t| exists(t) && !u.aliases.values().any(|a| *a == t.tool)),
            prefixed.clone().filter(|t| t.server == u.server && u.naming == Naming::Prefixed && !u.aliases.values().any(|a| *a == t.tool)),
        ];
        for c in candidates.into_iter().flatten() {
            if !found.contains(&c) {
                found.push(c);
            }
        }
    }
    match found.len() {
        0 => Err(NameError::Unknown),
        1 => Ok(found.remove(0)),
        _ => Err(NameError::Ambiguous(found.iter().map(ToString::to_string).collect())),
    }
}

/// A resource URI (or URI template) under its federated name, or `None`
/// when it does not start with a literal scheme.
pub(crate) fn federate_uri(server: &str, uri: &str) -> Option<String> {
    scheme_len(uri).map(|_| format!("{server}+{uri}"))
}

/// The server and the upstream's URI a federated resource name stands for.
pub(crate) fn resolve_uri(name: &str) -> Option<(&str, &str)> {
    let (server, uri) = name.split_once('+')?;
    (warden_core::validate_name(server).is_ok() && scheme_len(uri).is_some()).then_some((server, uri))
}

/// A prompt's federated name.
pub(crate) fn federate_name(server: &str, name: &str) -> String {
    format!("{server}__{name}")
}

/// The server and the upstream's name a federated prompt name stands for.
pub(crate) fn resolve_name(name: &str) -> Option<(&str, &str)> {
    let (server, prompt) = name.split_once("__")?;
    (warden_core::validate_name(server).is_ok() && !prompt.is_empty()).then_some((server, prompt))
}

/// RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"`.
fn scheme_len(uri: &str) -> Option<usize> {
    let colon = uri.find(':')?;
    let scheme = &uri.as_bytes()[..colon];
    let ok = scheme.first().is_some_and(u8::is_ascii_alphabetic) && scheme.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    ok.then_some(colon)
}

/// Rename the resources an upstream's answer refers to, so that the client
/// can read them back through the gateway: a read's `contents`, and the
/// resource links and embedded resources among a tool result's `content`
/// and a prompt's `messages`. Nothing else is touched (a tool's structured
/// output is its own data). A URI that cannot be federated is left as it
/// is: reading it through the gateway fails with a clear error.
pub(crate) fn federate_references(upstream: &crate::UpstreamConfig, answer: &mut Value) {
    if upstream.naming == Naming::Bare {
        return;
    }
    let server = upstream.name.as_str();
    let rename = |v: Option<&mut Value>| {
        if let Some(Value::String(uri)) = v
            && let Some(f) = federate_uri(server, uri)
        {
            *uri = f;
        }
    };
    let block = |b: &mut Value| match b.get("type").and_then(Value::as_str) {
        Some("resource_link") => rename(b.get_mut("uri")),
        Some("resource") => rename(b.get_mut("resource").and_then(|r| r.get_mut("uri"))),
        _ => {}
    };
    let blocks = |c: Option<&mut Value>| match c {
        Some(Value::Array(items)) => items.iter_mut().for_each(block),
        Some(one @ Value::Object(_)) => block(one),
        _ => {}
    };
    if let Some(Value::Array(contents)) = answer.get_mut("contents") {
        contents.iter_mut().for_each(|c| rename(c.get_mut("uri")));
    }
    blocks(answer.get_mut("content"));
    if let Some(Value::Array(messages)) = answer.get_mut("messages") {
        messages.iter_mut().for_each(|m| blocks(m.get_mut("content")));
    }
}

/// Where a federated listing continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// The upstream it continues at.
    #[serde(rename = "s")]
    pub(crate) server: String,
    /// That upstream's own cursor (`None`: its first page).
    #[serde(rename = "c", skip_serializing_if = "Option::is_none")]
    pub(crate) upstream: Option<String>,
}

impl Cursor {
    const PURPOSE: &'static str = "warden listing cursor v1";

    /// `PAYLOAD.MAC`, both base64url; the MAC covers the payload and `holder`.
    pub(crate) fn encode(&self, key: &[u8; 32], holder: &str) -> String {
        seal(key, Self::PURPOSE, holder, self)
    }

    /// The cursor, if `s` is one this gateway gave `holder`, unaltered.
    pub(crate) fn decode(s: &str, key: &[u8; 32], holder: &str) -> Option<Self> {
        open(s, key, Self::PURPOSE, holder)
    }
}

/// The purpose of a sealed MRTR `requestState` (`mcp::modern::RequestState`).
pub(crate) const REQUEST_STATE: &str = "warden mcp request state v1";

/// Whether `s` is a `requestState` this gateway sealed for `holder`.
pub(crate) fn sealed_request_state(s: &str, key: &[u8; 32], holder: &str) -> bool {
    open::<Value>(s, key, REQUEST_STATE, holder).is_some()
}

/// `value` as `PAYLOAD.MAC`, both base64url, for `holder` to hand back
/// unaltered: the MAC covers `purpose` (what it may be taken back as), the
/// holder and the payload. Readable, not secret.
pub(crate) fn seal<T: Serialize>(key: &[u8; 32], purpose: &str, holder: &str, value: &T) -> String {
    let payload = serde_json::to_vec(value).expect("a sealed value serializes");
    format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(mac(key, purpose, holder, &payload).finalize().into_bytes()))
}

/// What [`seal`] sealed for `holder` and `purpose`, if `s` is that, unaltered.
pub(crate) fn open<T: serde::de::DeserializeOwned>(s: &str, key: &[u8; 32], purpose: &str, holder: &str) -> Option<T> {
    let (payload, tag) = s.split_once('.')?;
    let (payload, tag) = (URL_SAFE_NO_PAD.decode(payload).ok()?, URL_SAFE_NO_PAD.decode(tag).ok()?);
    mac(key, purpose, holder, &payload).verify_slice(&tag).ok()?;
    serde_json::from_slice(&payload).ok()
}

fn mac(key: &[u8; 32], purpose: &str, holder: &str, payload: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(purpose.as_bytes());
    m.update(b"\n");
    m.update(holder.as_bytes());
    m.update(b"\n");
    m.update(payload);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tools_are_named_per_upstream_and_a_name_for_two_is_refused() {
        use std::collections::BTreeMap;
        use warden_core::ToolRef;
        let none = BTreeMap::new();
        let aliases = BTreeMap::from([("lookup".to_string(), "customer_lookup".to_string())]);
        let crm = Names { server: "crm", naming: Naming::Prefixed, aliases: &aliases };
        let files = Names { server: "files", naming: Naming::Bare, aliases: &none };
        let docs = Names { server: "docs", naming: Naming::Bare, aliases: &none };
        let t = |s: &str| s.parse::<ToolRef>().unwrap();
        let registered = [t("crm/customer_lookup"), t("crm/export"), t("files/read"), t("docs/read"), t("docs/search")];
        let exists = |r: &ToolRef| registered.contains(r);
        assert_eq!(exposed_name(crm, &t("crm/customer_lookup")), "lookup");
        assert_eq!(exposed_name(crm, &t("crm/export")), "crm__export");
        assert_eq!(exposed_name(files, &t("files/read")), "read");
        let resolve = |n: &str| resolve_tool(n, [crm, files, docs], exists);
        assert_eq!(resolve("lookup"), Ok(t("crm/customer_lookup")));
        assert_eq!(resolve("crm__customer_lookup"), Err(NameError::Unknown), "an aliased tool answers only to its alias");
        assert_eq!(resolve("crm__export"), Ok(t("crm/export")));
        assert_eq!(resolve("search"), Ok(t("docs/search")));
        assert_eq!(resolve("docs__search"), Err(NameError::Unknown), "a bare upstream's tools have one name");
        assert_eq!(resolve("read"), Err(NameError::Ambiguous(vec!["files/read".into(), "docs/read".into()])));
        assert_eq!(resolve("nothing"), Err(NameError::Unknown));
    }

    #[test]
    fn a_bare_upstreams_resources_and_prompts_keep_their_names() {
        use warden_core::TargetKind::{Prompt, Resource};
        let one = [("crm", Naming::Prefixed), ("fixture", Naming::Bare)];
        assert_eq!(resolve_item("crm+file:///a.md", Resource, &one), Ok(("crm".into(), "file:///a.md".into())));
        assert_eq!(resolve_item("test://static-text", Resource, &one), Ok(("fixture".into(), "test://static-text".into())));
        assert_eq!(resolve_item("crm__welcome", Prompt, &one), Ok(("crm".into(), "welcome".into())));
        assert_eq!(resolve_item("test_simple_prompt", Prompt, &one), Ok(("fixture".into(), "test_simple_prompt".into())));
        assert_eq!(resolve_item("nosuch+file:///a", Resource, &one), Ok(("fixture".into(), "nosuch+file:///a".into())), "not a prefixed server's");
        assert_eq!(resolve_item("x", Prompt, &[("crm", Naming::Prefixed)]), Err(NameError::Unknown));
        let two = [("a", Naming::Bare), ("b", Naming::Bare)];
        assert_eq!(resolve_item("x", Prompt, &two), Err(NameError::Ambiguous(vec!["a".into(), "b".into()])));
        assert_eq!(exposed_item("fixture", Naming::Bare, Resource, "test://x"), Some("test://x".into()));
        assert_eq!(exposed_item("crm", Naming::Prefixed, Resource, "file:///a"), Some("crm+file:///a".into()));
        assert_eq!(exposed_item("crm", Naming::Prefixed, Prompt, "p"), Some("crm__p".into()));
    }

    #[test]
    fn resource_names_round_trip_and_stay_uris() {
        for uri in ["file:///onboarding/a.md", "test://static/resource/1", "git+ssh://h/r", "urn:x:y", "file:///{path}"] {
            let f = federate_uri("crm", uri).unwrap();
            assert_eq!(resolve_uri(&f), Some(("crm", uri)));
            assert!(scheme_len(&f).is_some(), "{f} is still an absolute URI");
        }
        assert_eq!(federate_uri("crm", "{scheme}://x"), None, "a template without a literal scheme");
        assert_eq!(federate_uri("crm", "relative/path"), None);
        for bad in ["file:///a.md", "CRM+file:///a", "+file:///a", "crm+", "crm+/x", "a__b+file:///x"] {
            assert_eq!(resolve_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn prompt_names_round_trip() {
        assert_eq!(resolve_name(&federate_name("crm", "welcome email")), Some(("crm", "welcome email")));
        assert_eq!(resolve_name("crm__a__b"), Some(("crm", "a__b")));
        for bad in ["crm", "crm__", "__x", "Crm__x"] {
            assert_eq!(resolve_name(bad), None, "{bad}");
        }
    }

    fn upstream(name: &str) -> crate::UpstreamConfig {
        let stdio = crate::Transport::Stdio { command: "x".into(), args: vec![], env: Default::default(), cwd: None, sandbox: None };
        crate::UpstreamConfig::new(name, stdio, 1)
    }

    #[test]
    fn references_in_answers_are_renamed_and_nothing_else() {
        let mut v = json!({
            "contents": [{ "uri": "file:///a.md", "mimeType": "text/markdown", "text": "see file:///b.md" }],
            "content": [
                { "type": "resource_link", "uri": "test://static/2", "name": "two" },
                { "type": "resource", "resource": { "uri": "test://static/3", "text": "three" } },
                { "type": "text", "text": "plain", "uri": "x:not-a-reference" }
            ],
            "structuredContent": { "uri": "file:///data-field", "text": "t" }
        });
        federate_references(&upstream("up"), &mut v);
        assert_eq!(v["contents"][0]["uri"], "up+file:///a.md");
        assert_eq!(v["contents"][0]["text"], "see file:///b.md", "text is content, not a name");
        assert_eq!(v["content"][0]["uri"], "up+test://static/2");
        assert_eq!(v["content"][1]["resource"]["uri"], "up+test://static/3");
        assert_eq!(v["content"][2]["uri"], "x:not-a-reference");
        assert_eq!(v["structuredContent"]["uri"], "file:///data-field", "a tool's own data is not a resource reference");
        let mut prompt = json!({ "messages": [
            { "role": "user", "content": { "type": "resource", "resource": { "uri": "file:///c.md", "text": "c" } } },
            { "role": "user", "content": [{ "type": "resource_link", "uri": "file:///d.md", "name": "d" }] }
        ] });
        federate_references(&upstream("up"), &mut prompt);
        assert_eq!(prompt["messages"][0]["content"]["resource"]["uri"], "up+file:///c.md");
        assert_eq!(prompt["messages"][1]["content"][0]["uri"], "up+file:///d.md");
    }

    #[test]
    fn cursors_round_trip_for_their_holder_and_nothing_else_passes() {
        let key = [7u8; 32];
        for c in [Cursor { server: "a".into(), upstream: None }, Cursor { server: "b".into(), upstream: Some("page-2".into()) }] {
            let s = c.encode(&key, "agent-1");
            assert_eq!(Cursor::decode(&s, &key, "agent-1"), Some(c));
            assert_eq!(Cursor::decode(&s, &key, "agent-2"), None, "bound to its holder");
            assert_eq!(Cursor::decode(&s, &[8u8; 32], "agent-1"), None, "another gateway's key");
        }
        let good = Cursor { server: "b".into(), upstream: Some("page-2".into()) }.encode(&key, "agent-1");
        let (_, tag) = good.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(br#"{"s":"b","c":"exfiltrated data"}"#));
        assert_eq!(Cursor::decode(&forged, &key, "agent-1"), None, "the upstream cursor cannot be rewritten");
        assert_eq!(Cursor::decode("not a cursor", &key, "agent-1"), None);
    }
}
