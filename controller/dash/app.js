/* The skiff dashboard: a small single-page app over /api/v1/. The login
 * form POSTs the admin token to /api/v1/login once and forgets it: the
 * controller answers with a session cookie (HttpOnly, SameSite=Strict: this
 * script never sees it) and a CSRF token, kept in sessionStorage and sent
 * as X-CSRF-Token with every action. Live updates come from the
 * /api/v1/events stream (read with fetch), and each event makes the page on
 * screen fetch what it shows again (at most every 2 s). */
'use strict';

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k != null) e.append(k.nodeType ? k : String(k));
  return e;
};

let csrf = sessionStorage.getItem('skiff-csrf') || ''; /* '' when logged out */
let events = [];          /* the last 500, newest last */
let stream = null;        /* AbortController of the events stream */
let refreshTimer = null, lastRefresh = 0;
const charts = {};        /* the service page's charts and samples */
let logTail = null;       /* { service, abort, pre } of the service page's live log tail */

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const opt = { method, headers: {}, credentials: 'same-origin' };
  if (method !== 'GET') opt.headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  const res = await fetch('/api/v1/' + path, opt);
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  if (res.status === 401) { loggedOut('logged out: ' + (json && json.error || res.status)); }
  if (!res.ok) throw new ApiError(res.status, json && json.error ? json.error : text || res.statusText);
  return json;
}

function toast(msg) {
  const t = $('#toast');
  t.textContent = msg;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 4000);
}

function confirmAction(text) {
  return new Promise((resolve) => {
    const d = $('#confirm');
    $('#confirm-text').textContent = text;
    d.returnValue = '';
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.showModal();
  });
}

async function act(text, method, path, body) {
  if (!(await confirmAction(text))) return;
  try {
    await api(method, path, body);
    toast('done: ' + text.replace(/\?$/, ''));
    refresh();
  } catch (e) {
    toast('refused: ' + e.message);
  }
}

/* ------------------------------------------------------------ login */

/* The session is over (refused, or logged out): back to the form. */
function loggedOut(why) {
  stopLogs();
  csrf = '';
  sessionStorage.removeItem('skiff-csrf');
  if (stream) stream.abort();
  stream = null;
  showLogin(why || '');
}

async function logout() {
  try {
    await fetch('/api/v1/logout', { method: 'POST', credentials: 'same-origin',
      headers: { 'X-CSRF-Token': csrf } });
  } catch (e) { /* the controller is gone: the cookie dies with its session */ }
  loggedOut('');
}

function showLogin(msg) {
  $('#nav').hidden = true;
  $('#view').replaceChildren();
  $('#login').hidden = false;
  $('#login-error').textContent = msg;
  $('#token').focus();
}

async function login(ev) {
  ev.preventDefault();
  const token = $('#token').value.trim();
  $('#login-error').textContent = '';
  try {
    const res = await fetch('/api/v1/login', { method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) });
    let json = null;
    try { json = await res.json(); } catch (e) { /* not JSON */ }
    if (res.status === 401) {
      $('#login-error').textContent = 'Wrong token: the controller refused it.';
      return;
    }
    if (!res.ok || !json || !json.csrf_token) {
      $('#login-error').textContent = 'Login failed: ' + (json && json.error || res.status);
      return;
    }
    csrf = json.csrf_token;
  } catch (e) {
    $('#login-error').textContent = 'The controller does not answer: ' + e.message;
    return;
  }
  sessionStorage.setItem('skiff-csrf', csrf);
  $('#token').value = '';
  start();
}

function start() {
  $('#login').hidden = true;
  $('#nav').hidden = false;
  followEvents();
  route();
}

/* ----------------------------------------------------------- events */

async function followEvents() {
  if (stream) return;
  stream = new AbortController();
  const since = events.length ? '' : '?since=15m';
  try {
    const res = await fetch('/api/v1/events' + since, { credentials: 'same-origin', signal: stream.signal });
    if (res.status === 401) { loggedOut('logged out: the session ended'); return; }
    if (!res.ok) throw new Error('status ' + res.status);
    $('#live').className = 'live on';
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        onMessage(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    }
  } catch (e) { /* aborted or cut */ }
  $('#live').className = 'live off';
  const again = stream && !stream.signal.aborted;
  stream = null;
  if (again && csrf) setTimeout(followEvents, 2000);
}

