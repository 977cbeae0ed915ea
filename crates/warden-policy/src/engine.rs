use crate::derive::ArgFacts;
use crate::prepared::{ANY_ACTION, Action, Actions, Candidates, Names, Prepared, PreparedCache};
use crate::{CallFacts, PolicyError, RequestFacts};
use cedar_policy::{
    ActionConstraint, Authorizer, Context, Effect, Entities, EntityUid, PolicyId, PolicySet, PrincipalConstraint, Request, ResourceConstraint,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use parking_lot::RwLock;
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use warden_core::{Decision, Obligation, TargetKind};

/// One policy file's text and a name for messages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

/// A whole bundle as text (schema and policy files): what `warden policy
/// push` stores for every gateway replica to load.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSources {
    pub schema: PolicySource,
    pub files: Vec<PolicySource>,
}

impl BundleSources {
    /// Parse and validate.
    pub fn load(&self) -> Result<PolicyBundle, PolicyError> {
        PolicyBundle::load(&self.schema, &self.files)
    }
}

#[derive(Debug, Clone)]
struct PolicyMeta {
    effect: Effect,
    reason: Option<String>,
    /// A forbid that an approval can lift (`@approval("...")`).
    approval: Option<String>,
    /// Distinct approvers it needs (`@approvers("2")`: two-person rule).
    approvers: u8,
    /// Obligations a permit attaches (`@redact("pii:mask, secrets:hash")`).
    redact: Vec<Obligation>,
    /// A forbid whose match is a critical violation (`@critical`): the
    /// enforcement point contains the agent at once.
    critical: bool,
}

/// A policy's scope as far as it can rule the policy out for a request:
/// `Eq` needs that exact entity, `In` that entity or one of its parents
/// (an agent's owner, a tool's server); anything else is left to Cedar.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Any,
    Eq(EntityUid),
    In(EntityUid),
}

impl Scope {
    fn admits(&self, entity: &EntityUid, parent: &EntityUid) -> bool {
        match self {
            Scope::Any => true,
            Scope::Eq(u) => u == entity,
            Scope::In(u) => u == entity || u == parent,
        }
    }
}

/// Distinct candidate sets kept; the cache is dropped when it grows past this.
const CANDIDATE_CACHE: usize = 4096;

/// A validated set of policies with its schema, ready to decide requests.
pub struct PolicyBundle {
    schema: Schema,
    policies: PolicySet,
    meta: HashMap<PolicyId, PolicyMeta>,
    /// Every policy with its principal, action and resource scope, in a
    /// fixed order.
    index: Vec<Indexed>,
    /// Candidate sets by the indices of their policies: Cedar evaluates every
    /// policy it is given, so evaluating only those whose scope can match a
    /// request keeps the cost independent of how many per-agent and per-tool
    /// policies exist. Read-mostly: every call after the first of its
    /// shape is a hit under a shared lock.
    candidates: RwLock<HashMap<Vec<u32>, Arc<Candidates>>>,
    /// Entities and candidate sets per agent and target, built once.
    prepared: PreparedCache,
    authorizer: Authorizer,
    names: Names,
}

/// One policy's scope as far as it can rule the policy out for a request.
struct Indexed {
    id: PolicyId,
    principal: Scope,
    actions: Actions,
    resource: Scope,
}

impl std::fmt::Debug for PolicyBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PolicyBundle({} policies)", self.meta.len())
    }
}

/// Deepest argument nesting turned into Cedar records; deeper values are
/// passed as their JSON text.
const MAX_ARG_DEPTH: usize = 8;

