//! Sandboxed stdio tool servers: the same small MCP server (Python, stdio)
//! runs twice behind the gateway, once plain and once with
//! `[upstream.sandbox]`; only the sandboxed one is stopped from reading
//! outside its root and from opening a network socket, and it runs under the
//! configured rlimits with none of the gateway's secrets in its environment.

use crate::common::Harness;
use serde_json::{Value, json};

const SERVER: &str = r#"
import json, os, resource, socket, sys
TOOLS = [{"name": n, "description": d, "inputSchema": {"type": "object"}} for n, d in [
    ("read", "Read a file"), ("connect", "Open a TCP connection"), ("probe", "Report limits and environment")]]
def call(name, a):
    try:
        if name == "read":
            with open(a["path"]) as f:
                return "read: " + f.read().strip()
        if name == "connect":
            s = socket.create_connection(("127.0.0.1", int(a["port"])), timeout=2)
            s.close()
            return "connected"
        if name == "probe":
            return json.dumps({"cpu": resource.getrlimit(resource.RLIMIT_CPU)[0], "files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                               "memory": resource.getrlimit(resource.RLIMIT_AS)[0], "env": sorted(os.environ)})
    except Exception as e:
        return "error: %s" % e
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    m = msg["method"]
    if m == "initialize":
        r = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}}, "serverInfo": {"name": "probe", "version": "1"}}
    elif m == "tools/list":
        r = {"tools": TOOLS}
    elif m == "tools/call":
        r = {"content": [{"type": "text", "text": call(msg["params"]["name"], msg["params"].get("arguments") or {})}]}
    else:
        r = {}
    print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": r}), flush=True)
"#;

fn text(r: &warden_client::Reply) -> String {
    r.result().and_then(|v| v["content"][0]["text"].as_str()).unwrap_or_else(|| panic!("no result: {}", r.body)).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_server_cannot_read_outside_its_root_or_open_sockets() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("server.py"), SERVER).unwrap();
    std::fs::write(root.join("inside.txt"), "inside the root").unwrap();
    std::fs::write(work.path().join("outside.txt"), "outside the root").unwrap();
    let script = root.join("server.py").display().to_string();
    let extra = format!(
        r#"[[upstream]]
name = "plain"
transport = "stdio"
command = "python3"
args = [{script:?}]
[[upstream]]
name = "boxed"
transport = "stdio"
command = "python3"
args = [{script:?}]
[upstream.sandbox]
write = [{root:?}]
cpu_secs = 20
memory_mb = 512
open_files = 64
"#,
        root = root.display().to_string()
    );
    let h = Harness::start_with("", &extra, &[("GATEWAY_ONLY_SECRET", "s3cr3t-value")]);
    for server in ["plain", "boxed"] {
        for tool in ["read", "connect", "probe"] {
            h.approve(&format!("{server}/{tool}"), "low", "read", false);
        }
    }
    let (id, key) = h.register("prober", "plain/*,boxed/*", 1, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut results = std::collections::BTreeMap::new();
    for (tool, args) in [
        ("read", json!({ "path": root.join("inside.txt") })),
        ("read", json!({ "path": work.path().join("outside.txt") })),
        ("connect", json!({ "port": port })),
        ("probe", json!({})),
    ] {
        for server in ["plain", "boxed"] {
            let r = c.call_tool(&format!("{server}__{tool}"), args.clone()).await.unwrap();
            results.insert(format!("{server} {tool} {}", args.get("path").and_then(Value::as_str).unwrap_or("")), text(&r));
        }
    }
    let get = |k: &str| results.iter().find(|(key, _)| key.starts_with(k)).map(|(_, v)| v.clone()).unwrap();
    let inside = format!("{}", root.join("inside.txt").display());
    let outside = format!("{}", work.path().join("outside.txt").display());
    assert_eq!(get(&format!("plain read {inside}")), "read: inside the root");
    assert_eq!(get(&format!("boxed read {inside}")), "read: inside the root", "its own root stays usable");
    assert_eq!(get(&format!("plain read {outside}")), "read: outside the root", "the plain server can (so the denial below is the sandbox)");
    let denied = get(&format!("boxed read {outside}"));
    assert!(denied.starts_with("error:") && denied.contains("Permission denied"), "{denied}");
    assert_eq!(get("plain connect"), "connected");
    let refused = get("boxed connect");
    assert!(refused.starts_with("error:") && refused.contains("Permission denied"), "{refused}");

    let boxed: Value = serde_json::from_str(&get("boxed probe")).unwrap();
    assert_eq!((boxed["cpu"].as_u64(), boxed["files"].as_u64(), boxed["memory"].as_u64()), (Some(20), Some(64), Some(512 << 20)));
    for probe in [get("plain probe"), get("boxed probe")] {
        assert!(!probe.contains("GATEWAY_ONLY_SECRET"), "the gateway's environment is not passed on: {probe}");
    }
}
