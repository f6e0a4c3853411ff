/**
 * The project dashboard: headline figures, charts, per-annotator and timeline tables (CSV export),
 * live jobs with progress bars (polled), and, for managers, the stage gate and controls.
 * Annotators get the same page restricted to their own figures (the server decides the scope).
 */
import type { Chart } from "chart.js";
import { startEmbedding } from "../api/images";
import { listJobs, type Job } from "../api/jobs";
import { append, h } from "../dom";
import { frame } from "../layout";
import {
  advanceStage,
  downloadCsv,
  getAnnotators,
  getDashboard,
  getTimeline,
  proposeMasks,
  startAutoAnnotation,
  trainDetector,
  type AnnotatorRow,
  type Dashboard,
  type TimelineRow,
} from "./api";
import { histogramChart, imagesChart, masksChart, modelsChart, roundLabel, timelineChart } from "./charts";
import { selectionPanel } from "./selection";

const JOB_POLL_MS = 2000;

const fmt = (value: number | null, digits = 1): string => (value === null ? "–" : value.toFixed(digits));
const pct = (value: number | null): string => (value === null ? "–" : `${(value * 100).toFixed(1)}%`);

function figure(name: string, label: string, value: string): HTMLElement {
  return h("div", { class: "card figure" }, h("div", { class: "muted" }, label), h("strong", { "data-figure": name }, value));
}

function chartBox(name: string, title: string): [HTMLElement, HTMLCanvasElement] {
  const canvas = h("canvas", { "data-chart": name });
  return [h("section", { class: "card chart" }, h("h3", {}, title), h("div", { style: "position:relative;height:220px" }, canvas)), canvas];
}

function table<T>(name: string, rows: T[], columns: [string, (row: T) => string][]): HTMLTableElement {
  return h(
    "table",
    { "data-table": name },
    h("thead", {}, h("tr", {}, ...columns.map(([title]) => h("th", {}, title)))),
    h("tbody", {}, ...rows.map((row) => h("tr", {}, ...columns.map(([, cell]) => h("td", {}, cell(row)))))),
  );
}

/**
 * While the serving version's embed job is pending (after promoting a version with a new image encoder,
 * or embedding new images): "Embedded with the serving model: x / N" and that job's progress bar; hidden
 * otherwise (the server counts only then). Images not embedded yet are annotated with the previous
 * version (its embedding and its decoder) until the job reaches them. `update` takes the polled jobs;
 * when the job is no longer among the pending ones, `refresh` re-reads the figures once.
 */
function coveragePanel(d: Dashboard, refresh: () => Promise<Dashboard>): { element: HTMLElement; update: (jobs: Job[]) => void } {
  const count = h("strong", { "data-figure": "embedded" });
  const bar = h("progress", { max: 1, "data-embed-progress": "" });
  const note = h("span", { class: "muted" });
  const element = h("section", { class: "card", "data-embeddings": "" },
    h("div", {}, "Embedded with the serving model: ", count), bar, note);
  let pendingJob: number | null = null;
  const show = (coverage: Dashboard["embeddings"], job: Job | null) => {
    element.hidden = job === null;
    count.textContent = `${coverage.embedded ?? "–"} / ${coverage.images}`;
    element.dataset.modelVersion = String(coverage.model_version_id ?? "");
    pendingJob = job?.id ?? null;
    bar.hidden = job === null;
    bar.value = job?.progress ?? 0;
    note.textContent = job === null
      ? ""
      : ` embed job #${job.id} · ${job.status} · ${job.message} — images not embedded yet are annotated with the previous model until it reaches them`;
  };
  show(d.embeddings, d.embeddings.job);
  const update = (jobs: Job[]) => {
    if (pendingJob === null) return;
    const job = jobs.find((j) => j.id === pendingJob);
    if (job !== undefined && (job.status === "queued" || job.status === "running")) {
      bar.value = job.progress;
      return;
    }
    pendingJob = null;
    void refresh().then((fresh) => show(fresh.embeddings, fresh.embeddings.job)).catch(() => undefined);
  };
  return { element, update };
}

