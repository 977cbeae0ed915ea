//! The store's contract, on every backend available (SQLite always,
//! PostgreSQL with `WARDEN_TEST_POSTGRES_URL`; `scripts/pg-throwaway`).

use warden_audit::{ChainHead, Checkpoint};
use warden_core::{
    ActionClass, Agent, AgentId, AgentStatus, Approval, ApprovalStatus, AuditEvent, Autonomy, Kill, KillScope, Operator, Role, Sensitivity, Tool, ToolRef,
    ToolStatus,
};
use warden_identity::Keypair;
use warden_store::{AutonomyRecord, Backend, EngagedKill, KillLift, Store, StoreError, StoredMonitorState, StoredOperator, StoredPolicy};
use warden_test_support::{every_backend, fresh_postgres_url};

fn agent(name: &str, key: &str) -> Agent {
    Agent {
        id: AgentId::new("td", name).unwrap(),
        owner: "alice".into(),
        purpose: "p".into(),
        tools: vec!["crm/*".parse().unwrap()],
        autonomy: Autonomy::try_from(1).unwrap(),
        status: AgentStatus::Active,
        public_key: key.into(),
        token_binding: warden_core::TokenBinding::Dpop,
        parent: None,
        created_at: 1,
    }
}

#[tokio::test]
async fn agents_tools_revocations_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for s in every_backend(dir.path()).await {
        let seq0 = s.change_seq().await.unwrap();
        let a = agent("a", "k1");
        s.insert_agent(&a).await.unwrap();
        assert!(matches!(s.insert_agent(&a).await, Err(StoreError::Conflict(_))));
        assert!(matches!(s.insert_agent(&agent("b", "k1")).await, Err(StoreError::Conflict(_))), "keys are unique");
        let mut child = agent("c", "k3");
        child.parent = Some(AgentId::new("td", "nope").unwrap());
        assert!(matches!(s.insert_agent(&child).await, Err(StoreError::NotFound(_))));
        assert_eq!(s.get_agent(&a.id).await.unwrap(), a);
        s.set_agent_status(&a.id, AgentStatus::Suspended, "test", 50).await.unwrap();
        assert_eq!(s.revocation_set().await.unwrap().agents_before.get(a.id.as_str()), Some(&50));
        s.set_agent_status(&a.id, AgentStatus::Revoked, "test", 60).await.unwrap();
        assert!(matches!(s.set_agent_status(&a.id, AgentStatus::Active, "x", 70).await, Err(StoreError::Conflict(_))));
        assert!(s.change_seq().await.unwrap() > seq0);

        let t: ToolRef = "crm/lookup".parse().unwrap();
        let seen = s.observe_tool(&t, "h1", "{}", None).await.unwrap();
        assert_eq!(seen.status, ToolStatus::Pending);
        assert!(!seen.is_callable());
        assert!(seen.untrusted_content, "unclassified tools are treated as untrusted sources");
        s.upsert_tool(&Tool { sensitivity: Sensitivity::Low, action_class: ActionClass::Read, exfil_capable: false, untrusted_content: false, ..seen })
            .await
            .unwrap();
        assert!(s.approve_tool(&t, false).await.unwrap().is_callable());
        let changed = s.observe_tool(&t, "h2", "{\"x\":1}", Some("[\"hidden_instructions\"]")).await.unwrap();
        assert_eq!(changed.status, ToolStatus::Changed);
        assert!(!changed.is_callable());
        assert_eq!(s.get_tool(&t).await.unwrap().sensitivity, Sensitivity::Low, "observation keeps the classification");
        assert!(matches!(s.approve_tool(&t, false).await, Err(StoreError::Conflict(m)) if m.contains("tool poisoning")), "flagged needs acceptance");
        assert_eq!(s.observed_findings(&t).await.unwrap().as_deref(), Some("[\"hidden_instructions\"]"));
        assert_eq!(s.observe_tool(&t, "h1", "{}", None).await.unwrap().status, ToolStatus::Approved, "reverting restores it");
    }
}

