import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type * as tfType from '@tensorflow/tfjs';
import type { Dataset } from '../data/dataset.js';
import type { ModelMeta } from '../model/meta.js';
import { ExportError } from './errors.js';
import { EXPORT_TARGETS, exportTarget, type ExportPrecision, type ExportTarget, type ExportTargetEntry } from './targets.js';
import type { Runner } from './verify/runners.js';

export { ExportError } from './errors.js';
export { buildIr, type IrGraph, type IrOp } from './ir.js';
export { EXPORT_TARGETS, SUPPORTED_PRECISIONS, TFLITE_FILE, ONNX_FILE, type ExportPrecision, type ExportTarget } from './targets.js';
export { onnxOptimizedOpTypes } from './verify/onnx-ops.js';

export interface ExportOptions {
  target: ExportTarget;
  precision: ExportPrecision;
  /** Representative input samples, row-major, for int8 activation ranges when meta.activationRanges lacks them. */
  calibration?: Float32Array;
  calibrationShape?: number[];
  /** int8 / dynamic-int8 weights with one scale per output channel (default true); false: per tensor. */
  perChannel?: boolean;
  /** TFLite: pruned FULLY_CONNECTED weights as TFLite sparse tensors (CSR + DENSIFY): auto (default), dense, sparse. */
  storage?: 'auto' | 'dense' | 'sparse';
}

export interface ExportResult {
  /** Relative to outDir. */
  files: string[];
  bytes: number;
  gzipBytes: number;
}

/** The table entry for a target that writes `precision`; ExportError naming what is supported otherwise. */
function targetFor(target: string, precision: string): ExportTargetEntry {
  const entry = exportTarget(target);
  if (!entry) throw new ExportError(String(target), undefined, `unknown target; use one of ${Object.keys(EXPORT_TARGETS).join(', ')}`);
  if (!entry.supports(precision)) throw new ExportError(target, undefined, `precision '${precision}' is not supported; use one of ${entry.precisions.join(', ')}`);
  return entry;
}

/** Writes `model` for `opts.target` in `opts.precision` into outDir. */
export async function exportModel(
  tf: typeof tfType,
  model: tfType.LayersModel,
  meta: ModelMeta,
  opts: ExportOptions,
  outDir: string,
): Promise<ExportResult> {
  const entry = targetFor(opts.target, opts.precision);
  await mkdir(outDir, { recursive: true });
  const written = await entry.write({ tf, model, meta, calibration: opts.calibration, calibrationShape: opts.calibrationShape, perChannel: opts.perChannel, storage: opts.storage }, opts.precision);
  let bytes = 0;
  let gzipBytes = 0;
  for (const [name, data] of written) {
    await writeFile(join(outDir, name), data);
    bytes += data.length;
    gzipBytes += gzipSync(data, { level: 9 }).length;
  }
  return { files: written.map(([n]) => n), bytes, gzipBytes };
}

export interface ExportedModel {
  target: ExportTarget;
  precision: ExportPrecision;
  dir: string;
  files: string[];
}

export interface VerifyResult {
  /** Top-1 agreement with the reference model. */
  agreement: number;
  maxAbsDiff: number;
  accuracy: number;
  bytes: number;
  gzipBytes: number;
  /** Per sample, in the target runtime, batch 1, mean over up to 100 samples after warmup. */
  latencyMs: number;
  runtime: string;
  /** ONNX int8 only: the quantized op types onnxruntime's 'extended' optimisation fused the graph into. */
  quantizedOps?: string[];
}

export function defaultThreshold(precision: ExportPrecision): number {
  return precision === 'int8' || precision === 'uint8' || precision === 'dynamic-int8' ? 0.99 : 0.999;
}

function openRunner(tf: typeof tfType, exported: ExportedModel): Promise<Runner> {
  return targetFor(exported.target, exported.precision).open(tf, readExport(exported));
}

function readExport(exported: ExportedModel): (name: string) => Promise<Uint8Array> {
  return async (name) => {
    if (!exported.files.includes(name)) throw new Error(`export in ${exported.dir} has no ${name} (files: ${exported.files.join(', ')})`);
    return new Uint8Array(await readFile(join(exported.dir, name)));
  };
}

