import { gzip as gzipCb, gzipSync } from 'node:zlib';
import { promisify } from 'node:util';
import { availableParallelism } from 'node:os';
import type { WeightQuant } from '../model/meta.js';
import { huffmanEncodedBits } from './huffman.js';
import { kmeansCodes } from './kmeans.js';
import { codeRange, linearCodes } from './linear.js';
import { encodeFloat16 } from '../util/float16.js';

/**
 * Size accounting in the style of Deep Compression (Han et al. 2016), per layer and in total.
 *
 * Sparse layout: the kernel is flattened in its stored (Keras, row-major) order and each kept
 * weight is stored as (value, gap) where gap = number of zeros skipped since the previous entry,
 * in `indexBits` bits. When a gap exceeds 2^indexBits - 1, a padding entry (gap 2^indexBits - 1,
 * value 0) is inserted, which covers 2^indexBits positions. Trailing zeros are implied by the shape.
 *
 * Every column includes the bias at 32 bits per element. Per-layer kernel parts are rounded up to
 * whole bytes. Parameter overhead: a k-means codebook costs 32 bits per entry; linear quantization
 * costs 32 bits per scale plus 32 bits per zero point when asymmetric; float16 costs nothing.
 *
 * Columns:
 *   denseBytes    fp32, dense                          (the reference of every ratio)
 *   sparseBytes   fp32 values + gaps                   (pruning only)
 *   quantBytes    value codes of `bits` + gaps + params (pruning + quantization; = sparseBytes unquantized)
 *   huffmanBytes  Huffman(value codes) + Huffman(gaps) + code tables + params (raw values when
 *                 unquantized or float16; = quantBytes when Huffman is off)
 *   finalBytes    the smallest of every layout this format can store: dense fp32, sparse fp32,
 *                 dense codes, sparse codes, and with Huffman on, Huffman of dense codes and of the
 *                 sparse layout. `storage` names the winner. ratio = denseBytes / finalBytes.
 *   gzipBytes     gzip -9 of the dense deployed bytes: codes at 1 byte each (<= 8 bits) or 2 bytes,
 *                 or fp32 values, plus codebook / scales / zero points and bias as fp32.
 */

export interface SizeLayerInput {
  name: string;
  /** The kernel values the model computes with (pruned zeros exactly 0, quantized values on grid). */
  kernel: Float32Array;
  shape: number[];
  bias?: Float32Array;
  quant?: WeightQuant;
  /** Per-weight codes (k-means indices or linear codes q); derived from kernel + quant when absent. */
  codes?: ArrayLike<number>;
  /** Overrides the option / default for this layer. */
  indexBits?: number;
}

export interface SizeOptions {
  /** Gap width in bits. Default per layer: 8 for conv kernels (rank 4), 5 otherwise, as in the paper. */
  indexBits?: number;
  /** Account for Huffman coding. Default true. */
  huffman?: boolean;
  /** Compute gzipBytes. Default true. */
  gzip?: boolean;
}

export type Storage = 'dense-fp32' | 'sparse-fp32' | 'dense-quant' | 'sparse-quant' | 'dense-huffman' | 'sparse-huffman';

export interface SizeRow {
  params: number;
  biasParams: number;
  nonzeros: number;
  /** nonzeros / params */
  keptFraction: number;
  denseBytes: number;
  sparseBytes: number;
  quantBytes: number;
  huffmanBytes: number;
  finalBytes: number;
  gzipBytes: number;
  /** denseBytes / finalBytes */
  ratio: number;
}

export interface LayerSizeRow extends SizeRow {
  name: string;
  shape: number[];
  /** Bits per stored value: 32 unquantized, 16 float16, else the quantization bits. */
  bits: number;
  indexBits: number;
  /** Sparse entries including padding. */
  entries: number;
  paddingEntries: number;
  /** Codebook / scale / zero-point bits. */
  paramBits: number;
  storage: Storage;
}

export interface SizeReport {
  layers: LayerSizeRow[];
  total: SizeRow;
}

export function gzipSize(bytes: Uint8Array, level = 9): number {
  return gzipSync(bytes, { level }).length;
}

