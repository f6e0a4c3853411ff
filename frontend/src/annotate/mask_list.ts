/** The annotate page's list of the image's masks: visibility, colour, origin, save state, correct and delete. */
import type { MaskOut } from "../api/types";
import { h } from "../dom";
import { colourOf, savedKey, type ImageMasks } from "./image_masks";

export interface MaskListActions {
  correct(mask: MaskOut): void;
  remove(mask: MaskOut): void;
  /** A visibility box was ticked or unticked. */
  changed(): void;
}

/** Fills `into` with one entry per mask; `correcting` is the id of the mask being corrected, if any. */
export function renderMaskList(into: HTMLElement, masks: ImageMasks, correcting: number | null, actions: MaskListActions): void {
  const items: HTMLElement[] = [];
  const entry = (key: string, label: string, state: string, buttons: HTMLElement[]) => {
    const [r, g, b] = colourOf(key);
    const visible = h("input", { type: "checkbox", title: "visible" });
    visible.checked = !masks.hidden.has(key);
    visible.addEventListener("change", () => {
      if (visible.checked) masks.hidden.delete(key);
      else masks.hidden.add(key);
      actions.changed();
    });
    items.push(
      h(
        "li",
        { "data-mask": key },
        visible,
        h("span", { class: "swatch", style: `background: rgb(${r} ${g} ${b})` }),
        h("span", {}, label),
        h("span", { class: "muted" }, state),
        ...buttons,
      ),
    );
  };
  const button = (label: string, title: string, onclick: () => void) => h("button", { class: "link", title, onclick }, label);
  for (const mask of masks.current()) {
    const origin = mask.source === "manual" ? "" : ` (${mask.source}, pre-filled)`;
    const isCorrected = correcting === mask.id;
    entry(savedKey(mask), `#${mask.id} · ${mask.area} px${origin}`, isCorrected ? "correcting: Enter saves, Esc cancels" : "", [
      ...(isCorrected ? [] : [button("correct", "correct this mask (C with the cursor over it)", () => actions.correct(mask))]),
      button("delete", "delete this mask", () => actions.remove(mask)),
    ]);
  }
  for (const clientId of masks.unconfirmed()) {
    const replaces = masks.replacing.get(clientId);
    entry(clientId, replaces === undefined ? "new mask" : `correction of #${replaces}`, masks.saveState.get(clientId) ?? "saving…", []);
  }
  into.replaceChildren(...items);
}
