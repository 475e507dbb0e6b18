import type * as tfType from '@tensorflow/tfjs';

/**
 * Keras layer classes tfjs-layers 4.22 lacks, registered under their Keras names so Keras files
 * using them load, run, save and reload as TF.js (a TF.js app loading such an export needs the
 * same registration; the README's layer table marks them 'custom'). Their export conversion is in
 * src/export/layers.ts.
 */
type Tf = typeof tfType;

/** tfjs-layers base classes the custom classes extend (reached through registered builtins). */
interface Bases {
  Merge: new (args: unknown) => object;
  Conv2D: new (args: unknown) => object;
}

/** The members of tfjs-layers' Conv2D a grouped conv reads and sets (tfjs-layers does not export the class). */
interface TfjsConv2D {
  filters: number;
  kernelSize: number[];
  strides: number[];
  padding: 'same' | 'valid';
  dilationRate: number[];
  useBias: boolean;
  kernel: tfType.LayerVariable | null;
  bias: tfType.LayerVariable | null;
  activation: { apply(x: tfType.Tensor): tfType.Tensor };
  kernelInitializer: unknown;
  biasInitializer: unknown;
  kernelRegularizer?: unknown;
  biasRegularizer?: unknown;
  kernelConstraint?: unknown;
  biasConstraint?: unknown;
  inputSpec: unknown;
  built: boolean;
  name: string;
  addWeight(name: string, shape: number[], dtype: null, init: unknown, reg: unknown, trainable: boolean, constraint: unknown): tfType.LayerVariable;
  getConfig(): tfType.serialization.ConfigDict;
}

