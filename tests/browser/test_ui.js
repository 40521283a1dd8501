/* test_ui.js: the web page (issue 18) in a real headless Chromium (Debian's chromium, driven by
 * puppeteer-core; no browser download).  Starts its own vitd daemons on 127.0.0.1:
 *   - the shipped model (models/fashion-vit) with the admin API on: load /, upload tests/data
 *     images, compare the page's top-k labels and scores with /classify's JSON for the same image,
 *     sample the heat map canvas (placed over the image, hottest where the attention is), CLS and
 *     rollout, the opacity slider, the keyboard path to the file chooser, the Teach flow (a wrong
 *     token shows the API's error; examples, training progress, activate the new head, the new
 *     labels on the page; roll back), a phone-sized viewport without horizontal scrolling;
 *   - a tiny timm model whose preprocessing center-crops: the heat map covers exactly the crop;
 *   - --ui off: / is 404.
 * The page's HTTP headers (Content-Type, CSP, ETag/304, Cache-Control) are checked too, and no
 * console error, page error, failed request or CSP violation may happen anywhere.
 *   node tests/browser/test_ui.js            (VITD_BUILD=build by default)
 *   UI_TEST_SCREENSHOTS=docs node tests/browser/test_ui.js   also writes docs/ui-desktop.png, ui-phone.png
 * Prints PASS/FAIL lines and ends with "N passed, M failed". */
'use strict';
const {spawn} = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const puppeteer = require('puppeteer-core');

const ROOT = path.resolve(__dirname, '..', '..');
const BUILD = process.env.VITD_BUILD || 'build';
const VITD = path.join(ROOT, BUILD, 'vitd');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.UI_TEST_SCREENSHOTS || '';
const TOKEN = 'ui-test-admin-token-0123456789';
const DATA = path.join(ROOT, 'tests', 'data');
const FM = path.join(DATA, 'fmnist', 'train');

let passed = 0, failed = 0;
function check(cond, name, detail) {
  if (cond) { passed++; console.log('PASS ' + name); }
  else { failed++; console.log('FAIL ' + name + (detail !== undefined ? ': ' + (typeof detail === 'string' ? detail : JSON.stringify(detail)) : '')); }
  return cond;
}

function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
    s.on('error', rej);
  });
}

