import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import type * as tfType from '@tensorflow/tfjs';
import type { Dataset } from '../data/dataset.js';
import type { ModelMeta } from '../model/meta.js';
import { concatFloat32 } from '../util/ndarray.js';
import { INT4_QMAX } from './quant.js';
import { ExportError } from './errors.js';
import { compareOutputs, gateFailure, type AgreementReport } from './agreement.js';
import type { LayerError } from './layer-error.js';
export { worstLayer, type LayerError } from './layer-error.js';
import { worstLayer as worstLayerOf } from './layer-error.js';
import type { Int8Options } from './int8-options.js';
import { EXPORT_TARGETS, exportTarget, type ExportPrecision, type ExportTarget, type ExportTargetEntry } from './targets.js';
import type { Runner } from './verify/runners.js';
import { runtimeOutputs } from './verify/outputs.js';

const gzipAsync = promisify(gzip);
import { batchWithin, walkBatchSize } from '../engine/batching.js';
import { inferencePlan } from '../engine/inference.js';
import { shapeSize } from './ir.js';

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
  /** Full int8: calibration method, equalization, bias correction (int8-prep.ts). */
  int8?: Int8Options;
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
  const { gzipBytes, ...written } = await writeExport(tf, model, meta, opts, outDir);
  return { ...written, gzipBytes: await gzipBytes };
}

/**
 * exportModel with the gzip -9 size still to come: it is computed in libuv's thread pool (zlib's async gzip,
 * the same bytes as gzipSync), so a caller can run the layer-error report and the verification meanwhile
 * (gzip -9 of a 14 MB float32 shard takes seconds).
 */
export async function writeExport(
  tf: typeof tfType,
  model: tfType.LayersModel,
  meta: ModelMeta,
  opts: ExportOptions,
  outDir: string,
): Promise<Omit<ExportResult, 'gzipBytes'> & { gzipBytes: Promise<number> }> {
  const entry = targetFor(opts.target, opts.precision);
  await mkdir(outDir, { recursive: true });
  const written = await entry.write({ tf, model, meta, calibration: opts.calibration, calibrationShape: opts.calibrationShape, perChannel: opts.perChannel, storage: opts.storage, int8: opts.int8 }, opts.precision);
  let bytes = 0;
  for (const [name, data] of written) {
    await writeFile(join(outDir, name), data);
    bytes += data.length;
  }
  const sizes = Promise.all(written.map(([, data]) => gzipAsync(data, { level: 9 }).then((z) => z.length)));
  // (Awaited by the caller; a rejection before that must not count as unhandled.)
  sizes.catch(() => undefined);
  return { files: written.map(([n]) => n), bytes, gzipBytes: sizes.then((s) => s.reduce((a, b) => a + b, 0)) };
}

export interface ExportedModel {
  target: ExportTarget;
  precision: ExportPrecision;
  dir: string;
  files: string[];
}

export interface VerifyResult extends AgreementReport {
  /** Per sample, in the target runtime, batch 1, mean over up to 100 samples after warmup (fewer once 10 took 2 s: util/latency.ts); the verification's own first runs. */
  latencyMs: number;
  runtime: string;
  /** What the outputs were compared with when it is not the float model (int4: its fake-quantized weights). */
  reference?: string;
  /** ONNX int8 only: the quantized op types onnxruntime's 'extended' optimisation fused the graph into. */
  quantizedOps?: string[];
}

export function defaultThreshold(precision: ExportPrecision): number {
  return precision === 'int8' || precision === 'uint8' || precision === 'dynamic-int8' ? 0.99 : 0.999;
}

/**
 * The check an export passes without an explicit threshold: agreement on the samples whose float margin
 * exceeds the quantization noise (defaultThreshold) and an accuracy loss of at most 1 point (0.2 float).
 */
