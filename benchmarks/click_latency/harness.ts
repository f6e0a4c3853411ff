/**
 * Decoder harness page, driven by Playwright (tests/browser/test_decoder_parity.py and
 * benchmarks/click_latency.py) through `window.h7`.
 *
 * - Parity: `decode(prompt)` runs the product's DecoderClient/worker and returns its raw outputs;
 *   `upsample(token)` runs the product's MaskUpsampler at the original size.
 * - Latency: real clicks on the stage, each measured from the click event's timestamp to the
 *   animation frame after the overlay's putImageData. "ours" variants draw like the annotator:
 *   low-res logits upsampled at display size. "official" variants draw like the SAM demo: the graph
 *   returns logits at the original size, thresholded into an original-size ImageData.
 */

import { bestToken, DecoderClient, DecodeSuperseded, tokenLogits, type Point, type Prompt } from "../../frontend/src/inference/decoder_client";
import { buildPrompt } from "../../frontend/src/inference/prompt";
import { MaskUpsampler } from "../../frontend/src/inference/upsample";
import type { OfficialRequest } from "./official.worker";

type Size = [number, number];

interface Variant {
  name: string;
  kind: "ours" | "official";
  decoderUrl: string;
  imageGraphUrl?: string;
}

interface InitOptions {
  variants: Variant[];
  embeddingUrl: string;
  originalSize: Size;
  inputSize: Size;
  numThreads?: number;
  /** Shown under the overlays for latency runs; its display width in CSS pixels. */
  imageUrl?: string;
  displayWidth?: number;
}

class OfficialClient {
  private readonly worker = new Worker(new URL("./official.worker.ts", import.meta.url), { type: "module" });
  private pending: Array<[(v: any) => void, (e: Error) => void]> = [];

  constructor() {
    this.worker.onmessage = (event) => {
      const [resolve, reject] = this.pending.shift()!;
      if (event.data.ok) resolve(event.data.result);
      else reject(new Error(event.data.error));
    };
  }

  call(request: OfficialRequest, transfer: Transferable[] = []): Promise<any> {
    return new Promise((resolve, reject) => {
      this.pending.push([resolve, reject]);
      this.worker.postMessage(request, transfer);
    });
  }
}

interface VariantState {
  variant: Variant;
  ours?: DecoderClient;
  official?: OfficialClient;
  points: Point[];
  previous?: Float32Array;
  latencies: number[];
  decodeMs: number[];
}

const COLOR: [number, number, number, number] = [30, 144, 255, 140];
let sizes: { original: Size; input: Size; display: Size } | null = null;
const states = new Map<string, VariantState>();
let armed: { variant: string; label: 0 | 1; fresh: boolean } | null = null;
let measured = 0;
let displayUpsampler: MaskUpsampler | null = null;
let overlay: ImageData | null = null; // kept across clicks, as the annotator keeps its overlay
let lastLowRes: Float32Array | null = null;

function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

const f32ToBase64 = (values: Float32Array) => toBase64(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));

async function init(options: InitOptions): Promise<Record<string, unknown>> {
  const display: Size = options.displayWidth
    ? [Math.round((options.originalSize[0] * options.displayWidth) / options.originalSize[1]), options.displayWidth]
    : options.originalSize;
  sizes = { original: options.originalSize, input: options.inputSize, display };
  const embedding = await (await fetch(options.embeddingUrl)).arrayBuffer();
  const numThreads = options.numThreads ?? (crossOriginIsolated ? 2 : 1);
  const threads: Record<string, number> = {};
  for (const variant of options.variants) {
    const state: VariantState = { variant, points: [], latencies: [], decodeMs: [] };
    if (variant.kind === "ours") {
      state.ours = new DecoderClient();
      const loaded = await state.ours.load(variant.decoderUrl, { imageGraphUrl: variant.imageGraphUrl, numThreads });
      threads[variant.name] = loaded.numThreads;
      await state.ours.setEmbedding(embedding, options.originalSize, options.inputSize);
    } else {
      state.official = new OfficialClient();
      const loaded = await state.official.call({ type: "load", url: variant.decoderUrl, wasmPaths: "/ort/", numThreads });
      threads[variant.name] = loaded.numThreads;
      await state.official.call({ type: "setEmbedding", embedding: embedding.slice(0) });
    }
    states.set(variant.name, state);
  }
  if (options.imageUrl) setUpStage(options.imageUrl, display);
  return { crossOriginIsolated, threads };
}

