// Every method of the npm package, every error code it can give, idempotency,
// all-or-nothing, close and reopen (node-api.md, domain.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger, tempDir, rejectsWith, throwsWith, waitFor, line } from './helpers.mjs';

const level = (onHand, reserved) => ({ onHand, reserved, available: onHand - reserved });

test('open gives a Promise of a Ledger; durability modes; new Ledger() is refused', async () => {
  for (const durability of ['sync', 'async', 'none']) {
    const p = Ledger.open(tempDir(), { durability });
    assert.ok(p instanceof Promise);
    const ledger = await p;
    assert.ok(ledger instanceof Ledger);
    assert.equal(ledger.durability, durability);
    assert.equal(ledger.closed, false);
    await ledger.close();
    assert.equal(ledger.closed, true);
  }
  const dflt = await Ledger.open(tempDir());
  assert.equal(dflt.durability, 'sync');
  await dflt.close();
  assert.throws(() => new Ledger());
});

test('setStock, adjustStock and stock: figures, idempotent adjustments, conflicts', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'sync' });
  assert.deepEqual(ledger.stock('A1', 'kol'), level(0, 0), 'unknown cell reads as zeros');
  assert.equal(ledger.skuStock('A1'), null);

  assert.deepEqual(await ledger.setStock('A1', 'kol', 100), level(100, 0));
  const adjusted = await ledger.adjustStock('A1', 'kol', -3, { adjustmentId: 'adj-1', reason: 'damaged' });
  assert.deepEqual(adjusted, level(97, 0));
  // A replay applies nothing and answers with the cell as it is now.
  assert.deepEqual(await ledger.adjustStock('A1', 'kol', -3, { adjustmentId: 'adj-1' }), level(97, 0));
  assert.deepEqual(ledger.stock('A1', 'kol'), level(97, 0));
  await rejectsWith(ledger.adjustStock('A1', 'kol', -4, { adjustmentId: 'adj-1' }), 'ADJUSTMENT_CONFLICT');
  await rejectsWith(ledger.adjustStock('A1', 'xyz', -3, { adjustmentId: 'adj-1' }), 'ADJUSTMENT_CONFLICT');
  assert.deepEqual(await ledger.adjustStock('A1', 'kol', 5, { adjustmentId: 'adj-2' }), level(102, 0));
  // Numbers well above 2^32 stay exact.
  assert.deepEqual(await ledger.setStock('BIG', 'kol', 2 ** 53 - 1), level(2 ** 53 - 1, 0));

  await ledger.setStock('A1', 'waw', 7);
  assert.deepEqual(ledger.skuStock('A1'), {
    sku: 'A1',
    total: level(109, 0),
    warehouses: [
      { warehouse: 'kol', ...level(102, 0) },
      { warehouse: 'waw', ...level(7, 0) },
    ],
  });

  // Stock reads are synchronous.
  assert.ok(!(ledger.stock('A1', 'kol') instanceof Promise));
  await ledger.close();
});

test('BELOW_RESERVED: stock may not fall below what is reserved', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'none' });
  await ledger.setStock('A1', 'kol', 10);
  await ledger.reserve('o-1', [line('A1', 'kol', 6)]);
  const e = await rejectsWith(ledger.setStock('A1', 'kol', 5), 'BELOW_RESERVED');
  assert.equal(e.onHand, 10);
  assert.equal(e.reserved, 6);
  await rejectsWith(ledger.adjustStock('A1', 'kol', -5, { adjustmentId: 'a' }), 'BELOW_RESERVED');
  await rejectsWith(ledger.adjustStock('B1', 'kol', -1, { adjustmentId: 'b' }), 'BELOW_RESERVED');
  assert.deepEqual(ledger.stock('A1', 'kol'), level(10, 6));
  assert.deepEqual(await ledger.setStock('A1', 'kol', 6), level(6, 6));
  await ledger.close();
});

