import { readFile } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { InputError, describeError } from '../errors/input-error.js';
import type { Dataset } from './dataset.js';
import { channelAffine, normalizeInto, normalizeKeys, normalizeProblem, type NormalizeOptions } from './normalize.js';
import { dataRootSchema } from './paths.js';
import { pairLimitSchema, splitKeys, validationKeys } from './split.js';

/**
 * The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/): a 4-byte magic
 * (two zero bytes, a type code, the number of dimensions), one big-endian uint32 per dimension, then
 * the values, big-endian, row-major. Files may be gzip-compressed (detected by content, not name).
 */
const TYPES = {
  0x08: { name: 'unsigned byte', bytes: 1, read: (v: DataView, o: number) => v.getUint8(o) },
  0x09: { name: 'signed byte', bytes: 1, read: (v: DataView, o: number) => v.getInt8(o) },
  0x0b: { name: 'short', bytes: 2, read: (v: DataView, o: number) => v.getInt16(o) },
  0x0c: { name: 'int', bytes: 4, read: (v: DataView, o: number) => v.getInt32(o) },
  0x0d: { name: 'float', bytes: 4, read: (v: DataView, o: number) => v.getFloat32(o) },
  0x0e: { name: 'double', bytes: 8, read: (v: DataView, o: number) => v.getFloat64(o) },
} as const;
type TypeCode = keyof typeof TYPES;

/** Larger declared arrays are refused before they are read (2^31 values: 8 GiB as float32). */
const MAX_VALUES = 2 ** 31;

export interface IdxHeader {
  type: TypeCode;
  dims: number[];
  /** Bytes of header before the values. */
  dataStart: number;
  /** Bytes of values the header declares. */
  dataBytes: number;
}

export interface IdxArray {
  header: IdxHeader;
  /** The values as stored (not yet normalised). */
  values: ArrayLike<number>;
}

/** Parses the header at the start of `bytes`; undefined when more bytes are needed to know it. */
export function parseIdxHeader(bytes: Uint8Array, file: string): IdxHeader | undefined {
  if (bytes.length < 4) return undefined;
  const type = bytes[2];
  if (bytes[0] !== 0 || bytes[1] !== 0 || !(type in TYPES)) {
    const magic = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new InputError(`not an IDX file (bad magic ${magic}; expected 00 00 <type 08/09/0b/0c/0d/0e> <dimensions>)`, {
      file,
      hint: 'IDX files are the MNIST-format train-images-idx3-ubyte / train-labels-idx1-ubyte files, raw or .gz',
    });
  }
  const rank = bytes[3];
  if (rank === 0) throw new InputError('IDX header declares 0 dimensions', { file });
  const dataStart = 4 + 4 * rank;
  if (bytes.length < dataStart) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  const count = dims.reduce((a, b) => a * b, 1);
  if (count > MAX_VALUES) throw new InputError(`IDX header declares [${dims.join(', ')}] = ${count} values, more than the ${MAX_VALUES} compress reads`, { file });
  const t = type as TypeCode;
  return { type: t, dims, dataStart, dataBytes: count * TYPES[t].bytes };
}

function truncated(file: string, header: IdxHeader, have: number): InputError {
  return new InputError(
    `truncated IDX file: its header declares [${header.dims.join(', ')}] ${TYPES[header.type].name} values (${header.dataBytes} bytes), but only ${Math.max(0, have)} bytes of values follow`,
    { file },
  );
}

/**
 * Decompresses a gzip IDX file, stopping as soon as the output exceeds what its header declares, so
 * a small file that inflates to gigabytes is refused instead of filling memory.
 */
async function gunzipIdx(compressed: Uint8Array, file: string): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  let limit = Infinity;
  const gunzip = createGunzip();
  const done = new Promise<void>((resolve, reject) => {
    gunzip.on('data', (c: Buffer) => {
      chunks.push(c);
      size += c.length;
      if (limit === Infinity) {
        try {
          const h = parseIdxHeader(Buffer.concat(chunks), file);
          if (h) limit = h.dataStart + h.dataBytes;
        } catch (e) {
          gunzip.destroy();
          reject(e);
          return;
        }
      }
      if (size > limit) {
        gunzip.destroy();
        reject(new InputError(`IDX file holds more data than its header declares (${limit - 4} bytes of dimensions and values)`, { file }));
      }
    });
    gunzip.on('end', resolve);
    gunzip.on('error', (e) => reject(new InputError(`cannot decompress (gzip): ${describeError(e)}`, { file, hint: 'the .gz file is damaged or incomplete; download it again' })));
  });
  gunzip.end(compressed);
  await done;
  return Buffer.concat(chunks, size);
}

/** Reads an IDX file (raw or gzip): its header and stored values, checked against each other. */
export async function readIdx(file: string): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new InputError(`cannot read: ${describeError(e)}`, { file });
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = await gunzipIdx(bytes, file);
  return parseIdx(bytes, file);
}

