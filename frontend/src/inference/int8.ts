/**
 * Per-channel int8 image embeddings -> float32, once per image (the browser's half of
 * backend/embeddings/service.py `encode_int8`): half the bytes of float16 on the wire.
 *
 * Layout (little-endian): `channels` float32 scales, then `channels` x `plane` int8 values in C
 * order; value = q * scale of its channel (symmetric: q in -127..127, scale = max |x| / 127).
 * No imports: the encoding benchmark loads this module into a bare page as it is compiled.
 */

export const INT8_CHANNELS = 256;

/**
 * @param buffer the `int8-per-channel` body of the embedding endpoint.
 * @returns a new Float32Array of `channels * plane` values (1x256x64x64 for SAM).
 */
export function int8ToFloat32(buffer: ArrayBuffer, channels = INT8_CHANNELS): Float32Array {
  const values = buffer.byteLength - 4 * channels;
  if (values <= 0 || values % channels !== 0) {
    throw new Error(`int8 embedding of ${buffer.byteLength} bytes does not hold ${channels} scales and channels`);
  }
  const plane = values / channels;
  const scales = new Float32Array(buffer, 0, channels);
  const q = new Int8Array(buffer, 4 * channels);
  const out = new Float32Array(values);
  for (let c = 0; c < channels; c++) {
    const scale = scales[c];
    const start = c * plane;
    const end = start + plane;
    for (let i = start; i < end; i++) out[i] = q[i] * scale;
  }
  return out;
}
