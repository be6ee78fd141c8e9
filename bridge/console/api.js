// The REST API as the signed-in user. The token lives in sessionStorage (this
// tab only, gone when it closes) and travels only in the Authorization
// header: never in a URL, never in a log line.

const KEY = 'kumo.console.token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function signIn(value) {
  sessionStorage.setItem(KEY, value);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

/** An answer other than 2xx: `status`, Nature's `code`, and its message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/**
 * One request. `form` goes as application/x-www-form-urlencoded (what the /1
 * API takes), `json` as JSON. Resolves to {status, headers, body}; rejects
 * with ApiError. A 401 also fires `kumo:unauthorized` on window.
 */
export async function call(method, path, opts = {}) {
  const headers = new Headers(opts.headers || {});
  const bearer = opts.token ?? token();
  if (bearer) headers.set('Authorization', `Bearer ${bearer}`);
  let body;
  if (opts.form) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.form)) {
      if (v !== undefined && v !== null) params.append(k, v);
    }
    body = params;
  } else if (opts.json !== undefined) {
    headers.set('Content-Type', 'application/json');
    body = JSON.stringify(opts.json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal: opts.signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 0, 'The Kumo server cannot be reached.');
  }
  const text = await response.text();
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = text; }
  }
  if (!response.ok) {
    if (response.status === 401 && !opts.token) {
      window.dispatchEvent(new CustomEvent('kumo:unauthorized'));
    }
    const message = parsed && typeof parsed === 'object' ? parsed.message : null;
    throw new ApiError(response.status, parsed?.code, message);
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

export const get = async (path, opts) => (await call('GET', path, opts)).body;
export const post = (path, opts) => call('POST', path, opts);
export const del = (path, opts) => call('DELETE', path, opts);

/** A path segment from an id (ids are the API's, but never trusted as path). */
export const seg = (id) => encodeURIComponent(id);
