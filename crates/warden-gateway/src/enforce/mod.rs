//! The enforcement core: the one decision pipeline every front door runs a
//! call through. A front door (the MCP endpoint, the egress proxy, and any
//! later one) parses its request, authenticates it (`authn`), and then:
//!
//! 1. **resolve** the target ([`Pipeline::resolve_tool`], or the door's own
//!    pseudo-tool such as `egress/HOST:PORT`);
//! 2. check **kill switches** ([`Pipeline::check_kills`]);
//! 3. **inspect** the arguments ([`Pipeline::inspect`]);
//! 4. **assess** the call with the monitor and **screen** it (containment,
//!    limits, breakers: [`Pipeline::assess`], [`Pipeline::screen`]);
//! 5. **decide** with Cedar ([`Pipeline::decide`]) — allow with obligations,
//!    deny, or hold;
//! 6. **hold** for a human's approval and authorize again at release
//!    ([`hold`]), where the door can wait;
//! 7. **admit** it to the upstream: kills again, breakers, obligations on
//!    the arguments, the write-ahead record ([`Pipeline::admit`]);
//! 8. the door **forwards** it;
//! 9. **review** the result ([`Pipeline::review`]);
//! 10. **settle** with the monitor (containment, demotion: [`Pipeline::settle`]) and
//!     **record** it: the audit record is built once, from the stages'
//!     values, by [`Trail::record`].
//!
//! Every stage returns a typed value or a [`Refusal`]; the door renders a
//! refusal in its own protocol. [`Pipeline::tool_call`] composes the stages
//! for a tool call.

mod facts;
mod hold;
mod refusal;
mod settle;
#[cfg(test)]
pub(crate) mod tests;

pub(crate) use facts::{Ask, MonitorView, Subject, asks_for_credentials, facts, finding_labels, monitor_call};
pub(crate) use refusal::{Refusal, Withheld};
pub(crate) use settle::{contain_agent, settle};

use crate::audit_sink::AuditUnavailable;
use crate::authn::Authenticated;
use crate::state::Gateway;
use crate::upstream::{Upstream, UpstreamError};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use warden_core::clock::now_ms;
use warden_core::{ActionClass, AuditEvent, Decision, EventKind, Obligation, TargetKind, Tool, ToolRef, ToolStatus, Verdict, canonical_json, sha256_hex};
use warden_inspect::Rule;
use warden_monitor::{Assessment, Outcome, Taint, records_in};
use warden_policy::{Findings, PolicyBundle};

/// The values one call's audit record is built from, filled in as the
/// stages run. [`Trail::record`] turns them into the call's record when it
/// ends (interim records are copies, [`Trail::interim`]).
#[derive(Debug, Clone)]
pub(crate) struct Trail {
    kind: EventKind,
    correlation_id: String,
    action: String,
    start: Instant,
    agent: String,
    subject: String,
    task: String,
    token_binding: warden_core::TokenBinding,
    token_id: String,
    delegation: Vec<String>,
    /// The tool as resolved (or as named, when it could not be).
    pub(crate) tool: Option<String>,
    args_sha256: Option<String>,
    findings: Vec<String>,
    risk: Option<u8>,
    anomaly: Option<u8>,
    /// Policies and policy-like ids (limits, kills, approvals) that had a
    /// say, in the order they did.
    pub(crate) policies: Vec<String>,
    redacted: u32,
    forwarded: bool,
    /// Why an allowed call went ahead, when it is worth saying (approved
    /// by whom; the address an egress connection went to).
    note: Option<String>,
}

impl Trail {
    /// A call's trail; `start` is when its request arrived (its record's
    /// latency counts from there).
    pub(crate) fn new(kind: EventKind, correlation_id: &str, action: impl Into<String>, auth: &Authenticated, start: Instant) -> Self {
        let chain = auth.claims.delegation();
        Self {
            kind,
            correlation_id: correlation_id.to_string(),
            action: action.into(),
            start,
            agent: auth.claims.agent().to_string(),
            subject: auth.claims.sub.clone(),
            task: auth.claims.task.clone(),
            token_binding: auth.binding,
            token_id: auth.claims.jti.clone(),
            delegation: if chain.len() > 1 { chain.iter().map(|s| s.to_string()).collect() } else { Vec::new() },
            tool: None,
            args_sha256: None,
            findings: Vec::new(),
            risk: None,
            anomaly: None,
            policies: Vec::new(),
            redacted: 0,
            forwarded: false,
            note: None,
        }
    }

