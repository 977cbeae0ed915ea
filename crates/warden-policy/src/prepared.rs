//! What a decision needs of its agent and target that does not change from
//! call to call: their Cedar entities and uids, and per action the policies
//! that can apply. Only the context is built per request.
//!
//! Entries are kept per bundle (a policy change loads a new bundle, which
//! starts empty) and keyed by the complete facts the entities are built
//! from, so an entry is exactly what building anew would give: a registry
//! change that alters an agent or a tool (its autonomy, owner,
//! classification) or a new risk score is a different key, never a stale hit.

use crate::{AgentFacts, ToolFacts};
use cedar_policy::{Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, RestrictedExpression};
use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use warden_core::TargetKind;

/// The actions Warden asks Cedar about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    CallTool,
    ReadResource,
    GetPrompt,
    RelayRequest,
    ReceiveResult,
}

impl Action {
    pub(crate) const ALL: [Action; 5] = [Action::CallTool, Action::ReadResource, Action::GetPrompt, Action::RelayRequest, Action::ReceiveResult];

    fn name(self) -> &'static str {
        match self {
            Action::CallTool => "call_tool",
            Action::ReadResource => "read_resource",
            Action::GetPrompt => "get_prompt",
            Action::RelayRequest => "relay_request",
            Action::ReceiveResult => "receive_result",
        }
    }

    /// This action's bit in an [`Actions`] set.
    pub(crate) fn bit(self) -> Actions {
        1 << self as u8
    }
}

/// A set of actions, one bit each.
pub(crate) type Actions = u8;

/// Every action.
pub(crate) const ANY_ACTION: Actions = (1 << Action::ALL.len()) - 1;

/// The schema's names, parsed once per bundle.
pub(crate) struct Names {
    actions: [EntityUid; Action::ALL.len()],
    agent: EntityTypeName,
    tool: EntityTypeName,
    resource: EntityTypeName,
    prompt: EntityTypeName,
    owner: EntityTypeName,
    server: EntityTypeName,
}

impl Names {
    pub(crate) fn new() -> Self {
        let ty = |s: &str| EntityTypeName::from_str(s).expect("static type name");
        Self {
            actions: Action::ALL.map(|a| EntityUid::from_type_name_and_id(ty("Warden::Action"), EntityId::new(a.name()))),
            agent: ty("Warden::Agent"),
            tool: ty("Warden::Tool"),
            resource: ty("Warden::Resource"),
            prompt: ty("Warden::Prompt"),
            owner: ty("Warden::Owner"),
            server: ty("Warden::Server"),
        }
    }

    pub(crate) fn action(&self, a: Action) -> &EntityUid {
        &self.actions[a as usize]
    }

    /// The actions a policy's action scope names. An action Warden never
    /// asks about (or an action group) admits them all: Cedar decides.
    pub(crate) fn named(&self, uid: &EntityUid) -> Actions {
        Action::ALL.into_iter().find(|&a| self.action(a) == uid).map_or(ANY_ACTION, Action::bit)
    }

