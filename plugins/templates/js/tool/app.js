// @ts-check
/**
 * {{name}}: an llmos tool plugin in JavaScript (jco componentize).
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

/** @typedef {import('llmos:plugin/types@0.1.1').ToolSpec} ToolSpec */
/** @typedef {import('llmos:plugin/types@0.1.1').ToolCall} ToolCall */

const PARAMETERS = {
  type: 'object',
  properties: {
    text: { type: 'string', description: 'The text to count and upper-case.' },
  },
  required: ['text'],
  additionalProperties: false,
};

/**
 * The tools this plugin offers; the host asks once, at install.
 * @returns {ToolSpec[]}
 */
export function tools() {
  return [
    {
      name: '{{name}}',
      description:
        'Counts the words of a text and returns it in upper case. Example: {"text": "hello world"}.',
      parametersJson: JSON.stringify(PARAMETERS),
    },
  ];
}

/**
 * Runs one call; a thrown `{ tag, val }` goes back to the model as the tool's answer.
 * @param {ToolCall} call
 * @returns {string}
 */
export function invoke(call) {
  if (call.name !== '{{name}}') {
    throw { tag: 'not-found', val: `tool ${call.name}: this plugin offers {{name}}` };
  }
  let args;
  try {
    args = JSON.parse(call.argumentsJson);
  } catch (e) {
    throw { tag: 'invalid-input', val: `arguments of {{name}}: not JSON: ${e}` };
  }
  const text = args && typeof args === 'object' ? args.text : undefined;
  if (typeof text !== 'string' || text.trim() === '') {
    throw { tag: 'invalid-input', val: 'arguments of {{name}}: field `text` must be a non-empty string' };
  }
  return JSON.stringify({ words: text.split(/\s+/).filter((w) => w !== '').length, upper: text.toUpperCase() });
}
