/**
 * Typed client for our REST API. The only module that knows URLs and the bearer token.
 * Errors surface as `ApiError` carrying the server's `detail` message, so pages can show it as is.
 */
import type { Embedding, ImageInfo, MaskCreate, MaskOut, ModelVersion, Project, Schema, User } from "./types";

const TOKEN_KEY = "dataengine.token";

/** One problem of a request that failed validation: `loc` is the path into it, e.g.
 * ["body", "settings", "review_fraction"] (backend/api/errors.py). */
export type ErrorItem = Schema<"ErrorItem">;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors: ErrorItem[] = [],
  ) {
    super(message);
  }
}

export function getToken(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token === null) localStorage.removeItem(TOKEN_KEY);
  else localStorage.setItem(TOKEN_KEY, token);
}

/** `fetch` with the session's token; a JSON string body is labelled as such; a non-2xx answer
 * throws `ApiError` with the server's `detail`. Every page's API module goes through it. */
export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const token = getToken();
  if (token) headers.set("Authorization", `Bearer ${token}`);
  if (typeof init.body === "string" && !headers.has("Content-Type")) headers.set("Content-Type", "application/json");
  const response = await fetch(path, { ...init, headers });
  if (!response.ok) throw apiError(response.status, response.statusText, await response.text());
  return response;
}

/** The server's error body (`{detail, errors}`) as an `ApiError`; a 401 also forgets the token. */
function apiError(status: number, statusText: string, bodyText: string): ApiError {
  let detail = statusText || `HTTP ${status}`;
  let errors: ErrorItem[] = [];
  try {
    const body = JSON.parse(bodyText);
    if (typeof body.detail === "string") detail = body.detail;
    else if (body.detail) detail = JSON.stringify(body.detail);
    if (Array.isArray(body.errors)) errors = body.errors as ErrorItem[];
  } catch {
    // Not JSON (a proxy's error page): the status text is all we have.
  }
  if (status === 401) setToken(null);
  return new ApiError(status, detail, errors);
}

/** POSTs a multipart form with the session's token, reporting upload progress (bytes sent, total):
 * `fetch` cannot report it, so this one request goes through XMLHttpRequest. Resolves with the
 * parsed JSON answer; rejects with `ApiError` like `request` (status 0: the connection failed). */
