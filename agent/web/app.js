// Scissor Stream console: cameras, timeline, alerts, questions, rules and memory, over the service's own API.
// Plain ES modules, no build step; every request goes to this page's origin.

import {
  ApiError, Unauthorized, api, getToken, onUnauthorized, releaseImage, setToken, showImage,
} from "./api.js";
import { lineChart } from "./charts.js";
import { $, confirmButton, h, int, secs, shortId, wall } from "./dom.js";
import { followEvents } from "./sse.js";
import { Timeline } from "./timeline.js";

const POLL_MS = { cameras: 2000, keyframes: 1500, glance: 4000, timeline: 5000, rules: 15000 };
const TIMELINE_LIMIT = 1500; // memory entries fetched per camera for its timeline
const MAX_ALERTS = 50;
const EVIDENCE_SHOWN = 8; // thumbnails shown at first; a button shows the rest
const HISTORY_MS = 600_000; // the glance charts show the last 10 minutes
const ZOOMS = [30, 60, 120, 300, 600];

const app = {
  authorized: false,
  started: false,
  events: null,
  cameras: new Map(), // id -> last CameraStatus
  tiles: new Map(), // id -> {root, img, frame, ...}
  timelines: new Map(), // id -> Timeline
  glance: new Map(), // id -> {root, ratio: [], novelty: [], scenes: [], totals}
  clocks: new Map(), // id -> {offset, exact}: wall clock ms = offset + stream seconds * 1000
  rules: [],
  alerts: [], // newest first, as the list shows them
  alertIds: new Set(), // ids shown: an alert both listed by GET /alerts and streamed shows once
  session: newSessionId(),
  unticked: new Set(), // cameras the user unticked in the ask box; every other camera is asked
  lastKind: null, // the kind of the session's last question ("last", "first", ...), for "and a car?"
  window: 120,
};