const daemons = [];
async function startVitd(model, args, env) {
  const port = await freePort();
  const log = [];
  const e = Object.assign({}, process.env, env || {});
  for (const k of ['VITD_ADMIN_TOKEN', 'VITD_ADMIN_TOKEN_FILE', 'VITD_STATE_DIR', 'VITD_UI']) if (!(env && k in env)) delete e[k];
  const p = spawn(VITD, ['--model', model, '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn', ...args],
    {cwd: ROOT, env: e, stdio: ['ignore', 'pipe', 'pipe']});
  p.stdout.on('data', (d) => log.push(String(d)));
  p.stderr.on('data', (d) => log.push(String(d)));
  daemons.push(p);
  const base = 'http://127.0.0.1:' + port;
  const t0 = Date.now();
  while (Date.now() - t0 < 120000) {
    if (p.exitCode !== null) break;
    try { if ((await fetch(base + '/readyz')).status === 200) return {base, proc: p, log}; } catch (err) { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('vitd did not become ready: ' + log.join('').slice(-800));
}

function stopAll() { for (const p of daemons) if (p.exitCode === null) p.kill('SIGKILL'); }

async function classifyJson(base, file, attention, topk) {
  const fd = new FormData();
  fd.append('image', new Blob([fs.readFileSync(file)]), path.basename(file));
  const r = await fetch(base + '/classify?attention=' + attention + '&top_k=' + topk, {method: 'POST', body: fd});
  return r.json();
}

function argmax(a) { let k = 0; for (let i = 1; i < a.length; i++) if (a[i] > a[k]) k = i; return k; }
function argmin(a) { let k = 0; for (let i = 1; i < a.length; i++) if (a[i] < a[k]) k = i; return k; }

/* ---- the page's HTTP side ------------------------------------------------------------------ */

async function checkHeaders(base) {
  const r = await fetch(base + '/');
  const html = await r.text();
  const csp = r.headers.get('content-security-policy') || '';
  check(r.status === 200 && /^text\/html; charset=utf-8$/.test(r.headers.get('content-type')), 'GET / is 200 text/html',
    r.status + ' ' + r.headers.get('content-type'));
  check(/script-src 'self'/.test(csp) && /default-src 'none'/.test(csp) && !/unsafe-inline|unsafe-eval/.test(csp),
    'strict Content-Security-Policy (no unsafe-inline/eval)', csp);
  check(!/<script>|<script [^>]*>[^<]/.test(html) && !/ on[a-z]+=/.test(html) && !/style=/.test(html),
    'no inline script, handler or style attribute in the HTML');
  check(!/https?:\/\/(?!127\.0\.0\.1)/.test(html.replace(/<!--[\s\S]*?-->/g, '')), 'no external URL in the HTML');
  const etag = r.headers.get('etag');
  check(/^"[0-9a-f]{16}"$/.test(etag || '') && r.headers.get('cache-control') === 'no-cache', 'ETag and Cache-Control: no-cache on /',
    etag + ' ' + r.headers.get('cache-control'));
  const r304 = await fetch(base + '/', {headers: {'If-None-Match': etag}});
  check(r304.status === 304 && (await r304.text()) === '', 'If-None-Match with the ETag: 304, empty body', r304.status);
  for (const inm of ['"0000000000000000", W/' + etag, '*']) {
    const rr = await fetch(base + '/', {headers: {'If-None-Match': inm}});
    check(rr.status === 304, 'If-None-Match: ' + inm + ' → 304', rr.status);
  }
  const r200 = await fetch(base + '/', {headers: {'If-None-Match': '"0000000000000000"'}});
  check(r200.status === 200 && (await r200.text()) === html, 'If-None-Match with another tag: 200 and the page', r200.status);
  const refs = [...html.matchAll(/(?:src|href)="(\/ui\/[^"?]+)\?v=([0-9a-f]{16})"/g)];
  check(refs.length === 2, 'the page references its script and stylesheet by content hash', refs.map((m) => m[0]));
  for (const [, p, v] of refs) {
    const a = await fetch(base + p + '?v=' + v);
    const body = await a.text();
    const want = p.endsWith('.js') ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8';
    check(a.status === 200 && a.headers.get('content-type') === want && body.length > 100 &&
      a.headers.get('etag') === '"' + v + '"' && /immutable/.test(a.headers.get('cache-control')) &&
      a.headers.get('x-content-type-options') === 'nosniff',
    p + ': ' + want + ', ETag = its hash, immutable when versioned', a.status + ' ' + JSON.stringify([...a.headers]));
  }
  const un = await fetch(base + '/ui/app.js');
  check(un.headers.get('cache-control') === 'no-cache', 'unversioned asset URL is revalidated (no-cache)');
  const post = await fetch(base + '/', {method: 'POST', body: 'x'});
  const pj = await post.json();
  check(post.status === 405 && pj.error && pj.error.code === 'method_not_allowed', 'POST / is 405 with a JSON error', post.status);
  const nf = await fetch(base + '/ui/nope.js');
  const nj = await nf.json();
  check(nf.status === 404 && nj.error && nj.error.code === 'not_found', 'unknown /ui/ asset is 404 with a JSON error', nf.status);
}

/* ---- a browser page that records every error ------------------------------------------------ */

async function newPage(browser, problems, viewport) {
  const page = await browser.newPage();
  await page.setViewport(viewport);
  /* Chrome logs every 4xx fetch as "Failed to load resource"; the ones this test provokes on purpose
   * (400 for a broken image, 415 for a text file, 401 for a wrong token) are allowed, nothing else */
  const expected = (status, url) => ((status === 400 || status === 415) && /\/classify\?/.test(url)) ||
    (status === 401 && /\/admin\/heads$/.test(url));
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warn') return;
    const st = /^Failed to load resource: the server responded with a status of (\d+)/.exec(m.text());
    if (st && expected(Number(st[1]), (m.location() || {}).url || '')) return;
    problems.push('console ' + m.type() + ': ' + m.text() + ' ' + JSON.stringify(m.location()));
  });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('requestfailed', (r) => problems.push('request failed: ' + r.url() + ' ' + (r.failure() || {}).errorText));
  page.on('response', (r) => { if (r.status() >= 400 && !expected(r.status(), r.url())) problems.push('HTTP ' + r.status() + ' ' + r.url()); });
  return page;
}

