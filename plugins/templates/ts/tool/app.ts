/**
 * {{name}}: an llmos tool plugin in TypeScript (tsc, then jco componentize).
 *
 * It offers one tool, `{{name}}`, that counts the words of a text and upper-cases it. A model
 * calls it with JSON arguments matching the schema below (the host checks them first); the
 * answer is text for the model, here JSON.
 *
 * Throw `{ tag: 'invalid-input', val: 'why' }` to answer with an error the model reads. Host
 * functions (`llmos:plugin/data@0.1.1`, `kv`, `inference`, ...) throw `{ tag, val }` when
 * they fail, e.g. `{ tag: 'denied', val: 'data:handbook' }` when a capability is not granted.
 * Types: types/ (generated from wit/ by `npx jco guest-types`).
 */
import type { Error as WitError, ToolCall, ToolSpec } from 'llmos:plugin/types@0.1.1';

const PARAMETERS = {
  type: 'object',
  properties: {
    text: { type: 'string', description: 'The text to count and upper-case.' },
  },
  required: ['text'],
  additionalProperties: false,
};

/** The tools this plugin offers; the host asks once, at install. */
export function tools(): ToolSpec[] {
  return [
    {
      name: '{{name}}',
      description:
        'Counts the words of a text and returns it in upper case. Example: {"text": "hello world"}.',
      parametersJson: JSON.stringify(PARAMETERS),
    },
  ];
}

/** Runs one call; a thrown `{ tag, val }` goes back to the model as the tool's answer. */
export function invoke(call: ToolCall): string {
  const fail = (tag: WitError['tag'], val: string): never => {
    throw { tag, val };
  };
  if (call.name !== '{{name}}') {
    fail('not-found', `tool ${call.name}: this plugin offers {{name}}`);
  }
  let args: unknown;
  try {
    args = JSON.parse(call.argumentsJson);
  } catch (e) {
    fail('invalid-input', `arguments of {{name}}: not JSON: ${e}`);
  }
  const text = args && typeof args === 'object' && 'text' in args ? args.text : undefined;
  if (typeof text !== 'string' || text.trim() === '') {
    fail('invalid-input', 'arguments of {{name}}: field `text` must be a non-empty string');
    return '';
  }
  return JSON.stringify({
    words: text.split(/\s+/).filter((w) => w !== '').length,
    upper: text.toUpperCase(),
  });
}

// tsc checks this module's exports against the tool world: a missing or mistyped one fails
// the build.
type World<M extends typeof import('llmos:plugin/tool@0.1.1')> = M;
type _Exports = World<typeof import('./app.js')>;
