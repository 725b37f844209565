// Building DOM without HTML strings: every API string (run names, labels, log lines, error
// details) becomes a text node, so nothing the API returns is ever parsed as markup.

/** h("a", {href: "#/runs", class: "x", onclick: fn}, "text", child, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A problem document (or any error) as a visible, readable message. */
export function errorBox(error) {
  const box = h("div", { class: "error", role: "alert" }, h("strong", {}, error.title || "Error"));
  if (error.detail || error.message) box.append(" ", error.detail || error.message);
  for (const field of error.errors || []) {
    box.append(h("div", { class: "field-error" }, `${field.pointer || field.parameter}: ${field.message}`));
  }
  return box;
}
