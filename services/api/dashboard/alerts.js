// Belfry console, alerts & incidents: active alerts live from the alerting service's SSE
// stream, ack / resolve / silence, one alert's history, MTTR / MTBF, the notification
// log with replay, rules and channels. No libraries, no CDN.
// Every call goes to this origin: `api/...` (relative to /{tenant}/console/alerts), which
// the api passes to the alerting API. The API key comes from the URL fragment (#key=...),
// never sent to a server except as an Authorization header to this origin. The stream is
// read with fetch (EventSource cannot send that header).
(function () {
  "use strict";
  var body = document.body;
  var RANGES = { "24h": 864e5, "7d": 7 * 864e5, "30d": 30 * 864e5, "365d": 365 * 864e5 };
  var ACTIVE = ["firing", "acknowledged", "silenced", "pending"];
  var page = { key: "", range: "24h" };  // from the fragment: C.rangedPage
  var alerts = {};
  // `streaming`: the stream loop runs (connected, or waiting to reconnect).
  var streamBackoff = 1000, streaming = false, reloadTimer = null;

  var C = BelfryConsole, $ = C.$, fmt = C.fmt, duration = C.duration, setMetric = C.setMetric;
  var clear = C.clear, el = C.el, status = C.status;
  function plural(n, one, many) { return fmt(n) + " " + (Number(n) === 1 ? one : many); }
  function when(iso) {
    if (!iso) return "–";
    var t = new Date(iso);
    return isNaN(t) ? iso : t.toISOString().slice(0, 16).replace("T", " ");
  }
  function ago(iso) {
    if (!iso) return "";
    return duration(Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000)) + " ago";
  }
  function button(text, action, data, parent, cls) {
    var b = el("button", "small" + (cls ? " " + cls : ""), text, parent);
    b.type = "button";
    b.setAttribute("data-action", action);
    for (var k in data) b.setAttribute("data-" + k, data[k]);
    return b;
  }
  function emptyRow(tbody, cols, text) {
    var td = el("td", "none", text, el("tr", null, null, tbody));
    td.colSpan = cols;
  }
  // Table body `id` with a row per item, filled by `fill(item, tr)`, or one saying `empty`.
  function rows(id, list, cols, empty, fill) {
    var tbody = $(id);
    clear(tbody);
    if (!list.length) emptyRow(tbody, cols, empty);
    list.forEach(function (item) { fill(item, el("tr", null, null, tbody)); });
  }
  function showAuth(message) {
    $("auth").classList.remove("hidden");
    $("auth-error").textContent = message || "";
    status("error", "no access");
  }

  // One call to the alerting API through this origin; rejects with the API's reason.
  function api(path, options) {
    options = options || {};
    var headers = { Authorization: "Bearer " + page.key };
    if (options.body != null) headers["Content-Type"] = "application/json";
    return fetch("api/" + path, {
      method: options.method || "GET", headers: headers, cache: "no-store",
      body: options.body == null ? undefined : JSON.stringify(options.body)
    }).then(function (resp) {
      if (resp.status === 204) return {};
      return resp.json().catch(function () { return {}; }).then(function (doc) {
        if (resp.ok) return doc;
        var err = new Error((doc && doc.error) || "HTTP " + resp.status);
        err.status = resp.status;
        // The api's own check of the key against the path's tenant (see console/alerts.py).
        if (resp.status === 401) { err.auth = true; showAuth("That key is unknown or revoked."); }
        if (resp.status === 404 && doc.error === "unknown tenant") {
          err.auth = true; showAuth("That key does not belong to this tenant.");
        }
        throw err;
      });
    });
  }
  function rangeQuery(names) {
    var until = new Date(), since = new Date(until.getTime() - RANGES[page.range]);
    var q = new URLSearchParams();
    q.set(names[0], since.toISOString());
    if (names[1]) q.set(names[1], until.toISOString());
    return q.toString();
  }

  function labelChips(labels, parent) {
    var box = el("div", "chips", null, parent);
    Object.keys(labels || {}).sort().forEach(function (k) {
      el("span", "chip", k + "=" + labels[k], box);
    });
  }
  function annotationsOf(ann, parent) {
    var box = el("div", "annotations", null, parent);
    Object.keys(ann || {}).sort().forEach(function (k) {
      var line = el("div", null, null, box);
      el("b", null, k + ": ", line);
      var v = String(ann[k]);
      if (/^https?:\/\//i.test(v) && (k === "runbook_url" || /_url$/.test(k))) {
        var a = el("a", null, k === "runbook_url" ? "runbook" : v, line);
        a.href = v; a.rel = "noopener noreferrer"; a.target = "_blank";
        a.setAttribute("data-runbook", k === "runbook_url" ? "true" : "false");
      } else {
        line.appendChild(document.createTextNode(v));
      }
    });
  }

  function renderAlerts(list) {
    alerts = {};
    rows("alerts", list, 6, "No active alerts", function (a, tr) {
      alerts[a.fingerprint] = a;
      tr.className = "sev-" + a.severity;
      tr.setAttribute("data-fp", a.fingerprint);
      tr.setAttribute("data-state", a.state);
      var st = el("td", null, null, tr);
      el("span", "badge state-" + a.state, a.state, st);
      el("span", "badge sev sev-" + a.severity, a.severity, st);
      var name = el("td", null, null, tr);
      el("b", null, a.rule, name);
      if (a.acknowledged_by) el("div", "muted", "ack by " + a.acknowledged_by, name);
      var since = a.state === "pending" ? a.pending_since : a.fired_at;
      var td = el("td", null, when(since), tr);
      el("div", "muted", ago(since), td);
      el("td", "num", a.value == null ? (a.no_data ? "no data" : "–") : fmt(a.value), tr);
      var det = el("td", "details", null, tr);
      labelChips(a.labels, det);
      annotationsOf(a.annotations, det);
      var act = el("td", "actions", null, tr);
      var d = { fp: a.fingerprint };
      if (a.state === "firing") button("Ack", "ack", d, act);
      if (a.state !== "pending") button("Resolve", "resolve", d, act);
      button("Silence", "silence", d, act);
      button("History", "history", d, act);
    });
  }

  function renderStats(s, activity) {
    var now = s.alerts.by_state;
    ACTIVE.forEach(function (state) { setMetric(state, fmt(now[state] || 0)); });
    setMetric("mttr", duration(s.mttr_seconds));
    setMetric("mtbf", duration(s.mtbf_seconds));
    var by = activity.fired_by_severity || {}, total = 0, parts = [];
    Object.keys(by).sort().forEach(function (sev) { total += by[sev]; parts.push(sev + " " + fmt(by[sev])); });
    setMetric("fired", fmt(total));
    setMetric("fired-by-severity", parts.length ? parts.join(" · ") : "none");
  }

  function renderSilences(list) {
    rows("silences", list, 5, "No active silences", function (s, tr) {
      tr.setAttribute("data-silence", s.id);
      var m = el("td", null, null, tr);
      var box = el("div", "chips", null, m);
      s.matchers.forEach(function (x) { el("span", "chip", x.label + x.op + '"' + x.value + '"', box); });
      el("td", null, when(s.ends_at), tr);
      el("td", null, s.author, tr);
      el("td", null, s.comment, tr);
      button("Expire", "expire", { silence: s.id }, el("td", "actions", null, tr));
    });
  }

  function renderNotifications(list, rules) {
    rows("notifications", list, 7, "No notifications in this range", function (n, tr) {
      tr.setAttribute("data-notification", n.notification_id);
      tr.setAttribute("data-status", n.status);
      el("td", null, when(n.created_at), tr);
      el("td", null, n.channel + " (" + n.channel_type + ")", tr);
      var what = el("td", null, rules[n.rule_id] || n.rule_id, tr);
      el("div", "muted", n.alert_status, what);
      el("span", "badge out-" + n.status, n.status, el("td", null, null, tr));
      el("td", "num", fmt(n.attempts), tr);
      el("td", "err", n.last_error || "", tr);
      var act = el("td", "actions", null, tr);
      if (n.status === "failed") button("Replay", "replay", { notification: n.notification_id }, act);
    });
  }

  function renderRules(activity) {
    var ev = activity.evaluation;
    $("evaluation").textContent = "evaluated every " + ev.interval_seconds + " s" +
      (ev.last_evaluated_at ? ", last " + when(ev.last_evaluated_at) : "") +
      " · " + plural(ev.ticks, "tick", "ticks") + " since start" +
      (ev.last_error ? " · last error: " + ev.last_error : "");
    rows("rules", activity.rules, 5, "No rules", function (r, tr) {
      tr.setAttribute("data-rule", r.id);
      el("td", null, r.name, tr);
      el("td", null, r.severity || "", tr);
      el("td", null, r.enabled ? "yes" : "no", tr);
      var parts = Object.keys(r.alerts).sort().map(function (s) { return s + " " + r.alerts[s]; });
      el("td", null, parts.join(" · ") || "none", tr);
      el("td", null, when(r.last_transition_at), tr);
    });
    rows("channels", activity.channels, 5, "No channels", function (c, tr) {
      tr.setAttribute("data-channel", c.name);
      el("td", null, c.name, tr);
      el("td", null, c.type, tr);
      el("td", null, c.enabled ? "yes" : "no", tr);
      var last = c.last_notification, td = el("td", null, null, tr);
      if (!last) td.textContent = "never";
      else {
        el("span", "badge out-" + last.status, last.status, td);
        td.appendChild(document.createTextNode(" " + when(last.delivered_at || last.at)));
        if (last.error) el("div", "err", last.error, td);
      }
      var parts = Object.keys(c.counts).sort().map(function (s) { return s + " " + c.counts[s]; });
      el("td", null, parts.join(" · ") || "none", tr);
    });
  }

  function loadAlerts() {
    var q = ACTIVE.map(function (s) { return "state=" + s; }).join("&");
    return api("alerts?" + q + "&limit=500").then(function (d) { renderAlerts(d.alerts); });
  }
  function loadAll() {
    if (!page.key) { showAuth(""); return Promise.resolve(); }
    return Promise.all([
      loadAlerts(),
      api("stats?" + rangeQuery(["since", "until"])),
      api("activity?" + rangeQuery(["since", "until"])),
      api("silences?active=true").then(function (d) { renderSilences(d.silences); }),
      api("notifications?limit=100&" + rangeQuery(["since"])).catch(function (err) {
        if (err.auth) throw err;
        return { error: err.message };  // delivery not running: the rest still renders
      })
    ]).then(function (r) {
      renderStats(r[1], r[2]);
      renderRules(r[2]);
      var names = {};
      r[2].rules.forEach(function (rule) { names[rule.id] = rule.name; });
      if (r[4].error) { clear($("notifications")); emptyRow($("notifications"), 7, r[4].error); }
      else renderNotifications(r[4].notifications, names);
      $("auth").classList.add("hidden");
      body.setAttribute("data-loaded", "true");
      status("ok", "updated " + new Date().toLocaleTimeString("en-GB"));
    }).catch(function (err) {
      if (!err.auth) status("error", "update failed (" + err.message + "), retrying");
    });
  }
  function soon() {  // coalesce a burst of transitions into one reload
    if (reloadTimer) return;
    reloadTimer = setTimeout(function () { reloadTimer = null; loadAll(); }, 150);
  }

  // The SSE stream, read with fetch: `event: transition` → reload.
  function stream() {
    streaming = !!page.key;
    if (!page.key) return;
    fetch("api/alerts/stream", { headers: { Authorization: "Bearer " + page.key }, cache: "no-store" })
      .then(function (resp) {
        if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
        var reader = resp.body.getReader(), decoder = new TextDecoder(), buf = "";
        streamBackoff = 1000;
        $("stream-state").textContent = "live";
        body.setAttribute("data-stream", "live");
        function pump() {
          return reader.read().then(function (r) {
            if (r.done) throw new Error("stream ended");
            buf += decoder.decode(r.value, { stream: true });
            var cut;
            while ((cut = buf.indexOf("\n\n")) >= 0) {
              var block = buf.slice(0, cut); buf = buf.slice(cut + 2);
              if (/^event: transition$/m.test(block)) soon();
            }
            return pump();
          });
        }
        return pump();
      })
      .catch(function (err) {
        body.setAttribute("data-stream", "down");
        $("stream-state").textContent = "stream down (" + err.message + "), reconnecting";
        setTimeout(stream, streamBackoff);
        streamBackoff = Math.min(30000, streamBackoff * 2);
      });
  }

  function act(promise) {
    $("action-error").textContent = "";
    return promise.then(loadAll, function (err) { $("action-error").textContent = err.message; });
  }

  // A replayed notification is pending until delivery tries it: look again soon (0.25 s,
  // doubling, about 16 s in all) rather than at the next poll, and show how it ended.
  function settle(id, tries) {
    api("notifications/" + id).then(function (n) {
      if (n.status === "pending" && tries < 6) {
        setTimeout(function () { settle(id, tries + 1); }, 250 * Math.pow(2, tries));
      } else loadAll();
    }, function () { /* the next poll shows it */ });
  }

  function openSilence(fp) {
    var a = alerts[fp];
    if (!a) return;
    $("silence-title").textContent = a.rule;
    var box = $("silence-matchers");
    clear(box);
    Object.keys(a.labels).sort().forEach(function (k) {
      var row = el("label", "matcher", null, box);
      var cb = el("input", null, null, row);
      cb.type = "checkbox"; cb.checked = true;
      cb.setAttribute("data-label", k); cb.setAttribute("data-value", a.labels[k]);
      row.appendChild(document.createTextNode(" " + k + '="' + a.labels[k] + '"'));
    });
    $("silence-error").textContent = "";
    $("silence-panel").classList.remove("hidden");
    $("silence-panel").scrollIntoView({ block: "nearest" });
  }
  function submitSilence(ev) {
    ev.preventDefault();
    var matchers = [];
    var boxes = document.querySelectorAll("#silence-matchers input:checked");
    for (var i = 0; i < boxes.length; i++) {
      matchers.push({ label: boxes[i].dataset.label, op: "=", value: boxes[i].dataset.value });
    }
    api("silences", { method: "POST", body: {
      matchers: matchers, duration: $("silence-duration").value.trim(),
      author: $("silence-author").value.trim(), comment: $("silence-comment").value
    } }).then(function (s) {
      $("silence-panel").classList.add("hidden");
      body.setAttribute("data-silenced", s.id);
      loadAll();
    }, function (err) { $("silence-error").textContent = err.message; });
  }

  function renderTimeline(fp, doc) {
    var a = alerts[fp];
    $("timeline-title").textContent = a ? a.rule + " " + JSON.stringify(a.series_labels) : fp;
    var list = $("timeline");
    clear(list);
    if (!doc.events.length) el("li", "muted", "Nothing yet", list);
    doc.events.forEach(function (e) {
      var li = el("li", "ev-" + e.kind, null, list);
      el("time", null, when(e.at), li);
      if (e.kind === "transition") {
        el("span", "badge state-" + e.to, e.to, li);
        li.appendChild(document.createTextNode(" from " + e.from +
          (e.actor ? " by " + e.actor : "") + (e.reason ? " · " + e.reason : "") +
          (e.value != null ? " · value " + fmt(e.value) : "")));
      } else {
        el("span", "badge out-" + e.status, e.status, li);
        li.appendChild(document.createTextNode(" " + e.alert_status + " notification to " +
          e.channel + " (" + e.channel_type + ")"));
        var tries = el("ul", "tries", null, li);
        e.tries.forEach(function (t) {
          el("li", "out-" + t.outcome, "attempt " + t.attempt + ": " + t.outcome +
            (t.status_code ? " (HTTP " + t.status_code + ")" : "") + (t.error ? " · " + t.error : ""), tries);
        });
      }
    });
    $("timeline-panel").classList.remove("hidden");
    body.setAttribute("data-timeline", fp);
  }

  $("alerts").addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("button[data-action]");
    if (!b) return;
    var fp = b.dataset.fp, action = b.dataset.action;
    if (action === "ack" || action === "resolve") {
      act(api("alerts/" + fp + "/" + action, { method: "POST", body: { by: "console" } }));
    } else if (action === "silence") openSilence(fp);
    else if (action === "history") {
      api("alerts/" + fp + "/timeline").then(function (d) { renderTimeline(fp, d); },
        function (err) { $("action-error").textContent = err.message; });
    }
  });
  $("notifications").addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("button[data-action=replay]");
    if (!b) return;
    var id = b.dataset.notification;
    act(api("notifications/" + id + "/replay", { method: "POST", body: {} })).then(function () {
      settle(id, 0);
    });
  });
  $("silences").addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("button[data-action=expire]");
    if (b) act(api("silences/" + b.dataset.silence, { method: "DELETE" }));
  });
  $("silence-form").addEventListener("submit", submitSilence);
  $("silence-cancel").addEventListener("click", function () { $("silence-panel").classList.add("hidden"); });
  $("timeline-close").addEventListener("click", function () { $("timeline-panel").classList.add("hidden"); });

  // A new key opens the stream with it if it was not running.
  C.rangedPage(page, RANGES, loadAll, function () { if (!streaming) stream(); });
  C.poll(loadAll);
})();