    pub(crate) fn set_action(&mut self, action: impl Into<String>) {
        self.action = action.into();
    }

    pub(crate) fn set_args_digest(&mut self, digest: String) {
        self.args_sha256 = Some(digest);
    }

    pub(crate) fn add_policies(&mut self, ids: impl IntoIterator<Item = String>) {
        for id in ids {
            if !self.policies.contains(&id) {
                self.policies.push(id);
            }
        }
    }

    pub(crate) fn note(&mut self, note: String) {
        self.note = Some(note);
    }

    pub(crate) fn forwarded(&mut self) {
        self.forwarded = true;
    }

    /// The call's record, as it ended: went ahead (`None`) or stopped short.
    pub(crate) fn record(mut self, stopped: Option<&Stopped>) -> AuditEvent {
        let (verdict, reason) = match stopped {
            Some(Stopped::Refused(r)) => (r.verdict(), Some(r.reason())),
            None => (Verdict::Allow, self.note.take()),
            Some(Stopped::UpstreamFailed(e)) => (Verdict::Allow, Some(upstream_failure(e))),
        };
        let latency_us = self.start.elapsed().as_micros() as u64;
        let kind = self.kind;
        AuditEvent { latency_us: Some(latency_us), ..self.into_event(kind, verdict, reason) }
    }

    /// A record written while the call is still under way (held for
    /// approval, about to be forwarded); the trail goes on.
    pub(crate) fn interim(&self, kind: EventKind, decision: Verdict, reason: Option<String>) -> AuditEvent {
        self.clone().into_event(kind, decision, reason)
    }

    /// The trail's values as a record of `kind` (without latency).
    pub(crate) fn into_event(self, kind: EventKind, decision: Verdict, reason: Option<String>) -> AuditEvent {
        AuditEvent {
            kind: Some(kind),
            correlation_id: Some(self.correlation_id),
            action: Some(self.action),
            agent: Some(self.agent),
            subject: Some(self.subject),
            task: Some(self.task),
            token_binding: Some(self.token_binding),
            token_id: Some(self.token_id),
            delegation: self.delegation,
            tool: self.tool,
            args_sha256: self.args_sha256,
            findings: self.findings,
            risk: self.risk,
            anomaly: self.anomaly,
            policies: self.policies,
            redacted: self.redacted,
            forwarded: self.forwarded,
            decision,
            reason,
            latency_us: None,
            remediation: None,
        }
    }
}

fn upstream_failure(e: &UpstreamError) -> String {
    match e {
        UpstreamError::Rpc { code, message, .. } => format!("upstream error {code}: {message}"),
        e => e.to_string(),
    }
}

/// How a call stopped short of going ahead (and, when forwarded, of its
/// result being released).
#[derive(Debug)]
pub(crate) enum Stopped {
    Refused(Refusal),
    /// Forwarded, and the upstream failed.
    UpstreamFailed(UpstreamError),
}

/// A tool, resource or prompt resolved for a caller, with its arguments.
pub(crate) struct Target {
    /// The tool; for a resource or prompt, its server's grant
    /// (`SERVER/:resources`, `SERVER/:prompts`) classified as the
    /// configuration says, which is also what the monitor's baselines and
    /// limits count it as.
    pub(crate) tool: Tool,
    pub(crate) kind: TargetKind,
    /// The tool's name, the resource's URI (as the upstream names it) or
    /// the prompt's name.
    pub(crate) name: String,
    pub(crate) args: Value,
    /// The size of the canonical arguments (the monitor's impact measure).
    pub(crate) arg_bytes: usize,
}

impl Target {
    pub(crate) fn subject(&self) -> Subject<'_> {
        Subject { tool: &self.tool, kind: self.kind, name: &self.name }
    }
}

