import type * as tfType from '@tensorflow/tfjs';

/**
 * Nested models (a Sequential or Functional model used as a layer: every Teachable Machine export,
 * every transfer-learning model on a `keras.applications` base) rebuilt as ONE functional graph of
 * plain layers. A layer inside a nested model is named by its path, e.g. `mobilenetv2_0.35/Conv1`
 * (the outer model's own name is not part of it); weights are copied tensor by tensor, so they are
 * bit-identical to what was loaded. Every stage and exporter then sees ordinary layers.
 */
type Tf = typeof tfType;
type Layer = tfType.layers.Layer;
type Sym = tfType.SymbolicTensor;
type NodeRef = [string, number, number, unknown?];

export interface Flattened {
  model: tfType.LayersModel;
  /** Flat layer name -> the names of the nested models it was in, then its own name. */
  paths: Map<string, string[]>;
}

/** Whether a layer is itself a model (tfjs Sequential / LayersModel). */
export function isNestedModel(layer: Layer): boolean {
  return Array.isArray((layer as unknown as { layers?: unknown }).layers);
}

export function hasNestedModels(model: tfType.LayersModel): boolean {
  return model.layers.some(isNestedModel);
}

/** The flattened model, or the model itself when nothing is nested. */
export function flattenNestedModels(tf: Tf, model: tfType.LayersModel): Flattened {
  const paths = new Map<string, string[]>();
  if (!hasNestedModels(model)) {
    for (const l of model.layers) paths.set(l.name, [l.name]);
    return { model, paths };
  }
  const clones: Array<[Layer, Layer]> = [];
  const classMap = tf.serialization.SerializationMap.getMap().classNameMap;

  const cloneOf = (layer: Layer, path: string[]): Layer => {
    const entry = classMap[layer.getClassName()];
    if (!entry) throw new Error(`layer ${path.join('/')}: class ${layer.getClassName()} is not registered with tfjs`);
    const cfg: Record<string, unknown> = { ...(layer.getConfig() as Record<string, unknown>), name: path.join('/') };
    delete cfg.batchInputShape;
    delete cfg.inputShape;
    const clone = entry[1](entry[0], cfg as tfType.serialization.ConfigDict) as unknown as Layer;
    clones.push([layer, clone]);
    paths.set(clone.name, path);
    return clone;
  };

  const apply = (layer: Layer, ins: Sym[], prefix: string[]): Sym[] => {
    if (isNestedModel(layer)) return replay(layer as unknown as tfType.LayersModel, ins, [...prefix, layer.name]);
    const out = cloneOf(layer, [...prefix, layer.name]).apply(ins.length === 1 ? ins[0] : ins) as Sym | Sym[];
    return Array.isArray(out) ? out : [out];
  };

  /** Applies the layers of `container` to `ins` (its inputs, in order). */
  const replay = (container: tfType.LayersModel, ins: Sym[], prefix: string[]): Sym[] => {
    if (container.getClassName() === 'Sequential') {
      let x = ins;
      for (const l of container.layers) if (l.getClassName() !== 'InputLayer') x = apply(l, x, prefix);
      return x;
    }
    const cfg = container.getConfig() as unknown as {
      layers: Array<{ name: string; className: string; inboundNodes: NodeRef[][] }>;
      inputLayers: NodeRef[];
      outputLayers: NodeRef[];
    };
    const produced = new Map<string, Sym[][]>();
    cfg.inputLayers.forEach(([name], i) => produced.set(name, [[ins[i]]]));
    let pending = cfg.layers.filter((l) => l.className !== 'InputLayer');
    while (pending.length) {
      const next = pending.filter((l) => {
        const ready = l.inboundNodes.every((node) => node.every(([src, ni, ti]) => produced.get(src)?.[ni]?.[ti] !== undefined));
        if (!ready) return true;
        const layer = container.getLayer(l.name);
        // A nested model's node 0 is its own construction: references to its calls count from 1.
        const skip = isNestedModel(layer) ? [[]] : [];
        produced.set(l.name, [...skip, ...l.inboundNodes.map((node) => apply(layer, node.map(([src, ni, ti]) => produced.get(src)![ni][ti]), prefix))]);
        return false;
      });
      if (next.length === pending.length) throw new Error(`nested model ${prefix.join('/')}: layers ${next.map((l) => l.name).join(', ')} have inputs that are never produced`);
      pending = next;
    }
    return cfg.outputLayers.map(([name, ni, ti]) => produced.get(name)![ni][ti]);
  };

  const inputs = model.inputs.map((t) => tf.input({ batchShape: t.shape, dtype: t.dtype, name: t.sourceLayer.name }));
  const outputs = replay(model, inputs, []);
  const flat = tf.model({ inputs: inputs.length === 1 ? inputs[0] : inputs, outputs: outputs.length === 1 ? outputs[0] : outputs, name: model.name });
  for (const [from, to] of clones) if (from.weights.length) to.setWeights(from.getWeights());
  for (const l of flat.layers) if (!paths.has(l.name)) paths.set(l.name, [l.name]);
  return { model: flat, paths };
}
