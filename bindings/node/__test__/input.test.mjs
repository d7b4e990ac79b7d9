// Bad input from JavaScript: wrong types, NaN, Infinity, fractions, negative numbers,
// numbers above 2^53, missing fields. Each rejects (or, for sync reads, throws)
// INVALID_REQUEST naming the field, changes nothing, and never takes the process down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger, tempDir, rejectsWith, throwsWith, line } from './helpers.mjs';

const L = (qty, sku = 'A1', warehouse = 'kol') => [{ sku, warehouse, qty }];

const asyncCases = [
  // [description, call(ledger), field]
  ['setStock onHand negative', (l) => l.setStock('A1', 'kol', -1), 'onHand'],
  ['setStock onHand fraction', (l) => l.setStock('A1', 'kol', 1.5), 'onHand'],
  ['setStock onHand NaN', (l) => l.setStock('A1', 'kol', NaN), 'onHand'],
  ['setStock onHand Infinity', (l) => l.setStock('A1', 'kol', Infinity), 'onHand'],
  ['setStock onHand -Infinity', (l) => l.setStock('A1', 'kol', -Infinity), 'onHand'],
  ['setStock onHand 2^53', (l) => l.setStock('A1', 'kol', 2 ** 53), 'onHand'],
  ['setStock onHand 1e300', (l) => l.setStock('A1', 'kol', 1e300), 'onHand'],
  ['setStock onHand string', (l) => l.setStock('A1', 'kol', '5'), 'onHand'],
  ['setStock onHand bigint', (l) => l.setStock('A1', 'kol', 5n), 'onHand'],
  ['setStock onHand missing', (l) => l.setStock('A1', 'kol'), 'onHand'],
  ['setStock sku number', (l) => l.setStock(7, 'kol', 1), 'sku'],
  ['setStock sku empty', (l) => l.setStock('', 'kol', 1), 'sku'],
  ['setStock sku bad characters', (l) => l.setStock('A 1', 'kol', 1), 'sku'],
  ['setStock sku too long', (l) => l.setStock('x'.repeat(65), 'kol', 1), 'sku'],
  ['setStock warehouse object', (l) => l.setStock('A1', {}, 1), 'warehouse'],
  ['setStock no arguments', (l) => l.setStock(), 'sku'],
  ['adjustStock delta zero', (l) => l.adjustStock('A1', 'kol', 0, { adjustmentId: 'a' }), 'delta'],
  ['adjustStock delta fraction', (l) => l.adjustStock('A1', 'kol', 0.5, { adjustmentId: 'a' }), 'delta'],
  ['adjustStock delta NaN', (l) => l.adjustStock('A1', 'kol', NaN, { adjustmentId: 'a' }), 'delta'],
  ['adjustStock delta -2^53', (l) => l.adjustStock('A1', 'kol', -(2 ** 53), { adjustmentId: 'a' }), 'delta'],
  ['adjustStock options missing', (l) => l.adjustStock('A1', 'kol', 1), 'options'],
  ['adjustStock options not an object', (l) => l.adjustStock('A1', 'kol', 1, 'adj-1'), 'options'],
  ['adjustStock adjustmentId missing', (l) => l.adjustStock('A1', 'kol', 1, {}), 'adjustmentId'],
  ['adjustStock adjustmentId number', (l) => l.adjustStock('A1', 'kol', 1, { adjustmentId: 3 }), 'adjustmentId'],
  ['adjustStock reason number', (l) => l.adjustStock('A1', 'kol', 1, { adjustmentId: 'a', reason: 3 }), 'reason'],
  ['adjustStock reason too long', (l) => l.adjustStock('A1', 'kol', 1, { adjustmentId: 'a', reason: 'r'.repeat(257) }), 'reason'],
  ['reserve orderId number', (l) => l.reserve(42, L(1)), 'orderId'],
  ['reserve orderId missing', (l) => l.reserve(undefined, L(1)), 'orderId'],
  ['reserve orderId with a space', (l) => l.reserve('o 1', L(1)), 'orderId'],
  ['reserve orderId too long', (l) => l.reserve('o'.repeat(129), L(1)), 'orderId'],
  ['reserve lines missing', (l) => l.reserve('o-1'), 'lines'],
  ['reserve lines not an array', (l) => l.reserve('o-1', { sku: 'A1', warehouse: 'kol', qty: 1 }), 'lines'],
  ['reserve lines empty', (l) => l.reserve('o-1', []), 'lines'],
  ['reserve 101 lines', (l) => l.reserve('o-1', Array.from({ length: 101 }, (_, i) => line(`S${i}`, 'kol', 1))), 'lines'],
  ['reserve line null', (l) => l.reserve('o-1', [null]), 'lines[0]'],
  ['reserve line a string', (l) => l.reserve('o-1', ['A1']), 'lines[0]'],
  ['reserve qty zero', (l) => l.reserve('o-1', L(0)), 'lines[0].qty'],
  ['reserve qty negative', (l) => l.reserve('o-1', L(-2)), 'lines[0].qty'],
  ['reserve qty fraction', (l) => l.reserve('o-1', [line('B1', 'kol', 1), line('A1', 'kol', 1.25)]), 'lines[1].qty'],
  ['reserve qty NaN', (l) => l.reserve('o-1', L(NaN)), 'lines[0].qty'],
  ['reserve qty Infinity', (l) => l.reserve('o-1', L(Infinity)), 'lines[0].qty'],
  ['reserve qty 2^53 + 2', (l) => l.reserve('o-1', L(2 ** 53 + 2)), 'lines[0].qty'],
  ['reserve qty above 1000000', (l) => l.reserve('o-1', L(1_000_001)), 'lines[0].qty'],
  ['reserve qty string', (l) => l.reserve('o-1', L('1')), 'lines[0].qty'],
  ['reserve qty missing', (l) => l.reserve('o-1', [{ sku: 'A1', warehouse: 'kol' }]), 'lines[0].qty'],
  ['reserve sku missing', (l) => l.reserve('o-1', [{ warehouse: 'kol', qty: 1 }]), 'lines[0].sku'],
  ['reserve warehouse number', (l) => l.reserve('o-1', [{ sku: 'A1', warehouse: 1, qty: 1 }]), 'lines[0].warehouse'],
  ['reserve duplicate cell', (l) => l.reserve('o-1', [line('A1', 'kol', 1), line('A1', 'kol', 2)]), 'lines[1]'],
  ['reserve ttlSeconds zero', (l) => l.reserve('o-1', L(1), { ttlSeconds: 0 }), 'ttlSeconds'],
  ['reserve ttlSeconds fraction', (l) => l.reserve('o-1', L(1), { ttlSeconds: 1.5 }), 'ttlSeconds'],
  ['reserve ttlSeconds above 7 days', (l) => l.reserve('o-1', L(1), { ttlSeconds: 604_801 }), 'ttlSeconds'],
  ['reserve ttlSeconds string', (l) => l.reserve('o-1', L(1), { ttlSeconds: '900' }), 'ttlSeconds'],
  ['reserve options not an object', (l) => l.reserve('o-1', L(1), 900), 'options'],
  ['commit orderId missing', (l) => l.commit(), 'orderId'],
  ['commit orderId object', (l) => l.commit({ orderId: 'o-1' }), 'orderId'],
  ['release orderId empty', (l) => l.release(''), 'orderId'],
  ['release orderId number', (l) => l.release(1), 'orderId'],
];

