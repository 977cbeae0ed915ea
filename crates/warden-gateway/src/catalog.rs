//! How the gateway names what it federates besides tools, and how it pages
//! through several upstreams' listings. Pure, no IO.
//!
//! - **Resources** are named `SERVER+URI`: the server's name is put in
//!   front of the URI's scheme (`onboarding+file:///a.md`, `everything+test://static/1`),
//!   which keeps the result a valid absolute URI (a scheme may contain `+`,
//!   a server name may not) and URI templates valid templates. The original
//!   URI is what the upstream sees.
//! - **Prompts** are named `SERVER__PROMPT`, like tools.
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
pub(crate) fn federate_references(server: &str, answer: &mut Value) {
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
    /// `PAYLOAD.MAC`, both base64url; the MAC covers the payload and `holder`.
    pub(crate) fn encode(&self, key: &[u8; 32], holder: &str) -> String {
        let payload = serde_json::to_vec(self).expect("a cursor serializes");
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(mac(key, holder, &payload).finalize().into_bytes()))
    }

    /// The cursor, if `s` is one this gateway gave `holder`, unaltered.
    pub(crate) fn decode(s: &str, key: &[u8; 32], holder: &str) -> Option<Self> {
        let (payload, tag) = s.split_once('.')?;
        let (payload, tag) = (URL_SAFE_NO_PAD.decode(payload).ok()?, URL_SAFE_NO_PAD.decode(tag).ok()?);
        mac(key, holder, &payload).verify_slice(&tag).ok()?;
        serde_json::from_slice(&payload).ok()
    }
}

fn mac(key: &[u8; 32], holder: &str, payload: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(b"warden listing cursor v1\n");
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
        federate_references("up", &mut v);
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
        federate_references("up", &mut prompt);
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
