// The console shell: sign-in state, the hash router (#/devices,
// #/device/<id>, #/rules, …), the navigation bar and the live-stream badge.

import * as api from './api.js';
import * as live from './stream.js';
import { fill, h } from './dom.js';
import * as signin from './views/signin.js';
import * as devices from './views/devices.js';
import * as device from './views/device.js';
import * as rules from './views/rules.js';
import * as webhooks from './views/webhooks.js';
import * as tokens from './views/tokens.js';
import * as claims from './views/claims.js';

const ROUTES = {
  devices, device, rules, webhooks, tokens, 'claim-codes': claims,
};

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const badge = document.getElementById('live');
const who = document.getElementById('who');
const signoutButton = document.getElementById('signout');
let cleanup = null;
let account = null;

function showLive(state) {
  badge.hidden = false;
  badge.dataset.state = state;
  badge.textContent = { live: 'Live', connecting: 'Connecting…', offline: 'Reconnecting…' }[state] || state;
  badge.title = state === 'live' ? 'Receiving live events' : 'The live event stream is not connected';
}

function route() {
  const [, name = 'devices', ...rest] = location.hash.split('/');
  return { name, params: rest.map(decodeURIComponent) };
}

async function render() {
  cleanup?.();
  cleanup = null;
  if (!api.token()) {
    nav.hidden = true;
    signoutButton.hidden = true;
    badge.hidden = true;
    who.textContent = '';
    cleanup = signin.render(main, { onSignedIn: start });
    return;
  }
  const { name, params } = route();
  const view = ROUTES[name] || devices;
  for (const a of nav.querySelectorAll('a')) {
    a.classList.toggle('active', a.dataset.nav === name || (name === 'device' && a.dataset.nav === 'devices'));
  }
  fill(main, h('p', { class: 'muted' }, 'Loading…'));
  try {
    cleanup = await view.render(main, { params, account }) || null;
  } catch (e) {
    if (e.status === 401) return;
    fill(main, h('p', { class: 'notice error', role: 'alert' }, `Could not load this page: ${e.message}`));
  }
}

async function start(me) {
  account = me;
  nav.hidden = false;
  signoutButton.hidden = false;
  who.textContent = me?.nickname || '';
  live.start(showLive);
  if (!location.hash || location.hash === '#/' || location.hash === '#/signin') {
    location.hash = '#/devices';
  } else {
    await render();
  }
}

function signOut(message) {
  live.stop();
  api.signOut();
  account = null;
  history.replaceState(null, '', location.pathname);
  render().then(() => {
    if (message) main.querySelector('.message')?.append(h('p', { class: 'notice error', role: 'alert' }, message));
  });
}

// Events were lost (the stream's backlog moved on): what is shown is stale.
live.on('reset', () => { if (api.token()) render(); });
window.addEventListener('hashchange', () => { if (api.token()) render(); });
window.addEventListener('kumo:unauthorized', () => signOut('The token was refused (revoked or expired). Sign in again.'));
signoutButton.addEventListener('click', () => signOut());

(async () => {
  if (api.token()) {
    try {
      await start(await api.get('/1/users/me'));
      return;
    } catch {
      api.signOut();
    }
  }
  await render();
})();
