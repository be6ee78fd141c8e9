// A time-series chart in plain SVG: the bucket averages as a line, their
// min..max as a band, gaps where a bucket has no readings, axes with round
// ticks, and a readout that follows the pointer. Written for the console;
// colours come from style.css (`.chart.<sensor>`).

import { s } from './dom.js';

const W = 720;
const H = 220;
const PAD = { left: 52, right: 14, top: 14, bottom: 28 };
const MINUTE = 60e3;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 3 * HOUR,
  6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY];

/** A round step (1, 2 or 5 × 10^n) giving about `target` intervals over `span`. */
export function niceStep(span, target = 5) {
  const raw = span / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

/** The y range to show: the data's, padded, on round ticks. */
export function yRange(buckets) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const b of buckets) {
    lo = Math.min(lo, b.min ?? b.avg);
    hi = Math.max(hi, b.max ?? b.avg);
  }
  if (lo === hi) { lo -= 1; hi += 1; }
  const step = niceStep(hi - lo);
  return { lo: Math.floor(lo / step) * step, hi: Math.ceil(hi / step) * step, step };
}

/** Runs of buckets with no missing bucket between them. */
export function runs(buckets, stepMs) {
  const out = [];
  let run = [];
  for (const b of buckets) {
    if (run.length && b.t - run[run.length - 1].t > stepMs * 1.5) {
      out.push(run);
      run = [];
    }
    run.push(b);
  }
  if (run.length) out.push(run);
  return out;
}

/** A tick value with as many decimals as the step needs. */
function axisNumber(v, step) {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  return v.toFixed(Math.min(decimals, 4));
}

function timeLabel(t, span) {
  const d = new Date(t);
  if (span > 2 * DAY) return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/**
 * The chart of one quantity. `buckets` as /v1/devices/{id}/readings returns
 * them; `from`/`to` in ms; `stepSecs` the bucket width; `format(v)` a label.
 */
export function chart({ sensor, buckets, from, to, stepSecs, format, title }) {
  const points = buckets
    .filter((b) => b.avg !== null && b.avg !== undefined)
    .map((b) => ({ t: Date.parse(b.start), avg: b.avg, min: b.min, max: b.max, count: b.count }));
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, class: `chart ${sensor}`, role: 'img',
    'aria-label': `${title}: ${points.length} buckets`, dataset: { sensor, points: points.length },
  });
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - from) / (to - from)) * innerW;
  svg.append(s('rect', { class: 'frame', x: PAD.left, y: PAD.top, width: innerW, height: innerH }));
  if (!points.length) {
    svg.append(s('text', { class: 'empty', x: W / 2, y: H / 2, 'text-anchor': 'middle' },
      'No readings in this range'));
    return svg;
  }
  const { lo, hi, step } = yRange(points);
  const y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * innerH;
  const grid = s('g', { class: 'grid' });
  for (let v = lo; v <= hi + step / 2; v += step) {
    grid.append(s('line', { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
      s('text', { x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, axisNumber(v, step)));
  }
  const span = to - from;
  const tStep = TIME_STEPS.find((st) => span / st <= 7) || TIME_STEPS[TIME_STEPS.length - 1];
  const offset = new Date().getTimezoneOffset() * MINUTE;
  for (let t = Math.ceil((from - offset) / tStep) * tStep + offset; t <= to; t += tStep) {
    grid.append(s('line', { class: 'tick', x1: x(t), x2: x(t), y1: PAD.top, y2: H - PAD.bottom }),
      s('text', { x: x(t), y: H - 8, 'text-anchor': 'middle' }, timeLabel(t, span)));
  }
  svg.append(grid);
  const stepMs = stepSecs * 1000;
  for (const run of runs(points, stepMs)) {
    if (run.length === 1) {
      svg.append(s('circle', { class: 'avg-dot', cx: x(run[0].t), cy: y(run[0].avg), r: 3 }));
      continue;
    }
    const top = run.map((p) => `${x(p.t).toFixed(1)},${y(p.max ?? p.avg).toFixed(1)}`);
    const bottom = run.slice().reverse().map((p) => `${x(p.t).toFixed(1)},${y(p.min ?? p.avg).toFixed(1)}`);
    svg.append(s('polygon', { class: 'band', points: top.concat(bottom).join(' ') }),
      s('polyline', { class: 'avg', points: run.map((p) => `${x(p.t).toFixed(1)},${y(p.avg).toFixed(1)}`).join(' ') }));
  }
  svg.append(readout(svg, points, x, y, format));
  return svg;
}

/** The pointer readout: a cursor line and the nearest bucket's values. */
function readout(svg, points, x, y, format) {
  const cursor = s('line', { class: 'cursor', y1: PAD.top, y2: H - PAD.bottom, visibility: 'hidden' });
  const dot = s('circle', { class: 'cursor-dot', r: 4, visibility: 'hidden' });
  const label = s('text', { class: 'readout', x: PAD.left + 6, y: PAD.top + 14 });
  const hit = s('rect', { class: 'hit', x: PAD.left, y: PAD.top, width: W - PAD.left - PAD.right, height: H - PAD.top - PAD.bottom });
  hit.addEventListener('pointermove', (e) => {
    const box = svg.getBoundingClientRect();
    const px = ((e.clientX - box.left) / box.width) * W;
    let best = points[0];
    for (const p of points) if (Math.abs(x(p.t) - px) < Math.abs(x(best.t) - px)) best = p;
    for (const el of [cursor, dot]) el.setAttribute('visibility', 'visible');
    cursor.setAttribute('x1', x(best.t));
    cursor.setAttribute('x2', x(best.t));
    dot.setAttribute('cx', x(best.t));
    dot.setAttribute('cy', y(best.avg));
    const range = best.min !== best.max ? ` (${format(best.min)} – ${format(best.max)})` : '';
    label.textContent = `${new Date(best.t).toLocaleString()}  ${format(best.avg)}${range}`;
  });
  hit.addEventListener('pointerleave', () => {
    for (const el of [cursor, dot]) el.setAttribute('visibility', 'hidden');
    label.textContent = '';
  });
  return s('g', {}, cursor, dot, label, hit);
}
