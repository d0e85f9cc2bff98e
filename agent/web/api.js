// The service's HTTP API, same origin only. With a token, every call (images and the event stream too)
// sends it as an `Authorization: Bearer` header; it is kept in sessionStorage and never put in a URL.

const TOKEN_KEY = "scissor-stream.api-token";

/** The service refused the call with 401; `sentToken` is the token the call carried (null: none). */
export class Unauthorized extends Error {
  constructor(detail, sentToken) {
    super(detail);
    this.sentToken = sentToken;
  }
}

/** Any other refused call: `status`, and the service's `{error, detail}` body. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || `HTTP ${status}`);
    this.status = status;
    this.error = body?.error || "HTTPError";
  }
}

let token = sessionStorage.getItem(TOKEN_KEY);
const unauthorizedHandlers = new Set();

export function getToken() {
  return token;
}

export function setToken(value) {
  token = value || null;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Call `handler(err)` whenever a call is refused with 401. */
export function onUnauthorized(handler) {
  unauthorizedHandlers.add(handler);
}

export function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function errorBody(res) {
  try {
    return await res.json();
  } catch {
    return null;
  }
}

/** The response of `fetch(path)` with the token; throws Unauthorized / ApiError unless it is 2xx. */
export async function call(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...authHeaders(), ...headers }, cache: "no-store", signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    const sent = init.headers.Authorization ? token : null;
    const err = new Unauthorized((await errorBody(res))?.detail || "unauthorized", sent);
    for (const handler of unauthorizedHandlers) handler(err);
    throw err;
  }
  if (!res.ok) throw new ApiError(res.status, await errorBody(res));
  return res;
}

async function json(path, options) {
  const res = await call(path, { ...options, headers: { Accept: "application/json" } });
  return res.status === 204 ? null : res.json();
}

export const api = {
  get: (path) => json(path),
  post: (path, body) => json(path, { method: "POST", body }),
  delete: (path) => json(path, { method: "DELETE" }),
  text: async (path) => (await call(path)).text(),
};

const objectUrls = new WeakMap();

/**
 * Show the JPEG at `path` in `img`: fetched with the token, shown through a blob: URL (the previous one is
 * released). Resolves to {frame, t} from the response headers; throws ApiError 404 when no such frame is
 * kept.
 * When the response is of frame `unlessFrame` (the one already shown), `img` is left as it is.
 */
export async function showImage(img, path, { unlessFrame = null } = {}) {
  const res = await call(path, { headers: { Accept: "image/jpeg" } });
  const shown = {
    frame: Number(res.headers.get("X-Frame-Index")),
    t: Number(res.headers.get("X-Stream-Seconds")),
  };
  if (unlessFrame !== null && shown.frame === unlessFrame && img.naturalWidth > 0) {
    await res.body?.cancel();
    return shown;
  }
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const loaded = new Promise((resolve) => {
    img.addEventListener("load", resolve, { once: true });
    img.addEventListener("error", resolve, { once: true });
  });
  img.src = url;
  const previous = objectUrls.get(img);
  objectUrls.set(img, url);
  await loaded;
  if (previous) URL.revokeObjectURL(previous);
  return shown;
}

/** Forget `img`'s blob: URL (when it leaves the page). */
export function releaseImage(img) {
  const url = objectUrls.get(img);
  if (url) URL.revokeObjectURL(url);
  objectUrls.delete(img);
}
