// promsnmp's web console: hash-routed views over the public API. Every
// value from a device or the inventory is set as text, never as markup.
'use strict';

const view = () => document.getElementById('view');
let refresh = null; // the running view's timer, stopped on navigation

/** An element: h('td', {class: 'x'}, 'text', childNode, …). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** The API: JSON in and out; an error carries the server's message. */
async function api(method, path, body, headers) {
  const init = {method, credentials: 'same-origin', headers: Object.assign({Accept: 'application/json'}, headers || {})};
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!response.ok) {
    const message = data && data.message ? (data.field ? data.field + ': ' : '') + data.message : String(text || response.status);
    const error = new Error(response.status + ' ' + message);
    error.status = response.status;
    throw error;
  }
  return {data, etag: response.headers.get('ETag'), location: response.headers.get('Location')};
}

function ago(iso) {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? s + ' s ago' : s < 3600 ? Math.round(s / 60) + ' min ago' : Math.round(s / 3600) + ' h ago';
}

/** Whether the view that asked is still the one shown (the user may
 *  navigate while a request is out): late answers are dropped. */
function stillShown() {
  const hash = location.hash;
  return () => location.hash === hash;
}

function show(...nodes) {
  view().replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}

function failure(error) {
  return h('p', {class: 'error', role: 'alert'}, error.message || String(error));
}

// --- Devices -------------------------------------------------------------

async function devicesView() {
  const search = h('input', {type: 'search', id: 'device-search', placeholder: 'Search name, address, module, replica', 'aria-label': 'Search devices'});
  const stateFilter = h('select', {id: 'device-state', 'aria-label': 'State'},
    h('option', {value: ''}, 'any state'), h('option', {value: 'polled'}, 'polled'),
    h('option', {value: 'failed'}, 'failed'), h('option', {value: 'waiting'}, 'waiting'));
  const table = h('table', {id: 'devices'});
  const count = h('span', {class: 'muted'});
  let rows = [];
  const render = () => {
    const q = search.value.trim().toLowerCase();
    const shown = rows.filter((d) => (!stateFilter.value || d.state === stateFilter.value) &&
      (!q || [d.sysName, d.target, d.owner, (d.modules || []).join(' ')].join(' ').toLowerCase().includes(q)));
    count.textContent = shown.length + ' of ' + rows.length + ' devices';
    table.replaceChildren(
      h('thead', {}, h('tr', {}, ['Name', 'Address', 'Modules', 'State', 'Last poll', 'Duration', 'Replica', 'Last error'].map((t) => h('th', {}, t)))),
      h('tbody', {}, shown.map((d) => h('tr', {'data-device': d.sysName},
        h('td', {}, h('a', {href: '#/device/' + encodeURIComponent(d.id)}, d.sysName)),
        h('td', {}, d.target || ''),
        h('td', {}, (d.modules || ['defaults']).join(', ')),
        h('td', {}, h('span', {class: 'state ' + d.state}, d.state)),
        h('td', {title: d.lastPollAt || ''}, ago(d.lastPollAt)),
        h('td', {}, d.lastPollSeconds == null ? '—' : d.lastPollSeconds.toFixed(3) + ' s'),
        h('td', {}, d.owner || '—'),
        h('td', {class: 'error-text'}, d.lastError || '')))));
  };
  search.addEventListener('input', render);
  stateFilter.addEventListener('change', render);
  show(h('h1', {}, 'Devices'), h('div', {class: 'toolbar'}, search, stateFilter, count,
    h('a', {class: 'button', href: '#/discovery'}, 'Discover devices')), table);
  const live = stillShown();
  const load = async () => {
    try {
      rows = (await api('GET', 'promsnmp/status/devices')).data;
      render();
    } catch (e) { if (live()) show(h('h1', {}, 'Devices'), failure(e)); }
  };
  await load();
  if (live()) refresh = setInterval(load, 5000);
}

// --- One device ------------------------------------------------------------

