// Server-sent events read with fetch and a ReadableStream, so that the token travels in a header
// (EventSource cannot send one, and a token in the URL would end up in logs).

import { Unauthorized, call } from "./api.js";
import { sleep } from "./dom.js";

const SILENCE_MS = 45_000; // the service sends a keepalive every 15 s: silence this long is a dead link

/**
 * Parse an SSE byte stream; call `onEvent(name, data)` per event (per the HTML standard's rules: `event:`,
 * `data:` lines joined with "\n", comments and `id:`/`retry:` ignored). `onBytes()` is called per chunk.
 */
export async function parseEvents(body, onEvent, onBytes = () => {}) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let name = "";
  let data = [];
  const line = (text) => {
    if (text === "") {
      if (data.length) onEvent(name || "message", data.join("\n"));
      name = "";
      data = [];
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onBytes();
    buffer += value;
    for (;;) {
      const end = buffer.search(/\r\n|\r|\n/);
      if (end < 0 || (buffer[end] === "\r" && end === buffer.length - 1)) break; // "\r" may precede "\n"
      const width = buffer.startsWith("\r\n", end) ? 2 : 1;
      line(buffer.slice(0, end));
      buffer = buffer.slice(end + width);
    }
  }
}

/**
 * Follow `path` for as long as `isActive()` holds: reconnect with backoff (1 s doubling to 15 s) when the
 * stream ends, fails or falls silent. `onState("live" | "reconnecting" | "refused", detail)` tells how it
 * goes; on 401 it stops and waits for `resume()` (after a new token).
 */
export function followEvents(path, { onEvent, onState, isActive }) {
  let delay = 1000;
  let wake = null;
  async function run() {
    for (;;) {
      if (!isActive()) {
        await new Promise((resolve) => (wake = resolve));
        continue;
      }
      const aborter = new AbortController();
      let watchdog = setTimeout(() => aborter.abort(), SILENCE_MS);
      const alive = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => aborter.abort(), SILENCE_MS);
      };
      try {
        const res = await call(path, { headers: { Accept: "text/event-stream" }, signal: aborter.signal });
        onState("live");
        delay = 1000;
        await parseEvents(res.body, onEvent, alive);
        onState("reconnecting", "the event stream ended");
      } catch (err) {
        if (err instanceof Unauthorized) {
          onState("refused", err.message);
          await new Promise((resolve) => (wake = resolve));
          continue;
        }
        onState("reconnecting", aborter.signal.aborted ? "no data for 45 s" : err.message);
      } finally {
        clearTimeout(watchdog);
        aborter.abort();
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 15_000);
    }
  }
  run();
  return {
    resume() {
      if (wake) wake();
      wake = null;
    },
  };
}
