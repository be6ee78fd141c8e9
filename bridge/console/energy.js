// A smart meter's energy per slot in plain SVG (GET /v1/devices/{id}/energy):
// bought as bars above the axis, sold below it, slots whose energy is not
// known (gaps) shaded, never drawn as zero; a readout follows the pointer.
// Colours come from style.css (`.chart.kwh`).

import { s } from './dom.js';
import { niceStep } from './chart.js';

const W = 720;
const H = 220;
const PAD = { left: 52, right: 14, top: 14, bottom: 28 };
const HOUR = 3600e3;

/** The slot length for a range: about 150 bars at most. */
export function energyStep(spanMs) {
  if (spanMs <= 3 * 24 * HOUR) return '30m';
  if (spanMs <= 7 * 24 * HOUR) return '1h';
  return '1d';
}

/** This browser's UTC offset as `tz` takes it (`+09:00`), so days start at local midnight. */
export function localOffset(date = new Date()) {
  const minutes = -date.getTimezoneOffset();
  const abs = Math.abs(minutes);
  const two = (n) => String(n).padStart(2, '0');
  return `${minutes < 0 ? '-' : '+'}${two(Math.floor(abs / 60))}:${two(abs % 60)}`;
}

/** The y range: 0 and every bar, on round ticks. */
function yRange(slots) {
  let hi = 0;
  let lo = 0;
  for (const sl of slots) {
    hi = Math.max(hi, sl.bought_kwh ?? 0);
    lo = Math.min(lo, -(sl.sold_kwh ?? 0));
  }
  if (hi === lo) hi = 1;
  const step = niceStep(hi - lo, 4);
  return { lo: Math.floor(lo / step) * step, hi: Math.ceil(hi / step) * step, step };
}

function slotLabel(t, stepMs) {
  const d = new Date(t);
  if (stepMs >= 24 * HOUR) return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** The chart of `body` as the energy endpoint returns it. */
export function energyChart(body) {
  const from = Date.parse(body.from);
  const to = Date.parse(body.to);
  const slots = body.slots.map((sl) => ({ ...sl, t: Date.parse(sl.start) }));
  const gaps = slots.filter((sl) => sl.gap).length;
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart kwh', role: 'img',
    'aria-label': `Energy: ${slots.length} slots, ${gaps} gaps`,
    dataset: { sensor: 'kwh', slots: slots.length, gaps },
  });
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - from) / (to - from)) * innerW;
  const { lo, hi, step } = yRange(slots);
  const y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * innerH;
  svg.append(s('rect', { class: 'frame', x: PAD.left, y: PAD.top, width: innerW, height: innerH }));
  const grid = s('g', { class: 'grid' });
  for (let v = lo; v <= hi + step / 2; v += step) {
    grid.append(s('line', { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
      s('text', { x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, v.toFixed(step < 1 ? 1 : 0)));
  }
  svg.append(grid);
  const slotW = slots.length ? innerW / slots.length : innerW;
  const bars = s('g', {});
  for (const sl of slots) {
    const left = x(sl.t) + slotW * 0.1;
    const width = Math.max(1, slotW * 0.8);
    if (sl.gap) {
      bars.append(s('rect', { class: 'gap', x: x(sl.t), y: PAD.top, width: slotW, height: innerH }));
    }
    if (sl.bought_kwh !== null) {
      bars.append(s('rect', { class: 'bought', x: left, y: y(sl.bought_kwh), width, height: y(0) - y(sl.bought_kwh) }));
    }
    if (sl.sold_kwh) {
      bars.append(s('rect', { class: 'sold', x: left, y: y(0), width, height: y(-sl.sold_kwh) - y(0) }));
    }
  }
  svg.append(bars, s('line', { class: 'zero', x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0) }));
  const stepMs = { '30m': HOUR / 2, '1h': HOUR, '1d': 24 * HOUR }[body.step] || HOUR;
  if (slots.length) svg.append(readout(svg, slots, x, slotW, stepMs));
  return svg;
}

/** The pointer readout: the slot under the pointer, its energy and peak. */
function readout(svg, slots, x, slotW, stepMs) {
  const label = s('text', { class: 'readout', x: PAD.left + 6, y: PAD.top + 14 });
  const hit = s('rect', { class: 'hit', x: PAD.left, y: PAD.top, width: W - PAD.left - PAD.right, height: H - PAD.top - PAD.bottom });
  const kwh = (v) => (v === null ? 'unknown' : `${v.toFixed(2)} kWh`);
  hit.addEventListener('pointermove', (e) => {
    const box = svg.getBoundingClientRect();
    const px = ((e.clientX - box.left) / box.width) * W;
    const sl = slots.find((c) => px >= x(c.t) && px < x(c.t) + slotW) || slots[slots.length - 1];
    const sold = sl.sold_kwh ? `, sold ${kwh(sl.sold_kwh)}` : '';
    const peak = sl.peak_w === null ? '' : `, peak ${Math.round(sl.peak_w)} W`;
    label.textContent = `${slotLabel(sl.t, stepMs)}  bought ${kwh(sl.bought_kwh)}${sold}${peak}${sl.gap ? ' (gap)' : ''}`;
  });
  hit.addEventListener('pointerleave', () => { label.textContent = ''; });
  return s('g', {}, label, hit);
}
