// The playground: one panel per task the server can run (chat, embeddings, entities,
// classification, anonymisation, collection search). Every model output is inserted as text.

import { api, stream, el, fill, key, errorBox } from './api.js';
import { tabList } from './app.js';

let builtFor = null;

/** Builds the playground for the current key: tasks for the models and routes it has. */
export async function playground(panel) {
  if (builtFor === key.get() && panel.dataset.built === '1') return;
  builtFor = key.get();
  const [models, doc] = await Promise.all([
    api('GET', '/v1/models').then((m) => m.data).catch(() => []),
    api('GET', '/openapi.json').catch(() => ({ paths: {} })),
  ]);
  const by = (task) => models.filter((m) => m.task === task).map((m) => m.id);
  const has = (p) => Object.prototype.hasOwnProperty.call(doc.paths || {}, p);
  const tasks = [
    ['chat', 'Chat', by('generate'), has('/v1/chat/completions'), chat],
    ['embed', 'Embeddings', by('embed'), has('/v1/embeddings'), embeddings],
    ['entities', 'Entities', by('token-classify'), has('/v1/entities'), entities],
    ['classify', 'Classify', by('classify'), has('/v1/classify'), classify],
    ['anonymize', 'Anonymise', by('token-classify'), has('/v1/anonymize'), anonymize],
    ['search', 'Search', by('embed'), has('/v1/collections/{name}/search'),
      (p) => search(p, has('/v1/collections/{name}/ask') ? by('generate') : [])],
  ].filter(([, , ms, route]) => route && ms.length > 0);
  const list = panel.querySelector('#tasks');
  const panels = panel.querySelector('#task-panels');
  fill(list);
  fill(panels);
  if (tasks.length === 0) {
    fill(panels, el('p', {}, 'No model this key may use is available: enter a key with model scopes, or pull models (`llmos models pull --all`).'));
  }
  tasks.forEach(([id, label, ms, , build], i) => {
    list.append(el('button', {
      role: 'tab', id: `task-${id}`, 'aria-controls': `panel-${id}`,
      'aria-selected': String(i === 0), tabindex: i === 0 ? '0' : '-1',
    }, label));
    const p = el('div', { role: 'tabpanel', id: `panel-${id}`, 'aria-labelledby': `task-${id}`, class: 'task', hidden: i !== 0 });
    build(p, ms);
    panels.append(p);
  });
  if (!list.dataset.wired) {
    tabList(list, () => {});
    list.dataset.wired = '1';
  }
  panel.dataset.built = '1';
}

let fieldIds = 0;
/** A labelled control: `<label>` + the control, tied by id. */
function field(label, control) {
  fieldIds += 1;
  const id = control.id || `f${fieldIds}`;
  control.id = id;
  return el('div', { class: 'field' }, el('label', { for: id }, label), control);
}

function select(name, options) {
  return el('select', { name }, options.map((o) => el('option', { value: o }, o)));
}

/** Runs `fn` with the button disabled; errors are shown in `out`. */
async function busy(button, out, fn) {
  button.disabled = true;
  try {
    await fn();
  } catch (e) {
    if (e.name !== 'AbortError') out.append(errorBox(e));
  } finally {
    button.disabled = false;
  }
}