function newSessionId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return `console-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

// ---------------------------------------------------------------- notices, token, start-up

function notice(text) {
  const box = $("#notice");
  box.textContent = text || "";
  box.hidden = !text;
}

function setStatus(id, text, ok = true) {
  const box = $(id);
  box.textContent = text;
  box.classList.toggle("error", !ok);
}

/** `value(name)`: the value of `form`'s control `name` (radio groups included). */
function field(form) {
  return (name) => form.elements.namedItem(name)?.value ?? "";
}

/** Rethrow unless `err` is a 404: a camera deleted meanwhile (the cameras poll drops its views). */
function unlessGone(err) {
  if (!(err instanceof ApiError && err.status === 404)) throw err;
  return null;
}

function describe(err) {
  if (err instanceof ApiError) return `${err.status} ${err.error}: ${err.message}`;
  return `cannot reach the service (${err.message})`;
}

function lockOut(err) {
  if (err.sentToken !== getToken()) return; // a late answer to a call made with an older token
  const wrong = err.sentToken !== null;
  app.authorized = false;
  if (wrong) setToken(null);
  $("#auth-message").textContent = wrong
    ? `The service refused that token (401 Unauthorized: ${err.message}). Check the SCISSOR_API_TOKEN ` +
      "the service was started with and enter it again."
    : "This service requires an API token (SCISSOR_API_TOKEN is set): without one, every request is " +
      "refused with 401 Unauthorized. Enter the token to use the console.";
  $("#auth").hidden = false;
  $("#main").hidden = true;
  $("#sections").hidden = true;
  $("#forget-token").hidden = true;
  $("#live").textContent = "Events: waiting for a token";
  $("#auth-token").value = "";
  $("#auth-token").focus();
}

function unlock() {
  app.authorized = true;
  $("#auth").hidden = true;
  $("#main").hidden = false;
  $("#sections").hidden = false;
  $("#forget-token").hidden = !getToken();
  // /docs is behind the token too, and a link cannot send a header: with a token, use the API directly.
  $("#docs-link").hidden = Boolean(getToken());
  if (!app.started) {
    app.started = true;
    startPolling();
    app.events = followEvents("/events", {
      onEvent,
      onState: liveState,
      isActive: () => app.authorized,
    });
  } else {
    app.events.resume();
    refreshCameras().catch(() => {});
    refreshRules().catch(() => {});
  }
  loadRecentAlerts().catch((err) => {
    if (!(err instanceof Unauthorized)) notice(`Could not load the recent alerts: ${describe(err)}`);
  });
}

async function tryToken() {
  try {
    syncCameras(await api.get("/cameras"));
    unlock();
  } catch (err) {
    if (err instanceof Unauthorized) return; // lockOut has said why
    notice(`The service did not answer: ${describe(err)}. Retrying…`);
    unlock(); // the pollers keep trying and clear the notice once it answers
  }
}

function liveState(state, detail) {
  const live = $("#live");
  live.classList.toggle("ok", state === "live");
  live.textContent = {
    live: "Events: live",
    reconnecting: `Events: reconnecting (${detail})`,
    refused: "Events: refused (401)",
  }[state];
}

/** Run `task` now and every `ms` after it ends, while authorized and the page is visible. */
function every(ms, task) {
  const tick = async () => {
    if (app.authorized && !document.hidden) {
      try {
        await task();
      } catch (err) {
        if (!(err instanceof Unauthorized)) notice(`A refresh failed: ${describe(err)}. Retrying…`);
      }
    }
    setTimeout(tick, ms);
  };
  tick();
}

function startPolling() {
  every(POLL_MS.cameras, async () => {
    await refreshCameras();
    notice("");
  });
  every(POLL_MS.keyframes, refreshKeyframes);
  every(POLL_MS.glance, refreshGlance);
  every(POLL_MS.timeline, refreshTimelines);
  every(POLL_MS.rules, refreshRules);
}

// ---------------------------------------------------------------- cameras

async function refreshCameras() {
  syncCameras(await api.get("/cameras"));
}

function syncCameras(list) {
  const ids = new Set(list.map((c) => c.id));
  for (const id of [...app.cameras.keys()]) if (!ids.has(id)) dropCamera(id);
  for (const status of list) {
    if (!app.cameras.has(status.id)) addCameraViews(status.id);
    updateTile(status);
  }
  $("#no-cameras").hidden = list.length > 0;
  $("#camera-count").textContent = `${list.length} camera${list.length === 1 ? "" : "s"}`;
  syncCameraChoices();
}

function addCameraViews(id) {
  const tile = makeTile(id);
  app.tiles.set(id, tile);
  $("#camera-grid").append(tile.root);
  const timeline = new Timeline(id, () => app.clocks.get(id)?.offset ?? null);
  timeline.setWindow(app.window);
  timeline.setAlerts(app.alerts.filter((a) => a.camera === id));
  app.timelines.set(id, timeline);
  $("#timelines").append(timeline.root);
  const glance = makeGlance(id);
  app.glance.set(id, glance);
  $("#glance").append(glance.root);
  app.cameras.set(id, null);
  refreshTimeline(id).catch(() => {});
}

function dropCamera(id) {
  const tile = app.tiles.get(id);
  if (tile) {
    releaseImage(tile.img);
    tile.root.remove();
  }
  app.timelines.get(id)?.root.remove();
  app.glance.get(id)?.root.remove();
  for (const map of [app.tiles, app.timelines, app.glance, app.cameras, app.clocks]) map.delete(id);
  syncCameraChoices();
}

function stat(term) {
  const dt = h("dt", {}, term);
  const value = h("dd", {}, "–");
  return { dt, value, nodes: [dt, value] };
}

/** 600 -> "10 min", 45 -> "45 s". */
function duration(seconds) {
  return seconds >= 120 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds)} s`;
}

function makeTile(id) {
  const img = h("img", { alt: `Newest keyframe of ${id}`, hidden: true });
  const placeholder = h("p", { class: "placeholder" }, "No keyframe yet");
  const frameInfo = h("span", { class: "frame-info" });
  const state = h("span", { class: "state" }, "…");
  const stats = {
    fps: stat("fps in / out"),
    entries: stat("memory entries"),
    ratio: stat("compression"),
    drops: stat("dropped / reconnects"),
  };
  const reason = h("p", { class: "reason", hidden: true });
  const url = h("p", { class: "url" });
  const remove = confirmButton("Delete", `Delete camera ${id}`, () => deleteCamera(id));
  const root = h("section", { class: "tile", "aria-labelledby": `tile-${id}`, "data-camera": id },
    h("div", { class: "tile-head" }, h("h3", { id: `tile-${id}` }, id), state),
    h("div", { class: "frame" }, img, placeholder, frameInfo),
    h("dl", { class: "stats" }, ...Object.values(stats).flatMap((s) => s.nodes)),
    reason, url, h("div", { class: "tile-actions" }, remove));
  return { root, img, placeholder, frameInfo, state, stats, reason, url, frame: null, retryAt: 0 };
}

