// Belfry health view: every service's /health/detailed (fetched by the api), queue depths
// and dead letters, polled. No libraries, no CDN. The API key (tenant belfry's) comes
// from the URL fragment (#key=...), never sent to a server but as an Authorization header.
// Replay and purge of dead letters ask for a confirmation first, and the API insists too.
(function () {
  "use strict";
  var body = document.body;
  var fragment = new URLSearchParams(location.hash.slice(1));
  var key = fragment.get("key") || "";
  var inFlight = false;
  var pending = null; // the action waiting for its confirmation: {action, queue}

  var C = BelfryConsole, $ = C.$, fmt = C.fmt, clear = C.clear, el = C.el, status = C.status;
  function count(n, word) { return fmt(n) + " " + word + (Number(n) === 1 ? "" : "s"); }
  function bytes(n) {
    if (n == null) return "–";
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }
  function uptime(s) {
    if (s == null) return "–";
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }
  function rate(r) {
    if (r == null) return "–";
    return (r > 0 ? "+" : r < 0 ? "−" : "") + Math.abs(r).toFixed(1) + "/s";
  }
  function api(path, options) {
    options = options || {};
    options.headers = { Authorization: "Bearer " + key, "Content-Type": "application/json" };
    options.cache = "no-store";
    return fetch("api/" + path, options).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (doc) {
        if (resp.status === 401 || resp.status === 403) {
          showAuth(doc.error || "That key may not open this view.");
          throw new Error("auth");
        }
        if (!resp.ok) throw new Error(doc.error || "HTTP " + resp.status);
        return doc;
      });
    });
  }
  function showAuth(message) {
    $("auth").classList.remove("hidden");
    $("auth-error").textContent = message;
    status("error", "API key needed");
  }
  function keepKey() {
    // Links to the other views carry the key in their fragment, as this page's URL does.
    var links = document.querySelectorAll("#views a[data-view]");
    for (var i = 0; i < links.length; i++) {
      links[i].setAttribute("href", "../" + links[i].dataset.view.slice(1) +
        "#key=" + encodeURIComponent(key));
    }
  }

  var NAMES = { api: "API", ingest: "Ingest", writer: "Writer", alerting: "Alerting" };
  function figure(list, label, value) {
    el("dt", null, label, list);
    el("dd", null, value, list);
  }
  function renderService(s, parent) {
    var card = el("article", "service " + s.status, null, parent);
    card.setAttribute("data-service", s.service);
    card.setAttribute("data-status", s.status);
    var head = el("div", "service-head", null, card);
    el("h2", null, NAMES[s.service] || s.service, head);
    el("span", "badge " + s.status, s.status, head);
    if (s.status === "down") {
      el("p", "reason", s.reason, card);
      if (s.url) el("p", "url", s.url, card);
      return;
    }
    var h = s.health, f = s.figures || {};
    var dl = el("dl", "facts", null, card);
    figure(dl, "version", h.version);
    figure(dl, "up for", uptime(h.uptime_seconds));
    figure(dl, "memory", bytes(h.memory && h.memory.rss_bytes));
    if (f.spool_bytes != null) figure(dl, "spool", bytes(f.spool_bytes));
    if (f.metrics_spool_bytes != null) figure(dl, "metric spool", bytes(f.metrics_spool_bytes));
    if (f.lag_seconds != null) figure(dl, "lag", Number(f.lag_seconds).toFixed(1) + " s");
    var table = el("table", "deps", null, card);
    var deps = h.dependencies || {};
    Object.keys(deps).forEach(function (name) {
      var d = deps[name], tr = el("tr", d.status, null, table);
      tr.setAttribute("data-dependency", name);
      el("td", null, name, tr);
      el("td", "badge-cell", d.status === "healthy" ? "ok" : "failing", tr);
      el("td", "num", d.latency_ms == null ? "–" : Number(d.latency_ms).toFixed(1) + " ms", tr);
      if (d.reason) el("td", "reason", d.reason, el("tr", "why", null, table)).colSpan = 3;
    });
  }
  function button(label, action, q, parent) {
    var b = el("button", action === "purge" ? "danger" : null, label, parent);
    b.type = "button";
    b.setAttribute("data-action", action);
    b.setAttribute("data-queue", q.name);
    b.setAttribute("data-count", q.depth);
    return b;
  }
  function renderQueue(q, tbody) {
    var dead = q.kind === "dead-letter";
    var tr = el("tr", q.kind + (dead && q.depth ? " has-letters" : ""), null, tbody);
    tr.setAttribute("data-queue", q.name);
    if (q.kind === "delay" && !$("show-delay").checked) tr.classList.add("hidden");
    el("td", "name", q.name, tr);
    if (q.missing) {
      el("td", "missing", q.missing, tr).colSpan = 4;
      return;
    }
    var depth = el("td", "num", fmt(q.depth), tr);
    depth.setAttribute("data-depth", q.depth);
    el("td", "num", fmt(q.consumers), tr);
    el("td", "num", rate(q.rate_per_second), tr);
    var actions = el("td", "actions", null, tr);
    if (dead && q.depth > 0) {
      button("Show", "list", q, actions);
      button("Replay…", "replay", q, actions);
      button("Purge…", "purge", q, actions);
    }
  }
  function render(doc) {
    var services = $("services");
    clear(services);
    doc.services.forEach(function (s) { renderService(s, services); });
    var broker = doc.broker, tbody = $("queues");
    clear(tbody);
    $("broker-status").textContent = broker.status === "up" ? "" : "broker down: " + broker.reason;
    broker.queues.forEach(function (q) { renderQueue(q, tbody); });
  }

  function load() {
    if (inFlight) return;
    if (!key) { showAuth(""); return; }
    inFlight = true;
    api("health")
      .then(function (doc) {
        $("auth").classList.add("hidden");
        render(doc);
        body.setAttribute("data-loaded", "true");
        var down = doc.services.filter(function (s) { return s.status === "down"; }).length;
        var letters = doc.broker.queues.reduce(function (n, q) {
          return n + (q.kind === "dead-letter" && q.depth ? q.depth : 0);
        }, 0);
        status(down || letters ? "warn" : "ok", (down ? down + " down · " : "live · ") +
          (letters ? count(letters, "dead letter") + " · " : "") +
          "updated " + new Date().toLocaleTimeString("en-GB"));
      })
      .catch(function (err) { if (err.message !== "auth") status("error", "update failed (" + err.message + ")"); })
      .then(function () { inFlight = false; });
  }

  function notice(text, error) {
    var n = $("notice");
    n.textContent = text;
    n.className = "notice" + (error ? " error" : "");
  }
  function showLetters(queue) {
    api("dead-letters/" + encodeURIComponent(queue) + "?limit=50").then(function (doc) {
      $("letters-panel").classList.remove("hidden");
      $("letters-title").textContent = count(doc.count, "dead letter") + " in " + queue +
        (doc.count > doc.messages.length ? ", the first " + doc.messages.length + " shown" : "");
      var tbody = $("letters");
      clear(tbody);
      doc.messages.forEach(function (m) {
        var tr = el("tr", null, null, tbody);
        el("td", "mono", m.message_id || "–", tr);
        el("td", null, m.stage || "–", tr);
        el("td", "reason", m.reason || "–", tr);
        el("td", null, m.failed_at || "–", tr);
        el("td", "mono body", m.body, tr);
      });
      $("letters-panel").scrollIntoView({ block: "nearest" });
    }).catch(function (err) { notice(err.message, true); });
  }
  function ask(action, queue, n) {
    pending = { action: action, queue: queue };
    var letters = count(n, "dead letter");
    $("confirm-text").textContent = action === "replay"
      ? "Replay " + letters + " of " + queue + " back to " + queue.replace(/\.dlq$/, "") + "?"
      : "Purge " + queue + "? Its " + letters + " will be deleted for good.";
    $("confirm-yes").textContent = action === "replay" ? "Confirm replay" : "Confirm purge";
    $("confirm-yes").className = action === "purge" ? "danger" : "primary";
    $("confirm").classList.remove("hidden");
    $("confirm").scrollIntoView({ block: "nearest" });
  }
  function confirmed() {
    var p = pending;
    pending = null;
    $("confirm").classList.add("hidden");
    if (!p) return;
    var path = "dead-letters/" + encodeURIComponent(p.queue) + "/" + p.action;
    api(path, { method: "POST", body: JSON.stringify({ confirm: true }) })
      .then(function (doc) {
        notice(p.action === "replay" ? "Replayed " + count(doc.replayed, "dead letter") + " to " +
          doc.to + "." : "Purged " + count(doc.purged, "dead letter") + " from " + doc.queue + ".");
        body.setAttribute("data-last-action", p.action + ":" + p.queue);
        $("letters-panel").classList.add("hidden");
        load();
      })
      .catch(function (err) { notice(err.message, true); });
  }

  $("queues").addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("button[data-action]");
    if (!b) return;
    if (b.dataset.action === "list") showLetters(b.dataset.queue);
    else ask(b.dataset.action, b.dataset.queue, b.dataset.count);
  });
  $("confirm-yes").addEventListener("click", confirmed);
  $("confirm-no").addEventListener("click", function () {
    pending = null;
    $("confirm").classList.add("hidden");
  });
  $("letters-close").addEventListener("click", function () { $("letters-panel").classList.add("hidden"); });
  $("show-delay").addEventListener("change", load);
  C.onKey(function (typed) {
    key = typed;
    fragment.set("key", key);
    history.replaceState(null, "", "#" + fragment.toString());
    keepKey();
    load();
  }, function (given) {
    fragment = given;
    key = fragment.get("key") || "";
    keepKey();
    load();
  });
  keepKey();
  load();
  C.poll(load);
})();
