//! `warden-loadgen`: measures what the gateway adds to a `tools/call`.
//! The same MCP upstream is called directly (with the gateway's own upstream
//! client) and through the gateway (token + DPoP proof per request, Cedar
//! decision, audit commit). Phase 1 sends one request at a time and reports
//! latency percentiles; phase 2 runs concurrent workers and reports
//! throughput. DPoP proofs are signed before the clock starts, so the figures
//! are the gateway's cost, not the client's signing. Phase 3 offers a fixed
//! rate (open loop: latency counts from when each call was due, so a slow
//! gateway cannot hide its queueing) on both paths; phase 4 opens many MCP
//! sessions and reports the gateway's memory per 1,000 of them.

use anyhow::{Context, Result, ensure};
use clap::Parser;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_client::AgentClient;
use warden_gateway::{Transport, Upstream, UpstreamConfig};
use warden_identity::{Keypair, make_dpop_proof};

#[derive(Parser)]
struct Args {
    /// Gateway base URL (the issuer).
    #[arg(long)]
    gateway: String,
    #[arg(long)]
    agent: String,
    /// The agent's private key (PKCS#8 PEM).
    #[arg(long)]
    key: std::path::PathBuf,
    /// A second agent for the refused-call probe: a thousand refused calls
    /// raise an agent's risk, so the measured agent's record stays clean.
    #[arg(long, requires = "probe_key")]
    probe_agent: Option<String>,
    #[arg(long)]
    probe_key: Option<std::path::PathBuf>,
    /// Federated tool name at the gateway (SERVER__TOOL).
    #[arg(long)]
    tool: String,
    /// The upstream's MCP URL, for the direct baseline.
    #[arg(long)]
    direct: String,
    /// Tool name at the upstream.
    #[arg(long)]
    direct_tool: String,
    #[arg(long, default_value = r#"{"message":"hello"}"#)]
    arguments: String,
    /// Sequential requests per path for the latency phase.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds per path for the throughput phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Calls per second offered for the fixed-rate phase (0: skip).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// MCP sessions to open for the memory phase (0: skip).
    #[arg(long, default_value_t = 0)]
    sessions: usize,
    /// The gateway's process id (CPU per call and memory phases; Linux /proc).
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// The upstream's process id (its CPU per call, direct and behind the gateway).
    #[arg(long)]
    upstream_pid: Option<u32>,
    /// Clients flooding `/mcp` with forged tokens from 127.0.0.2 during a
    /// second sequential latency phase (0: skip).
    #[arg(long, default_value_t = 0)]
    flood_clients: usize,
}

/// Resident memory of a process in KiB (Linux).
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    line.split_whitespace().nth(1).context("VmRSS value")?.parse().context("VmRSS value")
}

/// CPU time a process has used, in µs (Linux /proc: user + system).
fn cpu_us(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: fields are counted after its ")".
    let rest = &stat[stat.rfind(')').context("no command name in stat")? + 2..];
    let field = |n: usize| -> Result<u64> { rest.split(' ').nth(n).context("short stat")?.parse().context("stat field") };
    // utime and stime (fields 14 and 15) in clock ticks.
    let ticks = field(11)? + field(12)?;
    Ok(ticks * 1_000_000 / *CLOCK_TICKS)
}

/// Clock ticks per second of /proc's times (`getconf CLK_TCK`; 100 on
/// every mainstream Linux).
static CLOCK_TICKS: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .filter(|hz| *hz > 0)
        .unwrap_or(100)
});

/// CPU µs per call of each process in `pids` while `calls` calls ran from `before`.
fn per_call(pids: &[(&str, Option<u32>)], before: &[Option<u64>], calls: u64) -> Result<String> {
    let mut parts = Vec::new();
    for ((name, pid), then) in pids.iter().zip(before) {
        if let (Some(pid), Some(then)) = (pid, then) {
            parts.push(format!("{name} {:.0} µs", (cpu_us(*pid)? - then) as f64 / calls.max(1) as f64));
        }
    }
    Ok(if parts.is_empty() { String::new() } else { format!("   CPU per call: {}", parts.join(", ")) })
}

