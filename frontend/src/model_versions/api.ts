/**
 * The ML engineer page's REST calls and their shapes (backend/model_versions/schemas.py,
 * backend/retraining/schemas.py and backend/jobs/schemas.py are the source of truth).
 */
import { json } from "../api/client";

export type Metrics = Record<string, number>;

export interface ModelVersionRow {
  id: number;
  project_id: number | null;
  parent_id: number | null;
  name: string;
  architecture: string;
  origin: "official" | "trained" | "untrained";
  status: string;
  sha256: string | null;
  metrics: { held_out?: Metrics; parent_held_out?: Metrics; final_loss?: number; training_seconds?: number };
  data_snapshot: Record<string, unknown> | null;
  hyperparameters: Record<string, unknown> | null;
  created_at: string;
  active: boolean;
  decoder_url: string;
}

export interface TrainJob {
  id: number;
  kind: string;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  progress: number;
  message: string;
  error: string | null;
  result: {
    step?: number;
    total_steps?: number;
    loss?: number;
    eta_seconds?: number | null;
    loss_curve?: [number, number][];
    new_model_version_id?: number;
    promoted?: boolean;
    promotion?: string;
  } | null;
}

export interface RetrainParams {
  steps: number;
  lr: number;
  batch_size: number;
  held_out_fraction: number;
  auto_promote: boolean;
  min_masks: number;
}

export interface Promotion {
  model: ModelVersionRow;
  previous_id: number | null;
  embed_job: TrainJob | null;
  embeddings_reused: number;
}

const base = (p: number) => `/api/projects/${p}`;
export const listVersions = (p: number) => json<ModelVersionRow[]>(`${base(p)}/model-versions`);
export const listTrainJobs = (p: number) => json<TrainJob[]>(`${base(p)}/jobs?kind=train&limit=10`);
export const startRound = (p: number, params: RetrainParams) =>
  json<TrainJob>(`${base(p)}/retrain`, { method: "POST", body: JSON.stringify(params) });
export const cancelJob = (jobId: number) => json<TrainJob>(`/api/jobs/${jobId}/cancel`, { method: "POST" });
export const promote = (p: number, versionId: number) =>
  json<Promotion>(`${base(p)}/model-versions/${versionId}/promote`, { method: "POST" });
export const rollback = (p: number) => json<Promotion>(`${base(p)}/model-versions/rollback`, { method: "POST" });
