//! `warden export k8s`: Kubernetes NetworkPolicy (and Istio
//! AuthorizationPolicy) manifests from the registry, so network
//! segmentation follows the same source of truth as the gateway:
//!
//! - each active agent's pods (label `warden.dev/agent: NAME`) may open
//!   connections only to the gateway (and DNS): no direct path to an MCP
//!   server, an API or the internet;
//! - each HTTP upstream's pods (label `warden.dev/upstream: SERVER`) accept
//!   connections only from the gateway;
//! - with `--istio`, mTLS identities enforce the same: an upstream admits
//!   only the gateway's service account, and the gateway's `/mcp` and token
//!   endpoints admit only registered agents' service accounts.
//!
//! The manifests are built as JSON values (pure, tested) and written as YAML.

use crate::cli::{Cli, ExportCmd};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use warden_core::{Agent, AgentStatus};
use warden_gateway::{Transport, UpstreamConfig};

/// Where things run in the cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub namespace: String,
    /// Labels that select the gateway's pods.
    pub gateway_labels: BTreeMap<String, String>,
    /// The gateway's ports agents may reach: MCP and token endpoint, and
    /// the egress proxy when it runs.
    pub gateway_ports: Vec<u16>,
    pub gateway_service_account: String,
    /// Service account name of an agent's pods; `{agent}` is replaced.
    pub agent_service_account: String,
    /// Istio trust domain of service-account principals.
    pub mesh_trust_domain: String,
}

fn name_label(agent: &Agent) -> &str {
    agent.id.as_str().rsplit("/agent/").next().unwrap_or_default()
}

fn meta(name: &str, c: &Cluster) -> Value {
    json!({ "name": name, "namespace": c.namespace, "labels": { "app.kubernetes.io/managed-by": "warden" } })
}

fn dns_egress() -> Value {
    json!({
        "to": [{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } }, "podSelector": { "matchLabels": { "k8s-app": "kube-dns" } } }],
        "ports": [{ "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 }],
    })
}

/// The manifests for these agents and upstreams.
pub fn manifests(agents: &[Agent], upstreams: &[UpstreamConfig], c: &Cluster, istio: bool) -> Vec<Value> {
    let gateway = json!({ "matchLabels": c.gateway_labels });
    let active: Vec<&Agent> = agents.iter().filter(|a| a.status == AgentStatus::Active).collect();
    let mut out = Vec::new();
    let network_policy = |name: String, selector: Value, kind: &str, rules: Value| {
        let mut spec = json!({ "podSelector": { "matchLabels": selector }, "policyTypes": [kind] });
        spec[kind.to_ascii_lowercase()] = rules;
        json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(&name, c), "spec": spec })
    };
    for a in &active {
        let name = name_label(a);
        let ports: Vec<Value> = c.gateway_ports.iter().map(|p| json!({ "protocol": "TCP", "port": p })).collect();
        let egress = json!([{ "to": [{ "podSelector": gateway }], "ports": ports }, dns_egress()]);
        out.push(network_policy(format!("warden-agent-{name}"), json!({ "warden.dev/agent": name }), "Egress", egress));
    }
    let http_upstreams: Vec<&UpstreamConfig> = upstreams.iter().filter(|u| matches!(u.transport, Transport::Http { .. })).collect();
    for u in &http_upstreams {
        let ingress = json!([{ "from": [{ "podSelector": gateway }] }]);
        out.push(network_policy(format!("warden-upstream-{}", u.name), json!({ "warden.dev/upstream": u.name }), "Ingress", ingress));
    }
    if istio {
        let principal = |sa: &str| format!("{}/ns/{}/sa/{sa}", c.mesh_trust_domain, c.namespace);
        for u in &http_upstreams {
            out.push(json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": meta(&format!("warden-upstream-{}", u.name), c),
                "spec": {
                    "selector": { "matchLabels": { "warden.dev/upstream": u.name } },
                    "action": "ALLOW",
                    "rules": [{ "from": [{ "source": { "principals": [principal(&c.gateway_service_account)] } }] }],
                },
            }));
        }
        let agents: Vec<String> = active.iter().map(|a| principal(&c.agent_service_account.replace("{agent}", name_label(a)))).collect();
        let agent_paths = ["/mcp", "/oauth/token", "/oauth/revoke"];
        let mut rules = vec![json!({ "to": [{ "operation": { "notPaths": agent_paths } }] })];
        if !agents.is_empty() {
            rules.insert(0, json!({ "from": [{ "source": { "principals": agents } }], "to": [{ "operation": { "paths": agent_paths } }] }));
        }
        out.push(json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": meta("warden-gateway-agents", c),
            "spec": { "selector": gateway, "action": "ALLOW", "rules": rules },
        }));
    }
    out
}

/// YAML for JSON values: block mappings and sequences; every string is
/// written as a JSON string, which is a valid YAML double-quoted scalar, so
/// no value can change type or break out of its place.
pub fn to_yaml(v: &Value) -> String {
    fn key(k: &str) -> String {
        let plain = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if plain { k.to_string() } else { Value::String(k.into()).to_string() }
    }
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::Object(m) if m.is_empty() => Some("{}".into()),
            Value::Array(a) if a.is_empty() => Some("[]".into()),
            Value::Object(_) | Value::Array(_) => None,
            other => Some(other.to_string()),
        }
    }
    fn write(v: &Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    match scalar(v) {
                        Some(s) => out.push_str(&format!("{pad}{}: {s}\n", key(k))),
                        None => {
                            out.push_str(&format!("{pad}{}:\n", key(k)));
                            write(v, indent + 2, out);
                        }
                    }
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for item in a {
                    match scalar(item) {
                        Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                        None => {
                            // The item's first line goes after the dash.
                            let mut inner = String::new();
                            write(item, indent + 2, &mut inner);
                            out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                        }
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", scalar(other).expect("scalar"))),
        }
    }
    let mut out = String::new();
    write(v, 0, &mut out);
    out
}

