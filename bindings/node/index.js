// The package's entry point (hand-written; `native.js` is the loader napi generates).
//
// `reserve`, `commit` and `release` queue their calls here instead of crossing into the addon
// one by one: each call gets its Promise at once, its arguments go into flat arrays, and once
// per JavaScript turn (a microtask) the whole queue crosses into Rust in one call
// (`__flat`, see src/flat.rs) and comes back as flat answers, from which the same
// reservation objects and errors as the single-call methods are built. In 'none' mode an
// idle ledger runs the batch at once on this thread (nothing to wait for), up to INLINE_CALLS
// calls per turn of the event loop: past that, batches go through the libuv pool until
// setImmediate has run, so that an `await` loop of reserve calls cannot starve timers and I/O.
// In 'sync' and 'async' mode every batch waits on the pool, with one fsync for the batch.
//
// Calls stay in order: any other call that may write (setStock, adjustStock, reserveMany,
// expireDue, checkpoint, close) first sends the queued calls on. reserveMany packs its
// orders the same way (one string, one Float64Array: `__many`) when they are plainly valid. A call whose arguments this
// layer does not recognise as well-formed (wrong types, a getter that throws, ...) also sends
// the queue on and then goes through the addon's own single-call method, which answers it
// exactly as before (INVALID_REQUEST naming the field, or LEDGER_UNAVAILABLE once closed).
'use strict';

module.exports = require('./native.js');

const { Ledger } = module.exports;
const proto = Ledger.prototype;
const native = {
  reserve: proto.reserve,
  commit: proto.commit,
  release: proto.release,
  flat: proto.__flat,
  many: proto.__many,
  reserveMany: proto.reserveMany,
};

/** Most calls in one crossing (src/flat.rs MAX_CALLS). */
const MAX_CALLS = 4096;
/** Most lines of a reservation (domain.md); more go to the addon, which refuses them. */
const MAX_LINES = 100;
/** Most orders of one reserveMany (src/many.rs MAX_ORDERS). */
const MAX_ORDERS = 10_000;
/** Most UTF-16 units of text packed for one reserveMany: 3 UTF-8 bytes each stay within
 * src/many.rs MAX_TEXT_BYTES (64 MiB); more goes to the addon's own method. */
const MAX_MANY_UNITS = Math.floor((64 << 20) / 3);
/** Calls run inline ('none' mode) per turn of the event loop before batches go to the pool. */
const INLINE_CALLS = 4096;
const STATUS = ['reserved', 'paid', 'released', 'expired'];
const RESERVE = 0;
const COMMIT = 1;
const RELEASE = 2;
const kQueue = Symbol('stockledger.queue');
// The addon's own single-call methods, for tests that compare the two paths.
Object.defineProperty(proto, Symbol.for('stockledger.unbatched'), { value: native });

class Queue {
  constructor(ledger) {
    this.ledger = ledger;
    this.closed = ledger.closed;
    this.scheduled = false;
    this.flushLater = () => {
      this.scheduled = false;
      this.flush();
    };
    this.inlined = 0;
    this.refillScheduled = false;
    this.refill = () => {
      this.refillScheduled = false;
      this.inlined = 0;
    };
    // Numbers of the queued calls, written in place (`p` used); the addon copies them out
    // during the crossing, so one array serves every batch.
    this.nums = new Float64Array(1024);
    this.p = 0;
    this.reset();
  }

  reset() {
    this.n = 0;
    this.p = 0;
    this.text = '';
    this.ids = [];
    this.resolves = [];
    this.rejects = [];
  }

  /** Room for `k` more numbers. */
  room(k) {
    if (this.p + k > this.nums.length) {
      const grown = new Float64Array(Math.max(this.nums.length * 2, this.p + k));
      grown.set(this.nums.subarray(0, this.p));
      this.nums = grown;
    }
    return this.nums;
  }

  /** Queues the call whose arguments were just pushed; its Promise. */
  add(orderId) {
    const p = new Promise(capture);
    this.ids.push(orderId);
    this.resolves.push(captured.resolve);
    this.rejects.push(captured.reject);
    if (++this.n >= MAX_CALLS) {
      this.flush();
    } else if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flushLater);
    }
    return p;
  }

  /** Sends the queued calls into the addon. */
  flush() {
    const n = this.n;
    if (n === 0) return;
    const batch = { n, ids: this.ids, resolves: this.resolves, rejects: this.rejects };
    const text = this.text;
    const nums = this.nums.subarray(0, this.p);
    this.reset();
    const inline = this.inlined < INLINE_CALLS;
    if (inline) {
      this.inlined += n;
      if (!this.refillScheduled) {
        this.refillScheduled = true;
        setImmediate(this.refill);
      }
    }
    let out;
    try {
      out = native.flat.call(this.ledger, text, nums, inline);
    } catch (e) {
      rejectAll(batch, e);
      return;
    }
    if (Array.isArray(out)) {
      settle(batch, out);
    } else {
      out.then((o) => settle(batch, o), (e) => rejectAll(batch, e));
    }
  }
}