/** An IDX file's contents (already decompressed). */
export function parseIdx(bytes: Uint8Array, file: string): IdxArray {
  const header = parseIdxHeader(bytes, file);
  if (!header) throw new InputError(`truncated IDX file: ${bytes.length} bytes, too short for its header`, { file });
  const have = bytes.length - header.dataStart;
  if (have < header.dataBytes) throw truncated(file, header, have);
  if (have > header.dataBytes) {
    throw new InputError(`IDX file has ${have - header.dataBytes} bytes after the [${header.dims.join(', ')}] values its header declares`, { file, hint: 'is it two files joined, or the wrong header?' });
  }
  if (header.type === 0x08) return { header, values: bytes.subarray(header.dataStart) };
  const t = TYPES[header.type];
  const view = new DataView(bytes.buffer, bytes.byteOffset + header.dataStart, header.dataBytes);
  const n = header.dataBytes / t.bytes;
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = t.read(view, i * t.bytes);
  return { header, values };
}

export interface IdxPair {
  images: string;
  labels: string;
}

export interface IdxOptions extends NormalizeOptions {
  numClasses?: number;
  classes?: string[];
}

/**
 * One dataset from an images file ([n, ...sample] values) and a labels file ([n] class indices).
 * Samples of rank 2 ([n, h, w]) get a channel axis: [h, w, 1]. Values are normalised (by default
 * unsigned bytes / 255, so 0..1; other types as stored).
 */
export async function loadIdxPair(pair: IdxPair, opts: IdxOptions): Promise<Dataset> {
  const [images, labels] = await Promise.all([readIdx(pair.images), readIdx(pair.labels)]);
  const n = images.header.dims[0];
  if (labels.header.dims.length !== 1) {
    throw new InputError(`labels must be one-dimensional ([n] class indices), but this IDX file holds [${labels.header.dims.join(', ')}]`, { file: pair.labels });
  }
  if (labels.header.type === 0x0d || labels.header.type === 0x0e) {
    throw new InputError(`labels must be integers (class indices), but this IDX file holds ${TYPES[labels.header.type].name} values`, { file: pair.labels });
  }
  if (labels.header.dims[0] !== n) {
    throw new InputError(`has ${labels.header.dims[0]} labels but the images file '${pair.images}' has ${n} images`, { file: pair.labels, hint: 'the images and labels files must come from the same set (e.g. train-images with train-labels)' });
  }
  if (images.header.dims.length < 2) {
    throw new InputError(`images must have a sample axis after the count ([n, h, w] or [n, h, w, c]), but this IDX file holds [${images.header.dims.join(', ')}]`, { file: pair.images });
  }
  const rest = images.header.dims.slice(1);
  const sampleShape = rest.length === 2 ? [...rest, 1] : rest;
  const channels = sampleShape.length === 3 ? sampleShape[2] : 1;
  const bad = normalizeProblem(opts, channels);
  if (bad) throw new InputError(bad, { file: pair.images });
  const x = new Float32Array(images.values.length);
  normalizeInto(images.values, x, 0, channelAffine(opts, channels, images.header.type === 0x08 ? 1 / 255 : 1));
  const y = new Int32Array(n);
  let max = -1;
  for (let i = 0; i < n; i++) {
    const v = labels.values[i];
    if (v < 0) throw new InputError(`label ${v} of sample ${i} is negative; labels are class indices 0, 1, ...`, { file: pair.labels });
    if (opts.numClasses !== undefined && v >= opts.numClasses) {
      throw new InputError(`label ${v} of sample ${i} is not below numClasses ${opts.numClasses}`, { file: pair.labels });
    }
    y[i] = v;
    if (v > max) max = v;
  }
  const numClasses = opts.numClasses ?? opts.classes?.length ?? max + 1;
  if (max >= numClasses) throw new InputError(`label ${max} is not below the ${numClasses} class names given`, { file: pair.labels });
  return {
    x,
    y,
    n,
    sampleShape,
    numClasses,
    source: pair.images,
    ...(opts.classes ? { classNames: opts.classes.slice() } : {}),
    ...(sampleShape.length === 3 ? { image: true } : {}),
  };
}

const idxFilesSchema = {
  type: 'object',
  properties: {
    images: { type: 'string', minLength: 1, description: 'IDX file of the samples, e.g. train-images-idx3-ubyte.gz' },
    labels: { type: 'string', minLength: 1, description: 'IDX file of the class indices, e.g. train-labels-idx1-ubyte.gz' },
  },
  required: ['images', 'labels'],
  additionalProperties: false,
} as const;

export const idxDataSchema = {
  type: 'object',
  properties: {
    source: { const: 'idx', description: 'MNIST-format IDX files (images idx3 + labels idx1, raw or .gz), e.g. Fashion-MNIST' },
    root: dataRootSchema,
    images: idxFilesSchema.properties.images,
    labels: idxFilesSchema.properties.labels,
    train: { ...idxFilesSchema, description: 'the training set (its `validation` share becomes the validation split)' },
    test: { ...idxFilesSchema, description: 'the test set, used as the test split' },
    ...validationKeys,
    split: splitKeys.split,
    limit: pairLimitSchema,
    seed: splitKeys.seed,
    numClasses: { type: 'integer', minimum: 2, description: 'number of classes (default: the largest label + 1)' },
    classes: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 2, uniqueItems: true, description: 'class names by label index (recorded in reports)' },
    ...normalizeKeys,
  },
  required: ['source'],
  additionalProperties: false,
} as const;
