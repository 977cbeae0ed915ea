//! The operators' face: the admin REST API (`/admin/v1`, described by the
//! checked-in OpenAPI document), Prometheus `/metrics` and the dashboard
//! (`/dashboard`, static, served from the binary; it uses the same API).
//! Operators authenticate with a bearer token (`warden operator add`) or a
//! session from signing in at the IdP (`[interactive.operators]`); their
//! role decides what they may do, and every change they make is audited.
//! Wrong tokens are throttled per source and audited in aggregate; every
//! answer forbids framing, sniffing, referrers and caching, and the
//! dashboard runs only its own (hashed) script and style.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use warden_control::{Actor, ControlError, ControlPlane, Publication, Via};
use warden_core::clock::now_ms;
use warden_core::{AgentStatus, KillScope, Operator, Role};
use warden_gateway::Gateway;
use warden_gateway::metrics::Gauges;
use warden_identity::PublicKey;
use warden_monitor::{Claimed, Door, History, Promotion, PromotionPolicy, Source};
use warden_store::Store;
use warden_store::StoreError;

pub const OPENAPI: &str = include_str!("../openapi.json");
const DASHBOARD: &str = include_str!("../dashboard/index.html");

pub struct Admin {
    pub gw: Arc<Gateway>,
    /// Every change an operator makes goes through it.
    pub control: ControlPlane,
    pub promotion: PromotionPolicy,
    /// The gateway's public key, to verify the audit log.
    pub audit_key: PublicKey,
    /// Where checkpoints are published outside the database, if anywhere,
    /// and the log's origin: verification checks the log reaches the newest.
    pub publish_checkpoints_to: Option<std::path::PathBuf>,
    pub audit_origin: String,
    /// Operators signed in at the IdP (`[interactive.operators]`).
    pub sso: Option<Arc<crate::interactive::Interactive>>,
}

pub fn router(state: Arc<Admin>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/dashboard", get(|| async { Html(DASHBOARD) }))
        .route("/admin/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route("/admin/v1/whoami", get(whoami))
        .route("/admin/v1/sign-out", post(sign_out))
        .route("/admin/v1/operators/{name}/end-sessions", post(end_sessions))
        .route("/admin/v1/agents", get(agents))
        .route("/admin/v1/agents/{name}", get(agent))
        .route("/admin/v1/agents/{name}/suspend", post(suspend))
        .route("/admin/v1/agents/{name}/resume", post(resume))
        .route("/admin/v1/approvals", get(approvals))
        .route("/admin/v1/approvals/{id}/approve", post(approve))
        .route("/admin/v1/approvals/{id}/deny", post(deny))
        .route("/admin/v1/kills", get(kills).post(engage))
        .route("/admin/v1/kills/{id}/lift", post(lift))
        .route("/admin/v1/decisions", get(decisions))
        .route("/admin/v1/audit/verify", get(verify))
        .route("/admin/v1/audit/checkpoint", get(checkpoint))
        .layer(axum::middleware::from_fn(hardened))
        .with_state(state)
}

/// The dashboard's policy: its inline script and style by hash, API calls
/// to this origin, no framing (clickjacking on Approve and Kill), no plugins,
/// no form posts elsewhere.
static DASHBOARD_CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hashes = |tag: &str| {
        inline_blocks(DASHBOARD, tag)
            .iter()
            .map(|b| format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style")
    );
    HeaderValue::from_str(&csp).expect("a CSP is ASCII")
});