/// Offer `rate` calls per second for `secs` seconds, each started when it is
/// due whether or not earlier ones finished; latency from when it was due.
/// Returns (p50 µs, p99 µs, achieved calls/s, errors).
async fn open_loop<F, Fut>(rate: u64, secs: u64, mut call: F) -> Result<(f64, f64, f64, usize)>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let n = (rate * secs) as usize;
    let period = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + period * i as u32;
        tokio::time::sleep_until(due).await;
        let fut = call(i);
        tasks.push(tokio::spawn(async move { fut.await.map(|_| due.elapsed().as_nanos() as u64) }));
    }
    let (mut t, mut errors) = (Vec::with_capacity(n), 0);
    for task in tasks {
        match task.await? {
            Ok(ns) => t.push(ns),
            Err(_) => errors += 1,
        }
    }
    let achieved = t.len() as f64 / start.elapsed().as_secs_f64();
    ensure!(!t.is_empty(), "every call failed");
    Ok((pct(&mut t, 0.5), pct(&mut t, 0.99), achieved, errors))
}

fn pct(samples: &mut [u64], p: f64) -> f64 {
    samples.sort_unstable();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0
}

struct Gw {
    client: AgentClient,
    auth: String,
    key: Keypair,
    body: Vec<u8>,
}

impl Gw {
    /// Token, MCP session and request body for `agent`.
    async fn connect(gateway: &str, agent: &str, key: &std::path::Path, body: Vec<u8>) -> Result<Self> {
        let key = Keypair::from_pkcs8_pem(&std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?)?;
        let mut client = AgentClient::new(gateway, agent, key.clone());
        client.fetch_token(None, Some("load-test")).await?;
        ensure!(client.initialize().await?.status == 200, "initialize through the gateway failed");
        let auth = format!("DPoP {}", client.token.clone().unwrap());
        Ok(Self { client, auth, key, body })
    }

    /// Proofs for `n` requests, signed ahead of time.
    fn proofs(&self, n: usize) -> Vec<String> {
        let now = warden_core::clock::now_secs();
        let token = self.auth.strip_prefix("DPoP ").unwrap();
        (0..n).map(|_| make_dpop_proof(&self.key, "POST", &self.client.mcp_url(), Some(token), now)).collect()
    }

    async fn call(&self, proof: String) -> Result<()> {
        self.send(self.body.clone(), proof, true).await
    }

    async fn send(&self, body: Vec<u8>, proof: String, expect_result: bool) -> Result<()> {
        let r = self.client.post_raw(body, Some(self.auth.clone()), Some(proof)).await?;
        ensure!(r.status == 200 && r.result().is_some() == expect_result, "gateway call failed: {} {}", r.status, r.body);
        Ok(())
    }

    /// Sequential latency of `body` through the gateway alone (no upstream).
    async fn probe(&self, body: Value, n: usize, expect_result: bool) -> Result<(f64, f64)> {
        let body = body.to_string().into_bytes();
        let mut t = Vec::with_capacity(n);
        for p in self.proofs(n) {
            let start = Instant::now();
            self.send(body.clone(), p, expect_result).await?;
            t.push(start.elapsed().as_nanos() as u64);
        }
        Ok((pct(&mut t, 0.5), pct(&mut t, 0.99)))
    }
}

