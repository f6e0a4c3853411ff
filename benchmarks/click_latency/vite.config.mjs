// Builds the decoder harness page (benchmarks/click_latency/index.html) with the product's own
// worker code from frontend/src/inference/, for tests/browser/test_decoder_parity.py and
// benchmarks/click_latency.py. Run with frontend/node_modules/.bin/vite build --config <this file>.
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

// A plain object: this folder has no node_modules of its own to import vite's defineConfig from.
export default {
  root: dirname(fileURLToPath(import.meta.url)),
  logLevel: "warn",
  build: { emptyOutDir: true, target: "es2022", chunkSizeWarningLimit: 2048 },
  // As frontend/vite.config.ts: onnxruntime-web's entries that load the wasm runtime from /ort/
  // (no second copy of the .wasm in the build). Vite's default client conditions follow.
  resolve: { conditions: ["onnxruntime-web-use-extern-wasm", "module", "browser", "development|production"] },
  worker: { format: "es" },
};
