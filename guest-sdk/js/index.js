// Write Hypergraph tasks in JavaScript: log, context, key-value storage and the JSON helpers.
//
// `hypergraph build` turns a JavaScript project (package.json + an ES module + wit/world.wit)
// into a component with ComponentizeJS, and makes this package importable as `hypergraph-guest`:
//
//   import { log, context, kv } from 'hypergraph-guest';
//   import * as http from 'hypergraph-guest/http';          // outbound HTTP (allowlisted hosts)
//   import * as workflow from 'hypergraph-guest/workflow';  // workflow worlds only
//
// Every call is a synchronous host call: no promises. console.log/console.error lines become log
// lines of the attempt; Date.now(), Math.random() and crypto.getRandomValues() come from the host
// and are journaled, so a replay sees the same values. Every run starts from a fresh instance:
// module variables hold their initial values on every run.

import * as rawLog from 'hypergraph:task/log@0.1.0';
import * as rawContext from 'hypergraph:task/context@0.1.0';
import * as rawKv from 'hypergraph:task/kv@0.1.0';

export { toJson, fromJson, dumps, loads } from './json.js';
import { dumps, loads } from './json.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Log lines of the current attempt, stored with the run (`hypergraph runs logs <run>`). */
export const log = {
  /**
   * Appends one line at `level` (`trace`, `debug`, `info`, `warn` or `error`).
   * @param {'trace'|'debug'|'info'|'warn'|'error'} level
   * @param {unknown} message
   */
  log(level, message) {
    if (!LEVELS.includes(level)) {
      throw new TypeError(`unknown log level ${JSON.stringify(level)}; use one of ${LEVELS.join(', ')}`);
    }
    rawLog.log(level, String(message));
  },
  /** @param {unknown} message */
  trace(message) { log.log('trace', message); },
  /** @param {unknown} message */
  debug(message) { log.log('debug', message); },
  /** @param {unknown} message */
  info(message) { log.log('info', message); },
  /** @param {unknown} message */
  warn(message) { log.log('warn', message); },
  /** @param {unknown} message */
  error(message) { log.log('error', message); },
};

/** Facts about the invocation; stable for the whole attempt. */
export const context = {
  /** The id of the run this attempt belongs to (a UUID string). @returns {string} */
  runId() { return rawContext.runId(); },
  /** The full task name, `<deployment>/<function>`. @returns {string} */
  taskName() { return rawContext.taskName(); },
  /** The attempt number of the current step, starting at 1. @returns {number} */
  attempt() { return rawContext.attempt(); },
};

/**
 * Durable key-value storage of the deployment. Reads are journaled; writes are buffered and
 * committed only with a successful attempt. Keys are at most 512 bytes, values at most 1 MiB.
 */
export const kv = {
  /** The bytes under `key`, or undefined. @param {string} key @returns {Uint8Array|undefined} */
  get(key) { return rawKv.get(key); },
  /**
   * Stores `value` (bytes, or text stored as UTF-8) under `key`.
   * @param {string} key @param {Uint8Array|string} value
   */
  set(key, value) {
    rawKv.set(key, typeof value === 'string' ? encoder.encode(value) : value);
  },
  /** Removes `key` (a missing key is not an error). @param {string} key */
  delete(key) { rawKv['delete'](key); },
  /** The keys starting with `prefix`, in byte order (at most 10,000). @param {string} [prefix] @returns {string[]} */
  listKeys(prefix = '') { return rawKv.listKeys(prefix); },
  /** The value under `key` as text, or undefined (missing or not UTF-8). @param {string} key @returns {string|undefined} */
  getString(key) {
    const bytes = rawKv.get(key);
    if (bytes === undefined) return undefined;
    try {
      return decoder.decode(bytes);
    } catch {
      return undefined;
    }
  },
  /** Stores `value` as UTF-8 text. @param {string} key @param {string} value */
  setString(key, value) { rawKv.set(key, encoder.encode(value)); },
  /** The JSON value under `key`, or undefined. @param {string} key @returns {any} */
  getJson(key) {
    const text = kv.getString(key);
    return text === undefined ? undefined : loads(text);
  },
  /** Stores `value` as JSON. @param {string} key @param {any} value */
  setJson(key, value) { kv.setString(key, dumps(value)); },
};
