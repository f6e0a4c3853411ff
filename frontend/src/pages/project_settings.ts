/**
 * A project's name, description and every setting (backend/projects/settings.py), as in effect
 * (defaults for what was never set). Saving sends only what changed (`PATCH`, merged key by key on
 * the server); the schema's refusals appear next to their fields. Managers of the project also
 * archive it here (or restore it). Other members see the same form, read-only.
 */
import { listMembers, manages, roleIn, updateProject, type SettingsPatch } from "../api/projects";
import type { Project } from "../api/types";
import { append, h } from "../dom";
import { clearErrors, field, fieldError, showErrors } from "../forms";
import { frame } from "../layout";
import { webhooksPanel } from "../webhooks/panel";

type Kind = "int" | "float" | "bool" | "inherit-bool";

/** Every setting: its path in `ProjectSettings`, label, kind and what it does. */
const SETTINGS: { group: string; fields: [path: string, label: string, kind: Kind, hint: string][] }[] = [
  {
    group: "Review",
    fields: [
      ["review_fraction", "Review fraction", "float", "share of automatic masks sampled into the review queue, 0 to 1"],
      ["review_seed", "Review seed", "int", "seed of that sample (the same seed picks the same masks)"],
    ],
  },
  {
    group: "Retraining",
    fields: [
      ["retrain_every_masks", "Retrain every … masks", "int", "a round starts after this many new masks; 0 = never by itself"],
      ["auto_promote", "Auto-promote", "bool", "a finished round serves the project if it beats the active version on held-out images"],
      ["retrain_params.steps", "Steps per round", "int", "training steps of a round started by itself"],
      ["retrain_params.lr", "Learning rate", "float", "cut tenfold for the last quarter of the steps"],
      ["retrain_params.batch_size", "Batch size", "int", "masks per step"],
      ["retrain_params.held_out_fraction", "Held-out fraction", "float", "share of images kept out of training to measure the round"],
      ["retrain_params.min_masks", "Minimum masks", "int", "a round with fewer usable masks fails up front"],
      ["retrain_params.max_clicks", "Clicks simulated", "int", "clicks per mask in training and evaluation"],
      ["retrain_params.seed", "Seed", "int", "train/held-out split and click simulation"],
      ["retrain_params.auto_promote", "Round auto-promotes", "inherit-bool", "override the project's auto-promote for these rounds"],
    ],
  },
  {
    group: "Gate to semi-automatic",
    fields: [
      ["gates.semi_automatic.min_masks", "Minimum masks", "int", "masks annotated in the assisted-manual stage"],
      ["gates.semi_automatic.min_done_share", "Minimum share done", "float", "share of images done in the assisted-manual stage, 0 to 1"],
      ["gates.semi_automatic.min_trained_models", "Minimum retrained models", "int", "ready model versions retrained on the project"],
      ["gates.semi_automatic.min_detectors", "Minimum detectors", "int", "ready detector versions of the project"],
    ],
  },
  {
    group: "Gate to fully automatic",
    fields: [
      ["gates.fully_automatic.min_masks", "Minimum masks", "int", "masks annotated in the semi-automatic stage"],
      ["gates.fully_automatic.min_trained_models", "Minimum retrained models", "int", "ready model versions retrained on the project"],
    ],
  },
  {
    group: "Gate to done",
    fields: [["gates.done.min_done_share", "Minimum share done", "float", "share of images done in the fully automatic stage, 0 to 1"]],
  },
];

type Value = number | boolean | null;

function valueAt(settings: unknown, path: string): Value {
  return path.split(".").reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], settings) as Value;
}

function setAt(patch: SettingsPatch, path: string, value: Value): void {
  const keys = path.split(".");
  let node = patch;
  for (const key of keys.slice(0, -1)) node = (node[key] ??= {}) as SettingsPatch;
  node[keys[keys.length - 1]] = value;
}

function control(path: string, kind: Kind, value: Value): HTMLInputElement | HTMLSelectElement {
  const name = `settings.${path}`;
  if (kind === "bool") return h("input", { type: "checkbox", name, checked: value === true });
  if (kind === "inherit-bool") {
    const options: [string, string][] = [["", "as the project's auto-promote"], ["true", "yes"], ["false", "no"]];
    return h("select", { name }, ...options.map(([v, label]) => h("option", { value: v, selected: String(value ?? "") === v }, label)));
  }
  return h("input", { type: "number", name, value: String(value), step: kind === "int" ? "1" : "any", inputmode: kind === "int" ? "numeric" : "decimal" });
}