const CUSTOM: Record<string, (tf: Tf, bases: Bases) => unknown> = {
  /** keras.layers.Subtract: inputs[0] - inputs[1]. */
  Subtract: (tf, { Merge }) =>
    class Subtract extends (Merge as new (args: unknown) => { mergeFunction(inputs: tfType.Tensor[]): tfType.Tensor }) {
      static className = 'Subtract';
      mergeFunction(inputs: tfType.Tensor[]): tfType.Tensor {
        if (inputs.length !== 2) throw new Error(`Subtract takes exactly two inputs, got ${inputs.length}`);
        return tf.tidy(() => tf.sub(inputs[0], inputs[1]));
      }
    },
  /**
   * keras.layers.Normalization (preprocessing, last axis): (x - mean) / max(sqrt(variance), 1e-7). mean,
   * variance and count are non-trainable weights (Keras 2/3 files store them so); mean/variance given in
   * the config initialise them.
   */
  Normalization: (tf) =>
    class Normalization extends tf.layers.Layer {
      static className = 'Normalization';
      readonly axis: number;
      readonly initMean?: number[];
      readonly initVariance?: number[];
      constructor(args: { axis?: number | number[] | null; mean?: number | number[]; variance?: number | number[] } & Record<string, unknown>) {
        super(args as Record<string, never>);
        const axis = Array.isArray(args.axis) ? (args.axis.length === 1 ? args.axis[0] : NaN) : (args.axis ?? -1);
        if (axis !== -1) throw new Error(`Normalization over axis ${JSON.stringify(args.axis)} is not supported; use the last axis (-1)`);
        this.axis = axis;
        const list = (v: number | number[] | undefined) => (v === undefined || v === null ? undefined : ([] as number[]).concat(v));
        this.initMean = list(args.mean);
        this.initVariance = list(args.variance);
      }
      build(inputShape: tfType.Shape | tfType.Shape[]): void {
        const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfType.Shape;
        const n = shape[shape.length - 1] as number;
        const mean = this.addWeight('mean', [n], 'float32', tf.initializers.zeros(), undefined, false);
        const variance = this.addWeight('variance', [n], 'float32', tf.initializers.ones(), undefined, false);
        this.addWeight('count', [], 'float32', tf.initializers.zeros(), undefined, false);
        const fill = (v: number[]) => tf.tensor1d(v.length === 1 ? new Array<number>(n).fill(v[0]) : v);
        if (this.initMean) mean.write(fill(this.initMean));
        if (this.initVariance) variance.write(fill(this.initVariance));
        this.built = true;
      }
      call(inputs: tfType.Tensor | tfType.Tensor[]): tfType.Tensor {
        return tf.tidy(() => {
          const x = Array.isArray(inputs) ? inputs[0] : inputs;
          const [mean, variance] = this.weights.map((w) => w.read());
          return tf.div(tf.sub(x, mean), tf.maximum(tf.sqrt(variance), 1e-7));
        });
      }
      getConfig(): tfType.serialization.ConfigDict {
        return { ...super.getConfig(), axis: this.axis };
      }
    },
  /**
   * keras.applications ConvNeXt's LayerScale (CaiT's layer scale): x * gamma, one trainable value per channel
   * (`projection_dim` of them, initialised to `init_values`).
   */
  LayerScale: (tf) =>
    class LayerScale extends tf.layers.Layer {
      static className = 'LayerScale';
      readonly initValues: number;
      readonly projectionDim?: number;
      constructor(args: { initValues?: number; projectionDim?: number } & Record<string, unknown>) {
        super(args as Record<string, never>);
        this.initValues = Number(args.initValues ?? 1e-6);
        this.projectionDim = args.projectionDim === undefined ? undefined : Number(args.projectionDim);
      }
      build(inputShape: tfType.Shape | tfType.Shape[]): void {
        const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfType.Shape;
        const n = shape[shape.length - 1] as number;
        if (this.projectionDim !== undefined && n !== this.projectionDim) throw new Error(`LayerScale ${this.name}: projection_dim ${this.projectionDim} but the input has ${n} channels`);
        this.addWeight('gamma', [n], 'float32', tf.initializers.constant({ value: this.initValues }), undefined, true);
        this.built = true;
      }
      call(inputs: tfType.Tensor | tfType.Tensor[]): tfType.Tensor {
        return tf.tidy(() => tf.mul(Array.isArray(inputs) ? inputs[0] : inputs, this.weights[0].read()));
      }
      getConfig(): tfType.serialization.ConfigDict {
        return { ...super.getConfig(), initValues: this.initValues, ...(this.projectionDim !== undefined ? { projectionDim: this.projectionDim } : {}) };
      }
    },
  /** keras.applications InceptionResNetV2's CustomScaleLayer: inputs[0] + inputs[1] * scale (a scaled residual). */
  CustomScaleLayer: (tf) =>
    class CustomScaleLayer extends tf.layers.Layer {
      static className = 'CustomScaleLayer';
      readonly scale: number;
      constructor(args: { scale?: number } & Record<string, unknown>) {
        super(args as Record<string, never>);
        this.scale = Number(args.scale);
        if (!Number.isFinite(this.scale)) throw new Error(`CustomScaleLayer ${this.name}: scale must be a number, got ${String(args.scale)}`);
      }
      computeOutputShape(inputShape: tfType.Shape | tfType.Shape[]): tfType.Shape {
        return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfType.Shape;
      }
      call(inputs: tfType.Tensor | tfType.Tensor[]): tfType.Tensor {
        if (!Array.isArray(inputs) || inputs.length !== 2) throw new Error(`CustomScaleLayer ${this.name} takes two inputs`);
        return tf.tidy(() => tf.add(inputs[0], tf.mul(inputs[1], this.scale)));
      }
      getConfig(): tfType.serialization.ConfigDict {
        return { ...super.getConfig(), scale: this.scale };
      }
    },
  /**
   * keras.applications ConvNeXt's StochasticDepth (timm's DropPath): in training each sample's residual branch is
   * dropped with probability `drop_path_rate` (the rest scaled by 1 / keep); at inference the identity. Seeded by
   * the trainer like Dropout (`seed`).
   */
  StochasticDepth: (tf) =>
    class StochasticDepth extends tf.layers.Layer {
      static className = 'StochasticDepth';
      readonly dropPathRate: number;
      seed?: number;
      constructor(args: { dropPathRate?: number } & Record<string, unknown>) {
        super(args as Record<string, never>);
        this.dropPathRate = Number(args.dropPathRate ?? 0);
        if (!(this.dropPathRate >= 0 && this.dropPathRate < 1)) throw new Error(`StochasticDepth ${this.name}: drop_path_rate must be in [0, 1), got ${String(args.dropPathRate)}`);
      }
      call(inputs: tfType.Tensor | tfType.Tensor[], kwargs: { training?: boolean }): tfType.Tensor {
        const x = Array.isArray(inputs) ? inputs[0] : inputs;
        if (!kwargs?.training || this.dropPathRate === 0) return x;
        return tf.tidy(() => tf.dropout(x, this.dropPathRate, [x.shape[0], ...x.shape.slice(1).map(() => 1)], this.seed));
      }
      getConfig(): tfType.serialization.ConfigDict {
        return { ...super.getConfig(), dropPathRate: this.dropPathRate };
      }
    },
  /**
   * keras.layers.Conv2D with `groups` > 1 (Keras applications' RegNet, ResNeXt; an ONNX Conv with 1 < group <
   * channels): the input channels split into `groups` equal parts, each convolved with its own filters
   * (kernel [kh, kw, C / groups, filters]; output channel o belongs to group floor(o / (filters / groups))).
   * tfjs-layers' Conv2D has no `groups`: this is its subclass, computing each group's conv and concatenating
   * them (gradients through tf.split / tf.concat). Exported as a grouped CONV_2D / Conv (group attribute).
   */
  GroupedConv2D: (tf, { Conv2D }) =>
    class GroupedConv2D extends (Conv2D as unknown as new (args: unknown) => TfjsConv2D) {
      static className = 'GroupedConv2D';
      readonly groups: number;
      constructor(args: { groups?: number } & Record<string, unknown>) {
        const { groups, ...rest } = args;
        super(rest);
        this.groups = Number(groups ?? 1);
        if (!Number.isInteger(this.groups) || this.groups < 1) throw new Error(`GroupedConv2D ${String(args.name ?? '')}: groups must be a positive integer, got ${String(groups)}`);
        if (this.filters % this.groups !== 0) throw new Error(`GroupedConv2D ${this.name}: ${this.filters} filters do not split into ${this.groups} groups`);
      }
      build(inputShape: tfType.Shape | tfType.Shape[]): void {
        const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfType.Shape;
        const channels = shape[shape.length - 1] as number;
        if (shape.length !== 4 || channels % this.groups !== 0) {
          throw new Error(`GroupedConv2D ${this.name}: input [${shape.slice(1).join(', ')}] does not split into ${this.groups} channel groups`);
        }
        this.kernel = this.addWeight('kernel', [...this.kernelSize, channels / this.groups, this.filters], null, this.kernelInitializer, this.kernelRegularizer, true, this.kernelConstraint);
        if (this.useBias) this.bias = this.addWeight('bias', [this.filters], null, this.biasInitializer, this.biasRegularizer, true, this.biasConstraint);
        this.inputSpec = [{ ndim: 4, axes: { 3: channels } }];
        this.built = true;
      }
      call(inputs: tfType.Tensor | tfType.Tensor[], kwargs?: { training?: boolean }): tfType.Tensor {
        return tf.tidy(() => {
          const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tfType.Tensor4D;
          const y = groupedConv2d(tf, x, this.kernel!.read() as tfType.Tensor4D, this.groups, {
            strides: this.strides as [number, number], padding: this.padding, dilations: this.dilationRate as [number, number],
          }, kwargs?.training === true);
          return this.activation.apply(this.bias ? tf.add(y, this.bias.read()) : y);
        });
      }
      getConfig(): tfType.serialization.ConfigDict {
        return { ...super.getConfig(), groups: this.groups };
      }
    },
};

