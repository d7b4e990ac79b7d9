// Drives a running stockledgerd over HTTP and checks its status page in headless Chromium
// (playwright-core): the figures move, and once traffic stops they equal /v1/stats and the
// stock API. Run by scripts/test.d/70-ui.sh, which sets PLAYWRIGHT_CORE, BASE, TOKEN, OUT.
"use strict";
const pw = require(process.env.PLAYWRIGHT_CORE);
const path = require("path");

const BASE = process.env.BASE;
const TOKEN = process.env.TOKEN;
const OUT = process.env.OUT;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

async function api(method, p, body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = "Bearer " + token;
  const r = await fetch(BASE + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { status: r.status, json, text };
}

async function until(what, fn, ms = 15000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last === true) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("timed out waiting for: " + what + (last && last !== false ? " (last: " + JSON.stringify(last) + ")" : ""));
}

function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}

async function reserve(id, sku, qty) {
  return api("POST", "/v1/reservations", { order_id: id, lines: [{ sku, warehouse: "kol", qty }] });
}

(async () => {
  check((await api("PUT", "/v1/partner/stock/HOT/kol", { on_hand: 1000 }, TOKEN)).status === 200, "set HOT");
  check((await api("PUT", "/v1/partner/stock/COLD/kol", { on_hand: 5 }, TOKEN)).status === 200, "set COLD");
  for (let i = 0; i < 5; i++) check((await reserve("seed-" + i, "HOT", 1)).status === 201, "seed reserve");

  const browser = await pw.chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(BASE + "/", { waitUntil: "load" });
    const text = (id) => page.$eval("#" + id, (el) => el.textContent);
    const num = async (id) => Number(await text(id));
    await until("a first render", async () => Number(await page.evaluate(() => document.body.dataset.updates || 0)) >= 1);
    const before = await num("total-reservations");

    // Traffic over ~3 s, so that at least two samples see it; the page's rate is watched meanwhile.
    let maxRate = 0;
    let driving = true;
    const watcher = (async () => {
      while (driving) {
        maxRate = Math.max(maxRate, Number(await text("rate-reservations")) || 0);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    for (let i = 0; i < 30; i++) {
      check((await reserve("hot-" + i, "HOT", 1)).status === 201, "reserve hot-" + i);
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 1000));
    }
    let refused = 0;
    for (let i = 0; i < 10; i++) {
      const r = await reserve("cold-" + i, "COLD", 1);
      if (r.status === 409) refused += 1;
      else check(r.status === 201, "reserve cold-" + i + ": " + r.status);
    }
    check(refused === 5, "5 of 10 COLD reservations refused, got " + refused);
    for (let i = 0; i < 3; i++) check((await api("DELETE", "/v1/reservations/hot-" + i)).status === 200, "release");
    // The rate must have shown the traffic.
    await until("a non-zero reservations/s on the page", async () => {
      maxRate = Math.max(maxRate, Number(await text("rate-reservations")) || 0);
      return maxRate > 0;
    });
    driving = false;
    await watcher;

    // Once traffic stops, the page converges on the API.
    const expected = { reservations: before + 35, refusals: 5, released: 3 };
    let stats;
    await until("page figures equal to /v1/stats", async () => {
      stats = (await api("GET", "/v1/stats")).json;
      const page = {
        reservations: await num("total-reservations"),
        refusals: await num("total-refusals"),
        released: await num("total-released"),
        live: await num("live-holds"),
        lag: await num("outbox-lag"),
        seq: await num("last-seq"),
      };
      const api_ = {
        reservations: stats.totals.reservations,
        refusals: stats.totals.refusals,
        released: stats.totals.released,
        live: stats.live_holds,
        lag: stats.outbox_lag,
        seq: stats.last_seq,
      };
      const ok = JSON.stringify(page) === JSON.stringify(api_) &&
        page.reservations === expected.reservations && page.refusals === expected.refusals &&
        page.released === expected.released;
      return ok || { page, api: api_, expected };
    });
    check(stats.live_holds === before + 35 - 3, "live holds " + stats.live_holds);
    const events = (await api("GET", "/v1/events?after=0&limit=1000")).json;
    check(stats.last_seq === events.next, "last_seq " + stats.last_seq + " vs events " + events.next);

    // The hottest sku and its available stock, as the stock API says.
    const stock = (await api("GET", "/v1/stock/HOT")).json;
    check(stock.available === 1000 - 35 + 3, "HOT available " + stock.available);
    await until("HOT first in the hot skus with the API's available stock", async () => {
      const row = await page.$$eval("#hot-skus tbody tr", (rows) => rows.map((r) => [...r.children].map((c) => c.textContent)));
      return (row.length > 0 && row[0][0] === "HOT" && Number(row[0][3]) === stock.available) || row;
    });

    // The events tail shows the latest events (server-sent events).
    await until("the latest event in the list", async () => {
      const top = await page.$eval("#events", (ol) => ol.firstElementChild ? ol.firstElementChild.dataset.seq : null);
      return Number(top) === events.next || top;
    });
    const shown = await page.$$eval("#events li", (lis) => lis.map((li) => li.textContent));
    check(shown.some((t) => t.includes("reservation.released") && t.includes("hot-2")), "release of hot-2 shown");
    check(errors.length === 0, "page errors: " + errors.join("; "));

    await page.screenshot({ path: path.join(OUT, "status-page.png") });
    console.log("status page: ok (max reservations/s seen " + maxRate + ", screenshot " + path.join(OUT, "status-page.png") + ")");
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
