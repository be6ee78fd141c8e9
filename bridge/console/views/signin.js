// Sign in with an API token: checked against GET /1/users/me before it is
// kept. The field is a password field and the form never submits to a URL.

import * as api from '../api.js';
import { field, fill, h, notice } from '../dom.js';

export function render(main, { onSignedIn }) {
  const input = h('input', {
    type: 'password', name: 'token', id: 'token', autocomplete: 'off', spellcheck: 'false',
    required: true, placeholder: 'API token',
  });
  const message = h('div', { class: 'message' });
  const button = h('button', { type: 'submit', id: 'signin' }, 'Sign in');
  const form = h('form', { class: 'card signin', onsubmit: submit },
    h('h1', {}, 'Sign in to Kumo'),
    h('p', { class: 'muted' }, 'Use an API token of your account (',
      h('code', {}, 'kumo tokens create --user <id> --scope basic --scope sendir'),
      '). It stays in this browser tab and is sent only to this server.'),
    field('Token', input), message, button);

  async function submit(e) {
    e.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    button.disabled = true;
    fill(message);
    try {
      const me = await api.get('/1/users/me', { token: value });
      api.signIn(value);
      input.value = '';
      await onSignedIn(me);
    } catch (err) {
      const text = err.status === 401 ? 'That token was refused: it is unknown, revoked or expired.'
        : err.status === 403 ? 'That token lacks the basic.read scope the console needs.'
          : err.message;
      fill(message, notice('error', text));
      input.select();
    } finally {
      button.disabled = false;
    }
  }

  fill(main, form);
  input.focus();
}
