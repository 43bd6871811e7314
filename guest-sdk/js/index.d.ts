// Types of the Hypergraph JavaScript SDK (hypergraph-guest, /http, /workflow).

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export declare const log: {
  log(level: Level, message: unknown): void;
  trace(message: unknown): void;
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
};

export declare const context: {
  runId(): string;
  taskName(): string;
  attempt(): number;
};

export declare const kv: {
  get(key: string): Uint8Array | undefined;
  set(key: string, value: Uint8Array | string): void;
  delete(key: string): void;
  listKeys(prefix?: string): string[];
  getString(key: string): string | undefined;
  setString(key: string, value: string): void;
  getJson(key: string): any;
  setJson(key: string, value: any): void;
};

export declare function toJson(value: any): any;
export declare function fromJson(value: any): any;
export declare function dumps(value: any): string;
export declare function loads(text: string): any;

// hypergraph-guest/http
export declare class HttpError extends Error {
  denied: boolean;
}
export declare class Response {
  status: number;
  headers: [string, Uint8Array][];
  body: Uint8Array;
  readonly ok: boolean;
  header(name: string): string | undefined;
  text(): string;
  json(): any;
}
export declare function request(
  method: string,
  url: string,
  options?: { headers?: Record<string, string>; body?: Uint8Array | string },
): Response;
export declare function get(url: string, headers?: Record<string, string>): Response;
export declare function post(url: string, body: any, headers?: Record<string, string>): Response;

// hypergraph-guest/workflow
export interface Child {
  index: number;
  task: string;
}
export declare class StartError extends Error {
  task: string;
}
export declare class ChildError extends Error {
  task: string;
  kind: string;
  detail: string;
  value: any;
}
export declare function start(task: string, input?: any): Child;
export declare function startAll(task: string, inputs: Iterable<any>): Child[];
export declare function join(children: Child[], options?: { settle?: boolean }): any[];
export declare function call(task: string, input?: any): any;
export declare function sleep(seconds: number): void;
export declare function waitEvent(name: string, timeoutSeconds?: number): any;
