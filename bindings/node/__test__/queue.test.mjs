// The JavaScript call queue of index.js: reserve/commit/release calls of one turn cross into
// the addon together (one flat batch) and must answer exactly as one call at a time would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Ledger, tempDir, rejectsWith, line } from './helpers.mjs';

const unbatched = Ledger.prototype[Symbol.for('stockledger.unbatched')];

/** Settles every Promise; { ok, value } or { ok: false, error } per call, in order. */
const settleAll = (ps) => Promise.all(ps.map((p) => p.then((value) => ({ ok: true, value }), (error) => ({ ok: false, error }))));

/** An answer with its Dates replaced by their difference, for comparing two ledgers. */
function comparable(r) {
  if (!r.ok) {
    const e = r.error;
    return { ok: false, proto: Object.getPrototypeOf(e) === Error.prototype, message: e.message, code: e.code, field: e.field, shortfalls: e.shortfalls };
  }
  const v = { ...r.value, keys: Object.keys(r.value).join(',') };
  for (const k of ['createdAt', 'expiresAt', 'finishedAt']) {
    if (k in v) {
      assert.ok(v[k] instanceof Date, k);
      // The two ledgers' clocks differ by a millisecond or so: only the ttl is exact.
      v[k] = k === 'expiresAt' ? v[k].getTime() - r.value.createdAt.getTime() : v[k].getTime() >= r.value.createdAt.getTime();
    }
  }
  return { ok: true, v };
}

// One script of calls, all made in one turn; `ops` is either the package's methods or the
// addon's single-call ones.
function script(ledger, ops) {
  const call = (name, ...args) => ops[name].call(ledger, ...args);
  return [
    call('reserve', 'o-1', [line('A', 'w', 2)], { ttlSeconds: 60 }),
    call('reserve', 'o-2', [line('A', 'w', 1), line('B', 'w', 3)]),
    call('reserve', 'o-1', [line('A', 'w', 2)]),                 // replay: created false
    call('reserve', 'o-1', [line('A', 'w', 3)]),                 // ORDER_CONFLICT
    call('reserve', 'o-3', [line('A', 'w', 100), line('B', 'w', 100)]), // INSUFFICIENT_STOCK
    call('reserve', 'o-4', [line('A', 'w', -1)]),                // INVALID_REQUEST lines[0].qty
    call('reserve', 'o 5', [line('A', 'w', 1)]),                 // INVALID_REQUEST orderId (core)
    call('reserve', 'o-6', [line('A', 'w', 1)], { ttlSeconds: 0 }), // INVALID_REQUEST ttlSeconds (core)
    call('reserve', 'o-7', [{ sku: 'A', warehouse: 'w' }]),      // INVALID_REQUEST lines[0].qty required
    call('reserve', 'o-8', []),                                  // INVALID_REQUEST lines
    call('reserve', 42, [line('A', 'w', 1)]),                    // INVALID_REQUEST orderId type
    call('reserve', 'o-9', [line('A', 'w', 1)], 'x'),            // INVALID_REQUEST options
    call('commit', 'o-1'),
    call('commit', 'o-1'),                                       // no-op on a paid one
    call('release', 'o-1'),                                      // ORDER_PAID
    call('release', 'o-2'),
    call('commit', 'o-2'),                                       // ORDER_NOT_ACTIVE
    call('release', 'o-2'),                                      // no-op
    call('commit', 'nope'),                                      // ORDER_NOT_FOUND
    call('commit', undefined),                                   // INVALID_REQUEST orderId
    call('reserve', 'o-11', [line('Aé', 'w', 1)]),              // INVALID_REQUEST lines[0].sku (non-ASCII)
    call('reserve', 'o-\uD800', [line('A', 'w', 1)]),           // INVALID_REQUEST orderId (lone surrogate)
    call('reserve', 'o-10', [line('B', 'w', 10)]),
  ];
}

