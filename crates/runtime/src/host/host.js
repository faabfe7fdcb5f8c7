// Homebase worker host: loads one function module and serves it on a Unix socket.
//
// Plain JavaScript, so Deno has nothing to transpile; the `runtime` crate installs it at a stable,
// content-addressed path so that V8's code cache is reused across starts. Started with `deno run`. It talks to the supervisor
// through stdout: every line that starts with the record separator (\x1e) is one JSON message
// ({t: "ready"}, {t: "load-error", m}, {t: "log", l, m, r}); anything else is raw output.
//
// No `node:` module is imported up front: the first one initialises Deno's Node compatibility
// layer, about 10 ms of every cold start. `AsyncLocalStorage` is loaded after the first response
// instead (see `tagRequests`).

const ENTRY = Deno.env.get("HOMEBASE_ENTRY");
const SOCKET = Deno.env.get("HOMEBASE_SOCKET");
const FUNCTION = Deno.env.get("HOMEBASE_FUNCTION") ?? "";
// The values of the function's secrets (names from Homebase), longest first, hidden in the error
// bodies this host writes: a handler that throws `bad key ${key}` must not hand the key to the
// caller. (Log lines are masked by Homebase itself.) Values under 6 characters are left alone,
// as in the logs.
const SECRET_VALUES = (Deno.env.get("HOMEBASE_SECRET_NAMES") ?? "")
  .split(",")
  .map((name) => (name ? Deno.env.get(name) : undefined))
  .filter((value) => typeof value === "string" && value.length >= 6)
  .sort((a, b) => b.length - a.length);
function hideSecrets(text) {
  for (const value of SECRET_VALUES) text = text.split(value).join("********");
  return text;
}
// "0" in `serve`: an uncaught error answers its message's first line, never its stack. Homebase
// rewrites the paths in that line (the runtime's `public` module): the answers written here carry
// FAILURE_MARK in x-homebase-failure, a token the function cannot read, so that Homebase knows them
// from the function's own.
const ERROR_DETAILS = Deno.env.get("HOMEBASE_ERROR_DETAILS") !== "0";
const FAILURE_MARK = Deno.env.get("HOMEBASE_FAILURE_MARK") ?? "";
const API_SOCKET = Deno.env.get("HOMEBASE_API_SOCKET");
const API_ORIGINS = Deno.env.get("HOMEBASE_API_ORIGINS") ?? "";
const API_NODE = Deno.env.get("HOMEBASE_API_NODE") === "1";
for (const name of [
  "HOMEBASE_ENTRY",
  "HOMEBASE_SOCKET",
  "HOMEBASE_FUNCTION",
  "HOMEBASE_ERROR_DETAILS",
  "HOMEBASE_FAILURE_MARK",
  "HOMEBASE_API_SOCKET",
  "HOMEBASE_API_ORIGINS",
  "HOMEBASE_API_NODE",
  "HOMEBASE_SECRET_NAMES",
]) {
  Deno.env.delete(name);
}

const encoder = new TextEncoder();
const stdoutWrite = Deno.stdout.writeSync.bind(Deno.stdout);
function emit(message) {
  const bytes = encoder.encode("\x1e" + JSON.stringify(message) + "\n");
  let written = 0;
  while (written < bytes.length) written += stdoutWrite(bytes.subarray(written));
}

// Console output becomes structured log lines, tagged with the request that printed them: through
// an AsyncLocalStorage once it is loaded (exact). Before that, in a worker's first moments, a line
// is charged to the only request in its handler, if there is exactly one (a timer started at module
// level would be charged to it too; that is the price of not loading the Node layer up front).
let requestContext;
const active = new Set();
function currentRequest() {
  if (requestContext) return requestContext.getStore();
  if (active.size !== 1) return undefined;
  for (const only of active) return only;
}

let contextLoading;
function tagRequests() {
  contextLoading ??= import("node:async_hooks").then(
    ({ AsyncLocalStorage }) => (requestContext = new AsyncLocalStorage()),
    () => {},
  );
}

function inspect(value) {
  return Deno.inspect(value, { colors: false });
}

