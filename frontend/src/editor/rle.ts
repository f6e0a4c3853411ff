/**
 * COCO run-length encoding, compressed string form, exactly as pycocotools writes it: runs over the
 * mask in COLUMN-MAJOR order (down each column, then the next column), starting with a run of zeros;
 * each run from the third on is stored as the difference to the run two before, written 5 bits per
 * character (+48), bit 0x20 = "more characters follow", sign from bit 0x10 of the last one.
 */
import type { Rle } from "../api/types";

/** Encodes a binary mask: `mask` is uint8 of shape [height, width] in row-major order (1 = on). */
export function encodeRle(mask: Uint8Array, height: number, width: number): Rle {
  if (mask.length !== height * width) throw new Error(`mask has ${mask.length} pixels, expected ${height}x${width}`);
  const runs: number[] = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let i = x; i < mask.length; i += width) {
      const v = mask[i] ? 1 : 0;
      if (v !== current) {
        runs.push(run);
        run = 0;
        current = v;
      }
      run++;
    }
  }
  runs.push(run);
  let counts = "";
  for (let i = 0; i < runs.length; i++) {
    let x = i > 2 ? runs[i] - runs[i - 2] : runs[i];
    for (let more = true; more; ) {
      let c = x & 0x1f;
      x >>= 5;
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      counts += String.fromCharCode(c + 48);
    }
  }
  return { size: [height, width], counts };
}

/** Decodes to a uint8 mask of shape [height, width], row-major; throws on a malformed string. */
export function decodeRle(rle: Rle): Uint8Array {
  const [height, width] = rle.size;
  const runs: number[] = [];
  const s = rle.counts;
  for (let p = 0; p < s.length; ) {
    let x = 0;
    let k = 0;
    for (let more = true; more; k++) {
      if (p >= s.length) throw new Error("RLE counts string ends inside a number");
      const c = s.charCodeAt(p++) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      if (!more && c & 0x10) x |= -1 << (5 * (k + 1));
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  const mask = new Uint8Array(height * width);
  let pos = 0;
  let value = 0;
  for (const run of runs) {
    if (run < 0 || pos + run > mask.length) throw new Error("RLE runs do not fit the mask size");
    if (value) {
      for (let j = pos; j < pos + run; j++) mask[(j % height) * width + Math.floor(j / height)] = 1;
    }
    pos += run;
    value ^= 1;
  }
  return mask;
}