function jobRow(job: Job): HTMLElement {
  return h(
    "li",
    { class: "job", "data-job": job.id, "data-status": job.status },
    h("span", {}, `#${job.id} ${job.kind} · ${job.status}`),
    h("progress", { max: 1, value: job.progress }),
    h("span", { class: "muted" }, job.error ?? job.message),
  );
}

export async function dashboardPage(root: HTMLElement, params: Record<string, string>): Promise<() => void> {
  const projectId = Number(params.projectId);
  const charts: Chart[] = [];
  let timer: number | undefined;
  const message = h("p", { class: "muted", "data-message": "" });
  const cleanup = () => {
    if (timer !== undefined) clearInterval(timer);
    charts.forEach((c) => c.destroy());
  };

  const { main, user } = await frame(root, "dashboard", { projectId, title: "Dashboard" });
  const [d, annotators, timeline] = await Promise.all([
    getDashboard(projectId),
    getAnnotators(projectId),
    getTimeline(projectId, "hour"),
  ]);
  const managing = d.scope === "project" && user.role !== "annotator";
  const rerender = () => {
    cleanup();
    root.replaceChildren();
    void dashboardPage(root, params);
  };
  const act = (work: () => Promise<unknown>, done: string) => async () => {
    try {
      await work();
      message.textContent = done;
      rerender();
    } catch (error) {
      message.textContent = (error as Error).message;
    }
  };

  const figures = h(
    "div",
    { class: "figures" },
    figure("images-total", "images", String(d.images.total)),
    figure("images-done", "done in this stage", String(d.images.by_status.done ?? 0)),
    figure("masks-total", "masks", String(d.masks.total)),
    figure("masks-per-image", "masks per image", fmt(d.masks.per_image_mean)),
    figure("seconds-median", "seconds per mask (median)", fmt(d.timing.seconds_per_mask_median)),
    figure("seconds-p90", "seconds per mask (p90)", fmt(d.timing.seconds_per_mask_p90)),
    figure("masks-per-hour", "masks per hour", fmt(d.timing.masks_per_hour)),
    figure("clicks-per-mask", "clicks per mask", fmt(d.timing.clicks_per_mask, 2)),
    figure("prefill", "pre-filled kept / corrected / deleted", `${d.prefill.kept} / ${d.prefill.corrected} / ${d.prefill.deleted}`),
    figure("review-share", `reviewed auto masks with IoU > ${d.review.iou_threshold}`, `${pct(d.review.share_within)} of ${d.review.reviewed}`),
  );

  const boxes = [
    chartBox("images", "Images by status"),
    chartBox("masks", "Masks by stage and source"),
    chartBox("histogram", "Masks per image"),
    chartBox("timeline", "Masks over time (per hour, the last 720 hours with masks)"),
    chartBox("models", "Model rounds: held-out metrics"),
  ];

  const coverage = coveragePanel(d, () => getDashboard(projectId));
  const jobList = h("ul", { class: "jobs", "data-jobs": "" }, ...[...d.jobs.active, ...d.jobs.recent].map(jobRow));
  const pollJobs = async () => {
    try {
      const jobs = await listJobs(projectId, undefined, 20);
      jobList.replaceChildren(...jobs.map(jobRow));
      coverage.update(jobs);
    } catch (error) {
      message.textContent = (error as Error).message;
    }
  };
  timer = window.setInterval(() => void pollJobs(), JOB_POLL_MS);

  const roundColumns: [string, (m: Dashboard["models"][number]) => string][] = [
    ["round", roundLabel],
    ["name", (m) => m.name],
    ["architecture", (m) => m.architecture],
    ["trained", (m) => (m.origin !== "trained" ? m.origin : m.encoder_trained ? "whole model" : "decoder only")],
    ["serving", (m) => (m.active ? "active" : "")],
  ];
  const annotatorColumns: [string, (r: AnnotatorRow) => string][] = [
    ["annotator", (r) => r.username],
    ["masks", (r) => String(r.masks)],
    ["images done", (r) => String(r.images_done)],
    ["median s/mask", (r) => fmt(r.seconds_per_mask_median)],
    ["p90 s/mask", (r) => fmt(r.seconds_per_mask_p90)],
    ["masks/hour", (r) => fmt(r.masks_per_hour)],
    ["clicks/mask", (r) => fmt(r.clicks_per_mask, 2)],
  ];
  const timelineColumns: [string, (r: TimelineRow) => string][] = [
    ["hour (UTC)", (r) => r.bucket],
    ["masks", (r) => String(r.masks)],
    ["manual", (r) => String(r.manual_masks)],
    ["masks/hour", (r) => fmt(r.masks_per_hour)],
    ["annotators", (r) => String(r.annotators)],
  ];
  const csvButton = (label: string, path: string, file: string) =>
    h("button", { onclick: () => void downloadCsv(path, file).catch((e: Error) => (message.textContent = e.message)) }, label);

  const controls = managing ? stageControls(projectId, d, act) : null;
  const selection = await selectionPanel(projectId, managing, (text) => (message.textContent = text));

  main.classList.add("dashboard");
  append(main, 
      h("div", { class: "title-row" }, h("h1", {}, "Dashboard"),
        h("span", { class: "muted" }, `${d.scope === "me" ? "your own figures" : "whole project"} · stage ${d.images.current_stage}`)),
      message,
      figures,
      coverage.element,
      h("div", { class: "charts" }, ...boxes.map(([box]) => box)),
      h("section", { class: "card" }, h("h3", {}, "Model rounds"), table("rounds", d.models, roundColumns)),
      h("section", { class: "card" }, h("h3", {}, "Jobs"), jobList),
      controls,
      selection,
      h("section", { class: "card" }, h("h3", {}, "Annotators"),
        csvButton("Export CSV", `/api/projects/${projectId}/dashboard/annotators?format=csv`, `project-${projectId}-annotators.csv`),
        table("annotators", annotators, annotatorColumns)),
      h("section", { class: "card" }, h("h3", {}, "Timeline"),
        csvButton("Export CSV", `/api/projects/${projectId}/dashboard/timeline?bucket=hour&limit=10000&format=csv`, `project-${projectId}-timeline.csv`),
        table("timeline", timeline, timelineColumns)),
  );

  const [images, masks, histogram, timelineBox, models] = boxes.map(([, canvas]) => canvas);
  charts.push(imagesChart(images, d), masksChart(masks, d), histogramChart(histogram, d), timelineChart(timelineBox, timeline), modelsChart(models, d));
  return cleanup;
}

