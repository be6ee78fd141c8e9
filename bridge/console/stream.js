// The account's live events (`GET /v1/events`, Server-Sent Events) read with
// fetch() rather than EventSource: EventSource cannot send an Authorization
// header, and the token must not go into a URL. Reconnects with backoff and
// resumes with Last-Event-ID; views subscribe by event kind.

import { token } from './api.js';

const listeners = new Map(); // kind -> Set of functions
let controller = null;
let lastId = null;
let onState = () => {};
let state = 'offline';

/** Whether events are arriving now. */
export function isLive() {
  return state === 'live';
}

/** Calls `fn(data, id)` for every event of `kind` ('*' = all); returns the unsubscribe. */
export function on(kind, fn) {
  if (!listeners.has(kind)) listeners.set(kind, new Set());
  listeners.get(kind).add(fn);
  return () => listeners.get(kind)?.delete(fn);
}

function emit(kind, data, id) {
  for (const k of [kind, '*']) {
    for (const fn of listeners.get(k) || []) {
      try { fn(data, id, kind); } catch (e) { console.error('live event handler failed', e); }
    }
  }
}

/** Parses one SSE message block (lines without the blank separator). */
export function parseBlock(block) {
  let event = 'message';
  let id = null;
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const name = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'event') event = value;
    else if (name === 'data') data.push(value);
    else if (name === 'id') id = value;
  }
  if (!data.length) return null;
  return { event, id, data: data.join('\n') };
}

async function readStream(signal) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: 'text/event-stream' };
  if (lastId !== null) headers['Last-Event-ID'] = lastId;
  const response = await fetch('/v1/events', { headers, signal, cache: 'no-store' });
  if (response.status === 401) {
    window.dispatchEvent(new CustomEvent('kumo:unauthorized'));
    return 'stop';
  }
  if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
  onState('live');
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return 'closed';
    buffer += value.replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const message = parseBlock(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (!message) continue;
      if (message.id !== null) lastId = message.id;
      let data = message.data;
      try { data = JSON.parse(data); } catch { /* not JSON: passed on as text */ }
      emit(message.event, data, message.id);
    }
  }
}

/** Opens the stream (once); `stateFn` hears 'connecting', 'live', 'offline'. */
export function start(stateFn) {
  stop();
  const report = stateFn || (() => {});
  onState = (next) => { state = next; report(next); };
  controller = new AbortController();
  const { signal } = controller;
  (async () => {
    let delay = 1000;
    while (!signal.aborted) {
      onState('connecting');
      let outcome;
      try {
        outcome = await readStream(signal);
        delay = 1000;
      } catch (e) {
        if (signal.aborted) return;
        outcome = 'error';
      }
      if (outcome === 'stop') { onState('offline'); return; }
      onState('offline');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15000);
    }
  })();
}

export function stop() {
  controller?.abort();
  controller = null;
  state = 'offline';
  lastId = null;
}
