/**
 * Export and import (backend/exchange): the project's masks out in a chosen format (an export job
 * with progress, then the archive downloaded with the session's token), and another tool's file in
 * (COCO, YOLO, CVAT, Label Studio, LabelMe, PNG masks; all or nothing, the server's report per file
 * or its list of problems shown as they come), and images from a list of URLs (a job: stored as
 * uploads, the refused URLs listed).
 */
import { ApiError, json, request, send } from "../api/client";
import { followJob, type Job } from "../api/jobs";
import { h } from "../dom";

const EXPORTS: [string, string][] = [
  ["coco", "COCO (RLE, exact)"],
  ["coco_polygons", "COCO (polygons)"],
  ["yolo", "YOLO segmentation"],
  ["voc", "Pascal VOC"],
  ["png", "PNG instance masks"],
  ["sa1b", "SA-1B"],
];
const POLYGONS = new Set(["coco_polygons", "yolo"]);
const IMPORTS: [string, string][] = [
  ["auto", "detect"],
  ["coco", "COCO"],
  ["yolo", "YOLO (zip)"],
  ["cvat", "CVAT for images 1.1"],
  ["label_studio", "Label Studio JSON"],
  ["labelme", "LabelMe (JSON or zip)"],
  ["png", "PNG instance masks (zip)"],
];

interface ImportReport {
  format: string;
  imported: number;
  already_present: number;
  images: number;
  files: { file: string; masks: number; images: number; skipped: Record<string, number> }[];
}

const options = (items: [string, string][]) => items.map(([value, text]) => h("option", { value }, text));

async function download(url: string, name: string): Promise<void> {
  const blob = await (await request(url)).blob();
  const link = h("a", { href: URL.createObjectURL(blob), download: name });
  link.click();
  URL.revokeObjectURL(link.href);
}

export function exchangePanel(projectId: number): HTMLElement {
  const status = h("p", { class: "muted", "data-exchange": "status" });
  const say = (text: string, error = false) => {
    status.textContent = text;
    status.className = error ? "error" : "muted";
  };

  const format = h("select", { "data-exchange": "export-format" }, ...options(EXPORTS));
  const tolerance = h("input", { type: "number", min: 0, max: 20, step: 0.1, value: 0.5, title: "polygon tolerance (px)" });
  const withImages = h("input", { type: "checkbox" });
  const showTolerance = () => (tolerance.hidden = !POLYGONS.has(format.value));
  format.addEventListener("change", showTolerance);
  showTolerance();
  const exportButton = h("button", { type: "button" }, "Export");
  exportButton.addEventListener("click", async () => {
    try {
      const body = { format: format.value, include_images: withImages.checked, polygon_tolerance: Number(tolerance.value) };
      const job = await json<Job>(`/api/projects/${projectId}/exports`, send("POST", body));
      say("export queued");
      followJob<Job>(job.id, (update) => {
        say(`export ${update.status}: ${Math.round((update.progress ?? 0) * 100)}%`, update.status === "failed");
        const result = (update.result ?? {}) as { download_url?: string; fidelity?: { min_iou: number; mean_iou: number } | null };
        if (update.status === "succeeded" && result.download_url) {
          const kept = result.fidelity ? ` (polygon/pixel IoU min ${result.fidelity.min_iou}, mean ${result.fidelity.mean_iou})` : "";
          say(`export ready${kept}`);
          void download(result.download_url, `project-${projectId}-${format.value}.tar`);
        }
      }, () => undefined);
    } catch (error) {
      say((error as Error).message, true);
    }
  });

  const importFormat = h("select", { "data-exchange": "import-format" }, ...options(IMPORTS));
  const file = h("input", { type: "file", accept: ".json,.xml,.zip,.tar,.gz" });
  const problems = h("ul", { class: "error" });
  const importButton = h("button", { type: "button" }, "Import");
  importButton.addEventListener("click", async () => {
    const chosen = file.files?.[0];
    problems.replaceChildren();
    if (!chosen) return say("choose a file first", true);
    try {
      const report = await json<ImportReport>(`/api/projects/${projectId}/import/${importFormat.value}?file_name=${encodeURIComponent(chosen.name)}`, { method: "POST", body: chosen });
      say(`${report.format}: ${report.imported} masks imported on ${report.images} images (${report.already_present} already present)`);
      for (const f of report.files) {
        const skipped = Object.entries(f.skipped).map(([k, n]) => `${n} ${k}`).join(", ");
        problems.append(h("li", { class: "muted" }, `${f.file}: ${f.masks} masks${skipped ? `; not masks: ${skipped}` : ""}`));
      }
    } catch (error) {
      say((error as Error).message, true);
      if (error instanceof ApiError) for (const e of error.errors) problems.append(h("li", {}, `${e.loc.join(" ")}: ${e.msg}`));
    }
  });

  const urls = h("textarea", { rows: 3, placeholder: "image URLs, one per line", "data-exchange": "urls" });
  const urlButton = h("button", { type: "button" }, "Import images from URLs");
  urlButton.addEventListener("click", async () => {
    const list = urls.value.split(/\s+/).filter(Boolean);
    problems.replaceChildren();
    if (!list.length) return say("paste image URLs first", true);
    try {
      const job = await json<Job>(`/api/projects/${projectId}/images/from-urls`, send("POST", { urls: list }));
      followJob<Job>(job.id, (update) => {
        say(`URL import ${update.status}: ${update.message ?? ""}`, update.status === "failed");
        const result = (update.result ?? {}) as { refused?: { url: string; reason: string }[] };
        if (update.status === "succeeded")
          problems.replaceChildren(...(result.refused ?? []).map((r) => h("li", {}, `${r.url}: ${r.reason}`)));
      }, () => undefined);
    } catch (error) {
      say((error as Error).message, true);
      if (error instanceof ApiError) for (const e of error.errors) problems.append(h("li", {}, `${e.loc.join(" ")}: ${e.msg}`));
    }
  });

  return h("section", { class: "card exchange" },
    h("h2", {}, "Export and import"),
    h("div", { class: "row" }, format, tolerance, h("label", {}, withImages, " with images"), exportButton),
    h("div", { class: "row" }, importFormat, file, importButton),
    h("div", { class: "row" }, urls, urlButton),
    status,
    problems);
}