/// The pseudo-tool a server's resources or prompts are decided and counted
/// as: its grant, with the classification its configuration gives them.
pub(crate) fn item_tool(upstream: &Upstream, kind: TargetKind) -> Option<Tool> {
    let c = match kind {
        TargetKind::Tool => return None,
        TargetKind::Resource => upstream.config.resources,
        TargetKind::Prompt => upstream.config.prompts,
    };
    Some(Tool {
        tool: kind.grant(&upstream.config.name)?,
        sensitivity: c.sensitivity,
        action_class: ActionClass::Read,
        exfil_capable: false,
        untrusted_content: c.untrusted_content,
        pinned_hash: None,
        observed_hash: None,
        status: ToolStatus::Approved,
    })
}

/// What inspection found in a request.
pub(crate) struct Inspection {
    pub(crate) findings: Findings,
}

/// The monitor's assessment of a call, and when it was made (the start of
/// a time-to-contain measurement).
pub(crate) struct Assessed {
    pub(crate) seen: Assessment,
    pub(crate) at: Instant,
}

/// Cedar's answer: go ahead under obligations, or ask a human first (how
/// many approvers it takes is the deciding bundle's to say).
pub(crate) enum Decided {
    Allow(Permit),
    Hold { reason: String, policies: Vec<String>, policy: Arc<PolicyBundle> },
}

/// Permission to forward: the bundle that decided (so one bundle decides
/// both the call and its result) and the obligations it attached.
pub(crate) struct Permit {
    pub(crate) policy: Arc<PolicyBundle>,
    pub(crate) obligations: Vec<Obligation>,
    /// An approval released for this call, spent at admission.
    pub(crate) approval: Option<String>,
}

/// A call admitted to the upstream, with its arguments as they leave. Held
/// across the upstream call: if the caller goes away mid-call, a breaker
/// probe is abandoned rather than left in flight for good.
pub(crate) struct Admission<'g> {
    pub(crate) args: Value,
    _admitted: warden_monitor::Admitted<'g>,
}

/// What a front door's upstream answered.
pub(crate) type Forwarded = Result<Value, UpstreamError>;

/// A random id for a request, an approval or a session (64 bits, hex).
pub(crate) fn correlation_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("OS random source available");
    hex::encode(b)
}

/// One call on its way through the stages, for one authenticated caller.
pub(crate) struct Pipeline<'a> {
    pub(crate) gw: &'a Gateway,
    pub(crate) auth: &'a Authenticated,
    pub(crate) now: i64,
    pub(crate) trail: Trail,
    outcome: Outcome,
    /// A pending approval this call goes on waiting for (the client came
    /// back with it, sealed), rather than asking for another.
    pub(crate) resumes: Option<String>,
}

impl<'a> Pipeline<'a> {
    pub(crate) fn new(gw: &'a Gateway, auth: &'a Authenticated, now: i64, trail: Trail) -> Self {
        Self { gw, auth, now, trail, outcome: Outcome::default(), resumes: None }
    }

    /// Resolve a federated tool name (`SERVER__TOOL`) and its arguments for
    /// this caller.
    pub(crate) async fn resolve_tool(&mut self, name: Option<&str>, args: Option<&Value>) -> Result<Target, Refusal> {
        let resolved = self.try_resolve(name, args);
        self.resolved(resolved).await
    }

    /// A refusal at resolution that probes for privilege (see
    /// [`Refusal::suspicious_at_resolution`]) counts against the agent, and
    /// so does a flood of names nothing answers to.
    async fn resolved(&mut self, resolved: Result<Target, Refusal>) -> Result<Target, Refusal> {
        if let Err(r) = &resolved {
            self.unresolved(r).await;
        }
        resolved
    }

    /// Count a refusal at resolution with the monitor, as [`Pipeline::resolved`]
    /// does (for a front door that refused a request before it could name a
    /// target).
    pub(crate) async fn unresolved(&mut self, r: &Refusal) {
        let (monitor, agent, trigger) = (&self.gw.monitor, self.auth.claims.agent(), Instant::now());
        // Asking beyond the grant counts at once; a name nothing answers to
        // only in a flood (see `warden_monitor::MISSES_PER_MINUTE`).
        let cause = match r {
            _ if r.suspicious_at_resolution() => monitor.refused(agent, now_ms()),
            Refusal::Unknown(_) | Refusal::Malformed(_) => monitor.missed(agent, now_ms()),
            _ => None,
        };
        if let Some(cause) = cause {
            contain_agent(self.gw, agent, cause, trigger).await;
        }
    }