#[tokio::test]
async fn kill_switches_and_monitor_state() {
    let dir = tempfile::tempdir().unwrap();
    for s in every_backend(dir.path()).await {
        let a = agent("a", "k1");
        s.insert_agent(&a).await.unwrap();
        let k = Kill { id: 0, scope: KillScope::Agent, target: a.id.to_string(), reason: "risk 93".into(), by: "monitor".into(), at_ms: 5_000 };
        let EngagedKill { kill: engaged, change_seq: seq } = s.engage_kill(&k).await.unwrap();
        assert!(engaged.id > 0);
        assert_eq!(seq, s.change_seq().await.unwrap());
        assert_eq!(s.get_agent(&a.id).await.unwrap().status, AgentStatus::Suspended, "an agent kill suspends");
        assert_eq!(s.revocation_set().await.unwrap().agents_before.get(a.id.as_str()), Some(&5), "and revokes its tokens");
        assert!(matches!(s.engage_kill(&k).await, Err(StoreError::Conflict(_))), "one engaged switch per target");
        let ghost = Kill { target: "spiffe://td/agent/ghost".into(), ..k.clone() };
        assert!(matches!(s.engage_kill(&ghost).await, Err(StoreError::NotFound(_))));
        let global = Kill { scope: KillScope::Global, target: String::new(), ..k.clone() };
        s.engage_kill(&global).await.unwrap();
        assert_eq!(s.active_kills().await.unwrap().len(), 2);
        s.lift_kill(engaged.id, "operator:alice", 9_000).await.unwrap();
        assert_eq!(s.get_agent(&a.id).await.unwrap().status, AgentStatus::Active, "lifting resumes the agent");
        assert!(matches!(s.lift_kill(engaged.id, "x", 9_000).await, Err(StoreError::NotFound(_))));
        let all = s.list_kills(true).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].lifted, Some(KillLift { at_ms: 9_000, by: "operator:alice".into() }));
        assert_eq!((all[0].kill.scope, all[0].lifted.as_ref()), (KillScope::Global, None), "newest first, still engaged");
        // Re-engaging after a lift works; resuming the agent lifts it too.
        s.engage_kill(&k).await.unwrap();
        s.set_agent_status(&a.id, AgentStatus::Active, "", 10).await.unwrap();
        assert_eq!(s.active_kills().await.unwrap().len(), 1, "only the global one");

        s.save_monitor_states(&[("a".into(), "{\"x\":1}".into())], 7).await.unwrap();
        s.save_monitor_states(&[("a".into(), "{\"x\":2}".into())], 8).await.unwrap();
        assert_eq!(s.monitor_states().await.unwrap(), vec![StoredMonitorState { agent: "a".into(), state: "{\"x\":2}".into(), updated_ms: 8 }]);
    }
}

#[tokio::test]
async fn approvals_are_decided_once_and_used_once() {
    let dir = tempfile::tempdir().unwrap();
    for s in every_backend(dir.path()).await {
        let tool: ToolRef = "pay/transfer".parse().unwrap();
        let a = Approval {
            id: "ap1".into(),
            agent: "spiffe://td/agent/a".into(),
            owner: "alice".into(),
            task: "t".into(),
            tool: tool.clone(),
            args_sha256: "h1".into(),
            args_redacted: serde_json::json!({"amount": 5000, "to": "[iban …3000 #00]"}),
            args: Some(serde_json::json!({"amount": 5000, "to": "DE89370400440532013000"})),
            reason: "big".into(),
            policies: vec!["large-payment-approval".into()],
            risk: 3,
            required: 2,
            approvers: vec![],
            status: ApprovalStatus::Pending,
            decided_by: None,
            decision_reason: None,
            created_ms: 100,
            expires_ms: 10_000,
        };
        let (bob, carol) = (Operator { name: "bob".into(), role: Role::Approver }, Operator { name: "carol".into(), role: Role::Admin });
        s.insert_approval(&a).await.unwrap();
        assert_eq!(s.list_approvals(true, 10).await.unwrap(), vec![a.clone()], "with the clear arguments");
        s.decide_approval("ap1", &bob, true, "", 200).await.unwrap();
        assert!(matches!(s.decide_approval("ap1", &bob, true, "", 201).await, Err(StoreError::Conflict(m)) if m.contains("different approver")));
        assert_eq!(s.approved_for(&a.agent, &tool, "h1", 300).await.unwrap(), None, "one of two approvals is not enough");
        let done = s.decide_approval("ap1", &carol, true, "fine", 300).await.unwrap();
        assert_eq!((done.status, &done.args), (ApprovalStatus::Approved, &a.args), "kept until the call runs");
        assert_eq!(s.approved_for(&a.agent, &tool, "h2", 300).await.unwrap(), None, "bound to the argument hash");
        assert_eq!(s.approved_for(&a.agent, &tool, "h1", 300).await.unwrap().as_deref(), Some("ap1"));
        assert_eq!(s.use_approval("ap1", 400).await.unwrap().status, ApprovalStatus::Used);
        assert_eq!(s.get_approval("ap1").await.unwrap().args, None, "the clear arguments are dropped once used");
        assert!(matches!(s.use_approval("ap1", 401).await, Err(StoreError::Conflict(_))), "used once");
        assert!(s.list_approvals(true, 10).await.unwrap().is_empty());

        let late = Approval { id: "ap2".into(), required: 1, ..a.clone() };
        s.insert_approval(&late).await.unwrap();
        assert!(matches!(s.decide_approval("ap2", &bob, true, "", 20_000).await, Err(StoreError::Conflict(m)) if m.contains("expired")));
        let expired = s.get_approval("ap2").await.unwrap();
        assert_eq!((expired.status, expired.args), (ApprovalStatus::Expired, None), "the expiry is recorded, the clear arguments dropped");
        assert_eq!(expired.args_redacted, a.args_redacted, "the masked form stays");
        assert!(matches!(s.get_approval("nope").await, Err(StoreError::NotFound(_))));
        let record = s.autonomy_record(&a.agent.parse().unwrap()).await.unwrap();
        assert_eq!(record, AutonomyRecord { last_critical_ms: None, approvals_granted: 1, approvals_refused: 0 }, "used counts as granted, expired as neither");
    }
}

