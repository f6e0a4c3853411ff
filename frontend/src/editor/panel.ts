/** The editor's controls in a page's side panel: the tool buttons and the candidate buttons. */
import { h } from "../dom";
import type { Tool } from "./pointer";
import type { WorkingMask } from "./store";

/** Points / Brush / Eraser (V, B, E; the pressed one marked) and the brush size ([ and ] change it). */
export function renderTools(into: HTMLElement, current: Tool, brushRadius: number, select: (tool: Tool) => void): void {
  const button = (tool: Tool, label: string, key: string) =>
    h("button", { "aria-pressed": String(current === tool), "data-tool": tool, title: key, onclick: () => select(tool) }, label);
  into.replaceChildren(
    button("points", "Points", "V"),
    button("brush", "Brush", "B"),
    button("eraser", "Eraser", "E"),
    h("span", { class: "muted" }, `size ${brushRadius}px`),
  );
}

/** One button per candidate `tokens` offers, with its predicted IoU; a hint while nothing is decoded. */
export function renderCandidates(into: HTMLElement, working: WorkingMask, tokens: number[], correcting: boolean, select: (token: number) => void): void {
  const decoded = working.decoded;
  if (!decoded) {
    const hint = correcting ? "click, brush or erase to correct the mask" : "click on an object";
    into.replaceChildren(h("span", { class: "muted" }, hint));
    return;
  }
  into.replaceChildren(
    ...tokens.map((t) =>
      h(
        "button",
        { "aria-pressed": String(working.candidate === t), "data-token": t, onclick: () => select(t) },
        `${t === 0 ? "refined" : t} · IoU ${decoded.iou[t].toFixed(2)}`,
      ),
    ),
  );
}
