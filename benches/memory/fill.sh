#!/usr/bin/env bash
# Every store offergate keeps filled to its bound at once, inside a memory
# cgroup of the limit the deploy files ship (384 MiB): the gateway must not
# be killed, and its RSS is reported before, after each fill, and at the end.
#   benches/memory/fill.sh [LIMIT_MIB]
# Fills, through the release binary in front of the simulator, with wrk:
# 200,000 offers with their own Idempotency-Key, chat and clientId (the
# idempotency store's 100,000 entries, the 100,000-thread map, the caller
# buckets), then 1,000,000 opt-outs (their bound). Needs root for the cgroup
# (v1 memory or v2); the thread file is on (the shipped default).
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT_MIB=${1:-384}
command -v wrk >/dev/null || { echo "fill.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release --locked --bin offergate -q
BIN=$PWD/target/release/offergate
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rmdir "$CG" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SIM=$(free_port); LISTEN=$(free_port); ADMIN=$(free_port)
# The cgroup: v2 if mounted, else v1's memory controller.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  CG=/sys/fs/cgroup/offergate-fill-$$; mkdir "$CG"; echo $((LIMIT_MIB * 1024 * 1024)) > "$CG/memory.max"; echo 0 > "$CG/memory.swap.max" 2>/dev/null || true
else
  CG=/sys/fs/cgroup/memory/offergate-fill-$$; mkdir "$CG"; echo $((LIMIT_MIB * 1024 * 1024)) > "$CG/memory.limit_in_bytes"
fi
"$BIN" simulate --listen "127.0.0.1:$SIM" >/dev/null 2>&1 & PIDS+=($!)
for n in 1 2 3; do printf 'fill-bench-secret-%s-0123456789\n' "$n" > "$WORK/s$n"; done
cat > "$WORK/og.toml" <<TOML
[server]
listen = "127.0.0.1:$LISTEN"
admin_listen = "127.0.0.1:$ADMIN"
max_in_flight = 100000
[log]
level = "warn"
access_log = false
[encore]
base_url = "http://127.0.0.1:$SIM"
api_key_env = "FILL_KEY"
chat_id_key_file = "$WORK/s1"
[encore.rate_limit]
enabled = false
[[besitos.partners]]
id = "p"
token_file = "$WORK/s2"
[state]
thread_file = "$WORK/threads.redb"
TOML
( echo $BASHPID > "$CG/cgroup.procs" 2>/dev/null || echo $BASHPID > "$CG/tasks"; FILL_KEY=pk_test_fill exec "$BIN" run -c "$WORK/og.toml" ) >/dev/null 2>"$WORK/og.err" &
OG=$!; PIDS+=($OG)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$OG/status"; }
echo "fill: limit ${LIMIT_MIB} MiB; RSS idle $(rss) MiB"
cat > "$WORK/offers.lua" <<'LUA'
local n = 0
local run = tostring(math.random(1, 1000000000))
request = function()
  n = n + 1
  local id = run .. "-" .. wrk.thread:get("id") .. "-" .. n
  local body = '{"clientId":"c' .. id .. '","chatId":"t' .. id .. '","attributes":{"countryCode":"US","language":"en","platform":"ios"}}'
  return wrk.format("POST", "/encore/publisher/sdk/v1/offers/message", { ["Content-Type"] = "application/json", ["Idempotency-Key"] = "k" .. id }, body)
end
LUA
cat > "$WORK/optouts.lua" <<'LUA'
local n = 0
local run = tostring(math.random(1, 1000000000))
request = function()
  n = n + 1
  local body = '{"clientId":"c","chatId":"o' .. run .. "-" .. wrk.thread:get("id") .. "-" .. n .. '"}'
  return wrk.format("POST", "/offergate/v1/encore/opt-out", { ["Content-Type"] = "application/json" }, body)
end
LUA
# wrk runs for a time: the scripts' threads are told apart by id, and each
# run is long enough for its count at this machine's rate (reported).
setup_ids='local i = 0; setup = function(t) i = i + 1; t:set("id", i) end'
sed -i "1i $setup_ids" "$WORK/offers.lua" "$WORK/optouts.lua"
count() { curl -fs "http://127.0.0.1:$ADMIN/metrics" | awk -v s="$1" 'index($0, s) == 1 {print int($2)}'; }
fill() { # fill SCRIPT TARGET SERIES
  local done=0
  while [ "${done:-0}" -lt "$2" ]; do
    wrk -t2 -c32 -d5s -s "$1" "http://127.0.0.1:$LISTEN" >/dev/null
    kill -0 "$OG" 2>/dev/null || { echo "fill: offergate was killed (OOM?) at RSS beyond ${LIMIT_MIB} MiB" >&2; tail -5 "$WORK/og.err" >&2; exit 1; }
    done=$(count "$3")
    echo "fill: $3 = ${done:-0}, RSS $(rss) MiB"
  done
}
fill "$WORK/offers.lua" 200000 'offergate_requests_total{outcome="forwarded",route="encore_offers"}'
fill "$WORK/optouts.lua" 1000000 'offergate_requests_total{outcome="answered",route="encore_opt_out"}'
echo "fill: every store at its bound: RSS $(rss) MiB under a ${LIMIT_MIB} MiB limit; peak $(awk '/VmHWM/ {print int($2/1024)}' "/proc/$OG/status") MiB"
