#!/usr/bin/env bash
# Load comparison on loopback: offergate against nginx as the reverse proxy a
# user would otherwise reach for, and against calling the partner directly.
# Bounded (every wrk run has a fixed duration), loopback only, stops by itself.
#
#   benches/load/run.sh [seconds-per-run]      (default 5)
#   ROUNDS=3 benches/load/run.sh               (every scenario once per round,
#                                               rounds interleaved; the table
#                                               gives medians, ratios paired
#                                               within a round)
#   SOAK=60 benches/load/run.sh                (steady forward load after the
#                                               scenarios, RSS sampled; 0: skip)
#   BASELINE=path/to/offergate benches/load/run.sh
#                                              (also runs forward and replay on
#                                               another build, e.g. the last
#                                               commit's, in the same rounds, and
#                                               reports this build / that one)
#
# Pinning (2 cores): the server under test (nginx proxy, offergate, or the
# partner itself for "direct") gets CPU 1 alone; wrk and the partner share CPU 0.
# Prints a markdown table and writes benches/load/results.md and chart.svg.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${ROUNDS:-3}
. benches/load/common.sh
need nginx nginx-light
need wrk wrk
need taskset util-linux
need redis-server redis-server
cargo build --release --locked -q
OG=target/release/offergate

P_PARTNER=18801; P_DIRECT=18802; P_NGINX=18811; P_NGINX_DOWN=18812
P_OG=18821; P_OG_ADMIN=18822; P_OG_DOWN=18831; P_OG_DOWN_ADMIN=18832; P_DEAD=18899
P_BASE=18841; P_BASE_ADMIN=18842
P_REDIS=18861; P_OG_REDIS=18871; P_OG_REDIS_ADMIN=18872

