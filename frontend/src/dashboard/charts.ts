/** Chart.js set-up (only the pieces we draw, so the bundle stays small) and the dashboard's charts. */
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartConfiguration,
} from "chart.js";
import type { Dashboard, TimelineRow } from "./api";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LineController, LineElement, PointElement, Legend, Tooltip);

const COLORS = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2"];
const STAGES = ["assisted_manual", "semi_automatic", "fully_automatic"];
const SOURCES = ["manual", "detector", "auto"];

function chart(canvas: HTMLCanvasElement, config: ChartConfiguration): Chart {
  // No animation: the numbers are there at once (and tests see a finished drawing).
  return new Chart(canvas, { ...config, options: { animation: false, responsive: true, maintainAspectRatio: false, ...config.options } });
}

export function imagesChart(canvas: HTMLCanvasElement, d: Dashboard): Chart {
  const statuses = Object.keys(d.images.by_status);
  return chart(canvas, {
    type: "bar",
    data: {
      labels: statuses,
      datasets: [{ label: `images (${d.images.current_stage})`, data: statuses.map((s) => d.images.by_status[s]), backgroundColor: COLORS }],
    },
  });
}

export function masksChart(canvas: HTMLCanvasElement, d: Dashboard): Chart {
  const count = (stage: string, source: string) =>
    d.masks.by_stage_source.find((r) => r.stage === stage && r.source === source)?.masks ?? 0;
  return chart(canvas, {
    type: "bar",
    data: {
      labels: STAGES,
      datasets: SOURCES.map((source, i) => ({ label: source, data: STAGES.map((st) => count(st, source)), backgroundColor: COLORS[i] })),
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true } } },
  });
}

export function histogramChart(canvas: HTMLCanvasElement, d: Dashboard): Chart {
  const buckets = d.masks.per_image_histogram;
  return chart(canvas, {
    type: "bar",
    data: {
      labels: buckets.map((b) => (b.high === null ? `${b.low}+` : b.low === b.high ? `${b.low}` : `${b.low}–${b.high}`)),
      datasets: [{ label: "images by masks per image", data: buckets.map((b) => b.images), backgroundColor: COLORS[0] }],
    },
  });
}

export function timelineChart(canvas: HTMLCanvasElement, rows: TimelineRow[]): Chart {
  return chart(canvas, {
    type: "bar",
    data: {
      labels: rows.map((r) => r.bucket.replace("T", " ").slice(0, 16)),
      datasets: [
        { type: "bar", label: "masks", data: rows.map((r) => r.masks), backgroundColor: COLORS[0], yAxisID: "y" },
        { type: "line", label: "masks per annotation hour", data: rows.map((r) => r.masks_per_hour), borderColor: COLORS[2], yAxisID: "y1" },
      ],
    },
    options: { scales: { y: { position: "left" }, y1: { position: "right", grid: { drawOnChartArea: false } } } },
  });
}

type Round = Dashboard["models"][number];

/** A round's label: its number, "whole model" when it trained the image encoder, and the architecture
 * change when it started from another architecture ("round 3 · whole model · vit_b → vit_h"). */
export function roundLabel(m: Round): string {
  return [`round ${m.round}`, m.encoder_trained ? "whole model" : null, m.architecture_change].filter((part) => part).join(" · ");
}

export function modelsChart(canvas: HTMLCanvasElement, d: Dashboard): Chart {
  const keys = [...new Set(d.models.flatMap((m) => Object.keys(m.metrics).filter((k) => typeof m.metrics[k] === "number")))];
  return chart(canvas, {
    type: "line",
    data: {
      labels: d.models.map(roundLabel),
      datasets: keys.map((k, i) => ({
        label: k,
        data: d.models.map((m) => (typeof m.metrics[k] === "number" ? (m.metrics[k] as number) : null)),
        borderColor: COLORS[i % COLORS.length],
      })),
    },
  });
}
