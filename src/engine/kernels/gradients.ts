import type * as tfType from '@tensorflow/tfjs';

/**
 * Replaces tfjs's Conv2D gradient with one that passes `dilations` through to the backprop kernels.
 * compress's wasm kernels honour it; other backends' kernels ignore it, so there the original
 * "dilation rates greater than 1 are not yet supported in gradients" error is kept.
 */
export function registerConvGradients(tf: typeof tfType): void {
  tf.registerGradient({ kernelName: 'Conv2D', inputsToSave: ['x', 'filter'], gradFunc: conv2dGrad(tf) });
  // DepthwiseConv2dNative: tfjs's gradient refuses dilations > 1 outright; compress's wasm kernels support them.
  tf.registerGradient({ kernelName: 'DepthwiseConv2dNative', inputsToSave: ['x', 'filter'], gradFunc: depthwiseGrad(tf) });
  registerBiasConvGradients(tf);
}

type GradFunc = (dy: tfType.Tensor | tfType.Tensor[], saved: tfType.Tensor[], attrs: tfType.NamedAttrMap) => Record<string, () => tfType.Tensor>;

/** The backprop kernels of a conv op and the name its errors use. */
interface ConvBackprop {
  op: string;
  input: string;
  filter: string;
  /** Whether the kernels take a dataFormat attribute (Conv2D's do, the depthwise ones do not). */
  dataFormat: boolean;
}

const CONV2D_BACKPROP: ConvBackprop = { op: 'conv2D', input: 'Conv2DBackpropInput', filter: 'Conv2DBackpropFilter', dataFormat: true };
const DEPTHWISE_BACKPROP: ConvBackprop = { op: 'depthwiseConv2dNative', input: 'DepthwiseConv2dNativeBackpropInput', filter: 'DepthwiseConv2dNativeBackpropFilter', dataFormat: false };

/** Conv2D's gradient for x and the filter, dilations passed through. */
const conv2dGrad = (tf: typeof tfType): GradFunc => convGrad(tf, CONV2D_BACKPROP);
/** DepthwiseConv2dNative's gradient for x and the filter, dilations passed through. */
const depthwiseGrad = (tf: typeof tfType): GradFunc => convGrad(tf, DEPTHWISE_BACKPROP);

/** A conv's gradient for x and the filter by its backprop kernels, `dilations` passed through (other backends refuse them). */
function convGrad(tf: typeof tfType, k: ConvBackprop): GradFunc {
  return (dy, saved, attrs) => {
    const [x, filter] = saved;
    const a = attrs as unknown as { dilations?: unknown; strides: number | [number, number]; pad: unknown; dataFormat?: string; dimRoundingMode?: string };
    const [d, dilated] = dil(a.dilations);
    if (dilated && tf.getBackend() !== 'wasm') {
      throw new Error(`Error in gradient of ${k.op}: dilation rates greater than 1 are not yet supported in gradients on backend ${tf.getBackend()}. Got dilations '${d}'`);
    }
    const common = { strides: a.strides, pad: a.pad, ...(k.dataFormat ? { dataFormat: a.dataFormat ?? 'NHWC' } : {}), dimRoundingMode: a.dimRoundingMode, dilations: d };
    const g = dy as tfType.Tensor;
    return {
      x: () => tf.engine().runKernel(k.input, { dy: g, filter }, { ...common, inputShape: x.shape } as never) as tfType.Tensor,
      filter: () => tf.engine().runKernel(k.filter, { x, dy: g }, { ...common, filterShape: filter.shape } as never) as tfType.Tensor,
    };
  };
}

/**
 * Gradients of FusedConv2D / FusedDepthwiseConv2D with a bias and no activation, for the training path of
 * installConvTraining, which runs those kernels straight on the tape (tfjs's own fused ops wrap them in a
 * customGrad that keeps their output for the activation's gradient and computes every input's gradient;
 * tfjs-layers' DepthwiseConv2D adds its bias with an Add, which keeps both its inputs). Keeps only x and the
 * filter: a conv's output is not held until the backward pass, and the data input's gradient is not computed
 * (the tape asks only for inputs on a path to a variable).
 */