/// The bodies of `<TAG>…</TAG>` elements without attributes, as the browser hashes them.
fn inline_blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// Headers on every answer: operators' data is not framed, sniffed,
/// leaked through referrers or kept in caches.
async fn hardened(req: Request, next: Next) -> Response {
    let dashboard = req.uri().path() == "/dashboard";
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let csp = if dashboard { DASHBOARD_CSP.clone() } else { HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'") };
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An API error: its status, a message saying what to do, and for 429 when to retry.
#[derive(Debug)]
pub struct ApiError(StatusCode, String, Option<u64>);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self(status, msg.into(), None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, axum::Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"warden-admin\""));
        }
        if let Some(secs) = self.2 {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Store(e) => e.into(),
            ControlError::Audit(_) | ControlError::Randomness(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            _ => bad(e.to_string()),
        }
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

type ApiResult = Result<Response, ApiError>;

/// A request's headers and the source it came from (its peer address: a
/// proxy in front makes every operator one source, and forwarded headers
/// are not trusted because anyone can send them).
struct Caller {
    headers: HeaderMap,
    source: IpAddr,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Without a peer address (not served with connect info) every caller shares one bucket.
        let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(Self { headers: parts.headers.clone(), source: ip })
    }
}

impl Admin {
    /// The operator behind the request's bearer token, if their role is at least `need`.
    async fn operator(&self, c: &Caller, need: Role) -> Result<Operator, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
        let auth = c
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("missing Authorization: Bearer <operator token> (create one with `warden operator add`)"))?;
        // A throttled source's token is not even looked at.
        if let Err(t) = self.gw.admit_stranger(c.source, Door::Operator) {
            let msg = format!("too many wrong operator tokens from {}; retry in {} s with the right token", Source::of(c.source), t.retry_after_secs);
            return Err(ApiError(StatusCode::TOO_MANY_REQUESTS, msg, Some(t.retry_after_secs)));
        }
        let Some(token) = auth.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty()) else {
            return Err(self.login_failed(c, unauthorized("expected Authorization: Bearer <operator token>")));
        };
        let op = match self.signed_in(token) {
            Some(Some(s)) if self.gw.snapshot().revocations.ends_operator_session(&s.operator.name, &s.session, s.since) => {
                return Err(self.login_failed(
                    c,
                    unauthorized("this sign-in session has ended (signed out, or an admin ended the operator's sessions): sign in again at /dashboard"),
                ));
            }
            Some(s) => s.map(|s| s.operator),
            None => self.gw.store.operator_by_token(&hex::encode(Sha256::digest(token.as_bytes()))).await?,
        };
        let Some(op) = op else {
            if token.starts_with(crate::interactive::OPERATOR_SESSION_PREFIX) {
                return Err(self.login_failed(c, unauthorized("the sign-in session has expired or is not this server's: sign in again at /dashboard")));
            }
            return Err(self.login_failed(c, unauthorized("unknown operator token (ask an admin for one: `warden operator add`)")));
        };
        if op.role < need {
            return Err(ApiError::new(StatusCode::FORBIDDEN, format!("operator {} is a {}; this needs the {need} role", op.name, op.role)));
        }
        Ok(op)
    }

    /// For a sign-in session's token (`Some`): the session, while it is
    /// valid; `None` for other tokens.
    fn signed_in(&self, token: &str) -> Option<Option<crate::interactive::SignedIn>> {
        token.starts_with(crate::interactive::OPERATOR_SESSION_PREFIX).then(|| self.sso.as_ref()?.operator_session(token, now_ms() / 1000))
    }

    /// Count a wrong token against its source, for the throttle and the
    /// source's aggregated audit record (counts and reasons, never a token).
    fn login_failed(&self, c: &Caller, e: ApiError) -> ApiError {
        self.gw.stranger_failed(c.source, Door::Operator, &e.1, Claimed::Nothing);
        e
    }
}

/// Request bodies: JSON objects; a missing body is an empty object.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(text).map_err(|e| bad(format!("request body is not the expected JSON object: {e}")))
}

fn ok(v: Value) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    #[serde(default)]
    reason: String,
}

async fn metrics(State(s): State<Arc<Admin>>) -> Response {
    let snap = s.gw.snapshot();
    let pending = s.gw.store.list_approvals(true, 10_000).await.map(|v| v.len() as u64).unwrap_or(0);
    let g = Gauges {
        approvals_pending: pending,
        kill_switches_engaged: s.gw.kills().iter().count() as u64,
        agents_active: snap.agents.values().filter(|a| a.status == AgentStatus::Active).count() as u64,
        agents_suspended: snap.agents.values().filter(|a| a.status == AgentStatus::Suspended).count() as u64,
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.gw.metrics.render(&g)).into_response()
}

