/* interp dashboard: sorting, filtering and keyboard navigation. No network, no dependencies.
   Errors are collected into <html data-js-errors="..."> so headless tests can read them from the DOM. */
(function () {
  "use strict";
  var root = document.documentElement;
  function noteError(msg) {
    var prev = root.getAttribute("data-js-errors");
    root.setAttribute("data-js-errors", (prev ? prev + " | " : "") + String(msg).slice(0, 300));
  }
  window.addEventListener("error", function (e) { noteError(e.message || e.type); });
  window.addEventListener("unhandledrejection", function (e) { noteError("unhandled rejection: " + e.reason); });

  function params() {
    var out = {};
    (location.hash || "").replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) return; var p = kv.split("="); out[decodeURIComponent(p[0])] = decodeURIComponent(p[1] || "");
    });
    return out;
  }

  function sortTable(table, key, dir) {
    var tbody = table.tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    var num = table.querySelector('th[data-key="' + key + '"]');
    if (!num) throw new Error("no sortable column " + key);
    var isText = num.getAttribute("data-type") === "text";
    rows.sort(function (a, b) {
      var x = a.getAttribute("data-" + key), y = b.getAttribute("data-" + key);
      var c;
      if (isText) { c = String(x).localeCompare(String(y)); }
      else { x = parseFloat(x); y = parseFloat(y); x = isNaN(x) ? -Infinity : x; y = isNaN(y) ? -Infinity : y; c = x - y; }
      if (c === 0) c = parseInt(a.getAttribute("data-i"), 10) - parseInt(b.getAttribute("data-i"), 10);
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
    Array.prototype.forEach.call(table.querySelectorAll("th[data-key]"), function (th) {
      th.setAttribute("aria-sort", th.getAttribute("data-key") === key ? dir : "none");
    });
    table.setAttribute("data-sorted-by", key + ":" + dir);
    var live = table.id === "latents" ? document.getElementById("sort-status") : null;
    if (live) live.textContent = "Sorted by " + num.textContent.trim() + ", " + dir + ".";
  }

  function setupIndex(table) {
    Array.prototype.forEach.call(table.querySelectorAll("th[data-key] button"), function (btn) {
      btn.addEventListener("click", function () {
        var th = btn.parentNode, key = th.getAttribute("data-key");
        var dir = th.getAttribute("aria-sort") === "descending" ? "ascending" : "descending";
        sortTable(table, key, dir);
        history.replaceState(null, "", "#sort=" + key + "&dir=" + dir);
      });
    });
    var p = params();
    if (p.sort && table.id === (p.table || "latents")) sortTable(table, p.sort, p.dir === "ascending" ? "ascending" : "descending");
    var input = table.id === "latents" ? document.getElementById("filter") : null;
    if (input) {
      input.addEventListener("input", function () {
        var q = input.value.trim().toLowerCase(), shown = 0;
        Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
          var ok = !q || (r.getAttribute("data-search") || "").toLowerCase().indexOf(q) >= 0;
          r.hidden = !ok; if (ok) shown++;
        });
        document.getElementById("filter-count").textContent = shown + " shown";
      });
    }
    // keyboard: j/k or ArrowDown/ArrowUp move between rows, Enter opens
    table.addEventListener("keydown", function (e) {
      var row = e.target.closest ? e.target.closest("tr") : null;
      if (!row || row.parentNode !== table.tBodies[0]) return;
      var next = null;
      if (e.key === "ArrowDown" || e.key === "j") { next = row.nextElementSibling; while (next && next.hidden) next = next.nextElementSibling; }
      if (e.key === "ArrowUp" || e.key === "k") { next = row.previousElementSibling; while (next && next.hidden) next = next.previousElementSibling; }
      if (next) { e.preventDefault(); var f = next.querySelector("a, [tabindex]"); if (f) f.focus(); }
    });
  }

  function setupPage() {
    // token tooltips from data-act (kept out of the markup: pages stay small)
    document.addEventListener("mouseover", function (e) {
      var t = e.target;
      if (t && t.classList && t.classList.contains("tok") && t.hasAttribute("data-act") && !t.title)
        t.title = "activation " + t.getAttribute("data-act");
    });
    // latent pages: [ and ] go to the previous / next latent, i to the index
    document.addEventListener("keydown", function (e) {
      if (e.target && (e.target.tagName === "INPUT" || e.target.tagName === "TEXTAREA")) return;
      var id = { "[": "prev", "]": "next", "i": "up" }[e.key];
      var a = id && document.getElementById("nav-" + id);
      if (a && a.href) { e.preventDefault(); location.href = a.href; }
    });
  }

  function setupAttention() {
    Array.prototype.forEach.call(document.querySelectorAll(".attn-tokens"), function (box) {
      var weights = JSON.parse(box.getAttribute("data-weights"));   // [query][key]
      var toks = box.querySelectorAll(".tok");
      function show(q) {
        Array.prototype.forEach.call(toks, function (t, k) {
          var w = (weights[q] && weights[q][k]) || 0;
          t.style.background = "rgba(11,87,208," + w.toFixed(3) + ")";
          t.style.color = w > 0.55 ? "#fff" : "";
          t.classList.toggle("sel", k === q);
          t.setAttribute("aria-pressed", k === q ? "true" : "false");
        });
        box.setAttribute("data-query", q);
        var st = box.parentNode.querySelector(".attn-status");
        if (st) st.textContent = "Query token " + q + ": colour shows how much it attends to each token.";
      }
      Array.prototype.forEach.call(toks, function (t, k) {
        t.addEventListener("click", function () { show(k); });
        t.addEventListener("focus", function () { show(k); });
      });
      show(toks.length - 1);
    });
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), setupIndex);
    setupPage();
    setupAttention();
    root.setAttribute("data-ready", "1");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