/**
 * Groups with at most this many input channels run as one depthwise conv plus a sum (depthwiseGrouped); wider
 * ones as one conv per group. The depthwise form holds an intermediate of (input channels per group) x the output.
 */
export const DEPTHWISE_GROUP_MAX_CHANNELS = 32;

/** padding: tfjs's, incl. explicit [[0, 0], [top, bottom], [left, right], [0, 0]] (the inference plan's folded ZeroPadding2D). */
type ConvOptions = { strides: [number, number]; padding: 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]]; dilations: [number, number] };

/**
 * A grouped 2-D convolution (NHWC; filter [kh, kw, C / groups, O]): the model's layer, the inference plan and the
 * export checks compute it alike. At inference narrow groups (ResNeXt's 4-32 channels, RegNet's 8-16) run as
 * depthwiseGrouped: one op instead of a split, a conv per group and a concat (tfjs's per-op cost: ResNeXt-50 at
 * 96x96 spent 48 of 220 ms a pass in split and concat, and its 4-channel convs ran at 5 GMAC/s); wider groups, and
 * every group in training, one conv each: a gradient tape would keep depthwiseGrouped's intermediate (input channels
 * per group x the output: ResNeXt-50's grouped layers at batch 38 held 2.5 GB against 0.7).
 */
export function groupedConv2d(tf: Tf, x: tfType.Tensor4D, filter: tfType.Tensor4D, groups: number, o: ConvOptions, training = false): tfType.Tensor4D {
  if (groups === 1) return tf.conv2d(x, filter, o.strides, o.padding, 'NHWC', o.dilations);
  if (!training && filter.shape[2] <= DEPTHWISE_GROUP_MAX_CHANNELS) return depthwiseGrouped(tf, x, depthwiseGroupFilter(tf, filter, groups), groups, o);
  const xs = tf.split(x, groups, 3) as tfType.Tensor4D[];
  const ks = tf.split(filter, groups, 3) as tfType.Tensor4D[];
  return tf.concat(xs.map((xi, i) => tf.conv2d(xi, ks[i], o.strides, o.padding, 'NHWC', o.dilations)), 3);
}

