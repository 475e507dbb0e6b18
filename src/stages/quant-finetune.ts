import type * as tfType from '@tensorflow/tfjs';
import { centroidGradients, dequantizeKmeans, kmeansCodes } from '../compression/kmeans.js';
import { codeRange, roundHalfAway } from '../compression/linear.js';
import { float16RoundTrip } from '../util/float16.js';
import { kernelIndex } from '../compression/fakequant.js';
import { kernelVariable } from '../prune/masks.js';
import type { TrainHooks } from '../engine/train.js';
import type { WeightQuant } from '../model/meta.js';
import { setOwn } from '../util/own.js';

interface KmeansState {
  kind: 'kmeans';
  layer: string;
  variable: tfType.LayerVariable;
  shape: number[];
  indices: Uint8Array | Uint16Array;
  codebook: number[];
  /** Adam moments per centroid: centroid sums of gradients vary by orders of magnitude across layers. */
  m: Float64Array;
  v: Float64Array;
}

interface SteState {
  kind: 'ste';
  layer: string;
  variable: tfType.LayerVariable;
  shape: number[];
  /** Full-precision shadow weights the straight-through estimator updates. */
  shadow: Float32Array;
  /** Weights that are exactly zero (pruned) stay zero. */
  keep: Uint8Array;
  quantize: (w: Float32Array) => Float32Array;
  lastQuantized: Float32Array;
}

/** A kernel that is not quantized but pruned (a SeparableConv2D's pointwise kernel): its zeros stay zero. */
interface ZerosState {
  kind: 'zeros';
  layer: string;
  variable: tfType.LayerVariable;
  shape: number[];
  keep: Uint8Array;
}

type State = KmeansState | SteState | ZerosState;

/**
 * Hooks that fine-tune a quantized model without leaving its grid:
 * - k-means layers: the centroids are trained (gradients of the shared weights summed per centroid,
 *   as in Deep Compression, stepped with Adam); the assignment of weights to centroids is fixed.
 * - linear / float16 layers: quantization-aware fine-tuning with a straight-through estimator: the
 *   optimizer steps full-precision shadow weights; the model always computes with their quantized values.
 * Pruned zeros stay exactly zero in both.
 */
