// The saga console's only script: live parts refresh themselves, and every action asks
// for a confirmation first. Pages work without it (a confirmation page is served instead).
"use strict";
(function () {
  function refresh(el) {
    var every = parseInt(el.dataset.every, 10) || 1000;
    function url() {  // the copy the page holds: the console answers 204 if it is current
      var tag = el.dataset.tag;
      if (!tag) { return el.dataset.live; }
      return el.dataset.live + (el.dataset.live.indexOf("?") < 0 ? "?" : "&") +
        "have=" + encodeURIComponent(tag);
    }
    function tick() {
      if (document.hidden) { setTimeout(tick, every); return; }  // a tab nobody looks at
      fetch(url(), { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) {
          if (!r.ok) { el.dataset.stale = String(r.status); return false; }
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
        .catch(function () { el.dataset.stale = "unreachable"; return false; })
        .then(function (final) { if (!final) { setTimeout(tick, every); } });
    }
    setTimeout(tick, every);
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
