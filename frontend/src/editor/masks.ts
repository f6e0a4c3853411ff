/**
 * Pixel work on accepted masks and brush strokes, kept out of the page so it stays cheap and
 * testable. Decoder logits are upsampled by inference/upsample.ts (SAM's exact postprocessing).
 */

export type Size = [height: number, width: number];

/** Nearest-neighbour resampling of a binary mask (for drawing saved full-resolution masks on screen). */
export function resampleMask(mask: Uint8Array, size: Size, outH: number, outW: number): Uint8Array {
  const [h, w] = size;
  const out = new Uint8Array(outH * outW);
  const cols = new Int32Array(outW);
  for (let c = 0; c < outW; c++) cols[c] = Math.min(w - 1, Math.floor(((c + 0.5) * w) / outW));
  for (let r = 0; r < outH; r++) {
    const src = Math.min(h - 1, Math.floor(((r + 0.5) * h) / outH)) * w;
    const dst = r * outW;
    for (let c = 0; c < outW; c++) out[dst + c] = mask[src + cols[c]];
  }
  return out;
}

export type Rgb = [number, number, number];

/** Distinct colours for accepted masks: hues spread by the golden angle. */
export function maskColour(index: number): Rgb {
  const hue = (index * 137.508) % 360;
  const s = 0.75;
  const l = 0.55;
  const k = (n: number) => (n + hue / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => Math.round(255 * (l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1))));
  return [f(0), f(8), f(4)];
}

/**
 * Writes a mask into RGBA pixels: a translucent fill, and an opaque outline on its boundary.
 * `dashed` draws only every other 4-pixel stretch of the outline and a fainter fill, which marks
 * masks that a detector or the automatic generator pre-filled.
 */
export function paintMask(
  pixels: Uint8ClampedArray,
  mask: Uint8Array,
  height: number,
  width: number,
  colour: Rgb,
  options: { fillAlpha: number; dashed: boolean },
): void {
  const [red, green, blue] = colour;
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width; c++) {
      const i = r * width + c;
      if (!mask[i]) continue;
      const edge =
        r === 0 || c === 0 || r === height - 1 || c === width - 1 ||
        !mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width];
      const drawEdge = edge && (!options.dashed || ((r + c) >> 2) % 2 === 0);
      const alpha = drawEdge ? 255 : options.fillAlpha;
      if (alpha === 0) continue;
      const p = i * 4;
      pixels[p] = red;
      pixels[p + 1] = green;
      pixels[p + 2] = blue;
      pixels[p + 3] = Math.max(pixels[p + 3], alpha);
    }
  }
}

/** A brush (sets pixels) or eraser (clears them) stroke: points and radius in ORIGINAL image pixels. */
export interface StrokeLike {
  mode: "brush" | "eraser";
  radius: number;
  points: readonly (readonly [number, number])[];
}

/**
 * Applies strokes to a mask in place, on any grid over the original image (`scale` = grid px per
 * original px): discs stamped along each segment at most half a radius apart.
 * `mask` is uint8 [height, width], row-major.
 */
export function applyStrokes(mask: Uint8Array, height: number, width: number, strokes: readonly StrokeLike[], scale: number): void {
  for (const stroke of strokes) {
    const value = stroke.mode === "brush" ? 1 : 0;
    const r = Math.max(0.5, stroke.radius * scale);
    const stamp = (cx: number, cy: number) => {
      const y0 = Math.max(0, Math.floor(cy - r));
      const y1 = Math.min(height - 1, Math.ceil(cy + r));
      for (let y = y0; y <= y1; y++) {
        const dy = y + 0.5 - cy;
        const half = Math.sqrt(Math.max(0, r * r - dy * dy));
        const x0 = Math.max(0, Math.ceil(cx - half - 0.5));
        const x1 = Math.min(width - 1, Math.floor(cx + half - 0.5));
        if (x1 >= x0) mask.fill(value, y * width + x0, y * width + x1 + 1);
      }
    };
    const pts = stroke.points.map(([x, y]) => [x * scale, y * scale] as const);
    pts.forEach(([x, y], i) => {
      if (i === 0) return stamp(x, y);
      const [px, py] = pts[i - 1];
      const steps = Math.max(1, Math.ceil(Math.hypot(x - px, y - py) / (r / 2)));
      for (let s = 1; s <= steps; s++) stamp(px + ((x - px) * s) / steps, py + ((y - py) * s) / steps);
    });
  }
}
