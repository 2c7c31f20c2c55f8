// Peepers seller pages: live updates (server-sent events) and the answer counter.
// Loaded from this origin only; the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  function dirty(region) {
    // Never swap away what the seller is typing: refresh that part once they are done.
    return Array.prototype.some.call(region.querySelectorAll("textarea, input[type=text]"), function (f) {
      return f === document.activeElement || f.value !== f.defaultValue;
    });
  }

  // A burst of events (a busy hour) refreshes each part once per quarter second, not
  // once per event.
  var pending = {};

  function refresh(part) {
    if (pending[part]) return;
    pending[part] = setTimeout(function () {
      delete pending[part];
      var selector = part === "reload" ? "[data-live]" : '[data-live~="' + part + '"]';
      document.querySelectorAll(selector).forEach(function (region) {
        if (dirty(region)) {
          region.setAttribute("data-stale", "true");
          return;
        }
        window.htmx.trigger(region, "peepers:live");
      });
    }, 250);
  }

  function connect() {
    var url = document.body.getAttribute("data-live-url");
    if (!url || !window.EventSource) return;
    var state = document.getElementById("live-state");
    var source = new EventSource(url);
    source.onopen = function () { if (state) state.className = "live on"; };
    source.onerror = function () { if (state) state.className = "live off"; };
    ["orders", "questions", "conversations", "tickets", "catalog", "status", "reload"].forEach(function (part) {
      source.addEventListener(part, function () { refresh(part); });
    });
  }

  function count(field) {
    var limit = parseInt(field.getAttribute("data-maxchars"), 10);
    var counter = document.getElementById(field.getAttribute("aria-describedby").split(" ")[0]);
    if (!counter) return;
    var left = limit - field.value.length;
    counter.querySelector("span").textContent = String(left);
    counter.classList.toggle("over", left < 0);
  }

  document.addEventListener("input", function (e) {
    if (e.target.matches && e.target.matches("textarea[data-maxchars]")) count(e.target);
  });
  document.addEventListener("focusout", function () {
    document.querySelectorAll('[data-stale="true"]').forEach(function (region) {
      if (!dirty(region)) {
        region.removeAttribute("data-stale");
        window.htmx.trigger(region, "peepers:live");
      }
    });
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-maxchars]").forEach(count);
    connect();
  });
})();