impl PolicyBundle {
    /// Parse the schema and every policy file, give each policy its `@id`
    /// (or `FILE#N`), and validate the whole set strictly against the schema.
    pub fn load(schema: &PolicySource, files: &[PolicySource]) -> Result<Self, PolicyError> {
        let (schema_v, _warnings) =
            Schema::from_cedarschema_str(&schema.text).map_err(|e| PolicyError::Schema { file: schema.name.clone(), message: render(&e) })?;
        let mut policies = PolicySet::new();
        let mut meta = HashMap::new();
        for file in files {
            let set = PolicySet::from_str(&file.text).map_err(|e| PolicyError::Parse { file: file.name.clone(), message: render(&e) })?;
            for (n, p) in set.policies().enumerate() {
                let id = PolicyId::new(p.annotation("id").map(str::to_string).unwrap_or_else(|| format!("{}#{n}", file.name)));
                if meta.contains_key(&id) {
                    return Err(PolicyError::DuplicateId { id: id.to_string(), file: file.name.clone() });
                }
                let redact = match p.annotation("redact") {
                    Some(r) => Obligation::parse_redactions(r).map_err(|e| PolicyError::Redact { id: id.to_string(), message: e.to_string() })?,
                    None => Vec::new(),
                };
                let approvers = match p.annotation("approvers") {
                    None => 1,
                    Some("1") => 1,
                    Some("2") => 2,
                    Some(other) => {
                        return Err(PolicyError::Annotation { id: id.to_string(), message: format!("@approvers must be \"1\" or \"2\", not {other:?}") });
                    }
                };
                if p.annotation("approvers").is_some() && p.annotation("approval").is_none() {
                    return Err(PolicyError::Annotation { id: id.to_string(), message: "@approvers goes with @approval on a forbid".into() });
                }
                let m = PolicyMeta {
                    effect: p.effect(),
                    reason: p.annotation("reason").map(str::to_string),
                    approval: p.annotation("approval").map(str::to_string),
                    approvers,
                    redact,
                    critical: p.annotation("critical").is_some(),
                };
                if m.effect == Effect::Permit && (m.reason.is_some() || m.approval.is_some() || m.critical) {
                    return Err(PolicyError::Annotation {
                        id: id.to_string(),
                        message: "@approval, @reason and @critical annotations only make sense on forbid policies".into(),
                    });
                }
                if m.effect == Effect::Forbid && !m.redact.is_empty() {
                    return Err(PolicyError::Redact { id: id.to_string(), message: "@redact belongs on a permit (an obligation of allowing)".into() });
                }
                policies.add(p.new_id(id.clone())).map_err(|e| PolicyError::Parse { file: file.name.clone(), message: e.to_string() })?;
                meta.insert(id, m);
            }
        }
        let result = Validator::new(schema_v.clone()).validate(&policies, ValidationMode::Strict);
        if !result.validation_passed() {
            let msgs: Vec<String> = result.validation_errors().map(|e| format!("  - {}", render(e))).collect();
            return Err(PolicyError::Validation(msgs.join("\n")));
        }
        let names = Names::new();
        let index = policies
            .policies()
            .map(|p| {
                let principal = match p.principal_constraint() {
                    PrincipalConstraint::Eq(u) => Scope::Eq(u),
                    PrincipalConstraint::In(u) | PrincipalConstraint::IsIn(_, u) => Scope::In(u),
                    PrincipalConstraint::Any | PrincipalConstraint::Is(_) => Scope::Any,
                };
                let resource = match p.resource_constraint() {
                    ResourceConstraint::Eq(u) => Scope::Eq(u),
                    ResourceConstraint::In(u) | ResourceConstraint::IsIn(_, u) => Scope::In(u),
                    ResourceConstraint::Any | ResourceConstraint::Is(_) => Scope::Any,
                };
                // The request's entities carry no action hierarchy, so
                // `action in [A, B]` is `A` or `B` (an unknown uid admits all).
                let actions = match p.action_constraint() {
                    ActionConstraint::Any => ANY_ACTION,
                    ActionConstraint::Eq(u) => names.named(&u),
                    ActionConstraint::In(us) => us.iter().fold(0, |set, u| set | names.named(u)),
                };
                Indexed { id: p.id().clone(), principal, actions, resource }
            })
            .collect();
        Ok(Self {
            schema: schema_v,
            policies,
            meta,
            index,
            candidates: RwLock::new(HashMap::new()),
            prepared: PreparedCache::default(),
            authorizer: Authorizer::new(),
            names,
        })
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Distinct approvers a held call needs: the most any of `policies` asks.
    pub fn approvers_required(&self, policies: &[String]) -> u8 {
        policies.iter().filter_map(|p| self.meta.get(&PolicyId::new(p))).map(|m| m.approvers).max().unwrap_or(1)
    }

    /// Whether a policy is marked `@critical`.
    pub fn is_critical(&self, id: &str) -> bool {
        self.meta.get(&PolicyId::new(id)).is_some_and(|m| m.critical)
    }

    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.meta.keys().map(ToString::to_string).collect();
        ids.sort();
        ids
    }