test('reserve: shape, Dates, hard reservation, idempotent replay, ORDER_CONFLICT', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'sync' });
  await ledger.setStock('A1', 'kol', 100);
  await ledger.setStock('B2', 'kol', 5);
  const before = Date.now();
  const r = await ledger.reserve('o-1', [line('A1', 'kol', 2), line('B2', 'kol', 1)], { ttlSeconds: 900 });
  assert.equal(r.orderId, 'o-1');
  assert.equal(r.status, 'reserved');
  assert.deepEqual(r.lines, [line('A1', 'kol', 2), line('B2', 'kol', 1)]);
  assert.ok(r.createdAt instanceof Date);
  assert.ok(r.expiresAt instanceof Date);
  assert.ok(r.createdAt.getTime() >= before - 5 && r.createdAt.getTime() <= Date.now() + 5);
  assert.equal(r.expiresAt.getTime() - r.createdAt.getTime(), 900_000);
  assert.equal(r.created, true);
  assert.deepEqual(ledger.stock('A1', 'kol'), level(100, 2));
  assert.deepEqual(ledger.stock('B2', 'kol'), level(5, 1));

  // Same order id, same lines in another order: the same reservation, nothing more held.
  const again = await ledger.reserve('o-1', [line('B2', 'kol', 1), line('A1', 'kol', 2)], { ttlSeconds: 900 });
  assert.equal(again.created, false);
  assert.equal(again.createdAt.getTime(), r.createdAt.getTime());
  assert.deepEqual(ledger.stock('A1', 'kol'), level(100, 2));

  await rejectsWith(ledger.reserve('o-1', [line('A1', 'kol', 3)]), 'ORDER_CONFLICT');
  assert.deepEqual(ledger.stock('A1', 'kol'), level(100, 2));

  // Default ttl is 900 s.
  const d = await ledger.reserve('o-2', [line('A1', 'kol', 1)]);
  assert.equal(d.expiresAt.getTime() - d.createdAt.getTime(), 900_000);

  const read = ledger.reservation('o-1');
  assert.deepEqual({ ...read, created: undefined }, { ...r, created: undefined });
  assert.equal(ledger.reservation('nope'), null);
  await ledger.close();
});

test('INSUFFICIENT_STOCK is all-or-nothing and lists every short line', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'sync' });
  await ledger.setStock('A1', 'kol', 10);
  await ledger.setStock('B2', 'kol', 1);
  const e = await rejectsWith(
    ledger.reserve('o-1', [line('A1', 'kol', 4), line('B2', 'kol', 2), line('C3', 'waw', 1)]),
    'INSUFFICIENT_STOCK',
  );
  assert.deepEqual(
    [...e.shortfalls].sort((a, b) => a.sku.localeCompare(b.sku)),
    [
      { sku: 'B2', warehouse: 'kol', requested: 2, available: 1 },
      { sku: 'C3', warehouse: 'waw', requested: 1, available: 0 },
    ],
  );
  assert.match(e.message, /insufficient/i);
  // Nothing held, not even the line that fitted; the order id is still free.
  assert.deepEqual(ledger.stock('A1', 'kol'), level(10, 0));
  assert.deepEqual(ledger.stock('B2', 'kol'), level(1, 0));
  assert.equal(ledger.reservation('o-1'), null);
  const ok = await ledger.reserve('o-1', [line('A1', 'kol', 4), line('B2', 'kol', 1)]);
  assert.equal(ok.status, 'reserved');
  await ledger.close();
});

test('commit and release: transitions, no-op repeats, ORDER_NOT_ACTIVE, ORDER_PAID, ORDER_NOT_FOUND', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'sync' });
  await ledger.setStock('A1', 'kol', 10);
  await ledger.reserve('paid-1', [line('A1', 'kol', 3)]);
  await ledger.reserve('rel-1', [line('A1', 'kol', 2)]);
  assert.deepEqual(ledger.stock('A1', 'kol'), level(10, 5));

  const paid = await ledger.commit('paid-1');
  assert.equal(paid.status, 'paid');
  assert.ok(paid.finishedAt instanceof Date);
  assert.deepEqual(ledger.stock('A1', 'kol'), level(7, 2), 'commit: the goods leave the warehouse');
  assert.equal((await ledger.commit('paid-1')).status, 'paid', 'commit again is a no-op');
  assert.deepEqual(ledger.stock('A1', 'kol'), level(7, 2));
  await rejectsWith(ledger.release('paid-1'), 'ORDER_PAID');

  const released = await ledger.release('rel-1');
  assert.equal(released.status, 'released');
  assert.deepEqual(ledger.stock('A1', 'kol'), level(7, 0));
  assert.equal((await ledger.release('rel-1')).status, 'released', 'release again is a no-op');
  assert.deepEqual(ledger.stock('A1', 'kol'), level(7, 0));
  await rejectsWith(ledger.commit('rel-1'), 'ORDER_NOT_ACTIVE');

  await rejectsWith(ledger.commit('ghost'), 'ORDER_NOT_FOUND');
  await rejectsWith(ledger.release('ghost'), 'ORDER_NOT_FOUND');
  assert.equal(ledger.reservation('rel-1').status, 'released');
  await ledger.close();
});

test('expireDue expires what is due and returns its stock; a late commit is ORDER_NOT_ACTIVE', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'async' });
  await ledger.setStock('A1', 'kol', 10);
  await ledger.reserve('short', [line('A1', 'kol', 4)], { ttlSeconds: 1 });
  await ledger.reserve('long', [line('A1', 'kol', 1)], { ttlSeconds: 3600 });
  assert.deepEqual(await ledger.expireDue(), [], 'nothing is due yet');
  const expired = await waitFor(async () => {
    const ids = await ledger.expireDue();
    return ids.length ? ids : null;
  }, { what: 'the 1 s reservation to expire' });
  assert.deepEqual(expired, ['short']);
  assert.equal(ledger.reservation('short').status, 'expired');
  assert.equal(ledger.reservation('long').status, 'reserved');
  assert.deepEqual(ledger.stock('A1', 'kol'), level(10, 1));
  await rejectsWith(ledger.commit('short'), 'ORDER_NOT_ACTIVE');
  assert.equal((await ledger.release('short')).status, 'expired', 'release of an expired one is a no-op');
  await ledger.close();
});

