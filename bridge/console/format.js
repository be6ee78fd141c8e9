// How values and times read on screen.

/** What each quantity in `newest_events` and `/v1/devices/{id}/readings` is. */
export const SENSORS = {
  te: { label: 'Temperature', unit: '°C', digits: 1 },
  hu: { label: 'Humidity', unit: '%', digits: 0 },
  il: { label: 'Illuminance', unit: 'lx', digits: 0 },
  mo: { label: 'Motion', unit: '', digits: 0 },
  power: { label: 'Power', unit: 'W', digits: 0 },
  energy: { label: 'Energy', unit: 'kWh', digits: 2 },
};

export function value(sensor, val) {
  const s = SENSORS[sensor];
  if (val === null || val === undefined || Number.isNaN(val)) return '–';
  if (!s) return String(val);
  const n = Number(val).toFixed(s.digits);
  return s.unit ? `${n} ${s.unit}` : n;
}

/** "12 s ago", "5 min ago", … or the date for old times. */
export function ago(when, now = Date.now()) {
  if (!when) return 'never';
  const t = typeof when === 'number' ? when : Date.parse(when);
  if (Number.isNaN(t)) return '–';
  const secs = Math.max(0, Math.round((now - t) / 1000));
  if (secs < 5) return 'just now';
  if (secs < 60) return `${secs} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
  return dateTime(t);
}

export function dateTime(when) {
  if (!when) return '–';
  const d = new Date(when);
  return Number.isNaN(d.getTime()) ? '–' : d.toLocaleString();
}

export function time(when) {
  const d = new Date(when);
  return Number.isNaN(d.getTime()) ? '–' : d.toLocaleTimeString();
}
