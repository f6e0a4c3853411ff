/**
 * Reference worker for the benchmark: runs the official SAM demo's contract (model_server/export.py
 * `export_official_contract_onnx`: full-resolution logits computed inside the graph) under exactly
 * the runtime settings of our decoder worker (frontend/src/inference/session.ts).
 */

import { float16ToFloat32 } from "../../frontend/src/inference/float16";
import { configureRuntime, createSession, ort, ownedFloat32 } from "../../frontend/src/inference/session";

export type OfficialRequest =
  | { type: "load"; url: string; wasmPaths: string; numThreads: number }
  | { type: "setEmbedding"; embedding: ArrayBuffer }
  | { type: "decode"; coords: Float32Array; labels: Float32Array; maskInput?: Float32Array; originalSize: [number, number] };

let session: ort.InferenceSession | null = null;
let embedding: ort.Tensor | null = null;
const noMask = new ort.Tensor("float32", new Float32Array(256 * 256), [1, 1, 256, 256]);

async function handle(request: OfficialRequest): Promise<[unknown, Transferable[]]> {
  switch (request.type) {
    case "load": {
      const numThreads = configureRuntime(request.wasmPaths, request.numThreads);
      session = await createSession(request.url);
      return [{ numThreads }, []];
    }
    case "setEmbedding":
      embedding = new ort.Tensor("float32", float16ToFloat32(request.embedding), [1, 256, 64, 64]);
      return [{}, []];
    case "decode": {
      if (session === null || embedding === null) throw new Error("decode before load/setEmbedding");
      const start = performance.now();
      const n = request.labels.length;
      const out = await session.run({
        image_embeddings: embedding,
        point_coords: new ort.Tensor("float32", request.coords, [1, n, 2]),
        point_labels: new ort.Tensor("float32", request.labels, [1, n]),
        mask_input: request.maskInput ? new ort.Tensor("float32", request.maskInput, [1, 1, 256, 256]) : noMask,
        has_mask_input: new ort.Tensor("float32", new Float32Array([request.maskInput ? 1 : 0]), [1]),
        orig_im_size: new ort.Tensor("float32", new Float32Array(request.originalSize), [2]),
      });
      const masks = ownedFloat32(out.masks);
      const lowRes = ownedFloat32(out.low_res_masks);
      const result = { masks, lowRes, iou: out.iou_predictions.data[0], ms: performance.now() - start };
      return [result, [masks.buffer, lowRes.buffer]];
    }
  }
}

let chain: Promise<void> = Promise.resolve();
self.onmessage = (event: MessageEvent<OfficialRequest>) => {
  chain = chain.then(() =>
    handle(event.data).then(
      ([result, transfer]) => (self as unknown as Worker).postMessage({ ok: true, result }, transfer),
      (error: unknown) => (self as unknown as Worker).postMessage({ ok: false, error: String(error) }),
    ),
  );
};
