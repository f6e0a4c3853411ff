import { defaultClientConditions, defineConfig } from "vite";

/**
 * The app is served by the backend from `frontend/dist` (backend/web.py), so every URL is
 * same-origin: `/api/...` for the REST API and `/ort/` for onnxruntime-web's wasm runtime
 * (copied there by scripts/copy-ort.mjs; never a CDN). `npm run dev` proxies the API to a local
 * `dataengine up` and sends the cross-origin isolation headers the wasm threads need.
 *
 * The `onnxruntime-web-use-extern-wasm` export condition picks onnxruntime-web's entries that load
 * the wasm runtime from `env.wasm.wasmPaths` (our `/ort/`) instead of the default "bundle" entries,
 * which would make Vite emit a second 14 MB copy of the `.wasm` into `dist/assets/`.
 */
const isolation = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", chunkSizeWarningLimit: 1024 },
  resolve: { conditions: ["onnxruntime-web-use-extern-wasm", ...defaultClientConditions] },
  worker: { format: "es" },
  server: {
    headers: isolation,
    proxy: { "/api": "http://127.0.0.1:8000", "/ort": "http://127.0.0.1:8000" },
  },
  preview: { headers: isolation },
});
