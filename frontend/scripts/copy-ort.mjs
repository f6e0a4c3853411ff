// Copies onnxruntime-web's wasm runtime (the .wasm binary and the .mjs glue that loads it) into
// dist/ort/, so the backend serves them from our own origin: the annotator never reaches a CDN, and
// the files sit under the same cross-origin isolation headers as the page.
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const source = join(root, "node_modules", "onnxruntime-web", "dist");
const target = join(root, "dist", "ort");
// The plain wasm build (SIMD + threads) that `onnxruntime-web/wasm` loads; the JSEP/asyncify/jspi builds are unused.
const wanted = /^ort-wasm-simd-threaded\.(wasm|mjs)$/;

mkdirSync(target, { recursive: true });
const copied = readdirSync(source).filter((name) => wanted.test(name));
if (copied.length === 0) throw new Error(`no onnxruntime-web runtime files in ${source}`);
for (const name of copied) copyFileSync(join(source, name), join(target, name));
console.log(`copy-ort: ${copied.length} files -> dist/ort/ (${copied.join(", ")})`);
