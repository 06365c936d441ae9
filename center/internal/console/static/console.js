// The operations console's little script: live updates by server-sent
// events, and confirmation prompts are server pages (this adds nothing
// there). Pages work without it.
"use strict";
(function () {
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var es = new EventSource("/live/events");
  es.addEventListener("snapshot", function (ev) {
    var s = JSON.parse(ev.data);
    var set = function (id, v) { var el = document.getElementById(id); if (el) { el.textContent = v; } };
    set("kiosks-connected", s.kiosksConnected);
    set("in-flight", s.inFlight);
    set("issuances-per-minute", s.issuancesPerMinute);
    set("p50", Math.round(s.p50Ms) + " ms");
    set("p99", Math.round(s.p99Ms) + " ms");
    set("updated", new Date(s.time).toLocaleTimeString());
    var body = document.getElementById("errors-body");
    if (body) {
      while (body.firstChild) { body.removeChild(body.firstChild); }
      Object.keys(s.errorsByCode).sort().forEach(function (code) {
        var tr = document.createElement("tr");
        var a = document.createElement("td"); a.textContent = code;
        var b = document.createElement("td"); b.className = "num"; b.textContent = s.errorsByCode[code];
        tr.appendChild(a); tr.appendChild(b); body.appendChild(tr);
      });
    }
    live.dataset.updates = String((Number(live.dataset.updates) || 0) + 1);
  });
})();
