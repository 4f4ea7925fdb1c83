// The operator console: one page, four views chosen by the URL's hash (#/overview, #/events,
// #/events/<id>, #/dead-letters, #/dead-letters/<id>, #/backfill). Plain browser JavaScript, no build step,
// nothing loaded from elsewhere. It reads the JSON API under /dashboard/api (docs/console.md) and
// polls the current view every 2 s while the tab is visible; a hidden tab polls nothing.
//
// Every value from the API reaches the page through textContent or an attribute, never as HTML.
// Outcomes are written as words with an icon; colour only repeats them.
'use strict';
(() => {
  const BASE = '/dashboard';
  const API = `${BASE}/api`;
  const POLL_MS = 2000;
  /** The overview (for the alert banner and the source names) is read on other views every this many polls. */
  const BANNER_EVERY = 2;

  const OUTCOMES = {
    ok: { icon: '✓', word: 'succeeded', tone: 'o-ok' },
    succeeded: { icon: '✓', word: 'succeeded', tone: 'o-ok' },
    retrying: { icon: '↻', word: 'retrying', tone: 'o-warn' },
    'waiting-for-vendor': { icon: '‖', word: 'waiting for vendor', tone: 'o-warn' },
    'dead-lettered': { icon: '✗', word: 'dead-lettered', tone: 'o-bad' },
    pending: { icon: '…', word: 'pending', tone: 'o-info' },
    'in-flight': { icon: '▶', word: 'in flight', tone: 'o-info' },
    running: { icon: '▶', word: 'running', tone: 'o-info' },
    done: { icon: '✓', word: 'done', tone: 'o-ok' },
    failed: { icon: '✗', word: 'failed', tone: 'o-bad' },
    paused: { icon: '‖', word: 'paused', tone: 'o-warn' },
    unavailable: { icon: '✗', word: 'unavailable', tone: 'o-bad' },
    replayed: { icon: '↻', word: 'replayed', tone: 'o-info' },
  };

  // ---- DOM helpers -------------------------------------------------------------------------------

  /** h('tag.class', { attr: value, onclick: fn }, ...children): children are nodes or text. */
  function h(spec, attrs, ...children) {
    const [tag, ...classes] = spec.split('.');
    const el = document.createElement(tag);
    if (classes.length > 0) el.className = classes.join(' ');
    for (const [key, value] of Object.entries(attrs ?? {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
      else if (key === 'text') el.textContent = String(value);
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }
  const SVG_NS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs ?? {})) el.setAttribute(key, String(value));
    for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return el;
  }

  function outcome(name) {
    const known = OUTCOMES[name] ?? { icon: '•', word: String(name ?? 'unknown'), tone: '' };
    return h(`span.outcome.${known.tone || 'o-none'}`, { 'data-outcome': name }, h('span.icon', { 'aria-hidden': 'true' }, known.icon), ' ', known.word);
  }
  function yesNo(value, yes, no) {
    return value ? outcome2('✓', yes, 'o-ok') : outcome2('✗', no, 'o-bad');
  }
  function outcome2(icon, word, tone) {
    return h(`span.outcome.${tone}`, {}, h('span.icon', { 'aria-hidden': 'true' }, icon), ' ', word);
  }
  function facts(pairs) {
    const dl = h('dl.facts');
    for (const [term, value] of pairs) {
      if (value === undefined) continue;
      dl.append(h('dt', {}, term), h('dd', {}, value === null ? h('span.muted', {}, '—') : value));
    }
    return dl;
  }
  function json(value) {
    return h('pre.json', { tabindex: '0' }, value === null || value === undefined ? 'none' : JSON.stringify(value, null, 2));
  }
  function table(caption, headers, rows, options = {}) {
    const thead = h('thead', {}, h('tr', {}, headers.map((c) => h(`th${c.num ? '.num' : ''}`, { scope: 'col', class: c.narrow ? 'hide-narrow' : undefined }, c.label))));
    const tbody = h('tbody');
    if (rows.length === 0) tbody.append(h('tr', {}, h('td', { colspan: headers.length }, h('span.muted', {}, options.empty ?? 'Nothing to show.'))));
    // Each cell carries its column's name: a narrow screen shows a row as a list of "name: value".
    const labels = headers.map((c) => (typeof c.label === 'string' ? c.label : ''));
    for (const row of rows) {
      [...row.children].forEach((td, i) => { if (labels[i]) td.setAttribute('data-label', labels[i]); });
      tbody.append(row);
    }
    return h('div.table-wrap', {}, h('table.stack', {}, h('caption', {}, caption), thead, tbody));
  }
  function cell(value, opts = {}) {
    return h(`td${opts.num ? '.num' : ''}`, { class: opts.narrow ? 'hide-narrow' : undefined }, value === null || value === undefined ? h('span.muted', {}, '—') : value);
  }

  // ---- formatting --------------------------------------------------------------------------------

  function ago(iso, now = Date.now()) {
    if (!iso) return null;
    const ms = now - Date.parse(iso);
    if (!Number.isFinite(ms)) return String(iso);
    return `${duration(Math.max(0, ms))} ago`;
  }
  function duration(ms) {
    if (ms === null || ms === undefined) return null;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const sec = ms / 1000;
    if (sec < 60) return `${sec.toFixed(sec < 10 ? 1 : 0)} s`;
    const min = sec / 60;
    if (min < 60) return `${Math.floor(min)} min ${Math.round(sec % 60)} s`;
    const hours = min / 60;
    if (hours < 48) return `${Math.floor(hours)} h ${Math.round(min % 60)} min`;
    return `${Math.floor(hours / 24)} d ${Math.round(hours % 24)} h`;
  }
  function time(iso) {
    if (!iso) return null;
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return h('time', { datetime: iso, title: iso }, d.toLocaleString());
  }
  function timeAgo(iso) {
    if (!iso) return null;
    return h('span', {}, time(iso), h('span.muted', {}, ` (${ago(iso)})`));
  }
  function bytes(n) {
    if (n === null || n === undefined) return null;
    const units = ['B', 'KB', 'MB', 'GB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  }
  function num(n) {
    return n === null || n === undefined ? null : Number(n).toLocaleString();
  }
  function errorText(err) {
    if (!err) return null;
    return h('span', {}, h('code', {}, err.code ?? 'error'), ' ', err.message ?? '');
  }
  function sum(series) {
    return (series ?? []).reduce((a, b) => a + b, 0);
  }

  // ---- charts: small hand-drawn SVG --------------------------------------------------------------

  /** Bars per minute, oldest left; `series` = [{ name, values }]; the second series is drawn over the first. */
  function barChart(title, series) {
    const W = 300, H = 70, PAD = 14, TOP = 12;
    const n = Math.max(...series.map((x) => x.values.length), 1);
    const max = Math.max(1, ...series.flatMap((x) => x.values));
    const bw = (W - 2) / n;
    const summary = series.map((x) => `${x.name}: ${sum(x.values)} in the hour, at most ${Math.max(0, ...x.values)} a minute`).join('; ');
    const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H + PAD}`, role: 'img', 'aria-label': `${title}. ${summary}` }, s('title', {}, `${title}. ${summary}`));
    series.forEach((x, k) => {
      x.values.forEach((v, i) => {
        if (v <= 0) return;
        const bh = Math.max(1, (v / max) * (H - TOP));
        svg.append(s('rect', { class: k === 0 ? 'b1' : 'b2', x: (1 + i * bw).toFixed(1), y: (H - bh).toFixed(1), width: Math.max(1, bw - 1).toFixed(1), height: bh.toFixed(1) }));
      });
    });
    svg.append(s('line', { class: 'axis', x1: 0, y1: H + 0.5, x2: W, y2: H + 0.5 }));
    svg.append(s('text', { x: 0, y: H + 11 }, '60 min ago'), s('text', { x: W, y: H + 11, 'text-anchor': 'end' }, 'now'), s('text', { x: W, y: 9, 'text-anchor': 'end' }, `max ${max}/min`));
    return h('figure.chartbox', {}, svg, legend(series));
  }
  /** Lines over time for the queue's hour of history; `samples` have `at`. */
  function lineChart(title, samples, series) {
    const W = 300, H = 70, PAD = 14, TOP = 12;
    const max = Math.max(1, ...samples.flatMap((p) => series.map((x) => x.value(p))));
    const n = samples.length;
    const x = (i) => (n <= 1 ? W : (i / (n - 1)) * W);
    const y = (v) => H - (v / max) * (H - TOP);
    const last = samples[n - 1];
    const summary = last ? series.map((x2) => `${x2.name} now ${x2.value(last)}`).join(', ') + `, highest ${max}` : 'no samples yet';
    const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H + PAD}`, role: 'img', 'aria-label': `${title}: ${summary}` }, s('title', {}, `${title}: ${summary}`));
    series.forEach((x2, k) => {
      if (n === 0) return;
      const d = samples.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(i).toFixed(1)},${y(x2.value(p)).toFixed(1)}`).join(' ');
      svg.append(s('path', { class: k === 0 ? 'l1' : 'l2', d }));
    });
    svg.append(s('line', { class: 'axis', x1: 0, y1: H + 0.5, x2: W, y2: H + 0.5 }));
    const first = samples[0];
    svg.append(s('text', { x: 0, y: H + 11 }, first ? `${ago(first.at)}` : ''), s('text', { x: W, y: H + 11, 'text-anchor': 'end' }, 'now'), s('text', { x: W, y: 9, 'text-anchor': 'end' }, `max ${max}`));
    return h('figure.chartbox', {}, svg, legend(series));
  }
  function legend(series) {
    return h('ul.legend', {}, series.map((x, k) => h('li', {}, h(`span.key${k === 0 ? '' : '.k2'}`, { 'aria-hidden': 'true' }), x.name)));
  }

  // ---- API ---------------------------------------------------------------------------------------

  let csrfToken = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content') ?? '';
  if (csrfToken.startsWith('{{')) csrfToken = '';

  class ApiError extends Error {
    constructor(status, body) {
      // Errors come as { error: CODE, message } (older shape: { error: { code, message } }).
      super(body?.message ?? body?.error?.message ?? `HTTP ${status}`);
      this.status = status;
      this.code = typeof body?.error === 'string' ? body.error : body?.error?.code;
    }
  }
  async function api(path, options = {}) {
    const init = { method: options.method ?? 'GET', credentials: 'same-origin', headers: { accept: 'application/json' } };
    if (init.method !== 'GET') {
      if (csrfToken === '') await loadSession();
      init.headers['x-csrf-token'] = csrfToken;
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(options.body ?? {});
    }
    const response = await fetch(`${API}${path}`, init);
    if (response.status === 401) {
      window.location.assign(`${BASE}/login`);
      throw new ApiError(401, { error: { message: 'not logged in' } });
    }
    const text = await response.text();
    let body;
    try { body = text === '' ? null : JSON.parse(text); } catch { body = null; }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }
  async function loadSession() {
    try {
      const session = await api('/session');
      csrfToken = session?.csrfToken ?? session?.csrf ?? '';
    } catch {
      // the action will be refused and say so
    }
  }

  // ---- status line and alert banner --------------------------------------------------------------

  const statusEl = () => document.getElementById('status');
  function say(message, kind = 'info') {
    const el = statusEl();
    el.replaceChildren(h(`p.${kind}`, {}, kind === 'error' ? outcome2('✗', 'Error:', 'o-bad') : outcome2('ℹ', 'Note:', 'o-info'), ' ', message));
  }
  /** A message said just before a change of page stays for the next page. */
  let keepSaid = false;
  function clearSay() {
    if (keepSaid) keepSaid = false;
    else statusEl().replaceChildren();
  }

  function alertLine(a) {
    if (typeof a !== 'object' || a === null) return h('li', {}, String(a));
    const name = a.title ?? a.condition ?? a.name ?? 'alert';
    const parts = [h('strong', {}, String(name))];
    if (a.source) parts.push(` (${a.source})`);
    const text = a.summary ?? a.message ?? a.detail ?? a.reason;
    if (text) parts.push(`: ${text}`);
    const since = a.since ?? a.startedAt;
    if (since) parts.push(h('span.muted', {}, ` since ${ago(since)}`));
    return h('li', {}, ...parts);
  }
  function renderBanner(overview) {
    const el = document.getElementById('alerts');
    const alerts = Array.isArray(overview?.alerts) ? overview.alerts : [];
    if (alerts.length === 0) {
      el.hidden = true;
      el.replaceChildren();
      return;
    }
    el.hidden = false;
    el.replaceChildren(h('h2', {}, outcome2('⚠', `${alerts.length} active alert${alerts.length === 1 ? '' : 's'}`, 'o-bad')), h('ul', {}, alerts.map(alertLine)));
  }

  // ---- views -------------------------------------------------------------------------------------

  const state = { overview: null, sources: [], selected: new Set(), polls: 0 };

  function sourceNames() {
    return state.sources;
  }
  function rememberOverview(overview) {
    state.overview = overview;
    state.sources = (overview?.sources ?? []).map((x) => x.name);
    renderBanner(overview);
  }

  function sourceSelect(id, value, { any = true, label = 'Source' } = {}) {
    const select = h('select', { id, name: 'source' });
    if (any) select.append(h('option', { value: '' }, 'All sources'));
    for (const name of sourceNames()) select.append(h('option', { value: name, selected: name === value }, name));
    return [h('label', { for: id }, label), select];
  }

  /** Views: { title, load() -> data, render(data) -> Node, live: poll it? } */
  const views = {
    overview: {
      title: 'Overview',
      live: true,
      async load() {
        const overview = await api('/overview');
        rememberOverview(overview);
        return overview;
      },
      render: renderOverview,
    },
    events: {
      title: 'Events',
      live: true,
      async load(params) {
        const query = new URLSearchParams({ limit: '50' });
        if (params.get('q')) query.set('q', params.get('q'));
        if (params.get('source')) query.set('source', params.get('source'));
        return api(`/events?${query}`);
      },
      render: renderEvents,
    },
    event: {
      title: 'Event',
      live: true,
      load: (_params, id) => api(`/events/${encodeURIComponent(id)}`),
      render: renderEvent,
    },
    'dead-letters': {
      title: 'Dead letters',
      live: true,
      async load(params) {
        const query = new URLSearchParams();
        if (params.get('q')) query.set('q', params.get('q'));
        if (params.get('source')) query.set('source', params.get('source'));
        return api(`/dead-letters?${query}`);
      },
      render: renderDeadLetters,
    },
    'dead-letter': {
      title: 'Dead letter',
      live: false,
      load: (_params, id) => api(`/dead-letters/${encodeURIComponent(id)}`),
      render: renderDeadLetter,
    },
    backfill: {
      title: 'Backfill',
      live: true,
      load: () => api('/backfill'),
      render: renderBackfill,
    },
  };

  function renderOverview(o) {
    const p = o.process ?? {};
    const q = o.queue?.stats ?? {};
    const history = o.queue?.history ?? [];
    const root = h('div', {}, h('h1', {}, 'Overview'));
    const grid = h('div.grid');
    root.append(grid);

    const health = o.health;
    const healthCard = h('section.card', { 'aria-labelledby': 'h-health' }, h('h2', { id: 'h-health' }, 'Health'));
    if (health === null || health === undefined) healthCard.append(h('p.muted', {}, 'Health checks are not available in this process.'));
    else {
      const ok = health.healthy === true || health.status === 'ok' || health.ok === true;
      healthCard.append(h('p', {}, yesNo(ok, 'healthy', 'unhealthy')));
      const checks = Array.isArray(health.checks) ? health.checks : Object.entries(health.checks ?? {}).map(([name, c]) => ({ name, ...(typeof c === 'object' ? c : { ok: c }) }));
      if (checks.length > 0) {
        healthCard.append(h('ul', {}, checks.map((c) => h('li', { 'data-check': c.name ?? c.check }, yesNo(c.ok !== false, `${c.name ?? c.check}: ok`, `${c.name ?? c.check}: failing`), c.reason || c.detail ? ` — ${c.reason ?? c.detail}` : ''))));
      }
    }
    grid.append(healthCard);

    grid.append(h('section.card', { 'aria-labelledby': 'h-queue' }, h('h2', { id: 'h-queue' }, 'Queue'),
      facts([
        ['Pending', num(q.pending)],
        ['In flight', num(q.inFlight)],
        ['Delayed', num(q.delayed)],
        ['Dead letters', q.deadLettered === undefined ? null : h('a', { href: '#/dead-letters' }, num(q.deadLettered))],
        ['Oldest waiting', q.oldestPendingAgeMs === null || q.oldestPendingAgeMs === undefined ? 'none waiting' : duration(q.oldestPendingAgeMs)],
      ]),
      h('h3', {}, 'The last hour'),
      lineChart('Queue over the last hour', history, [
        { name: 'waiting (pending + delayed + in flight)', value: (x) => (x.pending ?? 0) + (x.delayed ?? 0) + (x.inFlight ?? 0) },
        { name: 'dead letters', value: (x) => x.deadLettered ?? 0 },
      ])));

    const db = o.database;
    const dbCard = h('section.card', { 'aria-labelledby': 'h-db' }, h('h2', { id: 'h-db' }, 'Database'));
    if (db === null || db === undefined) dbCard.append(h('p.muted', {}, 'Not reported by this process.'));
    else {
      const rest = Object.entries(db).filter(([k]) => k !== 'ok');
      dbCard.append(h('p', {}, yesNo(db.ok !== false, 'reachable', 'unavailable')), facts(rest.map(([k, v]) => [k, typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)])));
    }
    grid.append(dbCard);

    const registrations = webhookRegistrations(o.webhooks);
    for (const src of Array.isArray(o.sources) ? o.sources : []) grid.append(renderSource(src, registrations, o.webhooks));
    grid.append(h('section.card', { 'aria-labelledby': 'h-proc' }, h('h2', { id: 'h-proc' }, 'This process'),
      facts([
        ['Version', p.version ?? null],
        ['Role', p.role ?? null],
        ['PID', p.pid ?? null],
        ['Up for', p.uptimeSeconds === undefined ? null : duration(p.uptimeSeconds * 1000)],
        ['Started', time(p.startedAt)],
        ['Memory (RSS)', bytes(p.memory?.rssBytes)],
        ['Heap used', bytes(p.memory?.heapUsedBytes)],
      ])));

    if (Array.isArray(o.processes) && o.processes.length > 0) {
      grid.append(h('section.card.wide', { 'aria-labelledby': 'h-procs' }, h('h2', { id: 'h-procs' }, 'Processes'),
        table(`${o.processes.length} process${o.processes.length === 1 ? '' : 'es'} reporting`, [{ label: 'Process' }, { label: 'Role' }, { label: 'Started' }, { label: 'Last report' }, { label: 'Last claim' }],
          o.processes.map((x) => h('tr', {}, cell(h('span', {}, h('code', {}, x.id), x.self ? ' (this one)' : '')), cell(x.role), cell(time(x.startedAt)), cell(ago(x.at)), cell(x.lastClaimAt ? ago(x.lastClaimAt) : x.role === 'serve' ? 'does not claim' : 'none yet'))))));
    }

    return root;
  }

  /** The registrations provider's answer, as { source -> [entries] } whatever its exact shape. */
  function webhookRegistrations(webhooks) {
    const bySource = {};
    if (webhooks === null || webhooks === undefined) return bySource;
    const list = Array.isArray(webhooks) ? webhooks : Array.isArray(webhooks.sources) ? webhooks.sources : Array.isArray(webhooks.registrations) ? webhooks.registrations : null;
    if (list) {
      for (const r of list) (bySource[r.source] ??= []).push(r);
    } else if (typeof webhooks === 'object') {
      for (const [source, r] of Object.entries(webhooks.sources ?? webhooks)) bySource[source] = Array.isArray(r) ? r : [r];
    }
    return bySource;
  }
  function registrationLine(r) {
    if (r === null || typeof r !== 'object') return h('li', {}, String(r));
    const st = r.state ?? r.status ?? (r.ok === true ? 'ok' : r.ok === false ? 'missing' : 'unknown');
    const good = st === 'ok' || st === 'registered' || st === 'active';
    const what = r.event ?? r.name ?? (typeof r.hooks === 'number' ? `${r.hooks} hook${r.hooks === 1 ? '' : 's'}` : 'webhooks');
    const label = `${what}: ${st}`;
    return h('li', {}, yesNo(good, label, label), r.detail || r.reason ? ` — ${r.detail ?? r.reason}` : '', r.endpoint ? h('span.muted', {}, ` (${r.endpoint})`) : '', r.checkedAt ? h('span.muted', {}, ` (checked ${ago(r.checkedAt)})`) : '');
  }

  /** ` — 12 of 120 per minute, 1 in flight` (this process's use of the vendor's budget). */
  function budgetText(vendor) {
    const windows = (vendor.windows ?? []).map((w) => `${num(w.used)} of ${num(w.limit)} per ${span(w.intervalMs)}`);
    return ` — ${[...windows, `${num(vendor.inFlight ?? 0)} in flight`].join(', ')}`;
  }

  /** A window's length in words (the limiter's windows run a second or so longer than the vendor's). */
  function span(ms) {
    const minutes = Math.round(ms / 60_000);
    if (minutes >= 1) return minutes === 1 ? 'minute' : `${minutes} minutes`;
    return `${Math.max(1, Math.round(ms / 1000))} s`;
  }

  function renderSource(src, registrations, webhooks) {
    const id = `h-src-${src.name}`;
    const rec = src.reconciliation;
    const pm = src.perMinute ?? {};
    const vendor = src.vendor;
    const regs = registrations[src.name];
    return h('section.card', { 'aria-labelledby': id, 'data-source': src.name },
      h('h2', { id }, `Source: ${src.name}`),
      facts([
        ['API', yesNo(src.apiConfigured, 'configured', 'not configured')],
        ['Last delivery', src.lastDeliveryAt ? timeAgo(src.lastDeliveryAt) : 'none yet'],
        ['Deliveries, last hour', num(sum(pm.deliveries))],
        ['Events, last hour', num(sum(pm.events))],
        ['Failed, last hour', num(sum(pm.failed))],
        ['Last reconciliation', rec ? h('span', {}, timeAgo(rec.finishedAt), ` — ${rec.events} events, `, rec.missed === null ? 'misses not judged' : `${rec.missed} missed by webhooks`, rec.error ? h('span', {}, ' — ', outcome('failed'), ' ', errorText(rec.error)) : '') : 'none yet'],
        ['Checkpoint', src.checkpoint?.lastEventTime ? time(src.checkpoint.lastEventTime) : 'none yet'],
        ['Missed webhooks', `${num(src.missedWebhooks?.lastHour ?? 0)} in the last hour, ${num(src.missedWebhooks?.total ?? 0)} since start`],
        ['Vendor budget', vendor ? h('span', {}, vendor.state === 'ok' ? outcome2('✓', 'ok', 'o-ok') : outcome(vendor.state), vendor.until ? ` until ${new Date(vendor.until).toLocaleTimeString()}` : '', vendor.reason ? ` — ${vendor.reason}` : '', budgetText(vendor)) : 'no API configured'],
        ['Webhook registrations', webhooks === null || webhooks === undefined ? 'not checked by this process' : regs && regs.length > 0 ? h('span', {}, h('ul', {}, regs.map(registrationLine)), webhooks.checkedAt ? h('span.muted', {}, `checked ${ago(webhooks.checkedAt)}`) : '') : 'none found'],
      ]),
      h('h3', {}, 'Deliveries and events per minute'),
      barChart(`${src.name}: events per minute over the last hour`, [
        { name: 'events', values: pm.events ?? [] },
        { name: 'failed', values: pm.failed ?? [] },
      ]),
      barChart(`${src.name}: deliveries per minute over the last hour`, [{ name: 'deliveries', values: pm.deliveries ?? [] }]));
  }

  function renderEvents(data, params) {
    const root = h('div', {}, h('h1', {}, 'Events'));
    const form = h('form.filters', { role: 'search', onsubmit: (e) => {
      e.preventDefault();
      const fd = new FormData(e.target);
      navigate('events', { q: String(fd.get('q') ?? '').trim(), source: String(fd.get('source') ?? '') });
    } },
    h('div.field', {}, h('label', { for: 'ev-q' }, 'Entity, event or row id'), h('input', { id: 'ev-q', name: 'q', type: 'search', value: params.get('q') ?? '', placeholder: 'task id, conversation id, message id' })),
    h('div.field', {}, ...sourceSelect('ev-source', params.get('source') ?? '')),
    h('button.primary', { type: 'submit' }, 'Search'));
    root.append(form);
    const events = data?.events ?? [];
    const what = params.get('q') ? `Events matching “${params.get('q')}”` : 'The newest events';
    root.append(table(`${what}: ${events.length} shown`, [
      { label: 'Received' }, { label: 'Source' }, { label: 'Type' }, { label: 'Entity' }, { label: 'Outcome' }, { label: 'Attempts', num: true, narrow: true }, { label: 'Duration', num: true, narrow: true },
    ], events.map((ev) => h('tr.clickable', { 'data-id': ev.id, onclick: () => navigate(`events/${ev.id}`) },
      cell(h('a', { href: `#/events/${encodeURIComponent(ev.id)}` }, time(ev.receivedAt))),
      cell(ev.source), cell(ev.type), cell(ev.entityKey ? h('code', {}, ev.entityKey) : null),
      cell(outcome(ev.outcome)), cell(num(ev.attempts), { num: true, narrow: true }), cell(duration(ev.durationMs), { num: true, narrow: true }))),
    { empty: params.get('q') ? 'No event matches.' : 'No events yet.' }));
    return root;
  }

  function renderEvent(ev) {
    const root = h('div', {}, h('p', {}, h('a', { href: '#/events' }, '← Events')), h('h1', {}, `Event ${ev.id}`));
    root.append(h('section.card', {}, facts([
      ['Outcome', outcome(ev.outcome)],
      ['Source', ev.source], ['Type', ev.type], ['Entity', ev.entityKey ? h('code', {}, ev.entityKey) : null], ['Origin', ev.origin],
      ['Received', time(ev.receivedAt)], ['Attempts', num(ev.attempts)], ['Duration', duration(ev.durationMs)], ['Error', errorText(ev.error)],
    ])));
    root.append(h('h2', {}, 'Attempts'));
    root.append(table('Attempts in this process, oldest first', [{ label: '#', num: true }, { label: 'At' }, { label: 'Outcome' }, { label: 'Duration', num: true }, { label: 'Error' }],
      (ev.history ?? []).map((a) => h('tr', {}, cell(a.attempt, { num: true }), cell(time(a.at)), cell(outcome(a.outcome)), cell(duration(a.durationMs), { num: true }), cell(errorText(a.error)))),
      { empty: 'Not tried in this process yet.' }));
    root.append(h('h2', {}, 'Rows written'));
    const rows = ev.rows ?? [];
    if (rows.length === 0) root.append(h('p.muted', {}, 'No rows (not written yet, or the event writes none).'));
    for (const r of rows) {
      root.append(h('section.card', { 'data-row': `${r.table}:${r.id}` }, h('h3', {}, `${r.table} ${r.id}${r.deleted ? ' (deleted)' : ''}`), r.row === null ? h('p.muted', {}, 'Not found in the database.') : json(r.row)));
    }
    root.append(h('h2', {}, 'Payload (secrets redacted)'), ev.payload === null ? h('p.muted', {}, 'This process no longer holds the payload.') : json(ev.payload));
    return root;
  }

  function letterId(d) { return d.id ?? d.eventId; }

  function renderDeadLetters(data, params) {
    const letters = data?.deadLetters ?? [];
    const total = data?.total ?? letters.length;
    const source = params.get('source') ?? '';
    for (const id of [...state.selected]) if (!letters.some((d) => letterId(d) === id)) state.selected.delete(id);
    const root = h('div', {}, h('h1', {}, 'Dead letters'));
    root.append(h('form.filters', { role: 'search', onsubmit: (e) => {
      e.preventDefault();
      const fd = new FormData(e.target);
      navigate('dead-letters', { q: String(fd.get('q') ?? '').trim(), source: String(fd.get('source') ?? '') });
    } },
    h('div.field', {}, ...sourceSelect('dl-source', source)),
    h('div.field', {}, h('label', { for: 'dl-q' }, 'Text in id, type, entity or error'), h('input', { id: 'dl-q', name: 'q', type: 'search', value: params.get('q') ?? '' })),
    h('button.primary', { type: 'submit' }, 'Filter')));

    const count = state.selected.size;
    const replaySel = h('button.primary', { type: 'button', disabled: count === 0, onclick: () => act('replay', { ids: [...state.selected] }) }, `Replay selected (${count})`);
    const discardSel = h('button.danger', { type: 'button', disabled: count === 0, onclick: () => act('discard', { ids: [...state.selected] }) }, `Discard selected (${count})`);
    const actions = h('div.actions', { role: 'group', 'aria-label': 'Actions on dead letters' }, replaySel, discardSel);
    if (source !== '') {
      actions.append(
        h('button', { type: 'button', disabled: total === 0, onclick: () => act('replay', { source, all: true }) }, `Replay all of ${source}`),
        h('button.danger', { type: 'button', disabled: total === 0, onclick: () => act('discard', { source, all: true }) }, `Discard all of ${source}`));
    } else {
      actions.append(h('span.muted', {}, 'Choose a source to replay or discard all of it.'));
    }
    root.append(actions);

    const all = h('input', { type: 'checkbox', id: 'dl-all', 'aria-label': 'Select all shown', checked: letters.length > 0 && count === letters.length, onchange: (e) => {
      for (const d of letters) {
        if (e.target.checked) state.selected.add(letterId(d));
        else state.selected.delete(letterId(d));
      }
      rerender();
    } });
    const headers = [{ label: all }, { label: 'Dead-lettered' }, { label: 'Source' }, { label: 'Type', narrow: true }, { label: 'Entity' }, { label: 'Error' }, { label: 'Attempts', num: true, narrow: true }];
    const shown = letters.length < total ? `${letters.length} of ${total} shown` : `${total} in all`;
    root.append(table(`Dead letters: ${shown}`, headers, letters.map((d) => {
      const id = letterId(d);
      const box = h('input', { type: 'checkbox', 'aria-label': `Select ${id}`, checked: state.selected.has(id), onchange: (e) => {
        if (e.target.checked) state.selected.add(id);
        else state.selected.delete(id);
        rerender();
      } });
      return h('tr', { 'data-id': id },
        cell(box), cell(h('a', { href: `#/dead-letters/${encodeURIComponent(id)}` }, time(d.deadLetteredAt ?? d.failedAt ?? d.at ?? d.receivedAt) ?? id)),
        cell(d.source), cell(d.type, { narrow: true }), cell(d.entityKey ? h('code', {}, d.entityKey) : null), cell(errorText(d.error)), cell(num(d.attempts), { num: true, narrow: true }));
    }), { empty: 'No dead letters. Nothing needs you here.' }));
    return root;
  }

  function renderDeadLetter(d) {
    const id = letterId(d);
    const root = h('div', {}, h('p', {}, h('a', { href: '#/dead-letters' }, '← Dead letters')), h('h1', {}, `Dead letter ${id}`));
    root.append(h('div.actions', {},
      h('button.primary', { type: 'button', onclick: () => act('replay', { ids: [id] }, { back: true }) }, 'Replay'),
      h('button.danger', { type: 'button', onclick: () => act('discard', { ids: [id] }, { back: true }) }, 'Discard')));
    root.append(h('section.card', {}, facts([
      ['Outcome', outcome('dead-lettered')], ['Source', d.source ?? null], ['Type', d.type ?? null], ['Entity', d.entityKey ? h('code', {}, d.entityKey) : null],
      ['Received', time(d.receivedAt)], ['Dead-lettered', time(d.deadLetteredAt ?? d.failedAt ?? d.at)], ['Attempts', num(d.attempts)], ['Error', errorText(d.error)],
    ])));
    if (d.error) root.append(h('h2', {}, 'Error'), json(d.error));
    root.append(h('h2', {}, 'Payload (secrets redacted)'), json(d.payload ?? d.event?.payload ?? null));
    return root;
  }

  /** Replay or discard; discard asks first. `target` = { ids } or { source, all: true }. */
  async function act(action, target, { back = false } = {}) {
    const what = target.all ? `every dead letter of ${target.source}` : `${target.ids.length} dead letter${target.ids.length === 1 ? '' : 's'}`;
    if (action === 'discard') {
      const ok = await confirmDialog(`Discard ${what}? Discarded events are gone for good: they are not replayed and not written.`);
      if (!ok) {
        say('Nothing discarded.');
        return;
      }
    }
    try {
      const body = action === 'discard' ? { ...target, confirm: true } : target;
      const result = await api(`/dead-letters/${action}`, { method: 'POST', body });
      const n = action === 'replay' ? result.replayed : result.discarded;
      const missing = result.missingIds?.length ? ` (${result.missingIds.length} no longer there)` : '';
      say(`${action === 'replay' ? 'Replayed' : 'Discarded'} ${n} dead letter${n === 1 ? '' : 's'}${missing}.`);
      state.selected.clear();
      rerender();
      if (back) {
        keepSaid = true;
        navigate('dead-letters');
      }
      else await refresh();
    } catch (err) {
      say(`${action === 'replay' ? 'Replay' : 'Discard'} failed: ${err.message}`, 'error');
    }
  }

  function confirmDialog(text) {
    const dialog = document.getElementById('confirm');
    document.getElementById('confirm-text').textContent = text;
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
      dialog.returnValue = '';
      dialog.showModal();
    });
  }

  function renderBackfill(data) {
    const jobs = data?.jobs ?? [];
    const root = h('div', {}, h('h1', {}, 'Backfill'));
    const form = h('form.card', { 'aria-labelledby': 'h-bf', onsubmit: async (e) => {
      e.preventDefault();
      const fd = new FormData(e.target);
      const body = { source: String(fd.get('source') ?? '') };
      if (fd.get('mode') === 'full') body.full = true;
      else if (fd.get('since')) body.since = String(fd.get('since'));
      try {
        const result = await api('/backfill', { method: 'POST', body });
        say(`Backfill of ${body.source} started${result?.job?.id ? ` (job ${result.job.id})` : ''}.`);
        await refresh();
      } catch (err) {
        say(`Backfill not started: ${err.message}`, 'error');
      }
    } },
    h('h2', { id: 'h-bf' }, 'Start a backfill'),
    h('p.muted', {}, 'Reads the vendor’s API and queues what changed, like `npm run backfill`. One backfill per source at a time.'),
    h('div.filters', {},
      h('div.field', {}, ...sourceSelect('bf-source', '', { any: false })),
      h('fieldset.field', {}, h('legend', {}, 'From'),
        h('label', {}, h('input', { type: 'radio', name: 'mode', value: 'since', checked: true }), ' the checkpoint, or since a date:'),
        h('label', { for: 'bf-since' }, h('span.sr-only', {}, 'Since date'), h('input', { id: 'bf-since', name: 'since', type: 'date' })),
        h('label', {}, h('input', { type: 'radio', name: 'mode', value: 'full' }), ' the beginning (full)')),
      h('button.primary', { type: 'submit' }, 'Start backfill')));
    root.append(form);
    root.append(h('h2', {}, 'Jobs'));
    if (data?.available === false) {
      form.querySelector('button[type="submit"]').disabled = true;
      form.append(h('p', {}, outcome2('✗', 'Not available here:', 'o-bad'), ' this process has no database to keep checkpoints in; run `npm run backfill` where the worker runs.'));
    }
    if (jobs.length === 0) root.append(h('p.muted', {}, 'No backfill started from the console since this process started.'));
    const list = h('div');
    for (const job of jobs) list.append(renderJob(job));
    root.append(list);
    return root;
  }
  function renderJob(job) {
    const id = `job-${job.id ?? job.source}`;
    const fraction = typeof job.fraction === 'number' ? job.fraction : null;
    const pct = job.state === 'done' ? 100 : fraction === null ? null : Math.round(fraction * 100);
    const full = job.request?.full ?? job.full;
    const asked = job.request?.since ?? null;
    const bar = h('progress', { id: `${id}-bar`, max: '100', 'aria-labelledby': `${id}-label`, value: pct === null ? undefined : String(pct) });
    return h('section.card.job', { 'data-source': job.source, 'data-state': job.state },
      h('h3', { id: `${id}-label` }, `Backfill of ${job.source}${full ? ' (full)' : asked ? ` since ${asked}` : ' from the checkpoint'}: `, outcome(job.state), pct === null ? '' : ` ${pct}%`),
      bar,
      facts([
        ['Pages', num(job.pages ?? 0)], ['Events queued', num(job.events ?? 0)], ['Window starts', job.since ? time(job.since) : full ? 'the beginning' : 'being resolved'],
        ['Reached', job.newestUpdate ? time(job.newestUpdate) : undefined], ['Waiting for', job.waitingFor ? `another process's backfill (${job.waitingFor})` : undefined],
        ['Started', time(job.startedAt)], ['Finished', job.finishedAt ? time(job.finishedAt) : undefined],
        ['Error', job.error ? (typeof job.error === 'string' ? job.error : errorText(job.error)) : undefined],
      ]));
  }

  // ---- routing and polling -----------------------------------------------------------------------

  function parseHash() {
    const raw = window.location.hash.replace(/^#\/?/, '');
    const [path, query] = raw.split('?');
    const parts = (path || 'overview').split('/').map(decodeURIComponent);
    const params = new URLSearchParams(query ?? '');
    if (parts[0] === 'events' && parts[1]) return { view: 'event', page: 'events', id: parts[1], params };
    if (parts[0] === 'dead-letters' && parts[1]) return { view: 'dead-letter', page: 'dead-letters', id: parts[1], params };
    if (views[parts[0]]) return { view: parts[0], page: parts[0], params };
    return { view: 'overview', page: 'overview', params };
  }
  function navigate(path, params) {
    const query = new URLSearchParams(Object.entries(params ?? {}).filter(([, v]) => v !== ''));
    const hash = `#/${path}${[...query].length > 0 ? `?${query}` : ''}`;
    if (window.location.hash === hash) void refresh();
    else window.location.hash = hash;
  }

  let route = parseHash();
  let lastData = null;
  let lastText = '';
  let timer = null;
  let inFlight = null;
  let generation = 0;

  function rerender() {
    if (lastData === null) return;
    draw(lastData);
  }
  function draw(data) {
    const main = document.getElementById('main');
    const view = views[route.view];
    // Keep focus and typing in a form field across a live update.
    const active = document.activeElement;
    const activeId = active && main.contains(active) && active.id ? active.id : null;
    const typed = activeId && 'value' in active ? active.value : null;
    const start = activeId && 'selectionStart' in active ? active.selectionStart : null;
    const scroll = window.scrollY;
    main.replaceChildren(view.render(data, route.params, route.id));
    if (activeId) {
      const again = document.getElementById(activeId);
      if (again) {
        if (typed !== null && again.value !== typed) again.value = typed;
        again.focus({ preventScroll: true });
        try { if (start !== null) again.setSelectionRange(start, start); } catch { /* not a text field */ }
      }
    }
    window.scrollTo(0, scroll);
  }

  async function refresh() {
    const mine = ++generation;
    const view = views[route.view];
    const current = route;
    const run = (async () => {
      try {
        // The overview view reads the overview itself; the others read it for the banner and the source names.
        if (current.view !== 'overview' && (state.overview === null || state.polls % BANNER_EVERY === 0)) {
          rememberOverview(await api('/overview'));
        }
        state.polls += 1;
        const data = await view.load(current.params, current.id);
        if (mine !== generation) return;
        // Unchanged data is not drawn again: a selection or a scrolled payload stays as it is.
        const text = JSON.stringify(data);
        if (lastData === null || text !== lastText) draw(data);
        lastData = data;
        lastText = text;
        document.getElementById('updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
        if (document.body.dataset.rendered !== 'true') {
          // The first time a page shows its data (bench/console measures it).
          document.body.dataset.rendered = 'true';
          performance.mark('console:first-render');
        }
        document.body.dataset.ready = 'true';
      } catch (err) {
        if (mine !== generation) return;
        if (err.status === 404 && current.id) {
          lastData = null;
          document.getElementById('main').replaceChildren(h('h1', {}, `${view.title} not found`), h('p', {}, `No ${view.title.toLowerCase()} ${current.id} here (it may have been replayed, discarded or forgotten). `, h('a', { href: `#/${current.page}` }, `Back to ${current.page.replace('-', ' ')}`)));
          document.body.dataset.ready = 'true';
        } else if (err.status !== 401) {
          say(`Could not load ${view.title.toLowerCase()}: ${err.message}`, 'error');
        }
      }
    })();
    inFlight = run;
    await run;
    if (inFlight === run) inFlight = null;
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    const live = document.getElementById('live');
    if (document.hidden) {
      live.textContent = 'Paused while this tab is hidden';
      return;
    }
    if (!views[route.view].live) {
      live.textContent = 'Not live on this page';
      return;
    }
    live.textContent = 'Live: updates every 2 s';
    timer = setTimeout(async () => {
      if (inFlight === null) await refresh();
      schedule();
    }, POLL_MS);
  }

  function onRoute() {
    route = parseHash();
    lastData = null;
    clearSay();
    for (const a of document.querySelectorAll('nav a[data-page]')) {
      if (a.dataset.page === route.page) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = `${views[route.view].title} · Connector console`;
    document.body.dataset.ready = 'false';
    document.getElementById('main').replaceChildren(h('p.loading', {}, 'Loading…'));
    void refresh().then(schedule);
  }

  document.addEventListener('visibilitychange', () => {
    if (document.hidden) schedule();
    else void refresh().then(schedule);
  });
  window.addEventListener('hashchange', onRoute);
  onRoute();
})();
