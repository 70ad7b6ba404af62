// The operator's views: models, plugins (enable/disable, grant/revoke with the capability
// diff shown before confirming, recent denials and traps), and the audit log (paged, filtered,
// with the chain's verification). All from the existing API; all output as text.

import { api, el, fill, errorBox } from './api.js';
import { parse, sum } from './metrics.js';

// A table whose cells carry their column's name (`data-label`): at phone width the
// stylesheet stacks each row as "name  value" lines instead of scrolling sideways.
function table(head, rows) {
  for (const tr of rows) [...tr.children].forEach((c, i) => c.setAttribute('data-label', head[i] || ''));
  return el('table', { class: 'reflow' },
    el('thead', {}, el('tr', {}, head.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows));
}

const fmtMs = (s) => (Number.isFinite(s) ? `${(s * 1000).toFixed(1)} ms` : '–');

/** Models: task, provider serving and those skipped (with why), licence, queue, latency. */
export async function modelsView(panel) {
  fill(panel, el('p', {}, 'Loading…'));
  const [models, text] = await Promise.all([
    api('GET', '/v1/models'),
    api('GET', '/metrics').catch(() => ''),
  ]);
  const m = parse(text);
  const rows = models.data.map((x) => {
    const sel = (name) => m.filter((s) => s.name === name && s.labels.model === x.id);
    const count = sum(sel('llmos_http_request_duration_seconds_count'));
    const mean = count > 0 ? sum(sel('llmos_http_request_duration_seconds_sum')) / count : NaN;
    const skipped = (x.providers_skipped || []).map((s) => el('li', {}, `${s.provider || s.name}: ${s.reason}`));
    return el('tr', {},
      el('th', { scope: 'row' }, x.id),
      el('td', {}, x.task),
      el('td', {}, x.provider || (x.loaded ? '' : 'not loaded yet'), skipped.length ? el('details', { class: 'small' }, el('summary', {}, `${skipped.length} skipped`), el('ul', {}, skipped)) : null),
      el('td', {}, x.license || ''),
      el('td', { class: 'small' }, x.attribution || ''),
      el('td', { class: 'num' }, String(sum(m.filter((s) => s.name === 'llmos_queue_depth' && s.labels.model === x.id)))),
      el('td', { class: 'num' }, `${count}`),
      el('td', { class: 'num' }, fmtMs(mean)));
  });
  fill(panel, el('h2', {}, 'Models'),
    table(['model', 'task', 'provider', 'licence', 'attribution', 'queue', 'requests', 'mean latency'], rows));
}

const capsOf = (set) => (Array.isArray(set) ? set : Object.values(set || {}).flat()).map(String);

// Whether capability pattern `p` (e.g. `inference:*`) covers `c`.
const covers = (p, c) => p === c || p === '*' || (p.endsWith('*') && c.startsWith(p.slice(0, -1)));

/** What a grant or revoke changes: effective capabilities (requested ∩ granted, wildcards
 * matched either way) before and after. The server's answer is the authority. */
export function capabilityDiff(requested, granted, cap, grant) {
  const after = grant ? [...new Set([...granted, cap])] : granted.filter((c) => c !== cap);
  const eff = (g) => [...new Set([
    ...requested.filter((r) => g.some((x) => covers(x, r))),
    ...g.filter((x) => requested.some((r) => covers(r, x))),
  ])];
  const before = eff(granted);
  const then = eff(after);
  return {
    added: then.filter((c) => !before.includes(c)),
    removed: before.filter((c) => !then.includes(c)),
    unrequested: grant && !requested.some((r) => covers(r, cap)) ? [cap] : [],
  };
}

// The three newest audit entries of kind `what` (`denied`, `trap`) about plugin `name`.
async function recentOf(name, what) {
  try {
    const q = new URLSearchParams({ target: name, what, limit: '1000' });
    const r = await api('GET', `/admin/audit?${q}`);
    return r.records.slice(-3).reverse();
  } catch (_) {
    return [];
  }
}

function recentList(id, entries, line) {
  return entries.length === 0 ? el('p', { class: 'muted small', id }, 'none') : el('ul', { class: 'denials small', id },
    entries.map((d) => el('li', {}, `#${d.seq} ${new Date(d.time).toLocaleString()} ${line(d)}`)));
}

function pluginCard(p, counts, denials, traps, reload) {
  const name = p.manifest.name;
  const requested = capsOf(p.manifest.capabilities);
  const granted = capsOf(p.granted);
  const status = el('p', { class: 'small', role: 'status', 'aria-live': 'polite' });
  const toggle = el('button', { type: 'button', id: `toggle-${name}`, class: p.enabled ? 'secondary' : '' }, p.enabled ? 'Disable' : 'Enable');
  toggle.addEventListener('click', async () => {
    toggle.disabled = true;
    try {
      await api('POST', `/admin/plugins/${encodeURIComponent(name)}/${p.enabled ? 'disable' : 'enable'}`);
      await reload();
    } catch (e) {
      fill(status, errorBox(e));
      toggle.disabled = false;
    }
  });
  const cap = el('input', { type: 'text', id: `cap-${name}`, placeholder: 'inference:pii-ner', spellcheck: 'false' });
  const review = el('div', { class: 'review', 'aria-live': 'polite' });
  const ask = (grant) => () => {
    const c = cap.value.trim();
    if (!c) { fill(review, errorBox('name a capability: kv, inference:<model>, secret:<name>, http:<host>')); return; }
    const d = capabilityDiff(requested, granted, c, grant);
    const confirm = el('button', { type: 'button', class: 'danger' }, `Confirm ${grant ? 'grant' : 'revoke'}`);
    const cancel = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
    cancel.addEventListener('click', () => fill(review));
    confirm.addEventListener('click', async () => {
      confirm.disabled = true;
      try {
        await api('POST', `/admin/plugins/${encodeURIComponent(name)}/${grant ? 'grant' : 'revoke'}`, { capabilities: [c] });
        await reload();
      } catch (e) {
        review.append(errorBox(e));
      }
    });
    fill(review,
      el('p', {}, `${grant ? 'Grant' : 'Revoke'} ${c} for ${name}: effective capabilities change:`),
      el('ul', { class: 'diff' },
        d.added.map((x) => el('li', { class: 'add' }, `+ ${x}`)),
        d.removed.map((x) => el('li', { class: 'del' }, `− ${x}`)),
        d.added.length + d.removed.length === 0 ? el('li', {}, 'no change') : null),
      d.unrequested.length && d.added.length === 0 ? el('p', { class: 'warn' }, `${c} is not requested by the manifest: it is kept but never effective.`) : null,
      el('div', { class: 'row' }, confirm, cancel));
    confirm.focus();
  };
  const grantB = el('button', { type: 'button' }, 'Grant…');
  grantB.addEventListener('click', ask(true));
  const revokeB = el('button', { type: 'button', class: 'secondary' }, 'Revoke…');
  revokeB.addEventListener('click', ask(false));
  // The manifest's limits, with the operator's overrides (`llmos plugin limits`) in force.
  const set = (o) => Object.entries(o || {}).filter(([, v]) => v !== null && v !== undefined);
  const over = Object.fromEntries(set(p.limits));
  const limits = set({ ...p.manifest.limits, ...over }).map(([k, v]) => `${k} ${v}${k in over ? ' (set by the operator)' : ''}`).join(', ');
  return el('article', { class: `card ${p.enabled ? '' : 'off'}`, id: `plugin-${name}`, 'aria-label': `plugin ${name}` },
    el('header', {}, el('h3', {}, name), el('span', { class: `badge ${p.enabled ? 'on' : 'off'}` }, p.enabled ? 'enabled' : 'disabled'), toggle),
    el('p', { class: 'small' }, `${p.manifest.world} · ${p.manifest.version} · sha256 ${p.sha256.slice(0, 16)}…`),
    p.manifest.description ? el('p', {}, p.manifest.description) : null,
    el('dl', { class: 'kv' },
      el('dt', {}, 'requested'), el('dd', {}, requested.join(', ') || 'none'),
      el('dt', {}, 'granted'), el('dd', {}, granted.join(', ') || 'none'),
      el('dt', {}, 'limits'), el('dd', {}, limits || 'defaults'),
      el('dt', {}, 'calls / traps'), el('dd', {}, `${counts.calls} / ${counts.traps}`),
      el('dt', {}, 'denials'), el('dd', {}, `${counts.denials} capability, ${counts.policy} policy`)),
    el('div', { class: 'row' }, el('label', { for: `cap-${name}` }, 'Capability'), cap, grantB, revokeB),
    review,
    el('div', { class: 'recent' },
      el('section', {}, el('h4', {}, 'Recent denials'),
        recentList(`denials-${name}`, denials, (d) => `${d.capability || ''}: ${d.detail || ''}`)),
      el('section', {}, el('h4', {}, 'Recent traps'),
        recentList(`traps-${name}`, traps, (d) => d.detail || ''))),
    status);
}

/** Plugins: one card each. */
export async function pluginsView(panel) {
  const reload = () => pluginsView(panel);
  fill(panel, el('p', {}, 'Loading…'));
  const [list, text] = await Promise.all([api('GET', '/admin/plugins'), api('GET', '/metrics').catch(() => '')]);
  const m = parse(text);
  const count = (metric, name) => sum(m.filter((s) => s.name === metric && s.labels.plugin === name));
  const cards = await Promise.all(list.plugins.map(async (p) => {
    const n = p.manifest.name;
    const counts = {
      calls: count('llmos_plugin_calls_total', n), traps: count('llmos_plugin_traps_total', n),
      denials: count('llmos_plugin_capability_denials_total', n), policy: count('llmos_plugin_policy_denials_total', n),
    };
    const [denials, traps] = await Promise.all([recentOf(n, 'denied'), recentOf(n, 'trap')]);
    return pluginCard(p, counts, denials, traps, reload);
  }));
  fill(panel, el('h2', {}, 'Plugins'),
    cards.length ? el('div', { class: 'cards' }, cards) : el('p', {}, 'No plugin installed (`llmos plugin install FILE.wasm --manifest manifest.toml`).'));
}

/** Audit: a page at a time, filtered by who / kind / target, and the chain's verification. */
export async function auditView(panel) {
  const who = el('input', { type: 'text', name: 'who', id: 'audit-who' });
  const what = el('input', { type: 'text', name: 'what', id: 'audit-what', placeholder: 'denied, admin-action…' });
  const target = el('input', { type: 'text', name: 'target', id: 'audit-target' });
  const go = el('button', { type: 'submit', id: 'audit-go' }, 'Filter');
  const verify = el('p', { id: 'audit-verify', role: 'status' }, 'Verifying the chain…');
  const out = el('div', { id: 'audit-out' });
  const pages = [0];
  const load = async (after) => {
    const q = new URLSearchParams({ limit: '50' });
    if (after) q.set('after', String(after));
    for (const [k, e] of [['who', who], ['what', what], ['target', target]]) if (e.value.trim()) q.set(k, e.value.trim());
    try {
      const r = await api('GET', `/admin/audit?${q}`);
      const prev = el('button', { type: 'button', class: 'secondary', disabled: pages.length < 2 }, 'Previous');
      const next = el('button', { type: 'button', class: 'secondary', disabled: r.next === null }, 'Next');
      prev.addEventListener('click', () => { pages.pop(); load(pages[pages.length - 1]); });
      next.addEventListener('click', () => { pages.push(r.next); load(r.next); });
      fill(out, r.records.length === 0 ? el('p', {}, 'No entry matches.') : table(['seq', 'time', 'who', 'what', 'target', 'outcome', 'capability', 'detail'],
        r.records.map((x) => el('tr', {}, el('td', { class: 'num' }, String(x.seq)), el('td', {}, new Date(x.time).toLocaleString()),
          el('td', {}, x.who), el('td', {}, x.what), el('td', {}, x.target), el('td', {}, x.outcome),
          el('td', {}, x.capability || ''), el('td', { class: 'small' }, x.detail || '')))),
        el('div', { class: 'row' }, prev, next));
    } catch (e) {
      fill(out, errorBox(e));
    }
  };
  const form = el('form', { class: 'row' }, el('label', { for: 'audit-who' }, 'Who'), who,
    el('label', { for: 'audit-what' }, 'Kind'), what, el('label', { for: 'audit-target' }, 'Target'), target, go);
  form.addEventListener('submit', (e) => { e.preventDefault(); pages.length = 1; load(0); });
  fill(panel, el('h2', {}, 'Audit log'), verify, form, out);
  api('GET', '/admin/audit/verify').then((r) => {
    verify.className = r.ok ? 'ok' : 'error';
    verify.textContent = r.ok
      ? `Chain verified: ${r.checked} entries checked (${r.first ?? '–'} to ${r.last ?? '–'}), no problem found.`
      : `Chain verification FAILED: ${r.message}`;
  }).catch((e) => fill(verify, errorBox(e)));
  await load(0);
}