// console.log's formatting: printf-style placeholders in a first string argument, the rest
// inspected and joined with spaces.
function format(...args) {
  let index = 0;
  let out = "";
  if (typeof args[0] === "string") {
    const first = args[0];
    index = 1;
    out = !first.includes("%") ? first : first.replace(/%([sdifjoOc%])/g, (match, spec) => {
      if (spec === "%") return "%";
      if (index >= args.length) return match;
      const arg = args[index++];
      switch (spec) {
        case "s": return typeof arg === "string" ? arg : inspect(arg);
        case "d":
        case "i": return typeof arg === "bigint" ? `${arg}n` : String(spec === "i" ? Math.trunc(Number(arg)) : Number(arg));
        case "f": return String(Number(arg));
        case "j":
          try {
            return JSON.stringify(arg);
          } catch {
            return "[Circular]";
          }
        case "c": return "";
        default: return inspect(arg);
      }
    });
  }
  for (; index < args.length; index++) {
    const arg = args[index];
    out += (out === "" && index === 0 ? "" : " ") + (typeof arg === "string" ? arg : inspect(arg));
  }
  return out;
}
const levels = [
  ["log", "info"],
  ["info", "info"],
  ["debug", "debug"],
  ["trace", "debug"],
  ["warn", "warning"],
  ["error", "error"],
];
for (const [method, level] of levels) {
  console[method] = (...args) => emit({ t: "log", l: level, m: format(...args), r: currentRequest() });
}

function describe(error) {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  return inspect(error);
}

// Errors that escape user callbacks are logged, not fatal: one bad timer must not take down the
// worker for every other request.
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  emit({ t: "log", l: "error", m: "Unhandled promise rejection: " + describe(event.reason) });
});
globalThis.addEventListener("error", (event) => {
  event.preventDefault();
  emit({ t: "log", l: "error", m: "Uncaught error: " + describe(event.error) });
});

// The bridge behind `base44:runtime`.
const pending = new Set();
globalThis.Base44 = {
  secrets: { get: (name) => Deno.env.get(name) },
  waitUntil(promise) {
    pending.add(promise);
    promise.then(() => pending.delete(promise), (error) => {
      pending.delete(promise);
      emit({ t: "log", l: "error", m: "waitUntil task failed: " + describe(error), r: currentRequest() });
    });
    return promise;
  },
};

// Homebase's own API. A worker whose network is restricted may not connect to loopback or this
// host's addresses, so requests for Homebase's origins (each Base44-Api-Url received, and those
// Homebase names) go over Homebase's Unix socket instead, as plain HTTP: `fetch` through a client
// that proxies to the socket, `node:http`/`node:https` (axios, the official SDK) with `socketPath`.
// The URL's host is then a stand-in literal that no rule denies and nothing resolves, and the real
// one travels in x-homebase-host, which the socket's server turns back into Host.
const apiOrigins = new Set(API_ORIGINS.split(",").filter(Boolean));
const API_STAND_IN = "http://[100::1]";
let lastApiUrl;
function noteApiUrl(request) {
  const url = request.headers.get("base44-api-url");
  if (url === null || url === lastApiUrl) return;
  lastApiUrl = url;
  const origin = URL.parse(url)?.origin;
  if (origin && origin !== "null") apiOrigins.add(origin);
}
function apiTarget(input) {
  const url = typeof input === "string" ? URL.parse(input) : input instanceof URL ? input : input instanceof Request ? URL.parse(input.url) : null;
  return url && apiOrigins.has(url.origin) ? url : undefined;
}
if (API_SOCKET) {
  const realFetch = globalThis.fetch;
  let client;
  globalThis.fetch = function fetch(input, init) {
    const url = apiTarget(input);
    if (!url) return realFetch(input, init);
    const request = new Request(input, init);
    const headers = new Headers(request.headers);
    headers.set("x-homebase-host", url.host);
    client ??= Deno.createHttpClient({ proxy: { transport: "unix", path: API_SOCKET } });
    const { method, body, redirect, signal } = request;
    return realFetch(API_STAND_IN + url.pathname + url.search, { method, headers, body, redirect, signal, client });
  };
}
async function routeNodeToApi() {
  const [{ default: http }, { default: https }] = await Promise.all([import("node:http"), import("node:https")]);
  const plain = http.request;
  for (const [module, scheme] of [[http, "http:"], [https, "https:"]]) {
    const original = module.request;
    module.request = function request(...args) {
      // request(url[, options][, callback]) or request(options[, callback])
      let index = 0;
      const url = typeof args[0] === "string" || args[0] instanceof URL ? new URL(args[index++]) : undefined;
      const options = args[index] !== null && typeof args[index] === "object" ? args[index++] : {};
      const callback = typeof args[index] === "function" ? args[index] : undefined;
      const protocol = options.protocol || url?.protocol || scheme;
      const hostname = String(options.hostname || options.host || url?.hostname || "localhost");
      const port = Number(options.port || url?.port || (protocol === "https:" ? 443 : 80));
      const target = URL.parse(`${protocol}//${hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname}:${port}`);
      if (!target || !apiOrigins.has(target.origin)) return original.apply(this, args);
      const { agent: _a, protocol: _p, host: _h, hostname: _n, port: _o, createConnection: _c, lookup: _l, ...rest } = options;
      const path = options.path ?? (url ? url.pathname + url.search : "/");
      return plain.call(http, { ...rest, socketPath: API_SOCKET, path, headers: { ...options.headers, host: target.host } }, callback);
    };
    module.get = function get(...args) {
      const request = module.request(...args);
      request.end();
      return request;
    };
  }
}
// Loading node:http costs a cold start 10 to 30 ms: only functions whose code mentions `npm:` or
// `node:http` pay it (Homebase looks), and they load Node's layer anyway.
if (API_SOCKET && API_NODE) await routeNodeToApi();