    /// Decide one call. Default deny; a forbid wins over any permit; a forbid
    /// policy that fails to evaluate (e.g. an argument of the wrong type)
    /// denies rather than being skipped.
    pub fn decide(&self, facts: &CallFacts) -> Decision {
        let cannot = |e: String| Decision::deny(format!("could not build the policy request: {e}"));
        let prepared = match self.prepared.get_or_prepare(&self.names, &facts.agent, &facts.tool) {
            Ok(p) => p,
            Err(e) => return cannot(e),
        };
        let action = action_for(facts);
        let sets = prepared.candidates(action, || self.select(&prepared, action));
        // Nothing to evaluate (e.g. no result-time policy for this target):
        // Cedar would deny by default, so the context is not even built.
        if sets.is_empty() {
            return default_deny();
        }
        let request = match self.context(&facts.request).and_then(|c| {
            Request::new(prepared.principal.clone(), self.names.action(action).clone(), prepared.resource.clone(), c, None).map_err(|x| x.to_string())
        }) {
            Ok(r) => r,
            Err(e) => return cannot(e),
        };
        let entities = &prepared.entities;
        // The set without approval forbids decides allow/deny; the approval
        // forbids, evaluated on their own, tell whether a human must agree.
        // Together that is one evaluation of every candidate policy.
        let main = self.authorizer.is_authorized(&request, &sets.relaxed, entities);
        let approvals = sets.approvals.as_ref().map(|a| self.authorizer.is_authorized(&request, a, entities));
        let responses = std::iter::once(&main).chain(approvals.as_ref());
        let mut erroring_forbids: Vec<String> = responses
            .clone()
            .flat_map(|r| r.diagnostics().errors())
            .map(|cedar_policy::AuthorizationError::PolicyEvaluationError(e)| e.policy_id().clone())
            .filter(|id| self.meta.get(id).is_some_and(|m| m.effect == Effect::Forbid))
            .map(|id| id.to_string())
            .collect();
        if !erroring_forbids.is_empty() {
            erroring_forbids.sort();
            return Decision::Deny {
                reason: format!("forbid policy could not be evaluated (failing closed): {}", erroring_forbids.join(", ")),
                policies: erroring_forbids,
            };
        }
        let mut forbids: Vec<(&PolicyId, &PolicyMeta)> = responses
            .flat_map(|r| r.diagnostics().reason())
            .filter_map(|id| self.meta.get(id).map(|m| (id, m)))
            .filter(|(_, m)| m.effect == Effect::Forbid)
            .collect();
        forbids.sort_by_key(|(id, _)| *id);
        let permitted = main.decision() == cedar_policy::Decision::Allow;
        if forbids.is_empty() {
            if !permitted {
                return default_deny();
            }
            let mut ids: Vec<String> = main.diagnostics().reason().map(ToString::to_string).collect();
            ids.sort();
            return Decision::Allow { policies: ids, obligations: self.obligations(&main) };
        }
        let ids: Vec<String> = forbids.iter().map(|(id, _)| id.to_string()).collect();
        let reason = forbids
            .iter()
            .map(|(id, m)| match m.reason.as_ref().or(m.approval.as_ref()) {
                Some(r) => format!("{r} [{id}]"),
                None => format!("forbidden by {id}"),
            })
            .collect::<Vec<_>>()
            .join("; ");
        // Only approval forbids stand in the way of a permitted call: a human
        // may lift them.
        if permitted {
            return Decision::NeedsApproval { policies: ids, reason, obligations: self.obligations(&main) };
        }
        Decision::Deny { policies: ids, reason }
    }

