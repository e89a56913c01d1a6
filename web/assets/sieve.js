// Sieve's progressive enhancement: every page works without it.
// 1. A running task's page (#task[data-done=false]) refreshes its panel in place instead of reloading.
// 2. Code boxes (<pre> inside details.request) get a copy button.
(function () {
  "use strict";
  function poll() {
    var panel = document.getElementById("task");
    if (!panel || panel.getAttribute("data-done") === "true") return;
    setTimeout(function () {
      fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var next = new DOMParser().parseFromString(html, "text/html").getElementById("task");
          if (next) {
            panel.replaceWith(next);
          }
          poll();
        })
        .catch(function () { setTimeout(poll, 2000); });
    }, 500);
  }
  function copyButtons() {
    var boxes = document.querySelectorAll("details.request pre");
    Array.prototype.forEach.call(boxes, function (pre) {
      if (!navigator.clipboard) return;
      var b = document.createElement("button");
      b.type = "button";
      b.className = "copy";
      b.textContent = "Copy";
      b.addEventListener("click", function () {
        navigator.clipboard.writeText(pre.textContent).then(function () { b.textContent = "Copied"; });
      });
      pre.parentNode.insertBefore(b, pre);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { poll(); copyButtons(); });
})();
