//! The control plane on both store backends: what it refuses (nothing
//! stored, nothing recorded) and the audit record each action writes.

use super::*;
use warden_core::KillScope;
use warden_core::{AgentStatus, Approval, ApprovalStatus, Role, TokenBinding, sha256_hex};
use warden_identity::Keypair;
use warden_store::StoreError;

/// A standalone control plane on each backend, with the gateway key's
/// audit sink.
async fn planes(dir: &std::path::Path) -> Vec<ControlPlane> {
    warden_test_support::every_backend(dir)
        .await
        .into_iter()
        .map(|s| ControlPlane::standalone(s.clone(), AuditSink::start(s, Keypair::generate(), None), "td"))
        .collect()
}

fn api(name: &str, role: Role) -> (Operator, Actor) {
    let op = Operator { name: name.into(), role };
    let actor = Actor::operator(&op, Via::AdminApi);
    (op, actor)
}

/// The audit records written so far, as events.
async fn events(cp: &ControlPlane) -> Vec<AuditEvent> {
    cp.store().audit_records().await.unwrap().into_iter().map(|r| r.unwrap().event).collect()
}

async fn register(cp: &ControlPlane, actor: &Actor, name: &str, parent: Option<&str>) -> AgentId {
    let tools = ["crm/*".to_string()];
    let a = NewAgent { name, owner: "alice@example.com", purpose: "tests", tools: &tools, autonomy: 1, parent, token_binding: TokenBinding::Dpop };
    let valid = cp.check_registration(&a).await.unwrap();
    cp.register_agent(actor, valid, &Keypair::generate().public().into()).await.unwrap()
}

#[tokio::test]
async fn registrations_are_checked_before_a_key_is_made_and_recorded_with_owner_and_tools() {
    let dir = tempfile::tempdir().unwrap();
    for cp in planes(dir.path()).await {
        let me = Actor::local_user();
        let tools = ["crm/*".to_string()];
        let base =
            NewAgent { name: "bot", owner: "alice@example.com", purpose: "tests", tools: &tools, autonomy: 1, parent: None, token_binding: TokenBinding::Dpop };
        let refused = [
            NewAgent { owner: " ", ..base.clone() },
            NewAgent { name: "Bad Name", ..base.clone() },
            NewAgent { autonomy: 4, ..base.clone() },
            NewAgent { parent: Some("ghost"), ..base.clone() },
        ];
        let errors: Vec<ControlError> = refusals(refused.iter().map(|a| cp.check_registration(a))).await;
        assert!(matches!(errors[0], ControlError::OwnerAndPurposeRequired), "{}", errors[0]);
        assert!(matches!(errors[1], ControlError::Invalid(_)), "{}", errors[1]);
        assert!(errors[2].to_string().contains("autonomy level 4 is out of range"), "{}", errors[2]);
        assert_eq!(errors[3].to_string(), "the parent agent spiffe://td/agent/ghost was not found: register it first, or name a registered parent");
        assert!(events(&cp).await.is_empty(), "nothing recorded for a refused registration");

        let id = register(&cp, &me, "bot", None).await;
        let ev = events(&cp).await.pop().unwrap();
        assert_eq!((ev.kind, ev.action.as_deref(), ev.decision.as_str()), (Some(EventKind::AgentChanged), Some("agent:register"), "allow"));
        assert_eq!((ev.agent.as_deref(), ev.subject.as_deref()), (Some(id.as_str()), Some(me.subject())), "the CLI's records name the operator alone");
        assert_eq!(ev.reason.as_deref(), Some("owner alice@example.com, tools crm/*, EdDSA key, token binding dpop"));
        assert_eq!(register(&cp, &me, "sub", Some("bot")).await.as_str(), "spiffe://td/agent/sub", "a registered parent");
    }
}

#[tokio::test]
async fn a_token_binding_change_needs_a_reason_and_is_recorded_with_both_bindings() {
    let dir = tempfile::tempdir().unwrap();
    for cp in planes(dir.path()).await {
        let me = Actor::local_user();
        let id = register(&cp, &me, "bot", None).await;
        let e = cp.set_token_binding(&me, "bot", TokenBinding::Bearer, " ").await.unwrap_err();
        assert!(matches!(e, ControlError::ReasonRequired(Why::ChangeTokenBinding)), "{e}");
        cp.set_token_binding(&me, "bot", TokenBinding::Bearer, "its SDK cannot sign DPoP proofs").await.unwrap();
        assert_eq!(cp.agent("bot").await.unwrap().token_binding, TokenBinding::Bearer);
        let ev = events(&cp).await.pop().unwrap();
        assert_eq!((ev.action.as_deref(), ev.agent.as_deref()), (Some("agent:token-binding"), Some(id.as_str())));
        assert_eq!(ev.reason.as_deref(), Some("token binding dpop -> bearer: its SDK cannot sign DPoP proofs"));
    }
}

