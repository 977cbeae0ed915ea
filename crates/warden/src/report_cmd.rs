//! `warden report`: compliance evidence from the registry, the policies and
//! their tests, and the audit log — agent inventory with owners, decision
//! statistics, violations, containments with time-to-contain, approvals,
//! audit verification — mapped to the NIST SP 800-207 tenets and the OWASP
//! Top 10 for LLM applications (2025). Written as JSON (for GRC tooling) and
//! as one self-contained HTML page (for people).

use crate::open_store;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use warden_core::{ApprovalStatus, EventKind};
use warden_server::{ServerConfig, load_policy_dir, load_test_files};

fn kind_of(k: Option<EventKind>) -> String {
    k.and_then(|k| serde_json::to_value(k).ok()).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

pub async fn run(cfg: &ServerConfig, out: &Path) -> Result<()> {
    let store = open_store(cfg).await?;
    let key = warden_server::load_or_create_key(&cfg.key_path())?.public();

    // Inventory.
    let agents = store.list_agents().await?;
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in &agents {
        owners.entry(a.owner.clone()).or_default().push(a.id.name().to_string());
    }
    let tools = store.list_tools().await?;

    // Policies and their tests.
    let bundle = load_policy_dir(&cfg.policy_dir).with_context(|| format!("loading policies from {}", cfg.policy_dir.display()))?;
    let mut cases = Vec::new();
    for (file, tf) in load_test_files(&cfg.policy_dir)? {
        for r in tf.run(&bundle) {
            cases.push(json!({ "file": file, "case": r.name, "passed": r.passed, "detail": r.detail }));
        }
    }
    let cases_failed = cases.iter().filter(|c| c["passed"] == false).count();

    // The audit log: statistics, violations, containments.
    let verification = match store.verify_audit(&key).await? {
        Ok(r) => json!({ "ok": true, "records": r.records, "head": { "seq": r.head.seq, "hash": r.head.hash }, "signed_batches": r.signatures }),
        Err(e) => json!({ "ok": false, "error": e.to_string() }),
    };
    let mut by_outcome: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut violations: BTreeMap<String, (u64, i64, String)> = BTreeMap::new();
    let mut findings: BTreeMap<String, u64> = BTreeMap::new();
    let (mut containments, mut lifts) = (Vec::new(), 0u64);
    let (mut first_ms, mut last_ms) = (i64::MAX, 0);
    let mut redacted = 0u64;
    for r in store.audit_records().await?.into_iter().flatten() {
        let e = &r.event;
        let kind = kind_of(e.kind);
        *by_kind.entry(kind.clone()).or_default() += 1;
        first_ms = first_ms.min(r.ts_ms);
        last_ms = last_ms.max(r.ts_ms);
        match e.kind {
            Some(EventKind::ToolCall) => {
                *by_outcome.entry(e.decision.to_string()).or_default() += 1;
                redacted += u64::from(e.redacted);
                for f in &e.findings {
                    // Kinds only (`args.pii.email`); the score suffix is noise here.
                    if !f.contains("injection_score") {
                        *findings.entry(f.clone()).or_default() += 1;
                    }
                }
                if e.decision != warden_core::Verdict::Allow {
                    for p in &e.policies {
                        let v = violations.entry(p.clone()).or_insert((0, 0, String::new()));
                        v.0 += 1;
                        v.1 = r.ts_ms;
                        v.2 = e.reason.clone().unwrap_or_default();
                    }
                }
            }
            // The engagement (CLI, API or monitor) and each gateway taking it up.
            Some(EventKind::Containment) => {
                containments.push(json!({
                    "at_ms": r.ts_ms, "seq": r.seq, "by": e.subject, "target": e.agent.clone().or(e.tool.clone()),
                    "action": e.action, "cause": e.reason, "time_to_in_force_us": e.latency_us,
                }));
            }
            Some(EventKind::ContainmentLifted) => lifts += 1,
            _ => {}
        }
    }
    let approvals = store.list_approvals(false, u32::MAX).await?;
    let mut approval_counts: BTreeMap<&str, u64> = BTreeMap::new();
    for a in &approvals {
        *approval_counts.entry(a.status.as_str()).or_default() += 1;
    }
    let decided = approvals.iter().filter(|a| matches!(a.status, ApprovalStatus::Approved | ApprovalStatus::Used | ApprovalStatus::Denied)).count();
    let in_force: Vec<u64> = containments.iter().filter_map(|c| c["time_to_in_force_us"].as_u64()).collect();
    let kills = store.list_kills(true).await?;

    let count = |k: &str| by_kind.get(k).copied().unwrap_or(0);
    let outcome = |k: &str| by_outcome.get(k).copied().unwrap_or(0);
    let pinned = tools.iter().filter(|t| t.is_callable()).count();
    let pii_secret_findings: u64 = findings.iter().filter(|(k, _)| k.contains(".pii.") || k.contains(".secrets.")).map(|(_, n)| n).sum();
    let injection_findings: u64 = findings.iter().filter(|(k, _)| k.contains(".injection.")).map(|(_, n)| n).sum();
    let limit_hits: u64 = violations.iter().filter(|(p, _)| p.starts_with("limit:") || p.as_str() == "circuit-breaker").map(|(_, v)| v.0).sum();
    let control =
        |id: &str, title: &str, controls: &str, evidence: String| json!({ "id": id, "title": title, "warden_controls": controls, "evidence": evidence });
    let nist = vec![
        control(
            "T1",
            "All data sources and computing services are resources",
            "every upstream tool is registered, classified and pinned by definition hash; agents are registered identities",
            format!("{} tools registered, {pinned} approved and pinned; {} agents", tools.len(), agents.len()),
        ),
        control(
            "T2",
            "All communication is secured regardless of network location",
            "DPoP-bound EdDSA tokens (RFC 9449) checked on every request; upstream credentials injected by the gateway",
            format!("{} authentication failures refused", count("authn_failure")),
        ),
        control(
            "T3",
            "Access is granted per session",
            "short-lived task-scoped tokens; RFC 8693 attenuated sub-agent tokens; revocation",
            format!(
                "{} tokens issued, {} exchanged, {} revocations; token TTL {} s",
                count("token_issued"),
                count("token_exchanged"),
                count("revocation"),
                cfg.token_ttl_secs
            ),
        ),
        control(
            "T4",
            "Access is determined by dynamic policy",
            "Cedar policy per call with identity, tool, arguments, inspection findings, risk score and session taint",
            format!("{} policies, {} policy tests ({} failing); {} calls decided", bundle.len(), cases.len(), cases_failed, by_outcome.values().sum::<u64>()),
        ),
        control(
            "T5",
            "The enterprise monitors the integrity and security posture of assets",
            "behavioural baselines, anomaly and risk scores, tool-definition pinning and poisoning detection, automatic containment",
            format!(
                "{} containments ({lifts} lifted); {} tool definition changes, {} flagged definitions",
                containments.len(),
                count("tool_definition_changed"),
                count("tool_definition_flagged")
            ),
        ),
        control(
            "T6",
            "Authentication and authorization are dynamic and strictly enforced before access",
            "per-request authentication, policy decision, kill switches and limits before the upstream is called; default deny",
            format!("{} denied, {} held for approval, {} allowed", outcome("deny"), outcome("needs_approval"), outcome("allow")),
        ),
        control(
            "T7",
            "Collect information to improve security posture",
            "signed hash-chained audit of every decision, Prometheus metrics, OpenTelemetry traces, this report",
            format!("{} audit records; verification {}", by_kind.values().sum::<u64>(), if verification["ok"] == true { "passed" } else { "FAILED" }),
        ),
    ];
    let owasp = vec![
        control(
            "LLM01:2025",
            "Prompt Injection",
            "injection detection in arguments and results; injected results withheld; lethal-trifecta taint",
            format!("{injection_findings} injection findings"),
        ),
        control(
            "LLM02:2025",
            "Sensitive Information Disclosure",
            "PII and secret detection with validators; redaction obligations; approval before sensitive data leaves",
            format!("{pii_secret_findings} PII/secret findings, {redacted} spans redacted"),
        ),
        control(
            "LLM03:2025",
            "Supply Chain",
            "tool definitions pinned by hash; changed (rug-pull) or poisoned definitions blocked until re-approved",
            format!("{} definition changes, {} flagged", count("tool_definition_changed"), count("tool_definition_flagged")),
        ),
        control(
            "LLM05:2025",
            "Improper Output Handling",
            "every tool result inspected and decided (`receive_result`) before the agent sees it",
            format!("{} results withheld", violations.get("injected-result").map(|v| v.0).unwrap_or(0)),
        ),
        control(
            "LLM06:2025",
            "Excessive Agency",
            "least-privilege task tokens, autonomy levels, human approval, kill switches, automatic containment",
            format!("{} approvals requested ({decided} decided), {} kill switches engaged", approvals.len(), kills.len()),
        ),
        control(
            "LLM10:2025",
            "Unbounded Consumption",
            "rate limits, impact caps (records, money, bytes out) and circuit breakers",
            format!("{limit_hits} calls refused by limits or breakers"),
        ),
    ];

    let trifecta = violations.get("lethal-trifecta").map(|v| v.0).unwrap_or(0);
    let exchanged = count("token_exchanged");
    let agentic = vec![
        control(
            "ASI01",
            "Agent Goal Hijack",
            "injection detection in arguments and results (withheld above the threshold); session taint and the lethal-trifecta approval rule",
            format!("{injection_findings} injection findings; {trifecta} exfiltration attempts after untrusted input held"),
        ),
        control(
            "ASI02",
            "Tool Misuse and Exploitation",
            "Cedar decision per call on tool class, sensitivity and arguments; argument inspection; impact caps on records, money and bytes out",
            format!("{} calls denied, {limit_hits} refused by limits or breakers", outcome("deny")),
        ),
        control(
            "ASI03",
            "Identity and Privilege Abuse",
            "one Ed25519 identity per agent with a human owner; DPoP-bound task-scoped tokens of minutes; autonomy levels; revocation",
            format!(
                "{} agents, {} owners; {} authentication failures refused; {} revocations",
                agents.len(),
                owners.len(),
                count("authn_failure"),
                count("revocation")
            ),
        ),
        control(
            "ASI04",
            "Agentic Supply Chain Vulnerabilities",
            "tool definitions pinned by hash; changed (rug-pull) and poisoned definitions blocked until an operator re-approves",
            format!("{} definition changes, {} flagged definitions", count("tool_definition_changed"), count("tool_definition_flagged")),
        ),
        control(
            "ASI05",
            "Unexpected Code Execution",
            "exec-class tools need policy and autonomy like any other; not yet: sandboxing of stdio tool servers the gateway launches",
            format!("{} tools classified exec", tools.iter().filter(|t| t.action_class.as_str() == "exec").count()),
        ),
        control(
            "ASI06",
            "Memory and Context Poisoning",
            "every tool result inspected before the agent sees it; untrusted-content tools taint the session",
            format!("{} results withheld", violations.get("injected-result").map(|v| v.0).unwrap_or(0)),
        ),
        control(
            "ASI07",
            "Insecure Inter-Agent Communication",
            "sub-agents act only through RFC 8693 attenuated tokens carrying the delegation chain (act), bound to their own keys",
            format!("{exchanged} sub-agent tokens exchanged"),
        ),
        control(
            "ASI08",
            "Cascading Failures",
            "circuit breakers per upstream tool, rate limits and impact caps, kill switches by server and tool",
            format!("{limit_hits} calls refused by limits or breakers; {} kill switches engaged", kills.len()),
        ),
        control(
            "ASI09",
            "Human-Agent Trust Exploitation",
            "approvals show the reason, policy and masked arguments, cover exactly one call (argument digest), expire to deny, and can need two approvers",
            format!("{} approvals requested, {decided} decided", approvals.len()),
        ),
        control(
            "ASI10",
            "Rogue Agents",
            "behavioural baselines, anomaly and risk scores, automatic containment, kill switches effective before the next call",
            format!(
                "{} kill switches engaged ({} automatic containments), {lifts} lifted",
                kills.len(),
                kills.iter().filter(|k| k.kill.by == "monitor").count()
            ),
        ),
    ];
    let report = json!({
        "generated_at": chrono::DateTime::from_timestamp_millis(warden_core::clock::now_ms()).unwrap_or_default().to_rfc3339(),
        "warden_version": env!("CARGO_PKG_VERSION"),
        "period": { "first_record_ms": if first_ms == i64::MAX { None } else { Some(first_ms) }, "last_record_ms": (last_ms > 0).then_some(last_ms) },
        "audit_verification": verification,
        "agents": agents.iter().map(|a| json!({
            "id": a.id.to_string(), "owner": a.owner, "purpose": a.purpose, "autonomy": a.autonomy.level(), "status": a.status.as_str(),
            "tools": a.tools.iter().map(ToString::to_string).collect::<Vec<_>>(), "parent": a.parent.as_ref().map(ToString::to_string),
            "registered_at": a.created_at,
        })).collect::<Vec<_>>(),
        "owners": owners,
        "tools": tools.iter().map(|t| json!({ "tool": t.tool.to_string(), "status": t.status.as_str(), "sensitivity": t.sensitivity.as_str(), "action_class": t.action_class.as_str(), "exfil_capable": t.exfil_capable, "untrusted_content": t.untrusted_content, "pinned": t.is_callable() })).collect::<Vec<_>>(),
        "policies": { "count": bundle.len(), "ids": bundle.policy_ids(), "tests": { "total": cases.len(), "failed": cases_failed, "cases": cases } },
        "decisions": { "tool_calls_by_outcome": by_outcome, "events_by_kind": by_kind, "findings": findings, "redacted_spans": redacted },
        "violations": violations.iter().map(|(p, (n, last, reason))| json!({ "policy": p, "count": n, "last_ms": last, "reason": reason })).collect::<Vec<_>>(),
        "approvals": { "by_status": approval_counts, "total": approvals.len() },
        "containments": { "events": containments, "lifted": lifts, "time_to_in_force_us": { "max": in_force.iter().max(), "count": in_force.len() } },
        "controls": { "nist_sp_800_207": nist, "owasp_llm_top_10_2025": owasp, "owasp_agentic_top_10_2026": agentic },
    });
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json_path = out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", json_path.display()))?;
    let html_path = out.join("report.html");
    std::fs::write(&html_path, html(&report)).with_context(|| format!("writing {}", html_path.display()))?;
    println!("wrote {} and {}", json_path.display(), html_path.display());
    if report["audit_verification"]["ok"] != true || cases_failed > 0 {
        println!("attention: {}", if cases_failed > 0 { "policy tests fail" } else { "the audit log does not verify" });
    }
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(", "),
        other => esc(&other.to_string()),
    }
}

