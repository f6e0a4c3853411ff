/** A project's images (backend/images/router.py): upload in batches, the paged list, delete, assign. */
import { json, postFormWithProgress, request, send } from "./client";
import type { Job } from "./jobs";
import type { ImageInfo, ImageStatus, Schema } from "./types";

/** One upload request's answer with `partial=true`: each file is stored, a duplicate of a stored
 * image, or refused with the reason; the good files of a batch are stored whatever the others are. */
export type UploadResult = Schema<"UploadOut">;

export interface ImageFilter {
  status?: ImageStatus;
  assignedTo?: number;
}

export interface ImagePage {
  images: ImageInfo[];
  /** All images matching the filter (the `X-Total-Count` header), not only this page's. */
  total: number;
}

export function uploadBatch(projectId: number, files: File[], onProgress: (sent: number, total: number) => void): Promise<UploadResult> {
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  return postFormWithProgress<UploadResult>(`/api/projects/${projectId}/images?partial=true`, form, onProgress);
}

export async function listImages(projectId: number, filter: ImageFilter, offset: number, limit: number): Promise<ImagePage> {
  const query = new URLSearchParams({ offset: String(offset), limit: String(limit) });
  if (filter.status) query.set("status", filter.status);
  if (filter.assignedTo !== undefined) query.set("assigned_to", String(filter.assignedTo));
  const response = await request(`/api/projects/${projectId}/images?${query}`);
  const images = (await response.json()) as ImageInfo[];
  const total = Number(response.headers.get("X-Total-Count"));
  return { images, total: Number.isFinite(total) && response.headers.has("X-Total-Count") ? total : offset + images.length };
}

export async function deleteImage(imageId: number): Promise<void> {
  await request(`/api/images/${imageId}`, send("DELETE"));
}

/** Assigns the image to an annotator of the project (null: to nobody). */
export const assignImage = (imageId: number, userId: number | null) =>
  json<ImageInfo>(`/api/images/${imageId}/assign`, send("POST", { user_id: userId } satisfies Schema<"AssignIn">));

export const startEmbedding = (projectId: number) => json<Job>(`/api/projects/${projectId}/embed`, send("POST"));

/** The thumbnail as an object URL (an <img> cannot send our token); the caller revokes it. */
export async function thumbnailUrl(image: ImageInfo): Promise<string> {
  const blob = await (await request(image.thumbnail_url)).blob();
  return URL.createObjectURL(blob);
}
