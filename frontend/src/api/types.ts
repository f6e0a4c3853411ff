/** Shapes of the REST API (see notes/backend_contract.md); the server is the source of truth. */

export type Role = "admin" | "manager" | "annotator" | "ml_engineer";
export type Stage = "assisted_manual" | "semi_automatic" | "fully_automatic" | "done";
export type MaskSource = "manual" | "detector" | "auto";

export interface User {
  id: number;
  username: string;
  role: Role;
  is_active: boolean;
  created_at: string;
}

/** The settings in effect (backend/projects/settings.py: defaults for what was not set). */
export interface ProjectSettings {
  review_fraction: number;
  review_seed: number;
  retrain_every_masks: number;
  auto_promote: boolean;
  retrain_params: {
    steps: number;
    lr: number;
    batch_size: number;
    held_out_fraction: number;
    auto_promote: boolean | null;
    min_masks: number;
    max_clicks: number;
    seed: number;
  };
  gates: {
    semi_automatic: { min_masks: number; min_done_share: number; min_trained_models: number; min_detectors: number };
    fully_automatic: { min_masks: number; min_trained_models: number };
    done: { min_done_share: number };
  };
}

export interface Project {
  id: number;
  name: string;
  description: string;
  stage: Stage;
  settings: ProjectSettings;
  archived?: boolean;
  image_count: number;
}

export type ImageStatus = "new" | "in_progress" | "done";

export interface ImageInfo {
  id: number;
  project_id: number;
  file_name: string;
  width: number;
  height: number;
  status: ImageStatus;
  /** Who holds the claim (the live lock) now. */
  assignee_id: number | null;
  /** Who the image is reserved for (their next claim gives it to them), and their name. */
  assigned_to?: number | null;
  assigned_username?: string | null;
  mask_count?: number;
  thumbnail_url?: string;
}

/** A project member: `role_in_project` null means their global `role` applies there. */
export interface Member {
  user_id: number;
  username: string;
  role: Role;
  role_in_project: Role | null;
  added_at: string;
}

export interface ModelVersion {
  id: number;
  name: string;
  architecture: string;
  origin: "official" | "trained" | "untrained";
  status: string;
  /** The one-graph decoder: the fallback when the version has no split pair. */
  decoder_url: string;
  /** Split decoder (per-image graph run once per image, per-click graph per click); null for versions stored before it existed. */
  image_graph_url: string | null;
  click_graph_url: string | null;
}

/** COCO RLE: `counts` is the compressed string form; `size` is [height, width]. */
export interface Rle {
  size: [number, number];
  counts: string;
}

/** One click, in the ORIGINAL image frame (pixels, x right, y down); label 1 fg, 0 bg. */
export interface Point {
  x: number;
  y: number;
  label: 0 | 1;
}

/** A box [x0, y0, x1, y1] in the original image frame. */
export type Box = readonly [number, number, number, number];

export interface Prompts {
  points: Point[];
  box: Box | null;
  /** Decoder token kept (0 single-mask, 1-3 the candidates), and the brush/eraser strokes applied after. */
  candidate: number | null;
  strokes: number;
}

export interface MaskCreate {
  client_id: string;
  rle: Rle;
  prompts: Prompts;
  seconds_spent: number;
  clicks: number;
  /** The saved mask of the image this one corrects: the server hides it (a pre-filled one counts as corrected). */
  replaces_mask_id?: number;
}

export interface MaskOut {
  id: number;
  client_id: string | null;
  image_id: number;
  rle: Rle;
  bbox: [number, number, number, number];
  area: number;
  source: MaskSource;
  stage: Stage;
  predicted_iou: number | null;
  prefill_outcome: string | null;
  created_at: string;
}

/** The image embedding as served by GET /api/images/{id}/embedding. */
export interface Embedding {
  /** float16 little-endian, C order, shape 1x256x64x64. */
  data: ArrayBuffer;
  /** [h, w] of the original image and of the resized (pre-padding) encoder input. */
  originalSize: [number, number];
  inputSize: [number, number];
  modelVersionId: number;
}