function updateTile(status) {
  app.cameras.set(status.id, status);
  const tile = app.tiles.get(status.id);
  if (!tile) return;
  tile.state.textContent = status.state;
  tile.state.className = `state state-${status.state}`;
  tile.stats.fps.value.textContent = `${status.fps_in.toFixed(1)} / ${status.fps_out.toFixed(1)}`;
  tile.stats.entries.value.textContent = int(status.memory_entries);
  const ratio = status.memory_entries ? `${status.compression_ratio.toFixed(1)}×` : "–";
  tile.stats.ratio.value.textContent = ratio;
  tile.stats.drops.value.textContent = `${int(status.frames_dropped)} / ${int(status.reconnects)}`;
  tile.reason.hidden = !status.reason;
  tile.reason.textContent = status.reason ? `Reason: ${status.reason}` : "";
  tile.url.textContent = status.url;
  tile.url.title = status.url;
}

async function refreshKeyframes() {
  const now = Date.now();
  await Promise.all([...app.tiles.entries()].map(async ([id, tile]) => {
    if (tile.retryAt > now) return;
    try {
      const shown = await showImage(tile.img, `/cameras/${id}/snapshot`, { unlessFrame: tile.frame });
      tile.frame = shown.frame;
      tile.img.hidden = false;
      tile.placeholder.hidden = true;
      tile.frameInfo.textContent = `frame ${shown.frame} · stream ${secs(shown.t)}`;
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
      tile.placeholder.hidden = tile.img.naturalWidth > 0; // none kept yet (or the camera just went)
      const online = app.cameras.get(id)?.state === "online";
      tile.retryAt = now + (online ? 3000 : 10_000); // a camera that is down keeps none for a while
    }
  }));
}

async function deleteCamera(id) {
  try {
    await api.delete(`/cameras/${id}`);
    dropCamera(id);
    setStatus("#camera-form-status", `Deleted camera ${id} (and its rules).`);
    await refreshRules();
  } catch (err) {
    setStatus("#camera-form-status", `Could not delete camera ${id}: ${describe(err)}`, false);
  }
}

async function addCamera(event) {
  event.preventDefault();
  const form = event.target;
  const value = field(form);
  const body = { id: value("id").trim(), url: value("url").trim() };
  if (value("fps")) body.fps = Number(value("fps"));
  try {
    const status = await api.post("/cameras", body);
    if (!app.cameras.has(status.id)) addCameraViews(status.id);
    updateTile(status);
    syncCameraChoices();
    $("#no-cameras").hidden = true;
    setStatus("#camera-form-status", `Added camera ${status.id}.`);
    form.reset();
  } catch (err) {
    setStatus("#camera-form-status", `Could not add the camera: ${describe(err)}`, false);
  }
}

/**
 * The ask box's camera checkboxes and the rule form's camera list follow the cameras. Every camera is
 * ticked, a new one as it appears, until the user unticks it; the controls are only added and removed, so a
 * poll never takes the focus or an open list away.
 */
function syncCameraChoices() {
  const ids = [...app.cameras.keys()];
  const box = $("#ask-cameras");
  const boxes = new Map([...box.querySelectorAll("input[name=camera]")].map((i) => [i.value, i]));
  for (const [id, input] of boxes) if (!app.cameras.has(id)) input.closest("label").remove();
  for (const id of ids) {
    if (boxes.has(id)) continue;
    const input = h("input", { type: "checkbox", name: "camera", value: id, checked: !app.unticked.has(id) });
    input.addEventListener("change", () => {
      if (input.checked) app.unticked.delete(id);
      else app.unticked.add(id);
    });
    box.append(h("label", {}, input, ` ${id}`));
  }
  $("#no-ask-cameras").hidden = ids.length > 0;
  const select = $("#rule-camera");
  const options = new Map([...select.options].map((o) => [o.value, o]));
  for (const [id, option] of options) if (!app.cameras.has(id)) option.remove();
  for (const id of ids) if (!options.has(id)) select.append(h("option", { value: id }, id));
}

