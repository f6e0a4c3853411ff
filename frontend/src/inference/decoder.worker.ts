/**
 * The decoder Web Worker: runs SAM's prompt encoder + mask decoder graph in onnxruntime-web (wasm)
 * so the page never blocks while a mask is computed.
 *
 * Requests are executed strictly in arrival order (one chain of promises), so a decode always sees
 * the embedding set before it. Which requests to send at all (latest-wins for hover previews) is the
 * client's business (decoder_client.ts); this worker only runs graphs.
 *
 * Two graph layouts are accepted:
 * - one graph (model_server/export.py, our contract): inputs image_embeddings, point_coords,
 *   point_labels, mask_input, has_mask_input; outputs low_res_masks [1,4,256,256], iou_predictions [1,4];
 * - the split decoder (model_server/decoder_split.py): a per-image graph run once in setEmbedding,
 *   whose outputs are fed, by name, to the per-click graph together with the point inputs.
 */

import { float16ToFloat32 } from "./float16";
import type { DecodeRequest, LoadRequest, SetEmbeddingRequest, WorkerRequest, WorkerResponse } from "./protocol";
import { configureRuntime, createSession, ort, ownedFloat32 } from "./session";

const EMBEDDING_DIMS = [1, 256, 64, 64];
const EMBEDDING_SIZE = 256 * 64 * 64;
const LOW_RES = 256;

let clickSession: ort.InferenceSession | null = null;
let imageSession: ort.InferenceSession | null = null;
/** Per-image feeds of the click graph: the embedding itself, or the per-image graph's outputs. */
let imageFeeds: Record<string, ort.Tensor> | null = null;
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
  post({ type: "loaded", id: request.id, numThreads, ms: performance.now() - start });
}

async function setEmbedding(request: SetEmbeddingRequest): Promise<void> {
  if (clickSession === null) throw new Error("setEmbedding before load");
  const start = performance.now();
  const values = float16ToFloat32(request.embedding);
  if (values.length !== EMBEDDING_SIZE) {
    throw new Error(`embedding has ${values.length} values; expected ${EMBEDDING_SIZE} (1x256x64x64 float16)`);
  }
  const embedding = new ort.Tensor("float32", values, EMBEDDING_DIMS);
  imageFeeds = imageSession ? await imageSession.run({ image_embeddings: embedding }) : { image_embeddings: embedding };
  post({ type: "embeddingSet", id: request.id, ms: performance.now() - start });
}

async function decode(request: DecodeRequest): Promise<void> {
  if (clickSession === null || imageFeeds === null) throw new Error("decode before load and setEmbedding");
  const start = performance.now();
  const count = request.pointLabels.length;
  if (request.pointCoords.length !== 2 * count) throw new Error(`${request.pointCoords.length / 2} coordinates for ${count} labels`);
  if (request.maskInput && request.maskInput.length !== LOW_RES * LOW_RES) {
    throw new Error(`maskInput has ${request.maskInput.length} values; expected ${LOW_RES * LOW_RES}`);
  }
  const feeds: Record<string, ort.Tensor> = {
    point_coords: new ort.Tensor("float32", request.pointCoords, [1, count, 2]),
    point_labels: new ort.Tensor("float32", request.pointLabels, [1, count]),
    mask_input: request.maskInput ? new ort.Tensor("float32", request.maskInput, [1, 1, LOW_RES, LOW_RES]) : noMask,
    has_mask_input: request.maskInput ? hasMask : hasNoMask,
  };
  for (const name of clickSession.inputNames) if (name in imageFeeds) feeds[name] = imageFeeds[name];
  const outputs = await clickSession.run(feeds);
  const lowRes = ownedFloat32(outputs.low_res_masks);
  const iou = ownedFloat32(outputs.iou_predictions);
  post({ type: "decoded", id: request.id, lowRes, iou, ms: performance.now() - start }, [lowRes.buffer, iou.buffer]);
}

function handle(request: WorkerRequest): Promise<void> {
  switch (request.type) {
    case "load":
      return load(request);
    case "setEmbedding":
      return setEmbedding(request);
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
