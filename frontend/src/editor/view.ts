/**
 * The editor's canvases, stacked over one another in the stage element:
 *   image   the picture, fitted to the stage;
 *   coverage "Show uncovered": a tint on every pixel no live mask covers (hidden while off);
 *   masks   accepted masks (distinct colours) and pre-filled ones (dashed outline, faint fill);
 *   overlay the working mask, or the hover preview (id "overlay", checked by the browser test);
 *   ui      clicks, the box being dragged, the brush outline; it receives the pointer events.
 * All canvases share one "display" grid: the original image scaled by `scale`; everything drawn is
 * computed on that grid, so a preview costs display pixels, not original ones.
 */
import { decodeRle } from "./rle";
import { applyStrokes, maskColour, paintMask, resampleMask, type Rgb, type Size } from "./masks";
import { upsampleMask } from "../inference/upsample";
import type { Point } from "../api/types";
import type { Stroke, WorkingMask } from "./store";

export interface SavedLayer {
  key: string;
  /** Full-resolution mask, uint8 [h, w] row-major, or its RLE to decode lazily. */
  mask: () => Uint8Array;
  colourIndex: number;
  prefilled: boolean;
}

const WORKING_COLOUR: Rgb = [30, 144, 255];
/** RGBA of the tint on uncovered pixels. */
const UNCOVERED_TINT = [255, 0, 170, 110] as const;

export class EditorView {
  readonly image = this.canvas("image");
  readonly coverage = this.canvas("coverage");
  readonly masks = this.canvas("masks");
  readonly overlay = this.canvas("overlay");
  readonly ui = this.canvas("ui");
  scale = 1;
  private displayCache = new Map<string, Uint8Array>();
  /** What the coverage canvas was computed for (display size and layer keys), and its uncovered share. */
  private coverageKey = "";
  private uncovered = 1;

  constructor(
    readonly stage: HTMLElement,
    readonly originalSize: Size,
    readonly inputSize: Size,
  ) {
    this.coverage.hidden = true;
    stage.append(this.image, this.coverage, this.masks, this.overlay, this.ui);
  }

  private canvas(id: string): HTMLCanvasElement {
    const el = document.createElement("canvas");
    el.id = id;
    return el;
  }

  get displaySize(): Size {
    return [Math.max(1, Math.round(this.originalSize[0] * this.scale)), Math.max(1, Math.round(this.originalSize[1] * this.scale))];
  }

  /** Fits the image into the stage (never enlarging past 2x) and centres it. */
  fit(): void {
    const [h, w] = this.originalSize;
    const box = this.stage.getBoundingClientRect();
    this.scale = Math.min(box.width / w, box.height / h, 2);
    const [dh, dw] = this.displaySize;
    const left = Math.floor((box.width - dw) / 2);
    const top = Math.floor((box.height - dh) / 2);
    for (const el of [this.image, this.coverage, this.masks, this.overlay, this.ui]) {
      el.width = dw;
      el.height = dh;
      el.style.left = `${left}px`;
      el.style.top = `${top}px`;
    }
    this.displayCache.clear();
    this.coverageKey = ""; // resizing cleared the canvas
  }

  /** Client (CSS) coordinates -> original image pixels, clamped inside the image. */
  toImage(clientX: number, clientY: number): [number, number] {
    const rect = this.ui.getBoundingClientRect();
    const x = ((clientX - rect.left) / rect.width) * this.originalSize[1];
    const y = ((clientY - rect.top) / rect.height) * this.originalSize[0];
    return [Math.min(Math.max(x, 0), this.originalSize[1] - 0.5), Math.min(Math.max(y, 0), this.originalSize[0] - 0.5)];
  }

  drawImage(bitmap: ImageBitmap): void {
    const ctx = this.image.getContext("2d")!;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(bitmap, 0, 0, this.image.width, this.image.height);
  }

  drawSaved(layers: SavedLayer[]): void {
    const [dh, dw] = this.displaySize;
    const ctx = this.masks.getContext("2d")!;
    const pixels = ctx.createImageData(dw, dh);
    for (const layer of layers) {
      const display = this.display(layer);
      paintMask(pixels.data, display, dh, dw, maskColour(layer.colourIndex), {
        fillAlpha: layer.prefilled ? 40 : 90,
        dashed: layer.prefilled,
      });
    }
    ctx.putImageData(pixels, 0, 0);
  }

  /** A layer's mask on the display grid (resampled once per layer and size). */
  private display(layer: SavedLayer): Uint8Array {
    let display = this.displayCache.get(layer.key);
    if (!display) {
      const [dh, dw] = this.displaySize;
      display = resampleMask(layer.mask(), this.originalSize, dh, dw);
      this.displayCache.set(layer.key, display);
    }
    return display;
  }