#[tokio::test]
async fn operators_by_token_digest() {
    let dir = tempfile::tempdir().unwrap();
    for s in every_backend(dir.path()).await {
        s.add_operator("alice", Role::Admin, "d1", 1).await.unwrap();
        assert!(matches!(s.add_operator("alice", Role::Viewer, "d2", 2).await, Err(StoreError::Conflict(_))));
        assert_eq!(s.list_operators().await.unwrap(), [StoredOperator { name: "alice".into(), role: Role::Admin, created_ms: 1 }]);
        assert_eq!(s.operator_by_token("d1").await.unwrap(), Some(Operator { name: "alice".into(), role: Role::Admin }));
        assert_eq!(s.operator_by_token("d2").await.unwrap(), None);
        s.remove_operator("alice").await.unwrap();
        assert_eq!(s.operator_by_token("d1").await.unwrap(), None);
        assert!(matches!(s.remove_operator("alice").await, Err(StoreError::NotFound(_))));
    }
}

#[tokio::test]
async fn the_newest_policy_bundle_is_in_force() {
    let dir = tempfile::tempdir().unwrap();
    for s in every_backend(dir.path()).await {
        assert_eq!((s.policy_version().await.unwrap(), s.latest_policy().await.unwrap()), (0, None), "none pushed");
        assert_eq!(s.push_policy("{\"v\":1}", "h1", "operator:alice", 1).await.unwrap(), 1);
        assert_eq!(s.push_policy("{\"v\":2}", "h2", "operator:alice", 2).await.unwrap(), 2);
        assert_eq!(s.latest_policy().await.unwrap(), Some(StoredPolicy { version: 2, sha256: "h2".into(), sources: "{\"v\":2}".into() }));
        assert_eq!(s.policy_version().await.unwrap(), 2);
    }
}