async function openPage(page, base) {
  await page.goto(base + '/', {waitUntil: 'load'});
  await page.waitForFunction(() => document.getElementById('ready').textContent === 'ready', {timeout: 20000});
  await page.evaluate(() => document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective)));
}

async function uploadAndWait(page, files, selector) {
  const before = await page.$$eval('.result[data-state]', (a) => a.length);
  const input = await page.$(selector || '#file');
  await input.uploadFile(...files);
  await page.waitForFunction((n) => document.querySelectorAll('.result[data-state]').length >= n &&
    !document.querySelector('.result[aria-busy=true]'), {timeout: 30000}, before + files.length);
}

/* the result card of the image named name: labels, scores, canvas and image boxes, heat samples */
async function readResult(page, name) {
  return page.evaluate((name) => {
    const card = [...document.querySelectorAll('.result')].find((c) => c.querySelector('h3').textContent === name);
    if (!card) return null;
    const preds = [...card.querySelectorAll('.pred')].map((p) => ({label: p.dataset.label, score: Number(p.dataset.score),
      shown: p.querySelector('.label').textContent, pct: p.querySelector('.score').textContent}));
    const img = card.querySelector('img'), c = card.querySelector('canvas.heat'), crop = card.querySelector('.crop');
    const box = (e) => { if (!e) return null; const r = e.getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; };
    let px = null;
    if (c && c.width) {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      px = {w: c.width, h: c.height, data: Array.from(d)};
    }
    return {state: card.dataset.state, preds, img: box(img), canvas: box(c), crop: box(crop), mode: c && c.dataset.mode,
      opacity: c && c.style.opacity, natural: img ? [img.naturalWidth, img.naturalHeight] : null, px,
      error: (card.querySelector('.error') || {}).textContent, timing: (card.querySelector('.timing') || {}).textContent};
  }, name);
}

/* the pixel of canvas data at the center of grid cell k */
function cellPixel(px, grid, k) {
  const [gh, gw] = grid, gx = k % gw, gy = Math.floor(k / gw);
  const x = Math.floor((gx + 0.5) * px.w / gw), y = Math.floor((gy + 0.5) * px.h / gh);
  const i = (y * px.w + x) * 4;
  return px.data.slice(i, i + 4);
}

function near(a, b, tol) { return Math.abs(a - b) <= tol; }

async function checkClassify(page, base, file, mode) {
  const name = path.basename(file);
  const want = await classifyJson(base, file, mode, 5);
  const got = await readResult(page, name);
  const wr = want.results[0];
  check(got && got.state === 'done', name + ' (' + mode + '): result shown', got);
  if (!got || got.state !== 'done') return;
  const same = got.preds.length === wr.predictions.length && got.preds.every((p, i) => p.label === wr.predictions[i].label &&
    p.shown === wr.predictions[i].label && p.score === wr.predictions[i].score &&
    p.pct === (wr.predictions[i].score * 100).toFixed(2) + '%');
  check(same, name + ' (' + mode + '): top-5 labels and scores on the page = /classify JSON (top-1 ' + wr.predictions[0].label + ')',
    {page: got.preds, api: wr.predictions});
  check(/inference [0-9.]+ ms/.test(got.timing || ''), name + ': request timing shown', got.timing);
  check(got.mode === mode, name + ': heat map drawn for ' + mode, got.mode);
  // no crop in this model: the heat map covers the whole displayed image
  check(got.canvas && near(got.canvas.x, got.img.x, 1) && near(got.canvas.y, got.img.y, 1) && near(got.canvas.w, got.img.w, 1) &&
    near(got.canvas.h, got.img.h, 1), name + ': heat map canvas covers the image (no crop)', {img: got.img, canvas: got.canvas});
  const a = wr.attention, px = got.px;
  let opaque = 0;
  for (let i = 3; i < px.data.length; i += 4) opaque += px.data[i] > 0;
  check(opaque === px.w * px.h, name + ': every heat map pixel drawn (' + px.w + 'x' + px.h + ')', opaque);
  const hot = cellPixel(px, a.grid, argmax(a.values)), cold = cellPixel(px, a.grid, argmin(a.values));
  check(hot[0] > 150 && hot[0] > hot[2] && hot[3] > cold[3] && cold[2] > cold[0],
    name + ': hottest pixel at the max-attention patch, coldest at the min (' + hot + ' vs ' + cold + ')');
}

