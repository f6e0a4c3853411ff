/**
 * The decoder Web Worker: runs SAM's prompt encoder + mask decoder graph in onnxruntime-web (wasm)
 * so the page never blocks while a mask is computed.
 *
 * Requests are executed strictly in arrival order (one chain of promises), so a decode always sees
 * the embedding set before it. Which requests to send at all (latest-wins for hover previews) is the
 * client's business (decoder_client.ts); this worker only runs graphs.
 *
 * Two graph layouts are accepted:
 * - one graph (model_server/export/graphs.py, our contract): inputs image_embeddings, point_coords,
 *   point_labels, mask_input, has_mask_input; outputs low_res_masks [1,4,256,256], iou_predictions [1,4];
 * - the split decoder (model_server/export/graphs.py, the image/click pair): a per-image graph run once in setEmbedding,
 *   whose outputs are fed, by name, to the per-click graph together with the point inputs.
 *
 * The worker lives as long as the page's annotate session: the per-image feeds of the last few
 * images (`KEPT_IMAGES`, by key) are kept, so the page prepares the next image while the annotator
 * works and switching to it is one `useImage`. `load` ends with a throw-away run of both graphs,
 * so that no annotator's first click pays for onnxruntime's first-run setup.
 */

import { float16ToFloat32 } from "./float16";
import { int8ToFloat32 } from "./int8";
import {
  KEPT_IMAGES,
  type DecodeRequest,
  type EmbeddingDtype,
  type LoadRequest,
  type SetEmbeddingRequest,
  type UseImageRequest,
  type WorkerRequest,
  type WorkerResponse,
} from "./protocol";
import { configureRuntime, createSession, ort, ownedFloat32 } from "./session";

const EMBEDDING_DIMS = [1, 256, 64, 64];
const EMBEDDING_SIZE = 256 * 64 * 64;
const LOW_RES = 256;

let clickSession: ort.InferenceSession | null = null;
let imageSession: ort.InferenceSession | null = null;
type Feeds = Record<string, ort.Tensor>;
/** Per-image feeds of the click graph (the embedding itself, or the per-image graph's outputs) decoded now. */
let imageFeeds: Feeds | null = null;
/** Feeds kept by key, oldest first (a Map iterates in insertion order; a use moves a key last). */
const kept = new Map<number, Feeds>();
const noMask = new ort.Tensor("float32", new Float32Array(LOW_RES * LOW_RES), [1, 1, LOW_RES, LOW_RES]);
const hasNoMask = new ort.Tensor("float32", new Float32Array([0]), [1]);
const hasMask = new ort.Tensor("float32", new Float32Array([1]), [1]);

const post = (message: WorkerResponse, transfer: Transferable[] = []): void =>
  (self as unknown as Worker).postMessage(message, transfer);

async function load(request: LoadRequest): Promise<void> {
  const start = performance.now();
  const numThreads = configureRuntime(request.wasmPaths, request.numThreads);
  const [click, image] = await Promise.all([
    createSession(request.decoderUrl),
    request.imageGraphUrl ? createSession(request.imageGraphUrl) : Promise.resolve(null),
  ]);
  clickSession = click;
  imageSession = image;
  imageFeeds = null;
  kept.clear();
  await warmUp();
  post({ type: "loaded", id: request.id, numThreads, ms: performance.now() - start });
}

/** One run of each graph on a zero embedding, its results thrown away (see the header). */
async function warmUp(): Promise<void> {
  const feeds = await featuresOf(new Float32Array(EMBEDDING_SIZE));
  await runClick(feeds, new Float32Array([512, 512, 0, 0]), new Float32Array([1, -1]), undefined);
}

function toFloat32(embedding: ArrayBuffer, dtype: EmbeddingDtype): Float32Array {
  return dtype === "int8-per-channel" ? int8ToFloat32(embedding) : float16ToFloat32(embedding);
}

async function featuresOf(values: Float32Array): Promise<Feeds> {
  const embedding = new ort.Tensor("float32", values, EMBEDDING_DIMS);
  return imageSession ? imageSession.run({ image_embeddings: embedding }) : { image_embeddings: embedding };
}

function keep(key: number, feeds: Feeds): void {
  kept.delete(key);
  kept.set(key, feeds);
  while (kept.size > KEPT_IMAGES) kept.delete(kept.keys().next().value!);
}

async function setEmbedding(request: SetEmbeddingRequest): Promise<void> {
  if (clickSession === null) throw new Error("setEmbedding before load");
  const start = performance.now();
  const dtype = request.dtype ?? "float16";
  const values = toFloat32(request.embedding, dtype);
  if (values.length !== EMBEDDING_SIZE) {
    throw new Error(`embedding has ${values.length} values; expected ${EMBEDDING_SIZE} (1x256x64x64 ${dtype})`);
  }
  const decodeMs = performance.now() - start;
  const feeds = await featuresOf(values);
  if (request.key !== undefined) keep(request.key, feeds);
  if (request.activate ?? true) imageFeeds = feeds;
  post({ type: "embeddingSet", id: request.id, ms: performance.now() - start, decodeMs });
}

async function useImage(request: UseImageRequest): Promise<void> {
  const feeds = kept.get(request.key);
  if (feeds === undefined) throw new Error(`image ${request.key} is not prepared`);
  keep(request.key, feeds);
  imageFeeds = feeds;
  post({ type: "imageUsed", id: request.id });
}

async function decode(request: DecodeRequest): Promise<void> {
  if (clickSession === null || imageFeeds === null) throw new Error("decode before load and setEmbedding");
  const start = performance.now();
  const count = request.pointLabels.length;
  if (request.pointCoords.length !== 2 * count) throw new Error(`${request.pointCoords.length / 2} coordinates for ${count} labels`);
  if (request.maskInput && request.maskInput.length !== LOW_RES * LOW_RES) {
    throw new Error(`maskInput has ${request.maskInput.length} values; expected ${LOW_RES * LOW_RES}`);
  }
  const outputs = await runClick(imageFeeds, request.pointCoords, request.pointLabels, request.maskInput);
  const lowRes = ownedFloat32(outputs.low_res_masks);
  const iou = ownedFloat32(outputs.iou_predictions);
  post({ type: "decoded", id: request.id, lowRes, iou, ms: performance.now() - start }, [lowRes.buffer, iou.buffer]);
}

function runClick(image: Feeds, pointCoords: Float32Array, pointLabels: Float32Array, maskInput: Float32Array | undefined): Promise<Feeds> {
  const count = pointLabels.length;
  const feeds: Feeds = {
    point_coords: new ort.Tensor("float32", pointCoords, [1, count, 2]),
    point_labels: new ort.Tensor("float32", pointLabels, [1, count]),
    mask_input: maskInput ? new ort.Tensor("float32", maskInput, [1, 1, LOW_RES, LOW_RES]) : noMask,
    has_mask_input: maskInput ? hasMask : hasNoMask,
  };
  for (const name of clickSession!.inputNames) if (name in image) feeds[name] = image[name];
  return clickSession!.run(feeds);
}

function handle(request: WorkerRequest): Promise<void> {
  switch (request.type) {
    case "load":
      return load(request);
    case "setEmbedding":
      return setEmbedding(request);
    case "useImage":
      return useImage(request);
    case "decode":
      return decode(request);
  }
}

let chain: Promise<void> = Promise.resolve();

self.onmessage = (event: MessageEvent<WorkerRequest>) => {
  const request = event.data;
  chain = chain.then(() =>
    handle(request).catch((error: unknown) =>
      post({ type: "error", id: request.id, message: error instanceof Error ? error.message : String(error) }),
    ),
  );
};
