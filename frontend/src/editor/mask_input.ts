/**
 * An existing mask as SAM's mask input, so that a click refines it instead of starting over: the
 * review page's fix of an auto mask and the annotate page's correction of a saved one. Until the
 * first click is decoded the working mask is that BASE mask with the strokes applied (`composeMask`
 * in view.ts); the first click is decoded with it (strokes included) as the mask input.
 */
import type { Size } from "./masks";

const MODEL = 1024;
const LOW = 256;
/**
 * Logit written for "in the mask" (and its negative for "out"): the magnitude SAM's own confident
 * low-res logits have, so the decoder takes the mask as a strong prior without saturating.
 */
export const MASK_LOGIT = 10;

/** SAM's encoder input size for an image: longest side 1024, the other scaled and rounded half up. */
export function inputSizeOf([height, width]: Size): Size {
  const scale = MODEL / Math.max(height, width);
  // Never 0, like model_server/transforms.py: a thin strip stored before uploads refused it keeps one row.
  return [Math.max(Math.floor(height * scale + 0.5), 1), Math.max(Math.floor(width * scale + 0.5), 1)];
}

/**
 * A binary mask as SAM mask-input logits.
 *
 * @param mask uint8 [h, w] row-major in the ORIGINAL image frame (`originalSize` = [h, w]).
 * @param inputSize [h, w] of the image resized to longest side 1024.
 * @returns float32 [256 * 256] over the padded 1024x1024 model frame (cell (r, c) covers model
 *   pixels 4r..4r+3 x 4c..4c+3, sampled at its centre): +MASK_LOGIT inside the mask, -MASK_LOGIT
 *   outside it and in the padding.
 */
export function maskLogits(mask: Uint8Array, originalSize: Size, inputSize: Size): Float32Array {
  const [h, w] = originalSize;
  const [inH, inW] = inputSize;
  if (mask.length !== h * w) throw new Error(`mask has ${mask.length} pixels, expected ${h}x${w}`);
  const logits = new Float32Array(LOW * LOW).fill(-MASK_LOGIT);
  const cell = MODEL / LOW;
  for (let r = 0; r < LOW; r++) {
    const y = (r + 0.5) * cell;
    if (y >= inH) break;
    const row = Math.min(h - 1, Math.floor((y * h) / inH)) * w;
    for (let c = 0; c < LOW; c++) {
      const x = (c + 0.5) * cell;
      if (x >= inW) break;
      if (mask[row + Math.min(w - 1, Math.floor((x * w) / inW))]) logits[r * LOW + c] = MASK_LOGIT;
    }
  }
  return logits;
}