    /// Resolve a resource (`kind` resource, `name` its URI upstream) or a
    /// prompt of `server` for this caller, with the request's arguments
    /// (a read's are `{ uri }`).
    pub(crate) async fn resolve_item(&mut self, kind: TargetKind, server: &str, name: &str, args: Value) -> Result<Target, Refusal> {
        let resolved = self.try_resolve_item(kind, server, name, args);
        self.resolved(resolved).await
    }

    fn try_resolve_item(&mut self, kind: TargetKind, server: &str, name: &str, args: Value) -> Result<Target, Refusal> {
        let canonical = canonical_json(&args);
        self.trail.set_args_digest(sha256_hex(canonical.as_bytes()));
        let what = if kind == TargetKind::Resource { "resource" } else { "prompt" };
        let tool =
            self.gw.upstream(server).and_then(|u| item_tool(u, kind)).ok_or_else(|| Refusal::Unknown(format!("no {what} server {server:?} is configured")))?;
        self.trail.tool = Some(tool.tool.to_string());
        if !self.auth.grants(&tool.tool) {
            return Err(Refusal::OutOfScope(tool.tool));
        }
        Ok(Target { tool, kind, name: name.to_string(), args, arg_bytes: canonical.len() })
    }

    fn try_resolve(&mut self, name: Option<&str>, args: Option<&Value>) -> Result<Target, Refusal> {
        let name = name.ok_or_else(|| Refusal::Malformed("tools/call needs params.name".into()))?;
        let args = match args {
            None | Some(Value::Null) => json!({}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err(Refusal::Malformed("params.arguments must be an object".into())),
        };
        let canonical = canonical_json(&args);
        self.trail.set_args_digest(sha256_hex(canonical.as_bytes()));
        self.trail.tool = Some(name.to_string());
        let tref = self.gw.resolve_tool_name(name).map_err(|e| match e {
            crate::catalog::NameError::Unknown => Refusal::Unknown(format!(
                "unknown tool {name:?}: call a tool by the name tools/list gives it (SERVER__TOOL unless its server names it otherwise)"
            )),
            crate::catalog::NameError::Ambiguous(tools) => {
                Refusal::Unknown(format!("tool name {name:?} stands for more than one tool ({}); an operator must give one an alias", tools.join(", ")))
            }
        })?;
        self.trail.tool = Some(tref.to_string());
        // Whether the tool exists is told before whether it is granted: that
        // is what tells a client's ordinary miss from probing beyond the
        // grant (tool names are not secrets; what they do is decided here).
        let snap = self.gw.snapshot();
        let Some(tool) = snap.tools.get(&tref) else {
            return Err(Refusal::Unknown(unavailable_reason(None, &tref)));
        };
        if !self.auth.grants(&tref) {
            return Err(Refusal::OutOfScope(tref));
        }
        if !tool.is_callable() {
            return Err(Refusal::Unavailable(unavailable_reason(Some(tool), &tref)));
        }
        Ok(Target { tool: tool.clone(), kind: TargetKind::Tool, name: tref.tool.clone(), args, arg_bytes: canonical.len() })
    }

    /// A kill switch covering this caller or, when given, this tool.
    pub(crate) fn check_kills(&mut self, tool: Option<&ToolRef>) -> Result<(), Refusal> {
        match self.gw.kill_covering(self.auth, tool) {
            Some(k) => Err(self.refusal(Refusal::Killed(k))),
            None => Ok(()),
        }
    }

    /// Scan the arguments for secrets, PII and injection, each string and
    /// across them (a key split over two arguments); for an
    /// exfiltration-capable tool also joined with what the agent recently
    /// sent out that way (a card split over two calls). Injection is judged
    /// by the rules alone: an agent's arguments are written for a recipient.
    pub(crate) fn inspect(&mut self, target: &Target) -> Inspection {
        let mut scan = self.gw.rules_only.scan_arguments(&target.args);
        if target.tool.exfil_capable {
            scan.merge(self.gw.exfil_check(self.auth.claims.agent(), &target.args));
        }
        self.take_inspection(scan.summary)
    }

    /// Adopt findings a front door gathered itself (it scans what it
    /// forwards in its own shape).
    pub(crate) fn take_inspection(&mut self, findings: Findings) -> Inspection {
        self.trail.findings = finding_labels("args", &findings);
        self.outcome.injection_in_args = findings.injection_score >= 50;
        self.outcome.secret_in_args = findings.secret_count > 0;
        Inspection { findings }
    }

    /// The monitor's assessment: risk, anomaly, rate, taint, limits.
    pub(crate) fn assess(&mut self, call: &warden_monitor::Call<'_>) -> Assessed {
        let seen = self.gw.monitor.assess(call);
        self.trail.risk = Some(seen.risk);
        self.trail.anomaly = Some(seen.anomaly.score);
        Assessed { seen, at: Instant::now() }
    }

    /// Refuse what the monitor already refuses: a contained agent, a limit
    /// or an open breaker.
    pub(crate) fn screen(&mut self, a: &Assessed) -> Result<(), Refusal> {
        if let Some(cause) = &a.seen.contain {
            return Err(self.refusal(Refusal::Contained(cause.clone())));
        }
        if let Some(r) = &a.seen.refusal {
            return Err(self.refusal(Refusal::Monitor(r.clone())));
        }
        Ok(())
    }

    /// Ask Cedar about the call. `in_scope` overrides the token's scope for
    /// a front door with a grant of its own (the egress allowlist).
    pub(crate) fn decide(&mut self, target: &Target, found: &Inspection, a: &Assessed, in_scope: Option<bool>) -> Result<Decided, Refusal> {
        let policy = self.gw.policy();
        let mut f = facts(self.auth, target.subject(), &target.args, Ask::Call(&found.findings), self.now, &MonitorView::from(&a.seen));
        if let Some(s) = in_scope {
            f.request.in_scope = s;
        }
        let decision = policy.decide(&f);
        self.trail.add_policies(decision.policies().iter().cloned());
        match decision {
            Decision::Allow { obligations, .. } => Ok(Decided::Allow(Permit { policy, obligations, approval: None })),
            Decision::NeedsApproval { reason, policies, .. } => Ok(Decided::Hold { reason, policies, policy }),
            Decision::Deny { reason, policies } => {
                let critical = policies.iter().find(|p| policy.is_critical(p)).cloned();
                Err(Refusal::Policy { reason, critical })
            }
        }
    }

    /// Admit an allowed (or approved) call to the upstream: kill switches
    /// checked again (one engaged while it was decided stops it), the
    /// breaker's admission held across the upstream call, an approval
    /// spent, the obligations applied to the arguments, and the decision to
    /// forward made durable first (write-ahead: nothing executes
    /// unrecorded; a full disk or a lost database refuses the call instead).
    pub(crate) async fn admit(
        &mut self,
        call: &warden_monitor::Call<'_>,
        target: &Target,
        permit: &Permit,
        found: &Inspection,
    ) -> Result<Admission<'a>, Refusal> {
        self.check_kills(Some(&target.tool.tool))?;
        let gw: &'a Gateway = self.gw;
        let admitted = gw.monitor.admit(call).map_err(|r| self.refusal(Refusal::Monitor(r)))?;
        if let Some(id) = &permit.approval
            && let Err(e) = self.gw.store.use_approval(id, now_ms()).await
        {
            return Err(Refusal::ApprovalUnusable { approval: id.clone(), error: e.to_string() });
        }
        let mut args = target.args.clone();
        self.trail.redacted += redact(self.gw, &mut args, &permit.obligations, &found.findings);
        let intent = self.trail.interim(EventKind::ToolCallIntent, Verdict::Allow, Some("forwarding to the upstream".into()));
        self.gw.audit.record(intent).await.map_err(|e| Refusal::NotForwarded(e.to_string()))?;
        self.trail.forwarded();
        Ok(Admission { args, _admitted: admitted })
    }

