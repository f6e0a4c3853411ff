/**
 * Background jobs (backend/jobs/schemas.py): the latest of a kind, and following one live over
 * Server-Sent Events. Shared by every page that starts or shows a job.
 */
import { ApiError, json } from "./client";
import type { Schema } from "./types";

const RECONNECT_MS = 2000;

export type JobStatus = Schema<"JobStatus">;
/** `progress` 0..1; `result` is the kind's own (e.g. a training round's loss curve). */
export type Job = Schema<"JobOut">;

export const isLive = (job: Pick<Job, "status">): boolean => job.status === "queued" || job.status === "running";

export const listJobs = (projectId: number, kind?: string, limit = 20) =>
  json<Job[]>(`/api/projects/${projectId}/jobs?limit=${limit}${kind ? `&kind=${encodeURIComponent(kind)}` : ""}`);

/** Follows a job over Server-Sent Events. EventSource cannot send headers, and a bearer token in the
 * URL would land in access logs, so every connection opens with a ticket: valid about a minute, for
 * this job only. When the stream drops, it reconnects with a fresh ticket (the browser's own retry
 * would reuse the old, perhaps expired, URL). A 4xx for the ticket (logged out, job gone) stops.
 * Returns the function that stops following. */
export function followJob<J extends Pick<Job, "id" | "status">>(
  jobId: number,
  onJob: (job: J) => void,
  onEnd: () => void,
): () => void {
  let source: EventSource | null = null;
  let stopped = false;
  const stop = () => {
    stopped = true;
    source?.close();
  };
  const connect = async () => {
    let ticket: string;
    try {
      ticket = (await json<Schema<"EventsTicket">>(`/api/jobs/${jobId}/events/ticket`, { method: "POST" })).ticket;
    } catch (error) {
      if (!stopped && !(error instanceof ApiError && error.status < 500)) setTimeout(connect, RECONNECT_MS);
      return;
    }
    if (stopped) return;
    source = new EventSource(`/api/jobs/${jobId}/events?ticket=${encodeURIComponent(ticket)}`);
    source.addEventListener("job", (event) => onJob(JSON.parse((event as MessageEvent).data) as J));
    source.addEventListener("end", () => {
      stop();
      onEnd();
    });
    source.addEventListener("error", () => {
      source?.close();
      if (!stopped) setTimeout(connect, RECONNECT_MS);
    });
  };
  void connect();
  return stop;
}
