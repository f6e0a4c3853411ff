/**
 * onnxruntime-web setup shared by every worker that runs a decoder graph, so that the product worker
 * and the benchmark's reference worker run under exactly the same runtime settings.
 *
 * The wasm backend (SIMD build; threads only under cross-origin isolation) loads its `.mjs` glue and
 * `.wasm` binary from `wasmPaths`, which our server serves from `frontend/dist/ort/`: never a CDN.
 */

import * as ort from "onnxruntime-web/wasm";

export { ort };

/**
 * Configures the runtime once per worker, before the first session.
 *
 * @param wasmPaths URL prefix of onnxruntime-web's runtime files, e.g. "/ort/".
 * @param numThreads wanted threads; reduced to 1 when this worker is not cross-origin isolated
 *   (SharedArrayBuffer is unavailable there and onnxruntime-web would fail to start its threads).
 * @returns the thread count in effect.
 */
export function configureRuntime(wasmPaths: string, numThreads: number): number {
  const threads = self.crossOriginIsolated ? Math.max(1, Math.floor(numThreads)) : 1;
  ort.env.wasm.wasmPaths = wasmPaths;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.proxy = false; // we already are the worker
  return threads;
}

/** Fetches a graph and creates its wasm session with full graph optimisation. */
export async function createSession(url: string): Promise<ort.InferenceSession> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`fetching ${url} failed: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  return ort.InferenceSession.create(bytes, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
}

/** The Float32Array of a tensor as its own transferable buffer (copied only if it is a view). */
export function ownedFloat32(tensor: ort.Tensor): Float32Array {
  const data = tensor.data as Float32Array;
  const shared = typeof SharedArrayBuffer !== "undefined" && data.buffer instanceof SharedArrayBuffer;
  if (!shared && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) return data;
  return new Float32Array(data);
}
