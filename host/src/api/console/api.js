// The API client: the key (sessionStorage only, never in a URL), JSON calls, SSE streams,
// and `el`, the one way this page builds DOM: strings always become text nodes.

const KEY = 'llmos.key';

export const key = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (k) => sessionStorage.setItem(KEY, k),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An element; `attrs` are attributes (`on*` functions become listeners), children are
 * nodes or strings (inserted as text, never parsed as HTML). */
export function el(tag, attrs = {}, ...children) {
  const svg = ['svg', 'polyline', 'line', 'text', 'rect', 'g', 'path'].includes(tag);
  const e = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = String(v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** Replaces an element's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(json) {
  const h = {};
  const k = key.get();
  if (k) h.Authorization = `Bearer ${k}`;
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

async function failure(r) {
  let msg = `${r.status} ${r.statusText}`;
  let code;
  try {
    const j = await r.json();
    const e = j.error;
    if (typeof e === 'string') msg = `${r.status}: ${e}`;
    else if (e && e.message) {
      msg = `${r.status}: ${e.message}`;
      code = e.code;
    }
  } catch (_) { /* not JSON */ }
  return new ApiError(r.status, msg, code);
}

/** `method path` with an optional JSON body; the parsed answer, or throws ApiError. */
export async function api(method, path, body, signal) {
  const r = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: 'no-store',
  });
  if (!r.ok) throw await failure(r);
  const type = r.headers.get('content-type') || '';
  return type.includes('json') ? r.json() : r.text();
}

/** POSTs `body` and calls `onData(json)` for each SSE `data:` event until `[DONE]`. */
export async function stream(path, body, onData, signal) {
  const r = await fetch(path, { method: 'POST', headers: headers(true), body: JSON.stringify(body), signal });
  if (!r.ok) throw await failure(r);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') return;
        onData(JSON.parse(data));
      }
    }
  }
}

/** A message element for an error (text only). */
export function errorBox(e) {
  return el('p', { class: 'error', role: 'alert' }, e instanceof Error ? e.message : String(e));
}
