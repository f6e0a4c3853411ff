/**
 * The dashboard's selection panel (backend/selection/): the project's strategy, how its images'
 * uncertainty scores are spread, which images claim next gives next, and near duplicates flagged.
 * Job starters may score the project again (e.g. after changing the random seed).
 */
import { request } from "../api/client";
import type { Job } from "../api/jobs";
import type { Schema } from "../api/types";
import { h } from "../dom";

export type Selection = Schema<"SelectionOut">;

const UPCOMING = 10;

export const getSelection = async (projectId: number): Promise<Selection> =>
  (await request(`/api/projects/${projectId}/selection?limit=${UPCOMING}`)).json() as Promise<Selection>;

const scoreProject = async (projectId: number): Promise<Job> =>
  (await request(`/api/projects/${projectId}/selection/score`, { method: "POST" })).json() as Promise<Job>;

/** One bar per tenth of the uncertainty range, as wide as its share of the scored images. */
function histogram(counts: number[]): HTMLElement {
  const most = Math.max(1, ...counts);
  return h("div", { class: "selection-histogram", "data-histogram": "" },
    ...counts.map((count, bin) =>
      h("div", { class: "row", "data-bin": bin, title: `${count} images` },
        h("span", { class: "muted", style: "width:5em" }, `${(bin / 10).toFixed(1)}–${((bin + 1) / 10).toFixed(1)}`),
        h("span", { style: `display:inline-block;height:0.8em;background:#2563eb;width:${(count / most) * 60}%` }),
        h("span", {}, ` ${count}`))));
}

export async function selectionPanel(projectId: number, mayScore: boolean, report: (text: string) => void): Promise<HTMLElement> {
  const s = await getSelection(projectId);
  const upcoming = h("table", { "data-table": "upcoming" },
    h("thead", {}, h("tr", {}, ...["#", "image", "uncertainty", "near duplicate of"].map((t) => h("th", {}, t)))),
    h("tbody", {}, ...s.upcoming.map((u, k) =>
      h("tr", { "data-upcoming": u.image_id },
        h("td", {}, String(k + 1)),
        h("td", {}, u.file_name),
        h("td", {}, u.uncertainty === null ? "not scored" : u.uncertainty.toFixed(3)),
        h("td", {}, u.near_duplicate_of === null ? "" : `#${u.near_duplicate_of}`)))));
  const score = mayScore
    ? h("button", {
        "data-control": "score",
        onclick: () => void scoreProject(projectId).then(() => report("scoring started"), (e: Error) => report(e.message)),
      }, "Score images now")
    : null;
  return h("section", { class: "card", "data-selection": s.strategy },
    h("h3", {}, `What to annotate next: ${s.strategy.replace("_", " ")}`),
    h("p", { class: "muted" },
      `${s.unscored} images not scored yet · ${s.near_duplicates} near duplicates flagged · `,
      "strategy: project settings, selection.strategy"),
    h("h4", {}, "Uncertainty of the scored images"),
    histogram(s.uncertainty_histogram),
    h("h4", {}, "Next images"),
    upcoming,
    score);
}