// ---------------------------------------------------------------- clocks, timeline, memory at a glance

/** Learn a camera's stream-to-wall-clock offset from a (wall time, stream second) pair. */
function learnClock(camera, time, t, exact = true) {
  const known = app.clocks.get(camera);
  if (!camera || !Number.isFinite(t) || (known?.exact && !exact)) return;
  const offset = new Date(time).getTime() - t * 1000;
  if (Number.isFinite(offset)) app.clocks.set(camera, { offset, exact });
}

const timelineReads = new Map(); // camera id -> the read in flight (one at a time per camera)

function refreshTimeline(id) {
  if (!timelineReads.has(id)) {
    const path = `/cameras/${id}/memory?since_s=${app.window}&limit=${TIMELINE_LIMIT}`;
    const read = api.get(path).catch(unlessGone).then((summary) => {
      if (!summary) return;
      learnClock(id, Date.now(), summary.stats?.newest_t, false);
      app.timelines.get(id)?.update(summary);
    }).finally(() => timelineReads.delete(id));
    timelineReads.set(id, read);
  }
  return timelineReads.get(id);
}

async function refreshTimelines() {
  await Promise.all([...app.timelines.keys()].map(refreshTimeline));
}

function setZoom(seconds) {
  app.window = seconds;
  $("#zoom").value = String(seconds);
  for (const timeline of app.timelines.values()) timeline.setWindow(seconds);
  refreshTimelines().catch(() => {});
}

function zoomBy(step) {
  const index = ZOOMS.indexOf(app.window) + step;
  if (index >= 0 && index < ZOOMS.length) setZoom(ZOOMS[index]);
}

/** Scroll to `camera`'s timeline and show evidence {from, to, snapshot_url} there. */
function reveal(camera, evidence, title) {
  const timeline = app.timelines.get(camera);
  if (!timeline) return;
  const age = timeline.now() - evidence.from;
  if (age > app.window) setZoom(ZOOMS.find((z) => z >= age + 5) || ZOOMS.at(-1));
  timeline.reveal({ from: evidence.from, to: evidence.to, snapshotUrl: evidence.snapshot_url, title });
  timeline.root.scrollIntoView({ block: "center" });
  timeline.detail.focus({ preventScroll: true });
}

function makeGlance(id) {
  const numbers = {
    raw: stat("raw tokens seen"),
    window: stat("raw tokens in the window"),
    held: stat("tokens held"),
    ratio: stat("compression over the window"),
  };
  const charts = h("div", { class: "charts" });
  const root = h("figure", { class: "glance", "data-camera": id },
    h("figcaption", {}, h("strong", {}, id)),
    h("dl", { class: "stats" }, ...Object.values(numbers).flatMap((s) => s.nodes)), charts);
  charts.append(h("p", { class: "hint" }, "charts start with the first samples"));
  return { root, numbers, charts, ratio: [], novelty: [], scenes: [], totals: null };
}

/** Novelty histogram totals per camera from the Prometheus exposition: {camera: {sum, count}}. */
function noveltyTotals(text) {
  const totals = new Map();
  const pattern = /^scissor_novelty_ratio_(sum|count)\{[^}]*camera="([A-Za-z0-9_-]+)"[^}]*\} (\S+)$/gm;
  for (const [, field, camera, value] of text.matchAll(pattern)) {
    const entry = totals.get(camera) || {};
    entry[field] = Number(value);
    totals.set(camera, entry);
  }
  return totals;
}

