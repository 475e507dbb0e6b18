import type * as tfType from '@tensorflow/tfjs';
import type { ModelMeta } from '../model/meta.js';
import type { IrGraph, IrOp, WeightOp } from './ir.js';
import { batchWithin } from '../engine/batching.js';
import { diffSums } from '../compression/tensor-stats.js';
import { shapeSize } from './ir.js';
import { activationParams, closeWalk, fakeQuantizedIr, irBytesPerSample, irSteps, irWeights, type Range } from './quant.js';

/**
 * Per-layer error of int8, in the manner of AI Edge Quantizer's validate: the IR run in float and again with
 * int8 weights (the integers the exporter writes) and, for full int8, every op output rounded to its int8 grid
 * (the activation ranges the exporter writes). Errors accumulate as they do in the file. Per op output:
 *   snrDb   10·log10(Σ float² / Σ (int8 − float)²)   (higher is better; < ~10 dB is damage)
 *   cosine  cosine similarity of the two outputs
 *   snrDropDb  how much lower its SNR is than its inputs' (the lowest of them; the model input is exact)
 * Errors accumulate through the network, so the lowest SNR is usually near the end; the layer that does the
 * damage is the one that adds the most relative noise power (10^(−SNR/10) minus its input's): worstLayer.
 * A simulation in float arithmetic, not the runtime's kernels: it tells which layer breaks int8.
 */
export interface LayerError {
  layer: string;
  op: string;
  snrDb: number;
  cosine: number;
  snrDropDb: number;
}

/** Ops whose int8 output has a fixed grid or keeps its input's (no rounding of their own to simulate). */
const KEEPS_GRID = new Set<IrOp['kind']>(['maxpool', 'reshape', 'softmax', 'sigmoid', 'tanh']);

/** The int8 weight grid of an op in a target: the largest integer magnitude (TFLite 127; ONNX 63 but depthwise 127). */
export type WeightQmax = (op: WeightOp) => number;

/** Rounds an op's output to its int8 activation grid (ops that keep their input's grid or have a fixed one pass). */
export function activationFakeQuant(tf: typeof tfType, ranges: Range[]): (op: IrOp, y: tfType.Tensor) => tfType.Tensor {
  return (op, y) => {
    if (KEEPS_GRID.has(op.kind)) return y;
    const r = ranges[op.output];
    const p = activationParams(r.min, r.max, -128, 127);
    // (round(y / s) + z clipped to [-128, 127], minus z) is round(y / s) clipped to [-128 - z, 127 - z]: the
    // same integers (z is one), two fewer passes over the tensor.
    return tf.mul(tf.clipByValue(tf.round(tf.div(y, p.scale)), -128 - p.zeroPoint, 127 - p.zeroPoint), p.scale);
  };
}

/** Activation values (every op output of every sample) a per-layer error report walks at most, beyond its minimum samples. */
export const LAYER_ERROR_VALUES = 1e8;
/** Samples a per-layer error report takes at least (when there are as many). */
export const LAYER_ERROR_MIN_SAMPLES = 16;

/**
 * Samples for a per-layer error report of `ir`: `requested`, fewer for a large graph (as many as keep its op
 * outputs within LAYER_ERROR_VALUES, at least LAYER_ERROR_MIN_SAMPLES). A MobileNetV2 at 224x224 has 7M values per
 * sample: 16 samples, whose per-layer SNRs were within 0.31 dB of 64 samples' (same worst layer); a LeNet keeps 64.
 */
export function layerErrorSampleCount(ir: IrGraph, requested: number): number {
  const values = ir.ops.reduce((a, op) => a + shapeSize(ir.tensors[op.output].shape), 0);
  const fit = Math.max(LAYER_ERROR_MIN_SAMPLES, Math.floor(LAYER_ERROR_VALUES / Math.max(1, values)));
  return Math.max(0, Math.min(requested, fit));
}

