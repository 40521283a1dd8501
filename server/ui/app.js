/* app.js: the behaviour of vitd's web page (index.html).  Talks only to its own origin:
 *   POST /classify?attention=cls|rollout&top_k=K   one request per image; top-k bars, the attention
 *        grid drawn as a heat map over the region of the image the model saw (the center crop
 *        when the preprocessing crops), timing, or the API's error as it came
 *   GET  /v1/models                                the model card (preprocessing drives the crop)
 *   GET  /metrics                                  the active head version when no token is given
 *   /admin/...                                     the Teach panel, with the token typed in (kept
 *        in a variable of this script only: never stored, never put in a URL)
 * No external assets, no inline script (the page's Content-Security-Policy forbids both). */
'use strict';

const MAX_IMAGES = 16;           /* images taken from one drop / paste / choice */
const JOB_POLL_MS = 250;

const state = {
  model: null,                   /* /v1/models' first entry */
  token: '',                     /* the admin token: memory only */
  items: [],                     /* {name, blob, url, el, result} */
  headVersion: null,
  job: null,                     /* id of the job being watched */
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

/* ---- HTTP -------------------------------------------------------------------------------- */

/* fetch + JSON; resolves {status, body, ms}; a network failure becomes an error body too */
async function api(method, path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (opts.auth) headers.Authorization = 'Bearer ' + state.token;
  const t0 = performance.now();
  let r;
  try {
    r = await fetch(path, {method, headers, body: opts.body, cache: 'no-store'});
  } catch (e) {
    return {status: 0, body: {error: {code: 'network', message: String(e.message || e)}}, ms: performance.now() - t0};
  }
  let body;
  const text = await r.text();
  try { body = text ? JSON.parse(text) : {}; } catch (e) { body = {_text: text}; }
  return {status: r.status, body, ms: performance.now() - t0};
}

function errorBox(status, body) {
  const e = (body && body.error) || {code: 'http_' + status, message: (body && body._text) || 'no error body'};
  const box = el('div', {class: 'error', role: 'alert'});
  box.append(el('code', {text: e.code}), ': ' + e.message + (status ? ' (HTTP ' + status + ')' : ''));
  box.dataset.code = e.code;
  box.dataset.status = String(status);
  return box;
}

/* ---- model card ---------------------------------------------------------------------------- */

function cardRow(dl, name, value) {
  dl.append(el('dt', {text: name}), el('dd', {text: value, 'data-field': name}));
}

function describePreprocessing(pp) {
  if (!pp) return '';
  const parts = [];
  if (pp.do_resize) parts.push(pp.shortest_edge ? 'resize shortest edge to ' + pp.shortest_edge
    : 'resize to ' + pp.resize[1] + '×' + pp.resize[0]) ;
  if (pp.do_resize && pp.resample) parts[parts.length - 1] += ' (' + pp.resample + ')';
  if (pp.do_center_crop) parts.push('center crop ' + pp.crop[1] + '×' + pp.crop[0]);
  parts.push('mean ' + pp.mean.map((v) => v.toFixed(3)).join('/') + ', std ' + pp.std.map((v) => v.toFixed(3)).join('/'));
  return parts.join('; ');
}

async function loadModel() {
  const r = await api('GET', '/v1/models');
  const err = $('card-error');
  if (r.status !== 200 || !r.body.models || !r.body.models.length) {
    err.replaceChildren(errorBox(r.status, r.body));
    err.hidden = false;
    $('ready').textContent = r.status === 503 ? 'loading…' : 'unavailable';
    $('ready').className = 'pill bad';
    if (r.status === 503 || r.status === 0) setTimeout(loadModel, 1000);
    return;
  }
  err.hidden = true;
  state.model = r.body.models[0];
  await loadHeadVersion();
  renderCard();
  $('ready').textContent = 'ready';
  $('ready').className = 'pill ok';
}

/* The active head version: /admin/heads with a token, else the public /metrics gauge that the
 * admin API exports; without the admin API the checkpoint's head is the only one. */
async function loadHeadVersion() {
  if (state.token) {
    const r = await api('GET', '/admin/heads', {auth: true});
    if (r.status === 200) { state.headVersion = r.body.active; return; }
  }
  try {
    const r = await fetch('/metrics', {cache: 'no-store'});
    const m = /^vitd_admin_active_head_version(?:\{[^}]*\})? ([0-9.]+)$/m.exec(await r.text());
    state.headVersion = m ? Number(m[1]) : null;
  } catch (e) {
    state.headVersion = null;
  }
}