/// A table of the given columns from an array of objects.
fn table(rows: &Value, cols: &[(&str, &str)]) -> String {
    let mut h = String::from("<table><tr>");
    for (_, title) in cols {
        h.push_str(&format!("<th>{}</th>", esc(title)));
    }
    h.push_str("</tr>");
    for r in rows.as_array().into_iter().flatten() {
        h.push_str("<tr>");
        for (key, _) in cols {
            h.push_str(&format!("<td>{}</td>", text(&r[*key])));
        }
        h.push_str("</tr>");
    }
    h + "</table>"
}

fn html(r: &Value) -> String {
    let v = &r["audit_verification"];
    let audit = if v["ok"] == true {
        format!("<p class=ok>Audit log verified: {} records, head {} {}.</p>", v["records"], v["head"]["seq"], text(&v["head"]["hash"]))
    } else {
        format!("<p class=bad>Audit log does NOT verify: {}</p>", text(&v["error"]))
    };
    let t = &r["policies"]["tests"];
    let outcomes: Vec<Value> =
        r["decisions"]["tool_calls_by_outcome"].as_object().into_iter().flatten().map(|(k, n)| json!({ "outcome": k, "count": n })).collect();
    let approvals: Vec<Value> = r["approvals"]["by_status"].as_object().into_iter().flatten().map(|(k, n)| json!({ "status": k, "count": n })).collect();
    let owners: Vec<Value> = r["owners"].as_object().into_iter().flatten().map(|(k, a)| json!({ "owner": k, "agents": a })).collect();
    format!(
        r#"<!doctype html><html lang=en><head><meta charset=utf-8><title>Warden compliance evidence</title>
<style>body{{font:14px/1.45 system-ui,sans-serif;margin:2rem;max-width:1100px}}table{{border-collapse:collapse;margin:.5rem 0 1.5rem;width:100%}}td,th{{border:1px solid #ccc;padding:.25rem .45rem;text-align:left;vertical-align:top}}th{{background:#f2f2f2}}.ok{{color:#176d3b}}.bad{{color:#b00020;font-weight:bold}}</style></head><body>
<h1>Warden compliance evidence</h1><p>Generated {generated} by warden {version}.</p>
<h2>Audit log</h2>{audit}
<h2>Controls: NIST SP 800-207 zero-trust tenets</h2>{nist}
<h2>Controls: OWASP Top 10 for LLM applications (2025)</h2>{owasp}
<h2>Controls: OWASP Top 10 for agentic applications (2026)</h2>{agentic}
<h2>Agent inventory</h2>{agents}
<h2>Owners</h2>{owners}
<h2>Tools</h2>{tools}
<h2>Policies</h2><p>{npol} policies; {ntests} test cases, {nfail} failing.</p>{cases}
<h2>Decisions</h2>{outcomes}
<h2>Violations</h2>{violations}
<h2>Approvals</h2>{approvals}
<h2>Containments</h2><p>{nlift} lifted by operators. Time to in force is from the trigger to the kill switch being checked on every call.</p>{containments}
</body></html>
"#,
        generated = text(&r["generated_at"]),
        version = text(&r["warden_version"]),
        nist = table(
            &r["controls"]["nist_sp_800_207"],
            &[("id", "Tenet"), ("title", "Requirement"), ("warden_controls", "Warden controls"), ("evidence", "Evidence")]
        ),
        owasp = table(
            &r["controls"]["owasp_llm_top_10_2025"],
            &[("id", "Risk"), ("title", "Name"), ("warden_controls", "Warden controls"), ("evidence", "Evidence")]
        ),
        agentic = table(
            &r["controls"]["owasp_agentic_top_10_2026"],
            &[("id", "Risk"), ("title", "Name"), ("warden_controls", "Warden controls"), ("evidence", "Evidence")]
        ),
        agents = table(
            &r["agents"],
            &[
                ("id", "Agent"),
                ("owner", "Owner"),
                ("purpose", "Purpose"),
                ("autonomy", "Autonomy"),
                ("status", "Status"),
                ("tools", "Tools"),
                ("parent", "Parent")
            ]
        ),
        owners = table(&Value::Array(owners), &[("owner", "Owner"), ("agents", "Agents")]),
        tools = table(
            &r["tools"],
            &[
                ("tool", "Tool"),
                ("status", "Status"),
                ("sensitivity", "Sensitivity"),
                ("action_class", "Action"),
                ("exfil_capable", "Exfil"),
                ("untrusted_content", "Untrusted"),
                ("pinned", "Pinned")
            ]
        ),
        npol = r["policies"]["count"],
        ntests = t["total"],
        nfail = t["failed"],
        cases = table(&t["cases"], &[("file", "File"), ("case", "Case"), ("passed", "Passed"), ("detail", "Detail")]),
        outcomes = table(&Value::Array(outcomes), &[("outcome", "Outcome"), ("count", "Tool calls")]),
        violations = table(&r["violations"], &[("policy", "Policy or limit"), ("count", "Refusals"), ("reason", "Last reason")]),
        approvals = table(&Value::Array(approvals), &[("status", "Status"), ("count", "Requests")]),
        nlift = r["containments"]["lifted"],
        containments = table(
            &r["containments"]["events"],
            &[("target", "Target"), ("action", "Kind"), ("by", "By"), ("cause", "Cause"), ("time_to_in_force_us", "In force after (µs)")]
        ),
    )
}