async function refreshGlance() {
  const now = Date.now();
  const [summaries, metrics] = await Promise.all([
    Promise.all([...app.glance.keys()].map(
      (id) => api.get(`/cameras/${id}/memory?limit=1`).catch(unlessGone))),
    api.text("/metrics").catch((err) => (err instanceof Unauthorized ? Promise.reject(err) : "")),
  ]);
  const totals = noveltyTotals(metrics);
  for (const summary of summaries.filter(Boolean)) {
    const glance = app.glance.get(summary.camera);
    if (!glance) continue;
    const stored = summary.stats?.tokens_stored ?? summary.tokens_in_total;
    const windowRatio = summary.entries ? stored / summary.entries : 0;
    glance.numbers.raw.value.textContent = int(summary.tokens_in_total);
    glance.numbers.window.dt.textContent = `raw tokens in the last ${duration(summary.window_s)}`;
    glance.numbers.window.value.textContent = int(stored);
    glance.numbers.held.value.textContent = `${int(summary.entries)} of ${int(summary.capacity)}`;
    glance.numbers.ratio.value.textContent = summary.entries ? `${windowRatio.toFixed(1)}×` : "–";
    glance.ratio.push({ time: now, value: windowRatio });
    const total = totals.get(summary.camera);
    if (total && glance.totals && total.count > glance.totals.count) {
      const mean = (total.sum - glance.totals.sum) / (total.count - glance.totals.count);
      glance.novelty.push({ time: now, value: Math.max(0, Math.min(1, mean)) });
    }
    if (total) glance.totals = total;
    for (const series of [glance.ratio, glance.novelty, glance.scenes]) {
      while (series.length && series[0].time < now - HISTORY_MS) series.shift();
    }
    drawGlance(glance);
  }
}

function drawGlance(glance) {
  glance.charts.replaceChildren(
    h("p", { class: "chart-title" }, "compression over the window"),
    lineChart({ points: glance.ratio, label: "Compression ratio", format: (v) => `${v.toFixed(1)}×` }),
    h("p", { class: "chart-title" }, "novelty (mean per 4 s; dots: scene changes)"),
    lineChart({
      points: glance.novelty, dots: glance.scenes, label: "Novelty", yFloor: 0.2, yMax: 1,
      format: (v) => v.toFixed(2),
    }),
  );
}

// ---------------------------------------------------------------- events and alerts

function onEvent(name, data) {
  let record;
  try {
    record = JSON.parse(data);
  } catch {
    return;
  }
  if (name === "alert") addAlert(record);
  else if (name === "camerastatus" && app.cameras.has(record.id)) updateTile(record);
  else if (name === "camera_added" || name === "camera_removed") {
    api.get("/cameras").then(syncCameras).catch(() => {});
  } else if (name === "novelty" && record.camera) {
    learnClock(record.camera, record.time, record.data?.t);
    const glance = app.glance.get(record.camera);
    const value = Number(record.data?.novelty);
    if (glance && Number.isFinite(value)) {
      glance.scenes.push({ time: new Date(record.time).getTime(), value, title: `scene change ${value}` });
    }
  }
}

/**
 * How the page names a rule: its name (or topic) and condition, e.g. `bikes (label "bicycle" ≥ 0.3)`, else
 * the condition alone. A rule the page does not know (deleted since) goes by the title its alert carries
 * (`label:bicycle`), and only an alert from before titles by its id.
 */
function ruleName(ruleId, alert = null) {
  const rule = app.rules.find((r) => r.id === ruleId);
  if (!rule) return alert?.rule_title || `rule ${shortId(ruleId)}`;
  const p = rule.params;
  const condition = {
    label: () => `label "${p.label}" ≥ ${p.min_score}`,
    novelty: () => `novelty ≥ ${p.threshold}`,
    prompt: () => `prompt "${p.question}"`,
  }[rule.kind]();
  const title = rule.name || rule.topic;
  return title ? `${title} (${condition})` : condition;
}

/** A same-origin path from the service (snapshot links are paths); anything else is not followed. */
function localPath(url) {
  return typeof url === "string" && url.startsWith("/") && !url.startsWith("//") ? url : null;
}

function thumbnail(path, alt, onOpen, name) {
  const img = h("img", { alt });
  const button = h("button", { type: "button", class: "thumb", "aria-label": name, onclick: onOpen }, img);
  if (path) {
    showImage(img, path).catch((err) => {
      button.classList.add("missing");
      img.alt = err instanceof ApiError && err.status === 404 ? "keyframe no longer kept" : "no picture";
    });
  } else {
    button.classList.add("missing");
  }
  return { button, img };
}

/** The alerts the service kept from before this page opened (GET /alerts), under the live ones. */
async function loadRecentAlerts() {
  const recent = await api.get(`/alerts?limit=${MAX_ALERTS}`);
  if (!app.rules.length) await refreshRules().catch(() => {}); // their rules' names, at once
  for (const alert of recent.reverse()) addAlert(alert, { earlier: true });
}

