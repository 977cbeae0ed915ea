//! `warden connect --sign-in`: the bridge acting for the human at the
//! keyboard rather than for a registered agent, for hosts that launch MCP
//! servers as processes and so do no OAuth themselves. It signs the human
//! in the way the MCP authorization specification has a native host do it
//! (RFC 8252): the authorization code grant with PKCE (S256) and RFC 8707's
//! `resource`, the browser sent to the authorization server and back to a
//! one-shot listener on a loopback port, the answer checked for its `state`
//! and, per RFC 9207, its `iss`. The host is known to the authorization
//! server by a client id the user gives (a Client ID Metadata Document's
//! URL, used where the server accepts them, or a registered id), else by
//! dynamic registration (RFC 7591). The bridge's session key proves
//! possession of the tokens (DPoP) where the server supports it, and the
//! refresh token renews them without the human.
//!
//! Pure parts (the PKCE pair, the authorization URL, the check of the
//! answer) are separate from the listener and the browser, and tested alone.

use crate::discovery::Endpoints;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::Html;
use axum::routing::get;
use reqwest::Url;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use warden_identity::b64url;

/// How long the human has to finish signing in.
const SIGN_IN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// The redirect URI's path (what operators list in a host's metadata
/// document, on a loopback address with any port, RFC 8252 §7.3).
pub const CALLBACK_PATH: &str = "/callback";

/// What the user said about the sign-in.
#[derive(Clone, Default)]
pub struct SignIn {
    /// The host's client id: an `https` URL is a Client ID Metadata
    /// Document, used where the server accepts them; anything else an id
    /// the server has registered. `None`: dynamic registration.
    pub client_id: Option<String>,
    /// The secret of a host registered as a confidential client.
    pub client_secret: Option<String>,
    /// A command that opens a URL (the URL is its last argument); `None`:
    /// the system's (`xdg-open`, `open`). The URL is printed either way.
    pub browser: Option<String>,
}

/// Why a sign-in did not end with a code. The text is for the human.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the authorization server {issuer} {why}")]
    Server { issuer: String, why: String },
    #[error("the authorization server answered the sign-in with {error}{}", if description.is_empty() { String::new() } else { format!(": {description}") })]
    Refused { error: String, description: String },
    #[error("the answer to the sign-in names issuer {got:?}, not {expected:?} (RFC 9207): it may come from another server; nothing was redeemed")]
    WrongIssuer { got: String, expected: String },
    #[error("the answer to the sign-in names no issuer though {0} says it always does (RFC 9207); nothing was redeemed")]
    MissingIssuer(String),
    #[error("the answer to the sign-in carries no code")]
    NoCode,
    #[error("no sign-in finished within {} seconds", SIGN_IN_TIMEOUT.as_secs())]
    TimedOut,
    #[error("the loopback listener for the sign-in failed: {0}")]
    Listener(String),
    #[error("{message} (a moment ago; the next request after {wait} s opens a new sign-in)")]
    Recent { message: String, wait: i64 },
}

/// `s` without control characters: the authorization server's words, made
/// safe for a terminal.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// The host as the authorization server knows it, and where its answers go.
#[derive(Clone)]
pub struct Host {
    pub client_id: String,
    /// Given by a registration that made the host a confidential client.
    pub secret: Option<String>,
    /// The secret goes in HTTP Basic (else in the form).
    pub basic: bool,
    pub redirect_uri: String,
}

// By hand: the client secret is never printed.
impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .field("browser", &self.browser)
            .finish()
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

/// A PKCE pair (RFC 7636): the verifier stays here, its S256 challenge goes out.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("OS random source available");
    b64url(&b)
}

/// The S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn challenge_of(verifier: &str) -> String {
    b64url(&Sha256::digest(verifier.as_bytes()))
}

