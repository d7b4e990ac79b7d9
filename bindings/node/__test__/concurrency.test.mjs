// Many Promises at once: no oversell on a hot sku, and the event loop keeps running while
// 'sync' reservations wait on fsync.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger, tempDir, line } from './helpers.mjs';

for (const durability of ['sync', 'none']) {
  test(`1,000 concurrent reserve Promises on a hot sku: exactly its stock succeed (${durability})`, async () => {
    const ledger = await Ledger.open(tempDir(), { durability });
    await ledger.setStock('HOT', 'kol', 100);
    await ledger.setStock('COLD', 'kol', 1_000_000);
    const results = await Promise.allSettled(
      Array.from({ length: 1000 }, (_, i) =>
        // Half of the orders also take a plentiful sku: all-or-nothing must hold there too.
        ledger.reserve(`o-${i}`, i % 2 ? [line('HOT', 'kol', 1), line('COLD', 'kol', 1)] : [line('HOT', 'kol', 1)]),
      ),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    const failed = results.filter((r) => r.status === 'rejected');
    assert.equal(ok.length, 100);
    assert.equal(failed.length, 900);
    for (const f of failed) {
      assert.equal(f.reason.code, 'INSUFFICIENT_STOCK');
      assert.deepEqual(
        f.reason.shortfalls.map((s) => s.sku),
        ['HOT'],
      );
    }
    assert.deepEqual(ledger.stock('HOT', 'kol'), { onHand: 100, reserved: 100, available: 0 });
    const coldHeld = ok.filter((r) => r.value.lines.length === 2).length;
    assert.deepEqual(ledger.stock('COLD', 'kol'), { onHand: 1_000_000, reserved: coldHeld, available: 1_000_000 - coldHeld });
    for (const r of ok) assert.equal(ledger.reservation(r.value.orderId).status, 'reserved');

    // Releasing them all concurrently returns every unit.
    await Promise.all(ok.map((r) => ledger.release(r.value.orderId)));
    assert.deepEqual(ledger.stock('HOT', 'kol'), { onHand: 100, reserved: 0, available: 100 });
    assert.deepEqual(ledger.stock('COLD', 'kol'), { onHand: 1_000_000, reserved: 0, available: 1_000_000 });
    await ledger.close();
  });
}

test('the event loop stays responsive while sync reservations wait on fsync', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'sync' });
  await ledger.setStock('A1', 'kol', 1_000_000);
  let pending = 0;
  let ticksWhilePending = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    ticks++;
    if (pending > 0) ticksWhilePending++;
  }, 1);
  // 8 clients keep reserving, one call after another each, until the timer has fired 25
  // times while some reservation was waiting (or a deadline passes).
  const WANT = 25;
  const deadline = Date.now() + 20_000;
  let done = 0;
  const client = async (c) => {
    for (let i = 0; ticksWhilePending < WANT && Date.now() < deadline; i++) {
      pending++;
      try {
        await ledger.reserve(`c${c}-${i}`, [line('A1', 'kol', 1)]);
        done++;
      } finally {
        pending--;
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, (_, c) => client(c)));
  clearInterval(timer);
  // Had the calls blocked the event loop, the timer could not have fired while they waited.
  assert.ok(ticksWhilePending >= WANT, `timer fired ${ticksWhilePending} times while reservations waited (${ticks} in all)`);
  assert.ok(done >= 8, `${done} reservations made`);
  assert.equal(ledger.stock('A1', 'kol').reserved, done);
  await ledger.close();
});

test('the sync read stock() answers while a batch of reservations is on the pool', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'sync' });
  await ledger.setStock('A1', 'kol', 10_000);
  const inflight = Array.from({ length: 2000 }, (_, i) => ledger.reserve(`o-${i}`, [line('A1', 'kol', 1)]));
  // Reads see a consistent cell at every moment while the batch runs.
  const seen = [];
  while (seen.length < 50) {
    const s = ledger.stock('A1', 'kol');
    assert.equal(s.available, s.onHand - s.reserved);
    seen.push(s.reserved);
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(inflight);
  assert.equal(ledger.stock('A1', 'kol').reserved, 2000);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i] >= seen[i - 1], 'reserved never goes back');
  await ledger.close();
});
