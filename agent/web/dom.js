// Small DOM and formatting helpers. Elements are built from data, never from HTML strings.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** An HTML element: h("p", {class: "x", onclick: f}, "text", child). */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** 12345 -> "12,345". */
export function int(n) {
  return Math.round(n).toLocaleString("en-US");
}

/** Seconds with one decimal: 12.34 -> "12.3 s". */
export function secs(t) {
  return `${t.toFixed(1)} s`;
}

/** Stream seconds as m:ss: 125 -> "2:05". */
export function clock(t) {
  const whole = Math.max(0, Math.round(t));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/** A wall-clock time as HH:MM:SS in the browser's zone. */
export function wall(date) {
  return date.toLocaleTimeString("en-GB", { hour12: false });
}

/** A shortened id for display (rule ids are 32 hex digits). */
export function shortId(id) {
  return id.length > 10 ? `${id.slice(0, 8)}…` : id;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A destructive button that asks for a second press: the first turns it into "Confirm <what>" for a few
 * seconds (keyboard and screen readers see the change), the second runs `action`.
 */
export function confirmButton(label, accessibleName, action) {
  const button = h("button", { type: "button", class: "danger", "aria-label": accessibleName }, label);
  let armed = null;
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = "Confirm";
      button.setAttribute("aria-label", `Confirm: ${accessibleName}`);
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.setAttribute("aria-label", accessibleName);
      }, 4000);
      return;
    }
    clearTimeout(armed);
    button.disabled = true;
    try {
      await action();
    } finally {
      armed = null;
      button.disabled = false;
      button.textContent = label;
      button.setAttribute("aria-label", accessibleName);
    }
  });
  return button;
}