function chat(p, models) {
  const model = select('model', models);
  const maxTokens = el('input', { type: 'number', min: '1', max: '4096', value: '64', name: 'max_tokens' });
  const temperature = el('input', { type: 'number', min: '0', max: '2', step: '0.1', value: '0.7', name: 'temperature' });
  const format = select('format', ['text', 'json_object', 'json_schema']);
  const schema = el('textarea', { rows: '3', name: 'schema', class: 'mono' },
    '{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]}');
  const schemaField = field('JSON schema', schema);
  schemaField.hidden = true;
  format.addEventListener('change', () => { schemaField.hidden = format.value !== 'json_schema'; });
  const log = el('div', { class: 'chat-log', 'aria-live': 'polite', id: 'chat-log' });
  const prompt = el('textarea', { rows: '3', name: 'prompt', placeholder: 'Ask something…', id: 'chat-input' });
  const send = el('button', { type: 'submit', id: 'chat-send' }, 'Send');
  const stop = el('button', { type: 'button', class: 'secondary', id: 'chat-stop', disabled: true }, 'Stop');
  const clear = el('button', { type: 'button', class: 'secondary' }, 'Clear');
  const history = [];
  let controller = null;
  stop.addEventListener('click', () => controller && controller.abort());
  clear.addEventListener('click', () => { history.length = 0; fill(log); });
  const form = el('form', { class: 'stack' },
    el('div', { class: 'row' }, field('Model', model), field('Max tokens', maxTokens),
      field('Temperature', temperature), field('Structured output', format)),
    schemaField, log, field('Message', prompt), el('div', { class: 'row' }, send, stop, clear));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = prompt.value.trim();
    if (!text) return;
    prompt.value = '';
    history.push({ role: 'user', content: text });
    log.append(el('div', { class: 'msg user' }, el('span', { class: 'who' }, 'you'), el('p', {}, text)));
    const out = el('p', { class: 'assistant-text' });
    const meta = el('span', { class: 'meta' });
    log.append(el('div', { class: 'msg assistant' }, el('span', { class: 'who' }, model.value), out, meta));
    const body = {
      model: model.value, messages: history.slice(), stream: true,
      max_tokens: Number(maxTokens.value), temperature: Number(temperature.value),
    };
    if (format.value === 'json_object') body.response_format = { type: 'json_object' };
    if (format.value === 'json_schema') {
      try {
        body.response_format = { type: 'json_schema', json_schema: { name: 'answer', schema: JSON.parse(schema.value) } };
      } catch (err) {
        out.append(errorBox(`the JSON schema does not parse: ${err.message}`));
        return;
      }
    }
    controller = new AbortController();
    stop.disabled = false;
    const started = performance.now();
    let tokens = 0;
    let finish = '';
    await busy(send, out, async () => {
      try {
        await stream('/v1/chat/completions', body, (chunk) => {
          if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
          for (const c of chunk.choices || []) {
            if (c.delta && typeof c.delta.content === 'string') {
              out.append(document.createTextNode(c.delta.content));
              tokens += 1;
            }
            if (c.finish_reason) finish = c.finish_reason;
          }
        }, controller.signal);
      } catch (err) {
        if (err.name === 'AbortError') finish = 'stopped';
        else throw err;
      } finally {
        stop.disabled = true;
        controller = null;
        const s = (performance.now() - started) / 1000;
        meta.textContent = `${tokens} chunks in ${s.toFixed(1)} s${finish ? ` · ${finish}` : ''}`;
        history.push({ role: 'assistant', content: out.textContent });
      }
    });
  });
  p.append(form);
}

function cosine(a, b) {
  let dot = 0; let na = 0; let nb = 0;
  for (let i = 0; i < a.length; i += 1) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / Math.sqrt(na * nb);
}

function bar(value, label) {
  const fillEl = el('span', { class: 'bar-fill' });
  fillEl.style.width = `${Math.max(0, Math.min(1, value)) * 100}%`;
  return el('div', { class: 'bar', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '1', 'aria-valuenow': value.toFixed(3), 'aria-label': label }, fillEl);
}

function embeddings(p, models) {
  const model = select('model', models);
  const a = el('textarea', { rows: '2' }, 'The cat sits on the mat.');
  const b = el('textarea', { rows: '2' }, 'A kitten is resting on the rug.');
  const go = el('button', { type: 'submit' }, 'Compare');
  const out = el('div', { class: 'result', 'aria-live': 'polite' });
  const form = el('form', { class: 'stack' }, field('Model', model), field('First text', a), field('Second text', b), go, out);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    fill(out);
    busy(go, out, async () => {
      const r = await api('POST', '/v1/embeddings', { model: model.value, input: [a.value, b.value] });
      const [x, y] = r.data.map((d) => d.embedding);
      const sim = cosine(x, y);
      fill(out, el('p', {}, `Cosine similarity: ${sim.toFixed(4)} (${x.length} dimensions, ${r.usage.total_tokens} tokens)`), bar(sim, 'similarity'));
    });
  });
  p.append(form);
}

