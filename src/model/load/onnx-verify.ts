import type * as tfType from '@tensorflow/tfjs';
import { ortVersion } from '../../export/verify/runners.js';
import { createRng } from '../../util/rng.js';
import type { ImportInfo } from './onnx-convert.js';
import { transpose } from './onnx-fold.js';
import { concatFloat32 } from '../../util/ndarray.js';

/**
 * Import verification: the original file runs in its reference runtime (onnxruntime-node for .onnx,
 * tfjs's graph executor for a TF.js graph model) and the imported model in tfjs on the same inputs;
 * the largest absolute difference, relative to the largest absolute reference output, must stay
 * within the tolerance.
 */
export interface ImportCheck {
  runtime: string;
  samples: number;
  /** Where the inputs came from: a recipe dataset, or seeded standard-normal values. */
  inputs: string;
  maxAbsDiff: number;
  /** max |reference output|: the scale the difference is measured against. */
  outputScale: number;
  /** maxAbsDiff / max(outputScale, 1e-6). */
  relativeDiff: number;
  tolerance: number;
  passed: boolean;
}

export const DEFAULT_IMPORT_TOLERANCE = 1e-4;

/** Seeded standard-normal samples in the model's (Keras) input layout. */
export function randomInputs(shape: number[], n: number, seed: number): Float32Array {
  const rng = createRng(seed);
  const x = new Float32Array(n * shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < x.length; i += 2) {
    const u = Math.max(rng(), 1e-12);
    const v = rng();
    const r = Math.sqrt(-2 * Math.log(u));
    x[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < x.length) x[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return x;
}

/**
 * Runs `file` in onnxruntime and `model` in tfjs on `x` (n samples in the Keras input layout:
 * NHWC for images) and compares the outputs in ONNX layout.
 */
export async function checkImport(tf: typeof tfType, model: tfType.LayersModel, info: ImportInfo, file: string, x: Float32Array, n: number, opts: { tolerance?: number; inputs: string }): Promise<ImportCheck> {
  const kerasShape = (model.inputs[0].shape.slice(1) as number[]);
  const onnxIn = info.inputLayout === 'nchw' ? transpose(x, [n, ...kerasShape], [0, 3, 1, 2]).data : x;
  const ref = await runOrt(file, info, onnxIn, n, info.inputShape.slice(1));
  const y = tf.tidy(() => model.predict(tf.tensor(x, [n, ...kerasShape])) as tfType.Tensor);
  let got = Float32Array.from(await y.data() as Float32Array);
  const yShape = y.shape;
  y.dispose();
  if (info.outputLayout === 'nhwc') got = transpose(got, yShape as number[], [0, 3, 1, 2]).data;
  return compareOutputs(got, ref, { runtime: `onnxruntime-node@${ortVersion()}`, samples: n, inputs: opts.inputs, tolerance: opts.tolerance });
}

/** The check's numbers for `got` (the imported model's outputs) against `ref` (the reference runtime's), in one element order. */
export function compareOutputs(got: Float32Array, ref: Float32Array, o: { runtime: string; samples: number; inputs: string; tolerance?: number }): ImportCheck {
  if (got.length !== ref.length) throw new Error(`the imported model gives ${got.length} output values, ${o.runtime} ${ref.length}`);
  let maxAbsDiff = 0;
  let outputScale = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    maxAbsDiff = Number.isNaN(d) ? Infinity : Math.max(maxAbsDiff, d);
    outputScale = Math.max(outputScale, Math.abs(ref[i]));
  }
  const tolerance = o.tolerance ?? DEFAULT_IMPORT_TOLERANCE;
  const relativeDiff = maxAbsDiff / Math.max(outputScale, 1e-6);
  return { runtime: o.runtime, samples: o.samples, inputs: o.inputs, maxAbsDiff, outputScale, relativeDiff, tolerance, passed: relativeDiff <= tolerance };
}

async function runOrt(file: string, info: ImportInfo, x: Float32Array, n: number, shape: number[]): Promise<Float32Array> {
  const ort = await import('onnxruntime-node');
  // logSeverityLevel 3 (errors only): onnxruntime's warnings about the user's file (initializers listed
  // as graph inputs, as older exporters wrote them) went to the terminal as raw colored log lines.
  const session = await ort.InferenceSession.create(file, { graphOptimizationLevel: 'disabled', intraOpNumThreads: 1, interOpNumThreads: 1, executionProviders: ['cpu'], logSeverityLevel: 3 });
  try {
    const per = shape.reduce((a, b) => a * b, 1);
    const batch = info.fixedBatch ?? n;
    if (n % batch !== 0) throw new Error(`the ONNX model takes batches of exactly ${batch}; ${n} samples do not divide into them`);
    const outs: Float32Array[] = [];
    for (let i = 0; i < n; i += batch) {
      const res = await session.run({ [info.inputName]: new ort.Tensor('float32', x.slice(i * per, (i + batch) * per), [batch, ...shape]) });
      outs.push(Float32Array.from(res[info.outputName].data as Float32Array));
    }
    return concatFloat32(outs);
  } finally {
    await session.release();
  }
}
