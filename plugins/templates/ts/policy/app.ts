/**
 * {{name}}: an llmos policy in TypeScript (tsc, then jco componentize).
 *
 * Denies every request whose inputs contain the `denied_word` config value (any case) and
 * lets every response through. Return `{ tag: 'modify', val: [...] }` to rewrite the inputs
 * instead, or `{ tag: 'deny', val: reason }` from checkResponse to withhold a response.
 * Types: types/ (generated from wit/ by `npx jco guest-types`).
 */
import { get as configGet } from 'llmos:plugin/config@0.1.0';
import { log } from 'llmos:plugin/log@0.1.0';
import type {
  Request,
  RequestVerdict,
  Response,
  ResponseVerdict,
} from 'llmos:plugin/types@0.1.0';

export function checkRequest(request: Request): RequestVerdict {
  const word = (configGet('denied_word') ?? '').trim().toLowerCase();
  if (word && request.inputs.some((t) => t.toLowerCase().includes(word))) {
    log('info', `denied request ${request.context.requestId}`);
    return { tag: 'deny', val: `the input contains '${word}'` };
  }
  return { tag: 'allow' };
}

export function checkResponse(_response: Response): ResponseVerdict {
  return { tag: 'allow' };
}

// tsc checks this module's exports against the policy world: a missing or mistyped one fails
// the build.
type World<M extends typeof import('llmos:plugin/policy@0.1.0')> = M;
type _Exports = World<typeof import('./app.js')>;