    /// Build the entities of an agent and a target: the agent in its owner,
    /// the tool, resource or prompt in its server.
    pub(crate) fn prepare(&self, agent: &AgentFacts, tool: &ToolFacts) -> Result<Prepared, String> {
        let e = |x: cedar_policy::EntityAttrEvaluationError| x.to_string();
        let owner = EntityUid::from_type_name_and_id(self.owner.clone(), EntityId::new(&agent.owner));
        let server = EntityUid::from_type_name_and_id(self.server.clone(), EntityId::new(&tool.server));
        let principal = EntityUid::from_type_name_and_id(self.agent.clone(), EntityId::new(&agent.id));
        let resource_type = match tool.kind {
            TargetKind::Tool => &self.tool,
            TargetKind::Resource => &self.resource,
            TargetKind::Prompt => &self.prompt,
        };
        let resource = EntityUid::from_type_name_and_id(resource_type.clone(), EntityId::new(format!("{}/{}", tool.server, tool.name)));
        let s = |v: &str| RestrictedExpression::new_string(v.to_string());
        let agent_entity = Entity::new(
            principal.clone(),
            HashMap::from([
                ("name".to_string(), s(&agent.name)),
                ("owner".to_string(), s(&agent.owner)),
                ("purpose".to_string(), s(&agent.purpose)),
                ("autonomy".to_string(), RestrictedExpression::new_long(agent.autonomy)),
                ("risk_score".to_string(), RestrictedExpression::new_long(agent.risk_score)),
            ]),
            HashSet::from([owner.clone()]),
        )
        .map_err(e)?;
        let mut attrs = HashMap::from([
            ("name".to_string(), s(&tool.name)),
            ("server".to_string(), s(&tool.server)),
            ("sensitivity".to_string(), s(&tool.sensitivity)),
            ("sensitivity_level".to_string(), RestrictedExpression::new_long(tool.sensitivity_level)),
            ("action_class".to_string(), s(&tool.action_class)),
            ("exfil_capable".to_string(), RestrictedExpression::new_bool(tool.exfil_capable)),
            ("untrusted_content".to_string(), RestrictedExpression::new_bool(tool.untrusted_content)),
        ]);
        if tool.kind == TargetKind::Resource {
            attrs.insert("uri".to_string(), s(&tool.name));
        }
        let tool_entity = Entity::new(resource.clone(), attrs, HashSet::from([server.clone()])).map_err(e)?;
        let entities = Entities::from_entities([agent_entity, tool_entity, Entity::with_uid(owner.clone()), Entity::with_uid(server.clone())], None)
            .map_err(|x| x.to_string())?;
        Ok(Prepared { entities, principal, owner, resource, server, candidates: Default::default() })
    }
}

/// The policies that can apply to one request, split into the approval
/// forbids (`@approval`) and all the others.
pub(crate) struct Candidates {
    pub(crate) relaxed: PolicySet,
    pub(crate) approvals: Option<PolicySet>,
}

impl Candidates {
    /// No policy can apply: the request is denied by default whatever its
    /// context, so there is nothing to evaluate.
    pub(crate) fn is_empty(&self) -> bool {
        self.approvals.is_none() && self.relaxed.is_empty()
    }
}

/// One agent's and one target's entities, and per action the candidate
/// policies, filled on first use.
pub(crate) struct Prepared {
    pub(crate) entities: Entities,
    pub(crate) principal: EntityUid,
    pub(crate) owner: EntityUid,
    pub(crate) resource: EntityUid,
    pub(crate) server: EntityUid,
    candidates: [OnceLock<Arc<Candidates>>; Action::ALL.len()],
}

impl Prepared {
    pub(crate) fn candidates(&self, action: Action, select: impl FnOnce() -> Arc<Candidates>) -> &Arc<Candidates> {
        self.candidates[action as usize].get_or_init(select)
    }
}

/// Entries kept; all are dropped when a new one would exceed this. An entry
/// takes about 8.5 KiB (10,000 took 85 MB in the decision bench), so the
/// cache stays under about 140 MB; it holds 10,000 active pairs.
const PREPARED_CACHE: usize = 16_384;

/// Prepared entities by agent, then by target. Read-mostly: every call
/// after an agent's first of a target is a hit under a shared lock.
#[derive(Default)]
pub(crate) struct PreparedCache {
    entries: RwLock<Entries>,
}

#[derive(Default)]
struct Entries {
    by_agent: HashMap<AgentFacts, HashMap<ToolFacts, Arc<Prepared>>>,
    len: usize,
}

impl PreparedCache {
    pub(crate) fn get_or_prepare(&self, names: &Names, agent: &AgentFacts, tool: &ToolFacts) -> Result<Arc<Prepared>, String> {
        if let Some(p) = self.entries.read().by_agent.get(agent).and_then(|t| t.get(tool)) {
            return Ok(p.clone());
        }
        // Built outside the lock: two callers missing at once build equal
        // entries, and the second insert replaces the first.
        let p = Arc::new(names.prepare(agent, tool)?);
        let mut e = self.entries.write();
        if e.len >= PREPARED_CACHE {
            *e = Entries::default();
        }
        if e.by_agent.entry(agent.clone()).or_default().insert(tool.clone(), p.clone()).is_none() {
            e.len += 1;
        }
        Ok(p)
    }
}
