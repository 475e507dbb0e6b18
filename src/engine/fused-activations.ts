/**
 * Which activation layers a training step runs fused into the batch norm before them (the wasm kernels
 * in ./kernels/batchnorm.ts do the work). Kept apart from those kernels so that the training loop can
 * mark its forward pass without loading them on other backends.
 */
import type * as tfType from '@tensorflow/tfjs';

/** The parts of a tfjs-layers layer (and its graph nodes) that finding fusable activations reads. */
interface GraphLayer {
  getClassName(): string;
  inboundNodes: Array<{ inboundLayers: unknown[] }>;
  outboundNodes: Array<{ outboundLayer: GraphLayer }>;
}

/**
 * Activation layers whose work the training batch norm right before them does in its own passes
 * (BN_ACT_KERNEL forward, BN_GRAD_KERNEL masked): each gives the upper end of its clamp [0, max], or
 * undefined where it cannot be fused. A ReLU layer is relu then clipByValue(0, maxValue): forward
 * min(max(z, 0), max), gradient dy where 0 < z <= max (relu's step, then the clip's lo <= r <= hi).
 */
export const FUSABLE_ACTIVATIONS: Record<string, (layer: unknown) => number | undefined> = {
  ReLU: (l) => {
    const max = (l as { maxValue?: number | null }).maxValue;
    return max == null ? Infinity : max > 0 ? max : undefined;
  },
};

/**
 * A model's batch-norm layers that can run the activation after them fused, each with its clamp's max:
 * the batch norm is applied once, its output goes only to that activation layer (one consumer, applied
 * once, on this input alone) and is not an output of the model.
 */
function findFusions(model: tfType.LayersModel): Map<object, number> {
  const fusions = new Map<object, number>();
  const outputs = new Set<unknown>(model.outputLayers);
  for (const layer of model.layers as unknown as GraphLayer[]) {
    if (layer.getClassName() !== 'BatchNormalization' || outputs.has(layer) || isFrozen(layer)) continue;
    if (layer.inboundNodes.length !== 1 || layer.outboundNodes.length !== 1) continue;
    const next = layer.outboundNodes[0].outboundLayer;
    if (next.inboundNodes.length !== 1 || next.inboundNodes[0].inboundLayers.length !== 1) continue;
    const max = FUSABLE_ACTIVATIONS[next.getClassName()]?.(next);
    if (max !== undefined) fusions.set(layer, max);
  }
  return fusions;
}

const fusionsByModel = new WeakMap<tfType.LayersModel, Map<object, number>>();
/** The fusions of the model being applied in a training step (withFusedActivations), else undefined. */
let activeFusions: Map<object, number> | undefined;
/** Whether a training step's forward pass (withFusedActivations) is running. */
export const inTrainingStep = (): boolean => activeFusions !== undefined;
/** The clamp's max of the activation `layer` (a batch norm) applies fused in the training step at hand, else undefined. */
export const activeFusion = (layer: object): number | undefined => activeFusions?.get(layer);
/** Batch-norm outputs that already are their activation's output, with that activation's max. */
export const activated = new WeakMap<tfType.Tensor, number>();

/**
 * Runs `apply` (a training forward pass of `model`) with the batch norms that feed a fusable activation
 * (FUSABLE_ACTIVATIONS) computing it in their own passes, and those activation layers passing their
 * input through: on wasm with the SIMD kernels, MobileNetV2's 35 ReLU6 layers then cost no pass of
 * their own forward or backward (4 passes over each activation and its gradient). Same values as the
 * layers run one by one (tested against the cpu backend).
 */
export function withFusedActivations<T>(model: tfType.LayersModel, apply: () => T): T {
  let fusions = fusionsByModel.get(model);
  if (!fusions) fusionsByModel.set(model, (fusions = findFusions(model)));
  const before = activeFusions;
  activeFusions = fusions;
  const restore = frozenInInferenceMode(model);
  try {
    return apply();
  } finally {
    restore();
    activeFusions = before;
  }
}

const isFrozen = (layer: unknown): boolean => (layer as { trainable?: boolean }).trainable === false;

type Callable = { call(inputs: unknown, kwargs: Record<string, unknown>): unknown };

/**
 * Frozen batch norms (trainable false: the importers' per-channel affines, a user's frozen layers) run in inference
 * mode during the training step, as Keras runs them: their moving statistics, not the batch's, and none updated.
 * tfjs-layers' BatchNormalization uses the batch statistics whenever `training` is set. Returns the undo.
 */
const frozenByModel = new WeakMap<tfType.LayersModel, Callable[]>();

function frozenInInferenceMode(model: tfType.LayersModel): () => void {
  let frozen = frozenByModel.get(model);
  if (!frozen) {
    frozen = (model.layers as unknown as Array<Callable & { getClassName(): string }>).filter((l) => l.getClassName() === 'BatchNormalization' && isFrozen(l));
    frozenByModel.set(model, frozen);
  }
  for (const layer of frozen) {
    const call = Object.getPrototypeOf(layer).call as Callable['call'];
    layer.call = (inputs, kwargs) => call.call(layer, inputs, { ...kwargs, training: false });
  }
  return () => {
    for (const layer of frozen!) delete (layer as Partial<Callable>).call;
  };
}