impl Pkce {
    pub fn new() -> Self {
        // 32 bytes: a 43-character verifier, RFC 7636 §4.1's recommendation.
        let verifier = random(32);
        Self { challenge: challenge_of(&verifier), verifier }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// The URL the human's browser is sent to.
pub fn authorize_url(endpoints: &Endpoints, host: &Host, challenge: &str, state: &str, scope: Option<&str>) -> Result<String, SignInError> {
    let refuse = |why: &str| SignInError::Server { issuer: endpoints.issuer.clone(), why: why.into() };
    let at = endpoints.interactive.authorization.as_deref().ok_or_else(|| refuse("names no authorization_endpoint, so no human can sign in there"))?;
    if !endpoints.interactive.pkce {
        // The MCP specification: without S256 PKCE the client must not go on.
        return Err(refuse("does not list S256 in code_challenge_methods_supported; the MCP specification has clients refuse such a server"));
    }
    let mut url = Url::parse(at).map_err(|_| refuse("names an authorization_endpoint that is not a URL"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &host.client_id)
            .append_pair("redirect_uri", &host.redirect_uri)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", state)
            .append_pair("resource", &endpoints.resource);
        if let Some(s) = scope.filter(|s| !s.is_empty()) {
            q.append_pair("scope", s);
        }
    }
    Ok(url.into())
}

/// The code in the authorization response's query, once it is the answer
/// to this sign-in (`state`) from this server (RFC 9207: an `iss` present
/// must equal the issuer, compared as a plain string; absent only where
/// the server does not say it sends one).
pub fn code_from(query: &str, state: &str, issuer: &str, iss_parameter: bool) -> Result<Option<String>, SignInError> {
    let params: Vec<(String, String)> = Url::parse(&format!("http://callback/?{query}")).map(|u| u.query_pairs().into_owned().collect()).unwrap_or_default();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("state") != Some(state) {
        // Not this sign-in's answer (a stray or forged request): ignored.
        return Ok(None);
    }
    match get("iss") {
        Some(got) if got != issuer => return Err(SignInError::WrongIssuer { got: got.into(), expected: issuer.into() }),
        None if iss_parameter => return Err(SignInError::MissingIssuer(issuer.into())),
        _ => {}
    }
    if let Some(error) = get("error") {
        return Err(SignInError::Refused { error: printable(error), description: printable(get("error_description").unwrap_or("")) });
    }
    get("code").filter(|c| !c.is_empty()).map(|c| Some(c.to_string())).ok_or(SignInError::NoCode)
}

/// The host's client id for this server: the user's, or a dynamic
/// registration (RFC 7591) for `redirect_uri`.
pub async fn host_for(http: &reqwest::Client, endpoints: &Endpoints, how: &SignIn, redirect_uri: &str) -> Result<Host, SignInError> {
    let refuse = |why: String| SignInError::Server { issuer: endpoints.issuer.clone(), why };
    let given = how.client_id.as_deref();
    let known = |id: &str| Host {
        client_id: id.to_string(),
        secret: how.client_secret.clone(),
        basic: endpoints.interactive.secret_basic,
        redirect_uri: redirect_uri.into(),
    };
    match given {
        Some(id) if !id.starts_with("https://") || how.client_secret.is_some() => return Ok(known(id)),
        Some(url) if endpoints.interactive.cimd => return Ok(known(url)),
        Some(url) => {
            tracing::warn!(%url, issuer = %endpoints.issuer, "warden connect: the authorization server takes no client metadata documents; registering the host instead")
        }
        None => {}
    }
    let Some(register) = &endpoints.interactive.registration else {
        return Err(refuse(match given {
            Some(_) => "accepts no client metadata documents and offers no registration; give --client-id the host's registered id".into(),
            None => "offers no dynamic registration; give --client-id (the host's metadata document URL or registered id)".into(),
        }));
    };
    let metadata = json!({
        "client_name": "warden connect",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    });
    let failed = |e: reqwest::Error| refuse(format!("did not answer the registration at {register}: {e}"));
    let resp = http.post(register).json(&metadata).send().await.map_err(failed)?;
    let status = resp.status();
    let v: Value = resp.json().await.map_err(failed)?;
    let Some(id) = v.get("client_id").and_then(Value::as_str).filter(|_| status.is_success()) else {
        return Err(refuse(format!("refused the registration ({status}): {}", v.get("error_description").or(v.get("error")).unwrap_or(&Value::Null))));
    };
    // What was asked for unless the server says otherwise (RFC 7591 §3.2.1).
    let method = v.get("token_endpoint_auth_method").and_then(Value::as_str).unwrap_or("none");
    let secret = v.get("client_secret").and_then(Value::as_str).filter(|_| method != "none").map(str::to_string);
    Ok(Host { client_id: id.into(), basic: method == "client_secret_basic", secret, redirect_uri: redirect_uri.into() })
}

/// A loopback listener for the answer; its port stays the host's while it can.
pub async fn listener(port: u16) -> Result<tokio::net::TcpListener, SignInError> {
    let l = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        // The port of an earlier sign-in was taken meanwhile: any other.
        Err(_) if port != 0 => tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| SignInError::Listener(e.to_string()))?,
        Err(e) => return Err(SignInError::Listener(e.to_string())),
    };
    Ok(l)
}

