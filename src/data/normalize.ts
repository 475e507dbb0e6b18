/**
 * How stored sample values (bytes of an image, numbers of an IDX file) become model inputs, shared by
 * the `idx` and `images` sources: `value = stored * scale + offset`, then, per channel,
 * `(value - mean) / std`. The default scale maps 8-bit data to 0..1 (1/255), like Keras'
 * `Rescaling(1/255)` and torchvision's `ToTensor()`; `mean`/`std` are in those scaled units, as in
 * torchvision's `Normalize` (e.g. mean 0.2860, std 0.3530 for Fashion-MNIST).
 */
export const normalizeKeys = {
  scale: { type: 'number', description: 'value = stored * scale + offset (default: 1/255 for 8-bit data, so values are in 0..1; else 1)' },
  offset: { type: 'number', description: 'added after scale (default 0); e.g. scale: 0.00784, offset: -1 maps bytes to -1..1' },
  mean: {
    type: ['number', 'array'],
    items: { type: 'number' },
    minItems: 1,
    description: 'subtracted per channel after scale/offset (one number, or one per channel)',
  },
  std: {
    type: ['number', 'array'],
    items: { type: 'number', exclusiveMinimum: 0 },
    exclusiveMinimum: 0,
    minItems: 1,
    description: 'divides per channel after mean (one number, or one per channel)',
  },
} as const;

export interface NormalizeOptions {
  scale?: number;
  offset?: number;
  mean?: number | number[];
  std?: number | number[];
}

/** A per-channel list of `channels` values from a number or list, or why it cannot be one. */
function perChannel(v: number | number[] | undefined, fill: number, channels: number, name: string): number[] | string {
  if (v === undefined) return new Array(channels).fill(fill);
  if (typeof v === 'number') return new Array(channels).fill(v);
  if (v.length === 1) return new Array(channels).fill(v[0]);
  if (v.length !== channels) return `${name} has ${v.length} values but the samples have ${channels} channel${channels === 1 ? '' : 's'}`;
  return v;
}

/** Why `opts` cannot apply to samples with `channels` channels (undefined when they can). */
export function normalizeProblem(opts: NormalizeOptions, channels: number): string | undefined {
  for (const [name, v] of [['mean', opts.mean], ['std', opts.std]] as const) {
    const r = perChannel(v, 0, channels, name);
    if (typeof r === 'string') return r;
  }
  return undefined;
}

/**
 * An affine map per channel, `out = stored * a[c] + b[c]`, folding scale, offset, mean and std into
 * one multiply-add so every source normalises the same way.
 */
export interface ChannelAffine {
  a: Float64Array;
  b: Float64Array;
}

export function channelAffine(opts: NormalizeOptions, channels: number, defaultScale: number): ChannelAffine {
  const mean = perChannel(opts.mean, 0, channels, 'mean');
  const std = perChannel(opts.std, 1, channels, 'std');
  if (typeof mean === 'string') throw new Error(mean);
  if (typeof std === 'string') throw new Error(std);
  const scale = opts.scale ?? defaultScale;
  const offset = opts.offset ?? 0;
  const a = new Float64Array(channels);
  const b = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    a[c] = scale / std[c];
    b[c] = (offset - mean[c]) / std[c];
  }
  return { a, b };
}

/** Writes `stored` (channels last) normalised into `out` at `at`. */
export function normalizeInto(stored: ArrayLike<number>, out: Float32Array, at: number, f: ChannelAffine): void {
  const channels = f.a.length;
  for (let i = 0; i < stored.length; i++) {
    const c = i % channels;
    out[at + i] = stored[i] * f.a[c] + f.b[c];
  }
}
