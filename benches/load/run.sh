#!/usr/bin/env bash
# Load comparison on loopback: offergate against nginx as the reverse proxy a
# user would otherwise reach for, against `bare` (the least a hyper 1 + tokio
# proxy can do: benches/bare), and against calling the partner directly.
# Bounded (every wrk run has a fixed duration), loopback only, stops by itself.
#
#   benches/load/run.sh [seconds-per-run]      (default 5)
#   ROUNDS=3      every scenario once per round, rounds interleaved; the table
#                 gives medians, ratios paired within a round
#   CORES=1       cores for the server under test (nginx workers, offergate's
#                 and bare's worker threads). With 3 × CORES + 1 CPUs or more,
#                 the server, wrk and the partner get their own CPUs; on fewer
#                 (the 2-core machine, CORES=1) the server gets CPU 1 alone and
#                 wrk and the partner share CPU 0
#   CONNS="1 32"  connection counts (1 shows the latency offergate adds)
#   SOAK=60       steady forward load after the scenarios, RSS sampled; 0: skip
#   REDIS=1       also offergate with its state on a redis-server; 0: skip
#   TRACES=1      also offergate exporting traces (OTLP/HTTP to an nginx that
#                 answers 200) at sample_ratio 0.01 and 1.0; 0: skip
#   BASELINE=path/to/offergate   also forward and replay on another build, in
#                 the same rounds, reported as this build / that one (with
#                 REDIS=1, its state on the same redis-server, another db)
#   BASELINE_DROP='^chat_id_key_env'  config lines the baseline does not
#                 know (an extended regex), left out of its config
#   BASELINE_THREADS=1  the baseline knows [state] thread_file: it gets the
#                 same THREAD_FILE setting as this build
#   ONLY="offergate_forward offergate_memory nginx_forward"
#                 run only these scenarios (a quick paired check; SOAK=0
#                 REDIS=0 TRACES=0 to skip the rest)
#
# offergate_forward is the shipped configuration (the thread file on, a new
# chat per call); offergate_memory is the same build with thread_file = ""
# (threads in memory only), run right after it in each round.
#
# CPU per request: user + system time of the server's processes over each run
# (/proc), divided by the requests it answered.
# Prints a markdown table and writes benches/load/results.md and chart.svg.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
ROUNDS=${ROUNDS:-3}
CORES=${CORES:-1}
CONNS=${CONNS:-1 32}
REDIS=${REDIS:-1}
TRACES=${TRACES:-1}
. benches/load/common.sh
need nginx nginx-light
need wrk wrk
need taskset util-linux
need openssl openssl
[ "$REDIS" = 1 ] && need redis-server redis-server
cargo build --release --locked -q --bin offergate --example bare
OG=target/release/offergate
BARE=target/release/examples/bare

# CPU sets: "a-b" ranges for taskset.
span() { [ "$2" -le 1 ] && echo "$1" || echo "$1-$(($1 + $2 - 1))"; }
if [ "$(nproc)" -ge $((3 * CORES + 1)) ]; then
  SRV=$(span 1 "$CORES"); LOAD=$(span $((1 + CORES)) "$CORES"); PARTNER=$(span $((1 + 2 * CORES)) "$CORES")
elif [ "$CORES" = 1 ]; then
  SRV=1; LOAD=0; PARTNER=0
else
  echo "CORES=$CORES needs $((3 * CORES + 1)) CPUs, this machine has $(nproc)" >&2; exit 2
fi
export TOKIO_WORKER_THREADS=$CORES

P_PARTNER=18801; P_DIRECT=18802; P_TLS_PARTNER=18803
P_NGINX=18811; P_NGINX_DOWN=18812; P_NGINX_TLS=18813
P_BARE=18851
P_OG=18821; P_OG_DOWN=18831; P_OG_NOIDEM=18833; P_OG_TLS=18835; P_DEAD=18899
P_OG_MEM=18837
P_BASE=18841; P_REDIS=18861; P_OG_REDIS=18871; P_BASE_REDIS=18881
P_COLLECTOR=18804; P_OG_TRACE_LOW=18875; P_OG_TRACE_ALL=18877

# A CA and a leaf certificate for the TLS partner (127.0.0.1 and localhost).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$WORK/leaf.key" \
  -out "$WORK/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$WORK/san.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/san.ext" -out "$WORK/leaf.pem" 2>/dev/null

nginx_conf partner "$(partner_block $P_PARTNER)
  $(partner_block $P_TLS_PARTNER "$WORK/leaf.pem" "$WORK/leaf.key")
  server { listen 127.0.0.1:$P_COLLECTOR; location = /v1/traces { return 200; } }" "$CORES"
