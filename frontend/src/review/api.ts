/**
 * The review page's REST calls and their shapes (backend/review/schemas.py is the source of truth).
 * Kept beside the page rather than in api/client.ts: only this page uses them.
 */
import { request } from "../api/client";
import type { ImageInfo, MaskOut, Rle } from "../api/types";

/** A mask as the review endpoints return it: MaskOut plus the auto generator's scores. */
export interface ReviewMask extends MaskOut {
  stability_score: number | null;
  review_status: "none" | "pending" | "accepted" | "fixed" | "rejected";
}

/** The next pending auto mask, its image, and how many masks are pending in the project. */
export interface ReviewItem {
  mask: ReviewMask;
  image: ImageInfo;
  pending: number;
}

export type ReviewDecision = { decision: "accept" } | { decision: "reject" } | { decision: "fix"; rle: Rle };

export interface ReviewOut {
  id: number;
  mask_id: number;
  decision: "accept" | "reject" | "fix";
  /** IoU(auto mask, mask after review); null when rejected. */
  iou: number | null;
  fixed_mask: MaskOut | null;
  reviewer_id: number | null;
  created_at: string;
}

export interface ReviewSummary {
  auto_masks: number;
  sampled: number;
  pending: number;
  accepted: number;
  fixed: number;
  rejected: number;
  reviewed: number;
  iou_threshold: number;
  above_threshold: number;
  /** above_threshold / reviewed (accepted count as IoU 1, rejected as below); null before any review. */
  share_above_threshold: number | null;
  mean_iou_fixed: number | null;
  model_version_ids: number[];
}

/** The oldest pending mask with an id above `after` (0: from the start); null when none (204). */
export async function nextForReview(projectId: number, after: number): Promise<ReviewItem | null> {
  const response = await request(`/api/projects/${projectId}/review/next?after=${after}`);
  return response.status === 204 ? null : ((await response.json()) as ReviewItem);
}

/** Records a decision; 409 (ApiError) when the mask is no longer pending (someone decided first). */
export async function reviewMask(maskId: number, decision: ReviewDecision, secondsSpent: number): Promise<ReviewOut> {
  const response = await request(`/api/masks/${maskId}/review`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...decision, seconds_spent: secondsSpent }),
  });
  return (await response.json()) as ReviewOut;
}

export async function reviewSummary(projectId: number): Promise<ReviewSummary> {
  return (await (await request(`/api/projects/${projectId}/review/summary`)).json()) as ReviewSummary;
}
