// Claim codes (the `provision` scope): codes a device presents to enrol
// itself into the account. The code is shown once, at creation.

import * as api from '../api.js';
import { field, fill, h, notice } from '../dom.js';
import { dateTime } from '../format.js';

export async function render(main) {
  let codes;
  try {
    codes = await api.get('/v1/claim_codes');
  } catch (e) {
    if (e.status !== 403) throw e;
    fill(main, h('h1', {}, 'Claim codes'),
      notice('error', 'This token lacks the provision scope; sign in with a token that has it to manage claim codes.'));
    return null;
  }
  const message = h('div', { class: 'message' });
  const uses = h('input', { name: 'uses', type: 'number', min: 1, value: '1', required: true });
  const expires = h('input', { name: 'expires_in', type: 'number', min: 60, value: '3600', required: true });
  const form = h('form', { class: 'card', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const { body } = await api.post('/v1/claim_codes', { form: { uses: uses.value, expires_in: expires.value } });
      await render(main);
      main.querySelector('.message').append(notice('ok', 'Created. Give this code to the device now; it is not shown again:'),
        h('input', { class: 'code secret', readonly: true, value: body.code, 'aria-label': 'New claim code' }));
    } catch (err) { fill(message, notice('error', err.message)); }
  } }, h('h2', {}, 'New claim code'),
  h('div', { class: 'row wrap' }, field('Devices it enrols', uses), field('Valid for (seconds, at most 7 days)', expires)),
  message, h('button', { type: 'submit', class: 'primary' }, 'Create claim code'));

  const rows = codes.map((c) => h('tr', { dataset: { claim: c.id }, class: c.revoked_at ? 'revoked' : '' },
    h('td', { class: 'small' }, c.id), h('td', { class: 'num' }, `${c.uses_left} of ${c.uses}`),
    h('td', {}, dateTime(c.created_at)), h('td', {}, c.revoked_at ? `revoked ${dateTime(c.revoked_at)}` : dateTime(c.expires_at)),
    h('td', { class: 'actions' }, c.revoked_at ? null : h('button', { type: 'button', class: 'danger', onclick: async () => {
      try { await api.post(`/v1/claim_codes/${api.seg(c.id)}/revoke`); await render(main); } catch (err) { fill(message, notice('error', err.message)); }
    } }, 'Revoke'))));
  fill(main, h('div', { class: 'heading' }, h('h1', {}, 'Claim codes')),
    h('p', { class: 'muted' }, 'A device enrols itself by sending a claim code with its CSR to the provisioning listener (see the README).'),
    codes.length ? h('div', { class: 'card scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Id', 'Uses left', 'Created', 'Expires', ''].map((x) => h('th', {}, x)))),
      h('tbody', {}, rows))) : h('p', { class: 'muted' }, 'No claim codes yet.'),
    form);
  return null;
}