/* ---- the Teach flow --------------------------------------------------------------------------- */

function fm(label, n) {
  const d = path.join(FM, label);
  return fs.readdirSync(d).sort().slice(0, n).map((f) => path.join(d, f));
}

async function teach(page, base) {
  // a wrong token: the API's own error appears
  await page.type('#token', 'not-the-token-0123456789');
  await page.click('#token-go');
  await page.waitForSelector('#teach-error:not([hidden]) .error', {timeout: 10000});
  const apiErr = await (await fetch(base + '/admin/heads', {headers: {Authorization: 'Bearer not-the-token-0123456789'}})).json();
  const shown = await page.$eval('#teach-error', (e) => e.textContent);
  check(shown.includes(apiErr.error.code) && shown.includes(apiErr.error.message) && shown.includes('401'),
    'wrong token: the page shows the API error "' + apiErr.error.code + ': ' + apiErr.error.message + '"', shown);
  check(await page.$eval('#teach-panel', (e) => e.hidden), 'wrong token: the Teach panel stays locked');

  await page.$eval('#token', (e) => { e.value = ''; });
  await page.type('#token', TOKEN);
  await page.click('#token-go');
  await page.waitForSelector('#teach-panel:not([hidden])', {timeout: 10000});
  check(await page.$eval('#heads tbody', (t) => t.querySelector('tr.active') && t.querySelector('tr.active').dataset.version === '1'),
    'right token: panel open, head version 1 active');
  check(await page.$eval('#token', (e) => e.value === ''), 'the token is not left in the input');

  for (const label of ['footwear', 'other', 'tops']) {
    await page.$eval('#ex-label', (e) => { e.value = ''; });
    await page.type('#ex-label', label);
    const input = await page.$('#ex-files');
    await input.uploadFile(...fm(label, 20));
    await page.click('#ex-add');
    await page.waitForFunction((l) => document.getElementById('ex-counts').textContent.includes(l + ' 20'), {timeout: 60000}, label);
  }
  const counts = await page.$eval('#ex-counts', (e) => e.textContent);
  check(/footwear 20, other 20, tops 20/.test(counts), 'examples added to three labels: ' + counts, counts);

  await page.$eval('#epochs', (e) => { e.value = ''; });
  await page.type('#epochs', '20');
  await page.click('#train-start');
  await page.waitForFunction(() => ['succeeded', 'failed', 'cancelled'].includes(document.getElementById('job').dataset.state),
    {timeout: 60000});
  const jobText = await page.$eval('#job-text', (e) => e.textContent);
  const prog = await page.$eval('#job-progress', (e) => [e.value, e.max]);
  check(/succeeded, epoch 20\/20, loss [0-9.]+, validation accuracy [0-9.]+%, head version 2/.test(jobText) && prog[0] === 20 &&
    prog[1] === 20, 'training job shown to the end (progress bar 20/20): ' + jobText, jobText);

  await page.waitForSelector('#heads button[data-version="2"]', {timeout: 10000});
  if (SHOTS) {
    await page.setViewport({width: 1280, height: 1250, deviceScaleFactor: 1});
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({path: path.join(ROOT, SHOTS, 'ui-desktop.png')});
    await page.setViewport({width: 1280, height: 900, deviceScaleFactor: 1});
  }
  await page.click('#heads button[data-version="2"]');
  await page.waitForFunction(() => /labels \(3\)/.test(document.getElementById('model-card').textContent), {timeout: 20000});
  const card = await page.$eval('#model-card', (e) => e.textContent);
  check(/footwear, other, tops/.test(card) && /head version2/.test(card), 'activated head 2: the model card shows its labels and version',
    card);
  await page.waitForFunction(() => !document.querySelector('.result[aria-busy=true]') &&
    [...document.querySelectorAll('.pred:first-child')].every((p) => ['footwear', 'other', 'tops'].includes(p.dataset.label)),
  {timeout: 20000});
  const sneaker = await readResult(page, 'sneaker.png');
  const api = await classifyJson(base, path.join(DATA, 'sneaker.png'), 'cls', 5);
  check(sneaker.preds[0].label === 'footwear' && sneaker.preds[0].label === api.results[0].predictions[0].label &&
    sneaker.preds[0].score === api.results[0].predictions[0].score,
  'after activation the page shows the new label for sneaker.png: footwear (same as /classify)', {page: sneaker.preds, api: api.results[0]});

  await page.click('#heads button[data-version="1"]');
  await page.waitForFunction(() => /labels \(10\)/.test(document.getElementById('model-card').textContent), {timeout: 20000});
  check(await page.$eval('#heads tr.active', (t) => t.dataset.version === '1'), 'roll back to head 1: ten labels again');
}