    /// Admit a call its front door carries out itself (an egress
    /// connection): it takes its share of the rate limits and caps
    /// (assessing only checks them). No breaker guards such a destination,
    /// so there is no probe to keep.
    pub(crate) fn take_share(&mut self, call: &warden_monitor::Call<'_>) -> Result<(), Refusal> {
        let gw = self.gw;
        gw.monitor.admit(call).map(drop).map_err(|r| self.refusal(Refusal::Monitor(r)))
    }

    /// Inspect an upstream result and decide on it (`receive_result`):
    /// withhold it when the caller was contained meanwhile, on a deny (the
    /// call itself already happened upstream) or when its records would
    /// exceed a cap; or release it with the permit's redaction obligations
    /// applied, tainting the session with what it carried.
    pub(crate) fn review(
        &mut self,
        call: &warden_monitor::Call<'_>,
        target: &Target,
        permit: &Permit,
        a: &Assessed,
        mut result: Value,
    ) -> Result<Value, Refusal> {
        let gw = self.gw;
        if let Some(k) = gw.kill_covering(self.auth, Some(&target.tool.tool)) {
            return Err(self.refusal(Refusal::Withheld(Withheld::Killed(k))));
        }
        // A prompt's messages are instructions for the model by design.
        let inspector = if target.kind == TargetKind::Prompt { &gw.rules_only } else { &gw.inspector };
        let scan = match result.get("resultType").and_then(Value::as_str) {
            // An interim MRTR answer's `requestState`, once the gateway
            // sealed it, is for its server to read back (opaque to the
            // client, never for its model): not scanned. Its input
            // requests are, here and when they were decided on. Any other
            // `requestState` is scanned like the rest.
            Some("input_required")
                if result
                    .get("requestState")
                    .and_then(Value::as_str)
                    .is_some_and(|s| crate::catalog::sealed_request_state(s, &gw.cursor_key, self.auth.claims.agent())) =>
            {
                let mut shown = result.clone();
                shown.as_object_mut().map(|r| r.remove("requestState"));
                inspector.scan_json(&shown)
            }
            _ => inspector.scan_json(&result),
        };
        self.trail.findings.extend(finding_labels("result", &scan.summary));
        let policy = &permit.policy;
        let decision = policy.decide(&facts(self.auth, target.subject(), &target.args, Ask::Result(&scan.summary), self.now, &MonitorView::from(&a.seen)));
        self.trail.add_policies(decision.policies().iter().cloned());
        match decision {
            Decision::Allow { obligations, .. } => {
                if let Err(hit) = gw.monitor.take_records(call, records_in(&result)) {
                    return Err(self.refusal(Refusal::Withheld(Withheld::Limit(hit))));
                }
                self.trail.redacted += redact(gw, &mut result, &obligations, &scan.summary);
                let s = &scan.summary;
                self.outcome.taint = Taint {
                    untrusted: target.tool.untrusted_content || s.injection_score >= 50,
                    sensitive: s.pii_count + s.secret_count > 0 || target.tool.sensitivity.level() >= 3,
                };
                Ok(result)
            }
            Decision::Deny { reason, policies } => {
                let critical = policies.iter().find(|p| policy.is_critical(p)).cloned();
                Err(Refusal::Withheld(Withheld::Policy { reason, critical, policies }))
            }
            Decision::NeedsApproval { reason, policies, .. } => Err(Refusal::Withheld(Withheld::NeedsApproval { reason, policies })),
        }
    }