/// Run `n` workers concurrently; each returns how many calls it made.
/// Calls per second, and how many.
async fn workers<F, Fut>(n: usize, mut spawn: F) -> Result<(f64, u64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(spawn())).collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total as f64 / start.elapsed().as_secs_f64(), total))
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let arguments: Value = serde_json::from_str(&a.arguments).context("--arguments must be JSON")?;

    let upstream = Arc::new(Upstream::new(
        UpstreamConfig::new(
            "direct",
            Transport::Http { url: a.direct.clone(), headers_from_env: Default::default(), headers_from_file: Default::default() },
            30,
        ),
        reqwest::Client::new(),
    )?);
    let direct_params = json!({ "name": a.direct_tool, "arguments": arguments });

    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": a.tool, "arguments": arguments } }).to_string().into_bytes();
    let gw = Arc::new(Gw::connect(&a.gateway, &a.agent, &a.key, body.clone()).await?);

    // Warm up both paths (connections, JIT in the upstream).
    for p in gw.proofs(200) {
        gw.call(p).await?;
        upstream.request("tools/call", direct_params.clone()).await?;
    }

    // Phase 0: the gateway's own costs, no upstream involved: `ping` is
    // authentication only; a call denied by policy adds the Cedar decision
    // and the audit commit.
    let (p50, p99) = gw.probe(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }), 1000, true).await?;
    println!("gateway alone, 1000 sequential requests (HTTP round trip included):");
    let http = reqwest::Client::new();
    let health = format!("{}/healthz", a.gateway.trim_end_matches('/'));
    let mut t = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let start = Instant::now();
        http.get(&health).send().await?.bytes().await?;
        t.push(start.elapsed().as_nanos() as u64);
    }
    println!("  GET /healthz (HTTP only)      p50 {:>8.1} µs   p99 {:>8.1} µs", pct(&mut t, 0.5), pct(&mut t, 0.99));
    println!("  ping (authn)                  p50 {p50:>8.1} µs   p99 {p99:>8.1} µs");
    match (&a.probe_agent, &a.probe_key) {
        (Some(agent), Some(key)) => {
            let prober = Gw::connect(&a.gateway, agent, key, body).await?;
            let malformed = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": a.tool, "arguments": 5 } });
            let (p50, p99) = prober.probe(malformed, 1000, false).await?;
            println!("  refused call (authn + audit)  p50 {p50:>8.1} µs   p99 {p99:>8.1} µs");
        }
        _ => println!("  refused call: skipped (give --probe-agent and --probe-key)"),
    }

    // Phase 1: latency, one request in flight, paths interleaved in blocks so
    // that drift in the upstream affects both equally.
    let (mut direct, mut via) = (Vec::with_capacity(a.requests), Vec::with_capacity(a.requests));
    for chunk in 0..a.requests.div_ceil(500) {
        let n = 500.min(a.requests - chunk * 500);
        for _ in 0..n {
            let t = Instant::now();
            upstream.request("tools/call", direct_params.clone()).await?;
            direct.push(t.elapsed().as_nanos() as u64);
        }
        for p in gw.proofs(n) {
            let t = Instant::now();
            gw.call(p).await?;
            via.push(t.elapsed().as_nanos() as u64);
        }
    }
    let (d50, d99) = (pct(&mut direct, 0.50), pct(&mut direct, 0.99));
    let (g50, g99) = (pct(&mut via, 0.50), pct(&mut via, 0.99));
    println!("latency over {} sequential calls per path:", a.requests);
    println!("  direct   p50 {d50:>8.1} µs   p99 {d99:>8.1} µs");
    println!("  gateway  p50 {g50:>8.1} µs   p99 {g99:>8.1} µs");
    println!("  added    p50 {:>8.1} µs   p99 {:>8.1} µs", g50 - d50, g99 - d99);

    // Phase 2: throughput with `concurrency` workers for `seconds` each path,
    // and what each process spent per call (the figure least disturbed by
    // other load on a shared machine).
    let dur = Duration::from_secs(a.seconds);
    let pids = [("gateway", a.gateway_pid), ("upstream", a.upstream_pid)];
    let cpu_now = || pids.iter().map(|(_, p)| p.map(cpu_us).transpose()).collect::<Result<Vec<_>>>();
    let before = cpu_now()?;
    let (direct_rate, direct_calls) = workers(a.concurrency, || {
        let (u, p, until) = (upstream.clone(), direct_params.clone(), Instant::now() + dur);
        async move {
            let mut n = 0u64;
            while Instant::now() < until {
                u.request("tools/call", p.clone()).await?;
                n += 1;
            }
            Ok(n)
        }
    })
    .await?;
    let direct_cpu = per_call(&pids[1..], &before[1..], direct_calls)?;
    let before = cpu_now()?;
    let (gw_rate, gw_calls) = workers(a.concurrency, || {
        let (g, until) = (gw.clone(), Instant::now() + dur);
        async move {
            // Proofs are minted in small batches so that their iat stays fresh.
            let (mut n, mut proofs) = (0u64, Vec::new());
            while Instant::now() < until {
                if proofs.is_empty() {
                    proofs = g.proofs(256);
                }
                g.call(proofs.pop().expect("refilled")).await?;
                n += 1;
            }
            Ok(n)
        }
    })
    .await?;
    let gw_cpu = per_call(&pids, &before, gw_calls)?;
    println!("throughput with {} concurrent clients, {} s per path:", a.concurrency, a.seconds);
    println!("  direct  {direct_rate:>8.0} calls/s{direct_cpu}");
    println!("  gateway {gw_rate:>8.0} calls/s   ratio {:.2}{gw_cpu}", gw_rate / direct_rate);

    // Phase 3: a fixed offered rate on each path.
    if a.rate > 0 {
        let secs = a.seconds.min(10);
        let (d50, d99, d_rate, d_err) = open_loop(a.rate, secs, |_| {
            let (u, p) = (upstream.clone(), direct_params.clone());
            async move { u.request("tools/call", p).await.map(|_| ()).map_err(Into::into) }
        })
        .await?;
        let proofs = Arc::new(gw.proofs((a.rate * secs) as usize));
        let (g50, g99, g_rate, g_err) = open_loop(a.rate, secs, |i| {
            let (g, proofs) = (gw.clone(), proofs.clone());
            async move { g.call(proofs[i].clone()).await }
        })
        .await?;
        println!("fixed offered rate {} calls/s for {secs} s per path (latency from when each call was due):", a.rate);
        println!("  direct   p50 {d50:>8.1} µs   p99 {d99:>8.1} µs   achieved {d_rate:>6.0} calls/s, {d_err} errors");
        println!("  gateway  p50 {g50:>8.1} µs   p99 {g99:>8.1} µs   achieved {g_rate:>6.0} calls/s, {g_err} errors");
        println!("  added    p50 {:>8.1} µs   p99 {:>8.1} µs", g50 - d50, g99 - d99);
    }

    // Phase 4: the agent's latency while strangers flood the gateway with
    // forged tokens from another address (throttled and tallied, not
    // audited one by one).
    if a.flood_clients > 0 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let url = format!("{}/mcp", a.gateway.trim_end_matches('/'));
        let flood: Vec<_> = (0..a.flood_clients)
            .map(|_| {
                let (stop, url) = (stop.clone(), url.clone());
                tokio::spawn(async move {
                    let c = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build()?;
                    let (mut sent, mut throttled) = (0u64, 0u64);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = c.post(&url).header("authorization", "DPoP forged.token.value").body("{}").send().await?;
                        sent += 1;
                        throttled += u64::from(r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS);
                    }
                    anyhow::Ok((sent, throttled))
                })
            })
            .collect();
        let start = Instant::now();
        let mut during = Vec::with_capacity(a.requests);
        for p in gw.proofs(a.requests) {
            let t = Instant::now();
            gw.call(p).await?;
            during.push(t.elapsed().as_nanos() as u64);
        }
        let secs = start.elapsed().as_secs_f64();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut sent, mut throttled) = (0, 0);
        for f in flood {
            let (s, t) = f.await??;
            (sent, throttled) = (sent + s, throttled + t);
        }
        let (f50, f99) = (pct(&mut during, 0.50), pct(&mut during, 0.99));
        println!(
            "latency over {} sequential calls while {} clients flood /mcp with forged tokens ({:.0} requests/s, {throttled} of {sent} answered 429):",
            a.requests,
            a.flood_clients,
            sent as f64 / secs
        );
        println!("  gateway  p50 {f50:>8.1} µs   p99 {f99:>8.1} µs   (alone: p50 {g50:.1} µs, p99 {g99:.1} µs; p99 ratio {:.2})", f99 / g99);
    }

    // Phase 5: memory per open MCP session (each with its own token).
    if a.sessions > 0 {
        let pid = a.gateway_pid.context("--sessions needs --gateway-pid")?;
        let before = rss_kib(pid)?;
        let key = Keypair::from_pkcs8_pem(&std::fs::read_to_string(&a.key)?)?;
        let mut open = Vec::with_capacity(a.sessions);
        for _ in 0..a.sessions {
            let mut c = AgentClient::new(&a.gateway, &a.agent, key.clone());
            c.fetch_token(None, Some("load-test")).await?;
            ensure!(c.initialize().await?.status == 200, "initialize failed");
            open.push(c);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib(pid)?;
        println!(
            "memory: {} sessions open, gateway RSS {before} KiB -> {after} KiB: {:.0} KiB per 1,000 sessions",
            open.len(),
            (after.saturating_sub(before)) as f64 * 1000.0 / open.len() as f64
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_from_proc_and_grows_with_work() {
        let me = std::process::id();
        let before = cpu_us(me).unwrap();
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_us(me).unwrap() > before, "60 ms of work shows in utime+stime");
        assert!(cpu_us(u32::MAX).is_err(), "no such process");
    }
}
