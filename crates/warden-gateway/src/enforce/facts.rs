//! What the decision stages see of a call: the facts Cedar decides on, the
//! monitor's view of the call, and the finding labels the audit record
//! carries. Pure translation, no IO.

use crate::authn::Authenticated;
use serde_json::Value;
use warden_core::{ActionClass, TargetKind, Tool};
use warden_monitor::Assessment;
use warden_policy::{CallFacts, Findings, MonitorFacts, RequestFacts, ToolFacts};

/// How a decision is asked: for a call (with the arguments' findings), for
/// its result (with the result's findings), for a listing, or for a request
/// the upstream makes of the client during the call (with its findings).
pub(crate) enum Ask<'a> {
    Listing,
    Call(&'a Findings),
    Result(&'a Findings),
    Relay { findings: &'a Findings, method: &'a str, asks_for_credentials: bool },
}

/// Finding kinds for the audit record (never values).
pub(crate) fn finding_labels(prefix: &str, s: &Findings) -> Vec<String> {
    let mut out: Vec<String> = s.pii.iter().map(|k| format!("{prefix}.pii.{k}")).collect();
    out.extend(s.secrets.iter().map(|k| format!("{prefix}.secrets.{k}")));
    out.extend(s.injection_signals.iter().map(|k| format!("{prefix}.injection.{k}")));
    if s.injection_score > 0 {
        out.push(format!("{prefix}.injection_score.{}", s.injection_score));
    }
    out
}

/// What the monitor contributes to a decision: the agent's risk and the
/// call's `context.monitor`.
#[derive(Default)]
pub(crate) struct MonitorView {
    pub(crate) risk: i64,
    pub(crate) facts: MonitorFacts,
}

impl From<&Assessment> for MonitorView {
    fn from(a: &Assessment) -> Self {
        Self {
            risk: i64::from(a.risk),
            facts: MonitorFacts {
                anomaly: i64::from(a.anomaly.score),
                learning: a.learning,
                calls_this_minute: a.calls_this_minute as i64,
                taint: a.taint.labels().into_iter().map(String::from).collect(),
            },
        }
    }
}

/// What a decision is about: a tool, or one resource or prompt of a server
/// (`tool` is then the server's grant, `SERVER/:resources` or
/// `SERVER/:prompts`, with the classification the configuration gives it).
#[derive(Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) tool: &'a Tool,
    pub(crate) kind: TargetKind,
    /// The tool's name, the resource's URI or the prompt's name.
    pub(crate) name: &'a str,
}

impl<'a> Subject<'a> {
    pub(crate) fn tool(tool: &'a Tool) -> Self {
        Self { tool, kind: TargetKind::Tool, name: &tool.tool.tool }
    }
}

/// The facts of one decision. `in_scope` is the token's scope and the
/// agent's registered tools; a front door with its own grant (the egress
/// allowlist) overrides it.
pub(crate) fn facts(auth: &Authenticated, subject: Subject<'_>, args: &Value, ask: Ask<'_>, now: i64, mon: &MonitorView) -> CallFacts {
    let tool = subject.tool;
    let (mut relayed, mut asks_for_credentials) = (None, false);
    let (listing, result, findings) = match ask {
        Ask::Listing => (true, false, Findings::default()),
        Ask::Call(f) => (false, false, f.clone()),
        Ask::Result(f) => (false, true, f.clone()),
        Ask::Relay { findings, method, asks_for_credentials: asks } => {
            (relayed, asks_for_credentials) = (Some(method.to_string()), asks);
            (false, false, findings.clone())
        }
    };
    CallFacts {
        agent: auth.agent_facts(mon.risk),
        tool: ToolFacts {
            kind: subject.kind,
            server: tool.tool.server.clone(),
            name: subject.name.to_string(),
            sensitivity: tool.sensitivity.as_str().into(),
            sensitivity_level: tool.sensitivity.level(),
            action_class: tool.action_class.as_str().into(),
            exfil_capable: tool.exfil_capable,
            untrusted_content: tool.untrusted_content,
        },
        request: RequestFacts {
            task: auth.claims.task.clone(),
            in_scope: auth.grants(&tool.tool),
            delegation_depth: auth.claims.delegation().len() as i64 - 1,
            token_binding: auth.binding.as_str().into(),
            human: auth.claims.human().unwrap_or_default().into(),
            now,
            args: args.clone(),
            listing,
            findings,
            result,
            monitor: mon.facts.clone(),
            relayed,
            asks_for_credentials,
        },
    }
}

