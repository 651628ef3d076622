//! `GET /`: the console page, rendered here once from `/status` and
//! `/requests`, so it reads the same with scripts off. maud builds the HTML
//! and escapes every value in it. `page.js` (inline, allowed by its hash in
//! the Content-Security-Policy) only fetches this page again every 2 s and
//! swaps its sections in; it renders nothing itself. No outside script,
//! font, style or image: it works offline and on an air-gapped host.

use std::sync::OnceLock;

use base64::Engine;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

const SCRIPT: &str = include_str!("page.js");

const STYLE: &str = "
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#1d2330;background:#fbfbfd}
h1{font-size:1.4em;margin:0 0 .4em}h2{font-size:1.1em;margin:1.4em 0 .4em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:0}dt{color:#5b6475}dd{margin:0}
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #e3e6ec;vertical-align:top}
thead th{color:#5b6475;font-weight:600;font-size:.9em}
.ok{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}
.circuit-open{color:#b3261e;font-weight:600}.circuit-half_open{color:#9a6700;font-weight:600}.circuit-closed{color:#137333}
.chart{display:inline-block;margin:0 1.5em .5em 0}.chart svg{background:#fff;border:1px solid #e3e6ec}
.chart path{fill:none;stroke:#3367d6;stroke-width:1.5}.chart circle{fill:#3367d6}
code{font-size:.9em}#updated{color:#5b6475;font-size:.9em}.stale #updated{color:#b3261e}
.noscript{color:#5b6475}.live .noscript{display:none}
";

/// The `Content-Security-Policy` of the page: its own inline script (by
/// hash) and style, requests to this listener only, nothing else.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let digest = ring::digest::digest(&ring::digest::SHA256, SCRIPT.as_bytes());
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        )
    })
}

/// The page for `status` (`Console::status`) and `requests` (`Console::requests`).
pub fn render_page(status: &Value, requests: &Value) -> String {
    let at = clock(status["now_ms"].as_i64().unwrap_or(0));
    // Each a `div` of the body with its id: what the script swaps.
    let sections = [
        ("header", None, header(status)),
        ("partners", Some("Partners"), partners(status)),
        ("routes", Some("Routes"), routes(status)),
        (
            "decisions",
            Some("Conversation decisions"),
            decisions(status),
        ),
        ("state", Some("Shared state"), state(status)),
        ("charts", Some("Last minutes"), charts(status)),
        ("requests", Some("Recent requests"), recent(requests)),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { "offergate console" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "offergate" }
                p #updated data-at=(at) {
                    "as of " (at) " UTC "
                    span .noscript { "(scripts are off: reload the page to update)" }
                }
                @for (id, title, inner) in sections {
                    @if let Some(title) = title { h2 { (title) } }
                    div id=(id) { (inner) }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
    .into_string()
}

fn header(st: &Value) -> Markup {
    let c = &st["config"];
    let ready = st["ready"].as_bool().unwrap_or(false);
    html! {
        dl {
            dt { "version" } dd #version { (text(&st["version"])) }
            dt { "status" }
            dd #ready class=(if ready { "ok" } else { "bad" }) {
                (if ready { "ready" } else { "not ready" })
            }
            dt { "uptime" } dd #uptime { (duration(st["uptime_seconds"].as_u64().unwrap_or(0))) }
            dt { "config" } dd #config-path { (c["path"].as_str().unwrap_or("built in")) }
            dt { "sha256" } dd #config-sha { code { (text(&c["sha256"])) } }
            dt { "last reload" } dd #last-reload {
                @let r = &c["last_reload"];
                @if r.is_object() {
                    (text(&r["result"]))
                    " at " (clock(r["at_ms"].as_i64().unwrap_or(0))) " UTC"
                    @if let Some(problems) = r["problems"].as_array() {
                        ": " (strings(problems, "; "))
                    }
                    @if let Some(names) = r["needs_restart"].as_array() {
                        " (restart needed for " (strings(names, ", ")) ")"
                    }
                } @else {
                    "none since start"
                }
            }
        }
    }
}

fn partners(st: &Value) -> Markup {
    table(
        &["partner", "circuit", "why", "429 pause", "quota in use"],
        html! {
            @for p in st["partners"].as_array().into_iter().flatten() {
                @let c = &p["circuit"];
                @let state = c["state"].as_str().unwrap_or("-");
                tr id={ "partner-" (text(&p["partner"])) } {
                    th { (text(&p["partner"])) }
                    td class={ "circuit circuit-" (state) } {
                        @match state {
                            "open" => { "open, closes in " (fixed(&c["closes_in_ms"], 1000.0, 1)) " s" }
                            "half_open" => "half open (probing)",
                            _ => { "closed (" (c["failures"]) " of " (c["failure_threshold"]) " failures)" }
                        }
                    }
                    td .reason {
                        @match (c["last_failure"].as_str(), state) {
                            (None, _) => "-",
                            (Some(f), "closed") => { "last failure: " (f) }
                            (Some(f), _) => (f),
                        }
                    }
                    td .pause {
                        @let pause = &p["pause"];
                        @if pause.is_object() {
                            "paused " (fixed(&pause["left_ms"], 1000.0, 1)) " s more"
                            @if let Some(why) = pause["reason"].as_str() { ": " (why) }
                        } @else {
                            "none"
                        }
                    }
                    td .quota {
                        @let q = &p["quota"];
                        @if q.is_object() {
                            (fixed(&q["tries_per_second"], 1.0, 1)) " of "
                            (fixed(&q["per_second"], 1.0, 0)) "/s ("
                            (fixed(&q["in_use"], 0.01, 0)) " %)"
                        } @else {
                            "no quota set"
                        }
                    }
                }
            }
        },
    )
}

fn routes(st: &Value) -> Markup {
    let shown = st["routes"].as_array().into_iter().flatten().filter(|r| {
        let name = r["route"].as_str().unwrap_or("-");
        r["requests_total"].as_f64().unwrap_or(0.0) > 0.0
            || name == "encore_offers"
            || name == "besitos_goals"
    });
    table(
        &[
            "route",
            "req/s",
            "p50 ms",
            "p99 ms",
            "fallbacks (since start)",
            "idempotency",
            "requests",
        ],
        html! {
            @for r in shown {
                @let i = &r["idempotency"];
                tr id={ "route-" (text(&r["route"])) } {
                    th { (text(&r["route"])) }
                    td .rps { (fixed(&r["requests_per_second"], 1.0, 1)) }
                    td .p50 { (fixed(&r["p50_ms"], 1.0, 1)) }
                    td .p99 { (fixed(&r["p99_ms"], 1.0, 1)) }
                    td .fallbacks {
                        @match r["fallbacks_total"].as_object().filter(|f| !f.is_empty()) {
                            None => "none",
                            Some(f) => {
                                @for (n, (reason, count)) in f.iter().enumerate() {
                                    @if n > 0 { ", " }
                                    (reason) ": " (count)
                                }
                            }
                        }
                    }
                    td .idempotency {
                        (i["hits"]) " hits, " (i["coalesced"]) " coalesced, " (i["stored"]) " stored"
                    }
                    td .total { (r["requests_total"]) }
                }
            }
        },
    )
}

/// The conversation endpoint's decisions: offers, and skips by reason.
fn decisions(st: &Value) -> Markup {
    table(
        &["offer, or why not", "per second", "since start"],
        html! {
            @for (key, d) in st["decisions"].as_object().into_iter().flatten() {
                tr id={ "decision-" (key) } {
                    th { (key) }
                    td .rps { (fixed(&d["per_second"], 1.0, 1)) }
                    td .total { (d["total"]) }
                }
            }
        },
    )
}

fn state(st: &Value) -> Markup {
    let s = &st["state"];
    let healthy = s["healthy"].as_bool().unwrap_or(false);
    html! {
        p #state-line {
            span class=(if healthy { "ok" } else { "bad" }) {
                (if healthy { "healthy" } else { "not answering" })
            }
            " " (text(&s["describe"]))
            @if s["backend"] == "redis" {
                ", p50 " (fixed(&s["latency_p50_ms"], 1.0, 2)) " ms, p99 "
                (fixed(&s["latency_p99_ms"], 1.0, 2)) " ms, on error: " (text(&s["on_error"]))
            }
        }
    }
}