/* ---- main --------------------------------------------------------------------------------- */

/* desktop: model card, keyboard, upload, classify vs the API, rollout, opacity, an API error,
 * paste and drop, then the Teach flow */
async function desktop(browser, problems, d, tmp) {
  const page = await newPage(browser, problems, {width: 1280, height: 900, deviceScaleFactor: 1});
  await openPage(page, d.base);
  const card = await page.$eval('#model-card', (e) => e.textContent);
  check(/ViT/i.test(card) && /labels \(10\)/.test(card) && /Sneaker/.test(card) && /precision/.test(card) &&
    /resize to 224×224/.test(card) && /head version1/.test(card), 'model card: architecture, preprocessing, labels, head version', card);

  // keyboard: the drop zone takes focus and Enter opens the file chooser
  await page.bringToFront();
  await page.focus('#drop');
  const waiting = page.waitForFileChooser({timeout: 10000});
  await new Promise((r) => setTimeout(r, 300));      /* the chooser interception is set up */
  await page.keyboard.press('Enter');
  const chooser = await waiting;
  check(chooser && chooser.isMultiple(), 'keyboard: Enter on the drop zone opens a multi-file chooser');
  await chooser.accept([path.join(DATA, 'sneaker.png')]);
  await page.waitForFunction(() => document.querySelector('.result[data-state]'), {timeout: 30000});
  await uploadAndWait(page, [path.join(DATA, 'coat.png'), path.join(DATA, 'bag.png')]);
  for (const f of ['sneaker.png', 'coat.png', 'bag.png']) await checkClassify(page, d.base, path.join(DATA, f), 'cls');

  await page.click('input[name=attn][value=rollout]');
  await page.waitForFunction(() => [...document.querySelectorAll('canvas.heat')].length === 3 &&
    [...document.querySelectorAll('canvas.heat')].every((c) => c.dataset.mode === 'rollout') &&
    !document.querySelector('.result[aria-busy=true]'), {timeout: 30000});
  await checkClassify(page, d.base, path.join(DATA, 'sneaker.png'), 'rollout');

  await page.$eval('#opacity', (e) => { e.value = '25'; e.dispatchEvent(new Event('input')); });
  const op = await page.$$eval('canvas.heat', (a) => a.map((c) => c.style.opacity));
  check(op.length === 3 && op.every((o) => o === '0.25'), 'opacity slider sets every heat map to 0.25', op);
  await page.$eval('#opacity', (e) => { e.value = '60'; e.dispatchEvent(new Event('input')); });

  // an image the API rejects: its error as the API returns it
  const bad = path.join(tmp, 'broken.png');
  fs.writeFileSync(bad, fs.readFileSync(path.join(DATA, 'coat.png')).subarray(0, 60));
  await uploadAndWait(page, [bad]);
  const br = await readResult(page, 'broken.png');
  const bj = await classifyJson(d.base, bad, 'cls', 5);
  const be = bj.error || bj.results[0].error;
  check(br.state === 'error' && br.error.includes(be.code) && br.error.includes(be.message),
    'a truncated PNG shows the API error "' + be.code + ': ' + be.message + '"', br.error);

  await page.click('input[name=attn][value=cls]');
  await page.waitForFunction(() => [...document.querySelectorAll('canvas.heat')].every((c) => c.dataset.mode === 'cls') &&
    !document.querySelector('.result[aria-busy=true]'), {timeout: 30000});
  await pasteAndDrop(page, d.base);
  await teach(page, d.base);
  await page.close();
}