function argmax(a: Float32Array, off: number, k: number): number {
  let best = 0;
  for (let j = 1; j < k; j++) if (a[off + j] > a[off + best]) best = j;
  return best;
}

/**
 * Loads the export in its real runtime (LiteRT, onnxruntime-node, tf.loadLayersModel), runs the
 * test set, and compares with the reference model. Throws when agreement is below the threshold
 * (default 0.99 for int8/uint8/dynamic-int8, 0.999 otherwise).
 */
export async function verifyExport(
  tf: typeof tfType,
  exported: ExportedModel,
  reference: tfType.LayersModel,
  test: Dataset,
  opts: { threshold?: number } = {},
): Promise<VerifyResult> {
  const shape = (reference.inputs[0].shape.slice(1) as number[]);
  const per = shape.reduce((a, b) => a * b, 1);
  if (per * test.n !== test.x.length) throw new Error(`test samples of shape [${test.sampleShape}] do not fit the model input [${shape}]`);
  const ref: Float32Array[] = [];
  for (let s = 0; s < test.n; s += 256) {
    const m = Math.min(256, test.n - s);
    const y = tf.tidy(() => reference.predict(tf.tensor(test.x.subarray(s * per, (s + m) * per), [m, ...shape])) as tfType.Tensor);
    ref.push(Float32Array.from(y.dataSync() as Float32Array));
    y.dispose();
  }
  const refOut = new Float32Array(ref.reduce((a, r) => a + r.length, 0));
  let o = 0;
  for (const r of ref) {
    refOut.set(r, o);
    o += r.length;
  }
  const k = refOut.length / test.n;

  const runner = await openRunner(tf, exported);
  try {
    let out: Float32Array;
    if (runner.batched) {
      const parts: Float32Array[] = [];
      for (let s = 0; s < test.n; s += 256) {
        const m = Math.min(256, test.n - s);
        parts.push(await runner.run(test.x.subarray(s * per, (s + m) * per), m, shape));
      }
      out = new Float32Array(refOut.length);
      let p = 0;
      for (const part of parts) {
        out.set(part, p);
        p += part.length;
      }
    } else out = await runner.run(test.x, test.n, shape);
    if (out.length !== refOut.length) throw new Error(`${runner.runtime} returned ${out.length} values, expected ${refOut.length}`);

    let agree = 0;
    let correct = 0;
    let maxAbsDiff = 0;
    for (let i = 0; i < test.n; i++) {
      const a = argmax(refOut, i * k, k);
      const b = argmax(out, i * k, k);
      if (a === b) agree++;
      if (b === test.y[i]) correct++;
    }
    for (let i = 0; i < out.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(out[i] - refOut[i]));

    // Latency: batch 1 in the target runtime, after warmup.
    const nLat = Math.min(100, test.n);
    const warm = Math.min(5, test.n);
    for (let i = 0; i < warm; i++) await runner.run(test.x.subarray(i * per, (i + 1) * per), 1, shape);
    const t0 = performance.now();
    for (let i = 0; i < nLat; i++) await runner.run(test.x.subarray(i * per, (i + 1) * per), 1, shape);
    const latencyMs = nLat > 0 ? (performance.now() - t0) / nLat : 0;

    let bytes = 0;
    let gzipBytes = 0;
    for (const f of exported.files) {
      const d = await readFile(join(exported.dir, f));
      bytes += d.length;
      gzipBytes += gzipSync(d, { level: 9 }).length;
    }
    const result: VerifyResult = { agreement: test.n ? agree / test.n : 1, maxAbsDiff, accuracy: test.n ? correct / test.n : 0, bytes, gzipBytes, latencyMs, runtime: runner.runtime };
    Object.assign(result, await targetFor(exported.target, exported.precision).facts(readExport(exported), exported.precision));
    const threshold = opts.threshold ?? defaultThreshold(exported.precision);
    if (result.agreement < threshold) {
      throw new Error(
        `${exported.target} ${exported.precision} export in ${exported.dir} agrees with the reference on ${(result.agreement * 100).toFixed(2)}% of ${test.n} samples (threshold ${(threshold * 100).toFixed(2)}%, max |diff| ${maxAbsDiff.toExponential(2)}) in ${runner.runtime}`,
      );
    }
    return result;
  } finally {
    runner.dispose();
  }
}
