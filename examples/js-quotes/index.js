// js-quotes: a JavaScript task calling an allowlisted HTTP service, caching answers in kv.
import { kv, log } from 'hypergraph-guest';
import * as http from 'hypergraph-guest/http';

export function quote(baseUrl, symbol, maxAgeS) {
  const key = `quote/${symbol}`;
  const now = Date.now(); // journaled: a replay sees the same time, so the same cache decision
  const cached = kv.getJson(key);
  if (cached && now - cached.fetchedAt < maxAgeS * 1000) {
    log.info(`${symbol}: cached ${Math.round((now - cached.fetchedAt) / 1000)} s ago`);
    return { symbol, price: cached.price, currency: cached.currency, cached: true };
  }
  let response;
  try {
    response = http.get(`${baseUrl.replace(/\/$/, '')}/quote/${encodeURIComponent(symbol)}`);
  } catch (e) {
    // An Error thrown out of an export traps; a `result` export reports it as its `err` case.
    throw e.denied ? `${e.message}` : `the quote service is unreachable: ${e.message}`;
  }
  if (!response.ok) throw `the quote service answered ${response.status} for ${symbol}`;
  const body = response.json();
  kv.setJson(key, { price: body.price, currency: body.currency, fetchedAt: now });
  console.log(`${symbol}: ${body.price} ${body.currency} (fetched)`);
  return { symbol, price: body.price, currency: body.currency, cached: false };
}

export function headline(text) {
  const words = text.trim().split(/\s+/).filter(Boolean);
  const title = words.map((w) => w[0].toUpperCase() + w.slice(1)).join(' ');
  return title.length > 60 ? title.slice(0, 59) + '…' : title;
}
