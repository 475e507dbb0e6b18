import type * as tfType from '@tensorflow/tfjs';

/**
 * Keras layer classes tfjs-layers 4.22 lacks, registered under their Keras names so Keras files
 * using them load, run, save and reload as TF.js (a TF.js app loading such an export needs the
 * same registration; the README's layer table marks them 'custom'). Their export conversion is in
 * src/export/layers.ts.
 */
type Tf = typeof tfType;

const CUSTOM: Record<string, (tf: Tf, Merge: new (args: unknown) => object) => unknown> = {
  /** keras.layers.Subtract: inputs[0] - inputs[1]. */
  Subtract: (tf, Merge) =>
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
};

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
  const Merge = Object.getPrototypeOf(map.Add[0]) as new (args: unknown) => object;
  for (const [name, make] of Object.entries(CUSTOM)) {
    if (map[name]) continue;
    tf.serialization.registerClass(make(tf, Merge) as unknown as tfType.serialization.SerializableConstructor<tfType.serialization.Serializable>);
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
