import type * as tfType from '@tensorflow/tfjs';
import { makeConv2DKernels } from './conv2d.js';
import { makeMatMulKernels } from './matmul.js';
import { makeDepthwiseKernels } from './depthwise.js';
import { installConvTraining, registerConvGradients } from './gradients.js';
import { makePoolKernels } from './pool.js';
import { makeReduceKernels } from './reduce.js';
import { CLIP_GRAD_KERNEL, makeElementwiseKernels, registerClipGradient, registerReluGradient, RELU_GRAD_KERNEL } from './elementwise.js';
import { makeSegmentKernels } from './segment.js';
import { installLeanTrainingLayers } from './lean-layers.js';
import { BN_ACT_KERNEL, BN_GRAD_KERNEL, BN_MOMENTS_KERNEL, installBatchNormTraining, makeBatchNormKernels } from './batchnorm.js';
import { makeShapeKernels } from './shape.js';
import type { KernelImpl } from './util.js';
import { fusedMultiplyAdd } from '../simd/fma.js';

/**
 * Who runs an inference plan's 1x1 convs, first convs (3x3 over 3 channels) and 3x3 depthwise convs
 * (FusedConv2D, FusedDepthwiseConv2D), chosen by measurement (`node dist/bench/profile.js --inference
 * --compare`, CPU time):
 * - 1x1 and first convs: compress's SIMD kernels (src/engine/simd/conv.wat.ts, PACKED_CONVS in
 *   ./conv2d.ts) where the runtime multiplies-adds fused (faster than XNNPACK at batch 1 and 32), else
 *   XNNPACK (equal without FMA);
 * - 3x3 depthwise: compress's dw3x3 (chunks of 8 output pixels, each input column loaded once per
 *   filter row; faster than XNNPACK's at batch 1 and 4, and on N > 1 threads split over compress's own
 *   pool: XNNPACK's threads spin between ops), so 1 and N threads compute the same bits.
 * 'simd' / 'xnnpack' force one for both (benchmarks and tests compare them in one process).
 */
export type InferenceConvs = 'auto' | 'simd' | 'xnnpack';
let inferenceConvs: InferenceConvs = 'auto';
export function setInferenceConvs(v: InferenceConvs): void {
  inferenceConvs = v;
}
const simdGemm = () => inferenceConvs === 'simd' || (inferenceConvs === 'auto' && fusedMultiplyAdd());
const simdDepthwise = () => inferenceConvs !== 'xnnpack';

/**
 * The wasm kernels compress registers: the training kernels tfjs-backend-wasm lacks
 * (Conv2DBackpropFilter, DepthwiseConv2dNativeBackpropFilter/Input, UnsortedSegmentSum) and faster
 * replacements for slow ones (Conv2DBackpropInput, MaxPoolGrad, BatchMatMul with transposed operands,
 * Sum and Mean over leading axes, Tile, Identity without a copy, Relu, Add / Sub / Multiply of a channel
 * vector, Conv2D of few input channels, FusedBatchNorm, convs with 'same' padding made explicit (a tfjs-wasm bug),
 * BatchMatMul of a right operand XNNPACK has not packed) one-pass ReLU and ClipByValue (ReLU6) gradients, and batch norm's training gradient in two passes
 * (with the ReLU / ReLU6 after it fused into its forward and gradient passes where the graph allows).
 */
export const WASM_KERNEL_NAMES = [
  'Conv2DBackpropInput',
  'Conv2DBackpropFilter',
  'DepthwiseConv2dNativeBackpropInput',
  'DepthwiseConv2dNativeBackpropFilter',
  'MaxPoolGrad',
  'UnsortedSegmentSum',
  'BatchMatMul',
  'Sum',
  'Identity',
  'Relu',
  'Add',
  'Sub',
  'Multiply',
  'Mean',
  'Tile',
  'FusedBatchNorm',
  'Conv2D',
  'FusedConv2D',
  'DepthwiseConv2dNative',
  'FusedDepthwiseConv2D',
  RELU_GRAD_KERNEL,
  CLIP_GRAD_KERNEL,
  BN_GRAD_KERNEL,
  BN_MOMENTS_KERNEL,
  BN_ACT_KERNEL,
] as const;

let registered = false;
/** tfjs-backend-wasm's own kernels that compress replaced, kept for comparison (benchmarks, tests). */
export const originalWasmKernels: Record<string, KernelImpl> = {};

/** Registers the training kernels the wasm backend lacks or runs slowly. Idempotent. */
export function registerWasmKernels(tf: typeof tfType): void {
  if (registered) return;
  registered = true;
  const dw = makeDepthwiseKernels(tf, simdDepthwise);
  const pool = makePoolKernels(tf);
  const seg = makeSegmentKernels(tf);
  const mm = makeMatMulKernels(tf);
  const reduce = makeReduceKernels(tf);
  const shape = makeShapeKernels(tf);
  const ew = makeElementwiseKernels(tf);
  const conv = makeConv2DKernels(tf, mm.originalBatchMatMul, simdGemm);
  const bn = makeBatchNormKernels();
  const impls: Record<(typeof WASM_KERNEL_NAMES)[number], KernelImpl> = {
    Conv2DBackpropInput: conv.conv2DBackpropInput,
    Conv2DBackpropFilter: conv.conv2DBackpropFilter,
    DepthwiseConv2dNativeBackpropInput: dw.depthwiseConv2dNativeBackpropInput,
    DepthwiseConv2dNativeBackpropFilter: dw.depthwiseConv2dNativeBackpropFilter,
    MaxPoolGrad: pool.maxPoolGrad,
    UnsortedSegmentSum: seg.unsortedSegmentSum,
    BatchMatMul: mm.batchMatMul,
    Sum: reduce.sum,
    Identity: ew.identity,
    Relu: ew.relu,
    Conv2D: conv.conv2DForward,
    FusedConv2D: conv.fusedConv2D,
    DepthwiseConv2dNative: dw.depthwiseConv2dNative,
    FusedDepthwiseConv2D: dw.fusedDepthwiseConv2D,
    Add: ew.add,
    Sub: ew.sub,
    Multiply: ew.multiply,
    Mean: reduce.mean,
    Tile: shape.tile,
    FusedBatchNorm: ew.fusedBatchNorm,
    [RELU_GRAD_KERNEL]: ew.reluGrad,
    [CLIP_GRAD_KERNEL]: ew.clipGrad,
    [BN_GRAD_KERNEL]: bn.batchNormGrad,
    [BN_MOMENTS_KERNEL]: bn.moments,
    [BN_ACT_KERNEL]: bn.batchNormAct,
  };
  for (const name of WASM_KERNEL_NAMES) {
    const existing = tf.getKernel(name, 'wasm');
    if (existing) {
      originalWasmKernels[name] = existing.kernelFunc as unknown as KernelImpl;
      tf.unregisterKernel(name, 'wasm');
    }
    // Keep the replaced kernel's setupFunc: it binds the wasm function that the original (which
    // ours may still call, e.g. BatchMatMul without transposes) needs when the backend starts.
    tf.registerKernel({
      kernelName: name,
      backendName: 'wasm',
      kernelFunc: impls[name] as unknown as tfType.KernelFunc,
      ...(existing?.setupFunc ? { setupFunc: existing.setupFunc } : {}),
    });
  }
  registerConvGradients(tf);
  installConvTraining(tf);
  registerReluGradient(tf);
  registerClipGradient(tf);
  installBatchNormTraining(tf);
  installLeanTrainingLayers(tf);
}
