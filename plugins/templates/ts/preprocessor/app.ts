/**
 * {{name}}: an llmos preprocessor in TypeScript (tsc, then jco componentize).
 *
 * Upper-cases every input and appends the `suffix` config value, in which `{n}` stands for
 * the number of calls so far: a counter kept in the plugin's private kv store (capability
 * `kv`). An input that starts with `embed:` asks the `minilm` model for an embedding of the
 * rest instead and returns its size, or the error: without `inference:minilm` requested in
 * manifest.toml and granted by the operator, the host answers `denied("inference:minilm")`.
 *
 * Host functions that return `result<_, error>` throw when they fail; the thrown value
 * carries the WIT error as `{ tag, val }` (tag: denied, not-found, invalid-input,
 * limit-exceeded, unavailable): a value to handle, never a crash. Throw
 * `{ tag: 'invalid-input', val: 'why' }` to fail the request with a message for the client.
 * Types: types/ (generated from wit/ by `npx jco guest-types`).
 */
import { get as configGet } from 'llmos:plugin/config@0.1.0';
import { embed } from 'llmos:plugin/inference@0.1.0';
import * as kv from 'llmos:plugin/kv@0.1.0';
import { log } from 'llmos:plugin/log@0.1.0';
import type { Error as WitError, Request } from 'llmos:plugin/types@0.1.0';

/** `denied: inference:minilm`: the WIT error's case and message. */
function describe(e: unknown): string {
  const err = e && typeof e === 'object' && 'payload' in e ? e.payload : e;
  if (err && typeof err === 'object' && 'tag' in err && 'val' in err) {
    const { tag, val } = err as WitError;
    return `${tag}: ${val}`;
  }
  return String(e);
}

/** Adds one to the `calls` counter in kv and returns it ("?" when kv is denied). */
function countCall(): string {
  try {
    const raw = kv.get('calls');
    // Digits only, so one byte per character (QuickJS has no TextEncoder).
    const n = raw ? Number(String.fromCharCode(...raw)) + 1 : 1;
    kv.set('calls', Uint8Array.from(String(n), (c) => c.charCodeAt(0)));
    return String(n);
  } catch (e) {
    log('warn', `call counter unavailable: ${describe(e)}`);
    return '?';
  }
}

function embedInfo(text: string): string {
  try {
    const vectors = embed('minilm', [text]);
    return `embedding of ${vectors[0]?.length ?? 0} dimensions`;
  } catch (e) {
    return `embed failed: ${describe(e)}`;
  }
}

/** The new inputs, as many as the request has. */
export function preprocess(request: Request): string[] {
  const n = countCall();
  const suffix = (configGet('suffix') ?? '').replaceAll('{n}', n);
  const out = request.inputs.map((t) =>
    t.startsWith('embed:') ? embedInfo(t.slice('embed:'.length).trim()) : t.toUpperCase() + suffix,
  );
  log('debug', `call ${n}: ${out.length} inputs`);
  return out;
}

// tsc checks this module's exports against the preprocessor world: a missing or mistyped one fails
// the build.
type World<M extends typeof import('llmos:plugin/preprocessor@0.1.0')> = M;
type _Exports = World<typeof import('./app.js')>;
