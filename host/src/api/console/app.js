// The console's entry: the key form, the view tabs, and loading each view when shown.

import { api, key, el, fill } from './api.js';
import { playground } from './playground.js';
import { modelsView, pluginsView, auditView } from './admin.js';
import { metricsView } from './metrics.js';

/** Makes the `role=tab` buttons of `list` a keyboard-operable tab list (arrows, Home, End);
 * `onShow(tab)` runs when a tab is selected. */
export function tabList(list, onShow) {
  const tabs = () => [...list.querySelectorAll('[role=tab]')];
  const select = (tab, focus) => {
    for (const t of tabs()) {
      const on = t === tab;
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
      const panel = document.getElementById(t.getAttribute('aria-controls'));
      if (panel) panel.hidden = !on;
    }
    if (focus) tab.focus();
    onShow(tab);
  };
  list.addEventListener('click', (e) => {
    const t = e.target.closest('[role=tab]');
    if (t) select(t, false);
  });
  list.addEventListener('keydown', (e) => {
    const all = tabs();
    const i = all.indexOf(document.activeElement);
    if (i < 0) return;
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: all.length - 1 }[e.key];
    if (next === undefined) return;
    e.preventDefault();
    select(all[(next + all.length) % all.length], true);
  });
  return select;
}

const status = document.getElementById('status');
const views = {
  'tab-playground': playground,
  'tab-models': modelsView,
  'tab-plugins': pluginsView,
  'tab-audit': auditView,
  'tab-metrics': metricsView,
};
let current = 'tab-playground';

async function show(tab) {
  current = tab.id;
  const panel = document.getElementById(tab.getAttribute('aria-controls'));
  try {
    await views[tab.id](panel);
  } catch (e) {
    fill(panel, el('p', { class: 'error', role: 'alert' }, e.message));
  }
}

async function connect() {
  try {
    const m = await api('GET', '/v1/models');
    const n = m.data.length;
    status.textContent = `${key.get() ? 'Using the key of this tab' : 'No key (open loopback server)'}: ${n} model${n === 1 ? '' : 's'} available.`;
    status.className = 'status ok';
  } catch (e) {
    status.textContent = e.status === 401
      ? `This server needs an API key: ${e.message}`
      : `Cannot reach the API: ${e.message}`;
    status.className = 'status bad';
  }
  await show(document.getElementById(current));
}

const form = document.getElementById('key-form');
const input = document.getElementById('key-input');
form.addEventListener('submit', (e) => {
  e.preventDefault();
  const k = input.value.trim();
  if (k) key.set(k);
  else key.clear();
  input.value = '';
  connect();
});
document.getElementById('key-forget').addEventListener('click', () => {
  key.clear();
  connect();
});

tabList(document.getElementById('views'), show);
connect();
