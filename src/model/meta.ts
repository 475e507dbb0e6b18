/**
 * The sidecar every model artifact carries next to its TF.js files (`meta.json`).
 * The TF.js weights always hold the values the model computes with (pruned zeros, fake-quantized
 * values); this file says how those values were produced so exporters can write integer tensors
 * exactly and reports can account for bits.
 */
import type { PruneMethodName } from '../prune/methods.js';

export interface LinearWeightQuant {
  method: 'linear';
  bits: number; // 2..8
  symmetric: boolean;
  /** Per-channel axis in the Keras kernel layout (last axis for Dense/Conv2D, 2 for depthwise), or null for per-tensor. */
  axis: number | null;
  scales: number[];
  zeroPoints: number[];
}

export interface KmeansWeightQuant {
  method: 'kmeans';
  bits: number;
  /** Shared values; index 0 is exactly 0 when the layer is pruned (zeros are kept out of clustering). */
  codebook: number[];
}

export interface Float16WeightQuant {
  method: 'float16';
  bits: 16;
}

export type WeightQuant = LinearWeightQuant | KmeansWeightQuant | Float16WeightQuant;

export interface ActivationRange {
  min: number;
  max: number;
}

export interface LayerPruning {
  method: PruneMethodName;
  sparsity: number;
  /** For structured pruning: how many output units/filters were physically removed. */
  removed?: number;
}

export interface ModelMeta {
  format: 'compress-model@1';
  /** Keyed by layer name; applies to that layer's kernel (bias stays float / int32 at export). */
  weightQuant: Record<string, WeightQuant>;
  /** Calibrated output range of each layer (keyed by layer name) and of the model input (key `__input__`). */
  activationRanges: Record<string, ActivationRange>;
  pruning: Record<string, LayerPruning>;
  /** Free-form provenance: the stage that produced it, the base architecture, etc. */
  provenance: Record<string, string | number>;
}

export function emptyMeta(): ModelMeta {
  return { format: 'compress-model@1', weightQuant: {}, activationRanges: {}, pruning: {}, provenance: {} };
}
