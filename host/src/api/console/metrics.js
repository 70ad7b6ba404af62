// Live charts from /metrics (Prometheus text), drawn as plain SVG: requests per second,
// p50 / p99 latency, mean batch size and queue depth, over the last two minutes.

import { api, el, fill } from './api.js';

/** Prometheus text → [{name, labels, value}]. */
export function parse(text) {
  const out = [];
  for (const line of String(text).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
    let l;
    while ((l = re.exec(m[2] || '')) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

export const sum = (samples) => samples.reduce((a, s) => a + (Number.isFinite(s.value) ? s.value : 0), 0);

/** Cumulative histogram buckets {le: count} of the samples named `name`, summed over labels. */
function buckets(samples, name) {
  const b = new Map();
  for (const s of samples) {
    if (s.name !== name) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    b.set(le, (b.get(le) || 0) + s.value);
  }
  return b;
}

/** The q-quantile of the difference of two cumulative histograms (the bucket's upper bound). */
function quantile(now, before, q) {
  const les = [...now.keys()].sort((a, b) => a - b);
  const total = (now.get(Infinity) || 0) - (before.get(Infinity) || 0);
  if (total <= 0) return NaN;
  for (const le of les) {
    if ((now.get(le) || 0) - (before.get(le) || 0) >= q * total) return le;
  }
  return NaN;
}

const POINTS = 60;
const series = { rps: [], p50: [], p99: [], batch: [], queue: [] };
let last = null;
let timer = null;

function sample(text) {
  const s = parse(text);
  const t = performance.now() / 1000;
  const now = {
    t,
    requests: sum(s.filter((x) => x.name === 'llmos_http_requests_total')),
    lat: buckets(s, 'llmos_http_request_duration_seconds_bucket'),
    batchSum: sum(s.filter((x) => x.name === 'llmos_batch_size_sum')),
    batchCount: sum(s.filter((x) => x.name === 'llmos_batch_size_count')),
    queue: sum(s.filter((x) => x.name === 'llmos_queue_depth')),
  };
  if (last) {
    const dt = Math.max(1e-3, t - last.t);
    const push = (k, v) => { series[k].push(v); if (series[k].length > POINTS) series[k].shift(); };
    push('rps', (now.requests - last.requests) / dt);
    push('p50', quantile(now.lat, last.lat, 0.5) * 1000);
    push('p99', quantile(now.lat, last.lat, 0.99) * 1000);
    const n = now.batchCount - last.batchCount;
    push('batch', n > 0 ? (now.batchSum - last.batchSum) / n : NaN);
    push('queue', now.queue);
  }
  last = now;
}

/** A line chart of one or two series, with its latest value in the title. */
function chart(title, unit, lines) {
  const w = 320; const h = 120; const pad = 4;
  const vals = lines.flatMap(([, v]) => v.filter(Number.isFinite));
  const max = Math.max(1e-9, ...vals) * 1.1;
  const svg = el('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': title, class: 'chart' });
  svg.append(el('line', { x1: 0, y1: h - pad, x2: w, y2: h - pad, class: 'axis' }));
  lines.forEach(([, v], i) => {
    const pts = v.map((y, j) => (Number.isFinite(y) ? `${(j / (POINTS - 1)) * w},${h - pad - (y / max) * (h - 2 * pad)}` : null)).filter(Boolean);
    svg.append(el('polyline', { points: pts.join(' '), class: `line l${i}` }));
  });
  svg.append(el('text', { x: w - 4, y: 14, 'text-anchor': 'end', class: 'max' }, `max ${max.toFixed(max < 10 ? 2 : 0)} ${unit}`));
  const latest = lines.map(([name, v]) => {
    const x = v[v.length - 1];
    return `${name} ${Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 0) : '–'} ${unit}`;
  }).join(' · ');
  return el('figure', { class: 'chart-box' }, el('figcaption', {}, el('strong', {}, title), ` ${latest}`), svg);
}

function draw(box) {
  fill(box,
    chart('Requests', 'req/s', [['rate', series.rps]]),
    chart('Latency', 'ms', [['p50', series.p50], ['p99', series.p99]]),
    chart('Batch size', '', [['mean', series.batch]]),
    chart('Queue depth', '', [['queued', series.queue]]));
}

/** Metrics: scraped every 2 s while the view is shown. */
export async function metricsView(panel) {
  const box = el('div', { class: 'charts', id: 'charts' });
  const note = el('p', { class: 'muted small' }, 'From /metrics every 2 s while this view is open (bucket bounds for the percentiles).');
  fill(panel, el('h2', {}, 'Metrics'), note, box);
  const tick = async () => {
    if (panel.hidden || !document.body.contains(box)) { clearInterval(timer); timer = null; return; }
    try {
      sample(await api('GET', '/metrics'));
      draw(box);
    } catch (e) {
      fill(box, el('p', { class: 'error', role: 'alert' }, e.message));
    }
  };
  if (timer) clearInterval(timer);
  await tick();
  timer = setInterval(tick, 2000);
}
