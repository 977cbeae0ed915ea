#!/usr/bin/env bash
# Load benchmark: tools/call through the Warden gateway (DPoP authn, Cedar
# policy, audit commit) vs direct to the same upstream over streamable HTTP:
# the project's own warden-upstream (default; cheap per call, so the gateway
# is what is measured) or, with UPSTREAM=everything, the reference
# server-everything on Node. Everything runs on loopback.
#   [UPSTREAM=fast|everything] [TOOL=echo|record] bash bench/gateway-load.sh [REQUESTS] [CONCURRENCY] [SECONDS] [RATE] [SESSIONS] [FLOOD]
# The throughput phase reports each process's CPU µs per call (/proc
# utime+stime), the figure least disturbed by other load on the machine.
# Phases: the gateway alone; sequential latency; closed-loop throughput;
# a fixed offered RATE (calls/s, open loop) on both paths; sequential latency
# again while FLOOD clients send forged requests from 127.0.0.2; memory per
# 1,000 open MCP sessions (SESSIONS of them).
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-2000} CONCURRENCY=${2:-16} SECONDS_PER_PATH=${3:-10} RATE=${4:-1000} SESSIONS=${5:-1000} FLOOD=${6:-4}
UPSTREAM=${UPSTREAM:-fast} TOOL=${TOOL:-echo}
case "$UPSTREAM:$TOOL" in
  fast:echo | fast:record | everything:echo) ;;
  *) echo "UPSTREAM is fast or everything, TOOL echo or record (record: fast only)" >&2; exit 2 ;;
esac
if [ "$UPSTREAM" = everything ]; then (cd tests/mcp-peers && npm ci --no-audit --no-fund --loglevel=error); fi
cargo build --release --locked -p warden -p warden-bench
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$UPSTREAM" = fast ]; then
  "$BIN/warden-upstream" --listen "127.0.0.1:$port" >"$work/upstream.log" 2>&1 &
else
  PORT=$port node tests/mcp-peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp >"$work/upstream.log" 2>&1 &
fi
pids+=($!)
upstream_pid=$!
for _ in $(seq 100); do grep -q "$port" "$work/upstream.log" && break; sleep 0.1; done

cat >"$work/warden.toml" <<TOML
listen = "127.0.0.1:0"
policy_dir = "$PWD/policies"
# One agent calling as fast as it can is the point here, not an anomaly; the
# probe agent's thousand refused calls would otherwise get it contained.
[monitor]
contain_at = 0
[monitor.learning]
cold_calls_per_minute = 1000000
[[upstream]]
name = "bench"
transport = "http"
url = "http://127.0.0.1:$port/mcp"
TOML
"$BIN/warden" --config "$work/warden.toml" serve 2>"$work/warden.log" &
pids+=($!)
warden_pid=$!
for _ in $(seq 200); do grep -q "serving MCP on" "$work/warden.log" && break; sleep 0.1; done
base=$(sed -n 's/.*serving MCP on \(http:\/\/[0-9.:]*\)\/mcp.*/\1/p' "$work/warden.log")
W() { "$BIN/warden" --config "$work/warden.toml" "$@"; }
W tool set "bench/$TOOL" --sensitivity low --action-class read >/dev/null
W tool approve "bench/$TOOL" >/dev/null
id=$(W agent register load-agent --owner bench@example.com --purpose "load test" --tools "bench/$TOOL" --autonomy 1 --generate-key "$work/agent.pem")
probe=$(W agent register probe-agent --owner bench@example.com --purpose "refused-call probe" --tools "bench/$TOOL" --autonomy 1 --generate-key "$work/probe.pem")
sleep 0.5
echo "gateway $base, upstream http://127.0.0.1:$port/mcp ($UPSTREAM, tool $TOOL), $(nproc) cores"
args='{"message":"hello"}'
[ "$TOOL" = record ] && args='{"customer_id":"c-1001"}'
"$BIN/warden-loadgen" --gateway "$base" --agent "$id" --key "$work/agent.pem" --probe-agent "$probe" --probe-key "$work/probe.pem" --tool "bench__$TOOL" \
  --direct "http://127.0.0.1:$port/mcp" --direct-tool "$TOOL" --arguments "$args" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --seconds "$SECONDS_PER_PATH" \
  --rate "$RATE" --sessions "$SESSIONS" --flood-clients "$FLOOD" --gateway-pid "$warden_pid" --upstream-pid "$upstream_pid"
echo "audit: $(W audit verify)"
