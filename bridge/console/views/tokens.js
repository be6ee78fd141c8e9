// API tokens of the account: list, create (shown once), revoke.

import * as api from '../api.js';
import { field, fill, h, notice } from '../dom.js';
import { ago, dateTime } from '../format.js';

const SCOPES = ['basic.read', 'basic.write', 'sendir', 'sendrawir', 'detectappliance', 'provision',
  'echonetlite.*.read', 'echonetlite.*.write'];

export async function render(main) {
  const tokens = await api.get('/v1/tokens');
  const mine = tokens.find((t) => t.current)?.scopes || [];
  const held = (s) => mine.includes(s) || (mine.includes('basic') && s.startsWith('basic.'));
  const message = h('div', { class: 'message' });
  const name = h('input', { name: 'name', required: true, placeholder: 'e.g. home assistant' });
  const expires = h('input', { name: 'expires_in', type: 'number', min: 60, placeholder: 'never' });
  const boxes = SCOPES.filter(held).map((s) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', value: s, checked: s === 'basic.read' }), ` ${s}`));
  const form = h('form', { class: 'card', onsubmit: async (e) => {
    e.preventDefault();
    const scopes = boxes.map((b) => b.firstChild).filter((c) => c.checked).map((c) => c.value);
    try {
      const { body } = await api.post('/v1/tokens', { form: { name: name.value, scopes: scopes.join(' '), expires_in: expires.value || undefined } });
      await render(main);
      main.querySelector('.message').append(notice('ok', 'Created. Copy the token now; it is not shown again:'),
        h('input', { class: 'code secret', readonly: true, value: body.token, 'aria-label': 'New token' }));
    } catch (err) { fill(message, notice('error', err.message)); }
  } }, h('h2', {}, 'New token'),
  h('div', { class: 'row wrap' }, field('Name', name), field('Expires in (seconds)', expires)),
  h('div', { class: 'scopes' }, h('span', {}, 'Scopes (at most those of the token you signed in with)'), boxes),
  message, h('button', { type: 'submit', class: 'primary' }, 'Create token'));

  const rows = tokens.map((t) => h('tr', { dataset: { token: t.id }, class: t.revoked_at ? 'revoked' : '' },
    h('td', {}, t.name, t.current ? h('span', { class: 'pill acked' }, 'this console') : null),
    h('td', { class: 'small' }, t.scopes.join(' ')),
    h('td', {}, dateTime(t.created_at)),
    h('td', {}, t.last_used_at ? ago(t.last_used_at) : 'never'),
    h('td', {}, t.revoked_at ? `revoked ${dateTime(t.revoked_at)}` : t.expires_at ? `expires ${dateTime(t.expires_at)}` : 'no expiry'),
    h('td', { class: 'actions' }, t.revoked_at ? null : h('button', { type: 'button', class: 'danger', onclick: async () => {
      if (!confirm(`Revoke the token “${t.name}”?${t.current ? ' This console signs out.' : ''}`)) return;
      try { await api.post(`/v1/tokens/${api.seg(t.id)}/revoke`); await render(main); } catch (err) { fill(message, notice('error', err.message)); }
    } }, 'Revoke'))));
  fill(main, h('div', { class: 'heading' }, h('h1', {}, 'Tokens')),
    h('div', { class: 'card scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Name', 'Scopes', 'Created', 'Last used', 'Validity', ''].map((x) => h('th', {}, x)))),
      h('tbody', {}, rows))),
    form);
  return null;
}
