// @ts-check
/**
 * {{name}}: an llmos policy in JavaScript (jco componentize).
 *
 * Denies every request whose inputs contain the `denied_word` config value (any case) and
 * lets every response through. Return `{ tag: 'modify', val: [...] }` to rewrite the inputs
 * instead, or `{ tag: 'deny', val: reason }` from checkResponse to withhold a response.
 * Types: types/ (generated from wit/ by `npx jco guest-types`).
 */
import { get as configGet } from 'llmos:plugin/config@0.1.0';
import { log } from 'llmos:plugin/log@0.1.0';

/** @typedef {import('llmos:plugin/types@0.1.0').Request} Request */
/** @typedef {import('llmos:plugin/types@0.1.0').Response} Response */
/** @typedef {import('llmos:plugin/types@0.1.0').RequestVerdict} RequestVerdict */
/** @typedef {import('llmos:plugin/types@0.1.0').ResponseVerdict} ResponseVerdict */

/**
 * @param {Request} request
 * @returns {RequestVerdict}
 */
export function checkRequest(request) {
  const word = (configGet('denied_word') ?? '').trim().toLowerCase();
  if (word && request.inputs.some((t) => t.toLowerCase().includes(word))) {
    log('info', `denied request ${request.context.requestId}`);
    return { tag: 'deny', val: `the input contains '${word}'` };
  }
  return { tag: 'allow' };
}

/**
 * @param {Response} _response
 * @returns {ResponseVerdict}
 */
export function checkResponse(_response) {
  return { tag: 'allow' };
}