function registerBiasConvGradients(tf: typeof tfType): void {
  const withBias = (kernelName: string, grad: GradFunc): void =>
    tf.registerGradient({
      kernelName,
      inputsToSave: ['x', 'filter'],
      gradFunc: (dy, saved, attrs) => {
        const activation = (attrs as { activation?: unknown }).activation;
        if (activation != null && activation !== 'linear') throw new Error(`${kernelName}: compress's training gradient is for a linear activation, got '${activation}'`);
        const g = dy as tfType.Tensor;
        return { ...grad(g, saved, attrs), bias: () => tf.sum(g, [0, 1, 2]) };
      },
    });
  withBias('FusedConv2D', conv2dGrad(tf));
  withBias('FusedDepthwiseConv2D', depthwiseGrad(tf));
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
 * Conv2D / DepthwiseConv2D layers in a training step (a gradient tape records, wasm, channels last):
 * - without bias and activation (a conv before a batch norm): tf.conv2d, not tfjs-layers' fused conv: the fused
 *   op's gradient computes the input's gradient even where nothing needs it (a model's first conv: its input is
 *   the data; MobileNetV2-0.35 96x96 batch 32: ~10 ms CPU of a step), while the tape asks conv2d's registered
 *   gradient (above) only for the inputs on a path to a variable;
 * - with a bias and no activation of their own (the importers' convs with the batch norm folded in, before a
 *   ReLU layer): the FusedConv2D / FusedDepthwiseConv2D kernel straight on the tape, whose registered gradient
 *   (registerBiasConvGradients) keeps x and the filter only. tfjs-layers' fused conv kept its output too, and its
 *   DepthwiseConv2D's bias Add kept the depthwise output: one activation-sized tensor per conv held until the
 *   backward pass.
 */
export function installConvTraining(tf: typeof tfType): void {
  if (convPatched) return;
  convPatched = true;
  const recordingOnWasm = () =>
    (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0 && tf.getBackend() === 'wasm';
  const convProto = Object.getPrototypeOf(tf.layers.conv2d({ filters: 1, kernelSize: 1 })) as { call: ConvCall };
  const convCall = convProto.call;
  convProto.call = function (this: ConvLayer, inputs, kwargs) {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const plain = recordingOnWasm() && this.rank === 2 && this.dataFormat === 'channelsLast' && x.rank === 4 &&
      this.activation.getClassName() === 'linear' && (this.padding === 'same' || this.padding === 'valid');
    if (!plain) return convCall.call(this, inputs, kwargs);
    const attrs = { strides: this.strides, pad: this.padding, dataFormat: 'NHWC', dilations: this.dilationRate };
    if (this.bias == null) return tf.conv2d(x as tfType.Tensor4D, this.kernel.read() as tfType.Tensor4D, this.strides as [number, number], this.padding as 'same', 'NHWC', this.dilationRate as [number, number]);
    return tf.engine().runKernel('FusedConv2D', { x, filter: this.kernel.read(), bias: this.bias.read() }, { ...attrs, activation: 'linear' } as never) as tfType.Tensor;
  };
  const dwProto = Object.getPrototypeOf(tf.layers.depthwiseConv2d({ kernelSize: 1 })) as { call: DepthwiseCall };
  const dwCall = dwProto.call;
  dwProto.call = function (this: DepthwiseLayer, inputs, kwargs) {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const withBias = recordingOnWasm() && this.useBias && this.bias != null && this.dataFormat === 'channelsLast' && x.rank === 4 &&
      (this.padding === 'same' || this.padding === 'valid');
    if (!withBias) return dwCall.call(this, inputs, kwargs);
    // tfjs-layers' own call runs the depthwise conv without dilation; so does this.
    const y = tf.engine().runKernel('FusedDepthwiseConv2D', { x, filter: this.depthwiseKernel.read(), bias: this.bias!.read() }, { strides: this.strides, pad: this.padding, dataFormat: 'NHWC', dilations: [1, 1], activation: 'linear' } as never) as tfType.Tensor;
    return this.activation ? this.activation.apply(y) : y;
  };
}

type DepthwiseCall = (this: DepthwiseLayer, inputs: tfType.Tensor | tfType.Tensor[], kwargs: Record<string, unknown>) => tfType.Tensor;
interface DepthwiseLayer {
  dataFormat: string;
  strides: number[];
  padding: string;
  useBias: boolean;
  depthwiseKernel: { read(): tfType.Tensor };
  bias?: { read(): tfType.Tensor } | null;
  activation?: { apply(t: tfType.Tensor): tfType.Tensor };
}
