//! Finding where to get tokens for an MCP server, the way the MCP
//! authorization specification has clients do it: the server's protected
//! resource metadata (RFC 9728), named by its `401` challenge or found at
//! the well-known URIs, names the authorization server, whose own metadata
//! (RFC 8414, or OpenID Connect discovery) names the token endpoint and
//! whether it binds tokens with DPoP. Warden's gateway publishes both, so
//! `warden connect` reaches Warden and any other server that follows the
//! specification the same way.
//!
//! Every document is checked as the RFCs require before anything in it is
//! used: the resource metadata must describe the URL the agent asked for,
//! the authorization server metadata must name the issuer it was fetched
//! for (an attacker's metadata cannot redirect the agent's assertion), and
//! no discovered URL may downgrade to plain HTTP away from loopback or the
//! server the operator named.

use crate::ClientError;
use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::Value;

/// Largest metadata document read (they are a few hundred bytes).
const MAX_METADATA_BYTES: usize = 64 << 10;

/// Where an agent gets tokens for one MCP endpoint, and how they are bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The MCP endpoint the tokens are for.
    pub mcp: String,
    /// Its resource identifier, exactly as its metadata publishes it: what
    /// a sign-in names as RFC 8707's `resource`.
    pub resource: String,
    /// The authorization server's issuer: the audience of client assertions.
    pub issuer: String,
    pub token: String,
    pub revocation: Option<String>,
    /// Whether to prove possession at the token endpoint (DPoP, RFC 9449):
    /// the authorization server lists the agent key's algorithm.
    pub dpop: bool,
    /// What a human's sign-in needs ([`crate::signin`]).
    pub interactive: Interactive,
}

/// The authorization server's part in a sign-in by authorization code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interactive {
    pub authorization: Option<String>,
    /// Dynamic client registration (RFC 7591), for a host without a client id.
    pub registration: Option<String>,
    /// `code_challenge_methods_supported` lists `S256`: without it the MCP
    /// specification has clients refuse to go on.
    pub pkce: bool,
    /// The server sends `iss` with its answer (RFC 9207), which must then be there.
    pub iss_parameter: bool,
    /// Client ID Metadata Documents are accepted as client ids.
    pub cimd: bool,
    /// A client secret goes in HTTP Basic (RFC 8414's default), else in the form.
    pub secret_basic: bool,
    /// The scope to ask for when the user names none: the server's `401`
    /// challenge's, else every scope its resource metadata lists (the MCP
    /// specification's order).
    pub scope: Option<String>,
}

impl Endpoints {
    /// Warden's own layout below `base`, for callers that know they talk to
    /// Warden (the demo, the benchmarks, the tests).
    pub fn warden(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            mcp: format!("{base}/mcp"),
            resource: format!("{base}/mcp"),
            issuer: base.to_string(),
            token: format!("{base}/oauth/token"),
            revocation: Some(format!("{base}/oauth/revoke")),
            dpop: true,
            interactive: Interactive {
                authorization: Some(format!("{base}/oauth/authorize")),
                registration: None,
                pkce: true,
                iss_parameter: true,
                cimd: true,
                secret_basic: false,
                scope: None,
            },
        }
    }
}

/// The MCP endpoint a `--gateway` argument names: a bare origin (Warden's
/// base URL, as before) means its `/mcp`; any other URL is the endpoint.
pub fn mcp_endpoint(given: &str) -> String {
    let given = given.trim_end_matches('/');
    match given.split_once("://") {
        Some((_, rest)) if !rest.contains('/') => format!("{given}/mcp"),
        _ => given.to_string(),
    }
}

/// `(scheme, authority, path)` of an absolute http(s) URL, the scheme and
/// authority lowercased (RFC 3986 §6.2.2.1), the path without a trailing
/// slash, query and fragment dropped.
fn split(url: &str) -> Option<(String, String, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let at = rest.find('/').unwrap_or(rest.len());
    let authority = rest[..at].to_ascii_lowercase();
    if authority.is_empty() {
        return None;
    }
    Some((scheme, authority, rest[at..].trim_end_matches('/')))
}

