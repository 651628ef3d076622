"""Turns the load runs into a markdown table (with ratios, CPU per request and
the performance targets) and an SVG chart of req/s and p99 per scenario.
Standard library only."""
import datetime
import os
import sys

results, idle_kib, peak_kib, machine, secs, md_path, svg_path, soak_path, soak_requests, store_max_bytes = sys.argv[1:11]
# The thread cap's in-memory map at its bound (100,000 threads; RSS 14.4 MiB
# higher with thread_cap = 3 than 0 after 597 k distinct chats on the 2-core
# machine, 2026-11-23; 22.4 MiB before the inline offer lists): the other
# bounded structure a forward-only soak fills.
thread_map_mib = float(sys.argv[11]) if len(sys.argv) > 11 else 0.0


def ms(s):
    """wrk latency ("812.00us", "1.23ms", "1.02s") in milliseconds."""
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if s.endswith(unit):
            return float(s[: -len(unit)]) * factor
    return float("nan")


runs = []
for line in open(results):
    rnd, label, conns, rps, p50, p99, non2xx, cpu = (line.rstrip("\n").split("\t") + ["nan"])[:8]
    runs.append(dict(round=int(rnd), label=label, c=int(conns), rps=float(rps or "nan"), p50=ms(p50), p99=ms(p99), non2xx=int(non2xx or 0), cpu=float(cpu)))
run_by = {(r["round"], r["label"], r["c"]): r for r in runs}
rounds = sorted({r["round"] for r in runs})


def median(xs):
    xs = sorted(x for x in xs if x == x)
    if not xs:
        return float("nan")
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


# One row per scenario: the median of its rounds.
rows, by = [], {}
for r in runs:
    key = (r["label"], r["c"])
    if key in by:
        continue
    mine = [x for x in runs if (x["label"], x["c"]) == key]
    row = dict(label=r["label"], c=r["c"], **{k: median([x[k] for x in mine]) for k in ("rps", "p50", "p99", "cpu")})
    row["non2xx"] = sum(x["non2xx"] for x in mine)
    rows.append(row)
    by[key] = row


def ratio(a, b):
    return a / b if b else float("nan")


def paired(label, other, c, key="rps"):
    """The median over rounds of label's req/s (or CPU per request) over
    other's in the same round: a slow spell of the machine hits both sides."""
    return median(
        [ratio(run_by[(n, label, c)][key], run_by[(n, other, c)][key]) for n in rounds if (n, label, c) in run_by and (n, other, c) in run_by]
    )


