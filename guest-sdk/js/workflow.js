// Durable orchestration for workflow components (world including hypergraph:task/workflow).
//
// A workflow is re-executed from the start in a fresh instance every time it resumes; every call
// below that was already answered is answered again from its journal, so completed children never
// run twice. Keep the calls deterministic (clocks and random numbers are journaled: using them is
// fine). Inputs and outputs cross as JSON (see json.js): pass objects keyed by parameter name, or
// the bare value for a task with one parameter.

import * as raw from 'hypergraph:workflow/workflow@0.1.0';
import { dumps, loads } from './json.js';

/** A child could not be started (unknown task, bad input); nothing was started. */
export class StartError extends Error {
  /** @param {string} task @param {string} message */
  constructor(task, message) {
    super(`cannot start \`${task}\`: ${message}`);
    this.name = 'StartError';
    this.task = task;
  }
}

/**
 * A child failed (after its retries). `kind`: `application` (the child returned the `err` case,
 * parsed into `value`), `trap`, `timeout`, `memory_limit`, `stack_overflow`, `exit`, `host`,
 * `cancelled`.
 */
export class ChildError extends Error {
  /** @param {string} task @param {string} kind @param {string} message @param {any} value */
  constructor(task, kind, message, value) {
    super(`child \`${task}\` failed (${kind}): ${message}`);
    this.name = 'ChildError';
    this.task = task;
    this.kind = kind;
    this.detail = message;
    this.value = value;
  }
}

/**
 * @typedef {{ index: number, task: string }} Child
 */

function payload(e) {
  return e && typeof e === 'object' && 'payload' in e ? e.payload : e;
}

function childError(task, err) {
  let value;
  if (err.value !== undefined && err.value !== null) {
    try {
      value = loads(err.value);
    } catch {
      value = err.value;
    }
  }
  return new ChildError(task, err.kind, err.message, value);
}

function millis(seconds) {
  if (!(seconds >= 0)) throw new RangeError('a duration must be a number of seconds, not negative');
  return BigInt(Math.round(seconds * 1000));
}

/**
 * Starts `task` (`<deployment>/<function>`) with `input`. Throws StartError.
 * @param {string} task @param {any} [input] @returns {Child}
 */
export function start(task, input = null) {
  try {
    return { index: raw.start(task, dumps(input)), task };
  } catch (e) {
    throw new StartError(task, String(payload(e)));
  }
}

/** One child of `task` per input, all running in parallel. @param {string} task @param {Iterable<any>} inputs @returns {Child[]} */
export function startAll(task, inputs) {
  return Array.from(inputs, (input) => start(task, input));
}

/**
 * Waits until every child has finished; returns their outputs in order. A failed child throws its
 * ChildError (the first, after all finished), or with `{ settle: true }` takes its place in the
 * array.
 * @param {Child[]} children @param {{ settle?: boolean }} [options] @returns {any[]}
 */
export function join(children, options = {}) {
  const results = raw.join(children.map((c) => c.index));
  return results.map((result, i) => {
    const task = children[i].task;
    const item = result.tag === 'ok' ? loads(result.val) : childError(task, result.val);
    if (item instanceof ChildError && !options.settle) throw item;
    return item;
  });
}

/** Starts one child and returns its output. Throws StartError or ChildError. @param {string} task @param {any} [input] @returns {any} */
export function call(task, input = null) {
  return join([start(task, input)])[0];
}

/** Sleeps durably for `seconds`: survives restarts, holds no instance. @param {number} seconds */
export function sleep(seconds) {
  raw.sleep(millis(seconds));
}

/**
 * Waits for the next event `name` (`hypergraph events send`); returns its payload, or undefined
 * when `timeoutSeconds` passed first.
 * @param {string} name @param {number} [timeoutSeconds] @returns {any}
 */
export function waitEvent(name, timeoutSeconds) {
  const payload = raw.waitEvent(name, timeoutSeconds === undefined ? undefined : millis(timeoutSeconds));
  return payload === undefined ? undefined : loads(payload);
}