pub fn redirect_uri(listener: &tokio::net::TcpListener) -> Result<String, SignInError> {
    let port = listener.local_addr().map_err(|e| SignInError::Listener(e.to_string()))?.port();
    Ok(format!("http://127.0.0.1:{port}{CALLBACK_PATH}"))
}

struct Expecting {
    state: String,
    issuer: String,
    iss_parameter: bool,
    answer: tokio::sync::mpsc::Sender<Result<String, SignInError>>,
}

const PAGE_DONE: &str = "<!doctype html><title>Signed in</title><p>Signed in. You can close this page and go back to your MCP host.";

async fn callback(State(e): State<Arc<Expecting>>, uri: Uri) -> (StatusCode, [(header::HeaderName, &'static str); 1], Html<String>) {
    let (status, page) = answer(&e, &uri).await;
    (status, [(header::CACHE_CONTROL, "no-store")], page)
}

async fn answer(e: &Expecting, uri: &Uri) -> (StatusCode, Html<String>) {
    match code_from(uri.query().unwrap_or(""), &e.state, &e.issuer, e.iss_parameter) {
        Ok(None) => {
            (StatusCode::BAD_REQUEST, Html("<!doctype html><title>Not this sign-in</title><p>This is not the answer to the sign-in in progress.".into()))
        }
        Ok(Some(code)) => {
            let _ = e.answer.send(Ok(code)).await;
            (StatusCode::OK, Html(PAGE_DONE.into()))
        }
        Err(err) => {
            // Nothing of the answer on the page: it is not markup the
            // bridge vouches for.
            let page = "<!doctype html><title>Sign-in failed</title><p>The sign-in failed; warden connect says why on its standard error.".to_string();
            let _ = e.answer.send(Err(err)).await;
            (StatusCode::BAD_REQUEST, Html(page))
        }
    }
}

/// Sends the human to `url` and waits on `listener` for the answer to
/// this sign-in (`state`); the code.
pub async fn await_code(
    listener: tokio::net::TcpListener,
    endpoints: &Endpoints,
    url: &str,
    state: &str,
    browser: Option<&str>,
) -> Result<String, SignInError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let expecting =
        Arc::new(Expecting { state: state.into(), issuer: endpoints.issuer.clone(), iss_parameter: endpoints.interactive.iss_parameter, answer: tx });
    let app = Router::new().route(CALLBACK_PATH, get(callback)).with_state(expecting);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    eprintln!("warden connect: sign in at {url}");
    open(browser, url);
    let answer = tokio::time::timeout(SIGN_IN_TIMEOUT, rx.recv()).await;
    server.abort();
    match answer {
        Ok(Some(answer)) => answer,
        Ok(None) => Err(SignInError::Listener("the listener stopped".into())),
        Err(_) => Err(SignInError::TimedOut),
    }
}

/// Opens `url` with the user's command or the system's. Its output goes
/// nowhere: on stdio, the bridge's standard output is the host's channel.
fn open(browser: Option<&str>, url: &str) {
    let mut cmd = match browser {
        // The URL is a positional argument, never part of the command text.
        Some(c) => {
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c").arg(format!("{c} \"$1\"")).arg("sh").arg(url);
            cmd
        }
        None => {
            let mut cmd = tokio::process::Command::new(if cfg!(target_os = "macos") { "open" } else { "xdg-open" });
            cmd.arg(url);
            cmd
        }
    };
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    if let Err(e) = cmd.spawn() {
        tracing::warn!("warden connect: could not open a browser ({e}); open the URL above yourself");
    }
}