    /// Every satisfied permit's obligations, once each.
    fn obligations(&self, r: &cedar_policy::Response) -> Vec<Obligation> {
        let mut out: Vec<Obligation> = Vec::new();
        for id in r.diagnostics().reason() {
            for o in self.meta.get(id).map(|m| m.redact.as_slice()).unwrap_or_default() {
                if !out.contains(o) {
                    out.push(o.clone());
                }
            }
        }
        out
    }

    /// The policies whose scope admits this principal, action and resource.
    fn select(&self, p: &Prepared, action: Action) -> Arc<Candidates> {
        let key: Vec<u32> = self
            .index
            .iter()
            .enumerate()
            .filter(|(_, x)| x.actions & action.bit() != 0 && x.principal.admits(&p.principal, &p.owner) && x.resource.admits(&p.resource, &p.server))
            .map(|(i, _)| i as u32)
            .collect();
        if let Some(c) = self.candidates.read().get(&key) {
            return c.clone();
        }
        // Built outside the lock: two callers missing at once build the same
        // set twice, and the second insert replaces an equal value.
        let (mut relaxed, mut approvals) = (PolicySet::new(), PolicySet::new());
        for &i in &key {
            let id = &self.index[i as usize].id;
            let p = self.policies.policy(id).expect("indexed policy").clone();
            let set = if self.meta[id].approval.is_some() { &mut approvals } else { &mut relaxed };
            set.add(p).expect("ids are unique");
        }
        let approvals = (!approvals.is_empty()).then_some(approvals);
        let c = Arc::new(Candidates { relaxed, approvals });
        let mut cache = self.candidates.write();
        if cache.len() >= CANDIDATE_CACHE {
            cache.clear();
        }
        cache.insert(key, c.clone());
        c
    }

    /// The one part of a request built per call.
    fn context(&self, r: &RequestFacts) -> Result<Context, String> {
        let e = |x: cedar_policy::ExpressionConstructionError| x.to_string();
        let s = |v: &str| RestrictedExpression::new_string(v.to_string());
        Context::from_pairs([
            ("task".to_string(), s(&r.task)),
            ("in_scope".to_string(), RestrictedExpression::new_bool(r.in_scope)),
            ("delegation_depth".to_string(), RestrictedExpression::new_long(r.delegation_depth)),
            ("token_binding".to_string(), s(&r.token_binding)),
            ("human".to_string(), s(&r.human)),
            ("now".to_string(), RestrictedExpression::new_long(r.now)),
            ("hour".to_string(), RestrictedExpression::new_long(r.hour())),
            ("weekday".to_string(), RestrictedExpression::new_long(r.weekday())),
            ("listing".to_string(), RestrictedExpression::new_bool(r.listing)),
            ("relayed".to_string(), s(r.relayed.as_deref().unwrap_or_default())),
            ("asks_for_credentials".to_string(), RestrictedExpression::new_bool(r.asks_for_credentials)),
            ("args".to_string(), json_to_cedar(&r.args, 0).map_err(e)?.unwrap_or(RestrictedExpression::new_record([]).map_err(e)?)),
            ("findings".to_string(), findings_record(&r.findings).map_err(e)?),
            ("monitor".to_string(), monitor_record(&r.monitor).map_err(e)?),
            ("facts".to_string(), derived_record(&ArgFacts::of(&r.args)).map_err(e)?),
        ])
        .map_err(|x| x.to_string())
    }

    /// Check that entities and context built for `facts` conform to the schema
    /// (used by tests and `policy validate`; live requests skip it for speed).
    pub fn check_facts(&self, facts: &CallFacts) -> Result<(), PolicyError> {
        let p = self.names.prepare(&facts.agent, &facts.tool).map_err(PolicyError::Request)?;
        Entities::from_entities(p.entities.iter().cloned(), Some(&self.schema)).map_err(|e| PolicyError::Request(render(&e)))?;
        let ctx = self.context(&facts.request).map_err(PolicyError::Request)?;
        Request::new(p.principal, self.names.action(action_for(facts)).clone(), p.resource, ctx, Some(&self.schema))
            .map_err(|e| PolicyError::Request(render(&e)))?;
        Ok(())
    }
}

