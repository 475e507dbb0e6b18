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
};

/** Names of the classes compress registers with tfjs. */
export const CUSTOM_LAYER_CLASSES = Object.keys(CUSTOM);

export function registerCustomLayers(tf: Tf): void {
  const map = tf.serialization.SerializationMap.getMap().classNameMap as Record<string, [new (...a: unknown[]) => unknown, unknown]>;
  const Merge = Object.getPrototypeOf(map.Add[0]) as new (args: unknown) => object;
  for (const [name, make] of Object.entries(CUSTOM)) {
    if (map[name]) continue;
    tf.serialization.registerClass(make(tf, Merge) as unknown as tfType.serialization.SerializableConstructor<tfType.serialization.Serializable>);
  }
}