/// A fresh `state` for one sign-in.
pub fn new_state() -> String {
    random(16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::urlencode;

    #[test]
    fn the_s256_challenge_is_the_base64url_sha256_of_the_verifier() {
        // Worked out apart from this code, with Python's hashlib and
        // base64.urlsafe_b64encode, padding dropped.
        assert_eq!(challenge_of("dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk"), "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc");
        let p = Pkce::new();
        assert_eq!(p.verifier.len(), 43);
        assert_eq!(p.challenge, challenge_of(&p.verifier));
        assert_ne!(Pkce::new().verifier, p.verifier);
    }

    fn host() -> Host {
        Host { client_id: "https://host.example/client.json".into(), secret: None, basic: false, redirect_uri: "http://127.0.0.1:4242/callback".into() }
    }

    #[test]
    fn the_authorization_url_carries_pkce_state_and_the_resource_as_published() {
        let mut e = Endpoints::warden("https://gw.example");
        e.resource = "https://gw.example".into();
        let url = Url::parse(&authorize_url(&e, &host(), "CH", "ST", Some("mcp:read mcp:write")).unwrap()).unwrap();
        assert_eq!(url.path(), "/oauth/authorize");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "https://host.example/client.json");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:4242/callback");
        assert_eq!((q["code_challenge"].as_str(), q["code_challenge_method"].as_str()), ("CH", "S256"));
        assert_eq!(q["state"], "ST");
        assert_eq!(q["resource"], "https://gw.example", "no slash added to a pathless resource");
        assert_eq!(q["scope"], "mcp:read mcp:write");
        let no_scope = authorize_url(&e, &host(), "CH", "ST", None).unwrap();
        assert!(!no_scope.contains("scope="), "{no_scope}");
    }

    #[test]
    fn a_server_without_s256_pkce_or_an_authorization_endpoint_is_refused() {
        let mut e = Endpoints::warden("https://gw.example");
        e.interactive.pkce = false;
        assert!(authorize_url(&e, &host(), "CH", "ST", None).unwrap_err().to_string().contains("S256"));
        e.interactive.authorization = None;
        assert!(authorize_url(&e, &host(), "CH", "ST", None).is_err());
    }

    #[test]
    fn the_answer_must_be_this_sign_ins_from_this_issuer() {
        let iss = "https://as.example";
        let q = |s: &str| format!("code=C1&state=ST{s}");
        assert_eq!(code_from(&q(&format!("&iss={}", urlencode(iss))), "ST", iss, true).unwrap().as_deref(), Some("C1"));
        // Another sign-in's answer (or a forgery without the state): ignored.
        assert_eq!(code_from("code=C1&state=OTHER", "ST", iss, true).unwrap(), None);
        assert_eq!(code_from("code=C1", "ST", iss, false).unwrap(), None);
        // RFC 9207: compared as strings, no normalisation; required when advertised.
        assert!(matches!(code_from(&q("&iss=https%3A%2F%2Fas.example%2F"), "ST", iss, true), Err(SignInError::WrongIssuer { .. })));
        assert!(matches!(code_from(&q("&iss=https%3A%2F%2Fevil.example"), "ST", iss, false), Err(SignInError::WrongIssuer { .. })));
        assert!(matches!(code_from(&q(""), "ST", iss, true), Err(SignInError::MissingIssuer(_))));
        assert_eq!(code_from(&q(""), "ST", iss, false).unwrap().as_deref(), Some("C1"));
        let denied = code_from("error=access_denied&error_description=no&state=ST", "ST", iss, false).unwrap_err();
        assert_eq!(denied.to_string(), "the authorization server answered the sign-in with access_denied: no");
        assert!(matches!(code_from("state=ST&code=", "ST", iss, false), Err(SignInError::NoCode)));
    }
}
