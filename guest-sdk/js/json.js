// The JSON mapping of WIT values (see the README's "JSON and WIT"): records are objects keyed by
// their kebab-case field names, options are null or the value, lists and tuples arrays, enums the
// case name, `list<u8>` an array or base64 text.

function kebab(name) {
  return name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()).replace(/_/g, '-');
}

function camel(name) {
  return name.replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());
}

/**
 * `value` in the WIT JSON shape: object keys in camelCase or snake_case become kebab-case,
 * `undefined` becomes null, `Uint8Array` an array of bytes, `BigInt` a decimal string, `Map` an
 * object, `Set` an array.
 * @param {any} value
 * @returns {any}
 */
export function toJson(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return value;
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value) || value instanceof Set) return Array.from(value, toJson);
  if (value instanceof Map) return Object.fromEntries(Array.from(value, ([k, v]) => [String(k), toJson(v)]));
  if (typeof value.toJSON === 'function') return toJson(value.toJSON());
  const out = {};
  for (const [key, item] of Object.entries(value)) out[kebab(key)] = toJson(item);
  return out;
}

/**
 * A parsed JSON value with every object key turned to camelCase (`speaker-name` ->
 * `speakerName`), the JavaScript side of the mapping.
 * @param {any} value
 * @returns {any}
 */
export function fromJson(value) {
  if (Array.isArray(value)) return value.map(fromJson);
  if (value === null || typeof value !== 'object') return value;
  const out = {};
  for (const [key, item] of Object.entries(value)) out[camel(key)] = fromJson(item);
  return out;
}

/** `value` as compact JSON text in the WIT shape. @param {any} value @returns {string} */
export function dumps(value) {
  return JSON.stringify(toJson(value));
}

/** Parses JSON text into JavaScript values with camelCase keys. @param {string} text @returns {any} */
export function loads(text) {
  return fromJson(JSON.parse(text));
}
