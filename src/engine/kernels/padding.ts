import type * as tfType from '@tensorflow/tfjs';
import { pair, type KernelArgs } from './util.js';

/**
 * tfjs-backend-wasm 4.22 hands 'same' padding to XNNPACK as its TensorFlow-SAME flag, and XNNPACK
 * then computes zeros when one spatial axis needs no padding (its filter is 1 and the stride skips
 * past the input) while the other does: a 1x3 conv with stride 2 'same' on 10x11 gives all zeros
 * (conv, fused conv, depthwise). The same padding passed as explicit numbers is computed right, so
 * these wrappers resolve 'same' to explicit padding before the wasm kernel sees it.
 */
export function explicitSamePadding(tf: typeof tfType, args: KernelArgs, depthwise: boolean): KernelArgs {
  const attrs = args.attrs ?? {};
  if (attrs.pad !== 'same') return args;
  const { x, filter } = args.inputs;
  const df = attrs.dataFormat === 'NCHW' || attrs.dataFormat === 'channelsFirst' ? 'channelsFirst' : 'channelsLast';
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filter.shape as [number, number, number, number], attrs.strides as [number, number],
    pair(attrs.dilations), 'same', attrs.dimRoundingMode as 'floor' | undefined, depthwise, df,
  );
  const { top, bottom, left, right } = info.padInfo;
  const spatial = [[top, bottom], [left, right]];
  const pad = df === 'channelsLast' ? [[0, 0], ...spatial, [0, 0]] : [[0, 0], [0, 0], ...spatial];
  return { ...args, attrs: { ...attrs, pad } };
}