    /// Note a refusal's own ids on the record, and pass it on.
    fn refusal(&mut self, r: Refusal) -> Refusal {
        self.trail.add_policies(r.policy_ids());
        r
    }

    /// Settle a call the monitor assessed: report its outcome, contain or
    /// demote the agent as it warrants.
    pub(crate) async fn settle(&mut self, call: &warden_monitor::Call<'_>, target: &Target, a: &Assessed, stopped: Option<&Stopped>) {
        let o = &mut self.outcome;
        match stopped {
            Some(Stopped::Refused(r)) => {
                o.denied = r.counts_against_agent();
                o.limit_hit = r.limit_hit();
                o.critical = r.critical().map(String::from);
                o.failed = matches!(r, Refusal::NotForwarded(_));
                o.trifecta = r.at_approval() && a.seen.taint.both() && target.tool.exfil_capable;
            }
            None => {}
            // Neither the agent's failure nor the upstream's.
            Some(Stopped::UpstreamFailed(UpstreamError::Cancelled { .. })) => o.upstream_ok = Some(true),
            Some(Stopped::UpstreamFailed(e)) => {
                o.failed = true;
                o.upstream_ok = Some(matches!(e, UpstreamError::Rpc { .. }));
            }
        }
        if self.trail.forwarded && o.upstream_ok.is_none() {
            // Forwarded and answered (a withheld result was still answered).
            o.upstream_ok = Some(true);
        }
        settle(self.gw, call, &a.seen, a.at, &self.outcome).await;
    }