/** `text` with its entities as `<mark>` elements, all as text nodes (offsets in characters). */
export function highlight(text, ents) {
  const chars = Array.from(text);
  const out = el('p', { class: 'highlighted' });
  let at = 0;
  for (const e of [...ents].sort((x, y) => x.start - y.start)) {
    if (e.start < at || e.end > chars.length) continue;
    out.append(chars.slice(at, e.start).join(''));
    // /v1/entities names it `label` (with a score), /v1/anonymize `type`.
    const label = e.label || e.type;
    const title = typeof e.score === 'number' ? `${label} ${e.score.toFixed(2)}` : label;
    out.append(el('mark', { 'data-label': label, title },
      chars.slice(e.start, e.end).join(''), el('span', { class: 'tag' }, label)));
    at = e.end;
  }
  out.append(chars.slice(at).join(''));
  return out;
}

function entities(p, models) {
  const model = select('model', models);
  const text = el('textarea', { rows: '3', id: 'ner-input' }, 'Call John Smith at (415) 555-0132 or john.smith@example.com');
  const go = el('button', { type: 'submit', id: 'ner-go' }, 'Find entities');
  const out = el('div', { class: 'result', id: 'ner-out', 'aria-live': 'polite' });
  const form = el('form', { class: 'stack' }, field('Model', model), field('Text', text), go, out);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    fill(out);
    busy(go, out, async () => {
      const input = text.value;
      const r = await api('POST', '/v1/entities', { model: model.value, input });
      const ents = r.data[0].entities;
      fill(out, highlight(input, ents), el('table', { class: 'reflow' },
        el('thead', {}, el('tr', {}, el('th', {}, 'label'), el('th', {}, 'text'), el('th', {}, 'characters'), el('th', {}, 'score'))),
        el('tbody', {}, ents.map((x) => el('tr', {}, el('td', { 'data-label': 'label' }, x.label), el('td', { 'data-label': 'text' }, x.text),
          el('td', { 'data-label': 'characters' }, `${x.start}–${x.end}`), el('td', { 'data-label': 'score' }, x.score.toFixed(3)))))));
    });
  });
  p.append(form);
}

function classify(p, models) {
  const model = select('model', models);
  const text = el('textarea', { rows: '2', id: 'classify-input' }, 'A gorgeous, moving film.');
  const go = el('button', { type: 'submit', id: 'classify-go' }, 'Classify');
  const out = el('div', { class: 'result', id: 'classify-out', 'aria-live': 'polite' });
  const form = el('form', { class: 'stack' }, field('Model', model), field('Text', text), go, out);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    fill(out);
    busy(go, out, async () => {
      const r = await api('POST', '/v1/classify', { model: model.value, input: text.value });
      const scores = r.data[0].scores;
      fill(out, el('dl', { class: 'bars' }, scores.map((s) => [
        el('dt', {}, `${s.label} ${(s.score * 100).toFixed(1)} %`), el('dd', {}, bar(s.score, s.label))])));
    });
  });
  p.append(form);
}

// The types /v1/anonymize knows (host/src/data/anonymize.rs, ENTITY_TYPES).
const ENTITY_TYPES = ['PERSON', 'LOC', 'ADDRESS', 'EMAIL', 'PHONE', 'CREDIT_CARD', 'IBAN', 'IP', 'URL',
  'TAX_ID', 'BANK_ACCOUNT', 'ROUTING_NUMBER', 'GOVERNMENT_ID', 'PASSPORT', 'DRIVERS_LICENSE'];