start_nginx partner "$PARTNER"
nginx_conf direct "$(partner_block $P_DIRECT)" "$CORES"; start_nginx direct "$SRV"
# nginx as the equivalent reverse proxy: keep-alive upstream pool, key injected.
proxy_block() { # port upstream-port [tls]
  local scheme=http ssl=""
  [ -n "${3:-}" ] && scheme=https && ssl="proxy_ssl_trusted_certificate $WORK/ca.pem;
      proxy_ssl_verify on; proxy_ssl_name localhost; proxy_ssl_session_reuse on;"
  echo "upstream up$1 { server 127.0.0.1:$2; keepalive 64; }
  server { listen 127.0.0.1:$1;
    location = $PATH_ { proxy_pass $scheme://up$1; proxy_http_version 1.1; $ssl
      proxy_set_header Connection \"\"; proxy_set_header X-API-Key \"$KEY\"; }
    location = $BESITOS_PATH { proxy_pass $scheme://up$1; proxy_http_version 1.1; $ssl
      proxy_set_header Connection \"\"; proxy_set_header Authorization \"Bearer $KEY\"; } }"
}
nginx_conf proxy "$(proxy_block $P_NGINX $P_PARTNER)
  $(proxy_block $P_NGINX_TLS $P_TLS_PARTNER tls)
  $(proxy_block $P_NGINX_DOWN $P_DEAD)" "$CORES"
start_nginx proxy "$SRV"
taskset -c "$SRV" $BARE 127.0.0.1:$P_BARE 127.0.0.1:$P_PARTNER "$KEY" "$CORES" & PIDS+=($!)

start_og() { # name port config-extra [binary]
  { og_config "$2" $(($2 + 1)) "${P_UP:-$P_PARTNER}" "${SCHEME:-http}"; printf '%s\n' "$3"; } \
    | { if [ -n "${4:-}" ] && [ -n "${BASELINE_DROP:-}" ]; then grep -Ev "$BASELINE_DROP"; else cat; fi; } \
    > "$WORK/og-$1.toml"
  # The build under test keeps its threads in a file of its own (as shipped;
  # THREAD_FILE= for memory only); a baseline older than the thread file
  # knows no such key (BASELINE_THREADS=1: it does, give it the same).
  local threads=()
  [ -z "${4:-}" ] || [ "${BASELINE_THREADS:-0}" = 1 ] \
    && threads=(env OFFERGATE_STATE__THREAD_FILE="${THREAD_FILE-$WORK/threads-$1.redb}")
  "${threads[@]}" env BENCH_ENCORE_KEY=$KEY taskset -c "$SRV" "${4:-$OG}" run -c "$WORK/og-$1.toml" & PIDS+=($!)
  eval "PID_$1=$!"
}
start_og main $P_OG ""
THREAD_FILE= start_og memory $P_OG_MEM ""
P_UP=$P_DEAD start_og down $P_OG_DOWN ""
start_og noidem $P_OG_NOIDEM "$(printf '[encore.idempotency]\nenabled = false\n[besitos.idempotency]\nenabled = false')"
P_UP=$P_TLS_PARTNER SCHEME=https start_og tls $P_OG_TLS "$(printf '[tls]\nextra_ca_files = ["%s"]' "$WORK/ca.pem")"
BASELINE=${BASELINE:-}
[ -n "$BASELINE" ] && start_og base $P_BASE "" "$BASELINE"
if [ "$REDIS" = 1 ]; then
  # offergate with its state on Redis (Redis beside the partner).
  taskset -c "$PARTNER" redis-server --port $P_REDIS --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 & PIDS+=($!)
  wait_port $P_REDIS
  start_og redis $P_OG_REDIS "$(printf '[state]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:%s/0"' $P_REDIS)"
  [ -n "$BASELINE" ] && start_og base_redis $P_BASE_REDIS \
    "$(printf '[state]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:%s/1"' $P_REDIS)" "$BASELINE"
fi
if [ "$TRACES" = 1 ]; then
  # Traces exported to a collector that takes them (nginx, beside the partner).
  traces() { printf '[tracing]\notlp_endpoint = "http://127.0.0.1:%s"\nsample_ratio = %s\n' $P_COLLECTOR "$1"; }
  start_og trace_low $P_OG_TRACE_LOW "$(traces 0.01)"
  start_og trace_all $P_OG_TRACE_ALL "$(traces 1.0)"
  wait_port $P_OG_TRACE_LOW; wait_port $P_OG_TRACE_ALL
fi
for p in $P_PARTNER $P_TLS_PARTNER $P_DIRECT $P_NGINX $P_NGINX_DOWN $P_BARE $P_OG $P_OG_MEM $P_OG_DOWN $P_OG_NOIDEM $P_OG_TLS; do wait_port $p; done
[ -n "$BASELINE" ] && wait_port $P_BASE
[ "$REDIS" = 1 ] && wait_port $P_OG_REDIS
[ "$REDIS" = 1 ] && [ -n "$BASELINE" ] && wait_port $P_BASE_REDIS
IDLE_RSS=$(awk '/VmRSS/ {print $2}' /proc/$PID_main/status)

# Open offergate's circuit to the dead partner before measuring it.
for _ in 1 2 3 4 5 6; do curl -s -o /dev/null -X POST "http://127.0.0.1:$P_OG_DOWN$PATH_" -H 'Content-Type: application/json' \
  -d '{"clientId":"c","chatId":"warm","attributes":{"countryCode":"US","language":"en","platform":"ios"}}'; done

# The server processes behind a port: every process holding its listening
# socket (nginx: the master and its workers).
server_pids() { # port
  ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}
cpu_ticks() { # pids...: user + system ticks
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo $t
}
TICK=$(getconf CLK_TCK)

RESULTS="$WORK/results.tsv"
run() { # round label target-port conns lua-script [path]
  local round=$1 label=$2 port=$3 conns=$4 script=$5 path=${6:-$PATH_} out key="" pids before after
  [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $label "* ]] || return 0
  [ "${label%%_*}" = direct ] && key=$KEY
  pids=$(server_pids "$port")
  before=$(cpu_ticks $pids)
  out=$(env ${key:+API_KEY=$key} taskset -c "$LOAD" wrk -t"$CORES" -c"$conns" -d"${SECS}s" --latency -s "$script" "http://127.0.0.1:$port$path" 2>&1)
  after=$(cpu_ticks $pids)
  local rps p50 p99 total non2xx cpu_us
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  cpu_us=$(awk -v t=$((after - before)) -v n="${total:-0}" -v hz="$TICK" 'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "nan" }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$label" "$conns" "$rps" "$p50" "$p99" "${non2xx:-0}" "$cpu_us" >> "$RESULTS"
  # wrk's socket errors (connect, read, write, timeout), when it had any.
  local errors
  errors=$(awk '/Socket errors/ { $1 = $2 = ""; print ";" $0 }' <<<"$out")
  echo "round $round: $label c=$conns: $rps req/s, p50 $p50, p99 $p99, CPU $cpu_us µs/req, non-2xx ${non2xx:-0}$errors" >&2
}
# Rounds interleave the scenarios, so a slow spell of a shared machine lands
# on all of them rather than on one.
F=$HERE/forward.lua; R=$HERE/replay.lua; K=$HERE/forward_key.lua; B=$HERE/besitos.lua
for round in $(seq "$ROUNDS"); do
  for c in $CONNS; do
    run "$round" direct $P_DIRECT "$c" $F
    run "$round" nginx_forward $P_NGINX "$c" $F
    run "$round" bare_forward $P_BARE "$c" $F
    run "$round" offergate_forward $P_OG "$c" $F
    run "$round" offergate_memory $P_OG_MEM "$c" $F
    if [ "$c" = 1 ] && [ "$REDIS" = 1 ]; then
      # What Redis adds at one connection, against one Redis round trip
      # measured now from the server's CPU (redis-benchmark's PING, one
      # client: an idle CPU woken for each reply is part of a round trip).
      run "$round" redis_forward $P_OG_REDIS "$c" $F
      [ -n "$BASELINE" ] && run "$round" baseline_redis_forward $P_BASE_REDIS "$c" $F
      ping=$(taskset -c "$SRV" redis-benchmark -h 127.0.0.1 -p $P_REDIS -c 1 -n 20000 -t ping -q 2>/dev/null \
        | awk -F'p50=' '/PING_MBULK/ { split($2, a, " "); print a[1] "ms" }')
      printf '%s\tredis_ping\t1\tnan\t%s\t%s\t0\tnan\n' "$round" "${ping:-nan}" "${ping:-nan}" >> "$RESULTS"
    fi
    [ "$c" = 1 ] && continue # latency at one connection: the forward path only
    run "$round" offergate_replay $P_OG "$c" $R
    run "$round" offergate_key $P_OG "$c" $K
    run "$round" offergate_noidem $P_OG_NOIDEM "$c" $F
    run "$round" direct_besitos $P_DIRECT "$c" $B "$BESITOS_PATH"
    run "$round" nginx_besitos $P_NGINX "$c" $B "$BESITOS_PATH"
    run "$round" offergate_besitos $P_OG "$c" $B "$BESITOS_PATH"
    run "$round" nginx_tls $P_NGINX_TLS "$c" $F
    run "$round" offergate_tls $P_OG_TLS "$c" $F
    run "$round" nginx_partner_down $P_NGINX_DOWN "$c" $F
    run "$round" offergate_circuit_open $P_OG_DOWN "$c" $F
    if [ "$REDIS" = 1 ]; then
      run "$round" redis_forward $P_OG_REDIS "$c" $F
      run "$round" redis_replay $P_OG_REDIS "$c" $R
      if [ -n "$BASELINE" ]; then
        run "$round" baseline_redis_forward $P_BASE_REDIS "$c" $F
        run "$round" baseline_redis_replay $P_BASE_REDIS "$c" $R
      fi
    fi
    if [ "$TRACES" = 1 ]; then
      run "$round" traced_low_forward $P_OG_TRACE_LOW "$c" $F
      run "$round" traced_all_forward $P_OG_TRACE_ALL "$c" $F
    fi
    if [ -n "$BASELINE" ]; then
      run "$round" baseline_forward $P_BASE "$c" $F
      run "$round" baseline_replay $P_BASE "$c" $R
    fi
  done
done
PEAK_RSS=$(awk '/VmHWM/ {print $2}' /proc/$PID_main/status)
# What the traced instances made and what they could not send: their
# requests (each a call span and a try span) and their dropped spans.
export TRACES_TSV="$WORK/traces.tsv"; : > "$TRACES_TSV"
if [ "$TRACES" = 1 ]; then
  for t in "low $P_OG_TRACE_LOW" "all $P_OG_TRACE_ALL"; do
    set -- $t
    m=$(curl -s "http://127.0.0.1:$(($2 + 1))/metrics")
    calls=$(awk '/^offergate_requests_total\{/ { n += $2 } END { print n + 0 }' <<<"$m")
    full=$(awk -F'} ' '/^offergate_trace_spans_dropped_total\{reason="queue_full"\}/ { print $2 }' <<<"$m")
    failed=$(awk -F'} ' '/^offergate_trace_spans_dropped_total\{reason="export_failed"\}/ { print $2 }' <<<"$m")
    printf '%s\t%s\t%s\t%s\n' "$1" "$calls" "${full:-0}" "${failed:-0}" >> "$TRACES_TSV"
  done
fi

# Soak: steady forward load (every request a new idempotency key), RSS sampled
# every 5 s. Shows the store staying inside its byte bound and RSS not growing.
SOAK=${SOAK:-60}
SOAK_FILE="$WORK/soak.tsv"; : > "$SOAK_FILE"
if [ "$SOAK" -gt 0 ]; then
  taskset -c "$LOAD" wrk -t"$CORES" -c32 -d"${SOAK}s" -s $F "http://127.0.0.1:$P_OG$PATH_" > "$WORK/soak.txt" 2>&1 & W=$!
  for t in $(seq 5 5 "$SOAK"); do
    sleep 5
    printf '%s\t%s\n' "$t" "$(awk '/VmRSS/ {print $2}' /proc/$PID_main/status)" >> "$SOAK_FILE"
  done
  wait $W || true
  SOAK_REQUESTS=$(awk '/requests in/ {print $1}' "$WORK/soak.txt")
  echo "soak: $SOAK_REQUESTS requests in ${SOAK}s" >&2
fi

WRK_VERSION=$( (wrk --version 2>&1 || true) | head -1 | cut -d' ' -f2)
MACHINE="$(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs), $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -sr), nginx $(nginx -v 2>&1 | cut -d/ -f2), wrk $WRK_VERSION; server on CPUs $SRV ($CORES cores), wrk on $LOAD, partner on $PARTNER"
# Memory bound: the Encore and Besitos stores (32 MiB each by default; the
# scenarios fill both) plus the thread cap's map at its bound.
python3 $HERE/report.py "$RESULTS" "$IDLE_RSS" "$PEAK_RSS" "$MACHINE" "$SECS" $HERE/results.md $HERE/chart.svg \
  "$SOAK_FILE" "${SOAK_REQUESTS:-0}" 67108864 15
cp "$RESULTS" $HERE/results.tsv
cat $HERE/results.md