    /// The outcome so far; a front door adds what only it knows (an
    /// admitted egress connection taints the session as untrusted).
    pub(crate) fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.outcome
    }

    /// Run a `tools/call` through every stage; `forward` calls the tool's
    /// upstream with the admitted arguments (the front door relays what it
    /// needs to on the way). Returns the released result.
    pub(crate) async fn tool_call<F>(&mut self, name: Option<&str>, args: Option<&Value>, forward: F) -> Result<Value, Stopped>
    where
        F: AsyncFnOnce(&Upstream, &Target, Value) -> Forwarded,
    {
        let target = self.resolve_tool(name, args).await.map_err(Stopped::Refused)?;
        self.carry(target, forward).await
    }

    /// Run a resolved target (a tool call, a resource read, a prompt)
    /// through every stage after resolution; `forward` sends it upstream
    /// with the admitted arguments. Returns the released answer.
    pub(crate) async fn carry<F>(&mut self, target: Target, forward: F) -> Result<Value, Stopped>
    where
        F: AsyncFnOnce(&Upstream, &Target, Value) -> Forwarded,
    {
        let Some(upstream) = self.gw.upstream(&target.tool.tool.server).cloned() else {
            // The operator's configuration, not the agent's doing.
            return Err(Stopped::Refused(Refusal::Unavailable(format!("no upstream server {:?} is configured", target.tool.tool.server))));
        };
        self.check_kills(Some(&target.tool.tool)).map_err(Stopped::Refused)?;
        let found = self.inspect(&target);
        let auth = self.auth;
        let mcall = monitor_call(auth, &target.tool, &target.args, target.arg_bytes, now_ms());
        let assessed = self.assess(&mcall);
        let answer = self.decide_and_forward(&mcall, &target, &found, &assessed, async |args| forward(&upstream, &target, args).await).await;
        self.settle(&mcall, &target, &assessed, answer.as_ref().err()).await;
        answer
    }

    async fn decide_and_forward<F>(
        &mut self,
        mcall: &warden_monitor::Call<'_>,
        target: &Target,
        found: &Inspection,
        a: &Assessed,
        forward: F,
    ) -> Result<Value, Stopped>
    where
        F: AsyncFnOnce(Value) -> Forwarded,
    {
        self.screen(a).map_err(Stopped::Refused)?;
        let permit = match self.decide(target, found, a, None).map_err(Stopped::Refused)? {
            Decided::Allow(p) => p,
            Decided::Hold { reason, policies, policy } => self.hold(target, found, a, &policy, &reason, &policies).await.map_err(Stopped::Refused)?,
        };
        let admission = self.admit(mcall, target, &permit, found).await.map_err(Stopped::Refused)?;
        // The admission (its breaker probe) lives on until the result is reviewed.
        if target.tool.exfil_capable {
            self.gw.exfil_record(self.auth.claims.agent(), &admission.args);
        }
        let result = forward(admission.args).await.map_err(Stopped::UpstreamFailed)?;
        self.review(mcall, target, &permit, a, result).map_err(Stopped::Refused)
    }
}

/// The tool definitions a caller may see listed, under their federated
/// names: in its token's scope and its registered tools, callable, no kill
/// switch on them, and listed by the policy.
pub(crate) fn visible_tools(gw: &Gateway, auth: &Authenticated, now: i64) -> Vec<Value> {
    let snap = gw.snapshot();
    let policy = gw.policy();
    let kills = gw.kills();
    let empty = json!({});
    let mon = MonitorView { risk: i64::from(gw.monitor.risk(auth.claims.agent(), now_ms())), ..Default::default() };
    let defs = gw.definitions.read();
    defs.iter()
        .filter(|(tref, _)| auth.grants(tref))
        .filter_map(|(tref, def)| snap.tools.get(tref).filter(|t| t.is_callable() && kills.for_tool(tref).is_none()).map(|t| (t, def)))
        .filter(|(t, _)| policy.decide(&facts(auth, Subject::tool(t), &empty, Ask::Listing, now, &mon)).is_allow())
        .filter_map(|(t, def)| {
            // Listed under a name only if the name resolves to it: one that
            // stands for two tools (two bare servers) is listed for neither.
            let name = gw.exposed_name(&t.tool);
            if gw.resolve_tool_name(&name).as_ref() != Ok(&t.tool) {
                tracing::warn!(tool = %t.tool, name, "not listing a tool under a name that stands for more than one tool; give one an alias");
                return None;
            }
            let mut d = def.clone();
            d["name"] = name.into();
            Some(d)
        })
        .collect()
}

