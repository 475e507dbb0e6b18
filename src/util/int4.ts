/**
 * 4-bit integers packed two per byte, the first element in the low nibble: the layout of TFLite's INT4
 * tensors (tensor_utils PackInt8IntoDenseInt4) and of ONNX's INT4 raw_data. An odd count leaves the last
 * high nibble 0.
 */
export function packInt4(q: Int8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(q.length / 2));
  for (let i = 0; i < q.length; i++) {
    if (q[i] < -8 || q[i] > 7) throw new RangeError(`value ${q[i]} at ${i} does not fit int4`);
    out[i >> 1] |= (q[i] & 0x0f) << ((i & 1) * 4);
  }
  return out;
}

/** The inverse of packInt4 for `n` values (sign-extended). */
export function unpackInt4(packed: Uint8Array, n: number): Int8Array {
  const out = new Int8Array(n);
  for (let i = 0; i < n; i++) {
    const nib = (packed[i >> 1] >> ((i & 1) * 4)) & 0x0f;
    out[i] = nib >= 8 ? nib - 16 : nib;
  }
  return out;
}
