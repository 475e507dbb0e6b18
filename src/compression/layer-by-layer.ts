import type * as tfType from '@tensorflow/tfjs';

/**
 * Walking a functional tf.LayersModel layer by layer through its inbound nodes (model.layers is in
 * topological order). Used to rebuild models (factorize) and to run them with per-layer hooks
 * (calibration, activation fake-quant, error reports).
 */

type SymbolicTensor = tfType.SymbolicTensor;
type Layer = tfType.layers.Layer;

interface NodeLike {
  inputTensors: SymbolicTensor[];
  outputTensors: SymbolicTensor[];
}

export interface GraphStep {
  layer: Layer;
  inputIds: number[];
  outputIds: number[];
  /** The input tensors' shapes in this graph (a layer also used in another model has other nodes). */
  inputShapes: Array<Array<number | null>>;
}

export interface ModelGraph {
  inputs: Array<{ id: number; layerName: string; shape: Array<number | null>; dtype: tfType.DataType }>;
  steps: GraphStep[];
  outputIds: number[];
  /** How many steps (plus 1 per model output) consume each tensor id. */
  consumers: Map<number, number>;
  /** The layers consuming each tensor id. */
  consumerLayers: Map<number, Layer[]>;
}

export function isInputLayer(layer: Layer): boolean {
  return layer.getClassName() === 'InputLayer';
}

/** The model's graph; each non-input layer must be used once within it (no shared layers). */
export function modelGraph(model: tfType.LayersModel): ModelGraph {
  const known = new Set<number>();
  const inputs = model.inputs.map((t, i) => {
    known.add(t.id);
    return { id: t.id, layerName: model.inputLayers[i]?.name ?? t.name, shape: t.shape, dtype: t.dtype };
  });
  const steps: GraphStep[] = [];
  const consumers = new Map<number, number>();
  const consumerLayers = new Map<number, Layer[]>();
  for (const layer of model.layers) {
    if (isInputLayer(layer)) continue;
    const nodes = (layer as unknown as { inboundNodes: NodeLike[] }).inboundNodes.filter((n) =>
      n.inputTensors.every((t) => known.has(t.id)),
    );
    if (nodes.length === 0) throw new Error(`layer ${layer.name}: no inbound node connected to the model inputs`);
    if (nodes.length > 1) throw new Error(`layer ${layer.name} is applied ${nodes.length} times; shared layers are not supported`);
    const node = nodes[0];
    const inputIds = node.inputTensors.map((t) => t.id);
    const outputIds = node.outputTensors.map((t) => t.id);
    for (const id of inputIds) {
      consumers.set(id, (consumers.get(id) ?? 0) + 1);
      consumerLayers.set(id, [...(consumerLayers.get(id) ?? []), layer]);
    }
    outputIds.forEach((id) => known.add(id));
    steps.push({ layer, inputIds, outputIds, inputShapes: node.inputTensors.map((t) => t.shape) });
  }
  const outputIds = model.outputs.map((t) => t.id);
  for (const id of outputIds) {
    if (!known.has(id)) throw new Error(`model output ${id} is not produced by its layers`);
    consumers.set(id, (consumers.get(id) ?? 0) + 1);
  }
  return { inputs, steps, outputIds, consumers, consumerLayers };
}

export interface LayerHooks {
  onInput?: (t: tfType.Tensor) => tfType.Tensor | void;
  onOutput?: (layer: Layer, t: tfType.Tensor) => tfType.Tensor | void;
}

/**
 * Runs the model on one concrete batch, layer by layer (inference mode). `onInput` / `onOutput`
 * may replace a tensor (e.g. with a fake-quantized one) or just observe it. Returns the model
 * outputs; intermediates are disposed. Call inside no tf.tidy (this manages memory itself).
 */
export function runLayerByLayer(tf: typeof tfType, graph: ModelGraph, x: tfType.Tensor, hooks: LayerHooks = {}): tfType.Tensor[] {
  const walk = layerSteps(tf, graph, x, hooks);
  for (;;) {
    const r = walk.next();
    if (r.done) return r.value;
  }
}

/**
 * The same walk as a generator: yields each layer with its (hooked) outputs, which stay valid until
 * the walk resumes (clone one to keep it longer), and returns the model outputs. Two walks stepped
 * side by side compare two models layer by layer holding one layer's activations, not all of them.
 * A walk abandoned before its end must be closed with `return()` to release its tensors.
 */
export function* layerSteps(
  tf: typeof tfType,
  graph: ModelGraph,
  x: tfType.Tensor,
  hooks: LayerHooks = {},
): Generator<{ layer: Layer; outputs: tfType.Tensor[] }, tfType.Tensor[], void> {
  if (graph.inputs.length !== 1) throw new Error('only single-input models are supported');
  const values = new Map<number, tfType.Tensor>();
  const remaining = new Map(graph.consumers);
  const release = (id: number) => {
    const r = (remaining.get(id) ?? 0) - 1;
    remaining.set(id, r);
    if (r <= 0) {
      values.get(id)?.dispose();
      values.delete(id);
    }
  };
  try {
    const first = hooks.onInput ? tf.tidy(() => hooks.onInput!(x) ?? x.clone()) : x.clone();
    values.set(graph.inputs[0].id, first);
    for (const step of graph.steps) {
      const ins = step.inputIds.map((id) => {
        const v = values.get(id);
        if (!v) throw new Error(`layer ${step.layer.name}: input not computed`);
        return v;
      });
      const outs = tf.tidy(() => {
        const r = step.layer.apply(ins.length === 1 ? ins[0] : ins, { training: false }) as tfType.Tensor | tfType.Tensor[];
        const list = Array.isArray(r) ? r : [r];
        return list.map((t) => (hooks.onOutput ? (hooks.onOutput(step.layer, t) ?? t) : t));
      });
      step.outputIds.forEach((id, i) => values.set(id, outs[i]));
      yield { layer: step.layer, outputs: outs };
      for (const id of step.inputIds) release(id);
    }
    const result = graph.outputIds.map((id) => {
      const v = values.get(id);
      if (!v) throw new Error('model output not computed');
      return v.clone();
    });
    for (const id of graph.outputIds) release(id);
    return result;
  } finally {
    for (const v of values.values()) v.dispose();
    values.clear();
  }
}

/** Samples accepted by the calibration / evaluation helpers. */
export type Samples = tfType.Tensor | { x: Float32Array; n: number; sampleShape: number[] };

export function sampleCount(s: Samples): number {
  return 'n' in s && !('rank' in s) ? s.n : (s as tfType.Tensor).shape[0];
}

/** Samples [start, end) as a float32 tensor (caller disposes). */
export function sampleBatch(tf: typeof tfType, s: Samples, start: number, end: number): tfType.Tensor {
  if ('rank' in s) return tf.tidy(() => (s as tfType.Tensor).slice(start, end - start));
  const d = s as { x: Float32Array; n: number; sampleShape: number[] };
  const size = d.sampleShape.reduce((a, b) => a * b, 1);
  return tf.tensor(d.x.subarray(start * size, end * size), [end - start, ...d.sampleShape], 'float32');
}