function anonymize(p) {
  const text = el('textarea', { rows: '3', id: 'anon-input' }, 'Call Maria Schmidt at maria@example.org');
  const op = select('operator', ['tag', 'redact', 'mask', 'hash', 'pseudonymize']);
  const go = el('button', { type: 'submit', id: 'anon-go' }, 'Anonymise');
  const out = el('div', { class: 'result two', id: 'anon-out', 'aria-live': 'polite' });
  const form = el('form', { class: 'stack' }, field('Text', text), field('Operator', op), go, out);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    fill(out);
    busy(go, out, async () => {
      const input = text.value;
      const operators = Object.fromEntries(ENTITY_TYPES.map((t) => [t, op.value]));
      const r = await api('POST', '/v1/anonymize', { text: input, operators });
      fill(out, el('div', {}, el('h3', {}, 'Before'), highlight(input, r.entities || [])),
        el('div', {}, el('h3', {}, 'After'), el('p', { class: 'after' }, r.text)));
    });
  });
  p.append(form);
}

/** A retrieved chunk as a numbered citation; `cited` marks one the answer cites. */
function hit(h, n, cited) {
  return el('li', { class: cited ? 'cited' : '', 'data-index': String(n) },
    el('p', { class: 'meta' }, `[${n}] ${h.document} · chunk ${h.chunk} · score ${h.score.toFixed(3)}`,
      cited ? el('span', { class: 'badge on' }, 'cited') : null),
    el('blockquote', {}, h.text));
}

/** Search a collection (cited chunks); with a generation model, Ask: a grounded answer
 * (`/v1/collections/{name}/ask`) shown as text, the chunks it cites marked among the sources. */
function search(p, genModels) {
  const coll = el('select', { name: 'collection' });
  const query = el('input', { type: 'search', value: '' });
  const topK = el('input', { type: 'number', min: '1', max: '50', value: '5' });
  const go = el('button', { type: 'submit' }, 'Search');
  const out = el('div', { class: 'result', 'aria-live': 'polite', id: 'search-out' });
  api('GET', '/v1/collections').then((r) => {
    const names = r.data.map((c) => c.name);
    fill(coll, names.map((n) => el('option', { value: n }, n)));
    if (names.length === 0) fill(out, el('p', {}, 'No collection yet: create one with `llmos data create NAME` and ingest documents.'));
  }).catch((e) => fill(out, errorBox(e)));
  const ask = genModels.length ? el('button', { type: 'button', id: 'search-ask', class: 'secondary' }, 'Ask') : null;
  const genModel = select('model', genModels);
  const maxTokens = el('input', { type: 'number', min: '1', max: '2048', value: '64' });
  const askFields = ask ? [field('Answer model', genModel), field('Answer tokens', maxTokens)] : [];
  const form = el('form', { class: 'stack' }, el('div', { class: 'row' }, field('Collection', coll), field('Top k', topK), askFields),
    field('Query', query), el('div', { class: 'row' }, go, ask), out);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    fill(out);
    busy(go, out, async () => {
      const r = await api('POST', `/v1/collections/${encodeURIComponent(coll.value)}/search`, { query: query.value, top_k: Number(topK.value) });
      const hits = r.data;
      fill(out, hits.length === 0 ? el('p', {}, 'Nothing found.') : el('ol', { class: 'hits' }, hits.map((h, i) => hit(h, i + 1, false))));
    });
  });
  if (ask) {
    ask.addEventListener('click', () => {
      fill(out);
      busy(ask, out, async () => {
        const r = await api('POST', `/v1/collections/${encodeURIComponent(coll.value)}/ask`, {
          question: query.value, model: genModel.value, top_k: Number(topK.value), max_tokens: Number(maxTokens.value),
        });
        const cited = new Set((r.citations || []).map((c) => c.index));
        const sources = r.sources || [];
        fill(out,
          el('h3', {}, 'Answer'),
          el('p', { class: 'answer', id: 'search-answer' }, r.answer),
          el('p', { class: 'meta' }, `${r.model} · ${r.usage ? r.usage.completion_tokens : '?'} tokens · cites ${cited.size ? [...cited].map((n) => `[${n}]`).join(' ') : 'no source'}`),
          el('h3', {}, 'Sources'),
          sources.length === 0 ? el('p', {}, 'No chunk was retrieved.') : el('ol', { class: 'hits' }, sources.map((h) => hit(h, h.index, cited.has(h.index)))));
      });
    });
  }
  p.append(form);
}
