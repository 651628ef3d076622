//! `GET /`: the console page, sent filled in from `/status` and
//! `/requests` so it reads with scripts off; `page.js` (inline, allowed by
//! its hash in the Content-Security-Policy) then redraws it every 2 s. No
//! outside script, font, style or image: it works offline and on an
//! air-gapped host.

use std::fmt::Write;
use std::sync::OnceLock;

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
            base64(digest.as_ref())
        )
    })
}

/// The page for `status` (`Console::status`) and `requests` (`Console::requests`).
pub fn render_page(status: &Value, requests: &Value) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    out.push_str("<title>offergate console</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body><h1>offergate</h1>");
    let _ = write!(
        out,
        "<p id=\"updated\">as of {} UTC <span class=\"noscript\">(scripts are off: reload the page to update)</span></p>",
        clock(status["now_ms"].as_i64().unwrap_or(0))
    );
    section(&mut out, "header", None, &header(status));
    section(&mut out, "partners", Some("Partners"), &partners(status));
    section(&mut out, "routes", Some("Routes"), &routes(status));
    section(
        &mut out,
        "decisions",
        Some("Conversation decisions"),
        &decisions(status),
    );
    section(&mut out, "state", Some("Shared state"), &state(status));
    section(
        &mut out,
        "charts",
        Some("Last minutes"),
        "<p class=\"noscript\">The charts are drawn by the page's script.</p>",
    );
    section(
        &mut out,
        "requests",
        Some("Recent requests"),
        &recent(requests),
    );
    out.push_str("<script>");
    out.push_str(SCRIPT);
    out.push_str("</script></body></html>");
    out
}

fn section(out: &mut String, id: &str, title: Option<&str>, inner: &str) {
    if let Some(title) = title {
        let _ = write!(out, "<h2>{title}</h2>");
    }
    let _ = write!(out, "<div id=\"{id}\">{inner}</div>");
}

fn header(st: &Value) -> String {
    let c = &st["config"];
    let reload = match c["last_reload"].as_object() {
        None => "none since start".to_string(),
        Some(r) => {
            let mut s = format!(
                "{} at {} UTC",
                esc(r.get("result").and_then(Value::as_str).unwrap_or("-")),
                clock(r.get("at_ms").and_then(Value::as_i64).unwrap_or(0))
            );
            if let Some(p) = r.get("problems").and_then(Value::as_array) {
                let p: Vec<&str> = p.iter().filter_map(Value::as_str).collect();
                let _ = write!(s, ": {}", esc(&p.join("; ")));
            }
            s
        }
    };
    let ready = st["ready"].as_bool().unwrap_or(false);
    format!(
        "<dl><dt>version</dt><dd id=\"version\">{}</dd>\
         <dt>status</dt><dd id=\"ready\" class=\"{}\">{}</dd>\
         <dt>uptime</dt><dd id=\"uptime\">{} s</dd>\
         <dt>config</dt><dd id=\"config-path\">{}</dd>\
         <dt>sha256</dt><dd id=\"config-sha\"><code>{}</code></dd>\
         <dt>last reload</dt><dd id=\"last-reload\">{}</dd></dl>",
        text(&st["version"]),
        if ready { "ok" } else { "bad" },
        if ready { "ready" } else { "not ready" },
        st["uptime_seconds"].as_u64().unwrap_or(0),
        esc(c["path"].as_str().unwrap_or("built in")),
        text(&c["sha256"]),
        reload
    )
}