test('bad input rejects INVALID_REQUEST naming the field and changes nothing', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'sync' });
  await ledger.setStock('A1', 'kol', 10);
  await ledger.setStock('B1', 'kol', 10);
  for (const [what, call, field] of asyncCases) {
    let p;
    try {
      p = call(ledger);
    } catch (e) {
      assert.fail(`${what}: threw synchronously instead of rejecting: ${e}`);
    }
    assert.ok(p instanceof Promise, `${what}: returns a Promise`);
    const e = await rejectsWith(p, 'INVALID_REQUEST');
    assert.equal(e.field, field, `${what}: field`);
    assert.ok(e.message.startsWith(`${field}:`), `${what}: message names the field: ${e.message}`);
  }
  assert.deepEqual(ledger.stock('A1', 'kol'), { onHand: 10, reserved: 0, available: 10 });
  assert.deepEqual(ledger.stock('B1', 'kol'), { onHand: 10, reserved: 0, available: 10 });
  assert.equal(ledger.reservation('o-1'), null);
  // The ledger still works after all of that.
  assert.equal((await ledger.reserve('o-1', L(1))).status, 'reserved');
  await ledger.close();
});

test('bad input to synchronous reads throws INVALID_REQUEST naming the field', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'none' });
  const cases = [
    [() => ledger.stock(5, 'kol'), 'sku'],
    [() => ledger.stock('A1'), 'warehouse'],
    [() => ledger.stock('A 1', 'kol'), 'sku'],
    [() => ledger.reservation(null), 'orderId'],
    [() => ledger.reservation(''), 'orderId'],
    [() => ledger.skuStock([]), 'sku'],
  ];
  for (const [call, field] of cases) {
    const e = throwsWith(call, 'INVALID_REQUEST');
    assert.equal(e.field, field);
  }
  await ledger.close();
});

test('bad input to Ledger.open rejects INVALID_REQUEST', async () => {
  const cases = [
    [() => Ledger.open(tempDir(), { durability: 'fast' }), 'durability'],
    [() => Ledger.open(tempDir(), { durability: 1 }), 'durability'],
    [() => Ledger.open(tempDir(), 'sync'), 'options'],
    [() => Ledger.open(42), 'path'],
    [() => Ledger.open(), 'path'],
    [() => Ledger.open(''), 'path'],
  ];
  for (const [call, field] of cases) {
    const p = call();
    assert.ok(p instanceof Promise);
    const e = await rejectsWith(p, 'INVALID_REQUEST');
    assert.equal(e.field, field);
  }
});

test('a limit that core enforces keeps its field name in camelCase', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'none' });
  // 2^53 - 1 is the largest allowed on_hand: it is accepted, not refused.
  assert.equal((await ledger.setStock('A1', 'kol', 2 ** 53 - 1)).onHand, 2 ** 53 - 1);
  const ttl = await rejectsWith(ledger.reserve('o', L(1), { ttlSeconds: 10_000_000 }), 'INVALID_REQUEST');
  assert.equal(ttl.field, 'ttlSeconds');
  await ledger.close();
});
