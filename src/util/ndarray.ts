/** Row-major n-d array helpers over flat typed arrays. */

/** Row-major strides of `dims`. */
export function strides(dims: number[]): number[] {
  const s = new Array(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

/** out[..] = a[perm(..)]: numpy.transpose(a, perm). */
export function transpose<T extends Float32Array | Float64Array>(data: T, dims: number[], perm: number[]): { data: T; dims: number[] } {
  const outDims = perm.map((p) => dims[p]);
  const inStr = strides(dims);
  const outStr = strides(outDims);
  const out = new (data.constructor as { new (n: number): T })(data.length);
  const idx = new Array(dims.length).fill(0);
  for (let o = 0; o < data.length; o++) {
    let rem = o;
    let src = 0;
    for (let k = 0; k < outDims.length; k++) {
      idx[k] = Math.floor(rem / outStr[k]);
      rem -= idx[k] * outStr[k];
      src += idx[k] * inStr[perm[k]];
    }
    out[o] = data[src];
  }
  return { data: out, dims: outDims };
}