/** Put `alert` in the list in time order (newest first), once; `earlier`: from before the page opened. */
function addAlert(alert, { earlier = false } = {}) {
  if (app.alertIds.has(alert.id)) return;
  app.alertIds.add(alert.id);
  learnClock(alert.camera, alert.time, alert.stream_s);
  if (!earlier && !app.rules.some((r) => r.id === alert.rule)) refreshRules().catch(() => {});
  const at = new Date(alert.time).getTime();
  let index = app.alerts.findIndex((a) => new Date(a.time).getTime() < at);
  if (index < 0) index = app.alerts.length;
  app.alerts.splice(index, 0, alert);
  const time = new Date(alert.time);
  const what = alert.label || alert.answer || alert.kind;
  const evidence = alert.evidence?.[0] ||
    { from: alert.stream_s, to: alert.stream_s, snapshot_url: alert.snapshot_url };
  const pinned = { ...evidence, snapshot_url: alert.snapshot_url }; // the alert's own frame
  const open = () => reveal(alert.camera, pinned, `alert: ${what}`);
  const thumb = thumbnail(localPath(alert.snapshot_url), `Keyframe of the alert on ${alert.camera}`, open,
    `Show the alert on ${alert.camera} at ${wall(time)} on the timeline`);
  const item = h("li", { class: "alert-item", "data-camera": alert.camera, "data-alert": alert.id },
    thumb.button,
    h("div", { class: "alert-body" },
      h("p", {}, h("time", { datetime: alert.time }, wall(time)), " ", h("strong", {}, alert.camera),
        " ", h("span", { class: `kind kind-${alert.kind}` }, alert.kind)),
      h("p", { class: "alert-what" }, what, alert.answer ? "" : ` (score ${alert.score.toFixed(2)})`),
      h("p", { class: "hint" }, ruleName(alert.rule, alert), ` · stream ${secs(alert.stream_s)}`,
        alert.escalation ? ` · repeat ${alert.escalation}` : "")));
  item.thumb = thumb.img;
  const list = $("#alert-list");
  list.insertBefore(item, list.children[index] ?? null);
  while (list.children.length > MAX_ALERTS) {
    releaseImage(list.lastElementChild.thumb);
    app.alertIds.delete(list.lastElementChild.dataset.alert);
    list.lastElementChild.remove();
  }
  app.alerts.length = Math.min(app.alerts.length, MAX_ALERTS);
  $("#no-alerts").hidden = true;
  $("#alert-count").textContent = `${app.alerts.length} recent, newest first`;
  app.timelines.get(alert.camera)?.setAlerts(app.alerts.filter((a) => a.camera === alert.camera));
  if (app.timelines.has(alert.camera)) refreshTimeline(alert.camera).catch(() => {}); // show its moment
}

// ---------------------------------------------------------------- ask

function askBody(form) {
  const value = field(form);
  const body = { question: value("question").trim(), session_id: app.session };
  const range = value("range");
  if (range === "since" && value("since")) body.since_s = Number(value("since"));
  if (range === "span") {
    if (value("from")) body.from = Number(value("from"));
    if (value("to")) body.to = Number(value("to"));
  }
  return body;
}

async function ask(event) {
  event.preventDefault();
  const form = event.target;
  const cameras = [...form.querySelectorAll("input[name=camera]:checked")].map((i) => i.value);
  const body = askBody(form);
  const box = $("#answer");
  if (!body.question) return;
  if (!cameras.length) {
    box.replaceChildren(h("p", { class: "error" }, "Choose at least one camera to ask."));
    return;
  }
  const skipped = [...app.cameras.keys()].filter((id) => !cameras.includes(id));
  const single = cameras.length === 1;
  const path = single ? `/cameras/${cameras[0]}/ask` : "/ask";
  if (!single) body.cameras = cameras;
  const button = $("#ask-button");
  button.disabled = true;
  box.setAttribute("aria-busy", "true");
  keepTurn();
  box.replaceChildren(h("p", { class: "question" }, body.question), h("p", { class: "hint" }, "Thinking…"));
  try {
    const answer = await api.post(path, body);
    box.replaceChildren(...answerNodes(body.question, answer, skipped));
    for (const id of answer.cameras) if (app.timelines.has(id)) refreshTimeline(id).catch(() => {});
  } catch (err) {
    box.replaceChildren(h("p", { class: "question" }, body.question),
      h("p", { class: "error" }, `No answer: ${describe(err)}`));
  } finally {
    button.disabled = false;
    box.removeAttribute("aria-busy");
  }
}

