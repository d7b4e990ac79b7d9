// Answers of the borrowed flat path (core's execute_answered) and of packed reserveMany
// (index.js packOrders + __many): the same as reading the reservation back, and the same as
// the addon's own single-call methods.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger, tempDir, rejectsWith, line } from './helpers.mjs';

const unbatched = Ledger.prototype[Symbol.for('stockledger.unbatched')];
const settleAll = (ps) => Promise.all(ps.map((p) => p.then((value) => ({ ok: true, value }), (error) => ({ ok: false, error }))));

async function stocked(durability) {
  const ledger = await Ledger.open(tempDir(), { durability });
  await ledger.setStock('A', 'w', 10);
  await ledger.setStock('B', 'w', 10);
  await ledger.setStock('C', 'x', 10);
  return ledger;
}

/** An answer without `created`: what `ledger.reservation(id)` reads. */
function withoutCreated(r) {
  const { created, ...rest } = r;
  return rest;
}

for (const durability of ['none', 'sync']) {
  test(`each answer equals the reservation read back right after it (${durability})`, async () => {
    const ledger = await stocked(durability);
    // Lines out of cell order: the answer lists them as the read-back does (by cell).
    const lines = [line('C', 'x', 1), line('B', 'w', 2), line('A', 'w', 3)];
    const created = await ledger.reserve('o-1', lines, { ttlSeconds: 60 });
    assert.equal(created.created, true);
    assert.deepStrictEqual(withoutCreated(created), ledger.reservation('o-1'));
    assert.deepEqual(created.lines.map((l) => l.sku), ['A', 'B', 'C']);
    const replay = await ledger.reserve('o-1', [...lines].reverse(), { ttlSeconds: 60 });
    assert.equal(replay.created, false);
    assert.deepStrictEqual(withoutCreated(replay), ledger.reservation('o-1'));
    await rejectsWith(ledger.reserve('o-1', [line('A', 'w', 1)]), 'ORDER_CONFLICT');
    await rejectsWith(ledger.reserve('o-2', [line('A', 'w', 8)]), 'INSUFFICIENT_STOCK');
    assert.equal(ledger.reservation('o-2'), null);
    const paid = await ledger.commit('o-1');
    assert.deepStrictEqual(paid, ledger.reservation('o-1'));
    assert.ok(paid.finishedAt instanceof Date);
    await ledger.reserve('o-3', [line('A', 'w', 1)]);
    const released = await ledger.release('o-3');
    assert.deepStrictEqual(released, ledger.reservation('o-3'));
    assert.equal(released.status, 'released');
    assert.deepStrictEqual(await ledger.release('o-3'), ledger.reservation('o-3'));
    await ledger.close();
  });

  test(`one turn of mixed calls, bad inputs among them, answers as the single-call path (${durability})`, async () => {
    const got = [];
    for (const ops of [Ledger.prototype, unbatched]) {
      const ledger = await stocked(durability);
      const call = (name, ...args) => ops[name].call(ledger, ...args);
      const results = await settleAll([
        call('reserve', 'o-1', [line('B', 'w', 1), line('A', 'w', 1)]),
        call('reserve', 'o-1', [line('A', 'w', 1), line('B', 'w', 1)]), // replay
        call('reserve', 'o-1', [line('A', 'w', 2)]),                     // ORDER_CONFLICT
        call('reserve', 'o-2', [line('A', 'w', 99)]),                    // INSUFFICIENT_STOCK
        call('reserve', 'o-3', [line('Z', 'w', 1)]),                     // unknown cell
        call('reserve', 'o-4', [line('A', 'w', 1), line('A', 'w', 1)]),  // the same cell twice
        call('reserve', 'x'.repeat(129), [line('A', 'w', 1)]),           // id too long
        call('reserve', 'o-5', [line('A', 'w', 0)]),                     // qty 0
        call('reserve', 'o-6', [line('A', 'w', 1)], { ttlSeconds: 604_801 }),
        call('reserve', 'o-7', [null]),                                  // not an object
        call('commit', 'o-1'),
        call('release', 'o-1'),                                          // ORDER_PAID
        call('commit', 'o-404'),
        call('reserve', 'o-8', [line('C', 'x', 10)], { ttlSeconds: 5 }),
        call('release', 'o-8'),
      ]);
      got.push(results.map((r) => (r.ok
        ? { ok: true, status: r.value.status, created: r.value.created, lines: r.value.lines, keys: Object.keys(r.value).join(','),
            ttl: r.value.expiresAt - r.value.createdAt, finished: 'finishedAt' in r.value }
        : { ok: false, code: r.error.code, message: r.error.message, field: r.error.field, shortfalls: r.error.shortfalls })));
      // The last answer of each order equals what the ledger now holds.
      for (const [i, id] of [[10, 'o-1'], [14, 'o-8']]) {
        assert.deepStrictEqual(results[i].value, ledger.reservation(id), id);
      }
      await ledger.close();
    }
    assert.deepStrictEqual(got[0], got[1]);
    assert.deepEqual(got[0].map((a) => a.ok || a.code), [true, true, 'ORDER_CONFLICT', 'INSUFFICIENT_STOCK',
      'INSUFFICIENT_STOCK', 'INVALID_REQUEST', 'INVALID_REQUEST', 'INVALID_REQUEST', 'INVALID_REQUEST',
      'INVALID_REQUEST', true, 'ORDER_PAID', 'ORDER_NOT_FOUND', true, true]);
  });
}

