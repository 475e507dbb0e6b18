/** Row-major n-d array helpers over flat typed arrays. */

/** Row-major strides of `dims`. */
export function strides(dims: number[]): number[] {
  const s = new Array(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

/** out[..] = a[perm(..)]: numpy.transpose(a, perm). Walks the output in order with an odometer over its axes. */
export function transpose<T extends Float32Array | Float64Array>(data: T, dims: number[], perm: number[]): { data: T; dims: number[] } {
  const outDims = perm.map((p) => dims[p]);
  const inStr = strides(dims);
  const step = perm.map((p) => inStr[p]); // input stride of each output axis
  const out = new (data.constructor as { new (n: number): T })(data.length);
  const r = outDims.length;
  if (r === 0 || data.length === 0) {
    out.set(data);
    return { data: out, dims: outDims };
  }
  const idx = new Array(r).fill(0);
  const last = r - 1;
  const n = outDims[last];
  const s = step[last];
  let base = 0;
  for (let o = 0; o < data.length; o += n) {
    for (let i = 0, src = base; i < n; i++, src += s) out[o + i] = data[src];
    // carry into the outer axes
    for (let k = last - 1; k >= 0; k--) {
      idx[k]++;
      base += step[k];
      if (idx[k] < outDims[k]) break;
      base -= step[k] * outDims[k];
      idx[k] = 0;
    }
  }
  return { data: out, dims: outDims };
}

/** The parts one after another in one array (per-batch outputs of a runtime joined into one). */
export function concatFloat32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