function renderCard() {
  const m = state.model;
  const dl = $('model-card');
  dl.replaceChildren();
  $('model-name').textContent = m.id;
  cardRow(dl, 'model', m.id);
  cardRow(dl, 'architecture', m.architecture + ' (' + m.num_layers + ' layers, ' + m.num_heads + ' heads, hidden ' +
    m.hidden_size + ', patch ' + m.patch_size + ', ' + (m.num_params / 1e6).toFixed(1) + 'M parameters)');
  cardRow(dl, 'input', m.image_size + '×' + m.image_size + ', attention grid ' + m.attention_grid.join('×'));
  cardRow(dl, 'preprocessing', describePreprocessing(m.preprocessing));
  cardRow(dl, 'device', m.device + (m.gpu ? ' (' + m.gpu.name + ')' : ''));
  cardRow(dl, 'precision', m.precision + ', batches of up to ' + m.max_batch + ' (' + m.input + ' input)');
  cardRow(dl, 'head version', state.headVersion == null ? '1 (the checkpoint’s; admin API off)'
    : String(state.headVersion) + (state.headVersion === 1 ? ' (the checkpoint’s)' : ''));
  cardRow(dl, 'labels (' + m.num_classes + ')', (m.labels || []).join(', '));
  $('topk').max = String(Math.max(1, Math.min(100, m.num_classes || 100)));
}

/* ---- images in --------------------------------------------------------------------------- */

/* every file goes to the API as it is (the daemon bounds sizes and rejects what is not an image,
 * and the page shows that answer); at most MAX_IMAGES from one drop, paste or choice */
function addFiles(files) {
  for (const f of Array.from(files).slice(0, MAX_IMAGES)) {
    const item = {name: f.name || 'pasted image', blob: f, url: URL.createObjectURL(f), el: null, result: null};
    state.items.push(item);
    classify(item);
  }
  $('rerun').disabled = $('clear').disabled = state.items.length === 0;
}

function attnMode() {
  return document.querySelector('input[name=attn]:checked').value;
}

async function classify(item) {
  if (!item.el) {
    item.el = el('article', {class: 'result', 'aria-busy': 'true'}, el('h3', {text: item.name}));
    $('results').prepend(item.el);
  }
  item.el.setAttribute('aria-busy', 'true');
  const fd = new FormData();
  fd.append('image', item.blob, item.name);
  const k = Math.max(1, Math.min(100, parseInt($('topk').value, 10) || 5));
  const r = await api('POST', '/classify?attention=' + attnMode() + '&top_k=' + k, {body: fd});
  item.result = r;
  renderResult(item);
}

/* ---- results out ------------------------------------------------------------------------- */

/* The region of the w×h image that the model saw, in the image's pixels: all of it, or the center
 * crop taken after the resize (the resize is undone to map the crop back). */
function cropRect(w, h, pp) {
  if (!pp || !pp.do_center_crop) return {x: 0, y: 0, w, h};
  let rw = w, rh = h;
  if (pp.do_resize && pp.shortest_edge) {
    const s = pp.shortest_edge / Math.min(w, h);
    rw = w * s; rh = h * s;
  } else if (pp.do_resize && pp.resize) {
    rh = pp.resize[0]; rw = pp.resize[1];
  }
  const cw = Math.min(pp.crop[1], rw), ch = Math.min(pp.crop[0], rh);
  const sx = w / rw, sy = h / rh;
  return {x: (rw - cw) / 2 * sx, y: (rh - ch) / 2 * sy, w: cw * sx, h: ch * sy};
}

/* a perceptual blue → green → yellow → red ramp; v in [0, 1] */
function heatColor(v) {
  const stops = [[0, 0, 48, 160], [0.35, 0, 170, 170], [0.6, 80, 200, 60], [0.8, 250, 200, 20], [1, 230, 30, 20]];
  for (let i = 1; i < stops.length; i++) {
    if (v <= stops[i][0]) {
      const a = stops[i - 1], b = stops[i], t = (v - a[0]) / (b[0] - a[0] || 1);
      return [0, 1, 2].map((c) => Math.round(a[c + 1] + (b[c + 1] - a[c + 1]) * t));
    }
  }
  return stops[stops.length - 1].slice(1);
}

/* Draw the attention grid into canvas c over the crop: the grid as gw×gh pixels (min-max scaled,
 * weak attention more transparent), upsampled smoothly to the canvas's size. */