async fn whoami(State(s): State<Arc<Admin>>, h: Caller) -> ApiResult {
    let op = s.operator(&h, Role::Viewer).await?;
    ok(json!({ "name": op.name, "role": op.role }))
}

/// The caller's own sign-in session ends, on every replica.
async fn sign_out(State(s): State<Arc<Admin>>, h: Caller) -> ApiResult {
    let op = s.operator(&h, Role::Viewer).await?;
    let token = h.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).unwrap_or("");
    let Some(Some(session)) = s.signed_in(token) else {
        return Err(bad(format!("only a sign-in session signs out; operator {}'s token ends with `warden operator remove {}`", op.name, op.name)));
    };
    s.control.sign_out(&Actor::operator(&op, Via::AdminApi), &session.session).await?;
    ok(json!({ "signed_out": op.name }))
}

/// Every sign-in session of operator `name` (`sso:HUMAN`) ends.
async fn end_sessions(State(s): State<Arc<Admin>>, h: Caller, Path(name): Path<String>) -> ApiResult {
    let op = s.operator(&h, Role::Admin).await?;
    s.control.end_operator_sessions(&Actor::operator(&op, Via::AdminApi), &name).await?;
    ok(json!({ "sessions_ended": name }))
}

async fn agents(State(s): State<Arc<Admin>>, h: Caller) -> ApiResult {
    s.operator(&h, Role::Viewer).await?;
    let now = now_ms();
    let list: Vec<Value> = s.gw.store.list_agents().await?.into_iter().map(|a| agent_json(&a, s.gw.monitor.risk(a.id.as_str(), now))).collect();
    ok(json!({ "agents": list }))
}

/// An agent as the API shows it, with its current risk.
fn agent_json(a: &warden_core::Agent, risk: u8) -> Value {
    json!({
        "id": a.id.to_string(), "name": a.id.name(), "owner": a.owner, "purpose": a.purpose,
        "autonomy": a.autonomy.level(), "status": a.status.as_str(), "token_binding": a.token_binding.as_str(),
        "tools": a.tools.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "parent": a.parent.as_ref().map(ToString::to_string),
        "risk": risk,
    })
}

/// An agent's autonomy promotion criteria from its stored history, the
/// monitor's calls and risk, and the audit log's verification.
pub async fn promotion_report(
    store: &Store,
    agent: &warden_core::Agent,
    calls: u64,
    risk: u8,
    audit_key: &PublicKey,
    policy: &PromotionPolicy,
) -> Result<Promotion, StoreError> {
    let warden_store::AutonomyRecord { last_critical_ms, approvals_granted, approvals_refused } = store.autonomy_record(&agent.id).await?;
    let h = History {
        autonomy: agent.autonomy.level(),
        registered_ms: agent.created_at.saturating_mul(1000),
        now_ms: now_ms(),
        calls,
        last_critical_ms,
        approvals_granted,
        approvals_refused,
        risk,
        audit_verified: store.verify_audit(audit_key).await?.is_ok(),
    };
    Ok(warden_monitor::promotion(&h, policy))
}

/// One agent with what the monitor learned and its promotion criteria.
async fn agent(State(s): State<Arc<Admin>>, h: Caller, Path(name): Path<String>) -> ApiResult {
    s.operator(&h, Role::Viewer).await?;
    let id = s.control.agent_id(&name)?;
    let a = s.gw.store.get_agent(&id).await?;
    let summary = s.gw.monitor.summary(id.as_str(), now_ms());
    let (calls, risk) = summary.as_ref().map(|m| (m.calls, m.risk)).unwrap_or_default();
    let promotion = promotion_report(&s.gw.store, &a, calls, risk, &s.audit_key, &s.promotion).await?;
    let mut v = agent_json(&a, risk);
    v["monitor"] = json!(summary);
    v["promotion"] = json!(promotion);
    ok(v)
}

