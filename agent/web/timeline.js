// One camera's timeline: its memory's presence intervals over the last minutes, one lane per label (or per
// memory entry when the model has no labels), alert markers, and the keyframe of a clicked span.

import { ApiError, showImage } from "./api.js";
import { clock, h, s, secs, wall } from "./dom.js";

const LANES = 7; // labels (or entries) with a lane of their own; the rest share one "other" lane
const MERGE_GAP_S = 0.75; // intervals closer than this merge into one span (frames are 0.5 s apart at 2 fps)
const LANE_H = 20;
const TOP = 14; // room for alert markers
const AXIS_H = 20;
const TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];

/** Merge time-sorted parts {a, b, frame} into spans {a, b, parts}. */
function merge(parts) {
  parts.sort((p, q) => p.a - q.a);
  const spans = [];
  for (const part of parts) {
    const last = spans.at(-1);
    if (last && part.a <= last.b + MERGE_GAP_S) {
      last.b = Math.max(last.b, part.b);
      last.parts.push(part);
    } else {
      spans.push({ a: part.a, b: part.b, parts: [part] });
    }
  }
  return spans;
}

/**
 * Lanes [{name, spans}] of memory `items` within stream seconds [from, to]: with labels, entries grouped by
 * their top label, ranked by score x presence; without, the entries with the most member tokens.
 */
export function buildLanes(items, from, to) {
  const labelled = items.some((item) => item.labels?.length);
  const groups = new Map();
  for (const item of items) {
    const [name, score] = labelled ? item.labels[0] || ["unlabelled", 0] : [`entry ${item.id}`, 1];
    const parts = [];
    item.intervals.forEach(([a, b], i) => {
      if (b < from || a > to) return;
      const frame = item.interval_frames?.[i] ?? item.evidence_frames?.at(-1) ?? null;
      parts.push({ a: Math.max(a, from), b: Math.min(b, to), frame });
    });
    if (!parts.length) continue;
    let group = groups.get(name);
    if (!group) groups.set(name, (group = { name, weight: 0, parts: [] }));
    const presence = parts.reduce((sum, p) => sum + (p.b - p.a) + 0.5, 0);
    group.weight += labelled ? score * presence : item.tokens;
    group.parts.push(...parts);
  }
  const ranked = [...groups.values()].sort((p, q) => q.weight - p.weight);
  const lanes = ranked.slice(0, LANES);
  const rest = ranked.slice(LANES);
  if (rest.length) {
    const what = labelled ? "labels" : "entries";
    lanes.push({ name: `${rest.length} other ${what}`, parts: rest.flatMap((g) => g.parts) });
  }
  return lanes.map((lane) => ({ name: lane.name, spans: merge(lane.parts) }));
}

function tickStep(seconds) {
  return TICK_STEPS.find((step) => seconds / step <= 7) || TICK_STEPS.at(-1);
}

export class Timeline {
  /** `clockOf()` -> ms offset such that wall clock = offset + stream seconds * 1000, or null. */
  constructor(camera, clockOf) {
    this.camera = camera;
    this.clockOf = clockOf;
    this.summary = null;
    this.alerts = [];
    this.window = 120;
    this.spans = [];
    this.focus = 0;
    this.selected = null; // {lane name, t}
    this.band = null; // {from, to}: evidence being shown
    this.svg = s("svg", { class: "timeline-svg", role: "group", "aria-label": `Memory timeline: ${camera}` });
    this.box = h("div", { class: "svg-box" }, this.svg);
    this.img = h("img", { alt: "", hidden: true });
    this.caption = h("p", {}, "No span selected.");
    this.detail = h("div", { class: "span-detail", tabindex: "-1", "aria-live": "polite" }, this.img,
      this.caption);
    this.info = h("span", { class: "hint" });
    this.root = h("figure", { class: "timeline", "data-camera": camera },
      h("figcaption", {}, h("strong", {}, camera), " ", this.info), this.box, this.detail);
    this.svg.addEventListener("click", (event) => this.onClick(event));
    this.svg.addEventListener("keydown", (event) => this.onKey(event));
    new ResizeObserver(() => this.render()).observe(this.box);
  }