for (const durability of ['none', 'sync']) {
  test(`one turn of queued calls answers exactly as the single-call path (${durability})`, async () => {
    const answers = [];
    for (const ops of [Ledger.prototype, unbatched]) {
      const ledger = await Ledger.open(tempDir(), { durability });
      await ledger.setStock('A', 'w', 10);
      await ledger.setStock('B', 'w', 10);
      const results = await settleAll(script(ledger, ops));
      answers.push(results.map(comparable));
      assert.deepEqual(ledger.stock('A', 'w'), { onHand: 8, reserved: 0, available: 8 });
      assert.deepEqual(ledger.stock('B', 'w'), { onHand: 10, reserved: 10, available: 0 });
      await ledger.close();
    }
    assert.deepStrictEqual(answers[0], answers[1]);
    const codes = answers[0].map((a) => (a.ok ? (a.v.created === false ? 'replay' : 'ok') : a.code));
    assert.deepEqual(codes, ['ok', 'ok', 'replay', 'ORDER_CONFLICT', 'INSUFFICIENT_STOCK', 'INVALID_REQUEST',
      'INVALID_REQUEST', 'INVALID_REQUEST', 'INVALID_REQUEST', 'INVALID_REQUEST', 'INVALID_REQUEST', 'INVALID_REQUEST',
      'ok', 'ok', 'ORDER_PAID', 'ok', 'ORDER_NOT_ACTIVE', 'ok', 'ORDER_NOT_FOUND', 'INVALID_REQUEST',
      'INVALID_REQUEST', 'INVALID_REQUEST', 'ok']);
    assert.equal(answers[0][20].field, 'lines[0].sku');
    assert.equal(answers[0][21].field, 'orderId');
  });
}

test('many calls in one turn with one bad call: only it rejects, the rest apply in order', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'none' });
  await ledger.setStock('A', 'w', 1000);
  const ps = [];
  for (let i = 0; i < 500; i++) {
    ps.push(i === 250 ? ledger.reserve(`o-${i}`, [line('A', 'w', 1.5)]) : ledger.reserve(`o-${i}`, [line('A', 'w', 1)]));
  }
  const results = await settleAll(ps);
  results.forEach((r, i) => assert.equal(r.ok, i !== 250, `call ${i}`));
  const err = results[250].error;
  assert.equal(err.code, 'INVALID_REQUEST');
  assert.equal(err.field, 'lines[0].qty');
  assert.equal(err.message, 'lines[0].qty: must be an integer');
  assert.equal(ledger.reservation('o-250'), null);
  assert.deepEqual(ledger.stock('A', 'w'), { onHand: 1000, reserved: 499, available: 501 });
  // Calls made in order against a stock that runs out: exactly the first ones fit.
  await ledger.setStock('B', 'w', 3);
  const more = await settleAll(Array.from({ length: 6 }, (_, i) => ledger.reserve(`b-${i}`, [line('B', 'w', 1)])));
  assert.deepEqual(more.map((r) => r.ok), [true, true, true, false, false, false]);
  assert.equal(more[3].error.code, 'INSUFFICIENT_STOCK');
  assert.deepEqual(more[3].error.shortfalls, [{ sku: 'B', warehouse: 'w', requested: 1, available: 0 }]);
  await ledger.close();
});

test('queued calls keep their order against setStock, reserveMany and close made in the same turn', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'none' });
  const ps = [
    ledger.setStock('A', 'w', 10),
    ledger.reserve('o-1', [line('A', 'w', 10)]),
    ledger.setStock('A', 'w', 5),                                 // below what o-1 reserved
    ledger.release('o-1'),
    ledger.setStock('A', 'w', 5),
    ledger.reserveMany([{ orderId: 'm-1', lines: [line('A', 'w', 5)] }]),
    ledger.reserve('o-2', [line('A', 'w', 1)]),                   // nothing left
    ledger.close(),
    ledger.reserve('o-3', [line('A', 'w', 1)]),                   // after close
  ];
  const r = await settleAll(ps);
  assert.deepEqual(r.map((x) => (x.ok ? 'ok' : x.error.code)), ['ok', 'ok', 'BELOW_RESERVED', 'ok', 'ok', 'ok', 'INSUFFICIENT_STOCK', 'ok', 'LEDGER_UNAVAILABLE']);
  assert.deepEqual(r[5].value, [true]);
  assert.equal(r[3].value.status, 'released');
});

