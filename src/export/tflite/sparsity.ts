import * as flatbuffers from 'flatbuffers';
import { Op, Options, ReshapeSlot, TensorType } from './schema.js';
import { bytesOf, type TensorQuant, type TfliteModelBuilder } from './writer.js';

/**
 * TFLite sparse tensors (schema.fbs `SparsityParameters`, the format TFLite's DENSIFY kernel and
 * sparsity_format_converter read): pruned weights stored as their non-zero values plus CSR indices.
 *
 * Layout written: every dimension dense except the last traversed, which is CSR (index vectors of the smallest
 * unsigned width that holds them). The buffer holds the non-zero values in traversal order. (A block_map that
 * splits the innermost dimension so indices fit a byte made LiteRT 2.5.3 trap with "divide by zero".)
 */
export const DimensionType = { DENSE: 0, SPARSE_CSR: 1 } as const;
/** SparseIndexVector union values. */
const IndexVector = { Int32Vector: 1, Uint16Vector: 2, Uint8Vector: 3 } as const;
const SparsitySlot = { traversal_order: 0, block_map: 1, dim_metadata: 2, numFields: 3 } as const;
const DimSlot = { format: 0, dense_size: 1, array_segments_type: 2, array_segments: 3, array_indices_type: 4, array_indices: 5, numFields: 6 } as const;

export interface DimensionSpec {
  format: number;
  denseSize: number;
  segments?: number[];
  indices?: number[];
}

export interface SparsitySpec {
  traversalOrder: number[];
  blockMap: number[];
  dims: DimensionSpec[];
}

export interface SparseTensor<T extends Int8Array | Float32Array> {
  /** The non-zero values, in traversal order. */
  values: T;
  /** The shape the sparse tensor is stored in (its last dimension split so indices fit a byte), RESHAPEd back after DENSIFY. */
  shape: number[];
  sparsity: SparsitySpec;
  /** Bytes the values and index vectors take (flatbuffer framing aside). */
  bytes: number;
}

const indexBytes = (maxValue: number) => (maxValue < 256 ? 1 : maxValue < 65536 ? 2 : 4);

/**
 * CSR encoding of a row-major tensor of `shape` (the TFLite layout it is stored in): every dimension dense but
 * the last one traversed. Tried, the smallest wins: row-major; a 2-D tensor column-major (traversal order
 * [1, 0], the CSR dimension then the rows); and, when the last dimension is over 256, that dimension split in
 * `nb` equal parts ([..., C] stored as [..., nb, C / nb], DENSIFY then RESHAPE) so its indices take one byte.
 * (TFLite's own block_map split the same way made LiteRT 2.5.3 reject the file with "divide by zero".)
 * `reshaped`: only encodings in another shape (split, else [..., 1, C]), for consumers that must read the
 * weights through a RESHAPE (full int8, see addWeight). `keepLast`: the last dimension is not split (it carries
 * per-channel scales: depthwise kernels).
 */
export function toSparse<T extends Int8Array | Float32Array>(data: T, shape: number[], opts: { reshaped?: boolean; keepLast?: boolean } = {}): SparseTensor<T> {
  const split = opts.keepLast ? undefined : splitLast(shape);
  const reshapedTries = [csr(data, split ?? unitBeforeLast(shape), (split ?? unitBeforeLast(shape)).map((_, i) => i))].map((s) => ({ ...s, bytes: s.bytes + RESHAPE_OVERHEAD }));
  if (opts.reshaped) return reshapedTries[0];
  const tries = [csr(data, shape, shape.map((_, i) => i))];
  if (shape.length === 2) tries.push(csr(data, shape, [1, 0]));
  if (split) tries.push(...reshapedTries);
  return tries.reduce((a, b) => (b.bytes < a.bytes ? b : a));
}

/** [..., C] as [..., 1, C]: the same CSR bytes in a shape that needs a RESHAPE back. */
const unitBeforeLast = (shape: number[]) => [...shape.slice(0, -1), 1, shape[shape.length - 1]];

/** The RESHAPE op, its shape constant and the extra tensor a split encoding adds. */
const RESHAPE_OVERHEAD = 96;

