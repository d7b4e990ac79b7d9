// The status page: polls /v1/stats every second and tails /v1/events/stream (SSE).
// Plain DOM, no dependencies: the binary serves everything the page needs.
"use strict";
(function () {
  const MAX_EVENTS = 50;
  const $ = (id) => document.getElementById(id);
  const fmt = (x, digits) => (x === null || x === undefined) ? "–" : Number(x).toFixed(digits);
  const seconds = (s) => {
    if (s === null || s === undefined) return "–";
    return s < 0.001 ? (s * 1e6).toFixed(0) + " µs" : s < 1 ? (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms" : s.toFixed(2) + " s";
  };
  let updates = 0;

  function setText(id, text) {
    const el = $(id);
    if (el && el.textContent !== String(text)) el.textContent = text;
  }

  function render(s) {
    setText("rate-reservations", fmt(s.rates.reservations, 1));
    setText("rate-refusals", fmt(s.rates.refusals, 1));
    setText("rate-paid", fmt(s.rates.paid, 1));
    setText("rate-expiries", fmt(s.rates.expiries, 1));
    setText("total-reservations", s.totals.reservations);
    setText("total-refusals", s.totals.refusals);
    setText("total-paid", s.totals.paid);
    setText("total-expiries", s.totals.expiries);
    setText("total-released", s.totals.released);
    setText("live-holds", s.live_holds);
    setText("outbox-lag", s.outbox_lag);
    setText("fsync-p99", seconds(s.fsync_p99_seconds));
    setText("window", fmt(s.window_s, 0));
    setText("last-seq", s.last_seq);
    setText("updated-at", new Date().toLocaleTimeString());
    const ready = $("ready");
    ready.textContent = s.ready ? "ready" : "LEDGER UNAVAILABLE";
    ready.className = "badge " + (s.ready ? "ok" : "bad");
    const body = $("hot-skus").tBodies[0];
    const rows = s.hot_skus.map((h) => {
      const tr = document.createElement("tr");
      tr.dataset.sku = h.sku;
      for (const v of [h.sku, fmt(h.reservations_per_s, 1), h.reservations, h.available === null ? "–" : h.available]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      }
      return tr;
    });
    body.replaceChildren(...rows);
    updates += 1;
    document.body.dataset.updates = String(updates);
  }

  async function poll() {
    try {
      const r = await fetch("/v1/stats", { cache: "no-store" });
      if (r.ok) render(await r.json());
      else setText("ready", "stats: HTTP " + r.status);
    } catch (e) {
      setText("ready", "unreachable");
      $("ready").className = "badge bad";
    }
  }

  function addEvent(ev) {
    const list = $("events");
    const li = document.createElement("li");
    li.dataset.seq = ev.seq;
    const seq = document.createElement("span");
    seq.className = "seq";
    seq.textContent = ev.seq;
    const type = document.createElement("span");
    type.className = "type";
    type.textContent = ev.type;
    const what = document.createElement("span");
    what.className = "key";
    const lines = (ev.lines || []).map((l) => l.sku + "@" + l.warehouse + "×" + l.qty).join(" ");
    what.textContent = (ev.order_id || ev.sku || "") + (lines ? " " + lines : "") +
      (ev.on_hand !== undefined ? " on_hand " + ev.on_hand : "");
    li.append(seq, type, what);
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_EVENTS) list.removeChild(list.lastChild);
  }

  let lastSeen = null;
  function connect(after) {
    const url = "/v1/events/stream" + (after === null ? "" : "?after=" + after);
    const es = new EventSource(url);
    es.onopen = () => setText("stream-state", "live");
    es.onmessage = null;
    const onEvent = (m) => {
      try {
        const ev = JSON.parse(m.data);
        lastSeen = ev.seq;
        addEvent(ev);
      } catch (e) { /* a malformed message is skipped */ }
    };
    for (const t of ["reservation.created", "reservation.released", "reservation.expired", "order.paid",
      "order.payment_failed", "payment.refund_required", "stock.set", "stock.adjusted"]) {
      es.addEventListener(t, onEvent);
    }
    // Dropped (too slow) or failed: reconnect from the end rather than replay a backlog.
    const restart = (why) => {
      setText("stream-state", why);
      es.close();
      setTimeout(() => connect(null), 2000);
    };
    es.addEventListener("dropped", () => restart("dropped (too far behind); reconnecting"));
    es.addEventListener("error", (m) => { if (m.data) restart("stream error; reconnecting"); });
    es.onerror = () => setText("stream-state", "reconnecting…");
  }

  // Start with the latest few events already in the log.
  fetch("/v1/stats", { cache: "no-store" })
    .then((r) => r.json())
    .then((s) => { render(s); connect(Math.max(0, s.last_seq - 20)); })
    .catch(() => connect(null));
  setInterval(poll, 1000);
})();