async function deviceView(id) {
  const live = stillShown();
  let status, stored, settings;
  try {
    [status, stored, settings] = await Promise.all([
      api('GET', 'promsnmp/status/devices/' + encodeURIComponent(id)),
      api('GET', 'promsnmp/inventory/devices/' + encodeURIComponent(id)),
      api('GET', 'promsnmp/settings')]);
  } catch (e) { if (live()) show(h('h1', {}, 'Device'), failure(e)); return; }
  if (!live()) return;
  const d = status.data;
  const device = stored.data;
  let etag = stored.etag;
  const message = h('p', {id: 'device-message', role: 'status'});
  const saved = (text) => { message.className = 'ok'; message.textContent = text; };
  const failed = (e) => {
    message.className = 'error';
    message.textContent = e.status === 412
      ? 'The inventory changed since this page was loaded (discovery or another user): nothing was saved. Reload the page and save again.'
      : e.message;
  };

  // Modules: every loaded module, the device's checked (none: the defaults).
  const names = [...new Set([...(settings.data.modules.names || []), ...(device.modules || [])])].sort();
  const boxes = names.map((name) => h('label', {class: 'check'},
    h('input', {type: 'checkbox', name: 'module', value: name, checked: (device.modules || []).includes(name)}), name));
  const modulesForm = h('form', {id: 'modules-form', onsubmit: async (event) => {
    event.preventDefault();
    const chosen = boxes.map((b) => b.firstChild).filter((c) => c.checked).map((c) => c.value);
    try {
      const r = await api('PATCH', 'promsnmp/inventory/devices/' + encodeURIComponent(device.id),
        {modules: chosen.length ? chosen : null}, {'If-Match': etag});
      etag = r.etag;
      saved('Modules saved: ' + (chosen.join(', ') || 'the defaults') + '.');
    } catch (e) { failed(e); }
  }}, h('fieldset', {}, h('legend', {}, 'Modules'), boxes, h('p', {class: 'muted'}, 'None checked: the defaults.'),
    h('button', {type: 'submit'}, 'Save modules')));

  // Credentials of the poll agent.
  const agent = device.agents.find((a) => device.primaryAgent && a.id === device.primaryAgent.id) || device.agents[0];
  const field = (label, name, value, type) => h('label', {}, label, h('input', {name, value: value || '', type: type || 'text', autocomplete: 'off'}));
  const v3 = agent.type === 'snmp-user';
  const credentialFields = v3
    ? [field('Security name', 'securityName', agent.securityName), field('Auth protocol', 'authProtocol', agent.authProtocol),
       field('Auth passphrase', 'authPassphrase', agent.authPassphrase, 'password'), field('Privacy protocol', 'privProtocol', agent.privProtocol),
       field('Privacy passphrase', 'privPassphrase', agent.privPassphrase, 'password')]
    : [field('Read community', 'readCommunity', agent.readCommunity, 'password')];
  const credentialsForm = h('form', {id: 'credentials-form', onsubmit: async (event) => {
    event.preventDefault();
    const changed = Object.assign({}, agent);
    for (const input of credentialsForm.querySelectorAll('input')) changed[input.name] = input.value;
    const agents = device.agents.map((a) => a.id === agent.id ? changed : a);
    try {
      const r = await api('PATCH', 'promsnmp/inventory/devices/' + encodeURIComponent(device.id), {agents}, {'If-Match': etag});
      etag = r.etag;
      device.agents = agents;
      saved('Credentials saved; the next poll uses them.');
    } catch (e) { failed(e); }
  }}, h('fieldset', {}, h('legend', {}, 'Credentials of ' + agent.endpoint.address + ':' + agent.endpoint.port), credentialFields,
    h('button', {type: 'submit'}, 'Save credentials')));

  const remove = h('button', {id: 'delete-device', class: 'danger', onclick: async () => {
    if (!confirm('Delete ' + device.sysName + ' from the inventory?')) return;
    try {
      await api('DELETE', 'promsnmp/inventory/devices/' + encodeURIComponent(device.id), undefined, {'If-Match': etag});
      location.hash = '#/devices';
    } catch (e) { failed(e); }
  }}, 'Delete device');

  const samples = (d.samples || []).map((m, i) => h('details', {class: 'module', open: i === 0, 'data-module': m.module},
    h('summary', {}, m.module + ' — ' + m.families.length + ' metrics'),
    m.families.map((f) => h('div', {class: 'family'},
      h('h4', {title: f.help}, f.name, h('span', {class: 'muted'}, ' ' + f.type + (f.seriesCount > f.series.length ? ', first ' + f.series.length + ' of ' + f.seriesCount : ''))),
      h('table', {}, f.series.map((s) => h('tr', {},
        h('td', {class: 'labels'}, Object.entries(s.labels).map(([k, v]) => k + '="' + v + '"').join(', ')),
        h('td', {class: 'value'}, String(s.value)))))))));

  show(h('p', {}, h('a', {href: '#/devices'}, '← Devices')),
    h('h1', {}, device.sysName),
    h('dl', {class: 'facts'},
      h('dt', {}, 'State'), h('dd', {}, h('span', {class: 'state ' + d.state, id: 'device-state'}, d.state)),
      h('dt', {}, 'Address'), h('dd', {}, d.target || ''),
      h('dt', {}, 'Last poll'), h('dd', {}, ago(d.lastPollAt) + (d.lastPollSeconds == null ? '' : ', ' + d.lastPollSeconds.toFixed(3) + ' s')),
      h('dt', {}, 'Series'), h('dd', {}, d.series == null ? '—' : String(d.series)),
      h('dt', {}, 'Replica'), h('dd', {}, d.owner || '—'),
      h('dt', {}, 'Last error'), h('dd', {class: 'error-text'}, d.lastError || '—'),
      h('dt', {}, 'Description'), h('dd', {}, device.sysDescr || '—'),
      h('dt', {}, 'Id'), h('dd', {}, device.id)),
    message, h('div', {class: 'columns'}, modulesForm, credentialsForm), remove,
    h('h2', {}, 'Last polls by this replica'),
    (d.history || []).length
      ? h('table', {id: 'poll-history'}, h('thead', {}, h('tr', {}, ['When', 'Duration', 'Result'].map((t) => h('th', {}, t)))),
        h('tbody', {}, d.history.slice().reverse().map((p) => h('tr', {},
          h('td', {title: p.at || ''}, ago(p.at)), h('td', {}, p.seconds.toFixed(3) + ' s'),
          h('td', {class: p.error ? 'error-text' : 'ok'}, p.error || 'ok')))))
      : h('p', {class: 'muted'}, 'None yet here (in a fleet another replica may poll it).'),
    h('h2', {}, 'Latest series by module'),
    samples.length ? samples : h('p', {class: 'muted'}, 'Not polled yet.'));
}