// `Deno.serve` during import registers the handler instead of listening. All three call forms
// are accepted; port, hostname and the other listen options are ignored.
let served;
const realServe = Deno.serve;
Deno.serve = (...args) => {
  const fn = args.find((arg) => typeof arg === "function") ?? args[0]?.handler ?? args[0]?.fetch;
  if (typeof fn !== "function") throw new TypeError("Deno.serve needs a handler function");
  served = fn;
  const finished = new Promise(() => {});
  return {
    finished,
    addr: { transport: "tcp", hostname: "127.0.0.1", port: 0 },
    shutdown: () => Promise.resolve(),
    ref() {},
    unref() {},
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
};

let handler;
try {
  const module = await import(ENTRY);
  const fallback = module.default;
  if (served) handler = served;
  else if (typeof fallback === "function") handler = fallback;
  else if (fallback && typeof fallback.fetch === "function") handler = fallback.fetch.bind(fallback);
  else {
    throw new Error(
      `${FUNCTION || ENTRY} has no handler: call Deno.serve(handler) or export default a handler function or { fetch }`,
    );
  }
} catch (error) {
  emit({ t: "load-error", m: describe(error) });
  Deno.exit(1);
}

function failure(status, code, message, detail) {
  const headers = FAILURE_MARK ? { "x-homebase-failure": FAILURE_MARK } : {};
  return Response.json({ message: hideSecrets(message), detail: hideSecrets(detail), code }, { status, headers });
}

// The supervisor holds the other end of stdin and closes it to stop us: we finish the
// `waitUntil` work first (the supervisor's grace period bounds that). If the supervisor dies,
// Linux kills us with it; elsewhere the closed pipe ends us the same way.
(async () => {
  const buffer = new Uint8Array(16);
  try {
    while ((await Deno.stdin.read(buffer)) !== null) { /* nothing is sent on stdin */ }
  } catch { /* closed */ }
  await Promise.allSettled([...pending]);
  Deno.exit(0);
})();

realServe({ path: SOCKET, onListen() { emit({ t: "ready" }); } }, async (request, info) => {
  // Over a Unix socket Deno reports `http+unix://host/…`; functions expect `http://host/…`.
  const url = request.url;
  if (url.startsWith("http+unix:")) Object.defineProperty(request, "url", { value: "http" + url.slice(9) });
  const id = request.headers.get("x-request-id") ?? undefined;
  if (API_SOCKET) noteApiUrl(request);
  active.add(id);
  try {
    const response = await (requestContext ? requestContext.run(id, () => handler(request, info)) : handler(request, info));
    if (response instanceof Response) return response;
    const what = response === undefined ? "undefined" : typeof response;
    emit({ t: "log", l: "error", m: `Handler returned ${what} instead of a Response`, r: id });
    return failure(
      500,
      "function_bad_response",
      "The function did not return a Response",
      `The handler returned ${what}; return a Response object.`,
    );
  } catch (error) {
    const text = describe(error);
    emit({ t: "log", l: "error", m: "Uncaught error in handler: " + text, r: id });
    const message = error instanceof Error ? error.message : inspect(error);
    if (!ERROR_DETAILS) {
      const line = String(message).split("\n")[0];
      const detail = `The function threw an uncaught error; its logs have the stack trace (request ${id}).`;
      return failure(500, "function_error", line || "The function threw an error", detail);
    }
    return failure(500, "function_error", message || "The function threw an error", text);
  } finally {
    active.delete(id);
    if (!requestContext) setTimeout(tagRequests, 0); // after this response is on its way
  }
});
