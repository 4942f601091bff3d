// The console's only way to the operator API: the bearer token kept in sessionStorage,
// problem documents turned into ApiError, and Server-Sent Events read through fetch()
// (EventSource cannot send an Authorization header).

const TOKEN_KEY = "preservarium.token";
const SCOPE_KEY = "preservarium.scope";
const NAME_KEY = "preservarium.token_name";
const SCOPES = ["read", "write", "admin"];

export class ApiError extends Error {
  constructor(status, problem) {
    const title = (problem && problem.title) || `HTTP ${status}`;
    const detail = problem && problem.detail;
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.problem = problem || {};
  }

  /** One line an operator can act on, naming the status code. */
  explain() {
    if (this.status === 401) {
      return "The token was refused (401): it is unknown or revoked. Sign in again.";
    }
    if (this.status === 403) {
      return `Not allowed (403): this needs a token with a larger scope than "${session.scope() || "read"}".`;
    }
    const p = this.problem;
    const notes = (p.errors || []).map((e) => (e.field ? `${e.field}: ${e.message}` : e.message));
    for (const example of p.examples || []) {
      if (!example.ok) notes.push(`example ${example.description || `#${example.index}`}: ${example.mismatch}`);
    }
    if (p.error_kind) notes.push(`${p.error_kind}${p.line ? ` at line ${p.line}` : ""}`);
    const more = notes.length ? ` — ${notes.join("; ")}` : "";
    return `${this.message} (${this.status})${more}`;
  }
}

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  scope: () => sessionStorage.getItem(SCOPE_KEY),
  name: () => sessionStorage.getItem(NAME_KEY),
  save(token, who) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(SCOPE_KEY, (who && who.scope) || "");
    sessionStorage.setItem(NAME_KEY, (who && who.name) || "");
  },
  clear() {
    for (const key of [TOKEN_KEY, SCOPE_KEY, NAME_KEY]) sessionStorage.removeItem(key);
  },
  /** True unless the token is known to be read-only. */
  canWrite() {
    const scope = session.scope();
    return !scope || SCOPES.indexOf(scope) >= SCOPES.indexOf("write");
  },
};

function headers(token, extra) {
  return Object.assign({ Authorization: `Bearer ${token}`, Accept: "application/json" }, extra);
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch (_) {
    return { title: response.statusText };
  }
}

/** Calls the API with an explicit token; throws ApiError on any non-2xx answer. */
export async function call(method, path, { body, token, query } = {}) {
  const url = new URL(`/api/v1${path}`, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const init = { method, headers: headers(token || session.token()) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, init);
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** Like call(), but a refused token sends the operator back to the sign-in page. */
export async function api(method, path, options) {
  try {
    return await call(method, path, options);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) signOut("expired");
    throw err;
  }
}

export function signOut(reason) {
  session.clear();
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign(`/signin?next=${next}${reason ? `&reason=${reason}` : ""}`);
}

/**
 * Follows an SSE route, calling onEvent(name, data) per event; reconnects after a drop
 * (the API reads each stream from its end, so a reconnect misses nothing older than it).
 * onState(connected: bool) reports the connection. Returns a function that stops it.
 */
export function stream(path, query, { onEvent, onState }) {
  const controller = new AbortController();
  let stopped = false;
  const url = new URL(`/api/v1/streams/${path}`, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value) url.searchParams.set(key, value);
  }
  async function once() {
    const response = await fetch(url, {
      headers: headers(session.token(), { Accept: "text/event-stream" }),
      signal: controller.signal,
    });
    if (response.status === 401) return signOut("expired");
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    onState && onState(true);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end), onEvent);
        buffer = buffer.slice(end + 2);
      }
    }
  }
  (async () => {
    while (!stopped) {
      try {
        await once();
      } catch (err) {
        if (stopped) return;
        if (err instanceof ApiError && err.status === 403) {
          onState && onState(false, err);
          return;
        }
      }
      onState && onState(false);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  })();
  return () => {
    stopped = true;
    controller.abort();
  };
}

function dispatch(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return;
  let parsed = data.join("\n");
  try {
    parsed = JSON.parse(parsed);
  } catch (_) {
    // A non-JSON event is handed over as text.
  }
  onEvent(name, parsed);
}

/** The list inside a page of results, whatever the route calls it. */
export function itemsOf(page) {
  if (Array.isArray(page)) return page;
  for (const key of ["items", "devices", "parsers", "versions", "commands", "uplinks", "entries"]) {
    if (page && Array.isArray(page[key])) return page[key];
  }
  return [];
}