  /** The newest stream second the memory has seen. */
  now() {
    const stats = this.summary?.stats || {};
    if (Number.isFinite(stats.newest_t)) return stats.newest_t;
    const ends = (this.summary?.items || []).flatMap((item) => item.intervals.map(([, b]) => b));
    return ends.length ? Math.max(...ends) : 0;
  }

  wallClock(t) {
    const offset = this.clockOf();
    return offset === null ? null : new Date(offset + t * 1000);
  }

  update(summary) {
    this.summary = summary;
    this.render();
  }

  setWindow(seconds) {
    this.window = seconds;
    this.render();
  }

  setAlerts(alerts) {
    this.alerts = alerts;
    this.render();
  }

  render() {
    if (!this.summary) return;
    const width = Math.max(300, Math.floor(this.box.clientWidth || 640));
    const labelW = width < 520 ? 96 : 150;
    const to = this.now();
    const from = Math.max(0, to - this.window);
    const span = Math.max(1, to - from);
    const lanes = buildLanes(this.summary.items, from, to);
    const height = TOP + Math.max(1, lanes.length) * LANE_H + AXIS_H;
    const x = (t) => labelW + ((t - from) / span) * (width - labelW - 10);
    const hadFocus = this.svg.contains(document.activeElement);
    const nodes = [];
    this.spans = [];
    lanes.forEach((lane, row) => {
      const y = TOP + row * LANE_H;
      const room = Math.floor((labelW - 12) / 6.5); // characters that fit the label column (11 px font)
      const text = lane.name.length > room ? `${lane.name.slice(0, room - 1)}…` : lane.name;
      nodes.push(s("rect", { class: "lane", x: labelW, y, width: width - labelW - 10, height: LANE_H - 2 }));
      const name = s("title", {}, lane.name);
      nodes.push(s("text", { class: "lane-label", x: labelW - 6, y: y + 13 }, text, name));
      for (const item of lane.spans) {
        const index = this.spans.length;
        const selected = this.selected?.name === lane.name && item.a <= this.selected.t + 1e-6 &&
          this.selected.t <= item.b + 1e-6;
        const label = `${lane.name}, stream ${secs(item.a)} to ${secs(item.b)}`;
        nodes.push(s("rect", {
          class: selected ? "span selected" : "span",
          x: x(item.a), y: y + 2, width: Math.max(3, x(item.b) - x(item.a)), height: LANE_H - 6, rx: 2,
          role: "button", tabindex: "-1", "aria-label": label, "data-index": index,
        }, s("title", {}, label)));
        this.spans.push({ ...item, name: lane.name, row });
      }
    });
    if (!lanes.length) {
      const empty = "nothing seen in this window";
      nodes.push(s("text", { class: "empty-text", x: labelW + 8, y: TOP + 14 }, empty));
    }
    if (this.band && this.band.to >= from && this.band.from <= to) {
      const a = x(Math.max(this.band.from, from));
      const w = Math.max(3, x(Math.min(this.band.to, to)) - a);
      nodes.push(s("rect", { class: "band", x: a, y: TOP - 4, width: w, height: height - TOP - AXIS_H + 4 }));
    }
    for (const alert of this.alerts) {
      if (alert.stream_s < from || alert.stream_s > to) continue;
      const ax = x(alert.stream_s);
      const label = `alert ${alert.label || alert.kind} at stream ${secs(alert.stream_s)}`;
      nodes.push(s("g", { class: "alert-marker" }, s("title", {}, label),
        s("line", { x1: ax, x2: ax, y1: TOP - 2, y2: height - AXIS_H }),
        s("path", { d: `M${ax - 5},1 L${ax + 5},1 L${ax},${TOP - 3} Z` })));
    }
    const axisY = height - AXIS_H;
    nodes.push(s("line", { class: "axis", x1: labelW, x2: width - 10, y1: axisY, y2: axisY }));
    const step = tickStep(span);
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      nodes.push(s("line", { class: "tick", x1: x(t), x2: x(t), y1: axisY, y2: axisY + 4 }));
      nodes.push(s("text", { class: "tick-label", x: x(t), y: axisY + 15 }, clock(t)));
    }
    nodes.push(s("text", { class: "axis-note", x: labelW - 20, y: axisY + 15 }, "stream m:ss"));
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.setAttribute("width", width);
    this.svg.setAttribute("height", height);
    this.svg.replaceChildren(...nodes);
    const items = this.summary.items.length;
    this.info.textContent = `${items} entries, ${lanes.length} lanes, ${clock(from)}–${clock(to)}`;
    this.focus = Math.min(this.focus, Math.max(0, this.spans.length - 1));
    const target = this.spanNode(this.focus);
    if (target) {
      this.svg.removeAttribute("tabindex");
      target.setAttribute("tabindex", "0");
      if (hadFocus) target.focus();
    } else {
      this.svg.setAttribute("tabindex", "0"); // still reachable, to read "nothing seen"
    }
    this.geometry = { from, span, labelW, width };
  }

  spanNode(index) {
    return this.svg.querySelector(`rect.span[data-index="${index}"]`);
  }

  onClick(event) {
    const node = event.target.closest("rect.span");
    if (!node) return;
    const { from, span, labelW, width } = this.geometry;
    const box = this.svg.getBoundingClientRect();
    const px = ((event.clientX - box.left) * width) / box.width;
    const t = from + ((px - labelW) / (width - labelW - 10)) * span;
    this.moveFocus(Number(node.dataset.index), false);
    this.select(this.spans[Number(node.dataset.index)], t);
  }

  onKey(event) {
    const current = this.spans[this.focus];
    if (!current) return;
    let next = null;
    if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      const candidate = this.focus + (event.key === "ArrowRight" ? 1 : -1);
      if (this.spans[candidate]?.row === current.row) next = candidate;
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const row = current.row + (event.key === "ArrowDown" ? 1 : -1);
      const mid = (current.a + current.b) / 2;
      let best = Infinity;
      this.spans.forEach((item, i) => {
        const gap = Math.abs((item.a + item.b) / 2 - mid);
        if (item.row === row && gap < best) [best, next] = [gap, i];
      });
    } else if (event.key === "Home" || event.key === "End") {
      next = event.key === "Home" ? 0 : this.spans.length - 1;
    } else if (event.key === "Enter" || event.key === " ") {
      this.select(current, (current.a + current.b) / 2);
    } else {
      return;
    }
    event.preventDefault();
    if (next !== null) this.moveFocus(next, true);
  }

  moveFocus(index, focus) {
    this.spanNode(this.focus)?.setAttribute("tabindex", "-1");
    this.focus = index;
    const node = this.spanNode(index);
    node?.setAttribute("tabindex", "0");
    if (focus) node?.focus();
  }

  /** Show the keyframe of the part of `item` nearest stream second `t`. */
  select(item, t) {
    const part = item.parts.reduce((best, p) => {
      const gap = t < p.a ? p.a - t : t > p.b ? t - p.b : 0;
      return gap < best.gap ? { gap, p } : best;
    }, { gap: Infinity, p: item.parts[0] }).p;
    this.selected = { name: item.name, t: (part.a + part.b) / 2 };
    this.band = null;
    this.render();
    const path = part.frame === null ? null : `/cameras/${this.camera}/snapshot?frame=${part.frame}`;
    this.show(path, { title: item.name, from: part.a, to: part.b, frame: part.frame });
  }

  /** Highlight evidence {from, to} and show its keyframe (`snapshotUrl`, a same-origin path). */
  reveal({ from, to, snapshotUrl, title }) {
    this.band = { from, to };
    this.selected = null;
    this.render();
    const frame = Number(new URLSearchParams(snapshotUrl?.split("?")[1] || "").get("frame"));
    this.show(snapshotUrl, { title, from, to, frame: Number.isFinite(frame) ? frame : null });
  }

  async show(path, { title, from, to, frame }) {
    const start = this.wallClock(from);
    const end = this.wallClock(to);
    const when = start ? ` · wall clock ${wall(start)}${to - from >= 1 ? `–${wall(end)}` : ""}` : "";
    const what = `${title} · stream ${secs(from)}–${secs(to)}${when}`;
    this.caption.textContent = frame === null ? what : `${what} · frame ${frame}`;
    this.img.alt = `Keyframe of ${this.camera} at stream ${secs(from)}`;
    if (!path) {
      this.img.hidden = true;
      return;
    }
    try {
      await showImage(this.img, path);
      this.img.hidden = false;
    } catch (err) {
      this.img.hidden = true;
      const gone = err instanceof ApiError && err.status === 404;
      this.caption.textContent = `${what} · ${gone ? "that keyframe is no longer kept" : err.message}`;
    }
  }
}