/* a pasted image (clipboard event) and a dropped one (drop event), as the browser delivers them */
async function pasteAndDrop(page, base) {
  const bytes = (f) => Array.from(fs.readFileSync(path.join(DATA, f)));
  for (const [how, f] of [['paste', 'trouser.png'], ['drop', 'dress.png']]) {
    const before = await page.$$eval('.result[data-state=done]', (a) => a.length);
    await page.evaluate((how, name, data) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(data)], name, {type: 'image/png'}));
      if (how === 'paste') document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));
      else document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }, how, f, bytes(f));
    await page.waitForFunction((n) => document.querySelectorAll('.result[data-state=done]').length > n &&
      !document.querySelector('.result[aria-busy=true]'), {timeout: 30000}, before);
    const got = await readResult(page, f);
    const api = await classifyJson(base, path.join(DATA, f), 'cls', 5);
    check(got && got.preds[0].label === api.results[0].predictions[0].label && got.preds[0].score === api.results[0].predictions[0].score,
      how + 'd image ' + f + ' classified: ' + (got && got.preds[0].label), got && got.preds);
  }
  // a dropped file that is no image goes to the API too, and its answer is shown
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['just some text'], 'notes.txt', {type: 'text/plain'}));
    document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
  });
  await page.waitForFunction(() => [...document.querySelectorAll('.result[data-state=error]')]
    .some((c) => c.querySelector('h3').textContent === 'notes.txt'), {timeout: 30000});
  const txt = await readResult(page, 'notes.txt');
  const fd = new FormData();
  fd.append('image', new Blob(['just some text']), 'notes.txt');
  const api = await (await fetch(base + '/classify?attention=cls&top_k=5', {method: 'POST', body: fd})).json();
  const e = api.error || api.results[0].error;
  check(txt.error.includes(e.code) && txt.error.includes(e.message), 'a dropped text file shows the API error "' + e.code + '"', txt.error);
}

/* phone-sized viewport: no horizontal scrolling, heat map inside the screen */
async function phone(browser, problems, d) {
  const page = await newPage(browser, problems, {width: 390, height: 844, deviceScaleFactor: 2, isMobile: true, hasTouch: true});
  await openPage(page, d.base);
  await uploadAndWait(page, [path.join(DATA, 'ankle_boot.png')]);
  const ph = await readResult(page, 'ankle_boot.png');
  const widths = await page.evaluate(() => ({scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
    body: document.body.scrollWidth, inner: window.innerWidth}));
  check(widths.scroll <= widths.client && widths.body <= widths.inner, 'phone viewport 390px: no horizontal scrolling', widths);
  check(ph.state === 'done' && ph.canvas && ph.canvas.x >= 0 && ph.canvas.x + ph.canvas.w <= 390 && ph.px.w === Math.round(ph.canvas.w * 2),
    'phone: heat map inside the screen, drawn at device pixel ratio 2', {canvas: ph.canvas, px: ph.px && ph.px.w});
  if (SHOTS) {
    await page.evaluate(() => document.querySelector('.result').scrollIntoView());
    await page.screenshot({path: path.join(ROOT, SHOTS, 'ui-phone.png'), fullPage: false});
  }
  await page.close();
}