/** `shape` with its last dimension C > 256 split as [nb, C / nb], the fewest parts of at most 256; none if C has no such divisor. */
function splitLast(shape: number[]): number[] | undefined {
  const c = shape[shape.length - 1];
  if (c <= 256) return undefined;
  for (let nb = 2; c / nb >= 1; nb++) if (c % nb === 0 && c / nb <= 256) return [...shape.slice(0, -1), nb, c / nb];
  return undefined;
}

function csr<T extends Int8Array | Float32Array>(data: T, shape: number[], order: number[]): SparseTensor<T> {
  const rank = shape.length;
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const dimsInOrder = order.map((d) => shape[d]);
  const inner = dimsInOrder[rank - 1];
  const rows = data.length / inner;
  const segments = [0];
  const indices: number[] = [];
  const kept: number[] = [];
  const idx = new Array<number>(rank).fill(0); // position in traversal order
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < inner; j++) {
      idx[rank - 1] = j;
      let p = 0;
      for (let t = 0; t < rank; t++) p += idx[t] * strides[order[t]];
      if (data[p] !== 0) {
        indices.push(j);
        kept.push(p);
      }
    }
    segments.push(indices.length);
    for (let t = rank - 2; t >= 0; t--) {
      if (++idx[t] < dimsInOrder[t]) break;
      idx[t] = 0;
    }
  }
  const values = new (data.constructor as new (n: number) => T)(kept.length);
  kept.forEach((p, i) => (values[i] = data[p]));
  const dims: DimensionSpec[] = dimsInOrder.slice(0, -1).map((d) => ({ format: DimensionType.DENSE, denseSize: d }));
  dims.push({ format: DimensionType.SPARSE_CSR, denseSize: inner, segments, indices });
  const bytes = values.byteLength + segments.length * indexBytes(indices.length) + indices.length * indexBytes(inner - 1);
  // (reshaped encodings add RESHAPE_OVERHEAD in toSparse)
  return { values, shape, sparsity: { traversalOrder: order, blockMap: [], dims }, bytes };
}

/** Writes SparsityParameters with the Builder; returns its offset (call before the Tensor table starts). */
export function writeSparsity(b: flatbuffers.Builder, s: SparsitySpec): number {
  const i32vec = (v: number[]) => {
    b.startVector(4, v.length, 4);
    for (let i = v.length - 1; i >= 0; i--) b.addInt32(v[i]);
    return b.endVector();
  };
  const indexVector = (v: number[], max: number): [number, number] => {
    const width = indexBytes(max);
    b.startVector(width, v.length, width);
    for (let i = v.length - 1; i >= 0; i--) {
      if (width === 1) b.addInt8(v[i]);
      else if (width === 2) b.addInt16(v[i]);
      else b.addInt32(v[i]);
    }
    const vec = b.endVector();
    b.startObject(1);
    b.addFieldOffset(0, vec, 0);
    const type = width === 1 ? IndexVector.Uint8Vector : width === 2 ? IndexVector.Uint16Vector : IndexVector.Int32Vector;
    return [type, b.endObject()];
  };
  const dims = s.dims.map((d) => {
    const seg = d.segments ? indexVector(d.segments, d.segments[d.segments.length - 1]) : undefined;
    const idx = d.indices ? indexVector(d.indices, d.denseSize - 1) : undefined;
    b.startObject(DimSlot.numFields);
    b.addFieldInt8(DimSlot.format, d.format, null as unknown as number);
    b.addFieldInt32(DimSlot.dense_size, d.denseSize, null as unknown as number);
    if (seg) {
      b.addFieldInt8(DimSlot.array_segments_type, seg[0], 0);
      b.addFieldOffset(DimSlot.array_segments, seg[1], 0);
    }
    if (idx) {
      b.addFieldInt8(DimSlot.array_indices_type, idx[0], 0);
      b.addFieldOffset(DimSlot.array_indices, idx[1], 0);
    }
    return b.endObject();
  });
  const order = i32vec(s.traversalOrder);
  const blockMap = s.blockMap.length ? i32vec(s.blockMap) : 0;
  b.startVector(4, dims.length, 4);
  for (let i = dims.length - 1; i >= 0; i--) b.addOffset(dims[i]);
  const dimVec = b.endVector();
  b.startObject(SparsitySlot.numFields);
  b.addFieldOffset(SparsitySlot.traversal_order, order, 0);
  if (blockMap) b.addFieldOffset(SparsitySlot.block_map, blockMap, 0);
  b.addFieldOffset(SparsitySlot.dim_metadata, dimVec, 0);
  return b.endObject();
}