#[tokio::test]
async fn audit_appends_survive_hostile_text_and_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    for s in every_backend(dir.path()).await {
        let key = Keypair::generate();
        let nasty = "x'); DROP TABLE audit; --\u{0}'' \\ ünïcødé \"q\"";
        let ev = |r: &str| AuditEvent { decision: warden_core::Verdict::Deny, reason: Some(r.into()), ..Default::default() };
        let mut w = s.audit_appender(key.clone()).await.unwrap();
        w.append(vec![(ev(nasty), 1), (ev("second"), 2)]).await.unwrap();
        // Another writer appends behind this writer's back.
        s.audit_appender(key.clone()).await.unwrap().append(vec![(ev("other writer"), 3)]).await.unwrap();
        // The stale head collides, and the append is redone on the real head.
        let recs = w.append(vec![(ev("after"), 4)]).await.unwrap();
        assert_eq!(recs[0].seq, 4);
        let all: Vec<_> = s.read_audit(0, 100).await.unwrap().into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].event.reason.as_deref(), Some(nasty));
        let head = s.audit_head().await.unwrap();
        let report = warden_audit::verify(all.into_iter().map(Ok), &key.public(), ChainHead::default(), Some(&head)).unwrap();
        assert_eq!(report.records, 4);

        // Checkpoints: signed over what verifies, extended incrementally.
        let c1 = s.make_checkpoint(&key, "td/audit", 10).await.unwrap().unwrap();
        assert_eq!(c1.size, 4);
        assert_eq!(Checkpoint::verify(&c1.note, &key.public()).unwrap().root, c1.frontier.root());
        assert_eq!(hex::encode(c1.frontier.root()), report.root);
        assert_eq!(s.make_checkpoint(&key, "td/audit", 11).await.unwrap().unwrap(), c1, "no growth, no new checkpoint");
        w.append(vec![(ev("more"), 5), (ev("and more"), 6)]).await.unwrap();
        let c2 = s.make_checkpoint(&key, "td/audit", 12).await.unwrap().unwrap();
        assert_eq!(c2.size, 6);
        let all: Vec<_> = s.read_audit(0, 100).await.unwrap().into_iter().map(|r| r.unwrap()).collect();
        let leaves: Vec<_> = all.iter().map(|r| r.leaf_hash().unwrap()).collect();
        assert_eq!(c2.frontier.root(), warden_audit::merkle::root(&leaves));
        assert_eq!(s.checkpoints().await.unwrap().len(), 2);
        // A record already covered and edited is caught by verifying
        // against the checkpoints, not here; an edit after the last
        // checkpoint stops the next one.
        w.append(vec![(ev("late"), 7)]).await.unwrap();
        let mut edited = all[5].clone();
        edited.event.decision = warden_core::Verdict::Allow;
        s.overwrite_audit_row(7, &serde_json::to_string(&edited).unwrap()).await.unwrap();
        assert!(matches!(s.make_checkpoint(&key, "td/audit", 13).await, Err(StoreError::Corrupt(m)) if m.contains("does not verify")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_a_log_that_grows_meanwhile_reports_no_tampering() {
    let dir = tempfile::tempdir().unwrap();
    for s in every_backend(dir.path()).await {
        let key = Keypair::generate();
        let ev = |r: &str| AuditEvent { decision: warden_core::Verdict::Allow, reason: Some(r.into()), ..Default::default() };
        let mut w = s.audit_appender(key.clone()).await.unwrap();
        w.append(vec![(ev("first"), 1)]).await.unwrap();
        // A live gateway keeps appending while an operator verifies.
        let writer = tokio::spawn(async move {
            for i in 0..100 {
                w.append(vec![(ev("more"), 2 + i)]).await.unwrap();
            }
        });
        let mut runs = 0;
        while !writer.is_finished() {
            let r = s.verify_audit(&key.public()).await.unwrap();
            assert!(r.is_ok(), "a growing log is not a tampered one: {r:?}");
            runs += 1;
        }
        writer.await.unwrap();
        assert!(runs > 0);
        assert_eq!(s.verify_audit(&key.public()).await.unwrap().unwrap().records, 101);
    }
}

#[tokio::test]
async fn a_one_time_id_is_first_only_once_across_stores_restarts_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    // Two handles on one database stand for two replicas; a third opened
    // after the first closes, for a restart.
    let pg = fresh_postgres_url().await.unwrap();
    let mut pairs = vec![(Store::open(&path).await.unwrap(), Store::open(&path).await.unwrap())];
    if let Some(url) = &pg {
        pairs.push((Store::connect(url).await.unwrap(), Store::connect(url).await.unwrap()));
    }
    // Unexpired now: the writer prunes what expired when it starts.
    let exp = warden_core::clock::now_secs() + 1000;
    for (a, b) in pairs {
        let ids = |v: &[&str]| v.iter().map(|i| (i.to_string(), exp)).collect::<Vec<_>>();
        assert_eq!(a.claim_one_time_ids(&ids(&["x", "y"])).await.unwrap(), [true, true]);
        assert_eq!(b.claim_one_time_ids(&ids(&["y", "z", "z"])).await.unwrap(), [false, true, false], "the other replica sees y; z repeats in its batch");
        let restarted = match a.backend() {
            Backend::Sqlite => Store::open(&path).await.unwrap(),
            Backend::Postgres => Store::connect(pg.as_deref().unwrap()).await.unwrap(),
        };
        drop(a);
        assert_eq!(restarted.claim_one_time_ids(&ids(&["x"])).await.unwrap(), [false], "recorded before the restart");

        // Through the group-commit writer, concurrently: each id is first once.
        let w = restarted.one_time_ids(0);
        let claims: Vec<_> = (0..50)
            .map(|i| {
                let w = w.clone();
                tokio::spawn(async move { w.claim(format!("c{}", i % 25), exp).await.unwrap() })
            })
            .collect();
        let mut first = 0;
        for c in claims {
            first += usize::from(c.await.unwrap());
        }
        assert_eq!(first, 25);
        assert!(!w.claim("x".into(), exp).await.unwrap());

        assert_eq!(restarted.prune_one_time_ids(exp).await.unwrap(), 0, "none expired before exp");
        assert_eq!(restarted.prune_one_time_ids(exp + 1).await.unwrap(), 28);
        assert_eq!(restarted.claim_one_time_ids(&ids(&["x"])).await.unwrap(), [true], "an expired id is forgotten");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_writer_commits_claims_and_records_together_beside_other_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let s = Store::open(&path).await.unwrap();
    let key = Keypair::generate();
    let w = s.sqlite_writer(key.clone()).expect("a SQLite store has a writer");
    let ev = |r: String| AuditEvent { decision: warden_core::Verdict::Allow, reason: Some(r), ..Default::default() };
    let exp = warden_core::clock::now_secs() + 1000;

    // Another process (the CLI: a writer of its own) appends between two
    // of this writer's appends: the second is sealed again on top.
    assert_eq!(w.append(ev("first".into())).await.unwrap().seq, 1);
    let other = Store::open(&path).await.unwrap().sqlite_writer(key.clone()).unwrap();
    assert_eq!(other.append(ev("CLI".into())).await.unwrap().seq, 2);
    let third = w.append(ev("third".into())).await.unwrap();
    assert_eq!((third.seq, third.event.reason.as_deref()), (3, Some("third")));
    // And a pooled writer's record is a replay for this one.
    assert_eq!(s.claim_one_time_ids(&[("seen".into(), exp)]).await.unwrap(), [true]);
    assert!(!w.claim("seen".into(), exp).await.unwrap(), "an id another writer recorded is a replay");

    // Many callers at once: each gets its own answer back.
    let appends: Vec<_> = (0..200)
        .map(|i| {
            let w = w.clone();
            let e = ev(format!("call {i}"));
            tokio::spawn(async move { (i, w.append(e).await.unwrap()) })
        })
        .collect();
    let claims: Vec<_> = (0..100)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move { (i % 40, w.claim(format!("jti-{}", i % 40), exp).await.unwrap()) })
        })
        .collect();
    let mut seqs = Vec::new();
    for a in appends {
        let (i, r) = a.await.unwrap();
        assert_eq!(r.event.reason, Some(format!("call {i}")), "a caller gets its own record");
        seqs.push(r.seq);
    }
    let mut firsts = [0; 40];
    for c in claims {
        let (id, first) = c.await.unwrap();
        firsts[id] += usize::from(first);
    }
    assert_eq!(firsts, [1; 40], "each id is first exactly once");
    seqs.sort();
    assert_eq!(seqs, (4..204).collect::<Vec<u64>>(), "every append got a sequence number of its own");
    let report = s.verify_audit(&key.public()).await.unwrap().unwrap();
    assert_eq!(report.records, 203, "one chain, nothing lost, however the writers interleaved");

    // Expired ids are pruned by the writer (first tick at once).
    assert_eq!(s.claim_one_time_ids(&[("old".into(), 1)]).await.unwrap(), [true]);
    let ids = w.one_time_ids(0);
    let mut pruned = false;
    for _ in 0..100 {
        if ids.claim("old".into(), exp).await.unwrap() {
            pruned = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(pruned, "an id that expired is forgotten, so it is first again");

    // A head it cannot read fails the append closed and writes nothing;
    // once it is repaired, the same writer goes on.
    let db = rusqlite::Connection::open(&path).unwrap();
    let good: String = db.query_row("SELECT value FROM meta WHERE key = 'audit_head'", [], |r| r.get(0)).unwrap();
    db.execute("UPDATE meta SET value = 'garbage' WHERE key = 'audit_head'", []).unwrap();
    let fresh = s.sqlite_writer(key.clone()).unwrap();
    let e = fresh.append(ev("lost?".into())).await.unwrap_err();
    assert!(e.to_string().contains("audit head is corrupt"), "{e}");
    assert_eq!(s.read_audit(0, 1000).await.unwrap().len(), 203);
    db.execute("UPDATE meta SET value = ?1 WHERE key = 'audit_head'", [&good]).unwrap();
    assert_eq!(fresh.append(ev("after repair".into())).await.unwrap().seq, 204);
    assert_eq!(s.verify_audit(&key.public()).await.unwrap().unwrap().records, 204);
}

#[tokio::test]
async fn postgres_has_no_sqlite_writer() {
    let Some(url) = fresh_postgres_url().await.unwrap() else { return };
    assert!(Store::connect(&url).await.unwrap().sqlite_writer(Keypair::generate()).is_none());
}