function onMessage(text) {
  let name = 'message', data = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('event: ')) name = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (name === 'event') {
    events.push(JSON.parse(data));
  } else if (name === 'dropped') {
    events.push({ marker: true, message: JSON.parse(data).count + ' events lost (read too slowly)' });
  } else {
    return;
  }
  if (events.length > 500) events.splice(0, events.length - 500);
  refresh();
}

/* The service page's live log tail: /services/{id}/logs?follow=1, kept to
 * the last 500 lines. */
function stopLogs() {
  if (logTail) logTail.abort.abort();
  logTail = null;
}

async function followLogs(service, pre) {
  stopLogs();
  const me = logTail = { service, abort: new AbortController(), pre };
  try {
    const res = await fetch(`/api/v1/services/${encodeURIComponent(service)}/logs?tail=50&follow=1`, {
      credentials: 'same-origin', signal: me.abort.signal });
    if (!res.ok) throw new Error('status ' + res.status);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const msg = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = msg.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('');
        if (!msg.startsWith('event: log') || !data) continue;
        const d = JSON.parse(data);
        const prefix = d.task_name.split('.').slice(0, 2).join('.') + ' | ';
        const lines = (d.data || '').split('\n').filter(Boolean).map((l) => prefix + l + '\n');
        me.pre.append(lines.join(''));
        while (me.pre.childNodes.length > 500) me.pre.firstChild.remove();
        me.pre.scrollTop = me.pre.scrollHeight;
      }
    }
  } catch (e) { /* aborted, or the service is gone */ }
}

/* At most one refresh of the page on screen every 2 s. */
function refresh() {
  if (refreshTimer) return;
  const wait = Math.max(0, 2000 - (Date.now() - lastRefresh));
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    lastRefresh = Date.now();
    route(true);
  }, wait);
}

function eventLine(e) {
  if (e.marker) return el('li', { class: 'marker' }, e.message);
  const t = (e.time || '').replace('T', ' ').replace(/\.\d+Z$/, '');
  return el('li', {}, `${t} ${e.type} ${e.action} ${e.name}` +
    (e.node ? ` node=${e.node}` : '') + (e.message ? ` — ${e.message}` : ''));
}

/* ---------------------------------------------------------- helpers */

function taskClass(t) {
  if (t.state === 'running' && t.health === 'unhealthy') return 'unhealthy';
  if (t.state === 'running' && t.health === 'starting') return 'starting';
  return t.state;
}

function gib(bytes) { return (bytes / 1073741824).toFixed(1) + ' GiB'; }

function replicasText(s) {
  const a = s.spec.autoscale;
  return `${s.running_tasks}/${s.desired_tasks}` + (a ? ` (auto ${a.min}-${a.max})` : '');
}

function updateProgress(s, tasks) {
  const st = s.update_status && s.update_status.state;
  if (!st || st === 'none' || st === 'unspecified') return el('span', {}, '');
  if (st.endsWith('completed')) return el('span', {}, st.replace('_', ' '));
  const mine = tasks.filter((t) => t.service_id === s.id && t.desired_state === 'running');
  const done = mine.filter((t) => t.spec_version === s.version && t.state === 'running').length;
  const pct = s.spec.replicas ? Math.round(100 * done / s.spec.replicas) : 100;
  const bar = el('div', {});
  bar.style.width = pct + '%';
  return el('div', { class: 'update' }, `${st} ${done}/${s.spec.replicas}`,
    el('div', { class: 'progress', title: s.update_status.message }, bar));
}

/* ------------------------------------------------------------ pages */

