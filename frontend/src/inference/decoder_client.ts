/**
 * The page's handle on the decoder Web Worker.
 *
 * Usage: `load(decoderUrl)` once per model version, `setEmbedding(...)` once per image, then
 * `decode(prompt)` per click (or `decode(prompt, { hover: true })` per mouse-move preview). A page
 * that switches between images `prepare`s each one (its per-image graph runs then, while the
 * annotator works on another) and `use`s it when it is shown: no graph runs on the switch.
 * Prompts are in ORIGINAL-image pixels; the client converts them to the graph's 1024 frame.
 *
 * Scheduling is latest-wins for previews: at most one request runs in the worker at a time, and
 * when a new request is queued every hover decode still waiting is dropped (its promise rejects with
 * `DecodeSuperseded`), because its answer would be stale by the time it ran. Clicks, loads and
 * embeddings are never dropped and run in order.
 */

import { buildPrompt, type Prompt } from "./prompt";
import { KEPT_IMAGES, type EmbeddingDtype, type Size, type WorkerRequest, type WorkerResponse } from "./protocol";

export type { Point, Prompt } from "./prompt";
export type { EmbeddingDtype, Size } from "./protocol";

export interface DecodeResult {
  /** 4x256x256 float32 logits; token k is `lowRes.subarray(k * 65536, (k + 1) * 65536)`. */
  lowRes: Float32Array;
  /** 4 predicted IoUs: token 0 is the single-mask output, tokens 1-3 the multimask outputs. */
  iou: Float32Array;
  /** Milliseconds the worker spent on this decode. */
  ms: number;
  /** Milliseconds from `decode()` to the result, queueing and messaging included. */
  latencyMs: number;
}

export interface LoadOptions {
  /** URL prefix of onnxruntime-web's runtime files, served by our backend. */
  wasmPaths?: string;
  /** Wanted wasm threads; default 2 under cross-origin isolation, else 1. */
  numThreads?: number;
  /** Per-image graph of the split decoder, when `decoderUrl` is its per-click graph. */
  imageGraphUrl?: string;
}

/** Rejection reason of a hover decode that a newer request made stale. */
export class DecodeSuperseded extends Error {
  constructor() {
    super("decode superseded by a newer request");
    this.name = "DecodeSuperseded";
  }
}

export const LOW_RES_SIZE = 256 * 256;

/** Logits of mask token k (0 single-mask, 1-3 multimask) as a 256x256 view of `lowRes`. */
export function tokenLogits(lowRes: Float32Array, token: number): Float32Array {
  return lowRes.subarray(token * LOW_RES_SIZE, (token + 1) * LOW_RES_SIZE);
}

/**
 * The token SAM would return: the best of 1-3 by predicted IoU for an ambiguous prompt
 * (`multimask`), token 0 otherwise.
 */
export function bestToken(iou: Float32Array, multimask: boolean): number {
  if (!multimask) return 0;
  let best = 1;
  for (let k = 2; k <= 3; k++) if (iou[k] > iou[best]) best = k;
  return best;
}

interface Sizes {
  original: Size;
  input: Size;
}

interface Job {
  message: WorkerRequest;
  transfer: Transferable[];
  hover: boolean;
  enqueuedAt: number;
  resolve: (response: WorkerResponse, job: Job) => void;
  reject: (error: Error) => void;
}

export class DecoderClient {
  private readonly worker: Worker;
  private readonly queue: Job[] = [];
  private running: Job | null = null;
  private nextId = 1;
  private sizes: Sizes | null = null;
  /** The sizes of the images the worker keeps, in its order (the same operations in the same order). */
  private readonly kept = new Map<number, Sizes>();

  constructor(worker?: Worker) {
    this.worker = worker ?? new Worker(new URL("./decoder.worker.ts", import.meta.url), { type: "module" });
    this.worker.onmessage = (event: MessageEvent<WorkerResponse>) => this.finish(event.data);
    this.worker.onerror = (event: ErrorEvent) => this.failAll(new Error(`decoder worker failed: ${event.message}`));
  }

  /** Loads a decoder graph (our contract ONNX, or the split decoder's per-click graph). */
  load(decoderUrl: string, options: LoadOptions = {}): Promise<{ numThreads: number; ms: number }> {
    const numThreads = options.numThreads ?? (globalThis.crossOriginIsolated ? 2 : 1);
    return this.enqueue(
      { type: "load", id: 0, decoderUrl, imageGraphUrl: options.imageGraphUrl, wasmPaths: options.wasmPaths ?? "/ort/", numThreads },
      [],
      false,
    ).then((r) => (r.type === "loaded" ? { numThreads: r.numThreads, ms: r.ms } : unexpected(r)));
  }

  /**
   * Sets the image every following decode refers to.
   *
   * @param embedding float16 little-endian 1x256x64x64 (the embedding endpoint's body); copied, so the
   *   caller keeps its buffer.
   * @param originalSize [h, w] of the image as shown (the frame of every prompt).
   * @param inputSize [h, w] of the image resized to longest side 1024 (the embedding's input size).
   */
  setEmbedding(embedding: ArrayBuffer, originalSize: Size, inputSize: Size): Promise<{ ms: number }> {
    const copy = embedding.slice(0);
    this.sizes = { original: [originalSize[0], originalSize[1]], input: [inputSize[0], inputSize[1]] };
    return this.enqueue({ type: "setEmbedding", id: 0, embedding: copy }, [copy], false).then((r) =>
      r.type === "embeddingSet" ? { ms: r.ms } : unexpected(r),
    );
  }

