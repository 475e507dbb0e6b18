import type * as tfType from '@tensorflow/tfjs';
import type { ModelMeta } from '../model/meta.js';
import type { Int8Options } from './int8-options.js';
import { histogramQuantMse, rangeFromStat, type CalibrationMethod } from '../compression/calibrate.js';
import type { ConvOp, IrGraph, IrOp, WeightOp } from './ir.js';
import { activationFakeQuant, type WeightQmax } from './layer-error.js';
import { batchWithin } from '../engine/batching.js';
import { fakeQuantizedIr, forEachCalibrationBatch, irBytesPerSample, irWeights, outChannels, runOp, tensorRanges, tensorStats, type Range } from './quant.js';

/**
 * Preparing the float graph for full int8 (post-training quantization without retraining), in the order it runs:
 *
 *   equalization    cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization") of conv/depthwise ->
 *                   conv/depthwise pairs: output channel c of the first op divided by s_c, input channel c of the
 *                   second multiplied by s_c, so the function is unchanged (ReLU is positively homogeneous), with
 *                   s_c balancing the two ops' channel weight ranges (the paper's rule). It is what makes
 *                   per-tensor weights usable on depthwise convs; with per-channel weights it measured no gain
 *                   (bench/int8.ts), so it is on by default only for perChannel: false. ReLU6 is not homogeneous:
 *                   a channel that reaches 6 on the calibration samples keeps s_c = 1, the others take
 *                   s_c >= max_c / 6 so they stay below the clamp (exact on the calibration data; AIMET replaces
 *                   ReLU6 by ReLU instead, which changes the model).
 *   calibration     activation ranges of the (BatchNorm-folded, equalized) graph by minmax / percentile / mse / kl
 *                   (compression/calibrate.ts), or auto: per tensor the candidate with the least expected int8
 *                   error over its histogram, except the logits and output, which keep minmax (clipping them
 *                   merges the top classes).
 *   biasCorrection  empirical bias correction (Nagel et al. 2019 §4.2): the mean per-channel error that int8
 *                   weights and activations add to each conv / dense pre-activation, measured on the calibration
 *                   samples with the upstream layers already corrected, subtracted from its bias.
 *
 * Agreement before / after each step on MNIST-trained dw-cnn and MobileNetV2-style nets: bench/int8.ts.
 * The recipe options: ./int8-options.ts.
 */
export interface Int8PrepInput {
  calibration?: Float32Array;
  calibrationShape?: number[];
  perChannel: boolean;
  int8?: Int8Options;
  weightQmax: WeightQmax;
}

export interface PreparedInt8 {
  /** The graph the int8 file is written from. */
  ir: IrGraph;
  /** Its float reference: the same graph before bias correction (the model's function; equalized tensors scaled alike). */
  float: IrGraph;
  ranges: Range[];
  /** What was done, one line each (for notes / logs). */
  steps: string[];
}

/** Samples the output-driven steps (auto calibration, bias correction) run on. */
const BIAS_SAMPLES = 256;

export function prepareInt8(tf: typeof tfType, ir: IrGraph, meta: ModelMeta, target: string, input: Int8PrepInput): PreparedInt8 {
  const o: Int8Options = input.int8 ?? {};
  const method = o.calibration?.method ?? 'auto';
  const percentile = o.calibration?.percentile ?? 99.99;
  const steps: string[] = [];
  const calib = input.calibration && input.calibration.length ? input.calibration : undefined;
  let g = ir;
  let stale = new Set<number>();
  if (o.equalization ?? !input.perChannel) {
    const eq = equalize(tf, g, calib);
    g = eq.ir;
    stale = eq.rescaled;
    if (eq.pairs) steps.push(`equalization: ${eq.pairs} conv pair(s) rescaled`);
  }
  let ranges: Range[];
  if (method === 'auto' && calib) {
    const auto = autoRanges(tf, g, meta, target, calib, input.calibrationShape, stale, percentile);
    ranges = auto.ranges;
    steps.push(`calibration: auto (${Object.entries(auto.picked).map(([m, k]) => `${m} ${k}`).join(', ')}; decision tensors minmax)`);
  } else {
    const rule = { method: method === 'auto' ? 'minmax' : method, percentile };
    ranges = tensorRanges(tf, g, meta, target, input.calibration, input.calibrationShape, { rule, stale, fullRange: decisionTensors(g) });
    steps.push(`calibration: ${rule.method}${rule.method === 'minmax' ? '' : ' (decision tensors minmax)'}`);
  }
  const float = g;
  if ((o.biasCorrection ?? true) && calib) {
    g = correctBiases(tf, g, meta, ranges, calib, input);
    steps.push('bias correction');
  }
  return { ir: g, float, ranges, steps };
}