function drawHeat(c, attn, cssW, cssH) {
  const [gh, gw] = attn.grid, vals = attn.values;
  const dpr = window.devicePixelRatio || 1;
  c.width = Math.max(1, Math.round(cssW * dpr));
  c.height = Math.max(1, Math.round(cssH * dpr));
  c.style.width = cssW + 'px';
  c.style.height = cssH + 'px';
  let lo = Infinity, hi = -Infinity;
  for (const v of vals) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const small = document.createElement('canvas');
  small.width = gw; small.height = gh;
  const sctx = small.getContext('2d');
  const img = sctx.createImageData(gw, gh);
  for (let i = 0; i < gw * gh; i++) {
    const v = hi > lo ? (vals[i] - lo) / (hi - lo) : 0;
    const [r, g, b] = heatColor(v);
    img.data.set([r, g, b, Math.round(255 * (0.3 + 0.7 * v))], i * 4);
  }
  sctx.putImageData(img, 0, 0);
  const ctx = c.getContext('2d');
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(small, 0, 0, c.width, c.height);
}

/* place the crop outline and the heat map over the displayed image; runs again on resize */
function layoutOverlay(item) {
  const stage = item.stage;
  if (!stage) return;
  const img = stage.querySelector('img');
  if (!img.naturalWidth || !img.clientWidth) return;
  const k = img.clientWidth / img.naturalWidth;
  const cr = cropRect(img.naturalWidth, img.naturalHeight, state.model && state.model.preprocessing);
  const box = {left: cr.x * k, top: cr.y * k, width: cr.w * k, height: cr.h * k};
  for (const e of stage.querySelectorAll('.heat, .crop')) {
    e.style.left = box.left + 'px';
    e.style.top = box.top + 'px';
    if (e.classList.contains('crop')) { e.style.width = box.width + 'px'; e.style.height = box.height + 'px'; }
  }
  const c = stage.querySelector('canvas.heat');
  const res = item.result && item.result.body.results && item.result.body.results[0];
  if (c && res && res.attention) drawHeat(c, res.attention, box.width, box.height);
  setOpacity();
}

function renderPredictions(res) {
  const ol = el('ol', {class: 'preds', 'aria-label': 'top predictions'});
  for (const p of res.predictions) {
    const pct = Math.max(0, Math.min(1, p.score)) * 100;
    const fill = el('div', {class: 'fill'});
    fill.style.width = pct.toFixed(2) + '%';
    const li = el('li', {class: 'pred', 'data-label': p.label, 'data-score': String(p.score)},
      el('span', {class: 'label', text: p.label}),
      el('span', {class: 'score', text: (p.score * 100).toFixed(2) + '%'}),
      el('div', {class: 'track', role: 'presentation'}, fill));
    ol.append(li);
  }
  return ol;
}

function renderResult(item) {
  const r = item.result, out = item.el;
  out.replaceChildren(el('h3', {text: item.name}));
  const res = r.body && r.body.results && r.body.results[0];
  const ok = !!(res && res.predictions);
  const img = el('img', {src: item.url, alt: item.name});
  const stage = el('div', {class: 'stage'}, img);
  item.stage = stage;
  if (ok) {
    const pp = state.model && state.model.preprocessing;
    if (pp && pp.do_center_crop) stage.append(el('div', {class: 'crop', title: 'the center crop the model saw'}));
    if (res.attention) stage.append(el('canvas', {class: 'heat', 'aria-hidden': 'true', 'data-mode': attnMode()}));
    out.append(stage, renderPredictions(res));
    const t = r.body.timing || {};
    out.append(el('p', {class: 'timing', text: 'decode ' + t.decode_ms + ' ms · queue ' + t.queue_ms + ' ms · inference ' +
      t.infer_ms + ' ms · server total ' + t.total_ms + ' ms · round trip ' + r.ms.toFixed(1) + ' ms'}));
  } else {
    out.append(errorBox(r.status, res && res.error ? {error: res.error} : r.body));
  }
  /* the card counts as shown once its image is laid out and the heat map drawn over it */
  const finish = () => {
    if (img.naturalWidth && img.naturalWidth < 128) img.classList.add('pixelated');
    layoutOverlay(item);
    out.dataset.state = ok ? 'done' : 'error';
    out.setAttribute('aria-busy', 'false');
  };
  img.addEventListener('load', finish, {once: true});
  img.addEventListener('error', finish, {once: true});
}

function setOpacity() {
  const a = Number($('opacity').value) / 100;
  for (const c of document.querySelectorAll('canvas.heat')) c.style.opacity = String(a);
}

/* ---- camera ------------------------------------------------------------------------------ */

let cameraStream = null;

