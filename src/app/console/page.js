// offergate's console: polls /status and /requests every 2 s and redraws
// what the server first sent filled in (the same sections, the same ids).
"use strict";
(function () {
  var EVERY_MS = 2000;
  function esc(s) {
    return String(s === null || s === undefined ? "-" : s)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }
  function num(x, digits) {
    if (x === null || x === undefined) return "-";
    return Number(x).toFixed(digits === undefined ? 1 : digits);
  }
  function ago(ms, now) {
    if (!ms) return "-";
    var s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }
  function clock(ms) {
    var d = new Date(ms);
    return d.toISOString().slice(11, 23);
  }
  function duration(sec) {
    var h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
    return (h ? h + " h " : "") + (h || m ? m + " min " : "") + s + " s";
  }
  function circuitText(c) {
    if (c.state === "open") {
      return "open, closes in " + num(c.closes_in_ms / 1000, 1) + " s";
    }
    if (c.state === "half_open") return "half open (probing)";
    return "closed (" + c.failures + " of " + c.failure_threshold + " failures)";
  }
  function reasonText(c) {
    if (!c.last_failure) return "-";
    return (c.state === "closed" ? "last failure: " : "") + c.last_failure;
  }
  function fallbacks(map) {
    var keys = Object.keys(map || {});
    if (!keys.length) return "none";
    return keys.map(function (k) { return esc(k) + ": " + map[k]; }).join(", ");
  }
  function header(st) {
    var c = st.config, r = c.last_reload;
    var reload = r ? esc(r.result) + " " + ago(r.at_ms, st.now_ms) +
      (r.problems ? ": " + esc(r.problems.join("; ")) : "") +
      (r.needs_restart ? " (restart needed for " + esc(r.needs_restart.join(", ")) + ")" : "")
      : "none since start";
    return "<dl>" +
      "<dt>version</dt><dd id=\"version\">" + esc(st.version) + "</dd>" +
      "<dt>status</dt><dd id=\"ready\" class=\"" + (st.ready ? "ok" : "bad") + "\">" + (st.ready ? "ready" : "not ready") + "</dd>" +
      "<dt>uptime</dt><dd id=\"uptime\">" + duration(st.uptime_seconds) + "</dd>" +
      "<dt>config</dt><dd id=\"config-path\">" + esc(c.path || "built in") + "</dd>" +
      "<dt>sha256</dt><dd id=\"config-sha\"><code>" + esc(c.sha256 || "-") + "</code></dd>" +
      "<dt>last reload</dt><dd id=\"last-reload\">" + reload + "</dd>" +
      "</dl>";
  }
  function partners(st) {
    var rows = st.partners.map(function (p) {
      var c = p.circuit;
      var q = p.quota ? num(p.quota.tries_per_second, 1) + " of " + num(p.quota.per_second, 0) +
        "/s (" + num(p.quota.in_use * 100, 0) + " %)" : "no quota set";
      return "<tr id=\"partner-" + esc(p.partner) + "\">" +
        "<th>" + esc(p.partner) + "</th>" +
        "<td class=\"circuit circuit-" + esc(c.state) + "\">" + esc(circuitText(c)) + "</td>" +
        "<td class=\"reason\">" + esc(reasonText(c)) + "</td>" +
        "<td class=\"pause\">" + (p.pause ? "paused " + num(p.pause.left_ms / 1000, 1) + " s more: " + esc(p.pause.reason) : "none") + "</td>" +
        "<td class=\"quota\">" + q + "</td></tr>";
    }).join("");
    return "<table><thead><tr><th>partner</th><th>circuit</th><th>why</th><th>429 pause</th><th>quota in use</th></tr></thead><tbody>" + rows + "</tbody></table>";
  }
  function routes(st) {
    var rows = st.routes.filter(function (r) {
      return r.requests_total > 0 || r.route === "encore_offers" || r.route === "besitos_goals";
    }).map(function (r) {
      var i = r.idempotency;
      return "<tr id=\"route-" + esc(r.route) + "\"><th>" + esc(r.route) + "</th>" +
        "<td class=\"rps\">" + num(r.requests_per_second, 1) + "</td>" +
        "<td class=\"p50\">" + num(r.p50_ms, 1) + "</td>" +
        "<td class=\"p99\">" + num(r.p99_ms, 1) + "</td>" +
        "<td class=\"fallbacks\">" + fallbacks(r.fallbacks_total) + "</td>" +
        "<td class=\"idempotency\">" + i.hits + " hits, " + i.coalesced + " coalesced, " + i.stored + " stored</td>" +
        "<td class=\"total\">" + r.requests_total + "</td></tr>";
    }).join("");
    return "<table><thead><tr><th>route</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th><th>fallbacks (since start)</th><th>idempotency</th><th>requests</th></tr></thead><tbody>" + rows + "</tbody></table>";
  }
  function decisions(st) {
    var rows = Object.keys(st.decisions || {}).sort().map(function (k) {
      var d = st.decisions[k];
      return "<tr id=\"decision-" + esc(k) + "\"><th>" + esc(k) + "</th><td class=\"rps\">" +
        num(d.per_second, 1) + "</td><td class=\"total\">" + d.total + "</td></tr>";
    }).join("");
    return "<table><thead><tr><th>offer, or why not</th><th>per second</th><th>since start</th></tr></thead><tbody>" + rows + "</tbody></table>";
  }
  function state(st) {
    var s = st.state;
    return "<p id=\"state-line\"><span class=\"" + (s.healthy ? "ok" : "bad") + "\">" +
      (s.healthy ? "healthy" : "not answering") + "</span> " + esc(s.describe) +
      (s.backend === "redis" ? ", p50 " + num(s.latency_p50_ms, 2) + " ms, p99 " + num(s.latency_p99_ms, 2) + " ms, on error: " + esc(s.on_error) : "") +
      "</p>";
  }
  function spark(points, key, label) {
    var w = 300, h = 60, vals = points.map(function (p) { return p[key] || 0; });
    var max = Math.max.apply(null, vals.concat([1e-9]));
    var step = vals.length > 1 ? w / (vals.length - 1) : w;
    var d = vals.map(function (v, i) {
      return (i ? "L" : "M") + (i * step).toFixed(1) + " " + (h - (v / max) * (h - 4) - 2).toFixed(1);
    }).join(" ");
    var dots = vals.map(function (v, i) {
      return "<circle r=\"2\" cx=\"" + (i * step).toFixed(1) + "\" cy=\"" + (h - (v / max) * (h - 4) - 2).toFixed(1) + "\"/>";
    }).join("");
    var last = vals.length ? vals[vals.length - 1] : 0;
    return "<figure class=\"chart\" id=\"chart-" + key + "\"><figcaption>" + esc(label) + ": " + num(last, 1) +
      " (max " + num(max, 1) + ")</figcaption><svg viewBox=\"0 0 " + w + " " + h + "\" width=\"" + w + "\" height=\"" + h + "\">" +
      (d ? "<path d=\"" + d + "\"/>" : "") + dots + "</svg></figure>";
  }
  function charts(st) {
    var pts = st.chart.points;
    if (!pts.length) return "<p>The charts fill in after the first seconds.</p>";
    return spark(pts, "requests_per_second", "requests/s") +
      spark(pts, "fallbacks_per_second", "fallbacks/s") +
      spark(pts, "p99_ms", "p99 ms");
  }
  function requests(rq) {
    var rows = rq.requests.map(function (e) {
      return "<tr class=\"request\"><td>" + clock(e.at_ms) + "</td><td>" + esc(e.route) + "</td>" +
        "<td class=\"status\">" + e.status + "</td><td class=\"fallback\">" + esc(e.fallback || "") + "</td>" +
        "<td>" + num(e.duration_us / 1000, 2) + "</td><td><code>" + esc(e.request_id) + "</code></td>" +
        "<td><code>" + esc(e.caller_hash || "") + "</code></td></tr>";
    }).join("");
    return "<table><thead><tr><th>time (UTC)</th><th>route</th><th>status</th><th>fallback</th><th>ms</th><th>request id</th><th>caller (hashed)</th></tr></thead><tbody>" +
      (rows || "<tr><td colspan=\"7\">no requests yet</td></tr>") + "</tbody></table>";
  }
  function put(id, html) {
    var el = document.getElementById(id);
    if (el) el.innerHTML = html;
  }
  function get(path) {
    return fetch(path, { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error(path + ": " + r.status);
      return r.json();
    });
  }
  function poll() {
    Promise.all([get("status"), get("requests?limit=50")]).then(function (both) {
      var st = both[0];
      put("header", header(st));
      put("partners", partners(st));
      put("routes", routes(st));
      put("decisions", decisions(st));
      put("state", state(st));
      put("charts", charts(st));
      put("requests", requests(both[1]));
      put("updated", "updated " + clock(st.now_ms) + " UTC");
      document.body.classList.remove("stale");
    }).catch(function (e) {
      put("updated", "cannot reach offergate: " + esc(e.message));
      document.body.classList.add("stale");
    }).then(function () { setTimeout(poll, EVERY_MS); });
  }
  window.offergateConsole = { render: { header: header, partners: partners, routes: routes, state: state, charts: charts, requests: requests } };
  document.body.classList.add("live");
  poll();
})();