// One executor for every Promise (no closure per call): it hands the resolving functions over
// through `captured`, read right after `new Promise` returns.
const captured = { resolve: null, reject: null };
function capture(resolve, reject) {
  captured.resolve = resolve;
  captured.reject = reject;
}

function queueOf(ledger) {
  let q = ledger[kQueue];
  if (q === undefined) {
    q = new Queue(ledger);
    Object.defineProperty(ledger, kQueue, { value: q });
  }
  return q;
}

function rejectAll(batch, e) {
  for (let i = 0; i < batch.n; i++) batch.rejects[i](e);
}

/** Resolves or rejects each call of a batch from the addon's `[text, nums, errors]`. */
function settle(batch, out) {
  const text = out[0];
  const nums = out[1];
  const errors = out[2];
  let p = 0;
  let t = 0;
  for (let i = 0; i < batch.n; i++) {
    if (nums[p++] !== 1) {
      batch.rejects[i](errors[i]);
      continue;
    }
    const status = STATUS[nums[p]];
    const createdAt = nums[p + 1];
    const expiresAt = nums[p + 2];
    const finishedAt = nums[p + 3];
    const created = nums[p + 4];
    const count = nums[p + 5];
    p += 6;
    const lines = [];
    for (let k = 0; k < count; k++) {
      const skuEnd = t + nums[p];
      const sku = text.slice(t, skuEnd);
      t = skuEnd + nums[p + 1];
      lines.push({ sku, warehouse: text.slice(skuEnd, t), qty: nums[p + 2] });
      p += 3;
    }
    // Same shape, same key order as the single-call answer (src/shapes.rs); a reserve's
    // answer (no finishedAt, a created flag) in one literal, without a shape change.
    let r;
    if (finishedAt < 0 && created >= 0) {
      r = { orderId: batch.ids[i], status, lines, createdAt: new Date(createdAt), expiresAt: new Date(expiresAt), created: created === 1 };
    } else {
      r = { orderId: batch.ids[i], status, lines, createdAt: new Date(createdAt), expiresAt: new Date(expiresAt) };
      if (finishedAt >= 0) r.finishedAt = new Date(finishedAt);
      if (created >= 0) r.created = created === 1;
    }
    batch.resolves[i](r);
  }
}