/// Which of one upstream's listed resources, resource templates or prompts
/// a caller may see: in its grant (checked once), not flagged as poisoned
/// (instructions hidden in a description, as in a tool definition), and
/// listed by the policy. `name_of` gives an item's name as policy sees it
/// (a resource's URI or template, a prompt's name).
pub(crate) fn visible_items(
    gw: &Gateway,
    auth: &Authenticated,
    upstream: &Upstream,
    kind: TargetKind,
    items: Vec<Value>,
    name_of: impl Fn(&Value) -> Option<&str>,
    now: i64,
) -> Vec<Value> {
    let Some(tool) = item_tool(upstream, kind) else { return Vec::new() };
    if !auth.grants(&tool.tool) || gw.kills().for_tool(&tool.tool).is_some() {
        return Vec::new();
    }
    let policy = gw.policy();
    let empty = json!({});
    let mon = MonitorView { risk: i64::from(gw.monitor.risk(auth.claims.agent(), now_ms())), ..Default::default() };
    items
        .into_iter()
        .filter(|item| {
            let Some(name) = name_of(item) else { return false };
            if gw.inspector.scan_tool_definition(item, &upstream.config.name, &[]).flagged() {
                // Not the name: a resource's URI may carry a signed query.
                tracing::warn!(upstream = %upstream.config.name, %kind, "withholding a listed definition flagged as poisoned");
                return false;
            }
            // A resource is listed only if it could be read: the guardrails
            // on its URI (a file under /secrets) apply to the listing too.
            let args = if kind == TargetKind::Resource { json!({ "uri": name }) } else { empty.clone() };
            policy.decide(&facts(auth, Subject { tool: &tool, kind, name }, &args, Ask::Listing, now, &mon)).is_allow()
        })
        .collect()
}

/// Why a tool that is not callable cannot be called, and what to do.
pub(crate) fn unavailable_reason(tool: Option<&Tool>, tref: &ToolRef) -> String {
    match tool.map(|t| t.status) {
        None => format!("tool {tref} is not registered with the gateway"),
        Some(ToolStatus::Pending) => format!("tool {tref} has not been approved by an operator (warden tool approve {tref})"),
        Some(ToolStatus::Changed) => format!(
            "tool {tref} changed its definition upstream since it was approved (possible tool poisoning or rug pull); it is blocked until an operator reviews and re-approves it"
        ),
        Some(ToolStatus::Disabled) => format!("tool {tref} is disabled by an operator"),
        Some(ToolStatus::Approved) => format!("tool {tref} has not been seen upstream with its pinned definition"),
    }
}

/// Apply a decision's `@redact` obligations to a value (arguments or a
/// result), when its scan found something they could apply to; returns how
/// many spans were replaced.
fn redact(gw: &Gateway, v: &mut Value, obligations: &[Obligation], found: &Findings) -> u32 {
    if obligations.is_empty() || found.pii_count + found.secret_count == 0 {
        return 0;
    }
    let rules: Vec<Rule> = obligations.iter().map(Rule::from_obligation).collect();
    gw.redactor.redact_json(&gw.inspector, v, &rules) as u32
}

/// Write a call's record; a tool call also counts in the metrics and, when
/// tracing is configured, exports its span.
pub(crate) async fn record(gw: &Gateway, ev: AuditEvent, trace: Option<([u8; 16], [u8; 8])>) -> Result<(), AuditUnavailable> {
    if ev.kind == Some(EventKind::ToolCall) {
        let latency_us = ev.latency_us.unwrap_or(0);
        gw.metrics.observe_call(ev.decision, latency_us);
        crate::telemetry::export_call_span(gw, &ev, latency_us, trace);
    }
    gw.audit.record(ev).await.map(|_| ())
}