/// The value of the auth-param `name` in any challenge of a
/// `WWW-Authenticate` value (RFC 9110 §11.2): a quoted string (its escapes
/// undone) or a token. The value is read as a sequence of schemes and
/// parameters, so a name inside a quoted value (an `error_description`
/// quoting a request) is not taken for a parameter; names match
/// case-insensitively and whole.
pub fn auth_param(challenge: &str, name: &str) -> Option<String> {
    let mut rest = challenge;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return None;
        }
        let word_end = rest.find(['=', ' ', '\t', ',']).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        let Some(value) = after.strip_prefix('=') else {
            // A scheme (or a token68's end): the parameters follow.
            rest = after;
            continue;
        };
        let (parsed, left) = match value.strip_prefix('"') {
            Some(quoted) => {
                let mut v = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        '\\' => v.push(chars.next()?.1),
                        c => v.push(c),
                    }
                }
                // Unterminated: nothing after it is to be trusted.
                (v, &quoted[end?..])
            }
            None => {
                let at = value.find([',', ' ', '\t']).unwrap_or(value.len());
                (value[..at].to_string(), &value[at..])
            }
        };
        if word.eq_ignore_ascii_case(name) {
            return Some(parsed);
        }
        rest = left;
    }
}

/// The well-known URIs of `url`'s metadata document `suffix`, path-based
/// first (RFC 9728 §3.1, RFC 8414 §3.1), then the root.
fn well_known(url: &str, suffix: &str) -> Vec<String> {
    let Some((scheme, authority, path)) = split(url) else { return Vec::new() };
    let root = format!("{scheme}://{authority}/.well-known/{suffix}");
    if path.is_empty() { vec![root] } else { vec![format!("{root}{path}"), root] }
}

/// Where an authorization server's metadata may be, in the order the MCP
/// specification has clients try: RFC 8414 then OpenID Connect discovery,
/// path-inserted, then OpenID's path-appended form.
fn as_metadata_urls(issuer: &str) -> Vec<String> {
    let Some((scheme, authority, path)) = split(issuer) else { return Vec::new() };
    let origin = format!("{scheme}://{authority}");
    if path.is_empty() {
        vec![format!("{origin}/.well-known/oauth-authorization-server"), format!("{origin}/.well-known/openid-configuration")]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    }
}

/// Whether the resource metadata's `resource` covers `mcp` (the MCP
/// specification's check, as its SDKs make it): the same origin, and
/// `mcp`'s path at or below the resource's.
pub fn resource_covers(resource: &str, mcp: &str) -> bool {
    match (split(resource), split(mcp)) {
        (Some((rs, ra, rp)), Some((ms, ma, mp))) => rs == ms && ra == ma && (mp == rp || mp.strip_prefix(rp).is_some_and(|r| r.starts_with('/'))),
        _ => false,
    }
}

fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// A discovered URL may be plain HTTP only on loopback or on the origin the
/// operator named themselves: metadata must not move the agent's assertion
/// and tokens onto an unencrypted connection elsewhere.
fn transport_allowed(url: &str, named: &str) -> bool {
    match (split(url), split(named)) {
        (Some((s, a, _)), _) if s == "https" || is_loopback(&a) => true,
        (Some((s, a, _)), Some((ns, na, _))) => s == ns && a == na,
        _ => false,
    }
}