// ---- cross-layer equalization ------------------------------------------------------------------

/** Pairs (producer, consumer) whose connecting tensor only the consumer reads and whose channels can be rescaled. */
export function equalizationPairs(ir: IrGraph): Array<[ConvOp, ConvOp]> {
  const readers = new Map<number, number>();
  for (const op of ir.ops) for (const i of op.inputs) readers.set(i, (readers.get(i) ?? 0) + 1);
  const producer = new Map<number, IrOp>(ir.ops.map((op) => [op.output, op]));
  // A grouped conv's input channel i meets only its group's filters: it is left out of equalization.
  const channelwise = (op: IrOp): op is ConvOp => (op.kind === 'conv2d' && (op.groups ?? 1) === 1) || (op.kind === 'depthwise' && op.kernelShape[3] === 1);
  const pairs: Array<[ConvOp, ConvOp]> = [];
  for (const c of ir.ops) {
    if (!channelwise(c)) continue;
    const t = c.inputs[0];
    const p = producer.get(t);
    if (!p || !channelwise(p) || readers.get(t) !== 1 || t === ir.output) continue;
    pairs.push([p, c]);
  }
  return pairs;
}

/** Per output channel of `op`: max |w| over its kernel entries. */
function outputChannelRange(op: WeightOp): Float64Array {
  const n = outChannels(op);
  const r = new Float64Array(n);
  for (let i = 0; i < op.kernel.length; i++) r[i % n] = Math.max(r[i % n], Math.abs(op.kernel[i]));
  return r;
}

/** The input channel of kernel entry i of a conv2d ([kh, kw, cin, cout]) or depthwise ([kh, kw, cin, 1]). */
function inputChannelOf(op: ConvOp): (i: number) => number {
  const [, , cin, last] = op.kernelShape;
  return op.kind === 'depthwise' ? (i) => i % cin : (i) => Math.floor(i / last) % cin;
}

function inputChannelRange(op: ConvOp): Float64Array {
  const r = new Float64Array(op.kernelShape[2]);
  const ch = inputChannelOf(op);
  for (let i = 0; i < op.kernel.length; i++) r[ch(i)] = Math.max(r[ch(i)], Math.abs(op.kernel[i]));
  return r;
}

/** Per channel max |value| of the tensors `ids` over the calibration samples. */
function channelMaxima(tf: typeof tfType, ir: IrGraph, calibration: Float32Array, ids: Set<number>): Map<number, Float64Array> {
  const out = new Map<number, Float64Array>();
  forEachCalibrationBatch(tf, ir, calibration, (id, t) => {
    if (!ids.has(id)) return;
    const m = tf.tidy(() => tf.max(tf.abs(t), t.shape.slice(0, -1).map((_, a) => a)).dataSync());
    const acc = out.get(id) ?? new Float64Array(m.length);
    for (let c = 0; c < m.length; c++) acc[c] = Math.max(acc[c], m[c]);
    out.set(id, acc);
  });
  return out;
}

/**
 * The scale of each channel of a pair: s_c = sqrt(r1_c / r2_c) (r1: the first op's output-channel weight range,
 * r2: the second op's input-channel weight range), so both become sqrt(r1_c * r2_c). Dead channels keep 1;
 * across ReLU6, see the file comment (`activationMax`: per channel max of the connecting tensor).
 */
export function equalizationScales(p: ConvOp, c: ConvOp, activationMax?: Float64Array): Float64Array {
  const r1 = outputChannelRange(p);
  const r2 = inputChannelRange(c);
  const s = new Float64Array(r2.length).fill(1);
  for (let ch = 0; ch < s.length; ch++) {
    if (!(r1[ch] > 0) || !(r2[ch] > 0)) continue;
    let v = Math.sqrt(r1[ch] / r2[ch]);
    if (p.activation === 'relu6') {
      const a = activationMax?.[ch] ?? 6;
      if (a >= 6 * (1 - 1e-6)) continue; // saturates on the calibration data: only s = 1 is exact
      v = Math.max(v, a / 6);
    }
    s[ch] = Math.min(1e4, Math.max(1e-4, v));
  }
  return s;
}

/** Applies the pair's scales: producer output channel / s, its bias / s; consumer input channel * s. */
function rescalePair(p: ConvOp, c: ConvOp, s: Float64Array): [ConvOp, ConvOp] {
  const n = s.length;
  const pk = Float32Array.from(p.kernel, (v, i) => v / s[i % n]);
  const pb = Float32Array.from(p.bias, (v, i) => v / s[i]);
  const ch = inputChannelOf(c);
  const ck = Float32Array.from(c.kernel, (v, i) => v * s[ch(i)]);
  return [
    { ...p, kernel: pk, bias: pb, rescaled: true },
    { ...c, kernel: ck, rescaled: true },
  ];
}

