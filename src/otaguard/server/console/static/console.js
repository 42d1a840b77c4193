// OTAGuard console: live deployment progress (overall and per rollout phase) by short polling.
// Our own few lines, no library.
// Cost is bounded: one small JSON request every few seconds per open page, none while the
// tab is hidden, slower after errors, and none once the deployment is over; the server reads
// the database at most once a second per deployment whatever the number of pages.
"use strict";
(function () {
  const section = document.getElementById("progress");
  if (!section || section.dataset.final === "1") return;
  const url = section.dataset.url;
  // answers read before this page was rendered (a server may reuse a read for a second) are
  // older than what the page shows: never let them undo it
  let asOf = Number(section.dataset.asOf || 0);
  const BASE_MS = 2000, MAX_MS = 30000, MAX_SAMPLES = 120;
  let delay = BASE_MS, timer = null;
  const samples = [];

  function setText(selector, text) {
    const el = document.querySelector(selector);
    if (el) el.textContent = text;
  }

  function drawTrend(id, key) {
    const line = document.getElementById(id);
    if (!line || samples.length < 2) return;
    const step = 300 / (samples.length - 1);
    line.setAttribute("points", samples.map(function (s, i) {
      return (i * step).toFixed(1) + "," + (60 - 58 * s[key]).toFixed(1);
    }).join(" "));
  }

  // a phased rollout: one stacked bar per phase, its label and summary, the rollout's status
  function updatePhases(r) {
    if (!r) return;
    r.phases.forEach(function (ph) {
      const row = document.querySelector('#phases [data-phase="' + ph.index + '"]');
      if (!row) return;
      ph.segments.forEach(function (seg) {
        const rect = row.querySelector('rect[data-seg="' + seg.status + '"]');
        if (rect) { rect.setAttribute("x", seg.x); rect.setAttribute("width", seg.width); }
      });
      const label = row.querySelector("[data-phase-label]");
      if (label && label.textContent !== ph.label) {
        label.textContent = ph.label;
        label.className = "badge b-phase-" + ph.label;
      }
      const summary = row.querySelector("[data-phase-summary]");
      if (summary) {
        summary.textContent = ph.ended + "/" + ph.total + " finished" +
          (ph.bad ? ", " + ph.bad + " failed, rolled back or silent" : "");
      }
      row.classList.toggle("current", ph.current);
      if (ph.current) row.setAttribute("aria-current", "step"); else row.removeAttribute("aria-current");
    });
    const status = document.getElementById("rollout-status");
    if (status && status.dataset.status !== r.status) {
      status.dataset.status = r.status;
      const badge = status.querySelector(".badge");
      if (badge) { badge.textContent = r.status; badge.className = "badge b-" + r.status; }
      const changed = document.getElementById("rollout-changed");
      if (changed) changed.hidden = false; // the buttons shown were for the old status
    }
    if (r.decision) setText("#rollout-decision", "Last decision: " + r.decision);
  }

  function update(p) {
    if (p.as_of < asOf) return;
    asOf = p.as_of;
    p.segments.forEach(function (seg) {
      const rect = section.querySelector('rect[data-seg="' + seg.status + '"]');
      if (rect) { rect.setAttribute("x", seg.x); rect.setAttribute("width", seg.width); }
      setText('[data-count="' + seg.status + '"]', String(seg.count));
    });
    setText('[data-count="total"]', String(p.total));
    updatePhases(p.rollout);
    const state = document.getElementById("dep-state");
    if (state && state.dataset.state !== p.state) {
      state.dataset.state = p.state;
      const badge = state.querySelector(".badge");
      if (badge) { badge.textContent = p.state.replace(/_/g, " "); badge.className = "badge b-" + p.state; }
    }
    const total = Math.max(1, p.total);
    samples.push({ done: (p.counts.succeeded + p.counts.failed) / total, failed: p.counts.failed / total });
    if (samples.length > MAX_SAMPLES) samples.shift();
    drawTrend("trend-done", "done");
    drawTrend("trend-failed", "failed");
    if (p.final) {
      setText("#live-status", "This deployment is " + p.state + ". Refresh the page for the final device lists.");
      section.dataset.final = "1";
    }
  }

  function schedule() {
    if (section.dataset.final === "1") return;
    timer = window.setTimeout(poll, delay);
  }

  function poll() {
    timer = null;
    if (document.hidden) return; // resumed by visibilitychange
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (p) { delay = BASE_MS; update(p); schedule(); })
      .catch(function () {
        delay = Math.min(MAX_MS, delay * 2);
        setText("#live-status", "Live updates paused (no answer from the server); retrying.");
        schedule();
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null) poll();
  });
  poll();
})();
