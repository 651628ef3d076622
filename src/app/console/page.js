// offergate's console: every 2 s, fetches this same page again and swaps its
// sections in. The server renders (and escapes) everything; this only swaps.
"use strict";
(function () {
  var EVERY_MS = 2000;
  var SECTIONS = ["header", "partners", "routes", "decisions", "state", "charts", "requests"];
  var updated = document.getElementById("updated");
  function poll() {
    fetch(location.href, { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("the console answered " + r.status);
      return r.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      SECTIONS.forEach(function (id) {
        var now = document.getElementById(id), next = fresh.getElementById(id);
        if (now && next) now.replaceWith(document.importNode(next, true));
      });
      var at = fresh.getElementById("updated");
      updated.textContent = "updated " + (at ? at.getAttribute("data-at") : "?") + " UTC";
      document.body.classList.remove("stale");
    }).catch(function (e) {
      updated.textContent = "cannot reach offergate: " + e.message;
      document.body.classList.add("stale");
    }).then(function () { setTimeout(poll, EVERY_MS); });
  }
  document.body.classList.add("live");
  poll();
})();
