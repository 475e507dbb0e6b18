import type * as tfType from '@tensorflow/tfjs';

/**
 * Inference batch sizes bounded by activation memory: a MobileNet-class model at 224x224 holds ~5 MB
 * per sample in its widest layer, so the batch of 256 that suits LeNet would need gigabytes (and
 * tfjs-wasm's heap cannot exceed 4 GB, nor ever shrink). Every batched inference (evaluation,
 * calibration, activation fake-quant, error reports) takes its batch through here.
 */

/** Default activation budget of one inference batch. */
export const ACTIVATION_BUDGET_BYTES = 128 * 1024 * 1024;
/** Live tensors around the widest layer (its inputs, its output, a kernel's temporaries) per its in + out. */
const HEADROOM = 3;

const elements = (shape: unknown): number => {
  if (!Array.isArray(shape)) return 0;
  if (shape.length && Array.isArray(shape[0])) return (shape as unknown[]).reduce<number>((a, s) => a + elements(s), 0);
  return (shape as Array<number | null>).slice(1).reduce<number>((a, d) => a * (d ?? 1), 1);
};

/** Per-sample elements: the widest layer's inputs plus output, and the sum of every layer's output. */
function layerElements(model: tfType.LayersModel): { widest: number; all: number } {
  let widest = 0;
  let all = 0;
  for (const layer of model.layers) {
    let inOut = 0;
    try {
      const node = (layer as unknown as { inboundNodes: Array<{ inputShapes: unknown }> }).inboundNodes[0];
      inOut = elements(node?.inputShapes) + elements(layer.outputShape);
    } catch {
      // a layer without a defined shape (not built): skip it
    }
    widest = Math.max(widest, inOut);
    all += elements(layer.outputShape);
  }
  return { widest, all };
}

/**
 * Float32 bytes one sample needs: the larger of the widest layer's inputs plus output times headroom
 * (a layer-by-layer walk frees each tensor after its last use) and the sum of every layer's output
 * (model.apply inside one tf.tidy keeps them all until the pass ends).
 */
export function activationBytesPerSample(model: tfType.LayersModel): number {
  const { widest, all } = layerElements(model);
  return Math.max(widest * HEADROOM, all) * 4;
}

/**
 * Float32 bytes one sample needs in a pass that frees each tensor after its last use (a layer-by-layer
 * walk): the widest layer's inputs plus output times headroom.
 */
export function walkBytesPerSample(model: tfType.LayersModel): number {
  return layerElements(model).widest * HEADROOM * 4;
}

/** The batch for `walks` layer-by-layer walks side by side (see walkBytesPerSample) within the budget. */
export function walkBatchSize(model: tfType.LayersModel, requested: number, walks = 1, budgetBytes = ACTIVATION_BUDGET_BYTES): number {
  return batchWithin(walks * walkBytesPerSample(model), requested, budgetBytes);
}

/** The requested batch size, lowered so one batch's activations fit the budget (at least 1). */
export function boundedBatchSize(model: tfType.LayersModel, requested: number, budgetBytes = ACTIVATION_BUDGET_BYTES): number {
  return batchWithin(activationBytesPerSample(model), requested, budgetBytes);
}

/** The requested batch size, lowered so `bytesPerSample` times it fits the budget (at least 1). */
export function batchWithin(bytesPerSample: number, requested: number, budgetBytes = ACTIVATION_BUDGET_BYTES): number {
  const fit = bytesPerSample > 0 ? Math.max(1, Math.floor(budgetBytes / bytesPerSample)) : requested;
  return Math.max(1, Math.min(requested, fit));
}
