// tvdb-webhookd's dashboard (GET /) and a document's timeline (GET
// /documents/{id}): one page, drawn from the JSON endpoints.  Every value
// from the database reaches the page as text (textContent), never as HTML.
'use strict';

const REFRESH_MS = 5000;
const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

// The token: from the URL's fragment (never sent to a server), kept in this
// tab's sessionStorage, and taken out of the address bar.
function token() {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    sessionStorage.setItem('tvdb-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem('tvdb-token');
}

function showError(text) {
  $('error').textContent = text;
  $('error').hidden = !text;
}

async function api(path) {
  const res = await fetch(path, { headers: { Authorization: 'Bearer ' + token() }, cache: 'no-store' });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401 || res.status === 403) {
    sessionStorage.removeItem('tvdb-token');
    showLogin();
  }
  if (!res.ok) throw new Error(`${path}: ${res.status} ${body.detail || body.result || ''}`);
  return body;
}

// ---- small builders ------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ''));
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fill(tableId, rows) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(...rows);
  return rows.length;
}

function cell(value, cls) {
  return el('td', cls ? { class: cls } : {}, value);
}

function badge(text) {
  return el('span', { class: 'badge ' + String(text) }, text);
}

function statusClass(status) {
  if (status === 'complete') return 'complete';
  if (String(status).startsWith('failed')) return 'failed';
  return 'working';
}

function num(x, digits) {
  return x === null || x === undefined ? '–' : Number(x).toFixed(digits);
}

// Two significant digits below a hundredth of a cent: an embedding request
// costs millionths of a dollar, which four decimals would show as nothing.
function usd(x) {
  const v = Number(x || 0);
  if (v !== 0 && Math.abs(v) < 0.0001) return '$' + v.toFixed(Math.min(12, 1 - Math.floor(Math.log10(Math.abs(v)))));
  return '$' + v.toFixed(4);
}

function when(ts) {
  return ts ? new Date(ts).toISOString().replace('T', ' ').slice(0, 19) : '–';
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  const s = Math.round(seconds);
  if (s < 120) return s + ' s';
  if (s < 7200) return Math.round(s / 60) + ' min';
  return Math.round(s / 3600) + ' h';
}

function docLink(d, text) {
  return el('a', { href: '/documents/' + encodeURIComponent(d.document_id), 'data-document': d.document_id }, text);
}

// ---- charts ----------------------------------------------------------------

// One horizontal bar per status, in pipeline order.
function drawStatuses(statuses) {
  const chart = $('status-chart');
  const rowH = 22, labelW = 150, numW = 60, width = chart.clientWidth || 480;
  const max = Math.max(1, ...statuses.map((s) => s.jobs));
  chart.setAttribute('height', statuses.length * rowH + 4);
  chart.replaceChildren(...statuses.map((s, i) => {
    const y = i * rowH + 2;
    const w = Math.max(s.jobs > 0 ? 2 : 0, (width - labelW - numW) * s.jobs / max);
    const g = svg('g', { 'data-status': s.status, 'data-jobs': s.jobs });
    g.append(svg('text', { x: 0, y: y + 14 }, s.status));
    g.append(svg('rect', { x: labelW, y: y + 3, width: w, height: rowH - 8, rx: 2,
                           fill: s.failure ? '#c62828' : s.terminal ? '#1a7f37' : '#2f6fdb' }));
    g.append(svg('text', { x: labelW + w + 6, y: y + 14, class: 'count' }, s.jobs));
    return g;
  }));
}

// Columns per minute: completed up, failed in red on top.
function drawThroughput(minutes) {
  const chart = $('throughput-chart');
  const width = chart.clientWidth || 480, height = 170, axis = 18, top = 14;
  const max = Math.max(1, ...minutes.map((m) => m.completed + m.failed));
  const bw = (width - 40) / Math.max(1, minutes.length);
  const parts = [svg('text', { x: 0, y: 10 }, max + '/min'),
                 svg('line', { x1: 36, x2: width, y1: height - axis, y2: height - axis, stroke: '#d0d7de' })];
  minutes.forEach((m, i) => {
    const x = 38 + i * bw;
    const hc = (height - axis - top) * m.completed / max;
    const hf = (height - axis - top) * m.failed / max;
    const g = svg('g', { 'data-minute': m.minute, 'data-completed': m.completed, 'data-failed': m.failed });
    g.append(svg('rect', { x, y: height - axis - hc, width: Math.max(1, bw - 1), height: hc, fill: '#1a7f37' }));
    g.append(svg('rect', { x, y: height - axis - hc - hf, width: Math.max(1, bw - 1), height: hf, fill: '#c62828' }));
    parts.push(g);
    if (i % 15 === 0) parts.push(svg('text', { x, y: height - 4 }, when(m.minute).slice(11, 16)));
  });
  chart.replaceChildren(...parts);
}

function meter(part, whole, limit = true) {
  const pct = whole > 0 ? Math.min(100, 100 * part / whole) : 0;
  const bar = el('div', { style: `width:${pct.toFixed(1)}%` });
  if (limit && whole > 0 && part >= whole) bar.className = 'over';
  return el('div', { class: 'meter', title: pct.toFixed(0) + ' %' }, bar);
}

// ---- the dashboard -----------------------------------------------------------

function renderHeader(s) {
  $('health').textContent = s.health.status;
  $('health').className = 'badge ' + s.health.status;
  $('health-reason').textContent = s.health.reason;
  $('checked-at').textContent = when(s.checked_at);
}

