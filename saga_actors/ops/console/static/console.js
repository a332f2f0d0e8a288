// The saga console's only script: live parts refresh themselves, and every action asks
// for a confirmation first. Pages work without it (a confirmation page is served instead).
"use strict";
(function () {
  var LONG_POLL = 20;
  function refresh(el) {
    var every = parseInt(el.dataset.every, 10) || 1000;
    // long polling: the console holds the request until the part differs from the copy
    // the page holds (its tag), or for LONG_POLL s, then answers (204: nothing new)
    function url() {
      var tag = el.dataset.tag;
      return el.dataset.live + (el.dataset.live.indexOf("?") < 0 ? "?" : "&") + "wait=" +
        LONG_POLL + (tag ? "&have=" + encodeURIComponent(tag) : "");
    }
    function tick() {
      if (document.hidden) { setTimeout(tick, every); return; }  // a tab nobody looks at
      fetch(url(), { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) {
          if (!r.ok) { el.dataset.stale = String(r.status); return null; }
          var final = r.headers.get("X-Saga-Final") === "1";
          el.dataset.checked = String(Date.now());
          delete el.dataset.stale;
          if (r.status === 204) { return final; }
          return r.text().then(function (html) {
            el.innerHTML = html;  // rendered and escaped by the server
            el.dataset.tag = r.headers.get("X-Live-Tag") || "";
            el.dataset.refreshed = String(Date.now());
            if (final) { el.dataset.final = "1"; }
            return final;
          });
        })
        .catch(function () { el.dataset.stale = "unreachable"; return null; })
        .then(function (final) {
          if (final === null) { setTimeout(tick, every); }  // a failure: ask again later
          else if (!final) { setTimeout(tick, 0); }
        });
    }
    setTimeout(tick, 0);
  }
  function confirmFirst(form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.dataset.confirm)) { ev.preventDefault(); return; }
      form.querySelector("input[name=confirm]").value = "yes";
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(refresh);
    document.querySelectorAll("form[data-confirm]").forEach(confirmFirst);
  });
})();