async function openCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    $('camera-file').click();      /* phones: the file picker offers the camera */
    return;
  }
  try {
    cameraStream = await navigator.mediaDevices.getUserMedia({video: {facingMode: 'environment'}, audio: false});
  } catch (e) {
    $('camera-file').click();
    return;
  }
  $('camera-video').srcObject = cameraStream;
  $('camera').hidden = false;
  $('camera-snap').focus();
}

function closeCamera() {
  if (cameraStream) for (const t of cameraStream.getTracks()) t.stop();
  cameraStream = null;
  $('camera').hidden = true;
}

function snapCamera() {
  const v = $('camera-video');
  if (!v.videoWidth) return;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  c.getContext('2d').drawImage(v, 0, 0);
  c.toBlob((b) => { if (b) addFiles([new File([b], 'camera.jpg', {type: 'image/jpeg'})]); }, 'image/jpeg', 0.92);
}

/* ---- Teach panel ------------------------------------------------------------------------- */

function teachError(r) {
  const box = $('teach-error');
  if (!r) { box.hidden = true; box.replaceChildren(); return; }
  box.replaceChildren(errorBox(r.status, r.body));
  box.hidden = false;
}

async function unlock(ev) {
  ev.preventDefault();
  state.token = $('token').value.trim();
  const r = await api('GET', '/admin/heads', {auth: true});
  if (r.status !== 200) {
    state.token = '';
    $('teach-panel').hidden = true;
    teachError(r);
    return;
  }
  teachError(null);
  $('token').value = '';
  $('token').placeholder = 'token set';
  $('token-forget').hidden = false;
  $('teach-panel').hidden = false;
  renderHeads(r.body);
  await refreshExamples();
}

function forgetToken() {
  state.token = '';
  $('teach-panel').hidden = true;
  $('token-forget').hidden = true;
  $('token').placeholder = '';
  teachError(null);
}

async function refreshExamples() {
  const r = await api('GET', '/admin/examples', {auth: true});
  if (r.status !== 200) { teachError(r); return; }
  const c = Object.entries(r.body.counts || {});
  $('ex-counts').textContent = c.length ? 'Stored examples: ' + c.map(([k, v]) => k + ' ' + v).join(', ') +
    ' (' + r.body.total + ' of ' + r.body.max + ')' : 'No examples stored yet.';
}

async function addExamples(ev) {
  ev.preventDefault();
  const label = $('ex-label').value.trim(), files = Array.from($('ex-files').files || []);
  if (!label || !files.length) {
    teachError({status: 0, body: {error: {code: 'bad_request', message: 'give a label and choose images'}}});
    return;
  }
  const fd = new FormData();
  for (const f of files.slice(0, 64)) fd.append('image', f, f.name);
  $('ex-add').disabled = true;
  const r = await api('POST', '/admin/examples?label=' + encodeURIComponent(label), {auth: true, body: fd});
  $('ex-add').disabled = false;
  if (r.status !== 200) { teachError(r); return; }
  teachError(r.body.errors && r.body.errors.length
    ? {status: 200, body: {error: {code: r.body.errors[0].error.code, message: r.body.errors.length +
      ' image(s) not added: ' + r.body.errors[0].error.message}}} : null);
  $('ex-files').value = '';
  $('ex-chosen').textContent = 'added ' + r.body.added + ' to “' + label + '”';
  await refreshExamples();
}

async function clearExamples() {
  const r = await api('DELETE', '/admin/examples', {auth: true});
  if (r.status !== 200) { teachError(r); return; }
  teachError(null);
  await refreshExamples();
}

async function startTraining(ev) {
  ev.preventDefault();
  const body = JSON.stringify({epochs: parseInt($('epochs').value, 10) || 30, labels: $('labels-mode').value});
  const r = await api('POST', '/admin/train', {auth: true, body, headers: {'Content-Type': 'application/json'}});
  if (r.status !== 202 && r.status !== 200) { teachError(r); return; }
  teachError(null);
  state.job = r.body.job;
  $('job').hidden = false;
  $('train-start').disabled = true;
  pollJob();
}

function fmt(v, d) { return v == null ? '–' : Number(v).toFixed(d); }

