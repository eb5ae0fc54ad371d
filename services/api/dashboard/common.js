// Belfry console, what every page's script shares: inlined ahead of that script in the same
// script element (one CSP hash covers both), so it is one plain global, not a module.
// No libraries, no CDN.
var BelfryConsole = (function () {
  "use strict";
  function $(id) { return document.getElementById(id); }
  function fmt(n) { return n == null ? "–" : Number(n).toLocaleString("en-US"); }
  function duration(s) {
    if (s == null) return "–";
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }
  function setMetric(name, text) {
    var els = document.querySelectorAll('[data-metric="' + name + '"]');
    for (var i = 0; i < els.length; i++) els[i].textContent = text;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function el(tag, cls, text, parent) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function status(state, text) {
    $("live").className = "live " + state;
    $("status").textContent = text;
  }
  // The page's poll period: data-poll seconds on <body>, at least one.
  function pollMs() { return Math.max(1, Number(document.body.dataset.poll) || 15) * 1000; }
  // Run `load` every period, and at once when the tab is shown again.
  function poll(load) {
    var timer = setInterval(load, pollMs());
    document.addEventListener("visibilitychange", function () { if (!document.hidden) load(); });
    return timer;
  }
  // The nav keeps the key (and range) in the fragment, which links do not carry by themselves.
  function navLinks(fragment) {
    var links = document.querySelectorAll("nav.views a[data-nav]");
    for (var i = 0; i < links.length; i++) {
      var base = links[i].getAttribute("href").split("#")[0];
      links[i].setAttribute("href", base + "#" + fragment.toString());
    }
  }
  // Show range `name` as the selected one: its button, the fragment, and so the nav links.
  function markRange(fragment, name) {
    var buttons = document.querySelectorAll("#ranges button");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].classList.toggle("active", buttons[i].dataset.range === name);
    }
    fragment.set("range", name);
    history.replaceState(null, "", "#" + fragment.toString());
    navLinks(fragment);
  }
  // The API key comes from the form (`typed(key)`) or from a new fragment pasted into the
  // address bar (`pasted(fragment)`: only the fragment changes, so the page is not reloaded).
  function onKey(typed, pasted) {
    $("auth").addEventListener("submit", function (ev) {
      ev.preventDefault();
      typed($("key-input").value.trim());
    });
    window.addEventListener("hashchange", function () {
      pasted(new URLSearchParams(location.hash.slice(1)));
    });
  }
  // A page with a time range: `page.key` and `page.range` start from the fragment (a range
  // of `ranges`, else `page.range`); the range buttons, the key form and a pasted fragment
  // change them, the fragment (and so the nav links) keeps them, and `changed()` runs; a
  // new key runs `keyed()` after. Selects the first range, so loads, at once.
  function rangedPage(page, ranges, changed, keyed) {
    var fragment;
    function select(name) {
      page.range = name;
      markRange(fragment, name);
      changed();
    }
    function useKey(given) {
      fragment = given;
      page.key = fragment.get("key") || "";
      select(ranges[fragment.get("range")] ? fragment.get("range") : page.range);
      if (keyed) keyed();
    }
    onRange(select);
    onKey(function (typed) { fragment.set("key", typed); useKey(fragment); }, useKey);
    useKey(new URLSearchParams(location.hash.slice(1)));
  }
  // A click on one of the #ranges buttons selects that range.
  function onRange(select) {
    $("ranges").addEventListener("click", function (ev) {
      var name = ev.target && ev.target.dataset && ev.target.dataset.range;
      if (name) select(name);
    });
  }
  return {
    $: $, fmt: fmt, duration: duration, setMetric: setMetric, clear: clear, el: el,
    status: status, pollMs: pollMs, poll: poll, navLinks: navLinks,
    markRange: markRange, onKey: onKey, onRange: onRange,
    rangedPage: rangedPage
  };
})();
