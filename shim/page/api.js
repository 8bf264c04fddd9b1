// Talking to this same server: the key, fetch with it, OpenAI-shaped errors, SSE over fetch.

const KEY_NAME = "whisperd.api-key";

// sessionStorage: the key lives as long as the tab, never on disk in a cookie or localStorage.
export function apiKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_NAME, key);
  else sessionStorage.removeItem(KEY_NAME);
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// An answer that was not a success, in the words of the API's own `error.message`.
export class ApiError extends Error {
  constructor(message, { status = 0, code = null, param = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

function fromBody(body, status, fallback) {
  const err = body && typeof body === "object" ? body.error : null;
  if (err && typeof err.message === "string") {
    return new ApiError(err.message, { status, code: err.code ?? null, param: err.param ?? null });
  }
  return new ApiError(fallback, { status });
}

async function errorOf(response) {
  const fallback = `HTTP ${response.status} ${response.statusText}`.trim();
  let body = null;
  try {
    body = JSON.parse(await response.text());
  } catch {
    // Not JSON (a proxy's HTML page): the status line is all there is.
  }
  return fromBody(body, response.status, fallback);
}

// fetch() with the key; any non-2xx answer is thrown as an ApiError with the server's message.
export async function request(path, { method = "GET", body = undefined, signal = undefined, ok = null } = {}) {
  let response;
  try {
    response = await fetch(path, { method, body, signal, headers: authHeaders(), cache: "no-store" });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(`Cannot reach the whisperd server (${e.message}). Is whisperd-shim running?`);
  }
  if (!response.ok && !(ok && ok(response.status))) throw await errorOf(response);
  return response;
}

export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

// Server-Sent Events from a fetch body (EventSource cannot POST or send the key): each event
// is `data:` lines and a blank line; every event whisperd sends is one JSON object.
export async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (!data) continue;
      const event = JSON.parse(data);
      if (event.type === "error") throw fromBody(event, response.status, "the stream failed");
      onEvent(event);
    }
    if (done) return;
  }
}

// The Realtime WebSocket's URL and subprotocols: a browser cannot set Authorization on a
// WebSocket, so the key rides in a subprotocol, as OpenAI's SDKs do in browsers.
export function realtimeSocket() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/v1/realtime?intent=transcription`;
  const key = apiKey();
  return new WebSocket(url, key ? ["realtime", `openai-insecure-api-key.${key}`] : ["realtime"]);
}