async fn set_status(s: &Admin, h: &Caller, name: &str, bytes: &Bytes, status: AgentStatus) -> ApiResult {
    let op = s.operator(h, Role::Admin).await?;
    let r: Reason = body(bytes)?;
    let id = s.control.set_agent_status(&Actor::operator(&op, Via::AdminApi), name, status, &r.reason).await?;
    ok(json!({ "id": id.to_string(), "status": status.as_str() }))
}

async fn suspend(State(s): State<Arc<Admin>>, h: Caller, Path(name): Path<String>, bytes: Bytes) -> ApiResult {
    set_status(&s, &h, &name, &bytes, AgentStatus::Suspended).await
}

async fn resume(State(s): State<Arc<Admin>>, h: Caller, Path(name): Path<String>, bytes: Bytes) -> ApiResult {
    set_status(&s, &h, &name, &bytes, AgentStatus::Active).await
}

async fn approvals(State(s): State<Arc<Admin>>, h: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let op = s.operator(&h, Role::Viewer).await?;
    let all = match q.get("status").map(String::as_str) {
        None | Some("pending") => false,
        Some("all") => true,
        Some(other) => return Err(bad(format!("status must be pending or all, not {other:?}"))),
    };
    let list: Vec<Value> = s.gw.store.list_approvals(!all, 500).await?.iter().map(|a| a.view(op.role)).collect();
    ok(json!({ "approvals": list }))
}

async fn decide(s: &Admin, h: &Caller, id: &str, bytes: &Bytes, approve: bool) -> ApiResult {
    let op = s.operator(h, Role::Approver).await?;
    let r: Reason = body(bytes)?;
    let a = s.control.decide_approval(&op, Via::AdminApi, id, approve, &r.reason).await?;
    ok(a.view(op.role))
}

async fn approve(State(s): State<Arc<Admin>>, h: Caller, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    decide(&s, &h, &id, &bytes, true).await
}

async fn deny(State(s): State<Arc<Admin>>, h: Caller, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    decide(&s, &h, &id, &bytes, false).await
}

