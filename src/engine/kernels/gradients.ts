import type * as tfType from '@tensorflow/tfjs';

/**
 * Replaces tfjs's Conv2D gradient with one that passes `dilations` through to the backprop kernels.
 * compress's wasm kernels honour it; other backends' kernels ignore it, so there the original
 * "dilation rates greater than 1 are not yet supported in gradients" error is kept.
 */
export function registerConvGradients(tf: typeof tfType): void {
  tf.registerGradient({
    kernelName: 'Conv2D',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const [x, filter] = saved;
      const a = attrs as unknown as {
        dilations?: number | [number, number];
        strides: number | [number, number];
        pad: unknown;
        dataFormat?: string;
        dimRoundingMode?: string;
      };
      const d = a.dilations == null ? [1, 1] : typeof a.dilations === 'number' ? [a.dilations, a.dilations] : a.dilations;
      const dilated = d[0] !== 1 || d[1] !== 1;
      if (dilated && tf.getBackend() !== 'wasm') {
        throw new Error(
          `Error in gradient of conv2D: dilation rates greater than 1 are not yet supported in gradients on backend ${tf.getBackend()}. Got dilations '${d}'`,
        );
      }
      const common = { strides: a.strides, pad: a.pad, dataFormat: a.dataFormat ?? 'NHWC', dimRoundingMode: a.dimRoundingMode, dilations: d };
      const g = dy as tfType.Tensor;
      return {
        x: () =>
          tf.engine().runKernel('Conv2DBackpropInput', { dy: g, filter }, { ...common, inputShape: x.shape } as never) as tfType.Tensor,
        filter: () =>
          tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: g }, { ...common, filterShape: filter.shape } as never) as tfType.Tensor,
      };
    },
  });

  // DepthwiseConv2dNative: tfjs's gradient refuses dilations > 1 outright; compress's wasm kernels support them.
  tf.registerGradient({
    kernelName: 'DepthwiseConv2dNative',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const [x, filter] = saved;
      const a = attrs as unknown as { dilations?: unknown; strides: number | [number, number]; pad: unknown; dimRoundingMode?: string };
      const [d, dilated] = dil(a.dilations);
      if (dilated && tf.getBackend() !== 'wasm') {
        throw new Error(
          `Error in gradient of depthwiseConv2dNative: dilation rates greater than 1 are not yet supported on backend ${tf.getBackend()}. Got dilations '${d}'`,
        );
      }
      const common = { strides: a.strides, pad: a.pad, dimRoundingMode: a.dimRoundingMode, dilations: d };
      const g = dy as tfType.Tensor;
      return {
        x: () =>
          tf.engine().runKernel('DepthwiseConv2dNativeBackpropInput', { dy: g, filter }, { ...common, inputShape: x.shape } as never) as tfType.Tensor,
        filter: () =>
          tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy: g }, { ...common, filterShape: filter.shape } as never) as tfType.Tensor,
      };
    },
  });
}

/** dilations as a pair, and whether any is above 1. */
function dil(v: unknown): [[number, number], boolean] {
  const d: [number, number] = v == null ? [1, 1] : typeof v === 'number' ? [v, v] : [(v as number[])[0], (v as number[])[1] ?? (v as number[])[0]];
  return [d, d[0] !== 1 || d[1] !== 1];
}

type ConvCall = (this: ConvLayer, inputs: tfType.Tensor | tfType.Tensor[], kwargs: Record<string, unknown>) => tfType.Tensor;
interface ConvLayer {
  rank: number;
  dataFormat: string;
  strides: number[];
  padding: string;
  dilationRate: number[];
  activation: { getClassName(): string };
  kernel: { read(): tfType.Tensor };
  bias?: { read(): tfType.Tensor } | null;
}

let convPatched = false;

/**
 * Conv2D layers without bias and activation (a conv before a batch norm), while a gradient tape records
 * on wasm, run as tf.conv2d, not tfjs-layers' fused conv: the fused op's gradient computes the input's
 * gradient even where nothing needs it (a model's first conv: its input is the data; MobileNetV2-0.35
 * 96x96 batch 32: ~10 ms CPU of a step), while the tape asks conv2d's registered gradient (above) only
 * for the inputs on a path to a variable. (With a bias, the separate add would cost a pass.)
 */
export function installConvTraining(tf: typeof tfType): void {
  if (convPatched) return;
  convPatched = true;
  const proto = Object.getPrototypeOf(tf.layers.conv2d({ filters: 1, kernelSize: 1 })) as { call: ConvCall };
  const original = proto.call;
  proto.call = function (this: ConvLayer, inputs, kwargs) {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const recording = (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0;
    const plain = recording && tf.getBackend() === 'wasm' && this.rank === 2 && this.dataFormat === 'channelsLast' && x.rank === 4 &&
      this.activation.getClassName() === 'linear' && this.bias == null && (this.padding === 'same' || this.padding === 'valid');
    if (!plain) return original.call(this, inputs, kwargs);
    return tf.conv2d(x as tfType.Tensor4D, this.kernel.read() as tfType.Tensor4D, this.strides as [number, number], this.padding as 'same', 'NHWC', this.dilationRate as [number, number]);
  };
}
