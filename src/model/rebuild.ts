import type * as tfType from '@tensorflow/tfjs';
import { isInputLayer, modelGraph } from '../compression/layer-by-layer.js';

type Layer = tfType.layers.Layer;
type SymbolicTensor = tfType.SymbolicTensor;

/** What replaces one layer in a rebuilt model: its output tensors, and how to set its weights once the model exists. */
export interface LayerReplacement {
  outputs: SymbolicTensor[];
  setWeights(): void;
}

/** A new layer of `className` from a Keras config, through tfjs's serialization registry. */
export function layerFromConfig(tf: typeof tfType, className: string, config: Record<string, unknown>, what: string): Layer {
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[className];
  if (!entry) throw new Error(`cannot rebuild layer ${what}: class ${className} is not registered for deserialisation`);
  const [ctor, fromConfig] = entry;
  return fromConfig(ctor, config as tfType.serialization.ConfigDict) as unknown as Layer;
}

/** The layer as a fresh copy of itself (config and weights). */
function cloned(tf: typeof tfType, layer: Layer, input: SymbolicTensor | SymbolicTensor[]): LayerReplacement {
  const clone = layerFromConfig(tf, layer.getClassName(), layer.getConfig() as Record<string, unknown>, layer.name);
  const r = clone.apply(input) as SymbolicTensor | SymbolicTensor[];
  return { outputs: Array.isArray(r) ? r : [r], setWeights: () => clone.setWeights(layer.getWeights()) };
}

/**
 * Rebuilds a model layer by layer (factorization, structured removal): each layer is what `replace`
 * returns for it, or a copy of itself when it returns undefined. Weights are set after the new model is
 * built. The input model is left untouched; layers used more than once are refused (by modelGraph).
 */
export function rebuildModel(
  tf: typeof tfType,
  model: tfType.LayersModel,
  replace: (layer: Layer, input: SymbolicTensor | SymbolicTensor[]) => LayerReplacement | undefined,
  name = model.name,
): tfType.LayersModel {
  const graph = modelGraph(model);
  const tensors = new Map<number, SymbolicTensor>();
  const inputs = graph.inputs.map((inp) => {
    const t = tf.input({ batchShape: inp.shape, name: inp.layerName, dtype: inp.dtype });
    tensors.set(inp.id, t);
    return t;
  });
  const pending: Array<() => void> = [];
  for (const step of graph.steps) {
    if (isInputLayer(step.layer)) continue;
    const ins = step.inputIds.map((id) => tensors.get(id)!);
    const arg = ins.length === 1 ? ins[0] : ins;
    const r = replace(step.layer, arg) ?? cloned(tf, step.layer, arg);
    pending.push(r.setWeights);
    step.outputIds.forEach((id, i) => tensors.set(id, r.outputs[i]));
  }
  const rebuilt = tf.model({ inputs, outputs: graph.outputIds.map((id) => tensors.get(id)!), name });
  for (const set of pending) set();
  return rebuilt;
}
