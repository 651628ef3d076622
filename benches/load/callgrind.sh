#!/usr/bin/env bash
# Instructions and heap allocations per request through the real binary, under
# valgrind's callgrind: counts, not timings, so they hold still on a noisy
# machine and show what a change saved. Loopback only, bounded, stops itself.
#
#   benches/load/callgrind.sh [forward|replay] [offergate|bare]
#                                                     (default forward offergate;
#                                                      bare: the reference proxy)
#   DUMP_TO=cg.out benches/load/callgrind.sh          (keeps the dump for
#                                                      callgrind_annotate)
#   REDIS=1 benches/load/callgrind.sh                 (state on a redis-server
#                                                      of its own)
#   OG_BIN=path/to/offergate benches/load/callgrind.sh (another build, such as
#                                                      a baseline; nothing built)
#   BASELINE_DROP='^chat_id_key_env' OG_BIN=...       (config lines an older
#                                                      build does not know, an
#                                                      extended regex, left out)
#   THREAD_FILE= benches/load/callgrind.sh            (threads in memory only;
#                                                      by default they are
#                                                      written to a thread file,
#                                                      as shipped)
#
# An nginx static partner on CPU 0, offergate under callgrind on CPU 1, wrk (8
# connections) for 2 s of warm-up, counters zeroed, 4 s measured, counters
# dumped. User-space only: the kernel's share of a request is not counted.
set -euo pipefail
cd "$(dirname "$0")/../.."
SCENARIO=${1:-forward}
SERVER=${2:-offergate}
. benches/load/common.sh
need nginx nginx-light
need wrk wrk
need valgrind valgrind
need taskset util-linux
# Line tables make the dump readable with callgrind_annotate; same code otherwise.
[ -n "${OG_BIN:-}" ] || CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --locked -q --bin offergate --example bare
P_PARTNER=18951; P_OG=18952; P_ADMIN=18953
nginx_conf partner "$(partner_block $P_PARTNER)"; start_nginx partner 0
og_config $P_OG $P_ADMIN $P_PARTNER \
  | { if [ -n "${BASELINE_DROP:-}" ]; then grep -Ev "$BASELINE_DROP"; else cat; fi; } > "$WORK/og.toml"
if [ "${REDIS:-0}" = 1 ]; then
  # State on a redis-server of its own (beside the partner, on CPU 0).
  need redis-server redis-server
  P_REDIS=18954
  taskset -c 0 redis-server --port $P_REDIS --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 & PIDS+=($!)
  wait_port $P_REDIS
  printf '[state]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:%s/0"\ntimeout_ms = 2000\n' $P_REDIS >> "$WORK/og.toml"
fi
if [ "$SERVER" = bare ]; then
  CMD=(target/release/examples/bare 127.0.0.1:$P_OG 127.0.0.1:$P_PARTNER "$KEY" 1)
else
  CMD=("${OG_BIN:-target/release/offergate}" run -c "$WORK/og.toml")
fi
OFFERGATE_STATE__THREAD_FILE="${THREAD_FILE-$WORK/threads.redb}" BENCH_ENCORE_KEY=$KEY taskset -c 1 valgrind --tool=callgrind --dump-instr=no \
  --callgrind-out-file="$WORK/cg.out" "${CMD[@]}" \
  2>"$WORK/valgrind.log" & OG=$!; PIDS+=($OG)
wait_port $P_PARTNER
wait_port $P_OG "$OG" || { cat "$WORK/valgrind.log" >&2; exit 1; }
load() { taskset -c 0 wrk -t1 -c8 -d"$1" -s "$HERE/$SCENARIO.lua" "http://127.0.0.1:$P_OG$PATH_"; }
load 2s >/dev/null
callgrind_control -z "$OG" >/dev/null 2>&1
load 4s > "$WORK/wrk.txt"
callgrind_control -d "$OG" >/dev/null 2>&1
sleep 1
REQUESTS=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
DUMP=$(ls "$WORK"/cg.out.* | head -1)
[ -n "${DUMP_TO:-}" ] && cp "$DUMP" "$DUMP_TO"
python3 - "$DUMP" "$REQUESTS" "$SERVER $SCENARIO" <<'PY'
import re, sys
dump, requests, scenario = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names, total, allocs, callee = {}, 0, 0, None
alloc_fns = {"mi_malloc_aligned", "mi_zalloc_aligned", "mi_realloc_aligned"}
for line in open(dump, errors="replace"):
    if line.startswith("summary:") or line.startswith("totals:"):
        total = int(line.split()[1])
    m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2).strip()
        callee = names.get(m.group(1)) if line.startswith("cfn=") else None
        continue
    if line.startswith("calls=") and callee in alloc_fns:
        allocs += int(line.split()[0][6:])
print(f"{scenario}: {requests} requests measured; "
      f"{total / requests:,.0f} instructions and {allocs / requests:.1f} heap allocations per request")
PY