/// What the authorization server metadata says, once checked.
fn endpoints_from(mcp: &str, issuer: &str, meta: &Value, alg: &str) -> Result<Endpoints, ClientError> {
    let refuse = |why: String| ClientError::Protocol(format!("the authorization server metadata of {issuer} {why}"));
    // RFC 8414 §3.3: the metadata must be the issuer's own.
    match meta.get("issuer").and_then(Value::as_str) {
        Some(i) if i == issuer => {}
        Some(i) => return Err(refuse(format!("names issuer {i:?}; it must name itself (RFC 8414 §3.3)"))),
        None => return Err(refuse("names no issuer".into())),
    }
    let url = |field: &str| -> Result<Option<String>, ClientError> {
        match meta.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(u)) if split(u).is_some() && transport_allowed(u, mcp) => Ok(Some(u.clone())),
            Some(v) => Err(refuse(format!("has an unusable {field} {v}: it must be an https URL (http only on loopback or the server named)"))),
        }
    };
    let token = url("token_endpoint")?.ok_or_else(|| refuse("names no token_endpoint".into()))?;
    let revocation = url("revocation_endpoint")?;
    let lists = |field: &str, value: &str| meta.get(field).and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v.as_str() == Some(value)));
    let says = |field: &str| meta.get(field).and_then(Value::as_bool).unwrap_or(false);
    let interactive = Interactive {
        authorization: url("authorization_endpoint")?,
        registration: url("registration_endpoint")?,
        pkce: lists("code_challenge_methods_supported", "S256"),
        iss_parameter: says("authorization_response_iss_parameter_supported"),
        cimd: says("client_id_metadata_document_supported"),
        secret_basic: meta.get("token_endpoint_auth_methods_supported").is_none() || lists("token_endpoint_auth_methods_supported", "client_secret_basic"),
        scope: None,
    };
    Ok(Endpoints {
        mcp: mcp.to_string(),
        resource: mcp.to_string(),
        issuer: issuer.to_string(),
        token,
        revocation,
        dpop: lists("dpop_signing_alg_values_supported", alg),
        interactive,
    })
}

/// What the resource metadata says: the authorization server to use, and
/// the resource identifier as it is written there.
fn issuer_and_resource(mcp: &str, url: &str, meta: &Value) -> Result<(String, String), ClientError> {
    let refuse = |why: String| ClientError::Protocol(format!("the protected resource metadata at {url} {why}"));
    let resource = meta.get("resource").and_then(Value::as_str).ok_or_else(|| refuse("names no resource".into()))?;
    if !resource_covers(resource, mcp) {
        return Err(refuse(format!(
            "describes {resource}, not {mcp} (RFC 9728 §3.3); check --gateway: it must be the URL the server publishes (Warden: its public_url)"
        )));
    }
    let issuer = meta
        .get("authorization_servers")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("names no authorization server".into()))?;
    if split(issuer).is_none() || !transport_allowed(issuer, mcp) {
        return Err(refuse(format!("names authorization server {issuer:?}: it must be an https URL (http only on loopback or the server named)")));
    }
    Ok((issuer.to_string(), resource.to_string()))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Option<Value>, ClientError> {
    let http_err = |e: reqwest::Error| ClientError::Http { url: url.into(), message: e.to_string() };
    let resp = http.get(url).header(ACCEPT, "application/json").send().await.map_err(http_err)?;
    if !resp.status().is_success() {
        return Ok(None);
    }
    let body = resp.bytes().await.map_err(http_err)?;
    if body.len() > MAX_METADATA_BYTES {
        return Err(ClientError::Protocol(format!("{url}: the metadata document is over {MAX_METADATA_BYTES} bytes")));
    }
    serde_json::from_slice(&body).map(Some).map_err(|e| ClientError::Protocol(format!("{url}: not a JSON metadata document: {e}")))
}

/// The first of `urls` that serves a JSON document, and the document.
async fn first_document(http: &reqwest::Client, urls: Vec<String>) -> Result<Option<(String, Value)>, ClientError> {
    for url in urls {
        if let Some(doc) = get_json(http, &url).await? {
            return Ok(Some((url, doc)));
        }
    }
    Ok(None)
}

