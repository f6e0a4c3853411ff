/**
 * Messages between the page (`DecoderClient`) and the decoder Web Worker.
 *
 * Every request carries an `id`; the worker answers each with exactly one response of the same id
 * (`ok` payload or `error`). Large arrays travel as transferables, never copied.
 * Coordinates in `DecodeRequest` are already in the 1024 model frame (see prompt.ts): the worker only
 * runs graphs.
 */

/** [height, width] in pixels. */
export type Size = readonly [number, number];

export interface LoadRequest {
  type: "load";
  id: number;
  /** URL of the decoder ONNX (our contract, or the split per-click graph when `imageGraphUrl` is set). */
  decoderUrl: string;
  /**
   * URL of the per-image graph of the split decoder (model_server/export/graphs.py, the image/click pair): run once per
   * `setEmbedding`, its outputs become extra inputs of every decode.
   */
  imageGraphUrl?: string;
  /** Where onnxruntime-web's `.wasm`/`.mjs` runtime is served (our own origin, never a CDN). */
  wasmPaths: string;
  /** Wasm threads: 2 under cross-origin isolation (the page decides), otherwise 1. */
  numThreads: number;
}

/** How the embedding's bytes encode its values (the endpoint's `X-Embedding-Dtype`). */
export type EmbeddingDtype = "float16" | "int8-per-channel";

export interface SetEmbeddingRequest {
  type: "setEmbedding";
  id: number;
  /** The `/api/images/{id}/embedding` body: 1x256x64x64 in `dtype` (float16 when absent), C order. */
  embedding: ArrayBuffer;
  dtype?: EmbeddingDtype;
  /**
   * Keep the per-image feeds under this key (the image id), so that `useImage` can come back to them
   * without running the per-image graph again; the worker keeps the last `KEPT_IMAGES` keys.
   */
  key?: number;
  /** false: only prepare (and keep) the feeds; the image decoded stays the current one. Default true. */
  activate?: boolean;
}

/** Makes the feeds kept under `key` (a `setEmbedding` with that key) the ones every decode uses. */
export interface UseImageRequest {
  type: "useImage";
  id: number;
  key: number;
}

/** Per-image feeds the worker keeps (the image shown, the next, the previous, one spare). */
export const KEPT_IMAGES = 4;

export interface DecodeRequest {
  type: "decode";
  id: number;
  /** 1xMx2 float32 (x, y) in the 1024 model frame, padding point or box corners included. */
  pointCoords: Float32Array;
  /** 1xM float32 labels: 1 fg, 0 bg, 2/3 box corners, -1 padding. */
  pointLabels: Float32Array;
  /** 1x1x256x256 float32 low-res logits of a previous decode, or absent. */
  maskInput?: Float32Array;
}

export type WorkerRequest = LoadRequest | SetEmbeddingRequest | UseImageRequest | DecodeRequest;

export interface LoadedResponse {
  type: "loaded";
  id: number;
  /** Threads onnxruntime-web actually uses (1 when the page is not cross-origin isolated). */
  numThreads: number;
  /** Milliseconds to fetch and initialise the graph(s), the warm-up run included. */
  ms: number;
}

export interface EmbeddingSetResponse {
  type: "embeddingSet";
  id: number;
  /** Milliseconds for the conversion to float32 and the per-image graph (if split), together. */
  ms: number;
  /** Of these, the conversion to float32 alone. */
  decodeMs: number;
}

export interface ImageUsedResponse {
  type: "imageUsed";
  id: number;
}

export interface DecodedResponse {
  type: "decoded";
  id: number;
  /** 4x256x256 float32 logits: token 0 single-mask, tokens 1-3 the multimask outputs. */
  lowRes: Float32Array;
  /** 4 float32 predicted IoUs, same token order. */
  iou: Float32Array;
  /** Milliseconds spent in `session.run` (and tensor setup) inside the worker. */
  ms: number;
}

export interface ErrorResponse {
  type: "error";
  id: number;
  message: string;
}

export type WorkerResponse = LoadedResponse | EmbeddingSetResponse | ImageUsedResponse | DecodedResponse | ErrorResponse;