function stageControls(projectId: number, d: Dashboard, act: (work: () => Promise<unknown>, done: string) => () => Promise<void>): HTMLElement {
  const gate = d.gate;
  return h(
    "section",
    { class: "card", "data-gate": gate.holds ? "open" : "closed" },
    h("h3", {}, gate.to_stage ? `Gate to ${gate.to_stage}` : "Project done"),
    h("ul", {}, ...gate.conditions.map((c) =>
      h("li", { "data-condition": c.key, "data-holds": String(c.holds) }, `${c.holds ? "✔" : "✘"} ${c.label}: ${c.actual} (needs ${c.required})`))),
    gate.to_stage
      ? h("button", { disabled: !gate.holds, "data-control": "advance", onclick: act(() => advanceStage(projectId, gate.to_stage!), `moved to ${gate.to_stage}`) },
          `Advance to ${gate.to_stage}`)
      : null,
    h("button", { "data-control": "embed", onclick: act(() => startEmbedding(projectId), "embedding started") }, "Start embedding"),
    h("button", { "data-control": "auto", onclick: act(() => startAutoAnnotation(projectId), "auto-annotation started") }, "Start auto-annotation"),
    h("button", { "data-control": "train-detector", onclick: act(() => trainDetector(projectId), "detector training started") }, "Train detector"),
    h("button", { "data-control": "propose", onclick: act(() => proposeMasks(projectId), "pre-filling started") }, "Pre-fill masks with the detector"),
    h("p", { class: "muted" }, "Members and their roles: ", h("a", { href: `/projects/${projectId}/members` }, "Members"), "."),
  );
}
