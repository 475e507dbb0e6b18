/**
 * MobileNetV2 (Sandler et al. 2018) built in code with seeded weights, for the mid-size benchmarks.
 * Layers are those the exporters support: Conv2D / DepthwiseConv2D with 'same' padding (no
 * ZeroPadding2D unless `kerasPadding`), BatchNormalization, ReLU(maxValue 6), Add, GlobalAveragePooling2D, Dense.
 * alpha 1.0 at 224x224x3 with 1000 classes is the paper's 3.5M-parameter network.
 */
import type * as tfType from '@tensorflow/tfjs';

export interface MobileNetV2Options {
  alpha?: number;
  inputShape?: [number, number, number];
  numClasses?: number;
  seed?: number;
  /** The inverted-residual stages (t, c, n, s); default the paper's seven. Fewer make a small MobileNetV2-style net. */
  stages?: Array<[number, number, number, number]>;
  /** Channels of the last 1x1 conv; default 1280 (scaled up for alpha > 1). */
  lastChannels?: number;
  /**
   * The stride-2 convs as keras.applications writes them (Keras 2.2's MobileNetV2, EfficientNet, the TF.js
   * converter's MobileNetV2): a ZeroPadding2D of `correct_pad` (`Conv1_pad`, `block_N_pad`) before the stem conv
   * and each stride-2 depthwise conv, those with 'valid' padding. Same function as 'same' padding.
   */
  kerasPadding?: boolean;
}

type T = tfType.SymbolicTensor;

/** Channels rounded to a multiple of 8, never below 90% of the request (the reference implementation). */
export function makeDivisible(v: number, divisor = 8): number {
  const n = Math.max(divisor, Math.floor((v + divisor / 2) / divisor) * divisor);
  return n < 0.9 * v ? n + divisor : n;
}

/** (expansion t, output channels c, repeats n, first stride s) of the inverted-residual stages. */
const STAGES: Array<[number, number, number, number]> = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];

export function buildMobileNetV2(tf: typeof tfType, opts: MobileNetV2Options = {}): tfType.LayersModel {
  const alpha = opts.alpha ?? 1;
  const inputShape = opts.inputShape ?? [224, 224, 3];
  const numClasses = opts.numClasses ?? 1000;
  let s = (opts.seed ?? 1) >>> 0;
  const seed = () => (s = (s * 1103515245 + 12345) >>> 0);
  // He-normal convs keep activations in range through 17 blocks without trained batch-norm statistics.
  const heInit = () => tf.initializers.varianceScaling({ scale: 2, mode: 'fanIn', distribution: 'truncatedNormal', seed: seed() });
  const bnInit = () => ({
    gammaInitializer: tf.initializers.randomUniform({ minval: 0.5, maxval: 1, seed: seed() }),
    betaInitializer: tf.initializers.randomUniform({ minval: -0.1, maxval: 0.1, seed: seed() }),
  });
  const conv = (x: T, filters: number, kernel: number, stride: number, name: string, padding: 'same' | 'valid' = 'same') =>
    tf.layers.conv2d({ filters, kernelSize: kernel, strides: stride, padding, useBias: false, kernelInitializer: heInit(), name }).apply(x) as T;
  /** Keras's `correct_pad` for a 3x3 stride-2 conv, ((1 - adjust, 1), ...) with adjust = 1 - size % 2: even sizes (0, 1), odd (1, 1). */
  const correctPad = (x: T, name: string) => {
    const side = (d: number | null) => [(d ?? 0) % 2, 1] as [number, number];
    return tf.layers.zeroPadding2d({ padding: [side(x.shape[1]), side(x.shape[2])], name }).apply(x) as T;
  };
  const bn = (x: T, name: string) => tf.layers.batchNormalization({ epsilon: 1e-3, momentum: 0.999, ...bnInit(), name }).apply(x) as T;
  const relu6 = (x: T, name: string) => tf.layers.reLU({ maxValue: 6, name }).apply(x) as T;

  const input = tf.input({ shape: inputShape, name: 'input' });
  const keras = opts.kerasPadding ?? false;
  const stem = keras ? conv(correctPad(input, 'Conv1_pad'), makeDivisible(32 * alpha), 3, 2, 'Conv1', 'valid') : conv(input, makeDivisible(32 * alpha), 3, 2, 'Conv1');
  let x = relu6(bn(stem, 'bn_Conv1'), 'Conv1_relu');
  let inC = makeDivisible(32 * alpha);
  let block = 0;
  for (const [t, c, n, stride] of opts.stages ?? STAGES) {
    const outC = makeDivisible(c * alpha);
    for (let i = 0; i < n; i++) {
      const p = block === 0 ? 'expanded_conv_' : `block_${block}_`;
      const st = i === 0 ? stride : 1;
      let h = x;
      if (t !== 1) h = relu6(bn(conv(h, inC * t, 1, 1, `${p}expand`), `${p}expand_BN`), `${p}expand_relu`);
      const padded = keras && st === 2;
      if (padded) h = correctPad(h, `${p}pad`);
      h = tf.layers
        .depthwiseConv2d({ kernelSize: 3, strides: st, padding: padded ? 'valid' : 'same', useBias: false, depthwiseInitializer: heInit(), name: `${p}depthwise` })
        .apply(h) as T;
      h = relu6(bn(h, `${p}depthwise_BN`), `${p}depthwise_relu`);
      h = bn(conv(h, outC, 1, 1, `${p}project`), `${p}project_BN`);
      x = st === 1 && inC === outC ? (tf.layers.add({ name: `block_${block}_add` }).apply([x, h]) as T) : h;
      inC = outC;
      block++;
    }
  }
  const lastC = opts.lastChannels ?? (alpha > 1 ? makeDivisible(1280 * alpha) : 1280);
  x = relu6(bn(conv(x, lastC, 1, 1, 'Conv_1'), 'Conv_1_bn'), 'out_relu');
  x = tf.layers.globalAveragePooling2d({ name: 'global_average_pooling2d' }).apply(x) as T;
  const out = tf.layers
    .dense({ units: numClasses, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: seed() }), name: 'predictions' })
    .apply(x) as T;
  return tf.model({ inputs: input, outputs: out, name: `mobilenetv2_${alpha}_${inputShape[0]}` });
}