fn partners(st: &Value) -> String {
    let mut rows = String::new();
    for p in st["partners"].as_array().into_iter().flatten() {
        let c = &p["circuit"];
        let state = c["state"].as_str().unwrap_or("-");
        let circuit = match state {
            "open" => format!(
                "open, closes in {:.1} s",
                c["closes_in_ms"].as_f64().unwrap_or(0.0) / 1000.0
            ),
            "half_open" => "half open (probing)".into(),
            _ => format!(
                "closed ({} of {} failures)",
                c["failures"], c["failure_threshold"]
            ),
        };
        let why = match (c["last_failure"].as_str(), state) {
            (None, _) => "-".to_string(),
            (Some(f), "closed") => format!("last failure: {f}"),
            (Some(f), _) => f.to_string(),
        };
        let pause = match p["pause"].as_object() {
            Some(pause) => format!(
                "paused {:.1} s more",
                pause.get("left_ms").and_then(Value::as_f64).unwrap_or(0.0) / 1000.0
            ),
            None => "none".into(),
        };
        let quota = match p["quota"].as_object() {
            Some(q) => format!(
                "{:.1} of {:.0}/s",
                q.get("tries_per_second")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0),
                q.get("per_second").and_then(Value::as_f64).unwrap_or(0.0)
            ),
            None => "no quota set".into(),
        };
        let _ = write!(
            rows,
            "<tr id=\"partner-{0}\"><th>{0}</th><td class=\"circuit circuit-{1}\">{2}</td>\
             <td class=\"reason\">{3}</td><td class=\"pause\">{4}</td><td class=\"quota\">{5}</td></tr>",
            text(&p["partner"]),
            esc(state),
            esc(&circuit),
            esc(&why),
            pause,
            quota
        );
    }
    format!(
        "<table><thead><tr><th>partner</th><th>circuit</th><th>why</th><th>429 pause</th>\
         <th>quota in use</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

fn routes(st: &Value) -> String {
    let mut rows = String::new();
    for r in st["routes"].as_array().into_iter().flatten() {
        let name = r["route"].as_str().unwrap_or("-");
        let total = r["requests_total"].as_f64().unwrap_or(0.0);
        if total == 0.0 && name != "encore_offers" && name != "besitos_goals" {
            continue;
        }
        let fallbacks = match r["fallbacks_total"].as_object() {
            Some(f) if !f.is_empty() => f
                .iter()
                .map(|(k, v)| format!("{}: {v}", esc(k)))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "none".into(),
        };
        let i = &r["idempotency"];
        let _ = write!(
            rows,
            "<tr id=\"route-{0}\"><th>{0}</th><td class=\"rps\">{1}</td><td class=\"p50\">{2}</td>\
             <td class=\"p99\">{3}</td><td class=\"fallbacks\">{4}</td>\
             <td class=\"idempotency\">{5} hits, {6} coalesced, {7} stored</td><td class=\"total\">{8}</td></tr>",
            esc(name),
            num(&r["requests_per_second"]),
            num(&r["p50_ms"]),
            num(&r["p99_ms"]),
            fallbacks,
            i["hits"],
            i["coalesced"],
            i["stored"],
            total
        );
    }
    format!(
        "<table><thead><tr><th>route</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th>\
         <th>fallbacks (since start)</th><th>idempotency</th><th>requests</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    )
}

/// The conversation endpoint's decisions: offers, and skips by reason.
fn decisions(st: &Value) -> String {
    let mut rows = String::new();
    for (key, d) in st["decisions"].as_object().into_iter().flatten() {
        let _ = write!(
            rows,
            "<tr id=\"decision-{0}\"><th>{0}</th><td class=\"rps\">{1}</td><td class=\"total\">{2}</td></tr>",
            esc(key),
            num(&d["per_second"]),
            d["total"]
        );
    }
    format!(
        "<table><thead><tr><th>offer, or why not</th><th>per second</th><th>since start</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    )
}

fn state(st: &Value) -> String {
    let s = &st["state"];
    let healthy = s["healthy"].as_bool().unwrap_or(false);
    let mut line = format!(
        "<p id=\"state-line\"><span class=\"{}\">{}</span> {}",
        if healthy { "ok" } else { "bad" },
        if healthy { "healthy" } else { "not answering" },
        text(&s["describe"])
    );
    if s["backend"] == "redis" {
        let _ = write!(
            line,
            ", p50 {} ms, p99 {} ms, on error: {}",
            num(&s["latency_p50_ms"]),
            num(&s["latency_p99_ms"]),
            text(&s["on_error"])
        );
    }
    line.push_str("</p>");
    line
}

fn recent(rq: &Value) -> String {
    let mut rows = String::new();
    for e in rq["requests"].as_array().into_iter().flatten() {
        let _ = write!(
            rows,
            "<tr class=\"request\"><td>{}</td><td>{}</td><td class=\"status\">{}</td>\
             <td class=\"fallback\">{}</td><td>{:.2}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            clock(e["at_ms"].as_i64().unwrap_or(0)),
            text(&e["route"]),
            e["status"],
            e["fallback"].as_str().map(esc).unwrap_or_default(),
            e["duration_us"].as_f64().unwrap_or(0.0) / 1000.0,
            text(&e["request_id"]),
            e["caller_hash"].as_str().map(esc).unwrap_or_default(),
        );
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"7\">no requests yet</td></tr>");
    }
    format!(
        "<table><thead><tr><th>time (UTC)</th><th>route</th><th>status</th><th>fallback</th>\
         <th>ms</th><th>request id</th><th>caller (hashed)</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

fn text(v: &Value) -> String {
    esc(v.as_str().unwrap_or("-"))
}

fn num(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.1}"))
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

/// Text made safe inside an element or a quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding (the CSP hash).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_the_rfc_gives_it() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn what_a_caller_sent_cannot_become_markup() {
        let requests = serde_json::json!({"requests": [{
            "at_ms": 1, "route": "encore_offers", "status": 200, "duration_us": 5,
            "request_id": "<script>alert(1)</script>\"'&"
        }]});
        let html = recent(&requests);
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
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
}
