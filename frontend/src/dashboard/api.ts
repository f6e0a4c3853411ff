/**
 * The dashboard's REST calls (backend/dashboard/), typed by the server's schemas.
 * Uses the app's token; errors carry the server's `detail` like the rest of the app.
 */
import { request } from "../api/client";
import type { Job } from "../api/jobs";
import type { Schema } from "../api/types";

export type GateCondition = Schema<"GateCondition">;
export type Dashboard = Schema<"DashboardOut">;
export type AnnotatorRow = Schema<"AnnotatorRow">;
export type TimelineRow = Schema<"TimelineRow">;

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