async function pageCluster(view) {
  const [nodes, tasks, services] = await Promise.all([api('GET', 'nodes'), api('GET', 'tasks'), api('GET', 'services')]);
  const names = Object.fromEntries(services.map((s) => [s.id, s.spec.name]));
  const cols = nodes.map((n) => {
    const mine = tasks.filter((t) => t.node_id === n.id);
    const groups = {};
    for (const t of mine) (groups[t.service_name] = groups[t.service_name] || []).push(t);
    const drain = n.availability === 'drain';
    // the effective labels: those set on the controller, then the agent's not shadowed by one
    const set = n.spec_labels || [];
    const labels = set.concat((n.labels || []).filter((l) => !set.some((s) => s.key === l.key)));
    return el('div', { class: 'node ' + n.state, 'data-node': n.name },
      el('h3', {}, n.name),
      el('div', { class: 'meta' }, `${n.address} · ${n.state} · ${n.availability}`),
      el('div', { class: 'meta' }, n.resources ? `${(n.resources.nano_cpus / 1e9).toFixed(1)} CPU · ${gib(n.resources.memory_bytes)}` : ''),
      el('div', { class: 'labels' }, labels.map((l) => el('span', {}, `${l.key}=${l.value}`))),
      el('button', { type: 'button', class: 'availability', 'data-action': drain ? 'activate' : 'drain',
        onclick: () => act(`${drain ? 'Activate' : 'Drain'} node ${n.name}?`, 'POST',
          `nodes/${encodeURIComponent(n.id)}/availability`, { availability: drain ? 'active' : 'drain' }) },
        drain ? 'Activate' : 'Drain'),
      Object.keys(groups).sort().map((svc) => el('div', { class: 'svcgroup' },
        el('div', { class: 'svcname' }, svc),
        groups[svc].sort((a, b) => a.slot - b.slot).map((t) =>
          el('div', { class: 'task ' + taskClass(t), 'data-service': svc, 'data-state': taskClass(t), title: t.message || '' },
            `${svc}.${t.slot} ${taskClass(t)}`)))));
  });
  view.replaceChildren(el('h1', {}, `Cluster: ${nodes.length} nodes, ${nodes.filter((n) => n.state === 'ready').length} ready`),
    el('div', { class: 'nodes' }, cols));
  void names;
}

async function pageServices(view) {
  const [services, tasks] = await Promise.all([api('GET', 'services'), api('GET', 'tasks')]);
  const rows = services.map((s) => el('tr', { 'data-service': s.spec.name },
    el('td', {}, el('a', { href: '#/services/' + encodeURIComponent(s.spec.name) }, s.spec.name)),
    el('td', { class: 'hide-narrow' }, s.spec.image),
    el('td', { class: 'replicas' }, replicasText(s)),
    el('td', { class: 'hide-narrow' }, (s.spec.ports || []).map((p) => `${p.published}:${p.target}`).join(', ')),
    el('td', {}, updateProgress(s, tasks))));
  view.replaceChildren(el('h1', {}, 'Services'),
    el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Name'), el('th', { class: 'hide-narrow' }, 'Image'),
      el('th', {}, 'Replicas'), el('th', { class: 'hide-narrow' }, 'Ports'), el('th', {}, 'Update'))),
    el('tbody', {}, rows)));
}

function chartFor(id, label, canvas) {
  /* global Chart */
  if (typeof Chart === 'undefined') return null;
  return new Chart(canvas, {
    type: 'line',
    data: { labels: [], datasets: [{ label, data: [], borderColor: '#4fa3ff', tension: 0.2, pointRadius: 0 }] },
    options: { animation: false, maintainAspectRatio: false, scales: { y: { beginAtZero: true } } },
  });
}

