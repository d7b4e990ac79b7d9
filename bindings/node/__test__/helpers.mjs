// Shared helpers of the node --test suite.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const require = createRequire(import.meta.url);
export const { Ledger } = require('../index.js');

const dirs = [];
/** A fresh folder for a ledger, removed at exit. */
export function tempDir() {
  const d = mkdtempSync(join(tmpdir(), 'sl-node-test-'));
  dirs.push(d);
  return d;
}
process.on('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Asserts that `promiseOrFn` rejects (or throws) an Error with `.code === code`; returns it. */
export async function rejectsWith(promiseOrFn, code, extra = {}) {
  let err;
  try {
    await (typeof promiseOrFn === 'function' ? promiseOrFn() : promiseOrFn);
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected a ${code} error, got success`);
  assert.ok(err instanceof Error, `expected an Error object, got ${err}`);
  assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
  for (const [k, v] of Object.entries(extra)) assert.deepEqual(err[k], v, `error.${k}`);
  return err;
}

/** Asserts that a synchronous call throws an Error with `.code === code`; returns it. */
export function throwsWith(fn, code) {
  let err;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected a ${code} error, got success`);
  assert.ok(err instanceof Error);
  assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
  return err;
}

/** Polls `cond` until it returns a truthy value or the deadline passes. */
export async function waitFor(cond, { timeoutMs = 10_000, everyMs = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const line = (sku, warehouse, qty) => ({ sku, warehouse, qty });
