/**
 * Forms whose errors appear next to their fields: each field is keyed by the path of the request
 * value it sets ("name", "settings.gates.done.min_done_share"), and a 422's `errors[].loc` (e.g.
 * ["body", "settings", "review_fraction"]) finds its field by that key. The server's schema is the
 * only validation; the page only places its messages.
 */
import { ApiError } from "./api/client";
import { h } from "./dom";

/** A labelled control with a hint and a slot for its error. */
export function field(key: string, label: string, control: HTMLElement, hint?: string): HTMLElement {
  control.setAttribute("aria-describedby", `error-${key}`);
  return h(
    "label",
    { class: "field", "data-field": key },
    h("span", { class: "field-label" }, label),
    control,
    hint ? h("small", { class: "muted" }, hint) : null,
    h("small", { class: "field-error error", id: `error-${key}`, "data-error-for": key, "aria-live": "polite" }),
  );
}

export function clearErrors(form: HTMLElement, general?: HTMLElement): void {
  for (const slot of form.querySelectorAll<HTMLElement>("[data-error-for]")) slot.textContent = "";
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  if (general) general.textContent = "";
}

/** Marks one field invalid with `message`; false when the form has no field under `key`. */
export function fieldError(form: HTMLElement, key: string, message: string): boolean {
  const slot = form.querySelector<HTMLElement>(`[data-error-for="${CSS.escape(key)}"]`);
  if (!slot) return false;
  slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
  form.querySelector(`[data-field="${CSS.escape(key)}"] :is(input, select, textarea)`)?.setAttribute("aria-invalid", "true");
  return true;
}

/** Shows an error thrown by a request: each validation item at its field (the deepest field its
 * `loc` reaches), the rest, or the server's `detail` when nothing could be placed, in `general`. */
export function showErrors(form: HTMLElement, error: unknown, general: HTMLElement): void {
  clearErrors(form, general);
  if (!(error instanceof ApiError)) {
    general.textContent = String(error);
    return;
  }
  const unplaced: string[] = [];
  for (const item of error.errors) {
    const path = item.loc.filter((part, i) => !(i === 0 && (part === "body" || part === "query"))).map(String);
    let placed = false;
    for (let n = path.length; n > 0 && !placed; n--) placed = fieldError(form, path.slice(0, n).join("."), item.msg);
    if (!placed) unplaced.push(`${path.join(".") || "request"}: ${item.msg}`);
  }
  if (unplaced.length || !error.errors.length) general.textContent = unplaced.length ? unplaced.join("; ") : error.message;
}