/**
 * The grouped filter [kh, kw, Cg, G*Og] as a depthwise filter [kh, kw, G*Cg, Og]: input channel g*Cg + i, multiplier
 * o holds the weight of input i of group g for output g*Og + o.
 */
export function depthwiseGroupFilter(tf: Tf, filter: tfType.Tensor4D, groups: number): tfType.Tensor4D {
  const [kh, kw, cg, O] = filter.shape;
  return tf.tidy(() => filter.reshape([kh, kw, cg, groups, O / groups]).transpose([0, 1, 3, 2, 4]).reshape([kh, kw, groups * cg, O / groups]));
}

/**
 * A grouped conv as one depthwise conv with multiplier Og (every input channel times each of its group's filters:
 * [.., G, Cg, Og]) summed over the group's Cg inputs: the same multiply-adds, in one op.
 */
export function depthwiseGrouped(tf: Tf, x: tfType.Tensor4D, depthwiseFilter: tfType.Tensor4D, groups: number, o: ConvOptions): tfType.Tensor4D {
  return tf.tidy(() => {
    const og = depthwiseFilter.shape[3];
    const cg = depthwiseFilter.shape[2] / groups;
    const y = tf.depthwiseConv2d(x, depthwiseFilter, o.strides, o.padding, 'NHWC', o.dilations);
    const [n, h, w] = y.shape;
    return tf.sum(y.reshape([n * h * w * groups, cg, og]), 1).reshape([n, h, w, groups * og]) as tfType.Tensor4D;
  });
}

/** Layer classes the trainer seeds like Dropout (each has a `seed` it reads when training). */
export const SEEDED_DROPOUT_CLASSES: ReadonlySet<string> = new Set(['Dropout', 'StochasticDepth']);

/** Names of the classes compress registers with tfjs. */
export const CUSTOM_LAYER_CLASSES = Object.keys(CUSTOM);

/**
 * Keras activations tfjs-layers 4.22 lacks, registered as tfjs activations under their Keras names
 * (a layer's `activation: 'hard_swish'` then loads, runs and saves; tfjs's config calls it hardSwish). Their export conversion is in
 * ACTIVATIONS (src/export/layers.ts).
 */
const CUSTOM_ACTIVATIONS: Record<string, (tf: Tf, x: tfType.Tensor) => tfType.Tensor> = {
  /** keras.activations.hard_swish (MobileNetV3): x * relu6(x + 3) / 6. */
  hard_swish: (tf, x) => tf.mul(x, tf.div(tf.relu6(tf.add(x, 3)), 6)),
  /**
   * keras.activations.hard_sigmoid of Keras 3: relu6(x + 3) / 6. Keras 2's (and tfjs's hard_sigmoid) is
   * clip(0.2 x + 0.5, 0, 1), so a Keras 3 file's 'hard_sigmoid' loads as this one (src/model/load/keras.ts).
   */
  hard_sigmoid_keras3: (tf, x) => tf.div(tf.relu6(tf.add(x, 3)), 6),
};

/** Names of the activations compress registers with tfjs. */
export const CUSTOM_ACTIVATION_NAMES = Object.keys(CUSTOM_ACTIVATIONS);

export function registerCustomLayers(tf: Tf): void {
  const map = tf.serialization.SerializationMap.getMap().classNameMap as Record<string, [new (...a: unknown[]) => unknown, unknown]>;
  const bases: Bases = { Merge: Object.getPrototypeOf(map.Add[0]) as Bases['Merge'], Conv2D: map.Conv2D[0] as Bases['Conv2D'] };
  for (const [name, make] of Object.entries(CUSTOM)) {
    if (map[name]) continue;
    tf.serialization.registerClass(make(tf, bases) as unknown as tfType.serialization.SerializableConstructor<tfType.serialization.Serializable>);
  }
  // tfjs's Activation base class, reached through a registered builtin (relu6).
  const Activation = Object.getPrototypeOf(map.relu6[0]) as new () => object;
  for (const [name, fn] of Object.entries(CUSTOM_ACTIVATIONS)) {
    // tfjs names activations in camelCase (Keras's hard_swish reads back as hardSwish, as hard_sigmoid does).
    const className = name.replace(/_(\w)/g, (_m, c: string) => c.toUpperCase());
    if (map[className]) continue;
    const cls = class extends Activation {
      static className = className;
      apply(x: tfType.Tensor): tfType.Tensor {
        return tf.tidy(() => fn(tf, x));
      }
    };
    tf.serialization.registerClass(cls as unknown as tfType.serialization.SerializableConstructor<tfType.serialization.Serializable>);
  }
}
