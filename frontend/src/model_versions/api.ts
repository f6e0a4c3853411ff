/**
 * The ML engineer page's REST calls (backend/model_versions/, backend/retraining/, backend/jobs/). The
 * shapes are the server's schemas, but for the two JSON fields it declares as any object: a version's
 * `metrics` and a training job's `result`, typed here as backend/retraining/tasks.py writes them.
 */
import { json } from "../api/client";
import type { Job } from "../api/jobs";
import type { Schema } from "../api/types";

export type Metrics = Record<string, number>;

/** A retrained version's metrics: on the round's held-out images, and its parent's on the same images;
 * `architecture_change` when the round started from a version of another architecture than the
 * project's active one (the paper's scale-up, e.g. vit_b to an imported vit_h). */
interface VersionMetrics {
  held_out?: Metrics;
  parent_held_out?: Metrics;
  /** The version serving the project when the round started, on the same images, when it is not the parent. */
  active_held_out?: Metrics;
  final_loss?: number | null;
  training_seconds?: number;
  architecture_change?: { from: string; from_id: number; to: string };
}

export type EncoderMode = NonNullable<RetrainParams["encoder_mode"]>;

/** What a round trained, as backend/retraining/ records it in `hyperparameters`. */
interface Hyperparameters {
  encoder_mode?: EncoderMode;
  encoder_last_k?: number;
  lora_rank?: number;
  accumulation_steps?: number;
}

export type ModelVersionRow = Omit<Schema<"ModelVersionOut">, "metrics" | "hyperparameters"> & {
  metrics: VersionMetrics;
  hyperparameters: Hyperparameters | null;
};

/** A training round's progress while it runs, then its outcome (the new version, promoted or why not). */
interface TrainResult {
  step?: number;
  total_steps?: number;
  loss?: number;
  eta_seconds?: number | null;
  loss_curve?: [number, number][];
  new_model_version_id?: number;
  promoted?: boolean;
  promotion?: string;
}

export type TrainJob = Omit<Job, "result"> & { result: TrainResult | null };
export type RetrainParams = Schema<"RetrainParams">;
export type Promotion = Schema<"PromotionOut">;

const base = (p: number) => `/api/projects/${p}`;
export const listVersions = (p: number) => json<ModelVersionRow[]>(`${base(p)}/model-versions`);
export const listTrainJobs = (p: number) => json<TrainJob[]>(`${base(p)}/jobs?kind=train&limit=10`);
export const startRound = (p: number, params: RetrainParams) =>
  json<TrainJob>(`${base(p)}/retrain`, { method: "POST", body: JSON.stringify(params) });
export const cancelJob = (jobId: number) => json<TrainJob>(`/api/jobs/${jobId}/cancel`, { method: "POST" });
export const promote = (p: number, versionId: number) =>
  json<Promotion>(`${base(p)}/model-versions/${versionId}/promote`, { method: "POST" });
export const rollback = (p: number) => json<Promotion>(`${base(p)}/model-versions/rollback`, { method: "POST" });
