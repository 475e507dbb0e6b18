/**
 * What a model file declares, checked before any weight tensor is allocated or the model is built: a
 * 600-byte model.json can declare a Dense 30000x30000 (3.6 GB) next to a 1 KB shard, and building
 * the model first would initialise all of it. The loaders call these checks:
 *
 * - `checkShardSizes`: the bytes a weightsManifest group declares equal its shards' sizes on disk
 *   (stat only, nothing read);
 * - `checkTopology`: the weights the topology's layers create (found by building the model with a
 *   shape-recording initializer that allocates nothing) are no more than the weight files declare;
 * - `checkWeightBudget`: declared weights fit the stage's `memoryMb` budget (set by the stage worker),
 *   because a synchronous build or decode never yields to the worker's memory sampler.
 */
import { stat } from 'node:fs/promises';
import type * as tfType from '@tensorflow/tfjs';
import { InputError } from '../../errors/input-error.js';
import { setOwn } from '../../util/own.js';

type Tf = typeof tfType;

let budgetBytes = Infinity;

/** The memory budget loads in this thread must fit (the stage worker sets it from `memoryMb`). */
export function setLoadMemoryBudget(memoryMb: number | undefined): void {
  budgetBytes = memoryMb ? memoryMb * 1024 * 1024 : Infinity;
}

const mb = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;

/** Refuses weights that would not fit the memory budget (float32 once decoded, the model holds one copy at least). */
export function checkWeightBudget(elements: number, file: string): void {
  const bytes = elements * 4;
  if (bytes > budgetBytes) {
    throw new InputError(`the model declares ${elements} weights (${mb(bytes)} as float32), over the stage's memory budget of ${mb(budgetBytes)} (memoryMb)`, {
      file,
      hint: 'raise memoryMb, or check that the file is the model you meant',
    });
  }
}

/** Sizes of weight shards on disk (stat, not read); a missing shard is left for the reader to name. */
export async function shardSizes(paths: string[]): Promise<Array<number | undefined>> {
  return Promise.all(paths.map(async (p) => (await stat(p).catch(() => undefined))?.size));
}

/**
 * A weightsManifest group must declare exactly the bytes its shards hold, checked from the sizes on
 * disk before anything is read or built. The difference is put on one shard: every shard but the
 * last has the common shard size. `paths` are the shards' full paths, `names` as model.json lists them.
 */
export function checkShardSizes(expected: number, sizes: Array<number | undefined>, names: string[], paths: string[]): void {
  if (sizes.some((s) => s === undefined)) return;
  const lens = sizes as number[];
  const actual = lens.reduce((a, b) => a + b, 0);
  if (actual === expected) return;
  const n = lens.length;
  let culprit = n - 1;
  let want = expected;
  if (n > 1) {
    const common = mode(lens.slice(0, n - 1));
    const odd = lens.slice(0, n - 1).findIndex((s) => s !== common);
    if (odd >= 0) {
      culprit = odd;
      want = common;
    } else want = expected - common * (n - 1);
  }
  throw new InputError(
    `weight shard '${names[culprit]}' is ${lens[culprit] ?? 0} bytes, expected ${want} ` +
      `(weights of this manifest group need ${expected} bytes in all, the shards hold ${actual})`,
    { file: paths[culprit] ?? names[culprit], hint: actual < expected ? 'the shard is truncated (or model.json declares more than its weights); re-copy or re-export the model' : 'the shard does not belong to this model.json' },
  );
}

