import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import onnxProto from 'onnx-proto';
import type * as tfType from '@tensorflow/tfjs';
import type { Dataset } from '../data/dataset.js';
import type { ModelMeta } from '../model/meta.js';
import { ExportError } from './errors.js';
import { buildIr } from './graph.js';
import { irToOnnx } from './onnx/export.js';
import { tensorRanges } from './quant.js';
import { tfjsArtifacts, TFJS_MODEL_JSON, TFJS_SHARD } from './tfjs/export.js';
import { irToTflite } from './tflite/export.js';
import { onnxRunner, tfjsRunner, tfliteRunner, type Runner } from './verify/runners.js';

export { ExportError } from './errors.js';
export { buildIr, type IrGraph, type IrOp } from './graph.js';

export type ExportTarget = 'tflite' | 'onnx' | 'tfjs';
export type ExportPrecision = 'float32' | 'float16' | 'dynamic-int8' | 'int8' | 'uint8' | 'uint16';

export interface ExportOptions {
  target: ExportTarget;
  precision: ExportPrecision;
  /** Representative input samples, row-major, for int8 activation ranges when meta.activationRanges lacks them. */
  calibration?: Float32Array;
  calibrationShape?: number[];
}

export interface ExportResult {
  /** Relative to outDir. */
  files: string[];
  bytes: number;
  gzipBytes: number;
}

/** Which precisions each target writes. */
export const SUPPORTED_PRECISIONS: Record<ExportTarget, readonly ExportPrecision[]> = {
  tflite: ['float32', 'float16', 'dynamic-int8', 'int8'],
  onnx: ['float32', 'int8'],
  tfjs: ['float32', 'float16', 'uint8', 'uint16'],
};

export const TFLITE_FILE = 'model.tflite';
export const ONNX_FILE = 'model.onnx';

function checkPrecision(target: ExportTarget, precision: ExportPrecision): void {
  const ok = SUPPORTED_PRECISIONS[target];
  if (!ok) throw new ExportError(String(target), undefined, `unknown target; use one of ${Object.keys(SUPPORTED_PRECISIONS).join(', ')}`);
  if (!ok.includes(precision)) {
    throw new ExportError(target, undefined, `precision '${precision}' is not supported; use one of ${ok.join(', ')}`);
  }
}

/** Writes `model` for `opts.target` in `opts.precision` into outDir. */
export async function exportModel(
  tf: typeof tfType,
  model: tfType.LayersModel,
  meta: ModelMeta,
  opts: ExportOptions,
  outDir: string,
): Promise<ExportResult> {
  checkPrecision(opts.target, opts.precision);
  await mkdir(outDir, { recursive: true });
  const written: Array<[string, Uint8Array]> = [];
  if (opts.target === 'tfjs') {
    const { modelJson, shard } = await tfjsArtifacts(tf, model, opts.precision as 'float32');
    written.push([TFJS_MODEL_JSON, new TextEncoder().encode(JSON.stringify(modelJson))], [TFJS_SHARD, shard]);
  } else {
    const ir = buildIr(model, opts.target);
    const int8 = opts.precision === 'int8';
    const ranges = int8 ? tensorRanges(tf, ir, meta, opts.target, opts.calibration, opts.calibrationShape) : undefined;
    if (opts.target === 'tflite') {
      const { bytes } = irToTflite(ir, meta, opts.precision as 'float32', ranges);
      written.push([TFLITE_FILE, bytes]);
    } else {
      const { bytes } = irToOnnx(ir, meta, opts.precision as 'float32', ranges);
      written.push([ONNX_FILE, bytes]);
    }
  }
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

async function openRunner(tf: typeof tfType, exported: ExportedModel): Promise<Runner> {
  const file = (name: string) => {
    if (!exported.files.includes(name)) throw new Error(`export in ${exported.dir} has no ${name} (files: ${exported.files.join(', ')})`);
    return readFile(join(exported.dir, name));
  };
  if (exported.target === 'tflite') return tfliteRunner(new Uint8Array(await file(TFLITE_FILE)));
  if (exported.target === 'onnx') return onnxRunner(new Uint8Array(await file(ONNX_FILE)));
  const modelJson = JSON.parse((await file(TFJS_MODEL_JSON)).toString('utf8'));
  return tfjsRunner(tf, modelJson, new Uint8Array(await file(TFJS_SHARD)));
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
    if (exported.target === 'onnx' && exported.precision === 'int8') {
      const ops = await onnxOptimizedOpTypes(await readFile(join(exported.dir, ONNX_FILE)));
      result.quantizedOps = [...new Set(ops.filter((t) => /QLinear|QGemm|MatMulInteger|ConvInteger/.test(t)))].sort();
    }
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

/**
 * The op types (domain-prefixed when not the default domain, e.g. 'com.microsoft:QGemm') of the
 * model onnxruntime-node produces at the given optimisation level.
 */
export async function onnxOptimizedOpTypes(model: Uint8Array, level: 'basic' | 'extended' | 'all' = 'extended'): Promise<string[]> {
  const ort = await import('onnxruntime-node');
  const dir = await mkdtemp(join(tmpdir(), 'compress-onnx-'));
  const path = join(dir, 'optimized.onnx');
  try {
    const session = await ort.InferenceSession.create(model, { graphOptimizationLevel: level, optimizedModelFilePath: path, intraOpNumThreads: 1 });
    await session.release();
    const m = onnxProto.onnx.ModelProto.decode(await readFile(path));
    return (m.graph?.node ?? []).map((n) => (n.domain ? `${n.domain}:${n.opType}` : (n.opType as string)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