function isUint(v) {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Pushes a reserve's arguments; false (and nothing pushed) if they are not plainly valid. */
function pushReserve(q, orderId, lines, options) {
  if (typeof orderId !== 'string' || !Array.isArray(lines)) return false;
  const count = lines.length;
  if (count < 1 || count > MAX_LINES) return false;
  const nums = q.room(4 + 3 * count);
  const p0 = q.p;
  let p = p0;
  let text = orderId;
  try {
    nums[p++] = RESERVE;
    nums[p++] = orderId.length;
    nums[p++] = -1;
    nums[p++] = count;
    for (let i = 0; i < count; i++) {
      const line = lines[i];
      if (typeof line !== 'object' || line === null || Array.isArray(line)) break;
      const sku = line.sku;
      if (typeof sku !== 'string') break;
      const warehouse = line.warehouse;
      if (typeof warehouse !== 'string') break;
      const qty = line.qty;
      if (!isUint(qty)) break;
      nums[p++] = sku.length;
      nums[p++] = warehouse.length;
      nums[p++] = qty;
      text += sku + warehouse;
    }
    if (p === p0 + 4 + 3 * count) {
      let ok = options === undefined || options === null;
      if (!ok && typeof options === 'object' && !Array.isArray(options)) {
        const ttl = options.ttlSeconds;
        ok = ttl === undefined || ttl === null;
        if (!ok && isUint(ttl)) {
          nums[p0 + 2] = ttl;
          ok = true;
        }
      }
      if (ok) {
        // Taken only now: a call refused half way leaves nothing behind.
        q.p = p;
        q.text += text;
        return true;
      }
    }
  } catch {
    // A getter that throws: the addon's own method reports it.
  }
  return false;
}

Object.defineProperties(proto, {
  reserve: {
    value: function reserve(orderId, lines, options) {
      const q = this[kQueue] || queueOf(this);
      if (!q.closed && pushReserve(q, orderId, lines, options)) return q.add(orderId);
      q.flush();
      return native.reserve.call(this, orderId, lines, options);
    },
    writable: true,
    enumerable: true,
    configurable: true,
  },
  commit: {
    value: function commit(orderId) {
      const q = this[kQueue] || queueOf(this);
      if (!q.closed && typeof orderId === 'string') {
        const nums = q.room(2);
        nums[q.p++] = COMMIT;
        nums[q.p++] = orderId.length;
        q.text += orderId;
        return q.add(orderId);
      }
      q.flush();
      return native.commit.call(this, orderId);
    },
    writable: true,
    enumerable: true,
    configurable: true,
  },
  release: {
    value: function release(orderId) {
      const q = this[kQueue] || queueOf(this);
      if (!q.closed && typeof orderId === 'string') {
        const nums = q.room(2);
        nums[q.p++] = RELEASE;
        nums[q.p++] = orderId.length;
        q.text += orderId;
        return q.add(orderId);
      }
      q.flush();
      return native.release.call(this, orderId);
    },
    writable: true,
    enumerable: true,
    configurable: true,
  },
});

/**
 * Packs reserveMany's orders for `__many` (src/many.rs `Batch::unpack`): `[text, nums, ttl]`,
 * or null if anything is not plainly valid (the addon's own method then answers, naming the
 * field). Reading the orders here costs a fraction of reading them through napi.
 */
function packOrders(orders, options) {
  if (!Array.isArray(orders)) return null;
  const n = orders.length;
  if (n > MAX_ORDERS) return null;
  let ttl = -1;
  if (options !== undefined && options !== null) {
    if (typeof options !== 'object' || Array.isArray(options)) return null;
    const t = options.ttlSeconds;
    if (t !== undefined && t !== null) {
      if (!isUint(t)) return null;
      ttl = t;
    }
  }
  let nums = new Float64Array(n * 5 + 8);
  let p = 0;
  let text = '';
  try {
    for (let i = 0; i < n; i++) {
      const o = orders[i];
      if (typeof o !== 'object' || o === null || Array.isArray(o)) return null;
      const id = o.orderId;
      if (typeof id !== 'string') return null;
      const lines = o.lines;
      if (!Array.isArray(lines)) return null;
      const count = lines.length;
      if (count < 1 || count > MAX_LINES) return null;
      if (p + 2 + 3 * count > nums.length) {
        const grown = new Float64Array(Math.max(nums.length * 2, p + 2 + 3 * count));
        grown.set(nums);
        nums = grown;
      }
      nums[p++] = id.length;
      nums[p++] = count;
      text += id;
      for (let k = 0; k < count; k++) {
        const line = lines[k];
        if (typeof line !== 'object' || line === null || Array.isArray(line)) return null;
        const sku = line.sku;
        if (typeof sku !== 'string') return null;
        const warehouse = line.warehouse;
        if (typeof warehouse !== 'string') return null;
        const qty = line.qty;
        if (!isUint(qty)) return null;
        nums[p++] = sku.length;
        nums[p++] = warehouse.length;
        nums[p++] = qty;
        text += sku + warehouse;
      }
    }
  } catch {
    // A getter that throws: the addon's own method reports it.
    return null;
  }
  if (text.length > MAX_MANY_UNITS) return null;
  return [text, nums.subarray(0, p), ttl];
}

/** reserveMany's answer from `__many`'s `[codes, errors]`. */
function manyResults(out) {
  const codes = out[0];
  const errors = out[1];
  const n = codes.length;
  const results = [];
  for (let i = 0; i < n; i++) {
    const c = codes[i];
    results.push(c === 1 ? true : c === 0 ? false : errors[i]);
  }
  return results;
}

Object.defineProperty(proto, 'reserveMany', {
  value: function reserveMany(orders, options) {
    const q = this[kQueue] || queueOf(this);
    q.flush();
    const packed = q.closed ? null : packOrders(orders, options);
    if (packed === null) return native.reserveMany.call(this, orders, options);
    return native.many.call(this, packed[0], packed[1], packed[2]).then(manyResults);
  },
  writable: true,
  enumerable: true,
  configurable: true,
});

// Calls that may write go after the queued ones.
for (const name of ['setStock', 'adjustStock', 'expireDue', 'checkpoint', 'close']) {
  const method = proto[name];
  Object.defineProperty(proto, name, {
    value: {
      [name](...args) {
        const q = this[kQueue] || queueOf(this);
        if (name === 'close') q.closed = true;
        q.flush();
        return method.apply(this, args);
      },
    }[name],
    writable: true,
    enumerable: true,
    configurable: true,
  });
}
