// Fixed amounts of work for instruction counts (callgrind), not for timing.
// Usage: node bench/count.mjs reserve N     N `await ledger.reserve(...)` calls, 64 in flight
//        node bench/count.mjs many N        N orders through reserveMany, 5000 per call
// Always 'none' durability, 1 line per order, 10,000 skus in 'kol'. Run it for N and 3N under
// callgrind (bench/count.sh) and divide the difference by 2N: setup and warm-up cancel out.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { Ledger } = require('../index.js');

const mode = process.argv[2] ?? 'reserve';
const n = Number(process.argv[3] ?? '20000');
const SKUS = 10_000;
const INFLIGHT = 64;
const BATCH = 5000;

const dir = mkdtempSync(join(tmpdir(), 'node2-count-'));
const ledger = await Ledger.open(dir, { durability: 'none' });
for (let i = 0; i < SKUS; i++) await ledger.setStock(`S${i}`, 'kol', 1e12);
const lineSets = Array.from({ length: SKUS }, (_, i) => [{ sku: `S${i}`, warehouse: 'kol', qty: 1 }]);

let seq = 0;
let failed = 0;
async function worker(count) {
  for (let k = 0; k < count; k++) {
    const r = await ledger.reserve(`o-${seq++}`, lineSets[seq % SKUS], { ttlSeconds: 600 });
    if (r.created !== true) failed++;
  }
}

async function many(count) {
  for (let done = 0; done < count; done += BATCH) {
    const orders = new Array(BATCH);
    for (let k = 0; k < BATCH; k++) {
      orders[k] = { orderId: `o-${seq++}`, lines: lineSets[seq % SKUS] };
    }
    const results = await ledger.reserveMany(orders, { ttlSeconds: 600 });
    for (const r of results) if (r !== true) failed++;
  }
}

// A fixed warm-up (the same for every N) so that the JIT has settled before the counted part.
const WARM = 20_000;
if (mode === 'many') {
  await many(WARM);
  await many(n);
} else {
  await Promise.all(Array.from({ length: INFLIGHT }, () => worker(WARM / INFLIGHT)));
  await Promise.all(Array.from({ length: INFLIGHT }, () => worker(n / INFLIGHT)));
}
if (failed) throw new Error(`${failed} calls failed`);
await ledger.close();
rmSync(dir, { recursive: true, force: true });