# What each scenario is compared with in the "× nginx" column.
baseline = {
    "offergate_circuit_open": "nginx_partner_down",
    "offergate_besitos": "nginx_besitos",
    "offergate_tls": "nginx_tls",
}
lines = [
    f"Run {datetime.date.today()}, {secs} s per run, {len(rounds)} interleaved rounds (medians; ratios paired within a round), wrk. Machine: {machine}.",
    "",
    "| scenario | conns | req/s | p50 ms | p99 ms | CPU µs/req | × direct | × nginx | CPU × nginx | non-2xx |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
for r in rows:
    if r["label"] == "redis_ping":  # a round trip, reported below the table
        continue
    direct = "direct_besitos" if "besitos" in r["label"] else "direct"
    vs_direct = f'{paired(r["label"], direct, r["c"]):.2f}'
    other = baseline.get(r["label"], "nginx_forward")
    mine = r["label"].startswith(("offergate", "bare"))
    vs_nginx = f'{paired(r["label"], other, r["c"]):.2f}' if mine else "-"
    cpu_nginx = f'{paired(r["label"], other, r["c"], "cpu"):.2f}' if mine else "-"
    lines.append(
        f'| {r["label"]} | {r["c"]} | {r["rps"]:.0f} | {r["p50"]:.3f} | {r["p99"]:.3f} | {r["cpu"]:.1f} | {vs_direct} | {vs_nginx} | {cpu_nginx} | {r["non2xx"]} |'
    )

def compare(title, forward, replay, per_request, names=("forward", "replay")):
    """Two offergates' forward and replay, each (this, that) paired within
    each round, at every connection count both were run at."""
    ran = lambda label: {r["c"] for r in runs if r["label"] == label}
    conns = sorted(ran(forward[0]) & ran(forward[1]))
    if not conns:
        return
    lines.extend(["", title])
    for c in conns:
        parts = []
        for what, (a, b) in zip(names, (forward, replay)):
            part = f"{what} {paired(a, b, c):.2f} ×"
            if per_request:
                extra = 1e6 / by[(a, c)]["rps"] - 1e6 / by[(b, c)]["rps"] if by.get((a, c)) and by.get((b, c)) else float("nan")
                part += f" ({extra:+.1f} µs per request)"
            parts.append(part)
        lines.append(f"- {c} conns: " + ", ".join(parts))


if any(r["label"] == "offergate_memory" for r in runs):
    lines.extend(["", "The thread file (as shipped) against threads in memory only (thread_file = \"\", same build), paired within each round:"])
    for c in sorted({r["c"] for r in runs if r["label"] == "offergate_memory"}):
        on, off = by.get(("offergate_forward", c)), by.get(("offergate_memory", c))
        extra = 1e6 / on["rps"] - 1e6 / off["rps"] if on and off else float("nan")
        lines.append(
            f"- {c} conns: forward {paired('offergate_forward', 'offergate_memory', c):.2f} × ({extra:+.1f} µs per request); "
            f"p99 {paired('offergate_forward', 'nginx_forward', c, 'p99'):.2f} × nginx's with the file, "
            f"{paired('offergate_memory', 'nginx_forward', c, 'p99'):.2f} × without"
        )
if len(rounds) > 1:
    # Whether cost grows with state: the stores and the thread map fill
    # round after round (a new chat and key per call).
    lines.extend(["", "Cost as state grows (a new chat and key per call fills the stores and the thread map round after round):"])
    for c in sorted({r["c"] for r in runs if r["label"] == "offergate_forward"}):
        first, last = run_by.get((rounds[0], "offergate_forward", c)), run_by.get((rounds[-1], "offergate_forward", c))
        if first and last:
            lines.append(f"- {c} conns: offergate_forward round {rounds[-1]} against round {rounds[0]}: {last['rps'] / first['rps']:.2f} × ({last['rps']:.0f} against {first['rps']:.0f} req/s)")
compare("State on Redis against state in memory (same build), paired within each round:",
        ("redis_forward", "offergate_forward"), ("redis_replay", "offergate_replay"), True)
compare("This build against the baseline build (BASELINE), paired within each round:",
        ("offergate_forward", "baseline_forward"), ("offergate_replay", "baseline_replay"), False)
compare("State on Redis, this build against the baseline build (BASELINE), paired within each round (req/s):",
        ("redis_forward", "baseline_redis_forward"), ("redis_replay", "baseline_redis_replay"), False)
if any(r["label"] == "baseline_redis_forward" for r in runs):
    for c in sorted({r["c"] for r in runs if r["label"] == "baseline_redis_forward"}):
        lines.append(f"- {c} conns: forward p50 {paired('redis_forward', 'baseline_redis_forward', c, 'p50'):.2f} × the baseline's")

compare("Traces exported at sample_ratio 0.01 and 1.0 against tracing off (same build), paired within each round:",
        ("traced_low_forward", "offergate_forward"), ("traced_all_forward", "offergate_forward"), True,
        ("forward at 0.01", "forward at 1.0"))

traces_tsv = os.environ.get("TRACES_TSV")
if traces_tsv and os.path.exists(traces_tsv):
    for line in open(traces_tsv):
        name, calls, full, failed = line.split()
        at = {"low": "0.01", "all": "1.0"}.get(name, name)
        made = int(float(calls)) * 2 * (0.01 if name == "low" else 1.0)
        lines.append(f"- at {at}: {int(float(calls))} calls, about {made:.0f} spans made (a call's and its try's); dropped: {int(float(full))} for a full queue, {int(float(failed))} in failed exports")

# At one connection: what Redis adds to a forward's p50, against the Redis
# round trip measured in the same round.
added, trip = [], []
for n in sorted({r["round"] for r in runs}):
    rf, of, pg = (run_by.get((n, l, 1)) for l in ("redis_forward", "offergate_forward", "redis_ping"))
    if rf and of and pg:
        added.append(rf["p50"] - of["p50"])
        trip.append(pg["p50"])
if added:
    med = lambda xs: sorted(xs)[len(xs) // 2]
    redis_p50 = (med(added), med(trip))
    lines.append(f"- 1 conn: Redis adds {redis_p50[0] * 1000:.0f} µs to the forward p50; a Redis round trip is {redis_p50[1] * 1000:.0f} µs")
else:
    redis_p50 = None

idle_mib, peak_mib = int(idle_kib) / 1024, int(peak_kib) / 1024
lines += ["", f"offergate RSS: idle {idle_mib:.1f} MiB, peak over the run {peak_mib:.1f} MiB.", ""]


def check(name, ok, detail):
    lines.append(f'- {"met" if ok else "not met"}: {name} ({detail})')


top = max(r["c"] for r in runs)
g = lambda label, c=top: by.get((label, c))
if all(g(x) for x in ("direct", "nginx_forward", "bare_forward", "offergate_forward")):
    lines.append(f"Targets ({top} connections unless said; every ratio paired within a round):")
    fwd, cpu = paired("offergate_forward", "nginx_forward", top), paired("offergate_forward", "nginx_forward", top, "cpu")
    check("forward req/s ≥ 0.9 × nginx", fwd >= 0.9, f"{fwd:.2f} ×; bare {paired('bare_forward', 'nginx_forward', top):.2f} ×")
    check("forward CPU per request ≤ 1.15 × nginx", cpu <= 1.15,
          f"{cpu:.2f} × ({g('offergate_forward')['cpu']:.1f} against {g('nginx_forward')['cpu']:.1f} µs); bare {paired('bare_forward', 'nginx_forward', top, 'cpu'):.2f} ×")
    if redis_p50:
        check("1 connection on Redis: added p50 ≤ 2 × the Redis round trip", redis_p50[0] <= 2 * redis_p50[1],
              f"+{redis_p50[0] * 1000:.0f} µs against 2 × {redis_p50[1] * 1000:.0f} µs")
    for variant in ("offergate_noidem", "offergate_key", "offergate_besitos"):
        if g(variant):
            v = paired(variant, "offergate_forward", top, "cpu")
            check(f"{variant}: CPU per request ≤ the default forward's", v <= 1.05, f"{v:.2f} ×")
    if g("offergate_forward", 1) and g("nginx_forward", 1):
        added = (g("offergate_forward", 1)["p50"] - g("nginx_forward", 1)["p50"]) * 1000
        bare_added = (g("bare_forward", 1)["p50"] - g("nginx_forward", 1)["p50"]) * 1000 if g("bare_forward", 1) else float("nan")
        check("1 connection: p50 within 10 µs of nginx's", added <= 10, f"{added:+.0f} µs; bare {bare_added:+.0f} µs")
    if g("offergate_replay"):
        rp = paired("offergate_replay", "direct", top)
        check("replay ≥ 0.9 × direct", rp >= 0.9, f"{rp:.2f} ×")
    if g("offergate_circuit_open") and g("nginx_partner_down"):
        co = paired("offergate_circuit_open", "nginx_partner_down", top)
        check("circuit-open fallback ≥ 1.0 × nginx's 502", co >= 1.0, f"{co:.2f} ×")
    if g("offergate_tls") and g("nginx_tls"):
        t, tc = paired("offergate_tls", "nginx_tls", top), paired("offergate_tls", "nginx_tls", top, "cpu")
        lines.append(f"- TLS to the partner: offergate {t:.2f} × nginx's req/s, {tc:.2f} × its CPU per request")
    check("idle RSS < 20 MiB", idle_mib < 20, f"{idle_mib:.1f} MiB")

soak = [tuple(int(x) for x in l.split()) for l in open(soak_path) if l.strip()]
if soak:
    bound_mib = int(store_max_bytes) / 1024 / 1024
    rss_end = soak[-1][1] / 1024
    store_mib = rss_end - idle_mib
    after_10s = next((kib for t, kib in soak if t >= 10), soak[0][1]) / 1024
    lines += [
        "",
        f"Soak: {int(soak_requests):,} forward requests (each a new idempotency key) over {soak[-1][0]} s.",
        "RSS (MiB) every 5 s: " + ", ".join(f"{kib / 1024:.1f}" for _, kib in soak),
    ]
    check(
        "RSS above idle within the store's byte limit (+ the thread map's bound) + 20 %",
        store_mib <= 1.2 * (bound_mib + thread_map_mib),
        f"{store_mib:.1f} MiB for {bound_mib:.0f} MiB of store limits + {thread_map_mib:.1f} MiB of thread map, after {int(soak_requests):,} keys",
    )
    check("no RSS growth under steady load", rss_end <= after_10s * 1.05, f"{after_10s:.1f} MiB at 10 s, {rss_end:.1f} MiB at the end")
open(md_path, "w").write("\n".join(lines) + "\n")

# Chart: req/s and p99 per scenario at 32 connections, two panels of bars.
sel = [r for r in rows if r["c"] == max(x["c"] for x in rows)]
W, H, pad, bar = 760, 300, 50, 0
colors = {"direct": "#888", "nginx": "#009639", "bare": "#4169e1", "offergate": "#d2691e", "redis": "#b22222", "baseline": "#999"}


def color(label):
    return next((c for k, c in colors.items() if label.startswith(k)), "#555")


def panel(x0, title, key, unit):
    top = max(r[key] for r in sel) or 1
    width = (W / 2 - pad - 10) / max(len(sel), 1)
    out = [f'<text x="{x0 + 10}" y="20" font-size="13" font-weight="bold">{title}</text>']
    for i, r in enumerate(sel):
        h = (H - 110) * r[key] / top
        x = x0 + pad + i * width
        y = H - 80 - h
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{width * 0.7:.1f}" height="{h:.1f}" fill="{color(r["label"])}"/>')
        out.append(f'<text x="{x + width * 0.35:.1f}" y="{y - 4:.1f}" font-size="9" text-anchor="middle">{r[key]:.{0 if key == "rps" else 2}f}</text>')
        out.append(
            f'<text x="{x + width * 0.35:.1f}" y="{H - 70}" font-size="9" text-anchor="end" transform="rotate(-40 {x + width * 0.35:.1f} {H - 70})">{r["label"]}</text>'
        )
    out.append(f'<text x="{x0 + 10}" y="{H - 5}" font-size="10">{unit}, {sel[0]["c"]} connections</text>')
    return out


svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">',
       f'<rect width="{W}" height="{H}" fill="white"/>']
svg += panel(0, "Throughput (higher is better)", "rps", "requests/s")
svg += panel(W / 2, "p99 latency (lower is better)", "p99", "milliseconds")
svg.append("</svg>")
open(svg_path, "w").write("\n".join(svg) + "\n")
