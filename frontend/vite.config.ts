import { defineConfig } from "vite";

/**
 * The app is served by the backend from `frontend/dist` (backend/web.py), so every URL is
 * same-origin: `/api/...` for the REST API and `/ort/` for onnxruntime-web's wasm runtime
 * (copied there by scripts/copy-ort.mjs; never a CDN). `npm run dev` proxies the API to a local
 * `dataengine up` and sends the cross-origin isolation headers the wasm threads need.
 */
const isolation = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", chunkSizeWarningLimit: 1024 },
  worker: { format: "es" },
  server: {
    headers: isolation,
    proxy: { "/api": "http://127.0.0.1:8000", "/ort": "http://127.0.0.1:8000" },
  },
  preview: { headers: isolation },
});
