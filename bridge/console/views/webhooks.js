// Webhooks: list, create (the signing secret is shown once), test ping,
// re-enable, delete, and each webhook's delivery log with every attempt.

import * as api from '../api.js';
import { field, fill, h, notice } from '../dom.js';
import { dateTime } from '../format.js';

function deliveries(w) {
  const box = h('div', { class: 'executions' }, h('p', { class: 'muted' }, 'Loading…'));
  api.get(`/v1/webhooks/${api.seg(w.id)}/deliveries?limit=20`).then((list) => {
    fill(box, list.length ? h('table', {},
      h('thead', {}, h('tr', {}, ['Created', 'Kind', 'Status', 'Attempts', 'Last answer'].map((t) => h('th', {}, t)))),
      h('tbody', {}, list.map((d) => h('tr', {},
        h('td', {}, dateTime(d.created_at)), h('td', {}, d.kind),
        h('td', { class: `outcome ${d.status}` }, d.status), h('td', { class: 'num' }, d.attempts),
        h('td', { class: 'small' }, d.last_status_code ? `HTTP ${d.last_status_code}` : '', d.last_error ? ` ${d.last_error}` : '')))))
      : h('p', { class: 'muted' }, 'No deliveries yet.'));
  }).catch((e) => fill(box, notice('error', e.message)));
  return box;
}

export async function render(main) {
  const hooks = await api.get('/v1/webhooks');
  const message = h('div', { class: 'message' });
  const url = h('input', { name: 'url', type: 'url', required: true, placeholder: 'https://example.net/hooks/kumo' });
  const events = h('input', { name: 'events', placeholder: 'presence command rule_execution' });
  const form = h('form', { class: 'card', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const { body } = await api.post('/v1/webhooks', { form: { url: url.value, events: events.value } });
      await render(main);
      main.querySelector('.message').append(notice('ok', `Created. Its signing secret, shown only now: ${body.secret}`));
    } catch (err) { fill(message, notice('error', err.message)); }
  } }, h('h2', {}, 'New webhook'), h('div', { class: 'row wrap' }, field('URL', url),
    field('Events', events, 'Space-separated kinds; empty = every kind but reading.')),
  message, h('button', { type: 'submit', class: 'primary' }, 'Create webhook'));

  const act = async (fn) => { try { await fn(); await render(main); } catch (err) { fill(message, notice('error', err.message)); } };
  const rows = hooks.map((w) => {
    const detail = h('tr', { class: 'detail', hidden: true }, h('td', { colspan: 5 }));
    return [h('tr', { dataset: { webhook: w.id } },
      h('td', { class: 'break' }, w.url),
      h('td', {}, w.events.length ? w.events.join(' ') : 'all but reading'),
      h('td', {}, w.enabled ? 'enabled' : `disabled${w.disabled_reason ? `: ${w.disabled_reason}` : ''}`,
        w.consecutive_failures ? h('div', { class: 'small muted' }, `${w.consecutive_failures} failures in a row`) : null),
      h('td', {}, dateTime(w.created_at)),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'quiet', onclick: () => {
          detail.hidden = !detail.hidden;
          if (!detail.hidden) fill(detail.firstChild, deliveries(w));
        } }, 'Deliveries'),
        h('button', { type: 'button', class: 'quiet', onclick: () => act(() => api.post(`/v1/webhooks/${api.seg(w.id)}/test`)) }, 'Ping'),
        w.enabled ? null : h('button', { type: 'button', class: 'quiet', onclick: () => act(() => api.post(`/v1/webhooks/${api.seg(w.id)}/enable`)) }, 'Enable'),
        h('button', { type: 'button', class: 'danger', onclick: () => {
          if (confirm(`Delete the webhook to ${w.url} and its delivery log?`)) act(() => api.del(`/v1/webhooks/${api.seg(w.id)}`));
        } }, 'Delete'))), detail];
  });
  fill(main, h('div', { class: 'heading' }, h('h1', {}, 'Webhooks'), h('span', { class: 'muted' }, `${hooks.length}`)),
    hooks.length ? h('div', { class: 'card scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['URL', 'Events', 'State', 'Created', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows))) : h('p', { class: 'muted' }, 'No webhooks yet.'),
    form);
  return null;
}