/** The (value position, gap) entries of the sparse layout, padding included. */
export function relativeIndexEntries(kernel: ArrayLike<number>, indexBits: number): { positions: Int32Array; gaps: Int32Array; padding: Uint8Array } {
  if (!Number.isInteger(indexBits) || indexBits < 1 || indexBits > 16) throw new Error(`indexBits must be 1..16, got ${indexBits}`);
  const maxSkip = 2 ** indexBits - 1;
  const positions: number[] = [];
  const gaps: number[] = [];
  const padding: number[] = [];
  let prev = -1;
  for (let i = 0; i < kernel.length; i++) {
    if (kernel[i] === 0) continue;
    let skip = i - prev - 1;
    while (skip > maxSkip) {
      prev += maxSkip + 1;
      positions.push(prev);
      gaps.push(maxSkip);
      padding.push(1);
      skip -= maxSkip + 1;
    }
    positions.push(i);
    gaps.push(skip);
    padding.push(0);
    prev = i;
  }
  return { positions: Int32Array.from(positions), gaps: Int32Array.from(gaps), padding: Uint8Array.from(padding) };
}

const bytesOf = (bits: number): number => Math.ceil(bits / 8);

export function accountSizes(layers: SizeLayerInput[], opts: SizeOptions = {}): SizeReport {
  const gzipOf = (opts.gzip ?? true) ? (bytes: Uint8Array) => gzipSize(bytes) : undefined;
  return totalled(layers.map((l) => accountLayer(l, opts.indexBits, opts.huffman ?? true, gzipOf)));
}

const gzipAsync = promisify(gzipCb);

/**
 * accountSizes with each layer's gzip -9 run in the libuv thread pool (zlib's async gzip, a layer per core at
 * a time), so the calling thread goes on meanwhile: the returned `sizes` resolves to what accountSizes
 * returns. The Huffman / sparse accounting runs before this returns; the gzip sizes are the slow part
 * (seconds on a 20M-parameter model).
 */
export function accountSizesInBackground(layers: SizeLayerInput[], opts: Omit<SizeOptions, 'gzip'> = {}): { sizes: Promise<SizeReport> } {
  const deployed: Uint8Array[] = [];
  const rows = layers.map((l) => accountLayer(l, opts.indexBits, opts.huffman ?? true, (bytes) => (deployed.push(bytes), 0)));
  // As many layers at a time as there are cores (the pool's threads), largest first.
  const order = rows.map((_, i) => i).sort((a, b) => deployed[b].length - deployed[a].length);
  const lane = async () => {
    for (let i = order.shift(); i !== undefined; i = order.shift()) rows[i].gzipBytes = (await gzipAsync(deployed[i], { level: 9 })).length;
  };
  const sizes = Promise.all(Array.from({ length: Math.min(availableParallelism(), 4) }, lane)).then(() => totalled(rows));
  return { sizes };
}

function totalled(rows: LayerSizeRow[]): SizeReport {
  const sum = (k: keyof SizeRow): number => rows.reduce((a, r) => a + r[k], 0);
  const params = sum('params');
  const nonzeros = sum('nonzeros');
  const denseBytes = sum('denseBytes');
  const finalBytes = sum('finalBytes');
  const total: SizeRow = {
    params,
    biasParams: sum('biasParams'),
    nonzeros,
    keptFraction: params > 0 ? nonzeros / params : 0,
    denseBytes,
    sparseBytes: sum('sparseBytes'),
    quantBytes: sum('quantBytes'),
    huffmanBytes: sum('huffmanBytes'),
    finalBytes,
    gzipBytes: sum('gzipBytes'),
    ratio: finalBytes > 0 ? denseBytes / finalBytes : 0,
  };
  return { layers: rows, total };
}

