import type * as tfType from '@tensorflow/tfjs';

/**
 * Built-in architectures. Layer names are fixed and documented (they are what selectors match),
 * and initialisers are seeded so the same seed builds the same weights.
 */
export const BUILTIN_MODELS = ['lenet-300-100', 'lenet-5', 'dw-cnn', 'mlp-small'] as const;
export type BuiltinModel = (typeof BUILTIN_MODELS)[number];

export interface BuildOptions {
  inputShape: number[]; // per-sample, e.g. [28, 28, 1]
  numClasses: number;
  seed: number;
}

export function buildModel(tf: typeof tfType, name: BuiltinModel, opts: BuildOptions): tfType.LayersModel {
  let s = opts.seed >>> 0;
  const init = () => tf.initializers.glorotUniform({ seed: (s = (s * 1103515245 + 12345) >>> 0) });
  const dense = (units: number, name: string, activation: 'relu' | 'softmax' | 'linear' = 'relu') =>
    tf.layers.dense({ units, activation, name, kernelInitializer: init(), biasInitializer: 'zeros' });
  const input = tf.input({ shape: opts.inputShape, name: 'input' });
  let x: tfType.SymbolicTensor;
  switch (name) {
    case 'lenet-300-100':
    case 'mlp-small': {
      const [h1, h2] = name === 'lenet-300-100' ? [300, 100] : [64, 32];
      // Flatten needs rank >= 2 per sample; flat feature vectors go straight in.
      x = opts.inputShape.length > 1 ? (tf.layers.flatten({ name: 'flatten' }).apply(input) as tfType.SymbolicTensor) : input;
      x = dense(h1, 'dense_1').apply(x) as tfType.SymbolicTensor;
      x = dense(h2, 'dense_2').apply(x) as tfType.SymbolicTensor;
      x = dense(opts.numClasses, 'dense_3', 'softmax').apply(x) as tfType.SymbolicTensor;
      break;
    }
    case 'lenet-5': {
      x = tf.layers
        .conv2d({ filters: 20, kernelSize: 5, activation: 'relu', name: 'conv_1', kernelInitializer: init() })
        .apply(input) as tfType.SymbolicTensor;
      x = tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: 'pool_1' }).apply(x) as tfType.SymbolicTensor;
      x = tf.layers
        .conv2d({ filters: 50, kernelSize: 5, activation: 'relu', name: 'conv_2', kernelInitializer: init() })
        .apply(x) as tfType.SymbolicTensor;
      x = tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: 'pool_2' }).apply(x) as tfType.SymbolicTensor;
      x = tf.layers.flatten({ name: 'flatten' }).apply(x) as tfType.SymbolicTensor;
      x = dense(500, 'dense_1').apply(x) as tfType.SymbolicTensor;
      x = dense(opts.numClasses, 'dense_2', 'softmax').apply(x) as tfType.SymbolicTensor;
      break;
    }
    case 'dw-cnn': {
      // MobileNet-style: a plain conv stem, then depthwise-separable blocks (depthwise 3x3 + BN + ReLU,
      // pointwise 1x1 + BN + ReLU), global pooling and a classifier.
      x = tf.layers
        .conv2d({ filters: 16, kernelSize: 3, strides: 2, padding: 'same', useBias: false, name: 'stem_conv', kernelInitializer: init() })
        .apply(input) as tfType.SymbolicTensor;
      x = tf.layers.batchNormalization({ name: 'stem_bn' }).apply(x) as tfType.SymbolicTensor;
      x = tf.layers.reLU({ name: 'stem_relu' }).apply(x) as tfType.SymbolicTensor;
      const blocks: Array<[number, number]> = [
        [32, 1],
        [64, 2],
        [64, 1],
      ];
      blocks.forEach(([filters, stride], i) => {
        const b = `block_${i + 1}`;
        x = tf.layers
          .depthwiseConv2d({ kernelSize: 3, strides: stride, padding: 'same', useBias: false, name: `${b}_dw`, depthwiseInitializer: init() })
          .apply(x) as tfType.SymbolicTensor;
        x = tf.layers.batchNormalization({ name: `${b}_dw_bn` }).apply(x) as tfType.SymbolicTensor;
        x = tf.layers.reLU({ name: `${b}_dw_relu` }).apply(x) as tfType.SymbolicTensor;
        x = tf.layers
          .conv2d({ filters, kernelSize: 1, useBias: false, name: `${b}_pw`, kernelInitializer: init() })
          .apply(x) as tfType.SymbolicTensor;
        x = tf.layers.batchNormalization({ name: `${b}_pw_bn` }).apply(x) as tfType.SymbolicTensor;
        x = tf.layers.reLU({ name: `${b}_pw_relu` }).apply(x) as tfType.SymbolicTensor;
      });
      x = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tfType.SymbolicTensor;
      x = dense(opts.numClasses, 'classifier', 'softmax').apply(x) as tfType.SymbolicTensor;
      break;
    }
  }
  return tf.model({ inputs: input, outputs: x, name });
}
