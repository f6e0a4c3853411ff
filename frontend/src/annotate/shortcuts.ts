/** The annotate page's keyboard shortcuts: one table drives both the key handler's docs and the help panel. */
import { h } from "../dom";

export const SHORTCUTS: [keys: string, action: string][] = [
  ["Left click", "foreground point (refines the mask)"],
  ["Right click / Alt+click", "background point"],
  ["Drag", "box prompt"],
  ["Tab / 1 2 3", "switch between the three candidate masks"],
  ["Enter", "accept the mask (saves it)"],
  ["Esc", "clear the working mask (or cancel a correction)"],
  ["C", "correct the saved mask under the cursor (Enter replaces it)"],
  ["Ctrl+Z / Ctrl+Shift+Z", "undo / redo"],
  ["V", "point tool"],
  ["B / E", "brush / eraser"],
  ["[ / ]", "smaller / larger brush"],
  ["H", "hide or show all accepted masks"],
  ["U", "show or hide the uncovered area (tints what no mask covers)"],
  ["N", "next image (marks this one done)"],
  ["Shift+N", "previous image"],
  ["?", "this help"],
];

export function helpPanel(onClose: () => void): HTMLElement {
  const rows = SHORTCUTS.map(([keys, action]) =>
    h("tr", {}, h("td", {}, ...keys.split(" / ").flatMap((k, i) => [i ? " / " : "", h("kbd", {}, k)])), h("td", {}, action)),
  );
  return h(
    "div",
    { class: "card help", role: "dialog", "aria-label": "Keyboard shortcuts" },
    h("div", { class: "row" }, h("strong", {}, "Keyboard shortcuts"), h("button", { class: "link", onclick: onClose }, "close")),
    h("table", {}, ...rows),
  );
}