/** The control's value as the schema takes it; a string when it is not a number at all. */
function read(input: HTMLInputElement | HTMLSelectElement, kind: Kind): Value | string {
  if (kind === "bool") return (input as HTMLInputElement).checked;
  if (kind === "inherit-bool") return input.value === "" ? null : input.value === "true";
  const raw = input.value.trim();
  return raw === "" || !Number.isFinite(Number(raw)) ? raw : Number(raw);
}

export async function projectSettingsPage(root: HTMLElement, params: Record<string, string>): Promise<void> {
  const projectId = Number(params.projectId);
  const { main, user, project: loaded } = await frame(root, "settings", { projectId, title: "Settings" });
  let project = loaded!;
  const editable = manages(roleIn(user, await listMembers(projectId)));

  const name = h("input", { name: "name", value: project.name, maxlength: 200 });
  const description = h("textarea", { name: "description", rows: 3, maxlength: 10000 }, project.description);
  const inputs = new Map<string, [HTMLInputElement | HTMLSelectElement, Kind]>();
  const groups = SETTINGS.map(({ group, fields }) =>
    h("fieldset", { class: "card" }, h("legend", {}, group), h("div", { class: "fields" }, ...fields.map(([path, label, kind, hint]) => {
      const input = control(path, kind, valueAt(project.settings, path));
      inputs.set(path, [input, kind]);
      return field(`settings.${path}`, label, input, hint);
    }))));
  const general = h("p", { class: "error", role: "alert" });
  const status = h("p", { class: "ok", "data-status": "", "aria-live": "polite" });
  const save = h("button", { type: "submit", class: "primary", "data-action": "save" }, "Save changes");
  const form = h(
    "form",
    { class: "settings-form", "data-form": "settings", novalidate: true },
    h("fieldset", { class: "card" }, h("legend", {}, "Project"), field("name", "Name", name), field("description", "Description", description)),
    ...groups,
    h("div", { class: "actions sticky" }, save, status, general),
  );
  if (!editable) {
    for (const el of form.querySelectorAll<HTMLInputElement>("input, select, textarea, button")) el.disabled = true;
    status.textContent = "Only the project's managers change its settings.";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, general);
    status.textContent = "";
    const patch: { name?: string; description?: string; settings?: SettingsPatch } = {};
    if (name.value.trim() !== project.name) patch.name = name.value.trim();
    if (description.value.trim() !== project.description) patch.description = description.value.trim();
    const settings: SettingsPatch = {};
    let invalid = false;
    for (const [path, [input, kind]] of inputs) {
      const value = read(input, kind);
      if (typeof value === "string") {
        invalid = fieldError(form, `settings.${path}`, "a number is needed here") || invalid;
      } else if (value !== valueAt(project.settings, path)) {
        setAt(settings, path, value);
      }
    }
    if (invalid) return;
    if (Object.keys(settings).length) patch.settings = settings;
    if (!Object.keys(patch).length) {
      status.textContent = "Nothing changed.";
      return;
    }
    try {
      project = await updateProject(projectId, patch);
      status.textContent = `Saved: ${describe(patch)}.`;
      document.querySelector("[data-project-name]")!.textContent = project.name;
    } catch (error) {
      showErrors(form, error, general);
    }
  });

  append(main, h("h1", {}, "Settings"), form, editable ? webhooksPanel(projectId) : null, editable ? archiveSection(projectId, project) : null);
}

function describe(patch: { name?: string; description?: string; settings?: SettingsPatch }): string {
  const keys: string[] = [];
  const walk = (node: SettingsPatch, prefix: string) => {
    for (const [key, value] of Object.entries(node)) {
      if (value !== null && typeof value === "object") walk(value, `${prefix}${key}.`);
      else keys.push(`${prefix}${key}`);
    }
  };
  if (patch.name !== undefined) keys.push("name");
  if (patch.description !== undefined) keys.push("description");
  if (patch.settings) walk(patch.settings, "");
  return keys.join(", ");
}

/** Archiving hides the project from the projects list (it stays whole and can be restored). */
function archiveSection(projectId: number, project: Project): HTMLElement {
  const message = h("p", { "aria-live": "polite" });
  const archived = Boolean(project.archived);
  const button = h("button", {
    "data-action": archived ? "restore" : "archive",
    onclick: async () => {
      try {
        const out = await updateProject(projectId, { archived: !archived });
        message.className = "ok";
        message.textContent = out.archived ? "Archived: the project no longer shows in the projects list (tick “show archived” to see it)." : "Restored.";
        button.disabled = true;
      } catch (error) {
        message.className = "error";
        message.textContent = (error as Error).message;
      }
    },
  }, archived ? "Restore project" : "Archive project");
  return h("section", { class: "card form" }, h("h2", {}, "Archive"),
    h("p", { class: "muted" }, archived
      ? "This project is archived. Restoring it shows it in the projects list again."
      : "Archiving hides the project from the projects list; nothing is deleted."), button, message);
}
