// JavaScript guest of the host's guarantee tests: fresh instances, journaled non-determinism,
// clear failures, kv and a workflow that must resume without re-running its children.
import { context, kv, log } from 'hypergraph-guest';
import * as workflow from 'hypergraph-guest/workflow';

let count = 0;

function deployment() {
  return context.taskName().split('/')[0];
}

export function bump() {
  count += 1;
  return count;
}

export function entropy() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  const value = {
    now: Date.now(),
    random: Math.random(),
    bytes: Array.from(bytes),
    uuid: crypto.randomUUID ? crypto.randomUUID() : null,
  };
  log.info(`entropy ${value.random}`);
  return JSON.stringify(value);
}

function inner(message) {
  throw new Error(message);
}

export function fail(message) {
  inner(message);
  return 0;
}

export function remember(key, value) {
  const previous = kv.getString(key);
  kv.setString(key, value);
  return previous;
}

export function work(key, n, sleepMs) {
  const done = Number(kv.getString(`executions/${key}`) || '0');
  kv.setString(`executions/${key}`, String(done + 1));
  return n * 2;
}

export function executions(key) {
  return Number(kv.getString(`executions/${key}`) || '0');
}

export function fanOut(prefix, n, sleepMs) {
  const inputs = [];
  for (let i = 0; i < n; i++) inputs.push({ key: `${prefix}/${i}`, n: i, sleepMs });
  return workflow.join(workflow.startAll(`${deployment()}/work`, inputs));
}