/**
 * Cross-layer equalization of every pair (equalizationPairs), `rounds` sweeps (chains such as expand ->
 * depthwise -> project settle over a few). Returns the rescaled graph and the tensors whose values changed
 * (the pairs' connecting tensors: calibrated ranges in meta no longer apply to them).
 */
export function equalize(tf: typeof tfType, ir: IrGraph, calibration: Float32Array | undefined, rounds = 4): { ir: IrGraph; rescaled: Set<number>; pairs: number } {
  const pairs = equalizationPairs(ir);
  if (!pairs.length) return { ir, rescaled: new Set(), pairs: 0 };
  const mid = new Set(pairs.map(([p]) => p.output));
  // Across ReLU6 the connecting tensor's channel maxima decide which channels may move (divided by s as they do).
  const relu6 = new Set(pairs.filter(([p]) => p.activation === 'relu6').map(([p]) => p.output));
  const maxima = relu6.size && calibration ? channelMaxima(tf, ir, calibration, relu6) : new Map<number, Float64Array>();
  const ops = [...ir.ops];
  const index = new Map(ops.map((op, i) => [op.output, i]));
  for (let round = 0; round < rounds; round++) {
    for (const [p0, c0] of pairs) {
      const pi = index.get(p0.output)!;
      const ci = index.get(c0.output)!;
      const p = ops[pi] as ConvOp;
      const c = ops[ci] as ConvOp;
      const m = maxima.get(p.output);
      if (p.activation === 'relu6' && !m) continue; // no calibration data: ReLU6 pairs stay
      const s = equalizationScales(p, c, m);
      [ops[pi], ops[ci]] = rescalePair(p, c, s);
      if (m) for (let ch = 0; ch < m.length; ch++) m[ch] /= s[ch];
    }
  }
  return { ir: { ...ir, ops }, rescaled: mid, pairs: pairs.length };
}

// ---- calibration: auto ---------------------------------------------------------------------------

const CANDIDATES: CalibrationMethod[] = ['minmax', 'percentile', 'mse', 'kl'];

/**
 * The tensors whose values decide the prediction: the graph output and the input of a final softmax (the
 * logits). Clipping them merges the top classes, so every method but minmax leaves them their full range
 * (measured: kl clipping dw-cnn's logits dropped agreement to 52%).
 */
export function decisionTensors(ir: IrGraph): Set<number> {
  const out = new Set([ir.output]);
  const last = ir.ops.find((op) => op.output === ir.output);
  if (last && last.kind === 'softmax') out.add(last.inputs[0]);
  return out;
}

/**
 * Per tensor, the candidate range (minmax, percentile, mse, kl) with the least expected int8 error (rounding
 * plus clipping) over its calibration histogram; decision tensors (decisionTensors) keep minmax. Tensors with
 * meta ranges (not stale) keep them. Also returns how often each method was picked.
 */
export function autoRanges(tf: typeof tfType, ir: IrGraph, meta: ModelMeta, target: string, calibration: Float32Array, calibrationShape: number[] | undefined, stale: Set<number>, percentile: number): { ranges: Range[]; picked: Record<string, number> } {
  const base = tensorRanges(tf, ir, meta, target, calibration, calibrationShape, { stale });
  const fromMeta = (id: number) => !stale.has(id) && meta.activationRanges[ir.tensors[id].layer] !== undefined;
  const keep = decisionTensors(ir);
  const open = ir.tensors.filter((t) => !t.data && !fromMeta(t.id) && !keep.has(t.id)).map((t) => t.id);
  const picked: Record<string, number> = {};
  if (!open.length) return { ranges: base, picked };
  const stats = tensorStats(tf, ir, calibration, new Set(open), true);
  const ranges = [...base];
  for (const id of open) {
    const st = stats.get(id)!;
    let best: { m: CalibrationMethod; r: Range; e: number } | undefined;
    for (const m of CANDIDATES) {
      const r = rangeFromStat(st, m, { percentile });
      const e = st.hist ? histogramQuantMse(st.hist, st.min, st.max, r.min, r.max, 8) : 0;
      if (!best || e < best.e) best = { m, r, e };
    }
    ranges[id] = best!.r;
    picked[best!.m] = (picked[best!.m] ?? 0) + 1;
  }
  return { ranges, picked };
}

