(function () {
  var live = document.getElementById("live");
  if (!window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var body = document.body, source = null, asked = 0;
  // A page with nothing to listen to (a fleet's) is read at each load.
  if (!body.dataset.events) { return; }
  function refresh() {
    var mine = ++asked;
    fetch(location.href, { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        // Only the newest answer counts: an older one may arrive after it.
        if (!text || mine !== asked) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var main = fresh.querySelector("main");
        if (main) { document.querySelector("main").replaceWith(main); }
        var at = fresh.getElementById("generated");
        if (at) { document.getElementById("generated").textContent = at.textContent; }
        body.dataset.fingerprint = fresh.body.dataset.fingerprint;
      });
  }
  // Listens from what the page shows now: a change since then is told at once.
  function listen() {
    var url = body.dataset.events;
    source = new EventSource(url + (url.indexOf("?") < 0 ? "?" : "&") + "since=" + body.dataset.fingerprint);
    source.onopen = function () { live.textContent = "live"; };
    source.onerror = function () { live.textContent = "live updates paused (reconnecting)"; };
    source.addEventListener("change", refresh);
  }
  // A hidden or left page lets its connection go: a browser holds few per server.
  function stop() {
    if (source) { source.close(); source = null; live.textContent = "live updates paused"; }
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { stop(); } else if (!source) { listen(); }
  });
  window.addEventListener("pagehide", stop);
  window.addEventListener("pageshow", function () { if (!source && !document.hidden) { listen(); } });
  if (!document.hidden) { listen(); }
})();