export function postFormWithProgress<T>(path: string, form: FormData, onProgress: (sent: number, total: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const token = getToken();
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.addEventListener("progress", (e) => onProgress(e.loaded, e.lengthComputable ? e.total : 0));
    xhr.addEventListener("load", () => {
      if (xhr.status < 200 || xhr.status >= 300) return reject(apiError(xhr.status, xhr.statusText, xhr.responseText));
      try {
        resolve(JSON.parse(xhr.responseText) as T);
      } catch {
        reject(new ApiError(xhr.status, "the server's answer is not JSON"));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload failed (connection lost?)")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "the upload was cancelled")));
    xhr.send(form);
  });
}

export async function json<T>(path: string, init: RequestInit = {}): Promise<T> {
  return (await request(path, init)).json() as Promise<T>;
}

/** A JSON request body with its method, for `json` and `request`. */
export function send(method: "POST" | "PATCH" | "PUT" | "DELETE", body?: unknown): RequestInit {
  return body === undefined
    ? { method }
    : { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
}

export async function login(username: string, password: string): Promise<void> {
  const form = new URLSearchParams({ username, password });
  const out = await json<Schema<"Token">>("/api/auth/token", { method: "POST", body: form });
  setToken(out.access_token);
}

export const me = () => json<User>("/api/users/me");
export const getProject = (id: number) => json<Project>(`/api/projects/${id}`);
export const getImage = (id: number) => json<ImageInfo>(`/api/images/${id}`);
export const getModel = (projectId: number) => json<ModelVersion>(`/api/projects/${projectId}/model`);
/** Any version by id in the same shape (its decoder graphs' URLs): the one an embedding names. */
export const getModelVersion = (versionId: number) => json<ModelVersion>(`/api/model-versions/${versionId}`);
export const listMasks = (imageId: number) => json<MaskOut[]>(`/api/images/${imageId}/masks`);

/** Claims the next unfinished image of the project for the current user; null when none is left. */
export async function claimNext(projectId: number): Promise<ImageInfo | null> {
  const response = await request(`/api/projects/${projectId}/claim`, { method: "POST" });
  return response.status === 204 ? null : ((await response.json()) as ImageInfo);
}

/** The image `claimNext` would give now, without locking it (for prefetching); `exclude`: the one being finished. */
export async function peekNext(projectId: number, exclude?: number): Promise<ImageInfo | null> {
  const query = exclude === undefined ? "" : `?exclude=${exclude}`;
  const response = await request(`/api/projects/${projectId}/images/next${query}`);
  return response.status === 204 ? null : ((await response.json()) as ImageInfo);
}

/** Takes (or refreshes) the lock on one image for the current user; 409 when someone else holds it. */
export const claimImage = (imageId: number) =>
  json<ImageInfo>(`/api/images/${imageId}/claim`, { method: "POST" });

export async function releaseImage(imageId: number): Promise<void> {
  await request(`/api/images/${imageId}/release`, { method: "POST" });
}

export const markDone = (imageId: number) =>
  json<ImageInfo>(`/api/images/${imageId}/done`, { method: "POST" });

/** Saves a mask. Idempotent by `client_id`: 201 the first time, 200 with the same mask after. */
export const saveMask = (imageId: number, mask: MaskCreate) =>
  json<MaskOut>(`/api/images/${imageId}/masks`, send("POST", mask));

export async function deleteMask(maskId: number): Promise<void> {
  await request(`/api/masks/${maskId}`, { method: "DELETE" });
}

/** The original image, decoded off the main thread. */
export async function fetchImageBitmap(imageId: number): Promise<ImageBitmap> {
  const blob = await (await request(`/api/images/${imageId}/file`)).blob();
  return createImageBitmap(blob);
}

/** Bytes behind an authenticated URL (the decoder ONNX): workers cannot see our token. */
export async function fetchBytes(url: string): Promise<ArrayBuffer> {
  return (await request(url)).arrayBuffer();
}

function sizeHeader(response: Response, name: string): [number, number] {
  const parts = (response.headers.get(name) ?? "").split(",").map(Number);
  if (parts.length !== 2 || parts.some((v) => !Number.isFinite(v) || v <= 0)) {
    throw new ApiError(response.status, `embedding response lacks a valid ${name} header`);
  }
  return [parts[0], parts[1]];
}

/**
 * The image's embedding in the smaller wire encoding (per-channel int8, benchmarks/README.md says
 * what the masks lose), as the server chooses it: the serving version's, or while the project is
 * re-embedded after a new image encoder, the previously serving version's until the new one exists.
 * `modelVersionId` (`X-Model-Version`) names the version whose encoder made these bytes: only that
 * version's decoder may decode them. Sent `no-cache`: a revisit revalidates (a 304 is cheap).
 */
export async function fetchEmbedding(imageId: number): Promise<Embedding> {
  const query = new URLSearchParams({ encoding: "int8-per-channel" });
  const response = await request(`/api/images/${imageId}/embedding?${query}`);
  const originalSize = sizeHeader(response, "X-Original-Size");
  const inputSize = sizeHeader(response, "X-Input-Size");
  const dtype = response.headers.get("X-Embedding-Dtype");
  if (dtype !== "float16" && dtype !== "int8-per-channel") throw new ApiError(response.status, `embedding of unknown dtype ${dtype}`);
  const modelVersionId = Number(response.headers.get("X-Model-Version") ?? "");
  // Without it the page could not know which decoder fits: better no decoder than a wrong one.
  if (!Number.isInteger(modelVersionId) || modelVersionId <= 0) throw new ApiError(response.status, "embedding response lacks a valid X-Model-Version header");
  return { data: await response.arrayBuffer(), dtype, originalSize, inputSize, modelVersionId };
}