/// Refusals, in order (the futures run one after another).
async fn refusals<F, T>(futs: impl Iterator<Item = F>) -> Vec<ControlError>
where
    F: std::future::Future<Output = Result<T, ControlError>>,
{
    let mut out = Vec::new();
    for f in futs {
        match f.await {
            Ok(_) => panic!("accepted"),
            Err(e) => out.push(e),
        }
    }
    out
}

#[tokio::test]
async fn suspending_needs_a_reason_resuming_does_not_and_both_are_recorded_with_the_door() {
    let dir = tempfile::tempdir().unwrap();
    for cp in planes(dir.path()).await {
        let (_, ada) = api("ada", Role::Admin);
        let id = register(&cp, &Actor::local_user(), "bot", None).await;
        let before = events(&cp).await.len();
        let e = cp.set_agent_status(&ada, "bot", AgentStatus::Suspended, "  ").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "a non-empty reason is required to suspend an agent (`--reason`, or \"reason\" in the request body; it is recorded in the audit log)"
        );
        let e = cp.set_agent_status(&ada, "ghost", AgentStatus::Suspended, "x").await.unwrap_err();
        assert!(matches!(e, ControlError::Store(StoreError::NotFound(_))), "{e}");
        assert_eq!(cp.store().get_agent(&id).await.unwrap().status, AgentStatus::Active, "nothing changed");
        assert_eq!(events(&cp).await.len(), before, "nothing recorded");

        cp.set_agent_status(&ada, id.as_str(), AgentStatus::Suspended, " investigating ").await.unwrap();
        cp.set_agent_status(&ada, "bot", AgentStatus::Active, "").await.unwrap();
        let evs = events(&cp).await;
        let [suspended, resumed] = &evs[before..] else { panic!("two records: {evs:?}") };
        assert_eq!((suspended.action.as_deref(), suspended.reason.as_deref()), (Some("agent:suspended"), Some("investigating")));
        assert_eq!((resumed.action.as_deref(), resumed.reason.as_deref()), (Some("agent:active"), Some("resumed by an operator")));
        assert_eq!(suspended.subject.as_deref(), Some("operator:ada (admin api)"));
        assert_eq!(cp.store().get_agent(&id).await.unwrap().status, AgentStatus::Active);
    }
}

#[tokio::test]
async fn kill_switches_are_validated_alike_and_engaging_and_lifting_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    for cp in planes(dir.path()).await {
        let (_, ada) = api("ada", Role::Admin);
        register(&cp, &ada, "bot", None).await;
        let before = events(&cp).await.len();
        let refused = [
            cp.engage_kill(&ada, KillScope::Global, "", " ").await.unwrap_err(),
            cp.engage_kill(&ada, KillScope::Tool, "crm/*", "x").await.unwrap_err(),
            cp.engage_kill(&ada, KillScope::Owner, " ", "x").await.unwrap_err(),
            cp.engage_kill(&ada, KillScope::Server, "Bad Server", "x").await.unwrap_err(),
            cp.engage_kill(&ada, KillScope::Agent, "ghost", "x").await.unwrap_err(),
        ];
        assert!(matches!(refused[0], ControlError::ReasonRequired(Why::EngageKill)), "{}", refused[0]);
        assert!(refused[1].to_string().contains("`warden kill server crm`"), "{}", refused[1]);
        assert!(matches!(refused[2], ControlError::OwnerRequired), "{}", refused[2]);
        assert!(matches!(refused[3], ControlError::Invalid(_)), "{}", refused[3]);
        assert!(matches!(refused[4], ControlError::Store(StoreError::NotFound(_))), "{}", refused[4]);
        assert!(cp.store().active_kills().await.unwrap().is_empty() && events(&cp).await.len() == before, "nothing engaged or recorded");

        let k = cp.engage_kill(&ada, KillScope::Agent, "bot", " looping ").await.unwrap();
        assert_eq!((k.target.as_str(), k.reason.as_str(), k.by.as_str()), ("spiffe://td/agent/bot", "looping", "operator:ada"));
        let e = cp.engage_kill(&ada, KillScope::Agent, "bot", "again").await.unwrap_err();
        assert!(matches!(e, ControlError::Store(StoreError::Conflict(_))), "one switch per target: {e}");
        assert!(matches!(cp.lift_kill(&ada, k.id, "").await.unwrap_err(), ControlError::ReasonRequired(Why::LiftKill)));
        cp.lift_kill(&ada, k.id, "false alarm").await.unwrap();
        assert!(matches!(cp.lift_kill(&ada, k.id, "again").await.unwrap_err(), ControlError::Store(StoreError::NotFound(_))));

        let evs = events(&cp).await;
        let [engaged, lifted] = &evs[before..] else { panic!("two records: {evs:?}") };
        assert_eq!((engaged.kind, engaged.action.as_deref(), engaged.decision.as_str()), (Some(EventKind::Containment), Some("kill:agent"), "contain"));
        assert_eq!(engaged.subject.as_deref(), Some("operator:ada"), "a switch names who engaged it, as the gateway's record does");
        assert_eq!(engaged.reason.as_deref(), Some("agent spiffe://td/agent/bot is contained: looping"));
        assert_eq!((lifted.kind, lifted.action.as_deref()), (Some(EventKind::ContainmentLifted), Some("kill:lift:agent")));
        assert_eq!((lifted.subject.as_deref(), lifted.reason.as_deref()), (Some("operator:ada (admin api)"), Some("false alarm")));
    }
}