export function quantFinetuneHooks(tf: typeof tfType, model: tfType.LayersModel, weightQuant: Record<string, WeightQuant>, centroidLr: number) {
  const states = new Map<string, State>();
  for (const [layer, q] of Object.entries(weightQuant)) {
    // The kernel the record describes: applyWeightQuant's (a SeparableConv2D's depthwise kernel, not the
    // pointwise one pruning masks), else its scales meet another tensor's channels (NaN weights).
    const l = model.getLayer(layer);
    const variable = l.weights[kernelIndex(l)] as tfType.LayerVariable | undefined;
    if (!variable) continue;
    const pruned = kernelVariable(l) as tfType.LayerVariable | undefined;
    if (pruned && pruned !== variable) {
      const v = pruned.read().dataSync() as Float32Array;
      states.set(pruned.name, { kind: 'zeros', layer, variable: pruned, shape: pruned.shape as number[], keep: Uint8Array.from(v, (x) => (x === 0 ? 0 : 1)) });
    }
    const values = Float32Array.from(variable.read().dataSync() as Float32Array);
    const shape = variable.shape as number[];
    if (q.method === 'kmeans') {
      const codebook = q.codebook.slice();
      states.set(variable.name, { kind: 'kmeans', layer, variable, shape, indices: kmeansCodes(values, codebook), codebook, m: new Float64Array(codebook.length), v: new Float64Array(codebook.length) });
    } else {
      const keep = new Uint8Array(values.length);
      for (let i = 0; i < values.length; i++) keep[i] = values[i] === 0 ? 0 : 1;
      const quantize = q.method === 'float16' ? (w: Float32Array) => float16RoundTrip(w) : linearRequantizer(q, shape);
      states.set(variable.name, { kind: 'ste', layer, variable, shape, shadow: values.slice(), keep, quantize, lastQuantized: values });
    }
  }
  let t = 0;
  const hooks: TrainHooks = {
    transformGradients(grads) {
      t++;
      const out: Record<string, tfType.Tensor> = { ...grads };
      for (const [name, s] of states) {
        const g = grads[name];
        if (!g) continue;
        if (s.kind === 'kmeans') {
          const gv = g.dataSync() as Float32Array;
          s.codebook = adamCentroids(s, gv, centroidLr, t);
          setOwn(out, name, tf.zerosLike(g));
        } else {
          setOwn(out, name, tf.mul(g, tf.tensor(s.keep, g.shape, 'float32')));
        }
      }
      return out;
    },
    afterStep() {
      for (const s of states.values()) {
        if (s.kind === 'kmeans') {
          s.variable.write(tf.tensor(dequantizeKmeans(s.indices, s.codebook), s.shape, 'float32'));
        } else if (s.kind === 'zeros') {
          s.variable.write(tf.mul(s.variable.read(), tf.tensor(s.keep, s.shape, 'float32')));
        } else {
          const now = s.variable.read().dataSync() as Float32Array;
          for (let i = 0; i < now.length; i++) s.shadow[i] = s.keep[i] ? s.shadow[i] + (now[i] - s.lastQuantized[i]) : 0;
          s.lastQuantized = s.quantize(s.shadow);
          for (let i = 0; i < now.length; i++) if (!s.keep[i]) s.lastQuantized[i] = 0;
          s.variable.write(tf.tensor(s.lastQuantized, s.shape, 'float32'));
        }
      }
    },
  };
  /** The fine-tuned quantization records (updated codebooks). */
  const finish = (): Record<string, WeightQuant> => {
    const out = { ...weightQuant };
    for (const s of states.values()) {
      const q = out[s.layer];
      if (s.kind === 'kmeans' && q.method === 'kmeans') setOwn(out, s.layer, { ...q, codebook: s.codebook.slice() });
    }
    return out;
  };
  return { hooks, finish };
}

function adamCentroids(s: KmeansState, grads: Float32Array, lr: number, t: number): number[] {
  // Deep Compression's centroid gradient (summed over the weights sharing a centroid), stepped with
  // Adam so one learning rate suits every layer. The zero centroid of a pruned layer stays 0.
  const g = centroidGradients(s.indices, grads, s.codebook.length);
  const b1 = 0.9;
  const b2 = 0.999;
  return s.codebook.map((c, k) => {
    if (c === 0) return 0;
    s.m[k] = b1 * s.m[k] + (1 - b1) * g[k];
    s.v[k] = b2 * s.v[k] + (1 - b2) * g[k] * g[k];
    const mh = s.m[k] / (1 - b1 ** t);
    const vh = s.v[k] / (1 - b2 ** t);
    return Math.fround(c - (lr * mh) / (Math.sqrt(vh) + 1e-8));
  });
}

/** Re-quantizes onto a fixed linear grid (the scales chosen at quantization time). */
function linearRequantizer(q: Extract<WeightQuant, { method: 'linear' }>, shape: number[]): (w: Float32Array) => Float32Array {
  const { qmin, qmax } = codeRange(q.bits, q.symmetric);
  const axis = q.axis;
  const stride = axis === null ? 1 : shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channels = axis === null ? 1 : shape[axis];
  return (w) => {
    const out = new Float32Array(w.length);
    for (let i = 0; i < w.length; i++) {
      const c = axis === null ? 0 : Math.floor(i / stride) % channels;
      const scale = q.scales[c];
      const zp = q.zeroPoints[c] ?? 0;
      const code = Math.min(qmax, Math.max(qmin, roundHalfAway(w[i] / scale) + zp));
      out[i] = (code - zp) * scale;
    }
    return out;
  };
}