// --- Discovery ------------------------------------------------------------

async function discoveryView() {
  const input = (label, name, attrs) => h('label', {}, label, h('input', Object.assign({name, autocomplete: 'off'}, attrs || {})));
  const version = h('select', {name: 'version'}, ['v2c', 'v1', 'v3'].map((v) => h('option', {value: v}, v)));
  const v3 = h('fieldset', {class: 'v3', hidden: true}, h('legend', {}, 'SNMPv3'),
    input('Security name', 'securityName'),
    h('label', {}, 'Security level', h('select', {name: 'securityLevel'},
      h('option', {value: '3'}, 'authPriv'), h('option', {value: '2'}, 'authNoPriv'), h('option', {value: '1'}, 'noAuthNoPriv'))),
    input('Auth protocol', 'authProtocol', {value: 'SHA256'}), input('Auth passphrase', 'authPassphrase', {type: 'password'}),
    input('Privacy protocol', 'privProtocol', {value: 'AES128'}), input('Privacy passphrase', 'privPassphrase', {type: 'password'}));
  const community = input('Read community', 'readCommunity', {value: 'public', type: 'password'});
  version.addEventListener('change', () => { v3.hidden = version.value !== 'v3'; community.hidden = version.value === 'v3'; });
  const progress = h('section', {id: 'job'});
  const form = h('form', {id: 'discovery-form', onsubmit: async (event) => {
    event.preventDefault();
    const f = new FormData(form);
    const seed = {
      potentialTargets: String(f.get('targets')).split(/[\s,]+/).filter(Boolean),
      port: Number(f.get('port')), version: f.get('version'),
      timeout: Number(f.get('timeout')), retries: Number(f.get('retries')),
    };
    if (seed.version === 'v3') {
      Object.assign(seed, {agentType: 'snmp-user', securityName: f.get('securityName'), securityLevel: Number(f.get('securityLevel')),
        authProtocol: f.get('authProtocol'), authPassphrase: f.get('authPassphrase'),
        privProtocol: f.get('privProtocol'), privPassphrase: f.get('privPassphrase')});
    } else {
      Object.assign(seed, {agentType: 'snmp-community', readCommunity: f.get('readCommunity')});
    }
    const modules = String(f.get('modules') || '').split(/[\s,]+/).filter(Boolean);
    if (modules.length) seed.modules = modules;
    try {
      const r = await api('POST', 'promsnmp/discovery?saveSeed=' + (f.get('saveSeed') ? 'true' : 'false'), seed);
      follow(r.data.id);
    } catch (e) { progress.replaceChildren(failure(e)); }
  }},
  input('Targets (IP addresses, host names, CIDR blocks)', 'targets', {required: true, placeholder: '192.0.2.10 192.0.2.0/28'}),
  h('div', {class: 'row'}, input('Port', 'port', {type: 'number', value: '161', min: '1', max: '65535'}),
    h('label', {}, 'Version', version), input('Timeout (ms)', 'timeout', {type: 'number', value: '2000', min: '1', max: '60000'}),
    input('Retries', 'retries', {type: 'number', value: '1', min: '0', max: '10'})),
  community, v3,
  input('Modules (optional, comma-separated; else the module rules choose)', 'modules'),
  h('label', {class: 'check'}, h('input', {type: 'checkbox', name: 'saveSeed'}), 'Save the seed for scheduled discovery'),
  h('button', {type: 'submit'}, 'Discover'));

  const jobs = h('table', {id: 'jobs'});
  const live = stillShown();
  let following = null;
  const follow = async (id) => {
    following = id;
    const tick = async () => {
      // Stop when the user left the page or follows another job.
      if (!live() || following !== id) return;
      let p;
      try { p = (await api('GET', 'promsnmp/discovery/' + encodeURIComponent(id))).data.progress; } catch (e) { progress.replaceChildren(failure(e)); return; }
      progress.replaceChildren(
        h('h2', {}, 'Job ' + p.id + ' — ' + p.state),
        h('progress', {max: String(p.total || 1), value: String(p.probed)}),
        h('p', {id: 'job-counts'}, p.probed + ' of ' + p.total + ' probed: ' + p.found + ' found, ' + (p.noAnswer || 0) + ' no answer, ' +
          (p.refused || 0) + ' refused, ' + (p.unresolved || 0) + ' unresolved'),
        h('table', {id: 'outcomes'}, h('thead', {}, h('tr', {}, ['Address', 'Outcome', 'Detail'].map((t) => h('th', {}, t)))),
          h('tbody', {}, (p.outcomes || []).map((o) => h('tr', {'data-outcome': o.outcome},
            h('td', {}, o.address), h('td', {}, h('span', {class: 'state ' + o.outcome}, o.outcome)),
            h('td', {}, o.outcome === 'found' ? h('a', {href: '#/devices'}, o.sysName || '') : (o.detail || '')))))),
        (p.errors || []).map((e) => h('p', {class: 'error'}, e)));
      if (p.state === 'running') setTimeout(tick, 1000); else loadJobs();
    };
    await tick();
  };
  const loadJobs = async () => {
    try {
      const list = (await api('GET', 'promsnmp/discovery/jobs?limit=20')).data;
      jobs.replaceChildren(h('thead', {}, h('tr', {}, ['Job', 'State', 'Probed', 'Found', 'No answer', 'Refused', 'Started', 'Replica'].map((t) => h('th', {}, t)))),
        h('tbody', {}, list.map((j) => h('tr', {},
          h('td', {}, h('a', {href: '#/discovery', onclick: () => follow(j.id)}, j.id)), h('td', {}, j.state),
          h('td', {}, j.probed + '/' + j.total), h('td', {}, String(j.found)), h('td', {}, String(j.noAnswer || 0)),
          h('td', {}, String(j.refused || 0)), h('td', {}, ago(j.startedAt)), h('td', {}, j.replica || '')))));
    } catch (e) { jobs.replaceChildren(h('tr', {}, h('td', {}, failure(e)))); }
  };
  show(h('h1', {}, 'Discovery'), form, progress, h('h2', {}, 'Recent jobs'), jobs);
  await loadJobs();
}

