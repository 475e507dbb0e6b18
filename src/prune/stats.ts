import type * as tfType from '@tensorflow/tfjs';
import type { LayerPruning } from '../model/meta.js';
import { setOwn } from '../util/own.js';

/**
 * Sparsity / size / compute statistics of a model.
 *   params, nonZero: every weight scalar of the layer (kernels, biases, BatchNorm vectors incl. moving stats);
 *   kernelParams, kernelNonZero, sparsity: the multiply weights only (kernel, depthwise_kernel,
 *     pointwise_kernel); sparsity = 1 - kernelNonZero / kernelParams (0 for layers without one);
 *   macs: kernelParams × output positions (Dense: 1 per sample for a rank-2 input, otherwise the
 *     product of the non-batch, non-channel output dims; conv: output spatial size; DepthwiseConv2D
 *     and SeparableConv2D both count h·w·in·mult per position, plus the pointwise kernel for the latter;
 *     Conv2DTranspose: input spatial size, as each input position meets the whole kernel once);
 *   effectiveMacs: kernelNonZero × the same positions. Per sample (batch 1); biases, BatchNorm,
 *     activations and pooling are not counted.
 */

export interface LayerStats {
  name: string;
  className: string;
  params: number;
  nonZero: number;
  kernelParams: number;
  kernelNonZero: number;
  sparsity: number;
  outputPositions: number;
  macs: number;
  effectiveMacs: number;
}

export interface ModelStats {
  layers: LayerStats[];
  params: number;
  nonZero: number;
  /** 1 - nonZero / params over all weights. */
  sparsity: number;
  kernelParams: number;
  kernelNonZero: number;
  /** 1 - kernelNonZero / kernelParams (the number pruning targets). */
  kernelSparsity: number;
  macs: number;
  effectiveMacs: number;
}

const KERNEL_KINDS = new Set(['kernel', 'depthwise_kernel', 'pointwise_kernel']);
export const MAC_CLASSES = new Set(['Dense', 'Conv1D', 'Conv2D', 'GroupedConv2D', 'Conv3D', 'DepthwiseConv2D', 'SeparableConv2D', 'Conv2DTranspose']);
/** Classes whose kernel is applied once per *input* position (a transposed conv scatters each input into a window). */
const MACS_PER_INPUT = new Set(['Conv2DTranspose']);

function countNonZero(data: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < data.length; i++) if (data[i] !== 0) n++;
  return n;
}

function inputShape(layer: tfType.layers.Layer): Array<number | null> {
  const s = layer.inboundNodes[0]?.inputShapes;
  return (Array.isArray(s?.[0]) ? s[0] : s) as Array<number | null>;
}

export function layerStats(layer: tfType.layers.Layer): LayerStats {
  let params = 0;
  let nonZero = 0;
  let kernelParams = 0;
  let kernelNonZero = 0;
  for (const w of layer.weights) {
    const data = w.read().dataSync();
    const nz = countNonZero(data);
    params += data.length;
    nonZero += nz;
    const kind = w.originalName.slice(w.originalName.lastIndexOf('/') + 1);
    if (KERNEL_KINDS.has(kind)) {
      kernelParams += data.length;
      kernelNonZero += nz;
    }
  }
  const cls = layer.getClassName();
  let outputPositions = 0;
  if (MAC_CLASSES.has(cls)) {
    const shape = (MACS_PER_INPUT.has(cls) ? inputShape(layer) : layer.outputShape) as Array<number | null>;
    outputPositions = shape.slice(1, -1).reduce<number>((a, b) => a * (b ?? 1), 1);
  }
  return {
    name: layer.name,
    className: cls,
    params,
    nonZero,
    kernelParams,
    kernelNonZero,
    sparsity: kernelParams ? 1 - kernelNonZero / kernelParams : 0,
    outputPositions,
    macs: kernelParams * outputPositions,
    effectiveMacs: kernelNonZero * outputPositions,
  };
}

export function modelStats(model: tfType.LayersModel): ModelStats {
  const layers = model.layers.map(layerStats);
  const sum = (k: keyof LayerStats) => layers.reduce((a, l) => a + (l[k] as number), 0);
  const params = sum('params');
  const nonZero = sum('nonZero');
  const kernelParams = sum('kernelParams');
  const kernelNonZero = sum('kernelNonZero');
  return {
    layers,
    params,
    nonZero,
    sparsity: params ? 1 - nonZero / params : 0,
    kernelParams,
    kernelNonZero,
    kernelSparsity: kernelParams ? 1 - kernelNonZero / kernelParams : 0,
    macs: sum('macs'),
    effectiveMacs: sum('effectiveMacs'),
  };
}

/**
 * The `pruning` section of the model sidecar (ModelMeta.pruning) for the given layers: the kernel
 * sparsity each layer now has, the method that produced it and, for structured removal, how many
 * units were removed (`removed` as returned by removeUnits).
 */
export function pruningMeta(
  model: tfType.LayersModel,
  methods: Record<string, LayerPruning['method']> | Map<string, LayerPruning['method']>,
  removed: Record<string, readonly number[]> = {},
): Record<string, LayerPruning> {
  const out: Record<string, LayerPruning> = {};
  for (const [name, method] of methods instanceof Map ? methods : Object.entries(methods)) {
    const st = layerStats(model.getLayer(name));
    const entry: LayerPruning = { method, sparsity: st.sparsity };
    if (removed[name]?.length) entry.removed = removed[name].length;
    setOwn(out, name, entry);
  }
  return out;
}
