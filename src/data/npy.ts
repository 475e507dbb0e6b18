import { readFileSync } from 'node:fs';
import { InputError, describeError } from '../errors/input-error.js';

/**
 * NumPy `.npy` files: format versions 1.0, 2.0 and 3.0, little-endian (or byte-sized) numeric
 * dtypes, C order. Anything else is an InputError naming the file.
 */
export const NPY_DTYPES = ['f4', 'f8', 'u1', 'i1', 'u2', 'i2', 'i4', 'i8', 'b1'] as const;
export type NpyDtype = (typeof NPY_DTYPES)[number];
export type NpyData = Float32Array | Float64Array | Uint8Array | Int8Array | Uint16Array | Int16Array | Int32Array | BigInt64Array;

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  /** Row-major values; `b1` is a Uint8Array of 0/1, `i8` a BigInt64Array. */
  data: NpyData;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const CTORS: Record<NpyDtype, { new (n: number): NpyData; BYTES_PER_ELEMENT: number }> = {
  f4: Float32Array,
  f8: Float64Array,
  u1: Uint8Array,
  i1: Int8Array,
  u2: Uint16Array,
  i2: Int16Array,
  i4: Int32Array,
  i8: BigInt64Array,
  b1: Uint8Array,
};

export function readNpy(path: string): NpyArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new InputError(`cannot read: ${describeError(e)}`, { file: path });
  }
  return parseNpy(bytes, path);
}

export function parseNpy(bytes: Uint8Array, file: string): NpyArray {
  if (bytes.length < 10 || !MAGIC.every((b, i) => bytes[i] === b)) {
    throw new InputError('not a .npy file (bad magic; expected \\x93NUMPY)', { file, hint: 'save arrays with numpy.save(); .npz archives are not supported' });
  }
  const major = bytes[6];
  const minor = bytes[7];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = dv.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new InputError('truncated .npy header', { file });
    headerLen = dv.getUint32(8, true);
    headerStart = 12;
  } else {
    throw new InputError(`unsupported .npy format version ${major}.${minor} (1.0, 2.0 and 3.0 are supported)`, { file });
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > bytes.length) throw new InputError(`truncated .npy header: needs ${headerLen} bytes, ${bytes.length - headerStart} present`, { file });
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, dataStart));
  const descr = header.match(/['"]descr['"]\s*:\s*['"]([^'"]*)['"]/)?.[1];
  const fortran = header.match(/['"]fortran_order['"]\s*:\s*(True|False)/)?.[1];
  const shapeText = header.match(/['"]shape['"]\s*:\s*\(([^)]*)\)/)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new InputError(`malformed .npy header: ${JSON.stringify(header.trim().slice(0, 200))}`, { file });
  }
  const shape = shapeText
    .split(',')
    .map((s) => s.trim().replace(/L$/, ''))
    .filter((s) => s !== '')
    .map((s) => {
      const d = Number(s);
      if (!Number.isInteger(d) || d < 0) throw new InputError(`malformed .npy shape (${shapeText})`, { file });
      return d;
    });
  if (fortran === 'True') {
    throw new InputError('array is in Fortran (column-major) order, which is not supported', {
      file,
      hint: 'save it C-ordered: numpy.save(path, numpy.ascontiguousarray(a))',
    });
  }
  const m = descr.match(/^([<>|=])?([a-zA-Z])(\d+)$/);
  if (!m) throw new InputError(`unsupported .npy dtype '${descr}' (supported: ${NPY_DTYPES.join(', ')})`, { file });
  const [, order = '=', kind, size] = m;
  const dtype = `${kind}${size}` as NpyDtype;
  if (!(NPY_DTYPES as readonly string[]).includes(dtype)) {
    throw new InputError(`unsupported .npy dtype '${descr}' (supported: ${NPY_DTYPES.join(', ')})`, { file, hint: 'convert it, e.g. a.astype(numpy.float32)' });
  }
  if (order === '>' && size !== '1') {
    throw new InputError(`array is big-endian ('${descr}'), which is not supported`, { file, hint: "convert it: a.astype(a.dtype.newbyteorder('<'))" });
  }
  const count = shape.reduce((a, b) => a * b, 1);
  const ctor = CTORS[dtype];
  const need = count * ctor.BYTES_PER_ELEMENT;
  const have = bytes.length - dataStart;
  if (have < need) {
    throw new InputError(`truncated .npy data: shape (${shape.join(', ')}) of ${descr} needs ${need} bytes, the file has ${have}`, { file });
  }
  if (have > need) {
    throw new InputError(`.npy file has ${have - need} bytes after the data that its header (shape (${shape.join(', ')}), ${descr}) does not account for`, { file });
  }
  const data = new ctor(count);
  // Copy (the data may be unaligned within the file buffer).
  new Uint8Array(data.buffer).set(bytes.subarray(dataStart, dataStart + need));
  return { dtype, shape, data };
}

/** Values as float32 (int64 via Number). */
export function npyToFloat32(a: NpyArray): Float32Array {
  if (a.data instanceof Float32Array) return a.data;
  if (a.data instanceof BigInt64Array) return Float32Array.from(a.data, (v) => Number(v));
  return Float32Array.from(a.data as ArrayLike<number>);
}

/** Values as float64 numbers (exact for every supported dtype but extreme int64s). */
export function npyToNumbers(a: NpyArray): Float64Array {
  if (a.data instanceof BigInt64Array) return Float64Array.from(a.data, (v) => Number(v));
  return Float64Array.from(a.data as ArrayLike<number>);
}

/** Encodes an array as .npy bytes (what numpy.save writes). */
export function encodeNpy(data: NpyData, shape: number[], dtype: NpyDtype, opts: { version?: 1 | 2 | 3 } = {}): Uint8Array {
  const version = opts.version ?? 1;
  const byteOrder = dtype.endsWith('1') ? '|' : '<';
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${byteOrder}${dtype}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const pre = version === 1 ? 10 : 12;
  const total = Math.ceil((pre + header.length + 1) / 64) * 64;
  header = header.padEnd(total - pre - 1, ' ') + '\n';
  const hb = new TextEncoder().encode(header);
  const body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(pre + hb.length + body.length);
  out.set([...MAGIC, version, 0]);
  const dv = new DataView(out.buffer);
  if (version === 1) dv.setUint16(8, hb.length, true);
  else dv.setUint32(8, hb.length, true);
  out.set(hb, pre);
  out.set(body, pre + hb.length);
  return out;
}
