// The device list: online state, last seen and the newest readings, kept
// current by the live stream (readings and presence) without reloading.

import * as api from '../api.js';
import * as live from '../stream.js';
import { fill, h } from '../dom.js';
import { SENSORS, ago, dateTime, value } from '../format.js';

const COLUMNS = ['te', 'hu', 'il', 'mo', 'power'];

function statusCell(d) {
  const cell = h('td', { class: 'status', dataset: { device: d.id, field: 'status' } });
  paintStatus(cell, d);
  return cell;
}

function paintStatus(cell, d) {
  cell.dataset.online = d.online ? 'true' : 'false';
  fill(cell, h('span', { class: `dot ${d.online ? 'on' : 'off'}` }), d.online ? 'Online' : 'Offline');
}

function readingCell(id, sensor, event) {
  const cell = h('td', { class: 'reading', dataset: { device: id, sensor } });
  paintReading(cell, sensor, event);
  return cell;
}

function paintReading(cell, sensor, event) {
  if (!event) { fill(cell, '–'); return; }
  cell.dataset.at = event.created_at;
  cell.title = `${SENSORS[sensor].label} at ${dateTime(event.created_at)}`;
  fill(cell, sensor === 'mo' ? ago(event.created_at) : value(sensor, event.val));
}

function flash(el) {
  el.classList.remove('flash');
  void el.offsetWidth; // restart the animation
  el.classList.add('flash');
}

export async function render(main) {
  const [nature, kumo] = await Promise.all([api.get('/1/devices'), api.get('/v1/devices')]);
  const extra = new Map(kumo.map((d) => [d.id, d]));
  const rows = new Map();
  const tbody = h('tbody');
  for (const d of nature) {
    const more = extra.get(d.id) || {};
    const seen = h('td', { class: 'seen', dataset: { device: d.id, field: 'seen', at: more.last_seen_at || '' } },
      d.online ? 'now' : ago(more.last_seen_at));
    const row = h('tr', { dataset: { device: d.id } },
      h('td', {}, h('a', { href: `#/device/${encodeURIComponent(d.id)}`, class: 'name' }, d.name || d.id),
        h('div', { class: 'muted small' }, [d.name && d.name !== d.id ? d.id : null, more.node].filter(Boolean).join(' · '))),
      statusCell(d), seen,
      COLUMNS.map((s) => readingCell(d.id, s, d.newest_events?.[s])));
    rows.set(d.id, { row, device: { ...d, last_seen_at: more.last_seen_at } });
    tbody.append(row);
  }
  const table = h('table', { class: 'devices' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Device'), h('th', {}, 'Status'), h('th', {}, 'Last seen'),
      COLUMNS.map((s) => h('th', { class: 'num' }, SENSORS[s].label)))),
    tbody);
  fill(main,
    h('div', { class: 'heading' }, h('h1', {}, 'Devices'),
      h('span', { class: 'muted' }, `${nature.length} device${nature.length === 1 ? '' : 's'}`)),
    nature.length ? h('div', { class: 'card scroll' }, table)
      : h('div', { class: 'card' }, h('p', {}, 'No devices yet.'),
        h('p', { class: 'muted' }, 'Register one with ', h('code', {}, 'kumo devices add <id> --user <account>'),
          ' or let a device enrol itself with a claim code.')));

  const offReading = live.on('reading', (e) => {
    const cell = tbody.querySelector(`td.reading[data-device="${CSS.escape(e.device_id)}"][data-sensor="${CSS.escape(e.sensor)}"]`);
    if (!cell) return;
    if (cell.dataset.at && Date.parse(cell.dataset.at) > Date.parse(e.created_at)) return;
    paintReading(cell, e.sensor, { val: e.val, created_at: e.created_at });
    flash(cell);
  });
  const offPresence = live.on('presence', (e) => {
    const entry = rows.get(e.device_id);
    if (!entry) return;
    entry.device.online = e.online;
    entry.device.last_seen_at = e.at;
    const status = entry.row.querySelector('td.status');
    paintStatus(status, entry.device);
    const seen = entry.row.querySelector('td.seen');
    seen.dataset.at = e.at;
    seen.textContent = e.online ? 'now' : ago(e.at);
    flash(status);
  });
  // "12 s ago" ages while the page is open.
  const timer = setInterval(() => {
    for (const { row, device } of rows.values()) {
      if (!device.online) row.querySelector('td.seen').textContent = ago(device.last_seen_at);
      const mo = row.querySelector('td.reading[data-sensor="mo"]');
      if (mo.dataset.at) mo.textContent = ago(mo.dataset.at);
    }
  }, 5000);
  return () => { offReading(); offPresence(); clearInterval(timer); };
}
