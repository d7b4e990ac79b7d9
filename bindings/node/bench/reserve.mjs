// Reservations per second from Node with a fixed number of Promises in flight.
// Usage: node bench/reserve.mjs [--durability none|async|sync] [--inflight 64] [--seconds 5]
//        [--skus 10000] [--lines 1] [--batch]   (--batch: reserveMany with one array per tick)
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { Ledger } = require('../index.js');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const durability = opt('durability', 'none');
const inflight = Number(opt('inflight', '64'));
const seconds = Number(opt('seconds', '5'));
const skus = Number(opt('skus', '10000'));
const linesPerOrder = Number(opt('lines', '1'));
const batch = args.includes('--batch');
const batchSize = Number(opt('batch-size', '5000'));

const dir = mkdtempSync(join(tmpdir(), 'sl-bench-'));
const ledger = await Ledger.open(dir, { durability });
for (let i = 0; i < skus; i++) await ledger.setStock(`S${i}`, 'kol', 1e12);

let seq = 0;
let done = 0;
let failed = 0;
let end = 0;
const orderLines = () => {
  const lines = [];
  const first = (Math.random() * skus) | 0;
  for (let k = 0; k < linesPerOrder; k++) lines.push({ sku: `S${(first + k) % skus}`, warehouse: 'kol', qty: 1 });
  return lines;
};

// The loop checks the clock itself: in 'none' mode calls settle at once, so a timer would
// never get a turn while the workers run.
async function worker() {
  while (performance.now() < end) {
    try {
      await ledger.reserve(`o-${seq++}`, orderLines(), { ttlSeconds: 600 });
      done++;
    } catch (e) {
      failed++;
      if (failed < 3) console.error(e);
    }
  }
}

// --batch: each worker sends arrays of `batchSize` orders through reserveMany. The line
// arrays are made once, so that the figure is the package's cost more than the bench's own.
const lineSets = batch ? Array.from({ length: skus }, (_, first) => Array.from({ length: linesPerOrder },
  (_, k) => ({ sku: `S${(first + k) % skus}`, warehouse: 'kol', qty: 1 }))) : [];
async function batchWorker() {
  while (performance.now() < end) {
    const orders = new Array(batchSize);
    for (let k = 0; k < batchSize; k++) {
      orders[k] = { orderId: `o-${seq++}`, lines: lineSets[(Math.random() * skus) | 0] };
    }
    const results = await ledger.reserveMany(orders, { ttlSeconds: 600 });
    for (const r of results) {
      if (r === true) done++;
      else if (++failed < 3) console.error(r);
    }
  }
}
const run = batch ? () => Array.from({ length: Math.min(inflight, Number(opt("batch-workers", "2"))) }, batchWorker)
  : () => Array.from({ length: inflight }, worker);

// Warm up, then measure.
end = performance.now() + 500;
await Promise.all(run());
done = 0;
failed = 0;
const t0 = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
end = performance.now() + seconds * 1000;
await Promise.all(run());
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(cpu0);
// CPU time of the whole process (JS thread, pool threads, log writer) per reservation: a
// figure less at the mercy of a busy machine than the wall-clock rate.
const cpuUsPerOp = +((cpu.user + cpu.system) / done).toFixed(2);
console.log(JSON.stringify({ durability, batch: batch ? batchSize : null, inflight, lines: linesPerOrder, seconds: +secs.toFixed(2), reservations: done, failed, perSecond: Math.round(done / secs), cpuUsPerOp, cpuCores: +((cpu.user + cpu.system) / 1e6 / secs).toFixed(2) }));
await ledger.close();
rmSync(dir, { recursive: true, force: true });