test('calls across turns: 64 workers reserve, commit and release; the figures add up', async () => {
  for (const durability of ['none', 'sync']) {
    const ledger = await Ledger.open(tempDir(), { durability });
    await ledger.setStock('A', 'w', 1_000_000);
    let seq = 0;
    const counts = { paid: 0, released: 0 };
    const worker = async () => {
      for (let k = 0; k < (durability === 'sync' ? 10 : 100); k++) {
        const id = `o-${seq++}`;
        const r = await ledger.reserve(id, [line('A', 'w', 2)]);
        assert.equal(r.created, true);
        await new Promise((res) => setImmediate(res)); // a new macrotask turn now and then
        const done = k % 2 ? await ledger.commit(id) : await ledger.release(id);
        assert.equal(done.status, k % 2 ? 'paid' : 'released');
        counts[done.status]++;
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    assert.deepEqual(ledger.stock('A', 'w'), { onHand: 1_000_000 - 2 * counts.paid, reserved: 0, available: 1_000_000 - 2 * counts.paid });
    await ledger.close();
  }
});

test('sync: a batch of queued calls resolves only once durable (survives kill -9)', async () => {
  const dir = tempDir();
  const child = `
    const { Ledger } = require(${JSON.stringify(fileURLToPath(new URL('../index.js', import.meta.url)))});
    (async () => {
      const ledger = await Ledger.open(${JSON.stringify(dir)}, { durability: 'sync' });
      await ledger.setStock('A', 'w', 100);
      const ps = [];
      for (let i = 0; i < 50; i++) ps.push(ledger.reserve('o-' + i, [{ sku: 'A', warehouse: 'w', qty: 1 }]));
      ps.push(ledger.commit('o-0'));
      // The first settled answer ends the process at once: everything it covers must be on disk.
      await ps[ps.length - 1];
      process.stdout.write('acknowledged\\n');
      process.kill(process.pid, 'SIGKILL');
    })();`;
  const out = spawnSync(process.execPath, ['-e', child], { encoding: 'utf8' });
  assert.equal(out.signal, 'SIGKILL', out.stderr);
  assert.match(out.stdout, /acknowledged/);
  const ledger = await Ledger.open(dir, { durability: 'sync' });
  for (let i = 0; i < 50; i++) assert.ok(ledger.reservation(`o-${i}`), `o-${i} survived`);
  assert.equal(ledger.reservation('o-0').status, 'paid');
  assert.deepEqual(ledger.stock('A', 'w'), { onHand: 99, reserved: 49, available: 50 });
  await ledger.close();
});

test('sync: a queued batch settles on a later turn, through the pool', async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'sync' });
  await ledger.setStock('A', 'w', 100);
  const ps = Array.from({ length: 20 }, (_, i) => ledger.reserve(`o-${i}`, [line('A', 'w', 1)]));
  let settled = false;
  const all = Promise.all(ps).then(() => (settled = true));
  // Nothing settles within the turn that made the calls.
  await null;
  assert.equal(settled, false);
  await all;
  assert.equal(ps.length, 20);
  await rejectsWith(ledger.reserve('o-0', [line('A', 'w', 2)]), 'ORDER_CONFLICT');
  await ledger.close();
});

test("none: an await loop of reserve calls leaves timers and I/O their turn", async () => {
  const ledger = await Ledger.open(tempDir(), { durability: 'none' });
  await ledger.setStock('A', 'w', 1e12);
  let stop = false;
  let seq = 0;
  const timer = new Promise((res) => setTimeout(() => { stop = true; res(); }, 20));
  const worker = async () => {
    while (!stop) await ledger.reserve(`o-${seq++}`, [line('A', 'w', 1)]);
  };
  await Promise.all([timer, ...Array.from({ length: 64 }, worker)]);
  assert.ok(seq > 64, `${seq} calls`);
  await ledger.close();
});
