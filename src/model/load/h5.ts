import { InputError, describeError } from '../../errors/input-error.js';
import { checkWeightBudget } from './precheck.js';

/**
 * Access to h5wasm (HDF5 compiled to wasm). Files live on its in-memory FS: bytes are written
 * there, opened, read and removed. HDF5 errors are turned into exceptions (not stderr noise) and
 * become InputErrors naming the user's file. If the wasm module aborts, a fresh instance is loaded
 * for the next call (an aborted emscripten module cannot be used again).
 */
// The h5wasm types are imported for typing only; the module itself is loaded lazily.
import type * as H5 from 'h5wasm';

export type H5Lib = typeof H5;
export type H5File = H5.File;
export type H5Group = H5.Group;
export type H5Dataset = H5.Dataset;

interface H5Handle {
  lib: H5Lib;
  FS: { writeFile(path: string, data: Uint8Array): void; readFile(path: string): Uint8Array; unlink(path: string): void };
}

let handle: Promise<H5Handle> | undefined;
let generation = 0;
let counter = 0;

export function h5lib(): Promise<H5Handle> {
  if (!handle) {
    const gen = generation;
    handle = (async () => {
      let lib: H5Lib;
      if (gen === 0) lib = (await import('h5wasm/node')) as unknown as H5Lib;
      else {
        // A fresh module instance: the same file under another URL is evaluated again.
        const url = `${import.meta.resolve('h5wasm/node')}?instance=${gen}`;
        lib = (await import(url)) as H5Lib;
      }
      const mod = await lib.ready;
      (mod as unknown as { activate_throwing_error_handler(): number }).activate_throwing_error_handler();
      return { lib, FS: mod.FS as unknown as H5Handle['FS'] };
    })();
    handle.catch(() => {
      handle = undefined;
    });
  }
  return handle;
}

function resetAfterAbort(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof WebAssembly.RuntimeError || /abort/i.test(msg)) {
    generation++;
    handle = undefined;
  }
}

const HDF5_SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

/** Whether `bytes` carries the HDF5 signature at offset 0, 512, 1024, 2048, ... (user block). */
export function hasHdf5Signature(bytes: Uint8Array): boolean {
  for (let off = 0; off + 8 <= bytes.length; off = off === 0 ? 512 : off * 2) {
    if (HDF5_SIGNATURE.every((b, i) => bytes[off + i] === b)) return true;
  }
  return false;
}

/** The most specific line of an HDF5 error stack, e.g. "truncated file: eof = 1500, ...". */
export function summariseHdf5Error(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const lines = msg.split('\n').map((l) => l.match(/ in [A-Za-z0-9_]+\(\): (.*)$/)?.[1]).filter((l): l is string => !!l);
  if (lines.length) return lines[lines.length - 1].trim();
  return describeError(e);
}

/**
 * Opens `bytes` (the contents of `file`) as an HDF5 file and runs `fn` on it. Any failure that is
 * not already an InputError becomes one naming `file`.
 */
export async function withH5File<T>(bytes: Uint8Array, file: string, fn: (f: H5File) => T): Promise<T> {
  if (!hasHdf5Signature(bytes)) {
    throw new InputError(
      bytes.length === 0 ? 'file is empty' : 'not an HDF5 file (no HDF5 signature); the file may be corrupt or of another format',
      { file },
    );
  }
  const { lib, FS } = await h5lib();
  const vpath = `/compress-in-${process.pid}-${++counter}.h5`;
  let f: H5File | undefined;
  try {
    FS.writeFile(vpath, bytes);
    try {
      f = new lib.File(vpath, 'r');
    } catch (e) {
      throw new InputError(`cannot open HDF5 file (truncated or corrupt?): ${summariseHdf5Error(e)}`, { file, cause: e });
    }
    return fn(f);
  } catch (e) {
    if (e instanceof InputError) throw e;
    resetAfterAbort(e);
    throw new InputError(`cannot read HDF5 file (truncated or corrupt?): ${summariseHdf5Error(e)}`, { file, cause: e });
  } finally {
    try {
      f?.close();
    } catch {
      // closing a damaged file can fail too
    }
    try {
      FS.unlink(vpath);
    } catch {
      // already gone
    }
  }
}

/** Creates an HDF5 file with `fn` and returns its bytes (used by writers and test fixtures). */
export async function buildH5File(fn: (f: H5File, lib: H5Lib) => void): Promise<Uint8Array> {
  const { lib, FS } = await h5lib();
  const vpath = `/compress-out-${process.pid}-${++counter}.h5`;
  const f = new lib.File(vpath, 'w');
  try {
    fn(f, lib);
  } finally {
    f.close();
  }
  try {
    return new Uint8Array(FS.readFile(vpath));
  } finally {
    FS.unlink(vpath);
  }
}

/** A dataset's values as float32 (HDF5 float32/float64/integer datasets; h5wasm cannot read float16). */
export function datasetToFloat32(ds: H5Dataset): { values: Float32Array; shape: number[] } {
  const shape = ds.shape ?? [];
  // A compressed dataset can declare gigabytes in a few bytes: its declared size is checked before it is read.
  checkWeightBudget(shape.reduce((a, b) => a * b, 1), ds.path ?? 'dataset');
  const v = ds.value;
  let values: Float32Array;
  if (v instanceof Float32Array) values = v;
  else if (ArrayBuffer.isView(v) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array)) {
    values = Float32Array.from(v as unknown as ArrayLike<number>);
  } else if (typeof v === 'number') values = Float32Array.of(v);
  else throw new Error(`unsupported dataset type ${JSON.stringify(ds.dtype)}`);
  return { values, shape };
}