// Mirrors the embedded answerer's kinds of question (agent/models/embedded_answer.py), for answers that do not
// say their own kind: the first pattern that matches decides; a range phrase ("the last 2 minutes") is not one.
const KINDS = [
  ["how_long", /\bhow long\b|\bfor how\b|\bduration\b|\bhow much time\b/],
  ["how_many", /\bhow many\b|\bhow often\b|\bnumber of\b|\bcount\b/],
  ["first", /\bfirst\b|\bearliest\b/],
  ["last", /\blast\b|\blatest\b|\bmost recent(ly)?\b/],
];
const RANGE_PHRASE = new RegExp(
  "\\b(?:last|past|previous|recent|first)\\s+(?:(?:\\d+(?:\\.\\d+)?|a|an|one|two|three|four|five|six|seven|" +
  "eight|nine|ten|fifteen|twenty|thirty|sixty)\\s*)?(?:seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\\b", "g");
const FOLLOW_UP = /^(?:and|what about|how about|also|or)\b/;

/** The kind of `question` ("last", "first", ...; null: none of these), or the session's previous kind for a
 * follow-up such as "and a car?". */
function questionKind(question, previous) {
  const q = question.toLowerCase().trim();
  const words = q.replace(RANGE_PHRASE, " ");
  const kind = KINDS.find(([, pattern]) => pattern.test(words))?.[0] ?? null;
  return kind ?? (FOLLOW_UP.test(q) ? previous : null);
}

/** The evidence in the order that answers the question: newest first for "when did you last see ...", else as
 * the service gave it (in time order). */
function orderEvidence(evidence, kind) {
  if (kind !== "last") return evidence;
  const end = (ev) => (ev.to_time ? new Date(ev.to_time).getTime() / 1000 : ev.to);
  const start = (ev) => (ev.from_time ? new Date(ev.from_time).getTime() / 1000 : ev.from);
  return [...evidence].sort((a, b) => end(b) - end(a) || start(b) - start(a));
}

function answerNodes(question, answer, skipped = []) {
  const saved = answer.raw_tokens_in_range / Math.max(1, answer.tokens_used);
  const meta = `${int(answer.tokens_used)} memory tokens for ${int(answer.raw_tokens_in_range)} raw ` +
    `frame tokens (${saved.toFixed(1)}× fewer) · ${answer.latency_s.toFixed(2)} s · ` +
    `${answer.cameras.join(", ")}`;
  const kind = typeof answer.kind === "string" ? answer.kind : questionKind(question, app.lastKind);
  app.lastKind = kind;
  const newestFirst = kind === "last";
  const evidence = orderEvidence(answer.evidence, kind).map((ev) => {
    const camera = ev.camera || answer.cameras[0];
    learnClock(camera, ev.from_time, ev.from);
    const when = ev.from_time ? ` · ${wall(new Date(ev.from_time))}` : "";
    const text = `${camera} ${secs(ev.from)}–${secs(ev.to)}${when}`;
    const open = () => reveal(camera, ev, `evidence: ${question}`);
    const thumb = thumbnail(localPath(ev.snapshot_url), `Evidence keyframe: ${text}`, open,
      `Evidence ${text}: show on the timeline`);
    return h("li", {}, thumb.button, h("span", { class: "hint" }, text));
  });
  const list = h("ul", { class: "evidence", "aria-label": newestFirst ? "Evidence, newest first" : "Evidence" },
    ...evidence.slice(0, EVIDENCE_SHOWN));
  const more = evidence.length - EVIDENCE_SHOWN;
  const showAll = more > 0 && h("button", {
    type: "button", class: "quiet", onclick: (event) => {
      list.append(...evidence.slice(EVIDENCE_SHOWN));
      event.target.remove();
    },
  }, `Show ${more} more evidence spans`);
  const notAsked = skipped.length > 0 && h("p", { class: "not-asked" },
    `Not asked: ${skipped.join(", ")} (unticked under Cameras).`);
  return [
    h("p", { class: "question" }, question),
    h("p", { class: "answer-text" }, answer.answer),
    h("p", { class: "hint" }, meta),
    notAsked,
    evidence.length && h("p", { class: "hint" }, newestFirst ? "Evidence, newest first:" : "Evidence:"),
    evidence.length && list,
    showAll,
  ].filter(Boolean);
}