#[tokio::test]
async fn tools_are_classified_one_at_a_time_starting_pending_and_cautious() {
    let dir = tempfile::tempdir().unwrap();
    for cp in planes(dir.path()).await {
        let me = Actor::local_user();
        let class = Classification::parse("medium", "read", false, true).unwrap();
        assert!(Classification::parse("extreme", "read", false, false).is_err());
        let e = cp.classify_tool(&me, "crm/*", &class).await.unwrap_err();
        assert_eq!(e.to_string(), "classify one tool at a time (SERVER/TOOL), not crm/*");
        let t = cp.classify_tool(&me, "crm/lookup", &class).await.unwrap();
        assert_eq!((t.status, t.exfil_capable, t.untrusted_content), (warden_core::ToolStatus::Pending, false, true));
        let e = cp.approve_tool(&me, "crm/lookup", false).await.unwrap_err();
        assert!(matches!(e, ControlError::Store(_)), "nothing observed to pin yet: {e}");
        cp.disable_tool(&me, "crm/lookup").await.unwrap();
        let evs = events(&cp).await;
        let [set, disabled] = &evs[..] else { panic!("two records: {evs:?}") };
        assert_eq!((set.action.as_deref(), set.tool.as_deref()), (Some("tool:set"), Some("crm/lookup")));
        assert_eq!(set.reason.as_deref(), Some("medium / read / exfil=false / untrusted=true"));
        assert_eq!((disabled.action.as_deref(), disabled.reason.as_deref()), (Some("tool:disable"), Some("disabled by an operator")));
    }
}

fn held(id: &str) -> Approval {
    Approval {
        id: id.into(),
        agent: "spiffe://td/agent/bot".into(),
        owner: "alice@example.com".into(),
        task: "t".into(),
        tool: "bank/pay".parse().unwrap(),
        args_sha256: "ab".repeat(32),
        args_redacted: serde_json::json!({ "amount": 5000 }),
        args: None,
        reason: "payments above 1000".into(),
        policies: vec!["approval-payments".into()],
        risk: 0,
        required: 1,
        approvers: vec![],
        status: ApprovalStatus::Pending,
        decided_by: None,
        decision_reason: None,
        created_ms: warden_core::clock::now_ms(),
        expires_ms: warden_core::clock::now_ms() + 60_000,
    }
}

#[tokio::test]
async fn a_denial_needs_a_reason_and_each_decision_names_its_operator_and_door() {
    let dir = tempfile::tempdir().unwrap();
    for cp in planes(dir.path()).await {
        let (arno, _) = api("arno", Role::Approver);
        cp.store().insert_approval(&held("a1")).await.unwrap();
        cp.store().insert_approval(&held("a2")).await.unwrap();
        let e = cp.decide_approval(&arno, Via::AdminApi, "a1", false, "").await.unwrap_err();
        assert!(matches!(e, ControlError::ReasonRequired(Why::Deny)), "{e}");
        assert_eq!(cp.store().get_approval("a1").await.unwrap().status, ApprovalStatus::Pending, "nothing decided");
        assert!(events(&cp).await.is_empty());

        let a = cp.decide_approval(&arno, Via::Cli, "a1", true, "").await.unwrap();
        assert_eq!(a.status, ApprovalStatus::Approved);
        cp.decide_approval(&arno, Via::AdminApi, "a2", false, "unknown payee").await.unwrap();
        let evs = events(&cp).await;
        let [cli, api] = &evs[..] else { panic!("two records: {evs:?}") };
        assert_eq!((cli.action.as_deref(), cli.decision.as_str(), cli.subject.as_deref()), (Some("approval:approve"), "allow", Some("operator:arno")));
        assert_eq!((api.action.as_deref(), api.decision.as_str()), (Some("approval:deny"), "deny"));
        assert_eq!(api.subject.as_deref(), Some("operator:arno (admin api)"));
        assert_eq!(api.reason.as_deref(), Some("approval a2 denied: unknown payee"));
    }
}