function setUpStage(imageUrl: string, display: Size): void {
  const [h, w] = display;
  const image = document.getElementById("image") as HTMLImageElement;
  image.src = imageUrl;
  image.style.width = `${w}px`;
  image.style.height = `${h}px`;
  const ours = document.getElementById("ours") as HTMLCanvasElement;
  [ours.width, ours.height] = [w, h]; // drawn at display resolution
  const official = document.getElementById("official") as HTMLCanvasElement;
  [official.width, official.height] = [sizes!.original[1], sizes!.original[0]]; // the demo: full resolution
  for (const canvas of [ours, official]) Object.assign(canvas.style, { width: `${w}px`, height: `${h}px` });
  displayUpsampler = new MaskUpsampler(sizes!.input, sizes!.original, display);
  overlay = new ImageData(w, h);
  document.getElementById("stage")!.addEventListener("click", (event) => void onClick(event));
}

async function onClick(event: MouseEvent): Promise<void> {
  const t0 = event.timeStamp;
  if (armed === null || sizes === null) return;
  const { variant: name, label, fresh } = armed;
  armed = null;
  const state = states.get(name)!;
  const scale = sizes.original[1] / sizes.display[1];
  if (fresh) {
    state.points = [];
    state.previous = undefined;
  }
  state.points.push({ x: event.offsetX * scale, y: event.offsetY * scale, label });
  const prompt: Prompt = { points: state.points, maskInput: state.previous };
  if (state.ours) {
    const result = await state.ours.decode(prompt);
    const logits = tokenLogits(result.lowRes, bestToken(result.iou, state.points.length === 1));
    state.previous = logits;
    displayUpsampler!.paint(logits, new Uint32Array(overlay!.data.buffer), COLOR);
    (document.getElementById("ours") as HTMLCanvasElement).getContext("2d")!.putImageData(overlay!, 0, 0);
    state.decodeMs.push(result.ms);
  } else {
    const graph = buildPrompt(prompt, sizes.original, sizes.input);
    const maskInput = state.previous ? new Float32Array(state.previous) : undefined;
    const result = await state.official!.call(
      { type: "decode", coords: graph.pointCoords, labels: graph.pointLabels, maskInput, originalSize: sizes.original },
      maskInput ? [maskInput.buffer] : [],
    );
    state.previous = result.lowRes;
    const [h, w] = sizes.original;
    const image = new ImageData(w, h); // the demo's arrayToImageData: threshold every full-res logit
    const pixels = new Uint32Array(image.data.buffer);
    const packed = ((COLOR[3] << 24) | (COLOR[2] << 16) | (COLOR[1] << 8) | COLOR[0]) >>> 0;
    const masks: Float32Array = result.masks;
    for (let i = 0; i < masks.length; i++) if (masks[i] > 0) pixels[i] = packed;
    (document.getElementById("official") as HTMLCanvasElement).getContext("2d")!.putImageData(image, 0, 0);
    state.decodeMs.push(result.ms);
  }
  requestAnimationFrame(() => {
    state.latencies.push(performance.now() - t0);
    measured++;
  });
}

async function decode(variant: string, prompt: Prompt): Promise<Record<string, unknown>> {
  const state = states.get(variant)!;
  const result = await state.ours!.decode({ ...prompt, maskInput: prompt.maskInput ? new Float32Array(prompt.maskInput) : undefined });
  lastLowRes = result.lowRes;
  return { lowRes: f32ToBase64(result.lowRes), iou: Array.from(result.iou), ms: result.ms };
}

function upsample(token: number): string {
  const upsampler = new MaskUpsampler(sizes!.input, sizes!.original);
  return toBase64(upsampler.upsample(tokenLogits(lastLowRes!, token)));
}

/**
 * Latest-wins scheduling as the annotator triggers it: three hover previews, a click, a last hover,
 * all issued at once. Returns each call's outcome: "done", "superseded" or "error: ...".
 */
function burst(variant: string, point: Point): Promise<string[]> {
  const client = states.get(variant)!.ours!;
  const prompt: Prompt = { points: [point] };
  const calls = [
    client.decode(prompt, { hover: true }),
    client.decode(prompt, { hover: true }),
    client.decode(prompt, { hover: true }),
    client.decode(prompt),
    client.decode(prompt, { hover: true }),
  ];
  return Promise.all(
    calls.map((call) => call.then(() => "done", (error) => (error instanceof DecodeSuperseded ? "superseded" : `error: ${error}`))),
  );
}

function maskInputFromBase64(text: string): Float32Array {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

(window as any).h7 = {
  init,
  decode: (variant: string, prompt: Prompt & { maskInputBase64?: string }) =>
    decode(variant, { ...prompt, maskInput: prompt.maskInputBase64 ? maskInputFromBase64(prompt.maskInputBase64) : undefined }),
  upsample,
  burst,
  arm: (variant: string, label: 0 | 1, fresh: boolean) => {
    armed = { variant, label, fresh };
  },
  measured: () => measured,
  results: () =>
    Object.fromEntries([...states].map(([name, s]) => [name, { latencies: s.latencies, decodeMs: s.decodeMs }])),
};