/** One layer's row; `gzipOf` (absent: gzipBytes 0) gets the layer's dense deployed bytes. */
function accountLayer(l: SizeLayerInput, defaultIndexBits: number | undefined, huffman: boolean, gzipOf?: (bytes: Uint8Array) => number): LayerSizeRow {
  const params = l.kernel.length;
  const size = l.shape.reduce((a, b) => a * b, 1);
  if (size !== params) throw new Error(`${l.name}: shape [${l.shape}] does not match ${params} kernel values`);
  const biasParams = l.bias?.length ?? 0;
  const biasBits = 32 * biasParams;
  const indexBits = l.indexBits ?? defaultIndexBits ?? (l.shape.length === 4 ? 8 : 5);
  let nonzeros = 0;
  for (let i = 0; i < params; i++) if (l.kernel[i] !== 0) nonzeros++;
  const { positions, gaps, padding } = relativeIndexEntries(l.kernel, indexBits);
  const entries = positions.length;

  const q = l.quant;
  const bits = q ? q.bits : 32;
  // Symbols (non-negative codes) per weight, and their alphabet, for quantized layers.
  let symbols: ArrayLike<number> | null = null;
  let alphabet = 0;
  let paramBits = 0;
  let zeroSymbol: (pos: number) => number = () => 0;
  if (q?.method === 'kmeans') {
    symbols = l.codes ?? kmeansCodes(l.kernel, q.codebook);
    alphabet = q.codebook.length;
    paramBits = 32 * q.codebook.length;
    const z = q.codebook.indexOf(0);
    zeroSymbol = () => Math.max(0, z);
  } else if (q?.method === 'linear') {
    const { qmin, qmax } = codeRange(q.bits, q.symmetric);
    const raw = l.codes ?? linearCodes(l.kernel, l.shape, q);
    const s = new Int32Array(params);
    for (let i = 0; i < params; i++) s[i] = raw[i] - qmin;
    symbols = s;
    alphabet = qmax - qmin + 1;
    paramBits = 32 * q.scales.length + (q.symmetric ? 0 : 32 * q.zeroPoints.length);
    let stride = 1;
    if (q.axis !== null) for (let d = q.axis + 1; d < l.shape.length; d++) stride *= l.shape[d];
    const channels = q.axis === null ? 1 : l.shape[q.axis];
    zeroSymbol = (pos) => q.zeroPoints[q.axis === null ? 0 : Math.floor(pos / stride) % channels] - qmin;
  }
  if (symbols && symbols.length !== params) throw new Error(`${l.name}: ${symbols.length} codes for ${params} weights`);

  const denseBits = 32 * params;
  const sparseBits = entries * (32 + indexBits);
  const candidates: Array<[Storage, number]> = [
    ['dense-fp32', denseBits],
    ['sparse-fp32', sparseBits],
  ];
  let quantBits = sparseBits;
  let huffmanBits = sparseBits;
  if (q) {
    quantBits = entries * (bits + indexBits) + paramBits;
    candidates.push(['dense-quant', params * bits + paramBits], ['sparse-quant', quantBits]);
  }
  huffmanBits = quantBits;
  if (huffman && entries + params > 0) {
    const gapBits = huffmanEncodedBits(gaps, 2 ** indexBits).totalBits;
    if (symbols) {
      const entrySyms = new Int32Array(entries);
      for (let e = 0; e < entries; e++) entrySyms[e] = padding[e] ? zeroSymbol(positions[e]) : symbols[positions[e]];
      huffmanBits = huffmanEncodedBits(entrySyms, alphabet).totalBits + gapBits + paramBits;
      candidates.push(['dense-huffman', huffmanEncodedBits(symbols, alphabet).totalBits + paramBits]);
    } else {
      huffmanBits = entries * bits + gapBits + paramBits;
    }
    candidates.push(['sparse-huffman', huffmanBits]);
  }
  let [storage, bestBits] = candidates[0];
  for (const [s, b] of candidates) if (bytesOf(b) < bytesOf(bestBits)) [storage, bestBits] = [s, b];

  const biasBytes = biasBits / 8;
  const denseBytes = bytesOf(denseBits) + biasBytes;
  const finalBytes = bytesOf(bestBits) + biasBytes;
  const gzipBytes = gzipOf ? gzipOf(deployedBytes(l, symbols)) : 0;
  return {
    name: l.name,
    shape: l.shape.slice(),
    params,
    biasParams,
    nonzeros,
    keptFraction: params > 0 ? nonzeros / params : 0,
    bits,
    indexBits,
    entries,
    paddingEntries: padding.reduce((a, b) => a + b, 0),
    paramBits,
    denseBytes,
    sparseBytes: bytesOf(sparseBits) + biasBytes,
    quantBytes: bytesOf(quantBits) + biasBytes,
    huffmanBytes: bytesOf(huffmanBits) + biasBytes,
    finalBytes,
    gzipBytes,
    ratio: finalBytes > 0 ? denseBytes / finalBytes : 0,
    storage,
  };
}

/** Dense deployed bytes of a layer: codes (or fp16 / fp32 values), quantization params, bias. */
function deployedBytes(l: SizeLayerInput, symbols: ArrayLike<number> | null): Uint8Array {
  const parts: Uint8Array[] = [];
  const q = l.quant;
  if (q?.method === 'float16') {
    parts.push(new Uint8Array(encodeFloat16(l.kernel).buffer));
  } else if (symbols && q) {
    if (q.bits <= 8) parts.push(Uint8Array.from(symbols));
    else parts.push(new Uint8Array(Uint16Array.from(symbols).buffer));
    if (q.method === 'kmeans') parts.push(new Uint8Array(Float32Array.from(q.codebook).buffer));
    else parts.push(new Uint8Array(Float32Array.from(q.scales).buffer), new Uint8Array(Int32Array.from(q.zeroPoints).buffer));
  } else {
    parts.push(new Uint8Array(Float32Array.from(l.kernel).buffer));
  }
  if (l.bias) parts.push(new Uint8Array(Float32Array.from(l.bias).buffer));
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
