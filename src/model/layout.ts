import type * as tfType from '@tensorflow/tfjs';

/** The name of the layer `withNchwInput` puts in front of a model. */
export const NCHW_INPUT_LAYER = 'nchw_to_nhwc';

/**
 * The same model (the same layer objects, so the same names and weights) taking channels-first
 * images [C, H, W], as the PyTorch model did: a Permute to [H, W, C] runs first. Exports of it
 * carry that transpose at their input, so a deployed model takes the tensors PyTorch code feeds.
 */
export function withNchwInput(tf: typeof tfType, model: tfType.LayersModel): tfType.LayersModel {
  const inShape = model.inputs[0].shape.slice(1) as number[];
  if (model.inputs.length !== 1 || inShape.length !== 3) {
    throw new Error(`inputLayout: nchw needs a model with one image input [H, W, C]; this one takes [${inShape.join(', ')}]`);
  }
  const [h, w, c] = inShape;
  const input = tf.input({ shape: [c, h, w], name: `${model.inputs[0].name.replace(/:\d+$/, '')}_nchw` });
  const permuted = tf.layers.permute({ dims: [2, 3, 1], name: NCHW_INPUT_LAYER }).apply(input) as tfType.SymbolicTensor;
  const mapped = new Map<number, tfType.SymbolicTensor>([[model.inputs[0].id, permuted]]);
  // model.layers is in topological order; each layer is re-applied to the mapped tensors of its inbound node.
  for (const layer of model.layers) {
    if (layer.getClassName() === 'InputLayer') continue;
    for (const node of layer.inboundNodes) {
      const ins = node.inputTensors.map((t) => mapped.get(t.id));
      if (ins.some((t) => t === undefined)) continue;
      const outs = layer.apply(ins.length === 1 ? ins[0]! : (ins as tfType.SymbolicTensor[]));
      const list = Array.isArray(outs) ? outs : [outs];
      node.outputTensors.forEach((t, i) => mapped.set(t.id, list[i] as tfType.SymbolicTensor));
    }
  }
  const out = mapped.get(model.outputs[0].id);
  if (!out) throw new Error('could not rebuild the model behind an NCHW input');
  return tf.model({ inputs: input, outputs: out, name: model.name });
}
