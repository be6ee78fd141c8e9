// Appliance controls (aircon, TV, light, learned signals, smart-meter
// properties) and the live status of every command they send:
// queued → sent → acked, or failed / expired with the device's reason.
// Status comes from the live stream's `command` events and, when the stream
// is down or a command is still open after 10 s, from GET /v1/commands/{id}
// with `Prefer: wait` until the command is final.

import * as api from '../api.js';
import * as live from '../stream.js';
import { field, fill, h, select } from '../dom.js';
import { time } from '../format.js';

const RANK = { sending: -1, queued: 0, sent: 1, acked: 2, failed: 2, expired: 2 };
const FINAL = new Set(['acked', 'failed', 'expired']);
const LABEL = {
  sending: 'sending…', queued: 'queued', sent: 'sent to the device', acked: 'acked',
  failed: 'failed', expired: 'expired', refused: 'refused',
};

// The stream's word on a command may come before the POST's answer names it.
const latest = new Map();
const watchers = new Map();
live.on('command', (e) => {
  latest.set(e.command_id, e.status);
  if (latest.size > 500) latest.delete(latest.keys().next().value);
  watchers.get(e.command_id)?.(e.status);
});

/** A line in `log` following one command; returns {start(id), refused(msg)}. */
function tracker(log, label) {
  const pill = h('span', { class: 'pill sending' }, LABEL.sending);
  const reason = h('span', { class: 'reason' });
  const li = h('li', { dataset: { status: 'sending' } }, h('time', {}, time(Date.now())), ' ', label, ' ', pill, reason);
  log.prepend(li);
  while (log.children.length > 30) log.lastChild.remove();
  let status = 'sending';
  let id = null;
  let done = false;
  const show = (next, why) => {
    if (done || (RANK[next] ?? 0) < RANK[status]) return;
    status = next;
    li.dataset.status = next;
    pill.className = `pill ${next}`;
    pill.textContent = LABEL[next] || next;
    if (why) reason.textContent = ` — ${why}`;
    if (FINAL.has(next)) {
      done = true;
      watchers.delete(id);
      if (next !== 'acked' && !why) details();
    }
  };
  const details = async () => {
    try {
      const view = await api.get(`/v1/commands/${api.seg(id)}`);
      if (view.error) reason.textContent = ` — ${view.error}`;
    } catch { /* the status stays; the reason is a nicety */ }
  };
  const poll = async () => {
    while (!done && li.isConnected) {
      try {
        const view = await api.get(`/v1/commands/${api.seg(id)}`, { headers: { Prefer: 'wait=25' } });
        if (done) return;
        if (FINAL.has(view.status)) { show(view.status, view.error); return; }
        show(view.status);
      } catch (e) {
        if (e.status === 401 || e.status === 404) return;
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  };
  return {
    start(commandId) {
      id = commandId;
      li.dataset.command = id;
      show('queued');
      const seen = latest.get(id);
      if (seen) show(seen);
      if (!done) {
        watchers.set(id, (s) => show(s));
        // The stream normally brings every change; polling (a held request
        // each, and browsers allow few per server) is the fallback for when
        // it is down or the command is slow.
        if (live.isLive()) setTimeout(() => { if (!done) poll(); }, 10000);
        else poll();
      }
    },
    refused(message) {
      done = true;
      li.dataset.status = 'refused';
      pill.className = 'pill failed';
      pill.textContent = LABEL.refused;
      reason.textContent = ` — ${message}`;
    },
  };
}

async function send(log, path, form, label) {
  const t = tracker(log, label);
  try {
    const r = await api.post(path, { form });
    const id = r.headers.get('x-kumo-command-id');
    if (id) t.start(id);
    else t.refused('the server named no command');
  } catch (e) {
    t.refused(e.message);
  }
}

function describe(state) {
  if (!state || typeof state !== 'object') return '–';
  return Object.entries(state).filter(([k, v]) => k !== 'updated_at' && v !== '' && v !== null && typeof v !== 'object')
    .map(([k, v]) => `${k} ${v}`).join(' · ') || '–';
}

function aircon(a, log, stateLine) {
  const modes = a.aircon?.range?.modes || {};
  const settings = a.settings || {};
  const modeSel = select({ name: 'operation_mode' }, Object.keys(modes), settings.mode);
  const extras = h('div', { class: 'row' });
  const selects = {};
  const build = () => {
    const m = modes[modeSel.value] || {};
    fill(extras);
    for (const [key, name, label] of [['temp', 'temperature', 'Temperature'], ['vol', 'air_volume', 'Air volume'],
      ['dir', 'air_direction', 'Direction'], ['dirh', 'air_direction_h', 'Horizontal']]) {
      const options = (m[key] || []).map((v) => [v, v === '' ? (key === 'temp' ? '–' : 'auto') : v]);
      if (!options.length) { delete selects[name]; continue; }
      selects[name] = select({ name }, options, settings[key]);
      extras.append(field(label, selects[name]));
    }
  };
  modeSel.addEventListener('change', build);
  build();
  const path = `/1/appliances/${api.seg(a.id)}/aircon_settings`;
  const press = (button, label) => h('button', {
    type: 'button', dataset: { action: `aircon-${button}` },
    onclick: () => send(log, path, { button }, `${a.nickname}: ${label}`),
  }, label);
  const form = h('form', { class: 'control', onsubmit: (e) => {
    e.preventDefault();
    const body = { operation_mode: modeSel.value, button: '' };
    for (const [name, el] of Object.entries(selects)) body[name] = el.value;
    const what = `${modeSel.value}${body.temperature ? ` ${body.temperature}°` : ''}`;
    send(log, path, body, `${a.nickname}: on, ${what}`);
  } }, h('div', { class: 'row' }, field('Mode', modeSel)), extras,
  h('div', { class: 'buttons' },
    h('button', { type: 'submit', class: 'primary', dataset: { action: 'send-aircon' } }, 'Turn on with these settings'),
    press('power-off', 'Turn off'),
    (a.aircon?.range?.fixedButtons || []).filter((b) => b !== 'power-off').map((b) => press(b, b))));
  stateLine.textContent = describe(settings);
  return form;
}

function buttons(a, log, kind, list) {
  return h('div', { class: 'buttons' }, (list || []).map((b) => h('button', {
    type: 'button', dataset: { button: b.name },
    onclick: () => send(log, `/1/appliances/${api.seg(a.id)}/${kind}`, { button: b.name }, `${a.nickname}: ${b.label || b.name}`),
  }, b.label || b.name)));
}

/** The card of appliance `a`; commands are listed in `log`. */
export function card(a, log) {
  const stateLine = h('p', { class: 'state muted' });
  const body = [];
  let stateKey = null;
  if (a.type === 'AC' && a.aircon) {
    body.push(aircon(a, log, stateLine));
    stateKey = 'aircon';
  } else if (a.type === 'TV' && a.tv) {
    body.push(buttons(a, log, 'tv', a.tv.buttons));
    stateLine.textContent = describe(a.tv.state);
    stateKey = 'tv';
  } else if (a.type === 'LIGHT' && a.light) {
    body.push(buttons(a, log, 'light', a.light.buttons));
    stateLine.textContent = describe(a.light.state);
    stateKey = 'light';
  } else if (a.type === 'EL_SMART_METER') {
    body.push(h('dl', { class: 'props' }, (a.smart_meter?.echonetlite_properties || []).map((p) => [
      h('dt', {}, p.name), h('dd', {}, p.val)])));
  }
  if (a.signals?.length) {
    body.push(h('div', { class: 'buttons signals' }, h('small', { class: 'muted' }, 'Signals'), a.signals.map((sig) => h('button', {
      type: 'button', dataset: { signal: sig.id },
      onclick: () => send(log, `/1/signals/${api.seg(sig.id)}/send`, {}, `${a.nickname}: ${sig.name}`),
    }, sig.name))));
  }
  const el = h('article', { class: 'card appliance', dataset: { appliance: a.id, type: a.type } },
    h('h3', {}, a.nickname, h('span', { class: 'muted small' }, ` ${a.type}${a.model ? ` · ${a.model.name || a.model.id}` : ''}`)),
    stateKey ? stateLine : null, body);
  const stop = live.on('appliance_state', (e) => {
    if (e.device_id === a.device?.id && stateKey && e.appliances?.[stateKey]) {
      stateLine.textContent = describe(e.appliances[stateKey]);
    }
  });
  return { el, stop };
}