#[tokio::test]
async fn operators_get_a_token_only_its_digest_is_stored_and_changes_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    for cp in planes(dir.path()).await {
        let me = Actor::local_user();
        assert!(matches!(cp.add_operator(&me, "vera", "root").await.unwrap_err(), ControlError::Invalid(_)));
        let (role, token) = cp.add_operator(&me, "vera", "viewer").await.unwrap();
        assert!(role == Role::Viewer && token.starts_with("wdn_") && token.len() == 68, "{token}");
        let found = cp.store().operator_by_token(&sha256_hex(token.as_bytes())).await.unwrap();
        assert_eq!(found, Some(Operator { name: "vera".into(), role: Role::Viewer }));
        assert!(cp.add_operator(&me, "vera", "admin").await.is_err(), "names are unique");
        cp.remove_operator(&me, "vera").await.unwrap();
        let evs = events(&cp).await;
        let reasons: Vec<_> = evs.iter().map(|e| (e.action.as_deref().unwrap(), e.reason.as_deref().unwrap())).collect();
        assert_eq!(reasons, [("operator:add", "operator vera added as viewer"), ("operator:remove", "operator vera removed")]);
        assert!(!format!("{evs:?}").contains(&token), "the token is never recorded");
    }
}

#[tokio::test]
async fn token_revocations_need_a_reason_and_name_what_they_revoke() {
    let dir = tempfile::tempdir().unwrap();
    for cp in planes(dir.path()).await {
        let me = Actor::local_user();
        register(&cp, &me, "bot", None).await;
        assert!(matches!(cp.revoke(&me, Revocation::Task("t1"), "").await.unwrap_err(), ControlError::ReasonRequired(Why::RevokeTokens)));
        assert!(matches!(cp.revoke(&me, Revocation::Agent("ghost"), "x").await.unwrap_err(), ControlError::Store(StoreError::NotFound(_))));
        assert_eq!(cp.revoke(&me, Revocation::Agent("bot"), "leaked").await.unwrap(), "spiffe://td/agent/bot");
        cp.revoke(&me, Revocation::Task("t1"), "done").await.unwrap();
        let evs = events(&cp).await;
        let [_, agent, task] = &evs[..] else { panic!("three records: {evs:?}") };
        assert_eq!(
            (agent.kind, agent.action.as_deref(), agent.agent.as_deref()),
            (Some(EventKind::Revocation), Some("token:revoke"), Some("spiffe://td/agent/bot"))
        );
        assert_eq!((task.task.as_deref(), task.reason.as_deref()), (Some("t1"), Some("done")));
    }
}

#[tokio::test]
async fn verification_reaches_the_newest_published_checkpoint_and_names_it_when_the_log_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let published = dir.path().join("published");
    let key = Keypair::generate();
    for (n, s) in warden_test_support::every_backend(dir.path()).await.into_iter().enumerate() {
        let _ = std::fs::remove_dir_all(&published);
        std::fs::create_dir(&published).unwrap();
        let cp = ControlPlane::standalone(s.clone(), AuditSink::start(s.clone(), key.clone(), None), "td");
        let me = Actor::local_user();
        let at = Publication { dir: &published, origin: "td/audit" };
        let v = verify_audit(&s, &key.public(), Some(at)).await.unwrap();
        assert_eq!(v.published, Published::NoneYet(published.clone()), "nothing published yet: the database alone vouches");
        for name in ["a", "b", "c"] {
            cp.add_operator(&me, name, "viewer").await.unwrap();
        }
        let note = s.make_checkpoint(&key, "td/audit", warden_core::clock::now_ms()).await.unwrap().unwrap();
        let path = warden_audit::publish(&published, note.size, &note.note).unwrap();
        let v = verify_audit(&s, &key.public(), Some(at)).await.unwrap();
        assert_eq!(v.published, Published::Checked { path: path.clone(), size: 3 });
        assert_eq!(v.outcome().unwrap().records, 3);
        assert_eq!(verify_audit(&s, &key.public(), None).await.unwrap().published, Published::NotConfigured);
        let e = verify_audit(&s, &key.public(), Some(Publication { origin: "other/audit", ..at })).await.unwrap_err();
        assert!(e.to_string().contains("is for the log \"td/audit\", not this one (\"other/audit\")"), "{e}");

        // A log shorter than what was published (its tail cut).
        let short = warden_store::Store::open(&dir.path().join(format!("short-{n}.db"))).await.unwrap();
        let other = ControlPlane::standalone(short.clone(), AuditSink::start(short.clone(), key.clone(), None), "td");
        other.add_operator(&me, "a", "viewer").await.unwrap();
        let v = verify_audit(&short, &key.public(), Some(at)).await.unwrap();
        let why = v.outcome().unwrap_err();
        assert!(why.starts_with(&format!("the log does not match the checkpoint published at {} (tree size 3): ", path.display())), "{why}");
    }
}
