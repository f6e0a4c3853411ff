/**
 * The review page's REST calls (backend/review/), typed by the server's schemas.
 * Kept beside the page rather than in api/client.ts: only this page uses them.
 */
import { request } from "../api/client";
import type { ImageInfo, MaskOut, Rle, Schema } from "../api/types";

/** The next pending auto mask, its image, and how many masks are pending in the project. The server
 * declares no schema for this answer (backend/review/router.py builds the dict). */
export interface ReviewItem {
  mask: MaskOut;
  image: ImageInfo;
  pending: number;
}

export type ReviewDecision = { decision: "accept" } | { decision: "reject" } | { decision: "fix"; rle: Rle };
/** `iou`: IoU(auto mask, mask after review); null when rejected. */
export type ReviewOut = Schema<"backend__review__schemas__ReviewOut">;
/** `share_above_threshold`: above_threshold / reviewed (accepted count as IoU 1, rejected as below); null before any review. */
export type ReviewSummary = Schema<"ReviewSummaryOut">;

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
    body: JSON.stringify({ ...decision, seconds_spent: secondsSpent } satisfies Schema<"ReviewIn">),
  });
  return (await response.json()) as ReviewOut;
}

export async function reviewSummary(projectId: number): Promise<ReviewSummary> {
  return (await (await request(`/api/projects/${projectId}/review/summary`)).json()) as ReviewSummary;
}
