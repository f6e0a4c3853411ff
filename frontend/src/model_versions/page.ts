/**
 * The ML engineer page (/models/:projectId): the project's model versions with their held-out
 * metrics side by side, a retraining round's live loss curve, start/cancel a round with its
 * parameters, promote any version, roll back to the active version's parent.
 *
 * A trained version's numbers come from its round's held-out images; the parent's numbers on the
 * same images are shown next to them (Δ), since only those two are comparable.
 *
 * A round trains the decoder side only (on the stored embeddings), or the image encoder too: all of
 * it, its last k blocks, or LoRA adapters of rank r (GPU workers only, see README); it starts from
 * the active version or any other ready one, of another architecture too. The versions list says
 * what each round trained ("whole model") and an architecture change ("vit_b → vit_h").
 */
import { Chart, LinearScale, LineController, LineElement, PointElement, Tooltip } from "chart.js";
import { ApiError } from "../api/client";
import { followJob } from "../api/jobs";
import { h } from "../dom";
import { frame } from "../layout";
import {
  cancelJob,
  listTrainJobs,
  listVersions,
  promote,
  rollback,
  startRound,
  type EncoderMode,
  type Metrics,
  type ModelVersionRow,
  type RetrainParams,
  type TrainJob,
} from "./api";

Chart.register(LineController, LineElement, PointElement, LinearScale, Tooltip);

const METRICS: [key: string, label: string, lowerIsBetter: boolean][] = [
  ["miou_1pt", "1-pt mIoU", false],
  ["miou_at_3", "mIoU@3", false],
  ["miou_at_5", "mIoU@5", false],
  ["noc85", "NoC@85", true],
  ["noc90", "NoC@90", true],
];
/** The "Train" choices of the round form, in the words the versions list uses too. */
const ENCODER_MODES: [mode: EncoderMode, label: string][] = [
  ["frozen", "decoder only"],
  ["full", "whole model"],
  ["last_k", "whole model, last k encoder blocks"],
  ["lora", "whole model, LoRA adapters in the encoder"],
];

/** What a version's round trained: "decoder only", "whole model" (+ which part of the encoder); "–" for no round. */
function trainedText(v: ModelVersionRow): string {
  const hp = v.hyperparameters;
  if (v.origin !== "trained" || hp === null) return "–";
  switch (hp.encoder_mode ?? "frozen") {
    case "frozen": return "decoder only";
    case "full": return "whole model";
    case "last_k": return `whole model (last ${hp.encoder_last_k ?? "?"} blocks)`;
    case "lora": return `whole model (LoRA rank ${hp.lora_rank ?? "?"})`;
  }
}

/** The architecture, with the change when the round started from another one than the serving version's. */
function architectureCell(v: ModelVersionRow): HTMLElement {
  const change = v.metrics.architecture_change;
  if (!change) return h("td", {}, v.architecture);
  return h("td", { "data-architecture-change": `${change.from}>${change.to}`, title: `the project was served by #${change.from_id} (${change.from}) when the round started` },
    `${change.from} → ${change.to}`);
}

function metricCell(m: Metrics | undefined, parent: Metrics | undefined, key: string, lowerIsBetter: boolean, active?: Metrics): HTMLElement {
  const value = m?.[key];
  if (value === undefined) return h("td", {}, "–");
  const digits = key.startsWith("noc") ? 2 : 3;
  const base = parent?.[key];
  if (base === undefined) return h("td", { "data-metric": key }, value.toFixed(digits));
  const delta = value - base;
  const good = lowerIsBetter ? delta < 0 : delta > 0;
  const cls = Math.abs(delta) < 1e-9 ? "" : good ? "better" : "worse";
  const serving = active?.[key];
  const title = `parent on the same held-out images: ${base.toFixed(digits)}`
    + (serving === undefined ? "" : `; the version serving at the round's start (what auto-promotion compares with): ${serving.toFixed(digits)}`);
  return h("td", { "data-metric": key, title },
    value.toFixed(digits), " ", h("span", { class: cls }, `(${delta >= 0 ? "+" : ""}${delta.toFixed(digits)})`));
}

