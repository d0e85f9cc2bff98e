// Small inline-SVG line charts (no library): a value over wall-clock time, with optional marked points.

import { s } from "./dom.js";

const W = 320;
const H = 64;
const PAD = { left: 34, right: 6, top: 6, bottom: 14 };

/** "10 min ago", "45 s ago". */
function ago(ms) {
  return ms >= 120_000 ? `${Math.round(ms / 60_000)} min ago` : `${Math.round(ms / 1000)} s ago`;
}

/**
 * A chart of `points` [{time: ms, value}] (and `dots`, drawn as circles) since the first point, at least the
 * last `minMs` and at most `maxMs`; values from 0 to the largest value (at least `yFloor`, at most `yMax`).
 * `label` and `format(value)` make its accessible name.
 */
export function lineChart({
  points, dots = [], label, format, yFloor = 1e-9, yMax = Infinity, minMs = 60_000, maxMs = 600_000,
}) {
  const now = Date.now();
  const first = Math.min(now, ...points.map((p) => p.time), ...dots.map((d) => d.time));
  const spanMs = Math.max(minMs, Math.min(maxMs, now - first));
  const from = now - spanMs;
  const shown = points.filter((p) => p.time >= from);
  const marks = dots.filter((d) => d.time >= from);
  const largest = Math.max(...shown.map((p) => p.value * 1.1), ...marks.map((d) => d.value));
  const top = Math.min(yMax, Math.max(yFloor, largest));
  const x = (time) => PAD.left + ((time - from) / spanMs) * (W - PAD.left - PAD.right);
  const y = (value) => H - PAD.bottom - (Math.min(value, top) / top) * (H - PAD.top - PAD.bottom);
  const last = shown.at(-1);
  const name = last ? `${label}: ${format(last.value)} now` : `${label}: no data yet`;
  const nodes = [
    s("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }),
    s("text", { class: "chart-y", x: PAD.left - 4, y: PAD.top + 6 }, format(top)),
    s("text", { class: "chart-y", x: PAD.left - 4, y: H - PAD.bottom }, format(0)),
    s("text", { class: "chart-x", x: PAD.left, y: H - 2 }, ago(spanMs)),
    s("text", { class: "chart-x end", x: W - PAD.right, y: H - 2 }, "now"),
  ];
  if (shown.length > 1) {
    const line = shown.map((p) => `${x(p.time).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
    const base = H - PAD.bottom;
    const area = `${x(shown[0].time).toFixed(1)},${base} ${line} ${x(last.time).toFixed(1)},${base}`;
    nodes.push(s("polygon", { class: "chart-area", points: area }));
    nodes.push(s("polyline", { class: "chart-line", points: line }));
  } else if (last) {
    nodes.push(s("circle", { class: "chart-dot", cx: x(last.time), cy: y(last.value), r: 2.5 }));
  }
  for (const dot of marks) {
    nodes.push(s("circle", { class: "chart-mark", cx: x(dot.time), cy: y(dot.value), r: 2.5 },
      s("title", {}, dot.title || format(dot.value))));
  }
  return s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": name },
    s("title", {}, name), ...nodes);
}
