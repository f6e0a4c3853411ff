/**
 * float16 -> float32 conversion of the image embedding, once per image.
 *
 * A 65536-entry lookup table (256 KiB, built on first use) turns the 1M-element conversion into one
 * table read per element, a few milliseconds, with no dependence on `Float16Array` support.
 */

let table: Float32Array | null = null;

function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero and subnormals
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

function lookupTable(): Float32Array {
  if (table === null) {
    table = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) table[bits] = halfToFloat(bits);
  }
  return table;
}

/**
 * Converts little-endian float16 data to float32.
 *
 * @param buffer float16 values, little-endian (the byte order of every platform browsers run on).
 * @returns a new Float32Array with one element per float16 value.
 */
export function float16ToFloat32(buffer: ArrayBuffer): Float32Array {
  if (buffer.byteLength % 2 !== 0) throw new Error(`float16 buffer has an odd length (${buffer.byteLength} bytes)`);
  const halves = new Uint16Array(buffer);
  const lut = lookupTable();
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = lut[halves[i]];
  return out;
}
