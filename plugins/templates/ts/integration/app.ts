/**
 * {{name}}: an llmos integration in TypeScript (tsc, then jco componentize).
 *
 * Logs every event it receives (`inference.finished`, `request.denied`) into the host's log.
 * Integrations run after the response was sent: an error here is only logged. To call another
 * system, request `http:<host>` in manifest.toml (docs/plugins.md, capabilities).
 * Types: types/ (generated from wit/ by `npx jco guest-types`).
 */
import { get as configGet } from 'llmos:plugin/config@0.1.0';
import { log } from 'llmos:plugin/log@0.1.0';
import type { Event } from 'llmos:plugin/types@0.1.0';

export function onEvent(event: Event): void {
  const prefix = configGet('prefix') ?? '';
  const c = event.context;
  log('info', `${prefix}${event.kind} model=${c.model} task=${c.task} route=${c.route}`);
}

// tsc checks this module's exports against the integration world: a missing or mistyped one fails
// the build.
type World<M extends typeof import('llmos:plugin/integration@0.1.0')> = M;
type _Exports = World<typeof import('./app.js')>;