// ---- bias correction -----------------------------------------------------------------------------

const activate = (tf: typeof tfType, t: tfType.Tensor, a: string): tfType.Tensor => (a === 'relu' ? tf.relu(t) : a === 'relu6' ? tf.relu6(t) : t);

const isWeightOp = (op: IrOp): op is WeightOp => op.kind === 'conv2d' || op.kind === 'depthwise' || op.kind === 'conv_transpose' || op.kind === 'dense';

/**
 * Empirical bias correction: walks the graph twice side by side on the calibration samples, in float and in
 * simulated int8 (int8 weights, activations rounded to `ranges`); at each conv / dense op the mean per-channel
 * difference of the pre-activations is subtracted from the op's bias (and from the int8 walk, so the layers
 * after it see corrected inputs). One batch of up to 256 samples, fewer where the activations would not fit
 * the engine's budget (engine/batching.ts). Returns the graph with the corrected biases.
 */
export function correctBiases(tf: typeof tfType, ir: IrGraph, meta: ModelMeta, ranges: Range[], calibration: Float32Array, input: Pick<Int8PrepInput, 'perChannel' | 'weightQmax'>): IrGraph {
  const shape = ir.tensors[ir.input].shape;
  const per = shape.reduce((a, b) => a * b, 1);
  const n = Math.min(batchWithin(2 * irBytesPerSample(ir), BIAS_SAMPLES), calibration.length / per);
  const fq = activationFakeQuant(tf, ranges);
  const act = activate.bind(null, tf);
  // Weight ops without their activation (the correction applies before it), float and on the int8 grid.
  const linear = (op: IrOp): IrOp => (isWeightOp(op) ? ({ ...op, activation: 'none' } as IrOp) : op);
  const fOps = ir.ops.map(linear);
  const qOps = fakeQuantizedIr(ir, meta, input.perChannel, input.weightQmax).ops.map(linear);
  const fw = irWeights(tf, ir);
  const qw = irWeights(tf, ir);
  const readers = new Map<number, number>();
  for (const op of ir.ops) for (const i of op.inputs) readers.set(i, (readers.get(i) ?? 0) + 1);
  const fl = new Map<number, tfType.Tensor>();
  const qu = new Map<number, tfType.Tensor>();
  const ops: IrOp[] = [];
  try {
    const x = tf.tensor(calibration.subarray(0, n * per), [n, ...shape]);
    fl.set(ir.input, x);
    // The int8 walk starts from the input on its int8 grid, as the file's QUANTIZE does.
    qu.set(ir.input, tf.tidy(() => fq({ kind: 'relu', layer: '', inputs: [], output: ir.input }, x)));
    for (const t of ir.tensors) {
      if (!t.data) continue;
      fl.set(t.id, tf.tensor(t.data, t.shape));
      qu.set(t.id, tf.tensor(t.data, t.shape));
    }
    ir.ops.forEach((op, k) => {
      const fIn = op.inputs.map((i) => fl.get(i)!);
      const qIn = op.inputs.map((i) => qu.get(i)!);
      let yf: tfType.Tensor;
      let yq: tfType.Tensor;
      if (isWeightOp(op)) {
        const [pf, pq] = tf.tidy(() => [runOp(tf, fOps[k], fIn, act, fw), runOp(tf, qOps[k], qIn, act, qw)]);
        const diff = tf.tidy(() => tf.mean(tf.sub(pq, pf), pf.shape.slice(0, -1).map((_, a) => a)));
        const d = diff.dataSync();
        ops.push({ ...op, bias: Float32Array.from(op.bias, (b, c) => b - d[c]) });
        yf = tf.tidy(() => tf.clone(act(pf, op.activation)));
        yq = tf.tidy(() => fq(op, act(tf.sub(pq, diff), op.activation)));
        tf.dispose([pf, pq, diff]);
      } else {
        ops.push(op);
        yf = tf.tidy(() => runOp(tf, op, fIn, act, fw));
        yq = tf.tidy(() => fq(op, runOp(tf, qOps[k], qIn, act, qw)));
      }
      fl.set(op.output, yf);
      qu.set(op.output, yq);
      for (const i of op.inputs) {
        const left = readers.get(i)! - 1;
        readers.set(i, left);
        if (left === 0 && !ir.tensors[i].data) {
          fl.get(i)!.dispose();
          qu.get(i)!.dispose();
          fl.delete(i);
          qu.delete(i);
        }
      }
    });
  } finally {
    for (const t of [...fl.values(), ...qu.values()]) t.dispose();
    fw.dispose();
    qw.dispose();
  }
  return { ...ir, ops };
}
