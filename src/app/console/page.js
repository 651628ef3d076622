// offergate's console: every 2 s, fetches this same page again and swaps its
// sections in. The server renders (and escapes) everything; this only swaps.
"use strict";
(function () {
  var EVERY_MS = 2000;
  var updated = document.getElementById("updated");
  function poll() {
    fetch(location.href, { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("the console answered " + r.status);
      return r.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      // The sections: each a div of the body with its id.
      fresh.querySelectorAll("body > div[id]").forEach(function (next) {
        var now = document.getElementById(next.id);
        if (now) now.replaceWith(document.importNode(next, true));
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
