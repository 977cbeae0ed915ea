use crate::{AgentFacts, CallFacts, Findings, MonitorFacts, PolicyBundle, PolicyError, RequestFacts, ToolFacts};
use serde::Deserialize;
use serde_json::Value;
use warden_core::{ActionClass, Decision, Sensitivity, TargetKind, ToolRef};

/// A file of policy test cases (TOML, `[[case]]` tables).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    #[serde(rename = "case")]
    pub cases: Vec<TestCase>,
}

/// One expected decision. Defaults describe an ordinary in-scope call at
/// 12:00 UTC on a Monday by an autonomy-1 agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    pub agent: String,
    #[serde(default = "default_owner")]
    pub owner: String,
    #[serde(default)]
    pub purpose: String,
    #[serde(default = "one")]
    pub autonomy: i64,
    #[serde(default)]
    pub risk_score: i64,
    /// `SERVER/TOOL`; `SERVER/URI` for a resource, `SERVER/NAME` for a prompt.
    pub tool: String,
    /// `tool` (default), `resource` (read_resource) or `prompt` (get_prompt).
    #[serde(default = "crate::facts::tool_kind")]
    pub kind: TargetKind,
    #[serde(default = "default_sensitivity")]
    pub sensitivity: String,
    #[serde(default = "default_action")]
    pub action_class: String,
    #[serde(default)]
    pub exfil_capable: bool,
    #[serde(default)]
    pub untrusted_content: bool,
    #[serde(default = "yes")]
    pub in_scope: bool,
    #[serde(default)]
    pub delegation_depth: i64,
    /// `dpop` (default) or `bearer`: how the caller presented its token.
    #[serde(default = "crate::facts::dpop")]
    pub token_binding: String,
    /// The human signed in through the agent's host; empty (default) for none.
    #[serde(default)]
    pub human: String,
    #[serde(default = "default_task")]
    pub task: String,
    /// Unix seconds; default 2026-11-23T12:00:00Z (a Monday).
    #[serde(default = "default_now")]
    pub now: i64,
    #[serde(default)]
    pub listing: bool,
    #[serde(default)]
    pub args: toml::Table,
    /// Inspection findings (in the arguments, or in the result when `result`).
    #[serde(default)]
    pub findings: Findings,
    /// Decide on the tool's result (`receive_result`) instead of the call.
    #[serde(default)]
    pub result: bool,
    /// What the monitor reports (anomaly, learning, calls_this_minute, taint).
    #[serde(default)]
    pub monitor: MonitorFacts,
    /// Decide a request the upstream makes of the client (`relay_request`)
    /// with this method.
    #[serde(default)]
    pub relayed: Option<String>,
    #[serde(default)]
    pub asks_for_credentials: bool,
    /// `allow`, `deny` or `needs_approval`.
    pub expect: String,
    /// If given, exactly these obligations (`CLASS:METHOD`) must come with an allow.
    pub obligations: Option<Vec<String>>,
    /// If given, exactly these policy ids must determine the decision.
    pub policies: Option<Vec<String>>,
}

fn default_owner() -> String {
    "owner@example.com".into()
}
fn one() -> i64 {
    1
}
fn yes() -> bool {
    true
}
fn default_sensitivity() -> String {
    "low".into()
}
fn default_action() -> String {
    "read".into()
}
fn default_task() -> String {
    "test-task".into()
}
fn default_now() -> i64 {
    1_795_435_200
}

/// Outcome of one case.
#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    pub decision: Decision,
    /// Why it failed, for the report.
    pub detail: Option<String>,
}

impl TestFile {
    pub fn parse(file: &str, text: &str) -> Result<Self, PolicyError> {
        let f: TestFile = toml::from_str(text).map_err(|e| PolicyError::TestFile { file: file.into(), message: e.to_string() })?;
        for c in &f.cases {
            c.facts().map_err(|message| PolicyError::TestFile { file: file.into(), message: format!("case {:?}: {message}", c.name) })?;
            if !matches!(c.expect.as_str(), "allow" | "deny" | "needs_approval") {
                return Err(PolicyError::TestFile { file: file.into(), message: format!("case {:?}: expect must be allow, deny or needs_approval", c.name) });
            }
        }
        Ok(f)
    }

    pub fn run(&self, bundle: &PolicyBundle) -> Vec<CaseResult> {
        self.cases.iter().map(|c| c.run(bundle)).collect()
    }
}