  /**
   * The share of the image that none of `layers` covers (on the display grid), and on the coverage
   * canvas a tint over those pixels, shown when `show`. The union is recomputed only when the layers
   * (their keys: a mask's pixels never change under its key) or the display size change.
   */
  drawCoverage(layers: SavedLayer[], show: boolean): number {
    const [dh, dw] = this.displaySize;
    const key = `${dh}x${dw}:${layers.map((layer) => layer.key).join(",")}`;
    if (key !== this.coverageKey) {
      this.coverageKey = key;
      const covered = new Uint8Array(dh * dw);
      for (const layer of layers) {
        const display = this.display(layer);
        for (let i = 0; i < covered.length; i++) covered[i] |= display[i];
      }
      const ctx = this.coverage.getContext("2d")!;
      const pixels = ctx.createImageData(dw, dh);
      const data = pixels.data;
      const [red, green, blue, alpha] = UNCOVERED_TINT;
      let uncovered = 0;
      for (let i = 0; i < covered.length; i++) {
        if (covered[i]) continue;
        uncovered++;
        const p = i * 4;
        data[p] = red;
        data[p + 1] = green;
        data[p + 2] = blue;
        data[p + 3] = alpha;
      }
      ctx.putImageData(pixels, 0, 0);
      this.uncovered = uncovered / covered.length;
    }
    this.coverage.hidden = !show;
    return this.uncovered;
  }

  /**
   * The working mask (or the hover preview, fainter) on the display grid; `base` is the mask it
   * starts from when it corrects or fixes an existing one (see `composeMask`).
   */
  drawWorking(state: WorkingMask | null, preview = false, base: Uint8Array | null = null): void {
    const ctx = this.overlay.getContext("2d")!;
    const [dh, dw] = this.displaySize;
    if (state === null) {
      ctx.clearRect(0, 0, dw, dh);
      return;
    }
    const mask = composeMask(state, this.originalSize, this.inputSize, dh, dw, base);
    const pixels = ctx.createImageData(dw, dh);
    paintMask(pixels.data, mask, dh, dw, WORKING_COLOUR, { fillAlpha: preview ? 70 : 120, dashed: false });
    ctx.putImageData(pixels, 0, 0);
  }

  /** Clicks (green fg, red bg), the box, the box being dragged and the brush outline. */
  drawUi(points: readonly Point[], box: readonly number[] | null, brush: { x: number; y: number; radius: number } | null): void {
    const ctx = this.ui.getContext("2d")!;
    ctx.clearRect(0, 0, this.ui.width, this.ui.height);
    const s = this.scale;
    if (box) {
      ctx.strokeStyle = "#facc15";
      ctx.lineWidth = 2;
      ctx.strokeRect(box[0] * s, box[1] * s, (box[2] - box[0]) * s, (box[3] - box[1]) * s);
    }
    for (const p of points) {
      ctx.beginPath();
      ctx.arc(p.x * s, p.y * s, 5, 0, 2 * Math.PI);
      ctx.fillStyle = p.label === 1 ? "#22c55e" : "#ef4444";
      ctx.fill();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "white";
      ctx.stroke();
    }
    if (brush) {
      ctx.beginPath();
      ctx.arc(brush.x * s, brush.y * s, brush.radius * s, 0, 2 * Math.PI);
      ctx.strokeStyle = "white";
      ctx.setLineDash([4, 3]);
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }
}

/**
 * The working mask on a grid of [outH, outW] over the original image: the chosen candidate's logits
 * upsampled and thresholded, then the brush and eraser strokes. Used for the screen and, at the
 * original size, for the mask that is saved.
 *
 * `base` (uint8 [h, w], original frame) is the existing mask a correction or a review fix starts
 * from: until a click is decoded the working mask is the base, resampled, with the strokes applied.
 */
export function composeMask(
  state: WorkingMask,
  originalSize: Size,
  inputSize: Size,
  outH: number,
  outW: number,
  base: Uint8Array | null = null,
): Uint8Array {
  const [h, w] = originalSize;
  let mask: Uint8Array;
  if (state.decoded) mask = upsampleMask(state.decoded.lowRes, state.candidate, inputSize, originalSize, [outH, outW]);
  else if (base === null) mask = new Uint8Array(outH * outW);
  else if (outH === h && outW === w) mask = base.slice();
  else mask = resampleMask(base, originalSize, outH, outW);
  applyStrokes(mask, outH, outW, state.strokes as Stroke[], outW / w);
  return mask;
}

export function rleMask(rle: { size: [number, number]; counts: string }): () => Uint8Array {
  let cached: Uint8Array | null = null;
  return () => (cached ??= decodeRle(rle));
}