/// Whether an elicitation asks the user for a credential: its message or a
/// requested field (name, title, description) speaks of a password, a
/// token, a key or a one-time code, or a field is marked as a password.
pub(crate) fn asks_for_credentials(params: &Value) -> bool {
    const WORDS: &[&str] = &[
        "password",
        "passphrase",
        "passcode",
        "secret",
        "token",
        "api key",
        "apikey",
        "api_key",
        "credential",
        "private key",
        "ssh key",
        "one-time",
        "otp",
        "2fa",
        "mfa",
        "pin code",
        "security code",
        "recovery code",
    ];
    let speaks = |t: &str| {
        let t = t.to_lowercase();
        WORDS.iter().any(|w| t.contains(w))
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).is_some_and(speaks);
    let fields = params.pointer("/requestedSchema/properties").and_then(Value::as_object);
    text(params, "message")
        || fields.is_some_and(|f| {
            f.iter().any(|(name, field)| {
                speaks(name) || text(field, "title") || text(field, "description") || field.get("format").and_then(Value::as_str) == Some("password")
            })
        })
}

/// The monitor's view of a call.
pub(crate) fn monitor_call<'a>(auth: &'a Authenticated, tool: &'a Tool, args: &Value, arg_bytes: usize, now_ms: i64) -> warden_monitor::Call<'a> {
    warden_monitor::Call {
        agent: auth.claims.agent(),
        agent_name: auth.agent.id.name(),
        lineage_root: auth.claims.lineage_root(),
        task: &auth.claims.task,
        tool: &tool.tool,
        sensitivity_level: tool.sensitivity.level(),
        exfil_capable: tool.exfil_capable,
        financial: tool.action_class == ActionClass::Financial,
        // A number or a numeric string, as policy reads it; anything else
        // (text, non-finite) is NaN, which an amount cap refuses, as it
        // refuses a negative amount.
        amount: warden_policy::amount_of(args).map(|a| a.unwrap_or(0.0)).unwrap_or(f64::NAN),
        arg_bytes,
        now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn an_elicitation_of_a_credential_is_recognised_and_an_ordinary_one_is_not() {
        let ask = |message: &str, fields: Value| {
            asks_for_credentials(&serde_json::json!({ "message": message, "requestedSchema": { "type": "object", "properties": fields } }))
        };
        assert!(ask("Please enter your GitHub token to continue", serde_json::json!({ "value": { "type": "string" } })));
        assert!(ask("Sign in", serde_json::json!({ "user": { "type": "string" }, "pass": { "type": "string", "format": "password" } })));
        assert!(ask("Confirm", serde_json::json!({ "code": { "type": "string", "description": "The 6-digit one-time code from your app" } })));
        assert!(ask("Connect the CRM", serde_json::json!({ "apiKey": { "type": "string" } })));
        assert!(!ask("Which plan should the new customer get?", serde_json::json!({ "plan": { "type": "string", "enum": ["team", "starter"] } })));
        assert!(!ask("Confirm the transfer", serde_json::json!({ "confirm": { "type": "boolean" } })));
    }

    #[test]
    fn finding_labels_name_kinds_never_values() {
        let f = Findings {
            pii: BTreeSet::from(["email".to_string()]),
            pii_count: 2,
            secrets: BTreeSet::from(["aws_access_key".to_string()]),
            secret_count: 1,
            injection_signals: BTreeSet::from(["instruction_override".to_string()]),
            injection_score: 70,
        };
        assert_eq!(
            finding_labels("args", &f),
            ["args.pii.email", "args.secrets.aws_access_key", "args.injection.instruction_override", "args.injection_score.70"]
        );
        assert!(finding_labels("result", &Findings::default()).is_empty(), "nothing found, nothing labelled");
    }
}
