// reserveMany: one call for many orders, each answered as reserve would answer it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger, tempDir, rejectsWith } from './helpers.mjs';

const A1 = (qty) => ({ sku: 'A1', warehouse: 'kol', qty });
const B2 = (qty) => ({ sku: 'B2', warehouse: 'kol', qty });

async function stocked(durability) {
  const ledger = await Ledger.open(tempDir(), { durability });
  await ledger.setStock('A1', 'kol', 3);
  await ledger.setStock('B2', 'kol', 10);
  return ledger;
}

const ORDERS = [
  { orderId: 'o-1', lines: [A1(2)] },
  { orderId: 'o-2', lines: [B2(1), A1(2)] }, // A1 short: nothing held
  { orderId: 'o-1', lines: [A1(2)] }, // replay
  { orderId: 'o-1', lines: [B2(1)] }, // conflict
  { orderId: 'o-3', lines: [A1(1), A1(1)] }, // the same cell twice
  { orderId: 'o-4', lines: [{ sku: 'Z9', warehouse: 'kol', qty: 1 }] },
  { orderId: '', lines: [B2(1)] },
  { orderId: 'o-5', lines: [B2(4)] },
];

for (const durability of ['none', 'sync']) {
  test(`reserveMany answers each order as reserve would (${durability})`, async () => {
    const batch = await stocked(durability);
    const one = await stocked(durability);
    const got = await batch.reserveMany(ORDERS);
    assert.equal(got.length, ORDERS.length);
    for (const [i, o] of ORDERS.entries()) {
      let want;
      try {
        want = (await one.reserve(o.orderId, o.lines)).created;
      } catch (e) {
        assert.ok(got[i] instanceof Error, `order ${i}: ${got[i]}`);
        assert.equal(got[i].code, e.code);
        assert.equal(got[i].message, e.message);
        assert.deepEqual(got[i].shortfalls, e.shortfalls);
        assert.equal(got[i].field, e.field);
        continue;
      }
      assert.equal(got[i], want, `order ${i}`);
    }
    assert.deepEqual([got[0], got[2], got[7]], [true, false, true]);
    assert.equal(got[1].code, 'INSUFFICIENT_STOCK');
    assert.deepEqual(got[1].shortfalls, [{ sku: 'A1', warehouse: 'kol', requested: 2, available: 1 }]);
    assert.equal(got[3].code, 'ORDER_CONFLICT');
    assert.equal(got[4].code, 'INVALID_REQUEST');
    for (const sku of ['A1', 'B2']) assert.deepEqual(batch.stock(sku, 'kol'), one.stock(sku, 'kol'));
    assert.equal(batch.stock('B2', 'kol').reserved, 4);
    assert.equal(batch.reservation('o-1').status, 'reserved');
    await batch.close();
    await one.close();
  });
}

test('a reserveMany batch survives a reopen in sync mode, with its ttl', async () => {
  const dir = tempDir();
  let ledger = await Ledger.open(dir);
  await ledger.setStock('A1', 'kol', 1000);
  const orders = Array.from({ length: 500 }, (_, i) => ({ orderId: `o-${i}`, lines: [A1(1)] }));
  assert.deepEqual(await ledger.reserveMany(orders, { ttlSeconds: 60 }), orders.map(() => true));
  await ledger.close();
  ledger = await Ledger.open(dir);
  assert.equal(ledger.stock('A1', 'kol').reserved, 500);
  const r = ledger.reservation('o-499');
  assert.equal(r.expiresAt - r.createdAt, 60_000);
  await ledger.close();
});

test('a malformed batch rejects naming the field and reserves nothing', async () => {
  const ledger = await stocked('none');
  const cases = [
    ['o-1', 'orders'],
    [[null], 'orders[0]'],
    [[{ orderId: 'o-1', lines: [A1(1)] }, { orderId: 7, lines: [A1(1)] }], 'orders[1].orderId'],
    [[{ orderId: 'o-1' }], 'orders[0].lines'],
    [[{ orderId: 'o-1', lines: [] }], 'orders[0].lines'],
    [[{ orderId: 'o-1', lines: [{ sku: 'A1', qty: 1 }] }], 'orders[0].lines[0].warehouse'],
    [[{ orderId: 'o-1', lines: [A1(1), B2(1.5)] }], 'orders[0].lines[1].qty'],
    [[{ orderId: 'o-1', lines: [A1(-1)] }], 'orders[0].lines[0].qty'],
    [[{ orderId: 'o-1', lines: Array.from({ length: 101 }, () => A1(1)) }], 'orders[0].lines'],
    [Array.from({ length: 10_001 }, (_, i) => ({ orderId: `o-${i}`, lines: [A1(1)] })), 'orders'],
  ];
  for (const [orders, field] of cases) {
    await rejectsWith(ledger.reserveMany(orders), 'INVALID_REQUEST', { field });
    assert.equal(ledger.stock('A1', 'kol').reserved, 0);
    assert.equal(ledger.reservation('o-1'), null);
  }
  await rejectsWith(ledger.reserveMany([{ orderId: 'o-1', lines: [A1(1)] }], { ttlSeconds: 0 }), 'INVALID_REQUEST', { field: 'ttlSeconds' });
  assert.deepEqual(await ledger.reserveMany([]), []);
  await ledger.close();
  await rejectsWith(ledger.reserveMany([{ orderId: 'o-1', lines: [A1(1)] }]), 'LEDGER_UNAVAILABLE');
});

test('concurrent batches on a hot sku never oversell', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'none' });
  await ledger.setStock('HOT', 'kol', 1000);
  const batches = await Promise.all(Array.from({ length: 4 }, (_, t) =>
    ledger.reserveMany(Array.from({ length: 600 }, (_, i) => ({ orderId: `t${t}-${i}`, lines: [{ sku: 'HOT', warehouse: 'kol', qty: 1 }] })))));
  const all = batches.flat();
  assert.equal(all.filter((r) => r === true).length, 1000);
  assert.ok(all.every((r) => r === true || r.code === 'INSUFFICIENT_STOCK'));
  assert.equal(ledger.stock('HOT', 'kol').available, 0);
  await ledger.close();
});