/// Three lines over the last minutes: a point every 10 s.
fn charts(st: &Value) -> Markup {
    let points: &[Value] = st["chart"]["points"].as_array().map_or(&[], Vec::as_slice);
    if points.is_empty() {
        return html! { p { "The charts fill in after the first seconds." } };
    }
    html! {
        (spark(points, "requests_per_second", "requests/s"))
        (spark(points, "fallbacks_per_second", "fallbacks/s"))
        (spark(points, "p99_ms", "p99 ms"))
    }
}

/// One chart: `key` of each point as a line, scaled to its largest value.
fn spark(points: &[Value], key: &str, label: &str) -> Markup {
    const W: f64 = 300.0;
    const H: f64 = 60.0;
    let values: Vec<f64> = points
        .iter()
        .map(|p| p[key].as_f64().unwrap_or(0.0))
        .collect();
    let max = values.iter().copied().fold(1e-9, f64::max);
    let step = if values.len() > 1 {
        W / (values.len() - 1) as f64
    } else {
        W
    };
    let at: Vec<(f64, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as f64 * step, H - v / max * (H - 4.0) - 2.0))
        .collect();
    let line: String = at
        .iter()
        .enumerate()
        .map(|(i, (x, y))| format!("{}{x:.1} {y:.1}", if i == 0 { "M" } else { " L" }))
        .collect();
    let last = values.last().copied().unwrap_or(0.0);
    html! {
        figure .chart id={ "chart-" (key) } {
            figcaption { (label) ": " (format!("{last:.1}")) " (max " (format!("{max:.1}")) ")" }
            svg viewBox={ "0 0 " (W) " " (H) } width=(W) height=(H) {
                path d=(line) {}
                @for (x, y) in &at { circle r="2" cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) {} }
            }
        }
    }
}

