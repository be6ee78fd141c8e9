// Automation rules: list (with their executions), enable/disable, delete,
// and create — from a small form that writes the rule document, which can
// be edited as JSON before it is sent (POST /v1/rules).

import * as api from '../api.js';
import { field, fill, h, notice, select } from '../dom.js';
import { SENSORS, dateTime } from '../format.js';

function triggerText(trigger) {
  const [kind, t] = Object.entries(trigger || {})[0] || [];
  if (!kind) return '–';
  if (kind === 'threshold') return `${t.device} ${SENSORS[t.sensor]?.label || t.sensor} ${t.op} ${t.value}`;
  if (kind === 'schedule') return `at ${t.at}${t.days ? ` on ${t.days.join(', ')}` : ''} (${t.time_zone})`;
  return `${kind} ${Object.entries(t).map(([k, v]) => `${k}=${v}`).join(' ')}`;
}

function actionText(action) {
  const [kind, a] = Object.entries(action)[0] || [];
  if (kind === 'event') return `event ${a.name}`;
  if (kind === 'webhook') return `webhook ${a.url}`;
  if (kind === 'command') return `${a.kind} on ${a.appliance}`;
  return kind || '?';
}

function executions(rule) {
  const box = h('div', { class: 'executions' }, h('p', { class: 'muted' }, 'Loading…'));
  api.get(`/v1/rules/${api.seg(rule.id)}/executions?limit=20`).then((list) => {
    fill(box, list.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Fired'), h('th', {}, 'Outcome'), h('th', {}, 'Cause'))),
      h('tbody', {}, list.map((x) => h('tr', {}, h('td', {}, dateTime(x.fired_at)),
        h('td', { class: `outcome ${x.outcome}` }, x.outcome),
        h('td', { class: 'small' }, Object.entries(x.cause || {}).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(', '))))))
      : h('p', { class: 'muted' }, 'Not fired yet.'));
  }).catch((e) => fill(box, notice('error', e.message)));
  return box;
}

function builder(devices, onDraft) {
  const name = h('input', { name: 'name', required: true, value: 'Too hot', maxlength: 100 });
  const device = select({ name: 'device' }, devices.map((d) => [d.id, d.name || d.id]));
  const sensor = select({ name: 'sensor' }, ['te', 'hu', 'il'].map((s) => [s, SENSORS[s].label]), 'te');
  const op = select({ name: 'op' }, [['above', 'rises above'], ['below', 'falls below']], 'above');
  const value = h('input', { name: 'value', type: 'number', step: 'any', value: '28', required: true });
  const eventName = h('input', { name: 'event', value: 'too-hot' });
  const draft = () => onDraft({
    name: name.value,
    trigger: { threshold: { device: device.value, sensor: sensor.value, op: op.value, value: Number(value.value) } },
    actions: [{ event: { name: eventName.value || 'rule-fired' } }],
  });
  for (const el of [name, device, sensor, op, value, eventName]) el.addEventListener('input', draft);
  draft();
  return h('div', { class: 'row wrap' }, field('Name', name), field('When', device), field('', sensor),
    field('', op), field('Value', value), field('Then publish event', eventName));
}

export async function render(main) {
  const [rules, devices] = await Promise.all([api.get('/v1/rules'), api.get('/1/devices')]);
  const message = h('div', { class: 'message' });
  const json = h('textarea', { name: 'rule', rows: 9, spellcheck: 'false', class: 'code', 'aria-label': 'Rule document (JSON)' });
  const form = h('form', { class: 'card', id: 'new-rule', onsubmit: async (e) => {
    e.preventDefault();
    let doc;
    try { doc = JSON.parse(json.value); } catch (err) {
      fill(message, notice('error', `The rule is not valid JSON: ${err.message}`));
      return;
    }
    try {
      await api.post('/v1/rules', { json: doc });
      render(main);
    } catch (err) {
      fill(message, notice('error', err.message));
    }
  } }, h('h2', {}, 'New rule'),
  devices.length ? builder(devices, (d) => { json.value = JSON.stringify(d, null, 2); })
    : h('p', { class: 'muted' }, 'Rules watch devices; this account has none yet. The document below can still be edited.'),
  h('details', {}, h('summary', {}, 'Rule document (JSON) — conditions, schedules, commands and webhooks are written here'), json),
  message, h('button', { type: 'submit', class: 'primary' }, 'Create rule'));

  const rows = rules.map((r) => {
    const detail = h('tr', { class: 'detail', hidden: true }, h('td', { colspan: 5 }));
    const row = h('tr', { dataset: { rule: r.id } },
      h('td', {}, h('strong', {}, r.name)),
      h('td', {}, triggerText(r.trigger)),
      h('td', {}, (r.actions || []).map(actionText).join('; ')),
      h('td', {}, h('label', { class: 'switch' }, h('input', {
        type: 'checkbox', checked: r.enabled, 'aria-label': 'Enabled',
        onchange: async (e) => {
          try { await api.call('PATCH', `/v1/rules/${api.seg(r.id)}`, { json: { enabled: e.target.checked } }); } catch (err) {
            e.target.checked = !e.target.checked;
            fill(message, notice('error', err.message));
          }
        },
      }), ' enabled')),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'quiet', onclick: () => {
          detail.hidden = !detail.hidden;
          if (!detail.hidden) fill(detail.firstChild, executions(r));
        } }, 'Executions'),
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!confirm(`Delete the rule “${r.name}” and its execution log?`)) return;
          try { await api.del(`/v1/rules/${api.seg(r.id)}`); render(main); } catch (err) { fill(message, notice('error', err.message)); }
        } }, 'Delete')));
    return [row, detail];
  });
  fill(main, h('div', { class: 'heading' }, h('h1', {}, 'Rules'), h('span', { class: 'muted' }, `${rules.length}`)),
    rules.length ? h('div', { class: 'card scroll' }, h('table', { class: 'rules' },
      h('thead', {}, h('tr', {}, ['Name', 'When', 'Then', 'State', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows))) : h('p', { class: 'muted' }, 'No rules yet.'),
    form);
  return null;
}