nginx_conf partner "$(partner_block $P_PARTNER)"; start_nginx partner 0
nginx_conf direct "$(partner_block $P_DIRECT)"; start_nginx direct 1
# nginx as the equivalent reverse proxy: keep-alive upstream pool, key injected.
proxy_block() { # port upstream-port
  echo "upstream partner { server 127.0.0.1:$2; keepalive 64; }
  server { listen 127.0.0.1:$1;
    location = $PATH_ { proxy_pass http://partner; proxy_http_version 1.1;
      proxy_set_header Connection \"\"; proxy_set_header X-API-Key \"$KEY\"; } }"
}
nginx_conf proxy "$(proxy_block $P_NGINX $P_PARTNER)"; start_nginx proxy 1
nginx_conf proxydown "$(proxy_block $P_NGINX_DOWN $P_DEAD)"; start_nginx proxydown 1

og_config $P_OG $P_OG_ADMIN $P_PARTNER > "$WORK/og.toml"
og_config $P_OG_DOWN $P_OG_DOWN_ADMIN $P_DEAD > "$WORK/og-down.toml"
BENCH_ENCORE_KEY=$KEY taskset -c 1 $OG run -c "$WORK/og.toml" & OG_PID=$!; PIDS+=($OG_PID)
BENCH_ENCORE_KEY=$KEY taskset -c 1 $OG run -c "$WORK/og-down.toml" & PIDS+=($!)
BASELINE=${BASELINE:-}
if [ -n "$BASELINE" ]; then
  og_config $P_BASE $P_BASE_ADMIN $P_PARTNER > "$WORK/og-base.toml"
  BENCH_ENCORE_KEY=$KEY taskset -c 1 "$BASELINE" run -c "$WORK/og-base.toml" & PIDS+=($!)
  wait_port $P_BASE
fi
# offergate with its state on Redis (Redis beside the partner on CPU 0).
taskset -c 0 redis-server --port $P_REDIS --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 & PIDS+=($!)
wait_port $P_REDIS
{ og_config $P_OG_REDIS $P_OG_REDIS_ADMIN $P_PARTNER
  printf '[state]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:%s/0"\n' $P_REDIS; } > "$WORK/og-redis.toml"
BENCH_ENCORE_KEY=$KEY taskset -c 1 $OG run -c "$WORK/og-redis.toml" & PIDS+=($!)
for p in $P_PARTNER $P_DIRECT $P_NGINX $P_NGINX_DOWN $P_OG $P_OG_DOWN $P_OG_REDIS; do wait_port $p; done
IDLE_RSS=$(awk '/VmRSS/ {print $2}' /proc/$OG_PID/status)

# Open offergate's circuit to the dead partner before measuring it.
for _ in 1 2 3 4 5 6; do curl -s -o /dev/null -X POST "http://127.0.0.1:$P_OG_DOWN$PATH_" -H 'Content-Type: application/json' \
  -d '{"clientId":"c","chatId":"warm","attributes":{"countryCode":"US","language":"en","platform":"ios"}}'; done

RESULTS="$WORK/results.tsv"
run() { # round label target-port conns lua-script
  local round=$1; shift
  local label=$1 port=$2 conns=$3 script=$4 out key=""
  [ "$label" = direct ] && key=$KEY
  out=$(env ${key:+API_KEY=$key} taskset -c 0 wrk -t1 -c"$conns" -d"${SECS}s" --latency -s "$script" "http://127.0.0.1:$port$PATH_" 2>&1)
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$label" "$conns" "$rps" "$p50" "$p99" "${non2xx:-0}" >> "$RESULTS"
  echo "round $round: $label c=$conns: $rps req/s, p50 $p50, p99 $p99, non-2xx ${non2xx:-0}" >&2
}
# Rounds interleave the scenarios, so a slow spell of this shared machine
# lands on all of them rather than on one.
for round in $(seq "$ROUNDS"); do
  for c in 1 32; do
    run "$round" direct $P_DIRECT $c $HERE/forward.lua
    run "$round" nginx_forward $P_NGINX $c $HERE/forward.lua
    run "$round" offergate_forward $P_OG $c $HERE/forward.lua
    run "$round" offergate_replay $P_OG $c $HERE/replay.lua
    run "$round" redis_forward $P_OG_REDIS $c $HERE/forward.lua
    run "$round" redis_replay $P_OG_REDIS $c $HERE/replay.lua
    if [ -n "$BASELINE" ]; then
      run "$round" baseline_forward $P_BASE $c $HERE/forward.lua
      run "$round" baseline_replay $P_BASE $c $HERE/replay.lua
    fi
    run "$round" nginx_partner_down $P_NGINX_DOWN $c $HERE/forward.lua
    run "$round" offergate_circuit_open $P_OG_DOWN $c $HERE/forward.lua
  done
done
PEAK_RSS=$(awk '/VmHWM/ {print $2}' /proc/$OG_PID/status)

# Soak: steady forward load (every request a new idempotency key), RSS sampled
# every 5 s. Shows the store staying inside its byte bound and RSS not growing.
SOAK=${SOAK:-60}
SOAK_FILE="$WORK/soak.tsv"; : > "$SOAK_FILE"
if [ "$SOAK" -gt 0 ]; then
  taskset -c 0 wrk -t1 -c32 -d"${SOAK}s" -s $HERE/forward.lua "http://127.0.0.1:$P_OG$PATH_" > "$WORK/soak.txt" 2>&1 & W=$!
  for t in $(seq 5 5 "$SOAK"); do
    sleep 5
    printf '%s\t%s\n' "$t" "$(awk '/VmRSS/ {print $2}' /proc/$OG_PID/status)" >> "$SOAK_FILE"
  done
  wait $W || true
  SOAK_REQUESTS=$(awk '/requests in/ {print $1}' "$WORK/soak.txt")
  echo "soak: $SOAK_REQUESTS requests in ${SOAK}s" >&2
fi

WRK_VERSION=$( (wrk --version 2>&1 || true) | head -1 | cut -d' ' -f2)
MACHINE="$(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs), $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -sr), nginx $(nginx -v 2>&1 | cut -d/ -f2), wrk $WRK_VERSION"
python3 $HERE/report.py "$RESULTS" "$IDLE_RSS" "$PEAK_RSS" "$MACHINE" "$SECS" $HERE/results.md $HERE/chart.svg \
  "$SOAK_FILE" "${SOAK_REQUESTS:-0}" 33554432
cat $HERE/results.md