fn recent(rq: &Value) -> Markup {
    let rows = rq["requests"].as_array().map_or(&[][..], Vec::as_slice);
    table(
        &[
            "time (UTC)",
            "route",
            "status",
            "fallback",
            "ms",
            "request id",
            "caller (hashed)",
        ],
        html! {
            @for e in rows {
                tr .request {
                    td { (clock(e["at_ms"].as_i64().unwrap_or(0))) }
                    td { (text(&e["route"])) }
                    td .status { (e["status"]) }
                    td .fallback { (e["fallback"].as_str().unwrap_or("")) }
                    td { (fixed(&e["duration_us"], 1000.0, 2)) }
                    td { code { (text(&e["request_id"])) } }
                    td { code { (e["caller_hash"].as_str().unwrap_or("")) } }
                }
            }
            @if rows.is_empty() {
                tr { td colspan="7" { "no requests yet" } }
            }
        },
    )
}

/// A table with `heads` over `rows`.
fn table(heads: &[&str], rows: Markup) -> Markup {
    html! {
        table {
            thead { tr { @for head in heads { th { (head) } } } }
            tbody { (rows) }
        }
    }
}

/// A string value, or `-`.
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// The strings of `list`, joined.
fn strings(list: &[Value], by: &str) -> String {
    let words: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    words.join(by)
}

/// A number divided by `per`, with `digits` decimals, or `-`.
fn fixed(v: &Value, per: f64, digits: usize) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.*}", digits, x / per))
}

/// `1 h 2 min 3 s`, the larger units only where they are not zero.
fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min {s} s"),
    }
}

/// HH:MM:SS.mmm of a Unix ms time, UTC.
fn clock(ms: i64) -> String {
    let ms = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_caller_sent_cannot_become_markup() {
        let requests = serde_json::json!({"requests": [{
            "at_ms": 1, "route": "encore_offers", "status": 200, "duration_us": 5,
            "request_id": "<script>alert(1)</script>\"'&"
        }]});
        let html = render_page(&serde_json::json!({}), &requests);
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;"));
    }

    #[test]
    fn the_page_is_whole_without_any_data_and_names_no_outside_resource() {
        let html = render_page(&serde_json::json!({}), &serde_json::json!({}));
        assert!(html.contains("no requests yet"));
        for outside in ["http://", "https://", "src=", "@import", "url("] {
            assert!(!html.contains(outside), "{outside}");
        }
        assert!(content_security_policy().contains("script-src 'sha256-"));
    }

    #[test]
    fn charts_are_drawn_from_the_points() {
        let status = serde_json::json!({"chart": {"points": [
            {"requests_per_second": 2.0, "fallbacks_per_second": 0.0, "p99_ms": 5.0},
            {"requests_per_second": 4.0, "fallbacks_per_second": 1.0, "p99_ms": 7.5},
        ]}});
        let html = render_page(&status, &serde_json::json!({}));
        assert!(html.contains(r#"id="chart-requests_per_second""#), "{html}");
        assert!(html.contains("M0.0 30.0 L300.0 2.0"), "{html}");
        assert!(html.contains("requests/s: 4.0 (max 4.0)"), "{html}");
        assert_eq!(duration(3_723), "1 h 2 min 3 s");
        assert_eq!(duration(59), "59 s");
    }
}
