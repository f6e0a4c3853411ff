/**
 * Typed client for our REST API. The only module that knows URLs and the bearer token.
 * Errors surface as `ApiError` carrying the server's `detail` message, so pages can show it as is.
 */
import type {
  Embedding,
  ImageInfo,
  MaskCreate,
  MaskOut,
  ModelVersion,
  Project,
  User,
} from "./types";

const TOKEN_KEY = "dataengine.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
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
  if (!response.ok) {
    let detail = response.statusText || `HTTP ${response.status}`;
    try {
      const body = await response.json();
      if (typeof body.detail === "string") detail = body.detail;
      else if (body.detail) detail = JSON.stringify(body.detail);
    } catch {
      // Not JSON (a proxy's error page): the status text is all we have.
    }
    if (response.status === 401) setToken(null);
    throw new ApiError(response.status, detail);
  }
  return response;
}

export async function json<T>(path: string, init: RequestInit = {}): Promise<T> {
  return (await request(path, init)).json() as Promise<T>;
}

function post(body: unknown): RequestInit {
  return {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
}

export async function login(username: string, password: string): Promise<void> {
  const form = new URLSearchParams({ username, password });
  const out = await json<{ access_token: string }>("/api/auth/token", { method: "POST", body: form });
  setToken(out.access_token);
}

export const me = () => json<User>("/api/users/me");
export const listProjects = () => json<Project[]>("/api/projects");
export const getProject = (id: number) => json<Project>(`/api/projects/${id}`);
export const getImage = (id: number) => json<ImageInfo>(`/api/images/${id}`);
export const getModel = (projectId: number) => json<ModelVersion>(`/api/projects/${projectId}/model`);
export const listMasks = (imageId: number) => json<MaskOut[]>(`/api/images/${imageId}/masks`);

/** Claims the next unfinished image of the project for the current user; null when none is left. */
export async function claimNext(projectId: number): Promise<ImageInfo | null> {
  const response = await request(`/api/projects/${projectId}/claim`, { method: "POST" });
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
  json<MaskOut>(`/api/images/${imageId}/masks`, post(mask));

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

export async function fetchEmbedding(imageId: number): Promise<Embedding> {
  const response = await request(`/api/images/${imageId}/embedding`);
  const originalSize = sizeHeader(response, "X-Original-Size");
  const inputSize = sizeHeader(response, "X-Input-Size");
  const modelVersionId = Number(response.headers.get("X-Model-Version"));
  return { data: await response.arrayBuffer(), originalSize, inputSize, modelVersionId };
}