export async function modelsPage(root: HTMLElement, params: Record<string, string>): Promise<() => void> {
  const projectId = Number(params.projectId);
  const { main } = await frame(root, "models", { projectId, title: "Models" });
  const status = h("p", { "data-status": "" });
  const table = h("table", { "data-versions": "" });
  const canvas = h("canvas");
  const curveInfo = h("p", { "data-train-status": "" }, "no round running");
  const cancelButton = h("button", { type: "button", disabled: true, "data-cancel": "" }, "Cancel round");
  const field = (name: string, value: string, attrs: Record<string, string> = {}) =>
    h("label", {}, `${name} `, h("input", { type: "number", name, value, ...attrs }));
  const autoPromote = h("input", { type: "checkbox", name: "auto_promote" });
  const encoderMode = h("select", { name: "encoder_mode" },
    ...ENCODER_MODES.map(([mode, label]) => h("option", { value: mode }, label)));
  const lastK = field("encoder_last_k", "2", { min: "1", max: "64" });
  const loraRank = field("lora_rank", "8", { min: "1", max: "256" });
  const showEncoderFields = () => {
    lastK.hidden = encoderMode.value !== "last_k";
    loraRank.hidden = encoderMode.value !== "lora";
  };
  encoderMode.addEventListener("change", showEncoderFields);
  showEncoderFields();
  /** "Start from": "" is the active version (whichever serves when the round starts), else a ready version's id. */
  const startFrom = h("select", { name: "from_model_version_id" });
  const form = h("form", { "data-retrain": "" },
    h("label", { title: "the image encoder trains on GPU workers only" }, "Train ", encoderMode), lastK, loraRank,
    h("label", {}, "Start from ", startFrom),
    field("steps", "200", { min: "1" }), field("lr", "0.0008", { step: "any", min: "0" }),
    field("batch_size", "4", { min: "1" }),
    field("accumulation_steps", "1", { min: "1", title: "micro-batches per step; batch_size must be a multiple of it" }),
    field("held_out_fraction", "0.2", { step: "any", min: "0.01", max: "0.99" }),
    field("min_masks", "10", { min: "2" }),
    h("label", {}, autoPromote, " auto-promote if better"),
    h("button", { type: "submit" }, "Start round"));

  let chart: Chart | null = null;
  let stopFollowing: (() => void) | null = null;
  let jobId: number | null = null;

  const showError = (error: unknown) => {
    status.className = "error";
    status.textContent = error instanceof ApiError ? error.message : String(error);
  };
  const say = (text: string) => {
    status.className = "";
    status.textContent = text;
  };

  const drawCurve = (job: TrainJob) => {
    const points = (job.result?.loss_curve ?? []).map(([x, y]) => ({ x, y }));
    if (!chart) {
      chart = new Chart(canvas, {
        type: "line",
        data: { datasets: [{ label: "training loss", data: points, borderColor: "#2563eb", pointRadius: 0 }] },
        options: { animation: false, responsive: true, maintainAspectRatio: false,
          scales: { x: { type: "linear", title: { display: true, text: "step" } }, y: { title: { display: true, text: "loss" } } } },
      });
    } else {
      chart.data.datasets[0].data = points;
      chart.update();
    }
    const r = job.result ?? {};
    const eta = r.eta_seconds != null && job.status === "running" ? `, about ${Math.round(r.eta_seconds)} s left` : "";
    curveInfo.textContent = `job ${job.id} ${job.status}: ${job.message}${eta}` + (job.error ? ` — ${job.error}` : "")
      + (r.promotion ? ` — ${r.promotion}` : "");
    curveInfo.dataset.jobStatus = job.status;
  };

  const follow = (job: TrainJob) => {
    stopFollowing?.();
    jobId = job.id;
    drawCurve(job);
    const live = job.status === "queued" || job.status === "running";
    cancelButton.disabled = !live;
    if (!live) return;
    stopFollowing = followJob<TrainJob>(job.id, drawCurve, () => {
      cancelButton.disabled = true;
      void refresh();
    });
  };

  const refresh = async () => {
    const versions = await listVersions(projectId);
    const byId = new Map(versions.map((v) => [v.id, v]));
    const active = versions.find((v) => v.active);
    table.replaceChildren(
      h("tr", {}, h("th", {}, "version"), h("th", {}, "origin"), h("th", {}, "arch"), h("th", {}, "trained"), h("th", {}, "parent"),
        ...METRICS.map(([, label]) => h("th", {}, label)), h("th", {}, "masks"), h("th", {}, "")),
      ...versions.map((v) => versionRow(v, byId, active)),
    );
    fillStartFrom(versions, active);
  };

  /** The ready versions a round may start from, the choice kept across refreshes while it still exists. */
  const fillStartFrom = (versions: ModelVersionRow[], active: ModelVersionRow | undefined) => {
    const chosen = startFrom.value;
    const activeText = active ? `the active version (#${active.id} ${active.name}, ${active.architecture})` : "the active version";
    startFrom.replaceChildren(h("option", { value: "" }, activeText),
      ...versions.filter((v) => v.status === "ready" && !v.active)
        .map((v) => h("option", { value: String(v.id) }, `#${v.id} ${v.name} (${v.architecture}, ${v.origin})`)));
    startFrom.value = [...startFrom.options].some((o) => o.value === chosen) ? chosen : "";
  };

  const versionRow = (v: ModelVersionRow, byId: Map<number, ModelVersionRow>, active: ModelVersionRow | undefined) => {
    const held = v.metrics.held_out;
    const parentHeld = v.metrics.parent_held_out;
    const isEarlier = active !== undefined && v.id === active.parent_id;
    const button = v.active ? h("strong", {}, "active")
      : h("button", { type: "button", "data-promote": String(v.id), onclick: () => void doPromote(v.id) },
        isEarlier ? "Roll back to this" : "Promote");
    return h("tr", { class: v.active ? "active" : "", "data-version": String(v.id) },
      h("td", {}, `#${v.id} ${v.name}`), h("td", {}, v.origin), architectureCell(v),
      h("td", { "data-trained": v.hyperparameters?.encoder_mode ?? "" }, trainedText(v)),
      h("td", {}, v.parent_id === null ? "–" : `#${v.parent_id}${byId.has(v.parent_id) ? "" : " (gone)"}`),
      ...METRICS.map(([key, , lower]) => metricCell(held, parentHeld, key, lower, v.metrics.active_held_out)),
      h("td", {}, v.data_snapshot ? String(v.data_snapshot.masks ?? "") : "–"),
      h("td", {}, button));
  };

  const afterPromotion = async (text: string, embedJob: TrainJob | null) => {
    say(embedJob ? `${text}; its image encoder is new here, embedding job ${embedJob.id} started` : text);
    await refresh();
  };
  const doPromote = async (versionId: number) => {
    try {
      const out = await promote(projectId, versionId);
      await afterPromotion(`version #${out.model.id} now serves the project (was #${out.previous_id ?? "–"})`, out.embed_job);
    } catch (error) {
      showError(error);
    }
  };
  const rollbackButton = h("button", { type: "button", "data-rollback": "", onclick: async () => {
    try {
      const out = await rollback(projectId);
      await afterPromotion(`rolled back to version #${out.model.id}`, out.embed_job);
    } catch (error) {
      showError(error);
    }
  } }, "Roll back to parent");

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (name: string) => Number((form.elements.namedItem(name) as HTMLInputElement).value);
    const mode = encoderMode.value as EncoderMode;
    const body: RetrainParams = {
      steps: value("steps"), lr: value("lr"), batch_size: value("batch_size"), accumulation_steps: value("accumulation_steps"),
      held_out_fraction: value("held_out_fraction"), min_masks: value("min_masks"), auto_promote: autoPromote.checked,
      encoder_mode: mode,
      ...(mode === "last_k" ? { encoder_last_k: value("encoder_last_k") } : {}),
      ...(mode === "lora" ? { lora_rank: value("lora_rank") } : {}),
      from_model_version_id: startFrom.value === "" ? null : Number(startFrom.value),
    };
    try {
      follow(await startRound(projectId, body));
      say("round started");
    } catch (error) {
      showError(error);
    }
  });
  cancelButton.addEventListener("click", async () => {
    if (jobId === null) return;
    try {
      drawCurve(await cancelJob(jobId));
      say("round cancelled");
    } catch (error) {
      showError(error);
    }
  });

  main.classList.add("models");
  main.append(h("h1", {}, "Models"), status,
    h("h2", {}, "Versions"), h("p", {}, "Metrics on the round's held-out images; (Δ) against its parent on the same images."),
    table, h("p", {}, rollbackButton),
    h("h2", {}, "Retraining round"), form, h("p", {}, cancelButton), curveInfo, h("div", { class: "curve" }, canvas));

  try {
    await refresh();
    const [latest] = await listTrainJobs(projectId);
    if (latest) follow(latest);
  } catch (error) {
    showError(error);
  }
  return () => {
    stopFollowing?.();
    chart?.destroy();
  };
}