  /**
   * Runs the per-image graph of image `key` and keeps its result in the worker (the last
   * `KEPT_IMAGES` keys), without changing the image decoded now; `use(key)` switches to it.
   *
   * @param embedding the embedding endpoint's body in `dtype`; transferred (the caller's buffer is
   *   emptied), so pass a copy to keep it.
   * @returns milliseconds in the worker: all of it, and the conversion to float32 alone.
   */
  prepare(key: number, embedding: ArrayBuffer, dtype: EmbeddingDtype, originalSize: Size, inputSize: Size): Promise<{ ms: number; decodeMs: number }> {
    this.keep(key, { original: [originalSize[0], originalSize[1]], input: [inputSize[0], inputSize[1]] });
    return this.enqueue({ type: "setEmbedding", id: 0, embedding, dtype, key, activate: false }, [embedding], false).then(
      (r) => (r.type === "embeddingSet" ? { ms: r.ms, decodeMs: r.decodeMs } : unexpected(r)),
      (error: Error) => {
        this.kept.delete(key);
        throw error;
      },
    );
  }

  /** Whether image `key` is prepared (or being prepared) in the worker. */
  has(key: number): boolean {
    return this.kept.has(key);
  }

  /** Makes the prepared image `key` the one every following decode refers to. */
  use(key: number): Promise<void> {
    const sizes = this.kept.get(key);
    if (sizes === undefined) return Promise.reject(new Error(`image ${key} is not prepared`));
    this.keep(key, sizes);
    this.sizes = sizes;
    return this.enqueue({ type: "useImage", id: 0, key }, [], false).then((r) => (r.type === "imageUsed" ? undefined : unexpected(r)));
  }

  /**
   * Decodes a prompt given in original-image pixels.
   *
   * @param options.hover a preview that may be dropped (rejects with `DecodeSuperseded`) when a newer
   *   request arrives before it starts.
   */
  decode(prompt: Prompt, options: { hover?: boolean } = {}): Promise<DecodeResult> {
    if (this.sizes === null) return Promise.reject(new Error("decode before setEmbedding"));
    let graph;
    try {
      graph = buildPrompt(prompt, this.sizes.original, this.sizes.input);
    } catch (error) {
      return Promise.reject(error);
    }
    const maskInput = prompt.maskInput ? new Float32Array(prompt.maskInput) : undefined;
    if (maskInput && maskInput.length !== LOW_RES_SIZE) {
      return Promise.reject(new Error(`maskInput has ${maskInput.length} values; expected ${LOW_RES_SIZE}`));
    }
    const transfer: Transferable[] = [graph.pointCoords.buffer, graph.pointLabels.buffer];
    if (maskInput) transfer.push(maskInput.buffer);
    return new Promise<DecodeResult>((resolve, reject) => {
      this.push({
        message: { type: "decode", id: 0, ...graph, maskInput },
        transfer,
        hover: options.hover ?? false,
        enqueuedAt: performance.now(),
        resolve: (r, job) =>
          r.type === "decoded"
            ? resolve({ lowRes: r.lowRes, iou: r.iou, ms: r.ms, latencyMs: performance.now() - job.enqueuedAt })
            : reject(new Error(`unexpected worker response ${r.type}`)),
        reject,
      });
    });
  }

  /** Stops the worker; pending requests reject. */
  terminate(): void {
    this.worker.terminate();
    this.failAll(new Error("decoder worker terminated"));
  }

  private keep(key: number, sizes: Sizes): void {
    this.kept.delete(key);
    this.kept.set(key, sizes);
    while (this.kept.size > KEPT_IMAGES) this.kept.delete(this.kept.keys().next().value!);
  }

  private enqueue(message: WorkerRequest, transfer: Transferable[], hover: boolean): Promise<WorkerResponse> {
    return new Promise((resolve, reject) =>
      this.push({ message, transfer, hover, enqueuedAt: performance.now(), resolve: (r) => resolve(r), reject }),
    );
  }

  private push(job: Job): void {
    // Every waiting preview is stale once anything newer is queued.
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i].hover) this.queue.splice(i, 1)[0].reject(new DecodeSuperseded());
    }
    this.queue.push(job);
    this.pump();
  }

  private pump(): void {
    if (this.running !== null) return;
    const job = this.queue.shift();
    if (job === undefined) return;
    job.message.id = this.nextId++;
    this.running = job;
    this.worker.postMessage(job.message, job.transfer);
  }

  private finish(response: WorkerResponse): void {
    const job = this.running;
    if (job === null || job.message.id !== response.id) return;
    this.running = null;
    if (response.type === "error") job.reject(new Error(response.message));
    else job.resolve(response, job);
    this.pump();
  }

  private failAll(error: Error): void {
    const jobs = this.running ? [this.running, ...this.queue] : [...this.queue];
    this.running = null;
    this.queue.length = 0;
    for (const job of jobs) job.reject(error);
  }
}

function unexpected(response: WorkerResponse): never {
  throw new Error(`unexpected worker response ${response.type}`);
}