function mode(xs: number[]): number {
  const counts = new Map<number, number>();
  for (const x of xs) counts.set(x, (counts.get(x) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || b[0] - a[0])[0][0];
}

const PROBE_CLASS = 'CompressShapeProbe';
/** Per tfjs instance (each stage worker has its own): where its registered probe reports shapes. */
const probes = new WeakMap<object, { sink?: (shape: number[]) => void }>();

function probeFor(tf: Tf): { sink?: (shape: number[]) => void } {
  let p = probes.get(tf.serialization);
  if (p) return p;
  const state: { sink?: (shape: number[]) => void } = {};
  class ShapeProbe extends tf.serialization.Serializable {
    static className = PROBE_CLASS;
    getClassName() {
      return PROBE_CLASS;
    }
    getConfig() {
      return {};
    }
    apply(shape: number[], dtype?: tfType.DataType) {
      state.sink?.(shape);
      return tf.zeros([], dtype);
    }
  }
  tf.serialization.registerClass(ShapeProbe);
  probes.set(tf.serialization, state);
  return state;
}

/** The shapes of every weight the topology's layers create, found without allocating them. */
export async function topologyWeightShapes(tf: Tf, topology: unknown): Promise<number[][]> {
  const shapes: number[][] = [];
  const probe = probeFor(tf);
  probe.sink = (shape) => shapes.push([...shape]);
  let model: tfType.LayersModel | undefined;
  try {
    model = await tf.models.modelFromJSON({ modelTopology: withProbeInitializers(topology) as tfType.io.ModelJSON['modelTopology'] });
  } catch {
    // A topology that cannot be built is reported by the real build, with its own message.
  } finally {
    probe.sink = undefined;
    model?.dispose();
  }
  return shapes;
}

/** The topology with every `*_initializer` replaced by the probe (Keras and TF.js spell them this way). */
function withProbeInitializers(v: unknown, depth = 0): unknown {
  if (depth > 200) return v;
  if (Array.isArray(v)) return v.map((x) => withProbeInitializers(x, depth + 1));
  if (!v || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    setOwn(out, k, /_initializer$/.test(k) && x !== null ? { class_name: PROBE_CLASS, config: {} } : withProbeInitializers(x, depth + 1));
  }
  return out;
}

/** How much more than the files declare a topology may ask for before it is refused unbuilt. */
export const TOPOLOGY_SLACK_BYTES = 64 * 1048576;

/**
 * The topology's weights must come from the weight files: more elements than they declare means the
 * layers would be built (and initialised) for weights that do not exist. Checked before the build.
 */
export async function checkTopology(tf: Tf, topology: unknown, declaredElements: number, file: string): Promise<void> {
  const shapes = await topologyWeightShapes(tf, topology);
  const needed = shapes.reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  // Small differences are left to the per-layer checks after the build, which name the layer and weight.
  if ((needed - declaredElements) * 4 > TOPOLOGY_SLACK_BYTES) {
    const biggest = shapes.reduce((a, s) => (s.reduce((x, y) => x * y, 1) > a.reduce((x, y) => x * y, 1) ? s : a), [] as number[]);
    throw new InputError(
      `the model's layers need ${needed} weights (${mb(needed * 4)} as float32; the largest has shape [${biggest.join(', ')}]) but its weight files declare ${declaredElements}`,
      { file, hint: 'the model config and its weights do not match (refused before building the model)' },
    );
  }
  checkWeightBudget(needed, file);
}

const RESHAPE_PROBE = 'CompressReshapeProbe';
/** Per tfjs instance: the registered Reshape probe's resolved target shapes, by probe id. */
const reshapeProbes = new WeakMap<object, { resolved?: Map<number, number[]> }>();

/**
 * tfjs's Reshape leaves a -1 in its symbolic output shape whenever the batch size is unknown (always,
 * in a model), so a layer after `Reshape([1, 1, -1])` cannot be built. This probe computes what the
 * -1 stands for from the fully known input shape.
 */
function reshapeProbeFor(tf: Tf): { resolved?: Map<number, number[]> } {
  let p = reshapeProbes.get(tf.serialization);
  if (p) return p;
  const state: { resolved?: Map<number, number[]> } = {};
  class ReshapeProbe extends tf.layers.Layer {
    static className = RESHAPE_PROBE;
    readonly targetShape: number[];
    readonly probeId: number;
    constructor(args: { targetShape: number[]; probeId: number } & Record<string, unknown>) {
      super(args as unknown as Record<string, never>);
      this.targetShape = args.targetShape;
      this.probeId = args.probeId;
    }
    computeOutputShape(inputShape: tfType.Shape | tfType.Shape[]): tfType.Shape {
      const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfType.Shape;
      const dims = shape.slice(1);
      if (dims.some((d) => d === null || d === undefined)) return [shape[0], ...this.targetShape.map((d) => (d < 0 ? null : d))];
      const size = (dims as number[]).reduce((a, b) => a * b, 1);
      const known = this.targetShape.filter((d) => d >= 0).reduce((a, b) => a * b, 1);
      const resolved = this.targetShape.map((d) => (d < 0 ? size / known : d));
      state.resolved?.set(this.probeId, resolved);
      return [shape[0], ...resolved];
    }
    call(inputs: tfType.Tensor | tfType.Tensor[]): tfType.Tensor {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      return tf.reshape(x, [x.shape[0], ...this.targetShape]);
    }
    getConfig(): tfType.serialization.ConfigDict {
      return { ...super.getConfig(), targetShape: this.targetShape, probeId: this.probeId };
    }
  }
  tf.serialization.registerClass(ReshapeProbe as unknown as tfType.serialization.SerializableConstructor<tfType.serialization.Serializable>);
  reshapeProbes.set(tf.serialization, state);
  return state;
}

/**
 * Replaces the -1 in the target shape of every Reshape in the topology (tfjs dialect, changed in
 * place) by the size it stands for, found by building the model with probes (nothing allocated).
 * A target whose input shape is not fully known keeps its -1.
 */
export async function resolveReshapeTargets(tf: Tf, topology: unknown): Promise<void> {
  const found: Array<Record<string, unknown>> = [];
  const walk = (v: unknown, depth: number) => {
    if (depth > 200 || !v || typeof v !== 'object') return;
    if (Array.isArray(v)) return v.forEach((x) => walk(x, depth + 1));
    const o = v as Record<string, unknown>;
    const target = (o.config as Record<string, unknown> | undefined)?.target_shape;
    if (o.class_name === 'Reshape' && Array.isArray(target) && target.some((d) => typeof d === 'number' && d < 0)) found.push(o);
    Object.values(o).forEach((x) => walk(x, depth + 1));
  };
  walk(topology, 0);
  if (found.length === 0) return;
  const probe = reshapeProbeFor(tf);
  found.forEach((o, i) => {
    o.class_name = RESHAPE_PROBE;
    o.config = { ...(o.config as object), probe_id: i };
  });
  const probed = withProbeInitializers(topology);
  found.forEach((o) => {
    o.class_name = 'Reshape';
    const { probe_id: _id, ...config } = o.config as Record<string, unknown>;
    o.config = config;
  });
  probe.resolved = new Map();
  const sink = probeFor(tf);
  sink.sink = () => {};
  let model: tfType.LayersModel | undefined;
  try {
    model = await tf.models.modelFromJSON({ modelTopology: probed as tfType.io.ModelJSON['modelTopology'] });
  } catch {
    // A topology that cannot be built is reported by the real build, with its own message.
  } finally {
    sink.sink = undefined;
    model?.dispose();
  }
  for (const [i, shape] of probe.resolved) (found[i].config as Record<string, unknown>).target_shape = shape;
  probe.resolved = undefined;
}
