// The console in headless Chromium against a real `llmos serve` (started by
// tests/all/console.rs, which passes LLMOS_URL, LLMOS_KEY, CHROMIUM, SHOTS and
// LLMOS_BROWSER_MODULES). Each check throws with what it saw; screenshots go to SHOTS.

import { createRequire } from 'node:module';
import { strict as assert } from 'node:assert';
import path from 'node:path';

const require = createRequire(path.join(process.env.LLMOS_BROWSER_MODULES, 'x.js'));
const { chromium } = require('playwright-core');

const url = process.env.LLMOS_URL;
const key = process.env.LLMOS_KEY;
const shots = process.env.SHOTS;
const XSS = '<img src=x onerror=window.__xss=1>';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const problems = [];
page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
const shot = (name, clip) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: false, clip });
const step = (name) => console.log(`ok: ${name}`);

async function run() {
  // 1. Load, enter the key (kept in sessionStorage, never in the URL).
  await page.goto(url);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Use key' }).click();
  await page.locator('#status.ok').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('llmos.key')), key);
  assert.ok(!page.url().includes(key), 'the key is not in the URL');
  step('key entered; status: ' + await page.locator('#status').textContent());

  // Tabs only for what the server has: every default task is there.
  await page.locator('#task-chat').waitFor();
  const tasks = await page.locator('#tasks [role=tab]').allTextContents();
  assert.deepEqual(tasks, ['Chat', 'Embeddings', 'Entities', 'Classify', 'Anonymise', 'Search'], `tasks: ${tasks}`);

  // 2. Chat, streamed: count the distinct lengths the answer goes through while it arrives.
  await page.evaluate(() => {
    window.__lengths = [];
    new MutationObserver(() => {
      const t = document.querySelector('#chat-log .msg.assistant:last-child .assistant-text');
      if (t) window.__lengths.push(t.textContent.length);
    }).observe(document.querySelector('#chat-log'), { childList: true, subtree: true, characterData: true });
  });
  await page.getByLabel('Temperature').fill('0');
  await page.getByLabel('Max tokens').fill('24');
  await page.getByLabel('Message').fill('Write one sentence about the sea.');
  await page.locator('#chat-send').click();
  await page.locator('#chat-log .msg.assistant .meta', { hasText: 'chunks' }).waitFor({ timeout: 60000 });
  const answer = await page.locator('#chat-log .assistant-text').first().textContent();
  const lengths = await page.evaluate(() => [...new Set(window.__lengths)]);
  assert.ok(answer.trim().length > 0, 'the chat answered');
  assert.ok(lengths.length >= 5, `the answer grew in steps (streamed): lengths ${lengths}`);
  step(`chat streamed in ${lengths.length} steps: ${JSON.stringify(answer)}`);
  await shot('playground-chat');
  await shot('readme-playground', { x: 0, y: 0, width: 1200, height: 610 });

  // Stop cancels a running stream.
  await page.getByLabel('Max tokens').fill('400');
  await page.getByLabel('Temperature').fill('0.8');
  await page.getByLabel('Message').fill('Tell me a long story about a lighthouse keeper.');
  await page.locator('#chat-send').click();
  await page.locator('#chat-log .msg.assistant:last-child .assistant-text').filter({ hasText: /\S/ }).waitFor({ timeout: 60000 });
  await page.locator('#chat-stop').click();
  await page.locator('#chat-log .msg.assistant:last-child .meta', { hasText: 'stopped' }).waitFor({ timeout: 10000 });
  step('stop cancelled the stream: ' + await page.locator('#chat-log .msg.assistant:last-child .meta').textContent());

  // Model output holding HTML is text: a schema forces the model to write an <img> tag.
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.getByLabel('Structured output').selectOption('json_schema');
  await page.getByLabel('JSON schema').fill(JSON.stringify({
    type: 'object', properties: { html: { type: 'string', const: XSS } }, required: ['html'],
  }));
  await page.getByLabel('Max tokens').fill('64');
  await page.getByLabel('Message').fill('Any answer.');
  await page.locator('#chat-send').click();
  await page.locator('#chat-log .msg.assistant .meta', { hasText: 'chunks' }).waitFor({ timeout: 60000 });
  const json = await page.locator('#chat-log .assistant-text').first().textContent();
  assert.ok(json.includes(XSS), `the model wrote the tag as text: ${json}`);
  assert.equal(await page.locator('#chat-log img').count(), 0, 'no img element from model output');
  step(`model output shown as text: ${json}`);
  await page.getByLabel('Structured output').selectOption('text');

  // 3. Entities highlighted, as <mark> elements holding text.
  await page.locator('#task-entities').click();
  await page.locator('#ner-input').fill(`Call John Smith at (415) 555-0132 or john.smith@example.com ${XSS}`);
  await page.locator('#ner-go').click();
  await page.locator('#ner-out mark').first().waitFor({ timeout: 30000 });
  const marks = await page.locator('#ner-out mark').evaluateAll((ms) => ms.map((m) => [m.dataset.label, m.firstChild.textContent]));
  assert.ok(marks.some(([, t]) => t.includes('John')), `a person is marked: ${JSON.stringify(marks)}`);
  assert.ok(marks.some(([, t]) => t.includes('john.smith@example.com')), `the e-mail is marked: ${JSON.stringify(marks)}`);
  assert.ok((await page.locator('#ner-out .highlighted').textContent()).includes(XSS));
  step(`entities marked: ${JSON.stringify(marks)}`);
  await shot('playground-entities');

  // Anonymise: before / after, the tag stays text.
  await page.locator('#task-anonymize').click();
  await page.locator('#anon-input').fill(`Call Maria Schmidt at maria@example.org ${XSS}`);
  await page.locator('#anon-go').click();
  await page.locator('#anon-out .after').waitFor({ timeout: 30000 });
  const after = await page.locator('#anon-out .after').textContent();
  assert.ok(!after.includes('maria@example.org') && after.includes(XSS), `anonymised: ${after}`);
  step(`anonymised: ${after}`);
  await shot('playground-anonymize');

  // Search: the hits as cited chunks; stored HTML stays text.
  await page.locator('#task-search').click();
  await page.locator('#panel-search').getByLabel('Query').fill('how do birds catch fish');
  await page.locator('#panel-search').getByRole('button', { name: 'Search' }).click();
  await page.locator('#panel-search .hits blockquote').first().waitFor({ timeout: 30000 });
  const hits = await page.locator('#panel-search .hits li').allTextContents();
  assert.match(hits[0], /\[1\] heron .*heron waits in the reeds/, hits.join(' | '));
  assert.ok(hits.some((h) => h.includes('<img src=x onerror=window.__xss=3>')), hits.join(' | '));
  step(`search: ${hits.length} cited chunks, first ${JSON.stringify(hits[0])}`);
  await shot('playground-search');

  // Ask: a grounded answer (smollm2, few tokens) as text; the chunks it cites marked.
  await page.locator('#panel-search').getByLabel('Query').fill('Where does the heron wait before striking?');
  await page.locator('#panel-search').getByLabel('Answer tokens').fill('24');
  const askStarted = Date.now();
  const [asked] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/v1/collections/notes/ask'), { timeout: 60000 }),
    page.locator('#search-ask').click(),
  ]);
  const grounded = await asked.json();
  assert.equal(asked.status(), 200, JSON.stringify(grounded));
  await page.locator('#search-answer').waitFor();
  assert.equal(await page.locator('#search-answer').textContent(), grounded.answer);
  assert.equal(await page.locator('#search-out .hits li').count(), grounded.sources.length);
  const marked = await page.locator('#search-out .hits li.cited').evaluateAll((ls) => ls.map((l) => Number(l.dataset.index)));
  assert.deepEqual(marked, grounded.citations.map((c) => c.index), 'the cited chunks are marked');
  step(`ask (${Date.now() - askStarted} ms): ${JSON.stringify(grounded.answer)} citing ${JSON.stringify(marked)} of ${grounded.sources.length}`);
  await shot('playground-ask');

  // 4. Plugins: the request policy denies; disabled, the request fails closed naming it;
  // enabled again, it denies again and a benign text passes.
  const classify = async (text, model = 'sentiment') => {
    await page.locator('#task-classify').click();
    await page.locator('#panel-classify').getByLabel('Model').selectOption(model);
    await page.locator('#classify-input').fill(text);
    await page.locator('#classify-go').click();
    await page.locator('#classify-out :is(.error, .bars)').first().waitFor({ timeout: 30000 });
    return page.locator('#classify-out').textContent();
  };
  let out = await classify('This film is forbidden.');
  assert.match(out, /denied by plugin content-policy/, out);
  step(`policy enabled: ${out}`);
  out = await classify('A gorgeous, moving film.');
  assert.match(out, /positive/, out);
  await shot('playground-classify');
  // test-panic, spam's preprocessor, traps: the request fails naming it.
  out = await classify('Win a prize now!', 'spam');
  assert.match(out, /test-panic/, out);
  step(`a trapping preprocessor: ${out}`);

  await page.locator('#tab-plugins').click();
  const card = page.locator('#plugin-content-policy');
  await card.waitFor();
  await card.getByRole('button', { name: 'Disable' }).click();
  await page.locator('#plugin-content-policy .badge.off').waitFor();
  await page.locator('#tab-playground').click();
  out = await classify('This film is forbidden.');
  assert.match(out, /content-policy is disabled/, out);
  step(`policy disabled: ${out}`);
  await page.locator('#tab-plugins').click();
  await page.locator('#plugin-content-policy').getByRole('button', { name: 'Enable' }).click();
  await page.locator('#plugin-content-policy .badge.on').waitFor();
  await page.locator('#tab-playground').click();
  out = await classify('This film is forbidden.');
  assert.match(out, /denied by plugin content-policy/, out);
  step('policy enabled again: denies again');

  // Grant shows the capability diff before confirming; cancelled here.
  await page.locator('#tab-plugins').click();
  const pii = page.locator('#plugin-pii-redact');
  await pii.waitFor();
  await pii.getByLabel('Capability').fill('inference:pii-ner');
  await pii.getByRole('button', { name: 'Grant…' }).click();
  await pii.locator('.diff .add', { hasText: '+ inference:pii-ner' }).waitFor();
  step('grant diff shown: ' + await pii.locator('.review').textContent());
  await shot('plugins');
  await shot('readme-plugins', { x: 0, y: 0, width: 1200, height: 640 });
  await pii.getByRole('button', { name: 'Cancel' }).click();
  assert.match(await pii.textContent(), /inference:pii-ner/, 'recent denials of pii-redact listed');
  assert.match(await pii.textContent(), /timeout_ms 5000 \(set by the operator\)/, 'the limit override is shown');
  // The trap is listed beside the denials: what stopped the call, where, for which model.
  const traps = await page.locator('#traps-test-panic').textContent();
  assert.match(traps, /trap: wasm `unreachable` instruction executed in preprocess, model spam, route \/v1\/classify/, traps);
  step(`recent traps of test-panic: ${traps}`);
  await page.locator('#plugin-test-panic').screenshot({ path: path.join(shots, 'plugins-trap.png') });

  // 5. Audit: the denial of pii-redact's ungranted model call, and the chain verified.
  await page.locator('#tab-audit').click();
  await page.locator('#audit-verify.ok').waitFor({ timeout: 10000 });
  await page.getByLabel('Kind').fill('denied');
  await page.locator('#audit-go').click();
  await page.locator('#audit-out td', { hasText: 'pii-redact' }).first().waitFor();
  step('audit: ' + await page.locator('#audit-verify').textContent());
  await shot('audit');

  // 6. Models and metrics.
  await page.locator('#tab-models').click();
  await page.locator('#view-models th', { hasText: 'smollm2' }).waitFor();
  await shot('models');
  await page.locator('#tab-metrics').click();
  await page.locator('#charts svg polyline').first().waitFor();
  await page.waitForTimeout(4500);
  const pts = await page.locator('#charts polyline').first().getAttribute('points');
  assert.ok(pts && pts.split(' ').length >= 2, `the request chart has points: ${pts}`);
  await shot('metrics');

  // 7. Keyboard: arrows move between the view tabs; focus is visible.
  await page.locator('#tab-metrics').focus();
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-playground');
  assert.equal(await page.locator('#tab-playground').getAttribute('aria-selected'), 'true');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-metrics');
  // Every form control has a label.
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map((e) => e.outerHTML));
  assert.deepEqual(unlabelled, [], 'unlabelled controls');
  step('keyboard and labels');

  // 8. A phone-sized viewport.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator('#tab-playground').click();
  await page.locator('#task-entities').click();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no horizontal scrolling on a phone: ${overflow}px too wide`);
  // The entities table reflows (a block per row) rather than scrolling inside its box.
  const inner = await page.locator('#ner-out').evaluate((e) => e.scrollWidth - e.clientWidth);
  assert.ok(inner <= 1, `the entities table fits its box on a phone: ${inner}px too wide`);
  assert.equal(await page.locator('#ner-out td').first().evaluate((e) => getComputedStyle(e).display), 'grid');
  await page.locator('#ner-out table').scrollIntoViewIfNeeded();
  await shot('phone-playground');

  // Nothing ran from model or plugin output; no script errors.
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'no injected script ran');
  assert.equal(await page.locator('img').count(), 0, 'no img element anywhere');
  assert.deepEqual(problems.filter((p) => !/status of 4\d\d|status of 50\d/.test(p)), [], 'console errors');
}

try {
  await run();
  console.log('all console checks passed');
} catch (e) {
  await shot('failure').catch(() => {});
  console.error(`failed; the page showed:\n${await page.locator('body').innerText().catch(() => '?')}`);
  console.error(problems.join('\n'));
  throw e;
} finally {
  await browser.close();
}