test('calls are applied in the order they were made, even without awaiting each', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'sync' });
  const set = ledger.setStock('A1', 'kol', 5);
  const res = ledger.reserve('o-1', [line('A1', 'kol', 5)]);
  const com = ledger.commit('o-1');
  const after = rejectsWith(ledger.reserve('o-2', [line('A1', 'kol', 1)]), 'INSUFFICIENT_STOCK');
  assert.deepEqual(await set, level(5, 0));
  assert.equal((await res).status, 'reserved', 'each answer shows the order as its own call left it');
  assert.equal((await com).status, 'paid');
  await after;
  assert.deepEqual(ledger.stock('A1', 'kol'), level(0, 0));
  await ledger.close();
});

test('reopen: acknowledged changes survive close and reopen, with and without a checkpoint', async () => {
  const dir = tempDir();
  let ledger = await Ledger.open(dir, { durability: 'sync' });
  await ledger.setStock('A1', 'kol', 50);
  await ledger.reserve('o-1', [line('A1', 'kol', 5)], { ttlSeconds: 600 });
  await ledger.reserve('o-2', [line('A1', 'kol', 7)]);
  await ledger.commit('o-2');
  const seq = await ledger.checkpoint();
  assert.equal(typeof seq, 'number');
  assert.ok(seq > 0);
  await ledger.adjustStock('A1', 'kol', 10, { adjustmentId: 'after-checkpoint' });
  await ledger.close();

  ledger = await Ledger.open(dir, { durability: 'sync' });
  assert.deepEqual(ledger.stock('A1', 'kol'), level(53, 5));
  const r = ledger.reservation('o-1');
  assert.equal(r.status, 'reserved');
  assert.equal(r.expiresAt.getTime() - r.createdAt.getTime(), 600_000);
  assert.equal(ledger.reservation('o-2').status, 'paid');
  // Idempotency keys survive too.
  assert.deepEqual(await ledger.adjustStock('A1', 'kol', 10, { adjustmentId: 'after-checkpoint' }), level(53, 5));
  assert.equal((await ledger.reserve('o-1', [line('A1', 'kol', 5)], { ttlSeconds: 600 })).created, false);
  await ledger.close();
});

test('a second open of the same folder is LEDGER_UNAVAILABLE naming the lock', async () => {
  const dir = tempDir();
  const ledger = await Ledger.open(dir);
  const e = await rejectsWith(Ledger.open(dir), 'LEDGER_UNAVAILABLE');
  assert.match(e.message, /lock/i);
  await ledger.close();
  // Once closed, the folder opens again.
  const again = await Ledger.open(dir);
  await again.close();
});

test('after close every call rejects or throws LEDGER_UNAVAILABLE; calls made before it finish', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'sync' });
  await ledger.setStock('A1', 'kol', 10);
  const before = ledger.reserve('o-1', [line('A1', 'kol', 1)]);
  const closing = ledger.close();
  assert.equal((await before).status, 'reserved');
  await closing;

  const calls = {
    setStock: () => ledger.setStock('A1', 'kol', 1),
    adjustStock: () => ledger.adjustStock('A1', 'kol', 1, { adjustmentId: 'x' }),
    reserve: () => ledger.reserve('o-2', [line('A1', 'kol', 1)]),
    commit: () => ledger.commit('o-1'),
    release: () => ledger.release('o-1'),
    expireDue: () => ledger.expireDue(),
    checkpoint: () => ledger.checkpoint(),
  };
  for (const [name, call] of Object.entries(calls)) {
    const p = call();
    assert.ok(p instanceof Promise, `${name} returns a Promise after close`);
    await rejectsWith(p, 'LEDGER_UNAVAILABLE');
  }
  throwsWith(() => ledger.stock('A1', 'kol'), 'LEDGER_UNAVAILABLE');
  throwsWith(() => ledger.reservation('o-1'), 'LEDGER_UNAVAILABLE');
  throwsWith(() => ledger.skuStock('A1'), 'LEDGER_UNAVAILABLE');
  // Bad input on a closed ledger is still refused as unavailable, not crashed on.
  await rejectsWith(ledger.reserve(42, null), 'LEDGER_UNAVAILABLE');
  await ledger.close(); // closing again is harmless
});

test('errors are Error objects with upper-case codes and a stack', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'none' });
  const e = await rejectsWith(ledger.commit('nope'), 'ORDER_NOT_FOUND');
  assert.equal(typeof e.stack, 'string');
  assert.match(e.message, /nope/);
  await ledger.close();
});