async fn kills(State(s): State<Arc<Admin>>, h: Caller) -> ApiResult {
    s.operator(&h, Role::Viewer).await?;
    let list: Vec<Value> = s.gw.kills().iter().map(|k| serde_json::to_value(k).unwrap_or_default()).collect();
    ok(json!({ "kills": list }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Engage {
    scope: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    reason: String,
}

/// Engage a kill switch in this process: in force before the answer.
async fn engage(State(s): State<Arc<Admin>>, h: Caller, bytes: Bytes) -> ApiResult {
    let op = s.operator(&h, Role::Admin).await?;
    let e: Engage = body(&bytes)?;
    let scope: KillScope = e.scope.parse().map_err(|x: warden_core::CoreError| bad(x.to_string()))?;
    let k = s.control.engage_kill(&Actor::operator(&op, Via::AdminApi), scope, &e.target, &e.reason).await?;
    Ok((StatusCode::CREATED, axum::Json(serde_json::to_value(&k).unwrap_or_default())).into_response())
}

async fn lift(State(s): State<Arc<Admin>>, h: Caller, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    let op = s.operator(&h, Role::Admin).await?;
    let r: Reason = body(&bytes)?;
    let id: i64 = id.parse().map_err(|_| bad(format!("kill switch id {id:?} is not a number")))?;
    let k = s.control.lift_kill(&Actor::operator(&op, Via::AdminApi), id, &r.reason).await?;
    ok(serde_json::to_value(&k).unwrap_or_default())
}

/// Recent decisions (the live feed): records after `after`, or the newest `limit`.
async fn decisions(State(s): State<Arc<Admin>>, h: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    s.operator(&h, Role::Viewer).await?;
    let num = |k: &str, d: u64| {
        q.get(k).map(|v| v.parse::<u64>().map_err(|_| bad(format!("{k} must be a non-negative integer")))).transpose().map(|v| v.unwrap_or(d))
    };
    let limit = num("limit", 100)?.clamp(1, 1000);
    let head = s.gw.store.audit_head().await?.seq;
    let after = match q.get("after") {
        Some(_) => num("after", 0)?,
        None => head.saturating_sub(limit),
    };
    let records: Vec<Value> =
        s.gw.store
            .read_audit(after, limit as u32)
            .await?
            .into_iter()
            .filter_map(Result::ok)
            .map(|r| json!({ "seq": r.seq, "ts_ms": r.ts_ms, "event": r.event }))
            .collect();
    // Per-minute counts by outcome and the latest risk seen per agent, for charts.
    let mut per_minute: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    for r in &records {
        if r["event"]["kind"] == "tool_call" {
            let minute = r["ts_ms"].as_i64().unwrap_or(0) / 60_000 * 60_000;
            *per_minute.entry(minute).or_default().entry(r["event"]["decision"].as_str().unwrap_or("").to_string()).or_default() += 1;
        }
    }
    ok(json!({ "head": head, "records": records, "per_minute": per_minute }))
}

async fn verify(State(s): State<Arc<Admin>>, h: Caller) -> ApiResult {
    s.operator(&h, Role::Viewer).await?;
    let publication = s.publish_checkpoints_to.as_deref().map(|dir| Publication { dir, origin: &s.audit_origin });
    let v = match warden_control::verify_audit(&s.gw.store, &s.audit_key, publication).await {
        Ok(v) => match v.outcome() {
            Ok(r) => {
                json!({ "ok": true, "records": r.records, "head": { "seq": r.head.seq, "hash": r.head.hash }, "root": r.root, "checkpoints": r.checkpoints })
            }
            Err(why) => json!({ "ok": false, "error": why }),
        },
        // A publication that cannot vouch for the log fails verification.
        Err(e @ (ControlError::Publication(_) | ControlError::ForeignCheckpoint { .. })) => json!({ "ok": false, "error": e.to_string() }),
        Err(e) => return Err(e.into()),
    };
    ok(v)
}

/// The newest signed audit checkpoint (C2SP signed note), for publishing.
async fn checkpoint(State(s): State<Arc<Admin>>, h: Caller) -> ApiResult {
    s.operator(&h, Role::Viewer).await?;
    match s.gw.store.latest_checkpoint().await? {
        Some(c) => ok(json!({ "size": c.size, "note": c.note, "ts_ms": c.ts_ms })),
        None => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "no audit checkpoint yet (one is signed every audit.checkpoint_secs, or run `warden audit checkpoint`)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_policy_admits_exactly_its_own_inline_script_and_style() {
        let (scripts, styles) = (inline_blocks(DASHBOARD, "script"), inline_blocks(DASHBOARD, "style"));
        assert_eq!((scripts.len(), styles.len()), (1, 1));
        let csp = DASHBOARD_CSP.to_str().unwrap();
        let digest = |b: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b));
        assert!(csp.contains(&format!("script-src 'sha256-{}';", digest(scripts[0]))), "{csp}");
        assert!(csp.contains(&format!("style-src 'sha256-{}';", digest(styles[0]))), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"), "{csp}");
        // What the policy would silently block: handlers and styles in markup.
        for blocked in [" onclick=", " onload=", " style=", "javascript:", "<script src"] {
            assert!(!DASHBOARD.contains(blocked), "the dashboard uses {blocked:?}, which its CSP blocks");
        }
    }

    #[test]
    fn inline_blocks_are_the_element_bodies() {
        assert_eq!(inline_blocks("<p><script>a()</script> <script>b()</script><script>", "script"), vec!["a()", "b()"]);
        assert!(inline_blocks("<script src=x></script>", "script").is_empty());
    }
}