// --- Fleet and settings ----------------------------------------------------

async function fleetView() {
  const live = stillShown();
  try {
    const [fleet, devices] = await Promise.all([api('GET', 'promsnmp/status/fleet'), api('GET', 'promsnmp/status/devices')]);
    if (!live()) return;
    const f = fleet.data;
    const perReplica = {};
    for (const d of devices.data) perReplica[d.owner || f.members[0].id] = (perReplica[d.owner || f.members[0].id] || 0) + 1;
    // Members whose module files differ from the leader's (or this replica's) stand out.
    const reference = (f.members.find((m) => m.id === f.leader) || f.members.find((m) => m.id === f.replica) || f.members[0] || {}).fingerprint;
    show(h('h1', {}, 'Fleet'),
      f.mode === 'fleet'
        ? h('dl', {class: 'facts', id: 'fleet'},
          h('dt', {}, 'Leader'), h('dd', {}, f.leader || 'none (an election is due)'),
          h('dt', {}, 'Leadership epoch'), h('dd', {}, String(f.epoch)),
          h('dt', {}, 'This replica'), h('dd', {}, f.replica + ' (' + f.role + ')'),
          h('dt', {}, 'Redis'), h('dd', {}, h('span', {class: 'state ' + (f.redis === 'UP' ? 'polled' : 'failed')}, f.redis), ' ', f.error || ''))
        : h('p', {id: 'fleet'}, 'Standalone: no Redis (REDIS_URL unset).'),
      h('h2', {}, 'Members'),
      h('table', {id: 'members'}, h('thead', {}, h('tr', {}, ['Replica', 'Devices polled', 'Version', 'Module fingerprint'].map((t) => h('th', {}, t)))),
        h('tbody', {}, f.members.map((m) => h('tr', {'data-member': m.id},
          h('td', {}, m.id + (m.id === f.leader ? ' (leader)' : '')), h('td', {}, String(perReplica[m.id] || 0)),
          h('td', {}, (m.version || '?') + ' (' + (m.commit || '?') + ')'),
          h('td', {class: m.fingerprint && m.fingerprint !== reference ? 'error-text' : ''},
            (m.fingerprint || '?') + (m.fingerprint && m.fingerprint !== reference ? ' — differs' : '')))))));
  } catch (e) { show(h('h1', {}, 'Fleet'), failure(e)); }
}

