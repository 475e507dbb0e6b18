/**
 * The pruning methods: one entry each, with how it masks one layer's kernel for a target sparsity.
 * A new method is one more entry here (the recipe schema's `method` enum and the model sidecar's
 * `pruning.method` are derived from this table).
 */
import { globalMagnitudeMasks, magnitudeMask, nmMask, sensitivityMask, structuredMask, thresholdMask, type Mask, type WeightArray } from './masks.js';

/** One layer to mask: its scores (|w| or an importance), its kernel shape and class, the sparsity due now. */
export interface LayerMaskInput {
  values: WeightArray;
  shape: readonly number[];
  className: string;
  /** Sparsity the schedule asks for at this step. */
  target: number;
  /** Per-layer overrides from `with.layers` / `with`: prune below a value instead of to a sparsity. */
  threshold?: number;
  sensitivity?: number;
  criterion?: 'l1' | 'l2' | 'taylor';
  n?: number;
  m?: number;
}

export interface LayerMaskResult {
  mask: Mask;
  /** Bias keep flags (structured: a removed unit's bias goes too). */
  bias?: Mask;
  /** Output units pruned whole (what the model can physically remove). */
  units?: number[];
}

export interface PruneMethod {
  description: string;
  layerMask(input: LayerMaskInput): LayerMaskResult;
  /** `scope: global`: one threshold across all selected layers (methods without it prune per layer). */
  globalMasks?(layers: Array<{ name: string; values: WeightArray }>, target: number): Map<string, Mask>;
  /** Pruned units can be removed from the model (`remove: true`). */
  removesUnits?: boolean;
  /** Why this method cannot prune a layer of this class (checked on every selected layer before pruning starts). */
  refuses?(className: string): string | undefined;
}

/** Classes whose output units are not the last kernel axis, which structured masks and removal assume. */
const UNITS_NOT_LAST = new Set(['Conv2DTranspose']);

export const PRUNE_METHODS = {
  magnitude: {
    description: 'smallest |w| (or importance) first; `threshold` / `sensitivity` prune below a value instead',
    layerMask: (i) => ({
      mask: i.threshold !== undefined ? thresholdMask(i.values, i.threshold) : i.sensitivity !== undefined ? sensitivityMask(i.values, i.sensitivity) : magnitudeMask(i.values, i.target),
    }),
    globalMasks: (layers, target) => globalMagnitudeMasks(layers, target),
  },
  structured: {
    description: 'whole filters / neurons by L1 or L2 norm, removed from the model',
    layerMask: (i) => {
      const r = structuredMask(i.values, i.shape, { sparsity: i.target, norm: i.criterion === 'l2' ? 'l2' : 'l1', depthwise: i.className === 'DepthwiseConv2D' });
      return { mask: r.mask, bias: r.unitMask, units: r.units };
    },
    removesUnits: true,
    refuses: (cls) =>
      UNITS_NOT_LAST.has(cls)
        ? `structured pruning removes the filters on a kernel's last axis, and ${cls} keeps its filters on axis 2 ([kh, kw, filters, in]); exclude it (layers: [{ type: ${cls}, exclude: true }]) or prune it with method magnitude`
        : undefined,
  },
  'n:m': {
    description: 'n of every m consecutive input weights kept (semi-structured)',
    layerMask: (i) => ({ mask: nmMask(i.values, i.shape, i.n ?? 2, i.m ?? 4, { className: i.className }) }),
    refuses: (cls) =>
      cls === 'DepthwiseConv2D'
        ? 'n:m keeps n of every m weights along a kernel\'s input channels, and a depthwise kernel has one input channel per filter; exclude it (layers: [{ type: DepthwiseConv2D, exclude: true }]) or prune it with method magnitude'
        : undefined,
  },
} satisfies Record<string, PruneMethod>;

export type PruneMethodName = keyof typeof PRUNE_METHODS;

export const PRUNE_METHOD_NAMES = Object.keys(PRUNE_METHODS) as PruneMethodName[];

export function pruneMethod(name: PruneMethodName): PruneMethod {
  return PRUNE_METHODS[name];
}