/** Move the shown answer into "Earlier in this session" before the next one replaces it. */
function keepTurn() {
  const box = $("#answer");
  const question = box.querySelector(".question")?.textContent;
  const answer = box.querySelector(".answer-text")?.textContent;
  if (!question || !answer) return;
  $("#turns").prepend(h("li", {}, h("p", { class: "question" }, question), h("p", {}, answer)));
  $("#turns-box").hidden = false;
}

function newSession() {
  app.session = newSessionId();
  app.lastKind = null;
  $("#session-id").textContent = app.session;
  $("#turns").replaceChildren();
  $("#turns-box").hidden = true;
  $("#answer").replaceChildren(h("p", { class: "empty" }, "New session: ask about what the cameras saw."));
  $("#question").focus();
}

// ---------------------------------------------------------------- rules

async function refreshRules() {
  app.rules = await api.get("/rules");
  const rows = app.rules.map((rule) => h("tr", {},
    h("td", {}, rule.camera_id),
    h("td", {}, ruleName(rule.id), h("small", { class: "hint", title: rule.id }, ` ${shortId(rule.id)}`)),
    h("td", {}, secs(rule.cooldown_s)),
    h("td", {}, confirmButton("Delete", `Delete rule ${ruleName(rule.id)} on ${rule.camera_id}`,
      () => deleteRule(rule)))));
  $("#rule-rows").replaceChildren(...rows);
  $("#no-rules").hidden = rows.length > 0;
}

async function deleteRule(rule) {
  try {
    await api.delete(`/rules/${rule.id}`);
    setStatus("#rule-form-status", `Deleted rule ${ruleName(rule.id)} on ${rule.camera_id}.`);
    await refreshRules();
  } catch (err) {
    setStatus("#rule-form-status", `Could not delete the rule: ${describe(err)}`, false);
  }
}

function showRuleKind() {
  const kind = $("#rule-kind").value;
  for (const fieldset of document.querySelectorAll("#rule-form fieldset[data-kind]")) {
    const on = fieldset.dataset.kind === kind;
    fieldset.hidden = !on;
    fieldset.disabled = !on;
  }
}

async function addRule(event) {
  event.preventDefault();
  const value = field(event.target);
  const kind = value("kind");
  const params = {
    label: () => ({ label: value("label").trim(), min_score: Number(value("min_score")) }),
    novelty: () => ({ threshold: Number(value("threshold")) }),
    prompt: () => ({
      question: value("question").trim(),
      every_s: Number(value("every_s")),
      window_s: Number(value("window_s")),
    }),
  }[kind]();
  const spec = { camera_id: value("camera_id"), kind, params, cooldown_s: Number(value("cooldown_s")) };
  try {
    const rule = await api.post("/rules", spec);
    await refreshRules();
    setStatus("#rule-form-status", `Created rule ${ruleName(rule.id)} on ${rule.camera_id}.`);
  } catch (err) {
    setStatus("#rule-form-status", `Could not create the rule: ${describe(err)}`, false);
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("#auth-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#auth-token").value.trim();
    if (!value) return;
    setToken(value);
    tryToken();
  });
  $("#forget-token").addEventListener("click", () => {
    setToken(null);
    location.reload();
  });
  $("#camera-form").addEventListener("submit", addCamera);
  $("#rule-form").addEventListener("submit", addRule);
  $("#rule-kind").addEventListener("change", showRuleKind);
  $("#ask-form").addEventListener("submit", ask);
  for (const input of document.querySelectorAll("#ask-form [data-range]")) {
    input.addEventListener("input", () => {
      $(`#ask-form input[name=range][value=${input.dataset.range}]`).checked = true;
    });
  }
  $("#new-session").addEventListener("click", newSession);
  $("#zoom").addEventListener("change", (event) => setZoom(Number(event.target.value)));
  $("#zoom-in").addEventListener("click", () => zoomBy(-1));
  $("#zoom-out").addEventListener("click", () => zoomBy(1));
  $("#session-id").textContent = app.session;
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && app.authorized) refreshTimelines().catch(() => {});
  });
  showRuleKind();
  onUnauthorized(lockOut);
}

wire();
tryToken();