export function simulatedLayerErrors(
  tf: typeof tfType,
  ir: IrGraph,
  meta: ModelMeta,
  opts: { activations: boolean; perChannel: boolean; ranges?: Range[]; weightQmax?: WeightQmax; reference?: IrGraph },
  x: Float32Array,
  n: number,
): LayerError[] {
  // Weights on their int8 grid, as written.
  const qir = fakeQuantizedIr(ir, meta, opts.perChannel, opts.weightQmax ?? 127);
  const fq = opts.activations && opts.ranges ? activationFakeQuant(tf, opts.ranges) : undefined;
  const fakeQuant = (op: IrOp, y: tfType.Tensor): tfType.Tensor => (fq ? fq(op, y) : y);
  // The float walk: `reference` when the written graph's biases were corrected for int8 (same tensors, the model's values).
  const floatIr = opts.reference ?? ir;
  const shape = ir.tensors[ir.input].shape;
  const per = shapeSize(shape);
  // Streaming: the float and int8 walks step side by side over bounded batches, each op's two outputs
  // reduced as they are produced (float64 sums in sample order, as over the whole set at once).
  const sums = ir.ops.map(() => ({ sig: 0, err: 0, dot: 0, nb: 0 }));
  const batch = batchWithin(2 * irBytesPerSample(ir), 64);
  const floatWeights = irWeights(tf, floatIr);
  const quantWeights = irWeights(tf, qir);
  try {
    for (let s = 0; s < n; s += batch) {
      const m = Math.min(batch, n - s);
      const input = tf.tensor(x.subarray(s * per, (s + m) * per), [m, ...shape]);
      const float = irSteps(tf, floatIr, input, { weights: floatWeights });
      const quant = irSteps(tf, qir, input, { weights: quantWeights, after: fakeQuant });
      try {
        for (let i = 0; ; i++) {
          const f = float.next();
          const q = quant.next();
          if (f.done || q.done) {
            if (f.done) f.value.dispose();
            if (q.done) q.value.dispose();
            break;
          }
          accumulate(tf, sums[i], f.value.y, q.value.y);
        }
      } finally {
        closeWalk(float);
        closeWalk(quant);
        input.dispose();
      }
    }
  } finally {
    floatWeights.dispose();
    quantWeights.dispose();
  }
  const snrOf = new Map<number, number>();
  return ir.ops.map((op, i) => {
    const { sig, err, dot, nb } = sums[i];
    const snrDb = err > 0 && sig > 0 ? Math.min(EXACT_DB, 10 * Math.log10(sig / err)) : EXACT_DB;
    const inputDb = Math.min(EXACT_DB, ...op.inputs.map((t) => snrOf.get(t) ?? EXACT_DB));
    snrOf.set(op.output, snrDb);
    return {
      layer: ir.tensors[op.output].layer,
      op: op.kind,
      snrDb,
      cosine: sig > 0 && nb > 0 ? dot / Math.sqrt(sig * nb) : 1,
      snrDropDb: Math.max(0, inputDb - snrDb),
    };
  });
}

/**
 * Adds one batch of an op's float (`a`) and int8 (`b`) outputs to its sums, in float64: Σa² and Σ(b−a)² in one SIMD
 * pass where the tensors lie (compression/tensor-stats.ts: no copy out of the engine), Σb² in another, and
 * Σab = (Σa² + Σb² − Σ(b−a)²) / 2.
 */
function accumulate(tf: typeof tfType, acc: { sig: number; err: number; dot: number; nb: number }, a: tfType.Tensor, b: tfType.Tensor): void {
  const d = diffSums(tf, a, b);
  const nb = diffSums(tf, b, b).refSq;
  acc.sig += d.refSq;
  acc.err += d.errSq;
  acc.nb += nb;
  acc.dot += (d.refSq + nb - d.errSq) / 2;
}

/** The SNR of an exact output (no error at all). */
const EXACT_DB = 200;

/** The layer to look at first: the one that adds the most relative noise power (see above; ties: the lower SNR). */
export function worstLayer(errors: LayerError[]): LayerError | undefined {
  const added = (e: LayerError) => 10 ** (-e.snrDb / 10) - 10 ** (-(e.snrDb + e.snrDropDb) / 10);
  return errors.reduce<LayerError | undefined>((w, e) => (!w || added(e) > added(w) || (added(e) === added(w) && e.snrDb < w.snrDb) ? e : w), undefined);
}
