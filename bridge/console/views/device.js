// One device: its newest readings, history charts with a range picker
// (GET /v1/devices/{id}/readings; for a smart meter, power and its energy
// per slot from GET /v1/devices/{id}/energy) and its appliances' controls.

import * as api from '../api.js';
import * as live from '../stream.js';
import { chart } from '../chart.js';
import { energyChart, energyStep, localOffset } from '../energy.js';
import { fill, h, notice } from '../dom.js';
import { SENSORS, ago, value } from '../format.js';
import * as control from './control.js';

const HOUR = 3600e3;
const RANGES = [['1h', HOUR], ['6h', 6 * HOUR], ['24h', 24 * HOUR], ['7d', 7 * 24 * HOUR], ['30d', 30 * 24 * HOUR]];
/** Bucket widths the history offers, in seconds; about 120 buckets a chart. */
const STEPS = [10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400];

export function stepFor(spanMs) {
  const want = spanMs / 1000 / 120;
  return STEPS.find((st) => st >= want) || STEPS[STEPS.length - 1];
}

function localInput(t) {
  const d = new Date(t - new Date(t).getTimezoneOffset() * 60e3);
  return d.toISOString().slice(0, 16);
}

export async function render(main, { params }) {
  const id = params[0];
  const [devices, kumo, appliances] = await Promise.all([
    api.get('/1/devices'), api.get('/v1/devices'), api.get(`/1/devices/${api.seg(id)}/appliances`),
  ]);
  const device = devices.find((d) => d.id === id);
  if (!device) {
    fill(main, notice('error', 'No such device in this account.'), h('a', { href: '#/devices' }, '← Devices'));
    return null;
  }
  const more = kumo.find((d) => d.id === id) || {};
  const isMeter = more.kind === 'smart_meter' || appliances.some((a) => a.type === 'EL_SMART_METER')
    || 'power' in (device.newest_events || {});
  // A meter's raw counter is no chart: its energy per slot is.
  const sensors = isMeter ? ['power'] : ['te', 'hu', 'il'];

  const status = h('span', { class: 'status', dataset: { online: String(device.online) } });
  const paintStatus = (online, at) => {
    status.dataset.online = String(online);
    fill(status, h('span', { class: `dot ${online ? 'on' : 'off'}` }), online ? 'Online' : `Offline · last seen ${ago(at)}`);
  };
  paintStatus(device.online, more.last_seen_at);

  const now = h('div', { class: 'tiles' }, Object.keys(SENSORS).filter((s) => s !== 'mo' || !isMeter).map((s) => {
    const e = device.newest_events?.[s];
    if (!e && !sensors.includes(s)) return null;
    return h('div', { class: 'tile', dataset: { sensor: s } }, h('small', {}, SENSORS[s].label),
      h('strong', { dataset: { device: id, sensor: s } }, e ? (s === 'mo' ? ago(e.created_at) : value(s, e.val)) : '–'));
  }));

  // The range: a preset ending now (kept live), or explicit from/to.
  let range = { preset: '24h', span: 24 * HOUR };
  const charts = h('div', { class: 'charts' });
  const fromInput = h('input', { type: 'datetime-local', 'aria-label': 'From' });
  const toInput = h('input', { type: 'datetime-local', 'aria-label': 'To' });
  const presetButtons = RANGES.map(([label, span]) => h('button', {
    type: 'button', class: 'seg', dataset: { range: label },
    onclick: () => { range = { preset: label, span }; load(); },
  }, label));
  const rangeBar = h('div', { class: 'range' }, presetButtons,
    h('form', { class: 'custom', onsubmit: (e) => {
      e.preventDefault();
      const from = Date.parse(fromInput.value);
      const to = Date.parse(toInput.value);
      if (Number.isNaN(from) || Number.isNaN(to) || from >= to) return;
      range = { from, to };
      load();
    } }, fromInput, '→', toInput, h('button', { type: 'submit', class: 'quiet' }, 'Show')));

  let loading = 0;
  async function load() {
    const mine = ++loading;
    const to = range.preset ? Date.now() : range.to;
    const from = range.preset ? to - range.span : range.from;
    fromInput.value = localInput(from);
    toInput.value = localInput(to);
    for (const b of presetButtons) b.classList.toggle('active', b.dataset.range === range.preset);
    const step = stepFor(to - from);
    const query = (s) => `/v1/devices/${api.seg(id)}/readings?` + new URLSearchParams({
      sensor: s, from: new Date(from).toISOString(), to: new Date(to).toISOString(), step: String(step),
    });
    const slot = energyStep(to - from);
    const energyQuery = `/v1/devices/${api.seg(id)}/energy?` + new URLSearchParams({
      from: new Date(from).toISOString(), to: new Date(to).toISOString(), step: slot, tz: localOffset(),
    });
    try {
      const [results, energy] = await Promise.all([
        Promise.all(sensors.map((s) => api.get(query(s)))),
        isMeter ? api.get(energyQuery) : null,
      ]);
      if (mine !== loading) return;
      fill(charts, energy && h('figure', {},
        h('figcaption', {}, 'Energy', h('span', { class: 'muted' },
          ` · kWh per ${slot}, bought up, sold down; shaded = not fully metered · `),
        h('a', { href: '#', class: 'csv', onclick: (e) => { e.preventDefault(); downloadCsv(energyQuery); } }, 'CSV')),
        energyChart(energy)), results.map((r, i) => h('figure', {},
        h('figcaption', {}, SENSORS[sensors[i]].label, h('span', { class: 'muted' }, ` · avg per ${step >= 3600 ? `${step / 3600} h` : step >= 60 ? `${step / 60} min` : `${step} s`}, band = min–max`)),
        chart({
          sensor: sensors[i], buckets: r.buckets, from, to, stepSecs: step,
          format: (v) => value(sensors[i], v), title: SENSORS[sensors[i]].label,
        }))));
    } catch (e) {
      if (mine === loading) fill(charts, notice('error', `History could not be loaded: ${e.message}`));
    }
  }

  // The token travels in a header, never a URL: fetch, then save a blob.
  async function downloadCsv(query) {
    const text = await api.get(`${query}&format=csv`);
    const a = h('a', { href: URL.createObjectURL(new Blob([text], { type: 'text/csv' })), download: `${id}-energy.csv` });
    a.click();
    URL.revokeObjectURL(a.href);
  }

  const commandLog = h('ol', { class: 'commands', 'aria-live': 'polite' });
  const applianceCards = appliances.map((a) => control.card(a, commandLog));
  fill(main,
    h('p', {}, h('a', { href: '#/devices' }, '← Devices')),
    h('div', { class: 'heading' }, h('h1', {}, device.name || id), status,
      h('span', { class: 'muted' }, id, device.firmware_version ? ` · firmware ${device.firmware_version}` : '')),
    now,
    h('section', { class: 'card' }, h('h2', {}, 'History'), rangeBar, charts),
    h('section', {}, h('h2', {}, 'Appliances'),
      applianceCards.length ? h('div', { class: 'appliances' }, applianceCards.map((c) => c.el))
        : h('p', { class: 'muted' }, 'No appliances on this device.')),
    h('section', { class: 'card' }, h('h2', {}, 'Commands sent from this page'), commandLog));
  await load();

  // Live: the tiles follow readings; a preset range re-queries at most every 15 s.
  let refresh = null;
  const offs = [
    live.on('reading', (e) => {
      if (e.device_id !== id) return;
      const el = now.querySelector(`strong[data-sensor="${CSS.escape(e.sensor)}"]`);
      if (el) el.textContent = e.sensor === 'mo' ? ago(e.created_at) : value(e.sensor, e.val);
      if (range.preset && sensors.includes(e.sensor) && !refresh) {
        refresh = setTimeout(() => { refresh = null; load(); }, 15000);
      }
    }),
    live.on('presence', (e) => { if (e.device_id === id) paintStatus(e.online, e.at); }),
    ...applianceCards.map((c) => c.stop),
  ];
  return () => { offs.forEach((off) => off()); clearTimeout(refresh); loading++; };
}