async function pageService(view, name, again) {
  const ref = encodeURIComponent(name);
  const [s, tasks, series] = await Promise.all([api('GET', 'services/' + ref),
    api('GET', `services/${ref}/tasks?all=1`), api('GET', `services/${ref}/metrics`)]);
  /* the controller keeps the last 15 minutes, a sample every 5 s */
  const c = charts[s.id] = charts[s.id] || {};
  c.samples = series.samples.map((x) => ({ t: x.time_ms, rps: x.connections_per_second,
    conns: x.active_connections, cpu: x.cpu_percent, mem: x.memory_bytes / 1048576 }));
  /* A live refresh must not undo what the user is typing: an edited (or
   * focused) replica count is carried over to the new page. */
  const oldInput = view.querySelector('#scale-replicas');
  const keep = oldInput && (oldInput.dataset.edited === '1' || document.activeElement === oldInput);
  const scaleInput = el('input', { type: 'number', min: '0', id: 'scale-replicas',
    value: keep ? oldInput.value : String(s.spec.replicas) });
  if (keep) scaleInput.dataset.edited = '1';
  scaleInput.addEventListener('input', () => { scaleInput.dataset.edited = '1'; });
  if (keep && document.activeElement === oldInput) setTimeout(() => scaleInput.focus(), 0);
  const header = [el('h1', {}, `Service ${s.spec.name}`),
    el('p', {}, `${s.spec.image} · replicas ${replicasText(s)} · version ${s.version}`),
    updateProgress(s, tasks),
    el('div', { class: 'actions' }, 'Replicas', scaleInput,
      el('button', { type: 'button', id: 'scale', onclick: () => {
        const n = Number(scaleInput.value);
        delete scaleInput.dataset.edited; /* the next page shows the count as it is */
        act(`Scale ${s.spec.name} to ${n}?`, 'POST', `services/${ref}/scale`, { replicas: n });
      } }, 'Scale'),
      el('button', { type: 'button', id: 'rollback', onclick: () =>
        act(`Roll ${s.spec.name} back to its previous spec?`, 'POST', `services/${ref}/rollback`) }, 'Roll back'))];
  const taskRows = tasks.map((t) => el('tr', {},
    el('td', {}, `${t.service_name}.${t.slot}`), el('td', {}, t.node_name),
    el('td', {}, el('span', { class: 'task ' + taskClass(t) }, taskClass(t))),
    el('td', { class: 'hide-narrow' }, t.desired_state), el('td', { class: 'hide-narrow' }, t.message || '')));
  const evs = events.filter((e) => e.service === s.spec.name || e.marker).slice(-20).reverse();
  let chartBox = view.querySelector('.charts');
  if (!again || !chartBox || chartBox.dataset.service !== s.id) {
    chartBox = el('div', { class: 'charts' });
    chartBox.dataset.service = s.id;
    c.charts = [['rps', 'connections/s'], ['conns', 'active connections'], ['cpu', 'CPU % (mean)'], ['mem', 'memory MiB']]
      .map(([k, label]) => { const cv = el('canvas', {}); chartBox.append(el('div', {}, cv)); return [k, chartFor(s.id, label, cv)]; });
  }
  for (const [k, ch] of c.charts || []) {
    if (!ch) continue;
    ch.data.labels = c.samples.map((x) => new Date(x.t).toLocaleTimeString());
    ch.data.datasets[0].data = c.samples.map((x) => x[k]);
    ch.update();
  }
  let logs = view.querySelector('pre.logs');
  if (!logs || !logTail || logTail.service !== s.spec.name) {
    logs = el('pre', { class: 'logs', id: 'logs' });
    followLogs(s.spec.name, logs);
  }
  const rest = view.querySelector('.service-rest') || el('div', { class: 'service-rest' });
  rest.replaceChildren(el('h2', {}, 'Logs (live)'), logs, el('h2', {}, 'Tasks'),
    el('table', { class: 'tasks' }, el('tbody', {}, taskRows)),
    el('h2', {}, 'Last events'), el('ul', { class: 'events' }, evs.map(eventLine)));
  view.replaceChildren(...header, el('h2', {}, 'Traffic and resources, last 15 minutes'), chartBox, rest);
}

async function pageEvents(view, again) {
  let filter = view.querySelector('#filter');
  if (!again || !filter) {
    filter = el('input', { id: 'filter', placeholder: 'filter: text, type, service or node', size: '40' });
    filter.addEventListener('input', () => route(true));
    view.replaceChildren(el('h1', {}, 'Events'), filter, el('ul', { class: 'events', id: 'event-list' }));
  }
  const f = filter.value.toLowerCase();
  const shown = events.filter((e) => !f || JSON.stringify(e).toLowerCase().includes(f)).slice(-300).reverse();
  view.querySelector('#event-list').replaceChildren(...shown.map(eventLine));
}

let current = '';
async function route(again) {
  if (!csrf) { showLogin(''); return; }
  const hash = location.hash || '#/cluster';
  const view = $('#view');
  if (hash !== current) { again = false; current = hash; if (!hash.startsWith('#/services/')) stopLogs(); }
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', hash.startsWith(a.getAttribute('href')));
  try {
    if (hash.startsWith('#/services/')) await pageService(view, decodeURIComponent(hash.slice(11)), again);
    else if (hash === '#/services') await pageServices(view);
    else if (hash === '#/events') await pageEvents(view, again);
    else await pageCluster(view);
  } catch (e) {
    if (e.status !== 401) view.replaceChildren(el('p', { class: 'error' }, 'Error: ' + e.message));
  }
}

window.addEventListener('hashchange', () => route(false));
/* The service page's charts follow the controller's samples (every 5 s). */
setInterval(() => { if (csrf && location.hash.startsWith('#/services/')) refresh(); }, 5000);
document.addEventListener('DOMContentLoaded', () => {
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  if (csrf) start(); else showLogin(''); /* a session of this tab: the first call tells if it lives */
});