/// What the discovery probe sends: a request any MCP server answers
/// without effect (no session is opened), so that one requiring tokens
/// says where to get them.
const PROBE: &str = r#"{"jsonrpc":"2.0","id":"warden-connect-discovery","method":"ping"}"#;

/// Discovers the token endpoint for the MCP endpoint `mcp`, for an agent
/// whose key signs with `alg`. An unauthenticated request asks the server
/// for its challenge, as a host's first request would (a server that
/// answers otherwise is looked up at the well-known URIs); nothing the
/// agent holds is sent.
pub async fn discover(http: &reqwest::Client, mcp: &str, alg: &str) -> Result<Endpoints, ClientError> {
    let probe = http
        .post(mcp)
        .header(ACCEPT, "application/json, text/event-stream")
        .header(CONTENT_TYPE, "application/json")
        .body(PROBE)
        .send()
        .await
        .map_err(|e| ClientError::Http { url: mcp.into(), message: e.to_string() })?;
    let challenge = |param: &str| {
        (probe.status() == reqwest::StatusCode::UNAUTHORIZED)
            .then(|| probe.headers().get_all(WWW_AUTHENTICATE).iter().find_map(|v| v.to_str().ok().and_then(|v| auth_param(v, param))))
            .flatten()
    };
    let (named, challenged_scope) = (challenge("resource_metadata"), challenge("scope"));
    // Dropped unread: a server that opened an event stream closes it.
    drop(probe);
    let candidates = match named {
        Some(url) if split(&url).is_some() && transport_allowed(&url, mcp) => vec![url],
        Some(url) => return Err(ClientError::Protocol(format!("{mcp} names resource metadata at {url:?}, which is not an https URL"))),
        None => well_known(mcp, "oauth-protected-resource"),
    };
    let (url, prm) = first_document(http, candidates).await?.ok_or_else(|| {
        ClientError::Protocol(format!("{mcp} publishes no protected resource metadata (RFC 9728): is it an MCP server that takes OAuth tokens?"))
    })?;
    let (issuer, resource) = issuer_and_resource(mcp, &url, &prm)?;
    let (_, meta) = first_document(http, as_metadata_urls(&issuer))
        .await?
        .ok_or_else(|| ClientError::Protocol(format!("the authorization server {issuer} publishes no metadata (RFC 8414 or OpenID Connect discovery)")))?;
    let mut endpoints = endpoints_from(mcp, &issuer, &meta, alg)?;
    endpoints.resource = resource;
    let listed = prm.get("scopes_supported").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "));
    let named = |s: &String| !s.trim().is_empty();
    endpoints.interactive.scope = challenged_scope.filter(named).or(listed.filter(named));
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bare_origin_means_its_mcp_endpoint_and_any_other_url_is_the_endpoint() {
        assert_eq!(mcp_endpoint("http://127.0.0.1:8080"), "http://127.0.0.1:8080/mcp");
        assert_eq!(mcp_endpoint("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/mcp");
        assert_eq!(mcp_endpoint("https://gw.example/mcp"), "https://gw.example/mcp");
        assert_eq!(mcp_endpoint("https://tools.example/v1/mcp/"), "https://tools.example/v1/mcp");
    }

    #[test]
    fn the_challenge_names_the_resource_metadata_in_any_scheme() {
        let rm = |c: &str| auth_param(c, "resource_metadata");
        let c = r#"Bearer resource_metadata="https://gw/.well-known/oauth-protected-resource/mcp", DPoP algs="EdDSA""#;
        assert_eq!(rm(c).as_deref(), Some("https://gw/.well-known/oauth-protected-resource/mcp"));
        assert_eq!(rm(r#"DPoP resource_metadata="https://x/m""#).as_deref(), Some("https://x/m"));
        assert_eq!(rm(r#"Bearer realm="x""#), None);
        assert_eq!(rm(r#"Bearer resource_metadata="unterminated"#), None);
    }

    #[test]
    fn auth_params_match_whole_names_quoted_or_not() {
        let c = r#"Bearer xscope="no", Scope="mcp:read mcp:write", error=invalid_token, error_description="say \"why\"""#;
        assert_eq!(auth_param(c, "scope").as_deref(), Some("mcp:read mcp:write"));
        assert_eq!(auth_param(c, "error").as_deref(), Some("invalid_token"));
        assert_eq!(auth_param(c, "error_description").as_deref(), Some(r#"say "why""#));
        assert_eq!(auth_param(c, "description"), None);
        assert_eq!(auth_param(r#"DPoP error="use_dpop_nonce""#, "error").as_deref(), Some("use_dpop_nonce"));
        // A parameter quoted inside another's value is no parameter.
        let reflected = r#"Bearer error_description="bad scope=\"admin\" resource_metadata=\"https://evil/m\"", error="insufficient_scope""#;
        assert_eq!(auth_param(reflected, "scope"), None);
        assert_eq!(auth_param(reflected, "resource_metadata"), None);
        assert_eq!(auth_param(reflected, "error").as_deref(), Some("insufficient_scope"));
        assert_eq!(auth_param("Bearer abc.def==, error=x", "error").as_deref(), Some("x"));
    }

    #[test]
    fn well_known_uris_are_path_based_first_then_at_the_root() {
        assert_eq!(
            well_known("https://Tools.Example/v1/mcp?x=1", "oauth-protected-resource"),
            ["https://tools.example/.well-known/oauth-protected-resource/v1/mcp", "https://tools.example/.well-known/oauth-protected-resource"]
        );
        assert_eq!(
            as_metadata_urls("https://as.example"),
            ["https://as.example/.well-known/oauth-authorization-server", "https://as.example/.well-known/openid-configuration"]
        );
        assert_eq!(
            as_metadata_urls("https://as.example/tenant1"),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant1",
                "https://as.example/.well-known/openid-configuration/tenant1",
                "https://as.example/tenant1/.well-known/openid-configuration"
            ]
        );
        assert!(well_known("ftp://x/y", "oauth-protected-resource").is_empty());
    }

    #[test]
    fn a_resource_covers_its_own_path_and_below_on_the_same_origin_only() {
        assert!(resource_covers("https://gw.example/mcp", "https://GW.example/mcp"));
        assert!(resource_covers("https://gw.example", "https://gw.example/mcp"));
        assert!(resource_covers("https://gw.example/v1/", "https://gw.example/v1/mcp"));
        assert!(!resource_covers("https://gw.example/mcp", "https://gw.example/mcp2"));
        assert!(!resource_covers("https://gw.example/other", "https://gw.example/mcp"));
        assert!(!resource_covers("https://evil.example/mcp", "https://gw.example/mcp"));
        assert!(!resource_covers("http://gw.example/mcp", "https://gw.example/mcp"));
    }

    fn meta(issuer: &str, token: &str) -> Value {
        json!({ "issuer": issuer, "token_endpoint": token, "dpop_signing_alg_values_supported": ["ES256", "EdDSA"] })
    }

    #[test]
    fn authorization_server_metadata_must_name_its_own_issuer() {
        let mcp = "https://gw.example/mcp";
        let e = endpoints_from(mcp, "https://as.example", &meta("https://as.example", "https://as.example/token"), "EdDSA").unwrap();
        assert_eq!(e.token, "https://as.example/token");
        assert!(e.dpop);
        assert!(!endpoints_from(mcp, "https://as.example", &meta("https://as.example", "https://as.example/token"), "RS256").unwrap().dpop);
        let mixed = endpoints_from(mcp, "https://as.example", &meta("https://evil.example", "https://evil.example/token"), "EdDSA").unwrap_err();
        assert!(mixed.to_string().contains("RFC 8414"), "{mixed}");
        assert!(endpoints_from(mcp, "https://as.example", &json!({ "issuer": "https://as.example" }), "EdDSA").is_err());
    }

    #[test]
    fn the_metadata_says_what_a_sign_in_may_use() {
        let mcp = "https://gw.example/mcp";
        let mut m = meta("https://as.example", "https://as.example/token");
        let bare = endpoints_from(mcp, "https://as.example", &m, "ES256").unwrap().interactive;
        assert_eq!(bare, Interactive { secret_basic: true, ..Interactive::default() }, "RFC 8414's defaults");
        m["authorization_endpoint"] = json!("https://as.example/authorize");
        m["registration_endpoint"] = json!("https://as.example/register");
        m["code_challenge_methods_supported"] = json!(["plain", "S256"]);
        m["authorization_response_iss_parameter_supported"] = json!(true);
        m["client_id_metadata_document_supported"] = json!(true);
        m["token_endpoint_auth_methods_supported"] = json!(["none", "client_secret_post"]);
        let i = endpoints_from(mcp, "https://as.example", &m, "ES256").unwrap().interactive;
        assert_eq!(i.authorization.as_deref(), Some("https://as.example/authorize"));
        assert_eq!(i.registration.as_deref(), Some("https://as.example/register"));
        assert!(i.pkce && i.iss_parameter && i.cimd && !i.secret_basic);
        m["authorization_endpoint"] = json!("http://as.example/authorize");
        assert!(endpoints_from(mcp, "https://as.example", &m, "ES256").is_err(), "no sign-in over plain HTTP");
    }

    #[test]
    fn no_discovered_url_downgrades_to_http_away_from_loopback_or_the_named_server() {
        let mcp = "https://gw.example/mcp";
        let plain = endpoints_from(mcp, "https://as.example", &meta("https://as.example", "http://as.example/token"), "EdDSA").unwrap_err();
        assert!(plain.to_string().contains("https URL"), "{plain}");
        // Loopback (a test, a sidecar) and the operator's own http origin are fine.
        assert!(endpoints_from(mcp, "https://as.example", &meta("https://as.example", "http://127.0.0.1:9/token"), "EdDSA").is_ok());
        let lan = "http://10.0.0.5:8080/mcp";
        assert!(endpoints_from(lan, "http://10.0.0.5:8080", &meta("http://10.0.0.5:8080", "http://10.0.0.5:8080/oauth/token"), "EdDSA").is_ok());
        assert!(endpoints_from(lan, "http://10.0.0.5:8080", &meta("http://10.0.0.5:8080", "http://10.0.0.6/token"), "EdDSA").is_err());
        assert!(is_loopback("[::1]:8080") && is_loopback("localhost:3000") && !is_loopback("10.0.0.1:80"));
    }

    #[test]
    fn resource_metadata_must_describe_the_endpoint_asked_for_and_name_a_server() {
        let mcp = "https://gw.example/mcp";
        let prm = |resource: &str| json!({ "resource": resource, "authorization_servers": ["https://as.example"] });
        let issuer_from = |mcp: &str, url: &str, meta: &Value| issuer_and_resource(mcp, url, meta).map(|(issuer, _)| issuer);
        assert_eq!(issuer_from(mcp, "u", &prm("https://gw.example/mcp")).unwrap(), "https://as.example");
        // The resource is named as published: a pathless one gains no "/".
        assert_eq!(issuer_and_resource(mcp, "u", &prm("https://gw.example")).unwrap().1, "https://gw.example");
        let other = issuer_from(mcp, "u", &prm("https://other.example/mcp")).unwrap_err();
        assert!(other.to_string().contains("RFC 9728"), "{other}");
        assert!(issuer_from(mcp, "u", &json!({ "resource": mcp })).is_err());
        assert!(issuer_from(mcp, "u", &json!({ "resource": mcp, "authorization_servers": ["http://as.example"] })).is_err());
    }
}
