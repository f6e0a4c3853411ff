/**
 * Low-res logits (256x256) -> a binary mask at the original image size, or at display size.
 *
 * SAM's postprocessing is: bilinear (align_corners=False) to 1024x1024, crop to the input size (the
 * image resized to longest side 1024), bilinear to the original size, threshold at 0. Both resizes
 * are separable and linear, so per output row and per output column the result is a fixed weighted
 * sum of at most four low-res rows/columns. `MaskUpsampler` precomputes those (index, weight) tables
 * once per (image, output size) and then needs one pass over 256 columns per output row plus four
 * multiply-adds per output pixel: no 1024x1024 intermediate, no full-resolution work unless asked.
 *
 * Drawing at display resolution: pass `outSize` smaller than the original; output pixel (u, v) then
 * takes the exact value of the original-resolution mask at the original pixel under its centre
 * (nearest sampling of the full-res mask), which is what a browser shows when it scales that mask.
 */

import type { Size } from "./protocol";

const LOW = 256;
const MODEL = 1024;
const TAPS = 4;

/** PyTorch's bilinear source coordinate (align_corners=False): index and weight of the upper neighbour. */
function source(dst: number, inLen: number, outLen: number): [number, number, number] {
  const s = Math.max(0, ((dst + 0.5) * inLen) / outLen - 0.5);
  const i0 = Math.min(Math.floor(s), inLen - 1);
  const i1 = Math.min(i0 + 1, inLen - 1);
  return [i0, i1, s - i0];
}

/**
 * Per output index along one axis: four low-res indices and weights that reproduce
 * low-res -> 1024 -> crop(inputLen) -> originalLen, sampled at the original pixel under each output pixel.
 */
function axisTaps(inputLen: number, originalLen: number, outLen: number): { index: Int32Array; weight: Float32Array } {
  const index = new Int32Array(outLen * TAPS);
  const weight = new Float32Array(outLen * TAPS);
  for (let u = 0; u < outLen; u++) {
    const o = outLen === originalLen ? u : Math.min(Math.floor(((u + 0.5) * originalLen) / outLen), originalLen - 1);
    const [a0, a1, la] = source(o, inputLen, originalLen); // in the cropped 1024 frame
    const [b00, b01, lb0] = source(a0, LOW, MODEL);
    const [b10, b11, lb1] = source(a1, LOW, MODEL);
    index.set([b00, b01, b10, b11], u * TAPS);
    weight.set([(1 - la) * (1 - lb0), (1 - la) * lb0, la * (1 - lb1), la * lb1], u * TAPS);
  }
  return { index, weight };
}

function checkSize(name: string, size: Size): void {
  if (!(Number.isInteger(size[0]) && Number.isInteger(size[1]) && size[0] > 0 && size[1] > 0)) {
    throw new Error(`${name} must be positive integers [h, w], got ${size}`);
  }
}

/** Upsamples low-res logits of one image to one output size; reuse it for every mask of the image. */
export class MaskUpsampler {
  readonly height: number;
  readonly width: number;
  private readonly rows: { index: Int32Array; weight: Float32Array };
  private readonly cols: { index: Int32Array; weight: Float32Array };
  private readonly rowBuffer: Float32Array;

  /**
   * @param inputSize [h, w] of the image resized to longest side 1024 (at most 1024 each).
   * @param originalSize [h, w] of the original image.
   * @param outSize [h, w] of the wanted mask; defaults to the original size.
   */
  constructor(inputSize: Size, originalSize: Size, outSize: Size = originalSize) {
    checkSize("inputSize", inputSize);
    checkSize("originalSize", originalSize);
    checkSize("outSize", outSize);
    if (inputSize[0] > MODEL || inputSize[1] > MODEL) throw new Error(`inputSize ${inputSize} exceeds ${MODEL}`);
    [this.height, this.width] = outSize;
    this.rows = axisTaps(inputSize[0], originalSize[0], outSize[0]);
    this.cols = axisTaps(inputSize[1], originalSize[1], outSize[1]);
    this.rowBuffer = new Float32Array(LOW);
  }