async function pollJob() {
  const id = state.job;
  if (id == null || !state.token) return;
  const r = await api('GET', '/admin/jobs/' + id, {auth: true});
  if (r.status !== 200) { teachError(r); $('train-start').disabled = false; return; }
  const j = r.body;
  $('job-progress').max = j.epochs;
  $('job-progress').value = j.epoch;
  $('job').dataset.state = j.state;
  $('job-text').textContent = 'job ' + j.job + ': ' + j.state + ', epoch ' + j.epoch + '/' + j.epochs + ', loss ' +
    fmt(j.loss, 4) + ', validation accuracy ' + (j.val_accuracy == null ? '–' : (j.val_accuracy * 100).toFixed(1) + '%') +
    (j.head_version ? ', head version ' + j.head_version : '') + (j.error ? ' (' + j.error + ')' : '');
  if (j.state === 'queued' || j.state === 'running') { setTimeout(pollJob, JOB_POLL_MS); return; }
  $('train-start').disabled = false;
  state.job = null;
  await refreshHeads();
}

async function refreshHeads() {
  const r = await api('GET', '/admin/heads', {auth: true});
  if (r.status !== 200) { teachError(r); return; }
  renderHeads(r.body);
}

function renderHeads(h) {
  const tb = document.querySelector('#heads tbody');
  tb.replaceChildren();
  const heads = (h.heads || []).slice().sort((a, b) => b.version - a.version);
  for (const v of heads) {
    const acc = v.metrics && v.metrics.val_accuracy != null ? (v.metrics.val_accuracy * 100).toFixed(1) + '%' : '–';
    let action;
    if (v.active) action = el('strong', {text: 'active'});
    else {
      action = el('button', {type: 'button', 'data-version': String(v.version),
        text: v.version < h.active ? 'Roll back' : 'Activate', 'aria-label': (v.version < h.active ? 'Roll back to version ' :
          'Activate version ') + v.version});
      action.addEventListener('click', () => activate(v.version));
    }
    const tr = el('tr', {class: v.active ? 'active' : '', 'data-version': String(v.version)},
      el('td', {text: String(v.version)}), el('td', {text: v.job ? 'job ' + v.job : v.source}),
      el('td', {class: 'labels', text: v.labels.join(', ')}), el('td', {text: acc}), el('td', {}, action));
    tb.append(tr);
  }
  if (state.headVersion !== h.active) {
    state.headVersion = h.active;
    if (state.model) renderCard();
  }
}

async function activate(v) {
  const r = await api('POST', '/admin/heads/' + v + '/activate', {auth: true});
  if (r.status !== 200) { teachError(r); return; }
  teachError(null);
  await refreshHeads();
  await loadModel();                 /* the labels changed */
  rerunAll();
}

function rerunAll() {
  for (const it of state.items) classify(it);
}

/* ---- wiring ------------------------------------------------------------------------------ */

function wire() {
  const drop = $('drop');
  drop.addEventListener('click', () => $('file').click());
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); $('file').click(); }
  });
  for (const t of ['dragenter', 'dragover']) drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add('over'); });
  for (const t of ['dragleave', 'drop']) drop.addEventListener(t, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); addFiles(e.dataTransfer.files); });
  document.addEventListener('paste', (e) => {
    if (e.target && e.target.closest && e.target.closest('input, textarea')) return;
    const files = Array.from(e.clipboardData ? e.clipboardData.items : []).filter((i) => i.kind === 'file')
      .map((i) => i.getAsFile()).filter(Boolean);
    if (files.length) { e.preventDefault(); addFiles(files); }
  });
  $('file').addEventListener('change', (e) => { addFiles(e.target.files); e.target.value = ''; });
  $('camera-file').addEventListener('change', (e) => { addFiles(e.target.files); e.target.value = ''; });
  $('camera-open').addEventListener('click', openCamera);
  $('camera-close').addEventListener('click', closeCamera);
  $('camera-snap').addEventListener('click', snapCamera);
  $('rerun').addEventListener('click', rerunAll);
  $('clear').addEventListener('click', () => {
    for (const it of state.items) URL.revokeObjectURL(it.url);
    state.items = [];
    $('results').replaceChildren();
    $('rerun').disabled = $('clear').disabled = true;
  });
  for (const r of document.querySelectorAll('input[name=attn]')) r.addEventListener('change', rerunAll);
  $('opacity').addEventListener('input', setOpacity);
  $('token-form').addEventListener('submit', unlock);
  $('token-forget').addEventListener('click', forgetToken);
  $('examples-form').addEventListener('submit', addExamples);
  $('ex-files').addEventListener('change', (e) => {
    const n = e.target.files.length;
    $('ex-chosen').textContent = n ? n + ' image(s) chosen' : 'no images chosen';
  });
  $('ex-clear').addEventListener('click', clearExamples);
  $('train-form').addEventListener('submit', startTraining);
  let pending = 0;
  window.addEventListener('resize', () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => { for (const it of state.items) layoutOverlay(it); });
  });
}

wire();
loadModel();
