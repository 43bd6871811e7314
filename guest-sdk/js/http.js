// Outbound HTTP through wasi:http/outgoing-handler, to the deployment's allowlisted hosts
// (`hypergraph deploy ... --allow-http api.example.com`). Synchronous: each call returns the whole
// response. Every request and response is journaled, so a replay sends nothing.
//
//   import * as http from 'hypergraph-guest/http';
//   const quote = http.get('http://127.0.0.1:8080/quote').json();

import { handle } from 'wasi:http/outgoing-handler@0.2.12';
import { Fields, OutgoingBody, OutgoingRequest } from 'wasi:http/types@0.2.12';

const WRITE_CHUNK = 4096;
const READ_CHUNK = 65536n;
const dispose = Symbol.dispose || Symbol.for('dispose');
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A request that produced no response; `denied` when the host is not allowlisted. */
export class HttpError extends Error {
  /** @param {string} message @param {boolean} [denied] */
  constructor(message, denied = false) {
    super(message);
    this.name = 'HttpError';
    this.denied = denied;
  }
}

/** A response, read completely. */
export class Response {
  /** @param {number} status @param {[string, Uint8Array][]} headers @param {Uint8Array} body */
  constructor(status, headers, body) {
    /** @type {number} */
    this.status = status;
    /** @type {[string, Uint8Array][]} */
    this.headers = headers;
    /** @type {Uint8Array} */
    this.body = body;
  }
  /** True for a 2xx status. */
  get ok() { return this.status >= 200 && this.status < 300; }
  /** The first value of header `name` (case-insensitive). @param {string} name @returns {string|undefined} */
  header(name) {
    const found = this.headers.find(([key]) => key.toLowerCase() === name.toLowerCase());
    return found ? decoder.decode(found[1]) : undefined;
  }
  /** The body as text. @returns {string} */
  text() { return decoder.decode(this.body); }
  /** The body parsed as JSON. @returns {any} */
  json() { return JSON.parse(this.text()); }
}

function payload(e) {
  return e && typeof e === 'object' && 'payload' in e ? e.payload : e;
}

function failure(code) {
  if (code && code.tag === 'HTTP-request-denied') {
    return new HttpError(
      "the request was denied: the host is not on this deployment's HTTP allowlist " +
        '(hypergraph deploy --allow-http <host>)',
      true,
    );
  }
  const tag = code && code.tag ? code.tag : String(code);
  const detail = code && code.val !== undefined ? ` (${JSON.stringify(code.val)})` : '';
  return new HttpError(`the request failed: ${tag}${detail}`);
}

function split(url) {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)(.*)$/.exec(url);
  if (!m) throw new HttpError(`\`${url}\` is not an absolute http(s) URL`);
  const scheme = m[1].toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') throw new HttpError(`unsupported URL scheme \`${scheme}\``);
  if (!m[2]) throw new HttpError(`\`${url}\` has no host`);
  return { scheme, authority: m[2], path: m[3] || '/' };
}

function method(name) {
  const upper = name.toUpperCase();
  const known = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
  return known.includes(upper) ? { tag: upper.toLowerCase() } : { tag: 'other', val: name };
}

/**
 * Sends a request and reads the whole response. Throws HttpError.
 * @param {string} verb
 * @param {string} url
 * @param {{ headers?: Record<string, string>, body?: Uint8Array|string }} [options]
 * @returns {Response}
 */
export function request(verb, url, options = {}) {
  const { scheme, authority, path } = split(url);
  const body = typeof options.body === 'string' ? encoder.encode(options.body) : options.body || new Uint8Array();
  const entries = Object.entries(options.headers || {}).map(([k, v]) => [k, encoder.encode(String(v))]);
  let fields;
  try {
    fields = Fields.fromList(entries);
  } catch (e) {
    throw new HttpError(`invalid request header: ${JSON.stringify(payload(e))}`);
  }
  const req = new OutgoingRequest(fields);
  req.setMethod(method(verb));
  req.setScheme({ tag: scheme === 'http' ? 'HTTP' : 'HTTPS' });
  req.setAuthority(authority);
  req.setPathWithQuery(path);
  const outgoing = req.body();
  let future;
  try {
    // Hand the request over first: the host reads the body while the guest writes it.
    future = handle(req, undefined);
  } catch (e) {
    throw failure(payload(e));
  }
  const stream = outgoing.write();
  for (let i = 0; i < body.length; i += WRITE_CHUNK) {
    stream.blockingWriteAndFlush(body.subarray(i, i + WRITE_CHUNK));
  }
  stream[dispose]();
  try {
    OutgoingBody.finish(outgoing, undefined);
  } catch (e) {
    throw failure(payload(e));
  }
  const pollable = future.subscribe();
  pollable.block();
  pollable[dispose]();
  const outcome = future.get();
  future[dispose]();
  if (outcome === undefined || outcome.tag === 'err') throw new HttpError('the response was already taken');
  if (outcome.val.tag === 'err') throw failure(outcome.val.val);
  const response = outcome.val.val;
  const status = response.status();
  const headerFields = response.headers();
  const headers = headerFields.entries();
  headerFields[dispose]();
  const incoming = response.consume();
  const input = incoming.stream();
  const chunks = [];
  let total = 0;
  for (;;) {
    let chunk;
    try {
      chunk = input.blockingRead(READ_CHUNK);
    } catch (e) {
      const err = payload(e);
      if (err && err.tag === 'closed') break;
      throw new HttpError(`reading the response failed: ${JSON.stringify(err)}`);
    }
    chunks.push(chunk);
    total += chunk.length;
  }
  // The stream goes before its body, the body before the response.
  input[dispose]();
  incoming[dispose]();
  response[dispose]();
  const all = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return new Response(status, headers, all);
}

/** `GET url`. @param {string} url @param {Record<string, string>} [headers] @returns {Response} */
export function get(url, headers) {
  return request('GET', url, { headers });
}

/**
 * `POST url` with `body`: bytes or text as they are, anything else as JSON.
 * @param {string} url @param {any} body @param {Record<string, string>} [headers] @returns {Response}
 */
export function post(url, body, headers = {}) {
  if (!(body instanceof Uint8Array) && typeof body !== 'string') {
    body = JSON.stringify(body);
    headers = { 'content-type': 'application/json', ...headers };
  }
  return request('POST', url, { headers, body });
}
