// The dashboard's only way to the server: the public /v1 API with the signed-in key as a bearer
// header (never in a URL or cookie), conditional GETs with ETags, and problem documents as
// errors.

const KEY = "trainport.apiKey";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title || `HTTP ${status}`;
    this.detail = problem.detail || "";
    this.code = problem.code || "";
    this.errors = problem.errors || [];
  }
}

/** The key stopped working (revoked, expired): main.js shows the sign-in form with why. */
function signedOut(error) {
  session.clear();
  window.dispatchEvent(new CustomEvent("trainport:signed-out", { detail: error }));
}

export const session = {
  key: () => sessionStorage.getItem(KEY),
  save: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

export function url(path, params) {
  const query = params ? `?${new URLSearchParams(params)}` : "";
  return `${path}${query === "?" ? "" : query}`;
}

async function problemOf(response) {
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      /* not JSON after all: fall through */
    }
  }
  const text = await response.text().catch(() => "");
  return { title: `HTTP ${response.status}`, detail: text.slice(0, 300) };
}

export function isSameOrigin(path) {
  return new URL(path, location.href).origin === location.origin;
}

/** fetch with the bearer key (to this server only: never to a presigned storage URL);
 * throws ApiError for any non-2xx (other than a 304). A 401 on the signed-in key signs out. */
export async function request(path, { method = "GET", body, headers = {}, signal, key } = {}) {
  const auth = key ?? session.key();
  const init = { method, signal, headers: { Accept: "application/json", ...headers } };
  if (auth && isSameOrigin(path)) init.headers.Authorization = `Bearer ${auth}`;
  if (body !== undefined) {
    init.body = body instanceof FormData ? body : JSON.stringify(body);
    if (!(body instanceof FormData)) init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { title: "Network error", detail: `The API did not answer (${error.message}).` });
  }
  if (!response.ok && response.status !== 304) {
    const error = new ApiError(response.status, await problemOf(response));
    if (response.status === 401 && key === undefined) signedOut(error);
    throw error;
  }
  return response;
}

export async function getJson(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

export const postJson = (path, body, options = {}) => getJson(path, { ...options, method: "POST", body });

/** A conditional reader: each GET sends the last ETag for its URL; a 304 returns null. */
export class Conditional {
  constructor() {
    this.etags = new Map();
  }

  async get(path, options = {}) {
    const etag = this.etags.get(path);
    const headers = etag ? { "If-None-Match": etag, ...options.headers } : options.headers;
    const response = await request(path, { ...options, headers });
    if (response.status === 304) return null;
    const tag = response.headers.get("ETag");
    if (this.etags.size > 100) this.etags.clear(); // the feed's URLs move on; keep few
    if (tag) this.etags.set(path, tag);
    return response.json();
  }
}
