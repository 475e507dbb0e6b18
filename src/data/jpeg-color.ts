/**
 * libjpeg's colour reconstruction of a YCbCr JPEG, for the planes jpeg-js decodes.
 *
 * jpeg-js repeats each chroma sample of a subsampled JPEG (4:2:0, 4:2:2: nearly every photo) and
 * truncates its float YCbCr -> RGB conversion, while libjpeg(-turbo) — what PIL (torchvision's
 * ImageFolder), TensorFlow's decode_jpeg and OpenCV use — interpolates chroma ("fancy upsampling",
 * a triangle filter) and converts with rounded fixed-point tables. On smooth colour photos the two
 * differed by 4.5 levels on average (31 at most); here jpeg-js decodes the planes (Y, Cb, Cr, with
 * colorTransform off) and this module upsamples and converts them as libjpeg-turbo 2.x does
 * (jdsample.c h2v1 / h1v2 / h2v2 fancy upsampling, jdcolor.c ycc_rgb_convert), so a model sees the
 * pixels its training pipeline saw (up to the IDCT's last-bit rounding).
 */

/** Sampling factors of a baseline/progressive JPEG's components and whether they are YCbCr. */
export interface JpegLayout {
  /** [h, v] per component, in frame order. */
  sampling: Array<[number, number]>;
  /** An Adobe APP14 marker with transform 0: the three components are RGB, not YCbCr. */
  rgb: boolean;
}

const isSof = (m: number): boolean => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;

/** Reads the frame header (and an Adobe marker) before the first scan; undefined when there is none. */
export function jpegLayout(b: Uint8Array): JpegLayout | undefined {
  let rgb = false;
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return undefined;
    const m = b[i + 1];
    if (m === 0xff) {
      i++;
      continue;
    }
    if (m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      i += 2;
      continue;
    }
    if (m === 0xd9 || m === 0xda) return undefined;
    const len = (b[i + 2] << 8) | b[i + 3];
    const seg = b.subarray(i + 4, i + 2 + len);
    if (m === 0xee && seg.length >= 12 && String.fromCharCode(...seg.subarray(0, 5)) === 'Adobe') rgb = seg[11] === 0;
    if (isSof(m)) {
      const n = seg[5];
      const sampling: Array<[number, number]> = [];
      for (let c = 0; c < n && 6 + c * 3 + 1 < seg.length; c++) sampling.push([seg[7 + c * 3] >> 4, seg[7 + c * 3] & 15]);
      return { sampling, rgb };
    }
    i += 2 + len;
  }
  return undefined;
}

/** libjpeg's YCbCr -> RGB tables (jdcolor.c build_ycc_rgb_table, SCALEBITS 16). */
const TABLES = (() => {
  const FIX = (x: number) => Math.floor(x * 65536 + 0.5);
  const HALF = 1 << 15;
  const crR = new Int32Array(256);
  const cbB = new Int32Array(256);
  const crG = new Int32Array(256);
  const cbG = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    const x = i - 128;
    crR[i] = (FIX(1.402) * x + HALF) >> 16;
    cbB[i] = (FIX(1.772) * x + HALF) >> 16;
    crG[i] = -FIX(0.71414) * x;
    cbG[i] = -FIX(0.34414) * x + HALF;
  }
  return { crR, cbB, crG, cbG };
})();

const clamp8 = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : v);

/** A chroma plane at its own resolution (cw x ch) upsampled by (fx, fy) to w x h as libjpeg-turbo does. */
export function fancyUpsample(p: Uint8Array, cw: number, ch: number, fx: number, fy: number, w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h);
  const at = (x: number, y: number) => p[Math.min(y, ch - 1) * cw + Math.min(x, cw - 1)];
  const put = (x: number, y: number, v: number) => {
    if (x < w && y < h) out[y * w + x] = v;
  };
  // libjpeg-turbo repeats samples (no interpolation) for horizontal 2x of a plane at most 2 samples wide.
  if (fx === 2 && cw <= 2) {
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = at(x >> 1, Math.floor(y / fy));
    return out;
  }
  for (let y = 0; y < ch; y++) {
    for (let dy = 0; dy < fy; dy++) {
      const oy = y * fy + dy;
      // h?v2: each output row mixes its input row (x3) with the nearer neighbour row (edges repeat).
      const near = fy === 2 ? Math.max(0, Math.min(ch - 1, dy === 0 ? y - 1 : y + 1)) : y;
      const col = (x: number) => (fy === 2 ? at(x, y) * 3 + at(x, near) : at(x, y));
      for (let x = 0; x < cw; x++) {
        if (fx === 1 && fy === 1) put(x, oy, at(x, y));
        else if (fx === 1) put(x, oy, (col(x) + (dy === 0 ? 1 : 2)) >> 2);
        else if (fy === 1) {
          const v = at(x, y);
          put(2 * x, oy, x === 0 || cw === 1 ? v : (v * 3 + at(x - 1, y) + 1) >> 2);
          put(2 * x + 1, oy, x === cw - 1 ? v : (v * 3 + at(x + 1, y) + 2) >> 2);
        } else {
          const c = col(x);
          put(2 * x, oy, x === 0 || cw === 1 ? (c * 4 + 8) >> 4 : (c * 3 + col(x - 1) + 8) >> 4);
          put(2 * x + 1, oy, x === cw - 1 ? (c * 4 + 7) >> 4 : (c * 3 + col(x + 1) + 7) >> 4);
        }
      }
    }
  }
  return out;
}

/**
 * RGBA pixels from jpeg-js's colorTransform-off output of a three-component JPEG (Y, Cb, Cr repeated
 * per pixel in the R, G, B bytes), rebuilt as libjpeg does; undefined for sampling it does not
 * interpolate (then jpeg-js's own conversion is used).
 */
export function libjpegColor(planes: Uint8Array, w: number, h: number, layout: JpegLayout): Uint8Array | undefined {
  const [[yh, yv], cb, cr] = layout.sampling;
  if (layout.sampling.length !== 3 || cb[0] !== cr[0] || cb[1] !== cr[1]) return undefined;
  const fx = yh / cb[0];
  const fy = yv / cb[1];
  if (![1, 2].includes(fx) || ![1, 2].includes(fy)) return undefined;
  const cw = Math.ceil(w / fx);
  const ch = Math.ceil(h / fy);
  // jpeg-js repeats chroma sample (x, y) over pixels (x*fx .. , y*fy ..): read it back at its first pixel.
  const plane = (k: number) => {
    const p = new Uint8Array(cw * ch);
    for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) p[y * cw + x] = planes[((y * fy) * w + x * fx) * 4 + k];
    return p;
  };
  const cbUp = fancyUpsample(plane(1), cw, ch, fx, fy, w, h);
  const crUp = fancyUpsample(plane(2), cw, ch, fx, fy, w, h);
  const out = new Uint8Array(w * h * 4);
  const { crR, cbB, crG, cbG } = TABLES;
  for (let i = 0; i < w * h; i++) {
    const Y = planes[i * 4];
    const b = cbUp[i];
    const r = crUp[i];
    if (layout.rgb) {
      out.set([Y, b, r, 255], i * 4);
      continue;
    }
    out[i * 4] = clamp8(Y + crR[r]);
    out[i * 4 + 1] = clamp8(Y + ((cbG[b] + crG[r]) >> 16));
    out[i * 4 + 2] = clamp8(Y + cbB[b]);
    out[i * 4 + 3] = 255;
  }
  return out;
}
