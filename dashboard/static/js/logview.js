// A virtualised log view: only the lines in sight are in the DOM, so a 100k-line log scrolls as
// smoothly as a short one. Lines are text nodes (log lines are attacker-controlled). Search
// filters the lines shown; "follow" keeps the view at the bottom while lines arrive.
import { h } from "./dom.js";

const LINE_HEIGHT = 18; // px, as .logview .line in app.css
const OVERSCAN = 20;

export class LogView {
  constructor() {
    this.lines = [];
    this.shown = this.lines; // all lines, or the ones matching the search
    this.query = "";
    this.stick = true; // at the bottom: follow new lines
    this.spacer = h("div", { class: "spacer" });
    this.el = h("div", { class: "logview", tabindex: 0, role: "log", "aria-label": "log lines" }, this.spacer);
    this.el.addEventListener("scroll", () => {
      const bottom = this.el.scrollHeight - this.el.clientHeight - this.el.scrollTop;
      this.stick = bottom < LINE_HEIGHT * 2;
      this.schedule();
    });
    this.pending = false;
  }

  clear() {
    this.lines = [];
    this.shown = this.lines;
    this.stick = true;
    this.schedule();
  }

  push(newLines) {
    for (const line of newLines) this.lines.push(line);
    if (this.query) this.shown = this.lines.filter((l) => l.includes(this.query));
    else this.shown = this.lines;
    this.schedule();
  }

  search(query) {
    this.query = query;
    this.shown = query ? this.lines.filter((l) => l.includes(query)) : this.lines;
    this.schedule();
  }

  text() {
    return this.lines.join("\n") + (this.lines.length ? "\n" : "");
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    this.spacer.style.height = `${this.shown.length * LINE_HEIGHT}px`;
    if (this.stick) this.el.scrollTop = this.el.scrollHeight;
    const first = Math.max(0, Math.floor(this.el.scrollTop / LINE_HEIGHT) - OVERSCAN);
    const count = Math.min(this.shown.length - first, Math.ceil(this.el.clientHeight / LINE_HEIGHT) + 2 * OVERSCAN);
    // A fixed pool of line elements, refilled on each frame: no element is created or removed
    // while scrolling, only text and position change.
    while (this.spacer.childElementCount < count) this.spacer.append(h("div", { class: "line" }));
    while (this.spacer.childElementCount > Math.max(count, 0)) this.spacer.lastChild.remove();
    const rows = this.spacer.children;
    for (let i = 0; i < count; i += 1) {
      const row = rows[i];
      const text = this.shown[first + i];
      if (row.textContent !== text) row.textContent = text;
      row.style.transform = `translateY(${(first + i) * LINE_HEIGHT}px)`;
      row.classList.toggle("hit", Boolean(this.query));
    }
  }
}

/** Read a streamed text body line by line, calling onLines with each batch of whole lines. */
export async function readLines(response, onLines) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let rest = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const text = rest + decoder.decode(value, { stream: true });
    const parts = text.split("\n");
    rest = parts.pop();
    if (parts.length) onLines(parts);
  }
  if (rest) onLines([rest]);
}
