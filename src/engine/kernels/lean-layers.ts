import type * as tfType from '@tensorflow/tfjs';

/**
 * Layers whose gradient needs none of their tensors, run so in a training step (while a gradient tape
 * records): tfjs's Add gradient keeps both inputs (only for their shapes, to sum a broadcast away) and its
 * PadV2 gradient keeps the input (only for its shape), so a residual Add held the block's output projection
 * and a ZeroPadding2D (keras.applications' `correct_pad` before each stride-2 conv) held the unpadded
 * activation until the backward pass, though nothing reads them. Here they keep nothing:
 * - Add of same-shape inputs: one AddN, gradient dy for each input;
 * - ZeroPadding2D (channels last): one pad, gradient the slice of dy at the input's place.
 * On wasm; same values and gradients (tested against the cpu backend, where tfjs-layers' own code runs, as it
 * does for any other case).
 */
export function installLeanTrainingLayers(tf: typeof tfType): void {
  if (installed) return;
  installed = true;
  const taping = () => (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0 && tf.getBackend() === 'wasm';
  for (const patch of Object.values(LEAN_LAYERS)) {
    const proto = Object.getPrototypeOf(patch.instance(tf)) as Record<string, Method>;
    const own = proto[patch.method];
    proto[patch.method] = function (this: unknown, ...args: unknown[]) {
      return (taping() && patch.run(tf, this, args)) || own.apply(this, args);
    };
  }
}

let installed = false;

type Method = (this: unknown, ...args: unknown[]) => unknown;

interface LeanLayer {
  /** A layer of the class (its prototype gets the patch). */
  instance(tf: typeof tfType): object;
  /** The method replaced. */
  method: string;
  /** The lean form; undefined: not this case, the layer's own method runs. */
  run(tf: typeof tfType, layer: unknown, args: unknown[]): tfType.Tensor | undefined;
}

/** Per layer class, its lean training form. */
const LEAN_LAYERS: Record<'Add' | 'ZeroPadding2D', LeanLayer> = {
  Add: {
    instance: (tf) => tf.layers.add({}),
    method: 'mergeFunction',
    run(tf, _layer, [inputs]) {
      const xs = inputs as tfType.Tensor[];
      if (xs.length < 2 || !xs.every((x) => x.dtype === 'float32' && tf.util.arraysEqual(x.shape, xs[0].shape))) return undefined;
      const add = tf.customGrad((...args: unknown[]) => {
        const ts = args.slice(0, xs.length) as tfType.Tensor[];
        // A clone per input (no copy): the tape disposes each input's gradient on its own.
        return { value: tf.addN(ts), gradFunc: (dy: tfType.Tensor) => ts.map(() => dy.clone()) };
      });
      return add(...xs) as tfType.Tensor;
    },
  },
  ZeroPadding2D: {
    instance: (tf) => tf.layers.zeroPadding2d({}),
    method: 'call',
    run(tf, layer, [inputs]) {
      const { padding, dataFormat } = layer as { padding: [[number, number], [number, number]]; dataFormat: string };
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tfType.Tensor;
      if (dataFormat !== 'channelsLast' || x.rank !== 4 || x.dtype !== 'float32') return undefined;
      const [[t, b], [l, r]] = padding;
      const shape = x.shape;
      const pad = tf.customGrad((xi: unknown) => ({
        value: tf.pad(xi as tfType.Tensor4D, [[0, 0], [t, b], [l, r], [0, 0]]),
        gradFunc: (dy: tfType.Tensor) => tf.slice(dy, [0, t, l, 0], shape),
      }));
      return pad(x) as tfType.Tensor;
    },
  },
};