function render(s) {
  renderHeader(s);
  $('backlog-jobs').textContent = s.backlog.jobs;
  $('backlog-oldest').textContent = age(s.backlog.oldest_age_seconds);
  $('hour-completed').textContent = s.throughput.reduce((n, m) => n + m.completed, 0);
  $('hour-failed').textContent = s.throughput.reduce((n, m) => n + m.failed, 0);
  $('cost-today').textContent = usd(s.costs.today_usd);
  $('cost-month').textContent = usd(s.costs.month_usd);
  $('workers').textContent = `${s.health.workers} / ${s.health.workers_expected}`;
  $('last-pass').textContent = when(s.health.last_pass);

  drawStatuses(s.statuses);
  drawThroughput(s.throughput);
  fill('latency', s.latency.filter((l) => l.count > 0).map((l) => el('tr', { 'data-stage': l.stage },
    cell(l.stage), cell(l.count, 'num'), cell(num(l.p50_seconds, 3), 'num'), cell(num(l.p95_seconds, 3), 'num'),
    el('td', {}, meter(l.p95_seconds || 0, Math.max(...s.latency.map((x) => x.p95_seconds || 0)), false)))));
  $('no-budgets').hidden = fill('budgets', s.costs.budgets.map((b) => el('tr', { 'data-budget': b.service + '/' + b.period },
    cell(`${b.service} per ${b.period}`), cell(usd(b.spent_usd), 'num'), cell(usd(b.reserved_usd), 'num'),
    cell(usd(b.limit_usd), 'num'), el('td', {}, meter(Number(b.spent_usd) + Number(b.reserved_usd), Number(b.limit_usd)))))) > 0;
  fill('circuits', s.circuits.map((c) => el('tr', { 'data-service': c.service },
    cell(c.service), el('td', {}, badge(c.state)), cell(when(c.since)), cell(c.last_error || ''))));
  $('no-alerts').hidden = fill('alerts', s.alerts.map((a) => el('tr', {},
    cell(when(a.last_at)), el('td', {}, badge(a.severity)), cell(a.kind), cell(a.count, 'num'), cell(a.message)))) > 0;
  fill('recent', s.recent.map((d) => el('tr', { 'data-job': d.job_id },
    el('td', {}, docLink(d, d.filename)), el('td', {}, badge(d.status)), cell(when(d.created_at)),
    cell(when(d.status_changed_at)), el('td', {}, el('code', {}, d.correlation_id)), cell(d.last_error || ''))));
  document.querySelectorAll('#recent .badge').forEach((b) => { b.className = 'badge ' + statusClass(b.textContent); });
  document.body.dataset.loaded = 'dashboard';
}

async function refresh() {
  try {
    render(await api('/api/v1/status'));
    showError('');
  } catch (e) {
    showError(e.message);
  }
}

async function search(ev) {
  if (ev) ev.preventDefault();
  const q = $('search').value.trim();
  if (!q) return;
  try {
    const r = await api('/api/v1/documents?q=' + encodeURIComponent(q));
    $('found').hidden = false;
    $('found').dataset.term = q;
    fill('found', r.documents.length ? r.documents.map((d) => el('tr', {},
      el('td', {}, docLink(d, d.filename)), el('td', {}, badge(d.status)), cell(when(d.created_at)),
      el('td', {}, el('code', {}, d.correlation_id))))
      : [el('tr', {}, el('td', { colspan: 4, class: 'mute' }, 'nothing found'))]);
    showError('');
  } catch (e) {
    showError(e.message);
  }
}

// ---- one document --------------------------------------------------------------

async function showDocument(id) {
  try {
    const [r, s] = await Promise.all([api('/api/v1/documents/' + encodeURIComponent(id)), api('/api/v1/status')]);
    const d = r.document;
    renderHeader(s);
    $('doc-title').textContent = d.filename;
    document.title = d.filename + ' — tvdb';
    $('doc-status').replaceChildren(badge(d.status || 'no job'));
    $('doc-status').firstChild.className = 'badge ' + statusClass(d.status);
    $('doc-error').textContent = d.last_error || '';
    $('doc-cost').textContent = usd(d.cost_usd);
    $('doc-id').textContent = d.document_id;
    $('doc-job').textContent = d.job_id || '–';
    $('doc-correlation').textContent = d.correlation_id || '–';
    const events = r.timeline.filter((t) => t.kind !== 'chunk');
    fill('timeline', events.map((t) => el('tr', { 'data-kind': t.kind },
      cell(when(t.at)), cell(t.kind), cell(t.what), cell(num(t.seconds, 3), 'num'), cell(t.http_status ?? '', 'num'),
      cell(t.latency_ms === null ? '' : num(t.latency_ms, 1), 'num'), cell(t.cost_usd === null ? '' : usd(t.cost_usd), 'num'),
      cell(t.detail || ''))));
    fill('chunks', r.timeline.filter((t) => t.kind === 'chunk').map((t) => el('tr', { 'data-chunk': t.what },
      cell(t.what, 'num'), cell(t.detail))));
    document.body.dataset.loaded = 'document';
    showError('');
  } catch (e) {
    showError(e.message);
  }
}

// ---- start ---------------------------------------------------------------------

let timer = null;

function showLogin() {
  clearInterval(timer);
  $('login').hidden = false;
  $('dashboard').hidden = true;
  $('document').hidden = true;
}

function start() {
  if (!token()) {
    showLogin();
    return;
  }
  $('login').hidden = true;
  const m = location.pathname.match(/^\/documents\/([^/]+)$/);
  if (m) {
    $('document').hidden = false;
    showDocument(decodeURIComponent(m[1]));
  } else {
    $('dashboard').hidden = false;
    refresh();
    timer = setInterval(refresh, REFRESH_MS);
    // /?q=term: a search to link to
    const q = new URLSearchParams(location.search).get('q');
    if (q) {
      $('search').value = q;
      search();
    }
  }
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem('tvdb-token', $('token').value.trim());
  start();
});
$('search-form').addEventListener('submit', search);
start();
