// Belfry dashboard: fetches /{tenant}/stats, draws the figures and an inline SVG chart,
// and polls for fresh figures. No libraries, no CDN: it works offline.
// The API key comes from the URL fragment (#key=...), which browsers never send to a
// server, and goes out only as an Authorization header to this origin.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var body = document.body;
  var openMode = body.dataset.open === "true";
  var RANGES = {
    "24h": { ms: 24 * 3600e3, bucket: "hour" },
    "7d": { ms: 7 * 86400e3, bucket: "hour" },
    "30d": { ms: 30 * 86400e3, bucket: "day" },
    "365d": { ms: 365 * 86400e3, bucket: "day" }
  };
  var REASONS = {
    apple_mpp: "Apple Mail Privacy",
    image_proxy: "image proxies",
    scanner: "security scanners",
    prefetch: "prefetch",
    click_too_soon: "click too soon",
    all_links_at_once: "all links at once",
    unknown: "other machines"
  };
  var MACHINE_COLOURS = ["#f29d38", "#e8743b", "#d4a017", "#c75d8c", "#8e6bd8", "#7c8598", "#b07f4f"];

  var page = { key: "", range: "30d" };  // from the fragment: C.rangedPage
  var timer = null;
  var inFlight = false;
  var lastData = null;

  var C = BelfryConsole, $ = C.$, fmt = C.fmt, duration = C.duration, setMetric = C.setMetric;
  var clear = C.clear, el = C.el, status = C.status;
  function plural(n, one, many) { return Number(n) === 1 ? one : many; }
  function pct(r) { return r == null ? "–" : (r * 100).toFixed(1) + "%"; }
  function setPlural(name, n, one, many) {
    var els = document.querySelectorAll('[data-plural="' + name + '"]');
    for (var i = 0; i < els.length; i++) els[i].textContent = plural(n, one, many);
  }
  function svg(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function renderCards(d) {
    setMetric("registered", fmt(d.registered_emails));
    setMetric("opens", fmt(d.opens.total));
    setMetric("human-opens", fmt(d.opens.human));
    setMetric("machine-opens", fmt(d.opens.machine));
    setMetric("unique-opens", fmt(d.opens.unique));
    setMetric("unique-human-opens", fmt(d.opens.unique_human));
    setMetric("clicks", fmt(d.clicks.total));
    setPlural("opens", d.opens.total, "open", "opens");
    setPlural("unique-opens", d.opens.unique, "email", "emails");
    setPlural("clicks", d.clicks.total, "click", "clicks");
    setMetric("human-clicks", fmt(d.clicks.human));
    setMetric("ctr", pct(d.rates.click_through));
    setMetric("cto", pct(d.rates.click_to_open));
    setMetric("first-open", duration(d.first_open_delay_seconds.median));
    setMetric("first-open-mean", duration(d.first_open_delay_seconds.mean));
  }

  function renderSplit(d) {
    var bar = $("split"), legend = $("split-legend");
    clear(bar); clear(legend);
    var total = d.opens.total;
    var parts = [{ key: "human", label: "people", n: d.opens.human, colour: "#2f6fed" }];
    Object.keys(d.opens.machine_by_reason).forEach(function (reason, i) {
      parts.push({
        key: "machine-" + reason, label: REASONS[reason] || reason,
        n: d.opens.machine_by_reason[reason], colour: MACHINE_COLOURS[i % MACHINE_COLOURS.length]
      });
    });
    parts.forEach(function (p) {
      if (total > 0 && p.n > 0) {
        var seg = el("div", "seg", null, bar);
        seg.style.width = (100 * p.n / total) + "%";
        seg.style.background = p.colour;
        seg.title = p.label + ": " + fmt(p.n);
      }
      var li = el("li", null, null, legend);
      var sw = el("span", "swatch", null, li);
      sw.style.background = p.colour;
      li.appendChild(document.createTextNode(p.label + " "));
      var b = el("b", null, fmt(p.n), li);
      b.setAttribute("data-metric", "split-" + p.key);
      if (total > 0) li.appendChild(document.createTextNode(" (" + (100 * p.n / total).toFixed(1) + "%)"));
    });
    var m = el("li", null, "machine opens in all ", legend);
    var mb = el("b", null, fmt(d.opens.machine), m);
    mb.setAttribute("data-metric", "split-machine");
  }

  // An axis top and step: 1-2-5 steps, at most 5 of them, whole numbers (counts).
  function axis(peak) {
    var steps = [1, 2, 5];
    for (var p = 1; ; p *= 10) {
      for (var i = 0; i < steps.length; i++) {
        var step = steps[i] * p;
        if (step * 5 >= peak) return { step: step, top: Math.max(1, Math.ceil(peak / step)) * step };
      }
    }
  }

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  // An axis label: `scale` is "hour" (hh:00, the date at midnight), "day" or "month".
  function label(iso, scale, long) {
    var t = new Date(iso);
    var day = t.getUTCDate() + " " + MONTHS[t.getUTCMonth()];
    var hh = ("0" + t.getUTCHours()).slice(-2) + ":00";
    if (long) return scale === "hour" ? day + " " + hh + " UTC" : day + " " + t.getUTCFullYear();
    if (scale === "month") return MONTHS[t.getUTCMonth()] + " " + t.getUTCFullYear();
    if (scale === "day") return day;
    return t.getUTCHours() === 0 ? day : hh;
  }

  // Where the x axis is labelled, and how: hours over a day or less; days (at midnight)
  // over more hourly points; months (at the 1st) over a long daily range. At most 8.
  function ticks(s, bucket) {
    var n = s.length, scale = bucket === "hour" ? (n > 36 ? "day" : "hour") : (n > 120 ? "month" : "day");
    var at = [];
    if (scale !== bucket) {
      s.forEach(function (p, i) {
        var t = new Date(p.t);
        if (scale === "day" ? t.getUTCHours() === 0 : t.getUTCDate() === 1) at.push(i);
      });
    }
    if (at.length < 2) {
      at = [];
      var k = Math.min(n, 7);
      for (var j = 0; j < k; j++) at.push(k === 1 ? 0 : Math.round(j * (n - 1) / (k - 1)));
    }
    var step = Math.ceil(at.length / 8);
    return { scale: scale, at: at.filter(function (_, j) { return j % step === 0; }) };
  }

  function renderChart(d) {
    var chart = $("chart"), tip = $("tip");
    clear(chart);
    // Drawn at the element's own width, so text is never stretched.
    var W = Math.max(320, Math.round(chart.getBoundingClientRect().width) || 900);
    var H = 260, L = 46, R = 12, T = 10, B = 26;
    chart.setAttribute("viewBox", "0 0 " + W + " " + H);
    var s = d.series, n = s.length;
    var peak = 0;
    s.forEach(function (p) {
      peak = Math.max(peak, p.human_opens + p.machine_opens, p.human_clicks, p.machine_clicks || 0);
    });
    var ax = axis(peak), top = ax.top;
    function x(i) { return L + (n <= 1 ? (W - L - R) / 2 : i * (W - L - R) / (n - 1)); }
    function y(v) { return T + (H - T - B) * (1 - v / top); }
    for (var v = 0; v <= top; v += ax.step) {
      svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), "class": "grid" }, chart);
      svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "class": "axis" }, chart)
        .textContent = fmt(v);
    }
    if (peak === 0) {
      svg("text", { x: (W + L) / 2, y: H / 2, "text-anchor": "middle", "class": "empty" }, chart)
        .textContent = "No opens or clicks in this range yet";
    }
    if (n > 0) {
      var human = [], machine = [], clicks = [], machineClicks = [], base = [];
      s.forEach(function (p, i) {
        base.push(x(i) + "," + y(0));
        human.push(x(i) + "," + y(p.human_opens));
        machine.push(x(i) + "," + y(p.human_opens + p.machine_opens));
        clicks.push(x(i) + "," + y(p.human_clicks));
        machineClicks.push(x(i) + "," + y(p.machine_clicks || 0));
      });
      var area = function (upper, lower) {
        return "M" + upper.join(" L") + " L" + lower.slice().reverse().join(" L") + " Z";
      };
      svg("path", { d: area(machine, human), "class": "area-machine" }, chart);
      svg("path", { d: area(human, base), "class": "area-human" }, chart);
      svg("path", { d: "M" + machineClicks.join(" L"), "class": "line-machine-clicks" }, chart);
      svg("path", { d: "M" + clicks.join(" L"), "class": "line-clicks" }, chart);
      var tk = ticks(s, d.bucket);
      tk.at.forEach(function (i) {
        // Centred on its point, kept inside the plot at both ends.
        var anchor = x(i) < L + 30 ? "start" : x(i) > W - R - 30 ? "end" : "middle";
        svg("text", { x: x(i), y: H - 8, "text-anchor": anchor, "class": "axis tick" }, chart)
          .textContent = label(s[i].t, tk.scale, false);
      });
      var cursor = svg("line", { x1: 0, x2: 0, y1: T, y2: H - B, "class": "cursor hidden" }, chart);
      var hit = svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "transparent" }, chart);
      hit.addEventListener("mousemove", function (ev) {
        var box = chart.getBoundingClientRect();
        var vx = (ev.clientX - box.left) * W / box.width;
        var i = n <= 1 ? 0 : Math.max(0, Math.min(n - 1, Math.round((vx - L) * (n - 1) / (W - L - R))));
        var p = s[i];
        cursor.setAttribute("x1", x(i)); cursor.setAttribute("x2", x(i));
        cursor.setAttribute("class", "cursor");
        tip.textContent = label(p.t, d.bucket, true) + " · " + fmt(p.human_opens) + " human, " +
          fmt(p.machine_opens) + " machine " + plural(p.machine_opens, "open", "opens") + " · " +
          fmt(p.human_clicks) + " human, " + fmt(p.machine_clicks || 0) + " machine " +
          plural(p.machine_clicks || 0, "click", "clicks");
        tip.classList.remove("hidden");
        var px = x(i) * box.width / W;
        tip.style.left = Math.min(Math.max(0, px - tip.offsetWidth / 2), box.width - tip.offsetWidth) + "px";
      });
      hit.addEventListener("mouseleave", function () {
        cursor.setAttribute("class", "cursor hidden");
        tip.classList.add("hidden");
      });
    }
  }

  function renderLinks(d) {
    var tbody = $("links");
    clear(tbody);
    if (!d.top_links.length) {
      var tr = el("tr", "none", null, tbody);
      el("td", null, "No clicks in this range yet", tr).colSpan = 4;
      return;
    }
    var most = Math.max.apply(null, d.top_links.map(function (l) { return l.clicks; })) || 1;
    d.top_links.forEach(function (l) {
      var tr = el("tr", null, null, tbody);
      tr.setAttribute("data-link", l.url);
      var td = el("td", "url", null, tr);
      var a = el("a", null, l.url, td);
      a.href = l.url; a.rel = "noopener noreferrer"; a.target = "_blank";
      el("span", "bar", null, td).style.width = (100 * l.clicks / most) + "%";
      el("td", "num", fmt(l.human_clicks), tr).setAttribute("data-metric", "link-human-clicks");
      el("td", "num", fmt(l.clicks), tr).setAttribute("data-metric", "link-clicks");
      el("td", "num", fmt(l.unique_emails), tr);
    });
  }

  function showAuth(message) {
    $("auth").classList.remove("hidden");
    $("auth-error").textContent = message || "";
    status("error", "no access");
  }

  function load() {
    if (inFlight) return;
    if (!page.key && !openMode) { showAuth(""); return; }
    inFlight = true;
    var r = RANGES[page.range];
    var to = new Date(), from = new Date(to.getTime() - r.ms);
    var q = new URLSearchParams({ from: from.toISOString(), to: to.toISOString(), bucket: r.bucket });
    var headers = page.key ? { Authorization: "Bearer " + page.key } : {};
    fetch("stats?" + q.toString(), { headers: headers, cache: "no-store" })
      .then(function (resp) {
        if (resp.status === 401 || resp.status === 404) {
          showAuth(resp.status === 401 ? "That key is unknown or revoked." :
            "That key does not belong to this tenant.");
          return null;
        }
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      })
      .then(function (d) {
        if (!d) return;
        $("auth").classList.add("hidden");
        lastData = d;
        renderCards(d); renderSplit(d); renderChart(d); renderLinks(d);
        body.setAttribute("data-loaded", "true");
        status("ok", "live · updated " + new Date().toLocaleTimeString("en-GB"));
      })
      .catch(function (err) { status("error", "update failed (" + err.message + "), retrying"); })
      .then(function () { inFlight = false; });
  }

  // The chart is drawn at its element's width: redraw it when that changes (a phone turned).
  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () { if (lastData) renderChart(lastData); }, 100);
  });
  C.rangedPage(page, RANGES, load);
  timer = C.poll(load);
})();
