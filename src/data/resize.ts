/**
 * Bilinear resize of channels-last images with half-pixel centers and no antialiasing: the
 * semantics of `tf.image.resize(..., 'bilinear')` in TF 2 (Keras' `image_dataset_from_directory`,
 * `Resizing`) and of `tf.image.resizeBilinear(x, size, false, true)` in tfjs (a test checks they
 * agree). Pure, so a dataset's values do not depend on the engine a stage runs on.
 */
export function resizeBilinear(src: ArrayLike<number>, h: number, w: number, c: number, outH: number, outW: number, out = new Float32Array(outH * outW * c), at = 0): Float32Array {
  const rows = axisTaps(h, outH);
  const cols = axisTaps(w, outW);
  for (let y = 0; y < outH; y++) {
    const y0 = rows.lo[y] * w;
    const y1 = rows.hi[y] * w;
    const fy = rows.frac[y];
    for (let x = 0; x < outW; x++) {
      const x0 = cols.lo[x];
      const x1 = cols.hi[x];
      const fx = cols.frac[x];
      const o = at + (y * outW + x) * c;
      for (let k = 0; k < c; k++) {
        const tl = src[(y0 + x0) * c + k];
        const tr = src[(y0 + x1) * c + k];
        const bl = src[(y1 + x0) * c + k];
        const br = src[(y1 + x1) * c + k];
        const top = tl + (tr - tl) * fx;
        const bottom = bl + (br - bl) * fx;
        out[o + k] = top + (bottom - top) * fy;
      }
    }
  }
  return out;
}

/** For each output index along one axis: the two source indices it blends and the weight of the second. */
function axisTaps(n: number, outN: number): { lo: Int32Array; hi: Int32Array; frac: Float64Array } {
  const lo = new Int32Array(outN);
  const hi = new Int32Array(outN);
  const frac = new Float64Array(outN);
  const ratio = n / outN;
  for (let i = 0; i < outN; i++) {
    const s = (i + 0.5) * ratio - 0.5;
    const f = Math.floor(s);
    lo[i] = Math.max(0, f);
    hi[i] = Math.min(n - 1, Math.ceil(s));
    frac[i] = s - f;
  }
  return { lo, hi, frac };
}