export type Storage = 'auto' | 'dense' | 'sparse';

/** The few hundred bytes a sparse tensor adds besides its data: the SparsityParameters tables, the DENSIFY op and its output tensor. */
const SPARSE_OVERHEAD = 160;

/**
 * Whether a weight of `denseBytes` is stored sparse: `sparse` always (when it has zeros), `auto` when the
 * CSR values + indices + framing are smaller than the dense bytes, `dense` never.
 */
export function chooseSparse(storage: Storage, denseBytes: number, sparse: SparseTensor<Int8Array | Float32Array>): boolean {
  if (storage === 'dense') return false;
  if (sparse.values.length * (sparse.values.BYTES_PER_ELEMENT) === denseBytes) return false; // no zeros
  return storage === 'sparse' || sparse.bytes + SPARSE_OVERHEAD < denseBytes;
}

/**
 * A constant weight tensor in the chosen storage. Sparse: the CSR tensor plus a DENSIFY op whose output (same
 * type, shape and quantization) is what the consumer reads — runtimes expand it once, when the model is
 * prepared. Returns the tensor the consumer takes and whether it went sparse.
 */
export function addWeight(
  m: TfliteModelBuilder,
  name: string,
  shape: number[],
  type: number,
  data: Int8Array | Float32Array,
  quant: TensorQuant | undefined,
  storage: Storage,
  opts: {
    /** Sparse int8 only: DEQUANTIZE the densified weights to float32 for a float consumer (weight-only int8). */
    dequantizeTo?: number;
    /**
     * The consumer reads the densified weights through a RESHAPE (full int8): LiteRT's XNNPACK claims an int8
     * FULLY_CONNECTED / CONV_2D whose filter comes straight from DENSIFY and then fails to prepare it; behind a
     * RESHAPE it is not claimed and TFLite's own int8 kernel runs it (measured: the dense file's outputs).
     */
    viaReshape?: boolean;
  } = {},
): { tensor: number; sparse: boolean } {
  const { dequantizeTo } = opts;
  if (storage !== 'dense') {
    // Per-channel scales on the last axis (depthwise) stay on the last axis of the stored shape, unsplit.
    const lastAxisScales = !!quant && quant.scale.length > 1 && quant.quantizedDimension === shape.length - 1;
    const sp = toSparse(data, shape, { reshaped: opts.viaReshape, keepLast: lastAxisScales });
    if (chooseSparse(storage, data.byteLength, sp)) {
      const reshaped = sp.shape.length !== shape.length;
      const stored = quant && lastAxisScales ? { ...quant, quantizedDimension: sp.shape.length - 1 } : quant;
      const packed = m.addTensor(`${name}_sparse`, sp.shape, type, bytesOf(sp.values), stored, sp.sparsity);
      let t = m.addTensor(dequantizeTo === undefined && !reshaped ? name : `${name}_densified`, sp.shape, type, undefined, stored);
      m.addOperator(Op.DENSIFY, 1, [packed], [t]);
      if (dequantizeTo !== undefined) {
        const float = m.addTensor(reshaped ? `${name}_dequantized` : name, sp.shape, dequantizeTo);
        m.addOperator(Op.DEQUANTIZE, 2, [t], [float]);
        t = float;
      }
      if (reshaped) {
        const out = m.addTensor(name, shape, dequantizeTo ?? type, undefined, dequantizeTo === undefined ? quant : undefined);
        const shapeT = m.addTensor(`${name}/shape`, [shape.length], TensorType.INT32, bytesOf(Int32Array.from(shape)));
        m.addOperator(Op.RESHAPE, 1, [t, shapeT], [out], { type: Options.ReshapeOptions, numFields: ReshapeSlot.numFields, fields: [[ReshapeSlot.new_shape, 'i32vec', shape]] });
        t = out;
      }
      return { tensor: t, sparse: true };
    }
  }
  return { tensor: m.addTensor(name, shape, type, bytesOf(data), quant), sparse: false };
}