export function defaultGate(precision: ExportPrecision): { confidentThreshold: number; maxAccuracyDrop: number } {
  const quantized = precision === 'int8' || precision === 'uint8' || precision === 'dynamic-int8';
  return { confidentThreshold: defaultThreshold(precision), maxAccuracyDrop: quantized ? 0.01 : 0.002 };
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

/**
 * Precisions checked against the model their integers compute (the IR with fake-quantized weights), not the
 * float model: what the file is meant to compute. (int8 keeps the float reference: its gate measures the damage.)
 */
const FAKE_QUANT_REFERENCE: Partial<Record<ExportPrecision, { qmax: number; label: string }>> = {
  int4: { qmax: INT4_QMAX, label: 'fake-quantized int4 weights' },
};

/** Reference outputs of one batch, from the engine: its inference plan of the model, or the IR with fake-quantized weights. */
interface Reference {
  predict(x: tfType.Tensor): tfType.Tensor;
  /** Samples per batch: bounded by the activations of the widest layer (the walk frees each tensor after its last reader). */
  batch: number;
  dispose(): void;
}

/** The reference: the model as the engine runs it (engine/inference.ts), or its IR with fake-quantized weights (FAKE_QUANT_REFERENCE). */
async function referenceFor(
  tf: typeof tfType,
  exported: ExportedModel,
  model: tfType.LayersModel,
  opts: { meta?: ModelMeta; perChannel?: boolean },
): Promise<Reference> {
  const fq = FAKE_QUANT_REFERENCE[exported.precision];
  if (!fq) {
    const plan = inferencePlan(tf, model);
    return { predict: (x) => plan.predict(x), batch: walkBatchSize(model, REFERENCE_BATCH), dispose: () => plan.dispose() };
  }
  const [{ buildIr }, { fakeQuantizedIr, irBytesPerSample, runIr }, { emptyMeta }] = await Promise.all([import('./ir.js'), import('./quant.js'), import('../model/meta.js')]);
  const ir = fakeQuantizedIr(buildIr(model, exported.target), opts.meta ?? emptyMeta(), opts.perChannel ?? true, fq.qmax);
  return { predict: (x) => runIr(tf, ir, x), batch: batchWithin(irBytesPerSample(ir), REFERENCE_BATCH), dispose: () => undefined };
}

/** Largest batch the reference runs (fewer where the activations would not fit the engine's budget). */
const REFERENCE_BATCH = 64;

/** The reference outputs of every test sample, batch by batch. */
async function referenceOutputs(tf: typeof tfType, exported: ExportedModel, model: tfType.LayersModel, test: Dataset, shape: number[], opts: { meta?: ModelMeta; perChannel?: boolean }): Promise<Float32Array> {
  const per = shapeSize(shape);
  const ref = await referenceFor(tf, exported, model, opts);
  try {
    const parts: Float32Array[] = [];
    for (let s = 0; s < test.n; s += ref.batch) {
      const m = Math.min(ref.batch, test.n - s);
      const x = tf.tensor(test.x.subarray(s * per, (s + m) * per), [m, ...shape]);
      const y = ref.predict(x);
      parts.push(Float32Array.from(y.dataSync() as Float32Array));
      tf.dispose([x, y]);
    }
    return concatFloat32(parts);
  } finally {
    ref.dispose();
  }
}

/**
 * Loads the export in its real runtime (LiteRT, onnxruntime-node, tf.loadLayersModel), runs the
 * test set, and compares with the reference model (agreement.ts). Throws when top-1 agreement is below
 * `opts.threshold`, or, without one, when the default gate fails (defaultGate: agreement on samples whose
 * float margin exceeds the quantization noise, and the accuracy loss); the message names the worst layer of
 * `opts.layerErrors` (exportLayerErrors) when given.
 */
export async function verifyExport(
  tf: typeof tfType,
  exported: ExportedModel,
  reference: tfType.LayersModel,
  test: Dataset,
  opts: { threshold?: number; meta?: ModelMeta; perChannel?: boolean; layerErrors?: LayerError[] } = {},
): Promise<VerifyResult> {
  const shape = (reference.inputs[0].shape.slice(1) as number[]);
  if (shapeSize(shape) * test.n !== test.x.length) throw new Error(`test samples of shape [${test.sampleShape}] do not fit the model input [${shape}]`);
  const refOut = await referenceOutputs(tf, exported, reference, test, shape, opts);

  const runner = await openRunner(tf, exported);
  try {
    // Bounded batches (engine/batching.ts): at 224x224 a MobileNet holds megabytes per sample in each runtime. Each
    // frees an activation after its last reader (tfjs-layers' execute, onnxruntime's memory plan), so the bound is
    // the widest layer's, as for the reference (MobileNetV2: 4; tfjs runs it at ~60 ms a sample against ~90 at 1).
    const { out, latencyMs } = await runtimeOutputs(runner, test, shape, walkBatchSize(reference, REFERENCE_BATCH));
    if (out.length !== refOut.length) throw new Error(`${runner.runtime} returned ${out.length} values, expected ${refOut.length}`);

    const cmp = compareOutputs(refOut, out, test.y, test.n);
    const result: VerifyResult = { ...cmp, latencyMs, runtime: runner.runtime, ...(FAKE_QUANT_REFERENCE[exported.precision] ? { reference: FAKE_QUANT_REFERENCE[exported.precision]!.label } : {}) };
    Object.assign(result, await targetFor(exported.target, exported.precision).facts(readExport(exported), exported.precision));
    const failure = gateFailure(cmp, { threshold: opts.threshold, ...defaultGate(exported.precision) });
    if (failure) {
      // (Against a fake-quantized reference the file itself is off, not a layer's quantization: no worst layer.)
      const worst = opts.layerErrors && !FAKE_QUANT_REFERENCE[exported.precision] ? worstLayerOf(opts.layerErrors) : undefined;
      const where = worst ? `; worst layer in the simulated ${exported.precision} run: '${worst.layer}' (${worst.op}, SNR ${worst.snrDb.toFixed(1)} dB, ${worst.snrDropDb.toFixed(1)} dB below its input)` : '';
      // The check's numbers ride on the error: the export stage records them for the failed row.
      throw Object.assign(new Error(`${exported.target} ${exported.precision} export in ${exported.dir} fails its check on ${test.n} samples in ${runner.runtime}: ${failure} (max |diff| ${cmp.maxAbsDiff.toExponential(2)})${where}`), { check: result });
    }
    return result;
  } finally {
    runner.dispose();
  }
}

/** A per-layer error report and the samples it was measured on. */
export interface LayerErrorReport {
  layers: LayerError[];
  samples: number;
}

/**
 * The simulated per-layer error of an int8 / dynamic-int8 / int4 export (layer-error.ts) on up to `n` samples of `x`
 * (fewer for a large graph: layerErrorSampleCount), with the same weights, scales and activation ranges the exporter
 * writes; undefined for other precisions.
 */
export async function exportLayerErrors(
  tf: typeof tfType,
  model: tfType.LayersModel,
  meta: ModelMeta,
  opts: ExportOptions,
  x: Float32Array,
  n: number,
): Promise<LayerErrorReport | undefined> {
  const full = opts.precision === 'int8';
  if (!full && opts.precision !== 'dynamic-int8' && opts.precision !== 'int4') return undefined;
  const entry = targetFor(opts.target, opts.precision);
  if (!entry.int8Graph) return undefined;
  const { simulatedLayerErrors, layerErrorSampleCount } = await import('./layer-error.js');
  const perChannel = opts.perChannel ?? true;
  if (full) {
    const g = await entry.int8Graph({ tf, model, meta, calibration: opts.calibration, calibrationShape: opts.calibrationShape, perChannel, int8: opts.int8 });
    const samples = layerErrorSampleCount(g.ir, n);
    return { layers: simulatedLayerErrors(tf, g.ir, meta, { activations: true, perChannel, ranges: g.ranges, weightQmax: g.weightQmax, reference: g.float }, x, samples), samples };
  }
  const { buildIr } = await import('./ir.js');
  const ir = buildIr(model, opts.target);
  const samples = layerErrorSampleCount(ir, n);
  // Weight-only: dynamic-int8 on the int8 grid, int4 on the 4-bit one (float activations in both).
  const weightQmax = opts.precision === 'int4' ? INT4_QMAX : 127;
  return { layers: simulatedLayerErrors(tf, ir, meta, { activations: false, perChannel, weightQmax: () => weightQmax }, x, samples), samples };
}
