(function () {
  var live = document.getElementById("live");
  if (!window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var source = new EventSource(document.body.dataset.events);
  source.onopen = function () { live.textContent = "live"; };
  source.onerror = function () { live.textContent = "live updates paused (reconnecting)"; };
  var asked = 0;
  source.addEventListener("change", function () {
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
        document.body.dataset.fingerprint = fresh.body.dataset.fingerprint;
      });
  });
})();
