/**
 * The dashboard's REST calls and their shapes (backend/dashboard/schemas.py is the source of truth).
 * Uses the app's token; errors carry the server's `detail` like the rest of the app.
 */
import { request } from "../api/client";
import type { Job } from "../api/jobs";

export interface GateCondition {
  key: string;
  label: string;
  required: number;
  actual: number;
  holds: boolean;
}

export interface Dashboard {
  project_id: number;
  scope: "project" | "me";
  images: {
    total: number;
    current_stage: string;
    by_status: Record<string, number>;
    done_per_stage: Record<string, number>;
  };
  masks: {
    total: number;
    by_stage_source: { stage: string; source: string; masks: number }[];
    by_source: Record<string, number>;
    by_stage: Record<string, number>;
    per_image_mean: number | null;
    per_image_histogram: { low: number; high: number | null; images: number }[];
  };
  timing: {
    timed_masks: number;
    total_seconds: number;
    seconds_per_mask_mean: number | null;
    seconds_per_mask_median: number | null;
    seconds_per_mask_p90: number | null;
    masks_per_hour: number | null;
    clicks_per_mask: number | null;
  };
  prefill: { kept: number; corrected: number; deleted: number };
  review: {
    reviewed: number;
    accepted: number;
    fixed: number;
    rejected: number;
    iou_threshold: number;
    within_threshold: number;
    share_within: number | null;
  };
  models: {
    id: number;
    round: number;
    name: string;
    architecture: string;
    origin: string;
    status: string;
    active: boolean;
    metrics: Record<string, unknown>;
    created_at: string;
  }[];
  jobs: { active: Job[]; recent: Job[] };
  gate: { from_stage: string; to_stage: string | null; holds: boolean; conditions: GateCondition[] };
}

export interface AnnotatorRow {
  user_id: number;
  username: string;
  masks: number;
  images_done: number;
  timed_masks: number;
  total_seconds: number;
  seconds_per_mask_median: number | null;
  seconds_per_mask_p90: number | null;
  masks_per_hour: number | null;
  clicks_per_mask: number | null;
}

export interface TimelineRow {
  bucket: string;
  masks: number;
  manual_masks: number;
  timed_masks: number;
  total_seconds: number;
  masks_per_hour: number | null;
  annotators: number;
}

const get = async <T>(path: string): Promise<T> => (await request(path)).json() as Promise<T>;
const post = async <T>(path: string, body?: unknown): Promise<T> =>
  (await request(path, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) })).json() as Promise<T>;

const base = (projectId: number) => `/api/projects/${projectId}`;
export const getDashboard = (p: number) => get<Dashboard>(`${base(p)}/dashboard`);
export const getAnnotators = (p: number) => get<AnnotatorRow[]>(`${base(p)}/dashboard/annotators`);
export const getTimeline = (p: number, bucket: "hour" | "day") =>
  get<TimelineRow[]>(`${base(p)}/dashboard/timeline?bucket=${bucket}`);
export const advanceStage = (p: number, stage: string) => post<unknown>(`${base(p)}/stage`, { stage });
export const startAutoAnnotation = (p: number) => post<Job>(`${base(p)}/auto-annotate`, {});
export const trainDetector = (p: number) => post<Job>(`${base(p)}/detector/train`, {});
export const proposeMasks = (p: number) => post<Job>(`${base(p)}/detector/propose`, {});

/** Downloads a server-made CSV table (the token cannot ride on a plain link). */
export async function downloadCsv(path: string, filename: string): Promise<void> {
  const blob = await (await request(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