  /**
   * @param logits 256x256 float32 low-res logits of one mask token (e.g. `tokenLogits(lowRes, k)`).
   * @returns height x width Uint8Array, 1 where the upsampled logit is > 0.
   */
  upsample(logits: Float32Array): Uint8Array {
    const mask = new Uint8Array(this.height * this.width);
    this.run(logits, mask, 1, 0);
    return mask;
  }

  /**
   * Draws the mask straight into RGBA pixels (e.g. `new Uint32Array(imageData.data.buffer)` of a
   * height x width ImageData kept across clicks): `color` inside, transparent outside. One pass, no
   * intermediate mask and no allocation: the drawing path of the annotator's overlay.
   *
   * @param color [r, g, b, a] each 0-255.
   */
  paint(logits: Float32Array, pixels: Uint32Array, color: readonly [number, number, number, number]): void {
    if (pixels.length !== this.height * this.width) throw new Error(`pixels hold ${pixels.length} values; expected ${this.height}x${this.width}`);
    this.run(logits, pixels, packRgba(color), 0);
  }

  private run(logits: Float32Array, out: Uint8Array | Uint32Array, inside: number, outside: number): void {
    if (logits.length !== LOW * LOW) throw new Error(`logits have ${logits.length} values; expected ${LOW * LOW}`);
    const { height, width, rowBuffer: row } = this;
    const { index: ri, weight: rw } = this.rows;
    const { index: ci, weight: cw } = this.cols;
    for (let v = 0; v < height; v++) {
      const t = v * TAPS;
      const r0 = ri[t] * LOW, r1 = ri[t + 1] * LOW, r2 = ri[t + 2] * LOW, r3 = ri[t + 3] * LOW;
      const w0 = rw[t], w1 = rw[t + 1], w2 = rw[t + 2], w3 = rw[t + 3];
      for (let j = 0; j < LOW; j++) {
        row[j] = w0 * logits[r0 + j] + w1 * logits[r1 + j] + w2 * logits[r2 + j] + w3 * logits[r3 + j];
      }
      const base = v * width;
      for (let u = 0, c = 0; u < width; u++, c += TAPS) {
        const value = cw[c] * row[ci[c]] + cw[c + 1] * row[ci[c + 1]] + cw[c + 2] * row[ci[c + 2]] + cw[c + 3] * row[ci[c + 3]];
        out[base + u] = value > 0 ? inside : outside;
      }
    }
  }
}

/** [r, g, b, a] -> one Uint32 pixel of an ImageData (little-endian byte order, as on every browser platform). */
function packRgba([r, g, b, a]: readonly [number, number, number, number]): number {
  return ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

let cached: { key: string; upsampler: MaskUpsampler } | null = null;

/**
 * One-call form of `MaskUpsampler` (its tables are cached for the last sizes used).
 *
 * @param lowRes 4x256x256 (or 256x256) float32 logits from the decoder.
 * @param token mask token to upsample (0 when `lowRes` holds a single mask).
 */
export function upsampleMask(lowRes: Float32Array, token: number, inputSize: Size, originalSize: Size, outSize: Size = originalSize): Uint8Array {
  const key = `${inputSize}|${originalSize}|${outSize}`;
  if (cached === null || cached.key !== key) cached = { key, upsampler: new MaskUpsampler(inputSize, originalSize, outSize) };
  const count = lowRes.length / (LOW * LOW);
  if (!Number.isInteger(token) || token < 0 || token >= count) throw new Error(`token ${token} out of range 0..${count - 1}`);
  return cached.upsampler.upsample(lowRes.subarray(token * LOW * LOW, (token + 1) * LOW * LOW));
}

/**
 * Paints a 0/1 mask into an RGBA ImageData: `color` where 1, transparent elsewhere.
 *
 * @param color [r, g, b, a] each 0-255.
 */
export function maskToImageData(mask: Uint8Array, width: number, height: number, color: readonly [number, number, number, number]): ImageData {
  if (mask.length !== width * height) throw new Error(`mask has ${mask.length} pixels; expected ${width}x${height}`);
  const image = new ImageData(width, height);
  const pixels = new Uint32Array(image.data.buffer);
  const packed = packRgba(color);
  for (let i = 0; i < mask.length; i++) if (mask[i]) pixels[i] = packed;
  return image;
}
