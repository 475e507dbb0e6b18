import type * as tfType from '@tensorflow/tfjs';
import type { ModelMeta } from '../model/meta.js';
import type { IrGraph, IrOp } from './ir.js';
import { activationParams, fakeQuantizedIr, runIr, type Range } from './quant.js';

/**
 * Per-layer error of int8, in the manner of AI Edge Quantizer's validate: the IR run in float and again with
 * int8 weights (the integers the exporter writes) and, for full int8, every op output rounded to its int8 grid
 * (the activation ranges the exporter writes). Errors accumulate as they do in the file. Per op output:
 *   snrDb   10·log10(Σ float² / Σ (int8 − float)²)   (higher is better; < ~10 dB is damage)
 *   cosine  cosine similarity of the two outputs
 * A simulation in float arithmetic, not the runtime's kernels: it tells which layer breaks int8.
 */
export interface LayerError {
  layer: string;
  op: string;
  snrDb: number;
  cosine: number;
}

/** Ops whose int8 output has a fixed grid or keeps its input's (no rounding of their own to simulate). */
const KEEPS_GRID = new Set<IrOp['kind']>(['maxpool', 'reshape', 'softmax', 'sigmoid', 'tanh']);

export function simulatedLayerErrors(
  tf: typeof tfType,
  ir: IrGraph,
  meta: ModelMeta,
  opts: { activations: boolean; perChannel: boolean; ranges?: Range[] },
  x: Float32Array,
  n: number,
): LayerError[] {
  // Weights on their int8 grid, as written.
  const qir = fakeQuantizedIr(ir, meta, opts.perChannel);
  const fakeQuant = (op: IrOp, y: tfType.Tensor): tfType.Tensor => {
    if (!opts.activations || !opts.ranges || KEEPS_GRID.has(op.kind)) return y;
    const r = opts.ranges[op.output];
    const p = activationParams(r.min, r.max, -128, 127);
    return tf.mul(tf.sub(tf.clipByValue(tf.add(tf.round(tf.div(y, p.scale)), p.zeroPoint), -128, 127), p.zeroPoint), p.scale);
  };
  const shape = ir.tensors[ir.input].shape;
  const input = tf.tensor(x.subarray(0, n * shape.reduce((a, b) => a * b, 1)), [n, ...shape]);
  const float = runIr(tf, ir, input);
  const quant = runIr(tf, qir, input, 'all', fakeQuant);
  const out: LayerError[] = [];
  for (const op of ir.ops) {
    const a = float.get(op.output)!.dataSync();
    const b = quant.get(op.output)!.dataSync();
    let sig = 0;
    let err = 0;
    let dot = 0;
    let nb = 0;
    for (let i = 0; i < a.length; i++) {
      sig += a[i] * a[i];
      err += (b[i] - a[i]) ** 2;
      dot += a[i] * b[i];
      nb += b[i] * b[i];
    }
    out.push({
      layer: ir.tensors[op.output].layer,
      op: op.kind,
      snrDb: err > 0 && sig > 0 ? Math.min(200, 10 * Math.log10(sig / err)) : 200, // 200 dB: exact
      cosine: sig > 0 && nb > 0 ? dot / Math.sqrt(sig * nb) : 1,
    });
  }
  for (const t of float.values()) if (t !== input) t.dispose();
  for (const t of quant.values()) if (t !== input) t.dispose();
  input.dispose();
  return out;
}

/** The layer with the lowest SNR (the one to look at first). */
export function worstLayer(errors: LayerError[]): LayerError | undefined {
  return errors.reduce<LayerError | undefined>((w, e) => (!w || e.snrDb < w.snrDb ? e : w), undefined);
}