test('batches that gather while one runs on the pool share a core call and answer each call', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'sync' });
  await ledger.setStock('A', 'w', 1000);
  const ps = [];
  // Five JavaScript turns, five crossings: the first runs while the other four gather.
  for (let t = 0; t < 5; t++) {
    for (let k = 0; k < 20; k++) ps.push(ledger.reserve(`o-${t}-${k}`, [line('A', 'w', 1)]));
    ps.push(ledger.reserve(`o-${t}-0`, [line('A', 'w', 2)]).catch((e) => e.code));
    ps.push(ledger.commit(`o-${t}-1`));
    await Promise.resolve();
  }
  const got = await Promise.all(ps);
  for (let t = 0; t < 5; t++) {
    const base = t * 22;
    for (let k = 2; k < 20; k++) assert.deepStrictEqual(withoutCreated(got[base + k]), ledger.reservation(`o-${t}-${k}`));
    assert.equal(got[base + 20], 'ORDER_CONFLICT');
    assert.deepStrictEqual(got[base + 21], ledger.reservation(`o-${t}-1`));
  }
  assert.deepEqual(ledger.stock('A', 'w'), { onHand: 995, reserved: 95, available: 900 });
  await ledger.close();
});

const A = (qty) => line('A', 'w', qty);
const MANY = [
  { orderId: 'o-1', lines: [A(2)] },
  { orderId: 'o-1', lines: [A(2)] },                      // replay
  { orderId: 'o-1', lines: [A(3)] },                      // conflict
  { orderId: 'o-2', lines: [A(9)] },                      // short
  { orderId: 'o-é', lines: [A(1)] },                      // non-ASCII id
  { orderId: 'o-\uD800', lines: [A(1)] },                 // lone surrogate
  { orderId: 'y'.repeat(600), lines: [A(1)] },            // longer than napi's one-call read
  { orderId: 'o-3', lines: [{ sku: 'Bé', warehouse: 'w', qty: 1 }] },
  { orderId: 'o-4', lines: [A(1), line('C', 'x', 2)] },
  { orderId: 'o-5', lines: [A(0)] },
];

for (const durability of ['none', 'sync']) {
  test(`packed reserveMany answers as the addon's own reserveMany (${durability})`, async () => {
    const got = [];
    for (const ops of [Ledger.prototype, unbatched]) {
      const ledger = await stocked(durability);
      const results = await ops.reserveMany.call(ledger, MANY, { ttlSeconds: 30 });
      got.push(results.map((r) => (r instanceof Error
        ? { code: r.code, message: r.message, field: r.field, shortfalls: r.shortfalls, proto: Object.getPrototypeOf(r) === Error.prototype }
        : r)));
      got.push(ledger.stock('A', 'w'), ledger.reservation('o-4'));
      await ledger.close();
    }
    assert.deepStrictEqual(got.slice(0, 2), got.slice(3, 5));
    assert.deepEqual(got[0].slice(0, 4).map((r) => (typeof r === 'boolean' ? r : r.code)), [true, false, 'ORDER_CONFLICT', 'INSUFFICIENT_STOCK']);
  });
}

test('reserveMany falls back to the addon for anything packOrders does not take', async () => {
  const ledger = await stocked('none');
  const thrower = { orderId: 'o-1', get lines() { throw new Error('boom'); } };
  await assert.rejects(ledger.reserveMany([thrower]));
  const holey = [{ orderId: 'o-1', lines: [A(1)] }, , { orderId: 'o-2', lines: [A(1)] }]; // eslint-disable-line no-sparse-arrays
  await rejectsWith(ledger.reserveMany(holey), 'INVALID_REQUEST', { field: 'orders[1]' });
  await rejectsWith(ledger.reserveMany([{ orderId: 'o-1', lines: [A(1)] }], { ttlSeconds: 0 }), 'INVALID_REQUEST', { field: 'ttlSeconds' });
  await rejectsWith(ledger.reserveMany([{ orderId: 'o-1', lines: [A(1)] }], { ttlSeconds: 1.5 }), 'INVALID_REQUEST', { field: 'ttlSeconds' });
  await rejectsWith(ledger.reserveMany([{ orderId: 'o-1', lines: [A(1)] }], 'x'), 'INVALID_REQUEST', { field: 'options' });
  assert.equal(ledger.stock('A', 'w').reserved, 0);
  // Lines that grow the packed numbers past their first guess.
  const wide = Array.from({ length: 3 }, (_, i) => ({ orderId: `w-${i}`, lines: Array.from({ length: 100 }, (_, k) => line(`S${k}`, 'w', 1)) }));
  for (let k = 0; k < 100; k++) await ledger.setStock(`S${k}`, 'w', 3);
  assert.deepEqual(await ledger.reserveMany(wide), [true, true, true]);
  assert.equal(ledger.reservation('w-2').lines.length, 100);
  await ledger.close();
  await rejectsWith(ledger.reserveMany([{ orderId: 'o-1', lines: [A(1)] }]), 'LEDGER_UNAVAILABLE');
});
