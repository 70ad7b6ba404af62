// @ts-check
/**
 * {{name}}: an llmos integration in JavaScript (jco componentize).
 *
 * Logs every event it receives (`inference.finished`, `request.denied`) into the host's log.
 * Integrations run after the response was sent: an error here is only logged. To call another
 * system, request `http:<host>` in manifest.toml (docs/plugins.md, capabilities).
 * Types: types/ (generated from wit/ by `npx jco guest-types`).
 */
import { get as configGet } from 'llmos:plugin/config@0.1.0';
import { log } from 'llmos:plugin/log@0.1.0';

/** @typedef {import('llmos:plugin/types@0.1.0').Event} Event */

/** @param {Event} event */
export function onEvent(event) {
  const prefix = configGet('prefix') ?? '';
  const c = event.context;
  log('info', `${prefix}${event.kind} model=${c.model} task=${c.task} route=${c.route}`);
}
