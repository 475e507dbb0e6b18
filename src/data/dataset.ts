import { transpose } from '../util/ndarray.js';

/** An in-memory labelled dataset: samples are row-major float32, labels are class indices. */
export interface Dataset {
  /** n * prod(sampleShape) values. */
  x: Float32Array;
  /** n class indices in [0, numClasses). */
  y: Int32Array;
  n: number;
  /** Shape of one sample, e.g. [28, 28, 1] or [784]. */
  sampleShape: number[];
  numClasses: number;
  /** The file the samples were read from, so errors about them can name it (none for MNIST). */
  source?: string;
  /** Names of the classes, by index (image folders in sorted order, or given in the recipe). */
  classNames?: string[];
  /** Samples are images [h, w, c]: fitDataToModel may resize them to the model's input. */
  image?: boolean;
  /** A sample's shape as stored, when `layout: nchw` transposed it on load (so a wrong `layout` can be named). */
  storedShape?: number[];
  /** The source takes `color:` (image folders): a channel mismatch with the model is fixed there. */
  colorOption?: true;
}

/** The optional fields of `d` that describe its samples rather than hold them. */
function describing(d: Dataset): Pick<Dataset, 'source' | 'classNames' | 'image' | 'storedShape' | 'colorOption'> {
  return {
    ...(d.source ? { source: d.source } : {}),
    ...(d.classNames ? { classNames: d.classNames.slice() } : {}),
    ...(d.image ? { image: true } : {}),
    ...(d.storedShape ? { storedShape: d.storedShape.slice() } : {}),
    ...(d.colorOption ? { colorOption: true as const } : {}),
  };
}

export interface Splits {
  train: Dataset;
  validation: Dataset;
  test: Dataset;
}

export function sampleSize(d: Pick<Dataset, 'sampleShape'>): number {
  return d.sampleShape.reduce((a, b) => a * b, 1);
}

/**
 * The same splits with their samples and labels copied into SharedArrayBuffers, so worker threads of
 * one process can read one copy (structured clone shares such memory instead of copying it). Readers
 * must not write to them: every consumer here copies or views (subset, fitDataToModel, batches).
 */
export function sharedSplits(s: Splits): Splits {
  const share = <T extends Float32Array | Int32Array>(a: T, make: (b: SharedArrayBuffer) => T): T => {
    if (a.buffer instanceof SharedArrayBuffer) return a;
    const out = make(new SharedArrayBuffer(a.byteLength));
    out.set(a);
    return out;
  };
  const one = (d: Dataset): Dataset => ({ ...d, x: share(d.x, (b) => new Float32Array(b)), y: share(d.y, (b) => new Int32Array(b)) });
  return { train: one(s.train), validation: one(s.validation), test: one(s.test) };
}

/** Rows `indices` of `d`, copied. */
export function subset(d: Dataset, indices: ArrayLike<number>): Dataset {
  const s = sampleSize(d);
  const x = new Float32Array(indices.length * s);
  const y = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i];
    x.set(d.x.subarray(j * s, (j + 1) * s), i * s);
    y[i] = d.y[j];
  }
  return { x, y, n: indices.length, sampleShape: d.sampleShape.slice(), numClasses: d.numClasses, ...describing(d) };
}

/** The same samples viewed with another per-sample shape of equal size (e.g. [784] -> [28,28,1]). */
export function reshapeSamples(d: Dataset, sampleShape: number[]): Dataset {
  const want = sampleShape.reduce((a, b) => a * b, 1);
  if (want !== sampleSize(d)) {
    throw new Error(`cannot view samples of shape [${d.sampleShape}] as [${sampleShape}]`);
  }
  const { image, ...rest } = d;
  return { ...rest, sampleShape: sampleShape.slice(), ...(image && sampleShape.length === 3 ? { image } : {}) };
}

/** Image samples between channels-first [C, H, W] (PyTorch) and channels-last [H, W, C] (Keras), copied. */
export function transposeImages(d: Dataset, to: 'nhwc' | 'nchw'): Dataset {
  if (d.sampleShape.length !== 3) throw new Error(`samples of shape [${d.sampleShape}] are not images (rank 3)`);
  const perm = to === 'nhwc' ? [0, 2, 3, 1] : [0, 3, 1, 2];
  const { data, dims } = transpose(d.x, [d.n, ...d.sampleShape], perm);
  return { ...d, x: data, sampleShape: dims.slice(1) };
}