pub async fn run(cli: &Cli, cmd: &ExportCmd) -> Result<()> {
    match cmd {
        ExportCmd::K8s { namespace, gateway_label, gateway_port, gateway_service_account, agent_service_account, istio, mesh_trust_domain, json: as_json } => {
            let mut gateway_labels = BTreeMap::new();
            for l in gateway_label {
                let (k, v) = l.split_once('=').with_context(|| format!("--gateway-label {l:?} must be KEY=VALUE"))?;
                gateway_labels.insert(k.to_string(), v.to_string());
            }
            if gateway_labels.is_empty() {
                bail!("at least one --gateway-label KEY=VALUE is needed to select the gateway's pods");
            }
            if !agent_service_account.contains("{agent}") {
                bail!("--agent-service-account must contain {{agent}} (each agent has its own service account)");
            }
            let cfg = crate::load_config(cli)?;
            let store = crate::open_store(&cfg).await?;
            let c = Cluster {
                namespace: namespace.clone(),
                gateway_labels,
                // Agents' own direct calls go through the egress proxy.
                gateway_ports: std::iter::once(*gateway_port)
                    .chain(cfg.egress.listen.as_deref().and_then(|l| l.rsplit_once(':')).and_then(|(_, p)| p.parse().ok()))
                    .collect(),
                gateway_service_account: gateway_service_account.clone(),
                agent_service_account: agent_service_account.clone(),
                mesh_trust_domain: mesh_trust_domain.clone(),
            };
            let docs = manifests(&store.list_agents().await?, &cfg.upstreams, &c, *istio);
            if *as_json {
                println!("{}", serde_json::to_string_pretty(&json!({ "apiVersion": "v1", "kind": "List", "items": docs }))?);
            } else {
                println!("# Generated by `warden export k8s` from the Warden registry; re-run after registry changes.");
                for d in docs {
                    print!("---\n{}", to_yaml(&d));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::{AgentId, Autonomy};

    fn agent(name: &str, status: AgentStatus) -> Agent {
        Agent {
            id: AgentId::new("td", name).unwrap(),
            owner: "o".into(),
            purpose: "p".into(),
            tools: vec![],
            autonomy: Autonomy::try_from(1).unwrap(),
            status,
            public_key: name.into(),
            token_binding: warden_core::TokenBinding::Dpop,
            parent: None,
            created_at: 0,
        }
    }

    fn upstream(toml_text: &str) -> UpstreamConfig {
        toml::from_str(toml_text).unwrap()
    }

    fn cluster() -> Cluster {
        Cluster {
            namespace: "agents".into(),
            gateway_labels: [("app".to_string(), "warden".to_string())].into(),
            gateway_ports: vec![8700, 8701],
            gateway_service_account: "warden".into(),
            agent_service_account: "agent-{agent}".into(),
            mesh_trust_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn agents_reach_only_the_gateway_and_upstreams_admit_only_the_gateway() {
        let agents = [agent("billing", AgentStatus::Active), agent("old", AgentStatus::Revoked)];
        let ups = [
            upstream("name = \"crm\"\ntransport = \"http\"\nurl = \"http://crm:80/mcp\""),
            upstream("name = \"local\"\ntransport = \"stdio\"\ncommand = \"x\""),
        ];
        let docs = manifests(&agents, &ups, &cluster(), true);
        let names: Vec<(&str, &str)> = docs.iter().map(|d| (d["kind"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap())).collect();
        assert_eq!(
            names,
            [
                ("NetworkPolicy", "warden-agent-billing"),
                ("NetworkPolicy", "warden-upstream-crm"),
                ("AuthorizationPolicy", "warden-upstream-crm"),
                ("AuthorizationPolicy", "warden-gateway-agents")
            ],
            "revoked agents and stdio upstreams (run inside the gateway) get none"
        );
        let a = &docs[0]["spec"];
        assert_eq!(a["policyTypes"], json!(["Egress"]));
        assert_eq!(a["egress"][0]["to"][0]["podSelector"]["matchLabels"]["app"], "warden");
        assert_eq!(a["egress"][0]["ports"], json!([{ "protocol": "TCP", "port": 8700 }, { "protocol": "TCP", "port": 8701 }]));
        assert_eq!(docs[1]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app"], "warden");
        assert_eq!(docs[2]["spec"]["rules"][0]["from"][0]["source"]["principals"][0], "cluster.local/ns/agents/sa/warden");
        let gw = &docs[3]["spec"]["rules"];
        assert_eq!(gw[0]["from"][0]["source"]["principals"], json!(["cluster.local/ns/agents/sa/agent-billing"]));
        assert_eq!(gw[0]["to"][0]["operation"]["paths"][0], "/mcp");
        assert_eq!(gw[1]["to"][0]["operation"]["notPaths"][0], "/mcp", "operators and metrics reach the other paths");
        assert_eq!(manifests(&agents, &ups, &cluster(), false).len(), 2);
    }

    #[test]
    fn yaml_keeps_every_value_and_type() {
        let v = json!({ "a": { "b": [1, "two: 2", { "c": true, "d": null }, []], "e": {} }, "we:ird": "x\n'y\"", "n": -1.5 });
        let y = to_yaml(&v);
        assert_eq!(y, "a:\n  b:\n    - 1\n    - \"two: 2\"\n    - c: true\n      d: null\n    - []\n  e: {}\n\"we:ird\": \"x\\n'y\\\"\"\nn: -1.5\n");
    }
}