fn action_for(f: &CallFacts) -> Action {
    match f.tool.kind {
        _ if f.request.relayed.is_some() => Action::RelayRequest,
        _ if f.request.result => Action::ReceiveResult,
        TargetKind::Tool => Action::CallTool,
        TargetKind::Resource => Action::ReadResource,
        TargetKind::Prompt => Action::GetPrompt,
    }
}

fn default_deny() -> Decision {
    Decision::Deny { policies: vec![], reason: "no policy permits this call (default deny)".into() }
}

fn findings_record(f: &crate::Findings) -> Result<RestrictedExpression, cedar_policy::ExpressionConstructionError> {
    let set = |s: &std::collections::BTreeSet<String>| RestrictedExpression::new_set(s.iter().map(|x| RestrictedExpression::new_string(x.clone())));
    RestrictedExpression::new_record([
        ("pii".to_string(), set(&f.pii)),
        ("pii_count".to_string(), RestrictedExpression::new_long(f.pii_count)),
        ("secrets".to_string(), set(&f.secrets)),
        ("secret_count".to_string(), RestrictedExpression::new_long(f.secret_count)),
        ("injection_score".to_string(), RestrictedExpression::new_long(f.injection_score)),
        ("injection_signals".to_string(), set(&f.injection_signals)),
    ])
}

fn monitor_record(m: &crate::MonitorFacts) -> Result<RestrictedExpression, cedar_policy::ExpressionConstructionError> {
    RestrictedExpression::new_record([
        ("anomaly".to_string(), RestrictedExpression::new_long(m.anomaly)),
        ("learning".to_string(), RestrictedExpression::new_bool(m.learning)),
        ("calls_this_minute".to_string(), RestrictedExpression::new_long(m.calls_this_minute)),
        ("taint".to_string(), RestrictedExpression::new_set(m.taint.iter().map(|x| RestrictedExpression::new_string(x.clone())))),
    ])
}

fn derived_record(f: &ArgFacts) -> Result<RestrictedExpression, cedar_policy::ExpressionConstructionError> {
    let set = |s: &std::collections::BTreeSet<String>| RestrictedExpression::new_set(s.iter().map(|x| RestrictedExpression::new_string(x.clone())));
    let b = RestrictedExpression::new_bool;
    let mut fields = vec![
        ("recipients".to_string(), set(&f.recipients)),
        ("recipient_domains".to_string(), set(&f.recipient_domains)),
        ("recipients_unparsable".to_string(), b(f.recipients_unparsable)),
        ("paths".to_string(), set(&f.paths)),
        ("path_dirs".to_string(), set(&f.path_dirs)),
        ("paths_escape_root".to_string(), b(f.paths_escape_root)),
        ("paths_unparsable".to_string(), b(f.paths_unparsable)),
        ("urls".to_string(), set(&f.urls)),
        ("url_hosts".to_string(), set(&f.url_hosts)),
        ("urls_unparsable".to_string(), b(f.urls_unparsable)),
        ("amount_invalid".to_string(), b(f.amount_invalid)),
    ];
    fields.extend(f.amount.map(|a| ("amount".to_string(), RestrictedExpression::new_long(a))));
    RestrictedExpression::new_record(fields)
}

/// Arguments become a Cedar record: strings, integers, booleans, sets and
/// records map directly; a non-integral number becomes its decimal text so a
/// numeric comparison on it errors (and forbids fail closed) instead of
/// silently not matching; `null` is dropped.
fn json_to_cedar(v: &Value, depth: usize) -> Result<Option<RestrictedExpression>, cedar_policy::ExpressionConstructionError> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_string(n.to_string()),
        },
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        _ if depth >= MAX_ARG_DEPTH => RestrictedExpression::new_string(v.to_string()),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.extend(json_to_cedar(i, depth + 1)?);
            }
            RestrictedExpression::new_set(out)
        }
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            for (k, v) in map {
                if let Some(x) = json_to_cedar(v, depth + 1)? {
                    fields.push((k.clone(), x));
                }
            }
            RestrictedExpression::new_record(fields)?
        }
    }))
}