impl TestCase {
    fn facts(&self) -> Result<CallFacts, String> {
        let (server, name) = match self.kind {
            TargetKind::Tool => {
                let t: ToolRef = self.tool.parse().map_err(|e: warden_core::CoreError| e.to_string())?;
                (t.server, t.tool)
            }
            kind => match self.tool.split_once('/') {
                Some((server, name)) if !server.is_empty() && !name.is_empty() => (server.to_string(), name.to_string()),
                _ => return Err(format!("a {kind} is named SERVER/{}", if kind == TargetKind::Resource { "URI" } else { "NAME" })),
            },
        };
        let sensitivity: Sensitivity = self.sensitivity.parse().map_err(|e: warden_core::CoreError| e.to_string())?;
        let action: ActionClass = self.action_class.parse().map_err(|e: warden_core::CoreError| e.to_string())?;
        let args: Value = serde_json::to_value(&self.args).map_err(|e| e.to_string())?;
        Ok(CallFacts {
            agent: AgentFacts {
                id: format!("spiffe://test/agent/{}", self.agent),
                name: self.agent.clone(),
                owner: self.owner.clone(),
                purpose: self.purpose.clone(),
                autonomy: self.autonomy,
                risk_score: self.risk_score,
            },
            tool: ToolFacts {
                kind: self.kind,
                server,
                name,
                sensitivity: sensitivity.as_str().into(),
                sensitivity_level: sensitivity.level(),
                action_class: action.as_str().into(),
                exfil_capable: self.exfil_capable,
                untrusted_content: self.untrusted_content,
            },
            request: RequestFacts {
                task: self.task.clone(),
                in_scope: self.in_scope,
                delegation_depth: self.delegation_depth,
                token_binding: self.token_binding.clone(),
                human: self.human.clone(),
                now: self.now,
                args,
                listing: self.listing,
                findings: self.findings.clone(),
                result: self.result,
                monitor: self.monitor.clone(),
                relayed: self.relayed.clone(),
                asks_for_credentials: self.asks_for_credentials,
            },
        })
    }

    pub fn run(&self, bundle: &PolicyBundle) -> CaseResult {
        let facts = self.facts().expect("validated when parsed");
        let decision = bundle.decide(&facts);
        let mut detail = None;
        if decision.outcome() != self.expect {
            detail = Some(format!("expected {}, got {}", self.expect, describe(&decision)));
        } else if let Some(want) = &self.policies {
            let mut want = want.clone();
            want.sort();
            if want != decision.policies() {
                detail = Some(format!("expected policies {want:?}, got {:?}", decision.policies()));
            }
        }
        if let (None, Some(want), Decision::Allow { obligations, .. }) = (&detail, &self.obligations, &decision) {
            let mut got: Vec<String> = obligations.iter().map(|warden_core::Obligation::Redact { class, method }| format!("{class}:{method}")).collect();
            let mut want = want.clone();
            got.sort();
            want.sort();
            if got != want {
                detail = Some(format!("expected obligations {want:?}, got {got:?}"));
            }
        }
        CaseResult { name: self.name.clone(), passed: detail.is_none(), decision, detail }
    }
}

fn describe(d: &Decision) -> String {
    match d {
        Decision::Allow { policies, .. } => format!("allow by {policies:?}"),
        Decision::Deny { reason, .. } | Decision::NeedsApproval { reason, .. } => format!("{} ({reason})", d.outcome()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PolicySource;

    #[test]
    fn cases_pass_and_fail_as_written() {
        let schema = PolicySource { name: "s".into(), text: crate::engine::tests::SCHEMA.into() };
        let b = PolicyBundle::load(
            &schema,
            &[PolicySource {
                name: "p".into(),
                text: r#"@id("read") permit(principal, action, resource) when { resource.action_class == "read" && context.in_scope };"#.into(),
            }],
        )
        .unwrap();
        let f = TestFile::parse(
            "t.toml",
            r#"
            [[case]]
            name = "read ok"
            agent = "a"
            tool = "crm/lookup"
            expect = "allow"
            policies = ["read"]
            [[case]]
            name = "wrong expectation"
            agent = "a"
            tool = "crm/delete"
            action_class = "delete"
            expect = "allow"
            "#,
        )
        .unwrap();
        let r = f.run(&b);
        assert!(r[0].passed, "{:?}", r[0].detail);
        assert!(!r[1].passed);
        assert!(r[1].detail.as_deref().unwrap().contains("expected allow, got deny"));
        assert!(TestFile::parse("x", "[[case]]\nname='x'\nagent='a'\ntool='bad'\nexpect='allow'").is_err());
        assert!(TestFile::parse("x", "[[case]]\nname='x'\nagent='a'\ntool='a/b'\nexpect='maybe'").is_err());
    }

    #[test]
    fn the_shipped_policy_cases_pass() {
        let b = PolicyBundle::load(
            &PolicySource { name: "schema.cedarschema".into(), text: crate::engine::tests::SCHEMA.into() },
            &[
                PolicySource { name: "base.cedar".into(), text: include_str!("../../../policies/base.cedar").into() },
                PolicySource { name: "guardrails.cedar".into(), text: include_str!("../../../policies/guardrails.cedar").into() },
            ],
        )
        .unwrap();
        let f = TestFile::parse("guardrails.toml", include_str!("../../../policies/tests/guardrails.toml")).unwrap();
        let failed: Vec<String> = f.run(&b).into_iter().filter(|r| !r.passed).map(|r| format!("{}: {}", r.name, r.detail.unwrap_or_default())).collect();
        assert!(failed.is_empty(), "{failed:#?}");
    }
}