async function settingsView() {
  const live = stillShown();
  try {
    const s = (await api('GET', 'promsnmp/settings')).data;
    if (!live()) return;
    show(h('h1', {}, 'Settings'),
      h('p', {class: 'muted'}, 'promsnmp ' + s.version + ' (commit ' + s.commit + ')' + (s.replica ? ', replica ' + s.replica : '') +
        '. The configuration in force; secrets are redacted. It comes from the environment and changes with a restart.'),
      h('table', {id: 'settings'}, h('tbody', {}, Object.entries(s.settings).map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v || '—'))))),
      h('h2', {}, 'Modules'), h('p', {}, s.modules.names.join(', ')),
      h('p', {class: 'muted'}, 'Fingerprint ' + s.modules.fingerprint + (s.modules.files.length ? '; files ' + s.modules.files.join(', ') : '; built-in only')));
  } catch (e) { show(h('h1', {}, 'Settings'), failure(e)); }
}

// --- Routing ---------------------------------------------------------------

async function route() {
  if (refresh) { clearInterval(refresh); refresh = null; }
  const [, name, arg] = (location.hash || '#/devices').split('/');
  for (const link of document.querySelectorAll('nav a[data-view]')) {
    link.classList.toggle('active', link.dataset.view === (name === 'device' ? 'devices' : name));
  }
  if (name === 'device' && arg) return deviceView(decodeURIComponent(arg));
  if (name === 'discovery') return discoveryView();
  if (name === 'fleet') return fleetView();
  if (name === 'settings') return settingsView();
  return devicesView();
}

window.addEventListener('hashchange', route);
document.addEventListener('DOMContentLoaded', route);