/* a model that center-crops: the heat map is exactly over the crop */
async function cropping(browser, problems) {
  const t = await startVitd(path.join(ROOT, 'tests', 'fixtures', 'models', 'tiny-timm'), []);
  const page = await newPage(browser, problems, {width: 1000, height: 800, deviceScaleFactor: 1});
  await openPage(page, t.base);
  const rocket = path.join(DATA, 'images', 'jpeg_rocket.jpg');
  await uploadAndWait(page, [rocket]);
  const rr = await readResult(page, 'jpeg_rocket.jpg');
  const [w, h] = rr.natural, s = 36 / Math.min(w, h), k = rr.img.w / w;     // shortest edge 36, crop 32
  const want = {x: rr.img.x + (w * s - 32) / 2 / s * k, y: rr.img.y + (h * s - 32) / 2 / s * k, w: 32 / s * k, h: 32 / s * k};
  check(rr.state === 'done' && rr.canvas && near(rr.canvas.x, want.x, 1) && near(rr.canvas.y, want.y, 1) && near(rr.canvas.w, want.w, 1) &&
    near(rr.canvas.h, want.h, 1), 'center-cropping model: heat map exactly over the crop of a 640x427 image', {want, got: rr.canvas});
  check(rr.crop && near(rr.crop.x, want.x, 1) && near(rr.crop.w, want.w, 1), 'center-cropping model: the crop region is outlined', rr.crop);
  const tj = await classifyJson(t.base, rocket, 'cls', 5);
  const hot = cellPixel(rr.px, tj.results[0].attention.grid, argmax(tj.results[0].attention.values));
  check(hot[0] > 150, 'center-cropping model: hottest pixel at the max-attention patch', hot);
  await page.close();
}

/* the camera, in a browser whose camera is Chromium's fake device (a generated video) */
async function camera(d) {
  const browser = await puppeteer.launch({executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']});
  const problems = [];
  try {
    const page = await newPage(browser, problems, {width: 1000, height: 800, deviceScaleFactor: 1});
    await openPage(page, d.base);
    await page.click('#camera-open');
    await page.waitForFunction(() => !document.getElementById('camera').hidden &&
      document.getElementById('camera-video').videoWidth > 0, {timeout: 15000});
    await page.click('#camera-snap');
    await page.waitForFunction(() => document.querySelector('.result[data-state=done]'), {timeout: 30000});
    const got = await readResult(page, 'camera.jpg');
    check(got && got.state === 'done' && got.preds.length === 5 && got.canvas && got.canvas.w > 0,
      'camera (fake device): a photo is taken, classified and its heat map drawn', got && got.preds);
    await page.click('#camera-close');
    const live = await page.evaluate(() => document.getElementById('camera').hidden);
    check(live, 'camera closes');
  } finally {
    await browser.close();
  }
  check(problems.length === 0, 'camera: no console errors', problems);
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vitd_ui_'));
  fs.writeFileSync(path.join(tmp, 'token'), TOKEN + '\n');
  const d = await startVitd(path.join(ROOT, 'models', 'fashion-vit'),
    ['--admin-token-file', path.join(tmp, 'token'), '--state-dir', path.join(tmp, 'state'), '--max-batch', '16']);
  await checkHeaders(d.base);

  const browser = await puppeteer.launch({executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox']});   /* root needs it */
  const problems = [];
  try {
    await desktop(browser, problems, d, tmp);
    await phone(browser, problems, d);
    await cropping(browser, problems);
  } finally {
    await browser.close();
  }
  check(problems.length === 0, 'no console errors, page errors, failed requests or CSP violations', problems);
  await camera(d);

  const off = await startVitd(path.join(ROOT, 'tests', 'fixtures', 'models', 'tiny-hf'), ['--ui', 'off']);
  const r = await fetch(off.base + '/');
  const j = await r.json();
  const ra = await fetch(off.base + '/ui/app.js');
  check(r.status === 404 && j.error.code === 'not_found' && ra.status === 404, '--ui off: / and /ui/app.js are 404', r.status);
  fs.rmSync(tmp, {recursive: true, force: true});
}

main().catch((e) => { failed++; console.log('FAIL unexpected error: ' + (e && e.stack || e)); })
  .finally(() => {
    stopAll();
    console.log(passed + ' passed, ' + failed + ' failed');
    process.exit(failed ? 1 : 0);
  });