fn render(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{AgentFacts, RequestFacts, ToolFacts};
    use serde_json::json;

    pub(crate) const SCHEMA: &str = include_str!("../../../policies/schema.cedarschema");

    fn bundle(text: &str) -> Result<PolicyBundle, PolicyError> {
        PolicyBundle::load(&PolicySource { name: "schema".into(), text: SCHEMA.into() }, &[PolicySource { name: "p.cedar".into(), text: text.into() }])
    }

    fn facts(tool: &str, args: Value) -> CallFacts {
        CallFacts {
            agent: AgentFacts { id: "spiffe://td/agent/a".into(), name: "a".into(), owner: "alice".into(), purpose: "".into(), autonomy: 1, risk_score: 0 },
            tool: ToolFacts {
                kind: TargetKind::Tool,
                server: "pay".into(),
                name: tool.into(),
                sensitivity: "high".into(),
                sensitivity_level: 3,
                action_class: "financial".into(),
                exfil_capable: false,
                untrusted_content: false,
            },
            request: RequestFacts { task: "t".into(), in_scope: true, delegation_depth: 0, now: 1_795_444_200, args, ..Default::default() },
        }
    }

    const POLICIES: &str = r#"
        @id("scoped-permit")
        permit(principal, action == Warden::Action::"call_tool", resource) when { context.in_scope };
        @id("big-payments") @approval("payments over 1000 need approval")
        forbid(principal, action, resource) when { resource.action_class == "financial" && context.args has amount && context.args.amount > 1000 };
        @id("no-wire") @reason("wire transfers are disabled")
        forbid(principal, action, resource == Warden::Tool::"pay/wire");
    "#;

    #[test]
    fn default_deny_permit_forbid_and_approval() {
        let b = bundle(POLICIES).unwrap();
        assert_eq!(b.len(), 3);
        let d = b.decide(&facts("transfer", json!({"amount": 10})));
        assert_eq!(d, Decision::Allow { policies: vec!["scoped-permit".into()], obligations: vec![] });
        let d = b.decide(&facts("transfer", json!({"amount": 5000})));
        assert!(matches!(d, Decision::NeedsApproval { .. }), "{d:?}");
        let d = b.decide(&facts("wire", json!({})));
        assert!(matches!(&d, Decision::Deny { reason, .. } if reason.contains("wire transfers are disabled")), "{d:?}");
        let mut f = facts("transfer", json!({}));
        f.request.in_scope = false;
        assert!(matches!(b.decide(&f), Decision::Deny { policies, .. } if policies.is_empty()));
    }

    #[test]
    fn wrong_argument_type_fails_closed() {
        let b = bundle(POLICIES).unwrap();
        for amount in [json!("5000"), json!(5000.5)] {
            let d = b.decide(&facts("transfer", json!({ "amount": amount })));
            assert!(matches!(&d, Decision::Deny { policies, .. } if policies == &vec!["big-payments".to_string()]), "{d:?}");
        }
    }

    #[test]
    fn validation_and_annotation_errors_are_reported() {
        assert!(matches!(bundle("permit(principal, action, resource) when { resource.nope == 1 };"), Err(PolicyError::Validation(_))));
        assert!(matches!(bundle("permit(principal, action, resource"), Err(PolicyError::Parse { .. })));
        assert!(matches!(bundle("@reason(\"x\") permit(principal, action, resource);"), Err(PolicyError::Annotation { .. })));
        assert!(matches!(bundle("@critical permit(principal, action, resource);"), Err(PolicyError::Annotation { .. })));
        let b = bundle("@id(\"c\") @critical forbid(principal, action, resource); @id(\"n\") forbid(principal, action, resource);").unwrap();
        assert!(b.is_critical("c") && !b.is_critical("n") && !b.is_critical("nope"));
        let b = bundle("@id(\"two\") @approval(\"x\") @approvers(\"2\") forbid(principal, action, resource); @id(\"one\") @approval(\"y\") forbid(principal, action, resource);")
            .unwrap();
        assert_eq!(b.approvers_required(&["one".into()]), 1);
        assert_eq!(b.approvers_required(&["one".into(), "two".into()]), 2);
        assert!(matches!(bundle("@approval(\"x\") @approvers(\"3\") forbid(principal, action, resource);"), Err(PolicyError::Annotation { .. })));
        assert!(matches!(bundle("@approvers(\"2\") forbid(principal, action, resource);"), Err(PolicyError::Annotation { .. })));
        let dup = "@id(\"a\") permit(principal, action, resource); @id(\"a\") permit(principal, action, resource);";
        assert!(matches!(bundle(dup), Err(PolicyError::DuplicateId { .. })));
    }

    #[test]
    fn redact_obligations_and_result_decisions() {
        let b = bundle(
            r#"
            @id("results") @redact("secrets:mask, email:token")
            permit(principal, action == Warden::Action::"receive_result", resource);
            @id("injected") @reason("result carries an injection")
            forbid(principal, action == Warden::Action::"receive_result", resource) when { context.findings.injection_score >= 50 };
            @id("calls") permit(principal, action == Warden::Action::"call_tool", resource);
        "#,
        )
        .unwrap();
        let mut f = facts("transfer", json!({}));
        assert_eq!(b.decide(&f), Decision::Allow { policies: vec!["calls".into()], obligations: vec![] });
        f.request.result = true;
        let d = b.decide(&f);
        let want =
            vec![Obligation::Redact { class: "secrets".into(), method: "mask".into() }, Obligation::Redact { class: "email".into(), method: "token".into() }];
        assert_eq!(d, Decision::Allow { policies: vec!["results".into()], obligations: want });
        f.request.findings.injection_score = 80;
        assert!(matches!(b.decide(&f), Decision::Deny { policies, .. } if policies == vec!["injected".to_string()]));
        b.check_facts(&f).unwrap();
        for bad in [
            r#"@redact("pii") permit(principal, action, resource);"#,
            r#"@redact("pii:erase") permit(principal, action, resource);"#,
            r#"@redact("pii:mask") forbid(principal, action, resource);"#,
        ] {
            assert!(matches!(bundle(bad), Err(PolicyError::Redact { .. })), "{bad}");
        }
    }

    #[test]
    fn a_changed_agent_or_tool_is_decided_afresh_by_the_same_bundle() {
        let b = bundle(
            r#"
            @id("autonomous") permit(principal, action == Warden::Action::"call_tool", resource) when { principal.autonomy >= 2 };
            @id("no-money") forbid(principal, action, resource) when { resource.action_class == "financial" };
            @id("not-mallory") forbid(principal in Warden::Owner::"mallory", action, resource);
            @id("not-vault") forbid(principal, action, resource in Warden::Server::"vault");
        "#,
        )
        .unwrap();
        let mut f = facts("transfer", json!({}));
        f.tool.action_class = "read".into();
        f.agent.autonomy = 2;
        assert!(b.decide(&f).is_allow());
        // Each change below keeps the agent's id and the tool's name: what
        // the entities were built from must decide, not what they are called.
        let changes: [fn(&mut CallFacts); 4] =
            [|f| f.agent.autonomy = 1, |f| f.tool.action_class = "financial".into(), |f| f.agent.owner = "mallory".into(), |f| f.tool.server = "vault".into()];
        for change in changes {
            let mut changed = f.clone();
            change(&mut changed);
            assert!(!b.decide(&changed).is_allow(), "{changed:?}");
            assert!(b.decide(&f).is_allow(), "the unchanged facts are still allowed");
        }
    }

    #[test]
    fn a_result_is_denied_by_default_without_a_result_policy_and_a_forbid_on_results_applies() {
        let calls = r#"@id("calls") permit(principal, action == Warden::Action::"call_tool", resource);"#;
        let mut f = facts("transfer", json!({}));
        f.request.result = true;
        assert_eq!(bundle(calls).unwrap().decide(&f), default_deny(), "no policy can apply to the result");
        let results = format!(r#"{calls} @id("results") permit(principal, action == Warden::Action::"receive_result", resource);"#);
        assert!(bundle(&results).unwrap().decide(&f).is_allow());
        for forbid in [
            r#"forbid(principal, action == Warden::Action::"receive_result", resource);"#,
            r#"forbid(principal, action in [Warden::Action::"get_prompt", Warden::Action::"receive_result"], resource);"#,
            "forbid(principal, action, resource);",
        ] {
            let b = bundle(&format!(r#"{results} @id("f") {forbid}"#)).unwrap();
            assert!(matches!(b.decide(&f), Decision::Deny { policies, .. } if policies == ["f"]), "{forbid}");
            f.request.result = false;
            let on_calls = b.decide(&f);
            assert_eq!(on_calls.is_allow(), forbid.contains("receive_result"), "{forbid} on the call: {on_calls:?}");
            f.request.result = true;
        }
    }

    #[test]
    fn a_policy_can_require_a_signed_in_human() {
        let b = bundle(
            r#"
            permit(principal, action == Warden::Action::"call_tool", resource) when { context.in_scope };
            @id("financial-with-a-human") @reason("financial tools only while a human is signed in through the host")
            forbid(principal, action, resource) when { resource.action_class == "financial" && context.human == "" };
        "#,
        )
        .unwrap();
        let mut f = facts("transfer", json!({}));
        assert!(matches!(b.decide(&f), Decision::Deny { .. }), "no human: the agent's own credentials");
        f.request.human = "alice@example.com".into();
        assert!(matches!(b.decide(&f), Decision::Allow { .. }));
        b.check_facts(&f).unwrap();
    }

    #[test]
    fn built_facts_conform_to_schema() {
        let b = bundle(POLICIES).unwrap();
        let mut f = facts("transfer", json!({"amount": 3, "to": "x, a@b.test", "path": "/a/../b", "query": "https://h.test"}));
        f.request.monitor.taint.insert("untrusted".into());
        f.request.monitor.anomaly = 40;
        b.check_facts(&f).unwrap();
        // Without an amount `context.facts.amount` is absent, still valid.
        b.check_facts(&facts("transfer", json!({}))).unwrap();
    }

    #[test]
    fn resources_and_prompts_are_their_own_actions_and_entities() {
        let b = bundle(
            r#"
            @id("tools") permit(principal, action == Warden::Action::"call_tool", resource) when { context.in_scope };
            @id("public") permit(principal, action == Warden::Action::"read_resource", resource) when { resource.uri like "file:///public/*" };
            @id("prompts") permit(principal, action == Warden::Action::"get_prompt", resource);
            @id("no-x") forbid(principal, action, resource == Warden::Tool::"pay/x");
            @id("answers") permit(principal, action == Warden::Action::"receive_result", resource) when { resource.untrusted_content };
        "#,
        )
        .unwrap();
        let of = |kind, name: &str| {
            let mut f = facts(name, json!({}));
            f.tool.kind = kind;
            f
        };
        assert!(b.decide(&of(TargetKind::Tool, "y")).is_allow());
        assert!(!b.decide(&of(TargetKind::Tool, "x")).is_allow());
        assert!(!b.decide(&of(TargetKind::Resource, "y")).is_allow(), "call_tool permits do not grant resource reads");
        assert!(b.decide(&of(TargetKind::Resource, "file:///public/a.md")).is_allow());
        assert!(!b.decide(&of(TargetKind::Resource, "file:///private/a.md")).is_allow());
        // A forbid on the tool pay/x is not about a prompt of that name.
        assert!(b.decide(&of(TargetKind::Prompt, "x")).is_allow());
        let mut answer = of(TargetKind::Resource, "file:///public/a.md");
        answer.request.result = true;
        assert!(!b.decide(&answer).is_allow());
        answer.tool.untrusted_content = true;
        assert!(b.decide(&answer).is_allow(), "receive_result decides on resources too");
        for f in [&answer, &of(TargetKind::Prompt, "p")] {
            b.check_facts(f).unwrap();
        }
        let mut read = of(TargetKind::Resource, "file:///public/a.md");
        read.request.args = json!({ "uri": "file:///public/a.md" });
        b.check_facts(&read).unwrap();
    }
}
