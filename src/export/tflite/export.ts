import type { ModelMeta } from '../../model/meta.js';
import { ExportError } from '../errors.js';
import { encodeFloat16 } from '../../util/float16.js';
import type { Activation, IrGraph, IrOp, Padding as IrPadding, WeightOp } from '../ir.js';
import { activationParams, INT4_QMAX, permute, quantizeBias, quantizeWeights, type QParams, type QuantizedWeights, type Range } from '../quant.js';
import {
  AddSlot, ConcatenationSlot, Conv2DSlot, DepthwiseSlot, FullyConnectedSlot, FusedActivation, GeluSlot, LeakyReluSlot, MulSlot, Op, Options, Padding,
  Pool2DSlot, ReducerSlot, ReshapeSlot, ResizeNearestSlot, SoftmaxSlot, SubSlot, TensorType, TransposeConvSlot,
} from './schema.js';
import { addWeight, type Storage } from './sparsity.js';
import { bytesOf, TfliteModelBuilder, type OptionsTable } from './writer.js';
import { packInt4 } from '../../util/int4.js';

/** Ops whose full-int8 kernel reads INT4 weights (op_version.cc: FULLY_CONNECTED 10, CONV_2D / DEPTHWISE_CONV_2D 7). */
const INT4_IN_INT8 = new Set<IrOp['kind']>(['dense', 'conv2d', 'depthwise']);

/** Ops LiteRT was measured to run with a DENSIFY-fed filter (TRANSPOSE_CONV was not tried: its kernels stay dense). */
const SPARSE_KINDS = new Set<IrOp['kind']>(['dense', 'conv2d', 'depthwise']);

export type TflitePrecision = 'float32' | 'float16' | 'dynamic-int8' | 'int8' | 'int4';

const INT8_FIXED: Partial<Record<IrOp['kind'], QParams>> = {
  softmax: { scale: 1 / 256, zeroPoint: -128 },
  sigmoid: { scale: 1 / 256, zeroPoint: -128 },
  tanh: { scale: 1 / 128, zeroPoint: 0 },
};

function fusedAct(a: Activation): number {
  return a === 'relu' ? FusedActivation.RELU : a === 'relu6' ? FusedActivation.RELU6 : FusedActivation.NONE;
}
function pad(p: IrPadding): number {
  return p === 'same' ? Padding.SAME : Padding.VALID;
}

/**
 * Writes the IR as a TFLite flatbuffer. Activations run batch 1 (the shape TFLite runtimes
 * allocate by default); the input and output are float32 in every precision.
 */
export interface TfliteWriteOptions {
  /** Per-channel int8 weights (default); false: one scale per tensor, for runtimes / NPUs that need it. */
  perChannel?: boolean;
  /** Pruned weights as TFLite sparse tensors + DENSIFY: `auto` (default) when that makes the file smaller. */
  storage?: Storage;
}

export function irToTflite(ir0: IrGraph, meta: ModelMeta, precision: TflitePrecision, ranges?: Range[], opts: TfliteWriteOptions = {}): { bytes: Uint8Array; notes: string[] } {
  const ir = precision === 'int8' ? withChannelMeansAsConvs(ir0) : ir0;
  const perChannel = opts.perChannel ?? true;
  const storage = opts.storage ?? 'auto';
  /** Kernels that may go sparse (the caller, targets.ts, passes `dense` where the precision cannot). */
  const storageOf = (op: WeightOp): Storage => (SPARSE_KINDS.has(op.kind) ? storage : 'dense');
  const m = new TfliteModelBuilder();
  const notes: string[] = [];

  const int8 = precision === 'int8';
  const hybrid = precision === 'dynamic-int8';
  if (int8 && !ranges) throw new ExportError('tflite', undefined, 'int8 export needs activation ranges');
  const params: Array<QParams | undefined> = [];
  const tfl: number[] = []; // IR tensor id -> TFLite tensor index
  const v = (float: number, q: number, hyb = float) => (int8 ? q : hybrid ? hyb : float);

  const actTensor = (id: number, name: string, p?: QParams) => {
    const shape = [1, ...ir.tensors[id].shape];
    if (!int8) return m.addTensor(name, shape, TensorType.FLOAT32);
    params[id] = p;
    return m.addTensor(name, shape, TensorType.INT8, undefined, { scale: [p!.scale], zeroPoint: [p!.zeroPoint] });
  };
  const ownParams = (id: number): QParams => {
    const r = ranges![id];
    return activationParams(r.min, r.max, -128, 127);
  };
  /** A float constant, stored as float16 + DEQUANTIZE when precision is float16. */
  const floatConst = (name: string, shape: number[], data: Float32Array): number => {
    if (precision !== 'float16') return m.addTensor(name, shape, TensorType.FLOAT32, bytesOf(data));
    const half = m.addTensor(`${name}_fp16`, shape, TensorType.FLOAT16, bytesOf(encodeFloat16(data)));
    const full = m.addTensor(name, shape, TensorType.FLOAT32);
    m.addOperator(Op.DEQUANTIZE, 3, [half], [full]);
    return full;
  };
  const int32Const = (name: string, data: number[]) => m.addTensor(name, [data.length], TensorType.INT32, bytesOf(Int32Array.from(data)));

  // Input: float32; full-int8 quantizes it first.
  const inputName = 'input';
  if (int8) {
    const f = m.addTensor(inputName, [1, ...ir.tensors[ir.input].shape], TensorType.FLOAT32);
    m.inputs = [f];
    tfl[ir.input] = actTensor(ir.input, 'input_int8', ownParams(ir.input));
    m.addOperator(Op.QUANTIZE, 1, [f], [tfl[ir.input]]);
  } else {
    tfl[ir.input] = actTensor(ir.input, inputName);
    m.inputs = [tfl[ir.input]];
  }

  /** A constant on the int8 grid `p` (values outside it clamp, as QUANTIZE would). */
  const int8Const = (name: string, shape: number[], data: Float32Array, p: QParams): number => {
    const q = Int8Array.from(data, (v) => Math.max(-128, Math.min(127, Math.round(v / p.scale) + p.zeroPoint)));
    return m.addTensor(name, shape, TensorType.INT8, bytesOf(q), { scale: [p.scale], zeroPoint: [p.zeroPoint] });
  };
  /** Constant operands: int8 on their own per-tensor grid, else float (float16 + DEQUANTIZE in float16). */
  for (const t of ir.tensors) {
    if (!t.data) continue;
    const name = `${t.layer}/const`;
    if (!int8) {
      tfl[t.id] = hybrid ? m.addTensor(name, t.shape, TensorType.FLOAT32, bytesOf(t.data)) : floatConst(name, t.shape, t.data);
      continue;
    }
    const p = activationParams(Math.min(...t.data), Math.max(...t.data), -128, 127);
    params[t.id] = p;
    tfl[t.id] = int8Const(name, t.shape, t.data, p);
  }
  /** Input `i` on the int8 grid `p` (a requantizing QUANTIZE when it is on another one; a constant is written on it). */
  const onGrid = (i: number, p: QParams | undefined): number => {
    const ip = params[i];
    if (!int8 || (ip!.scale === p!.scale && ip!.zeroPoint === p!.zeroPoint)) return tfl[i];
    const t = ir.tensors[i];
    if (t.data) return int8Const(`${t.layer}/const_requantized`, t.shape, t.data, p!);
    const rq = m.addTensor(`${ir.tensors[i].layer}/requantized`, [1, ...ir.tensors[i].shape], TensorType.INT8, undefined, { scale: [p!.scale], zeroPoint: [p!.zeroPoint] });
    m.addOperator(Op.QUANTIZE, 2, [tfl[i]], [rq]);
    return rq;
  };
  const noOptions = (type: number): OptionsTable => ({ type, numFields: 0, fields: [] });

  /** INT4 weights (packed two per byte): DEQUANTIZE to float32 for `int4`, read by the int8 op in `int8`. */
  const int4Weights = (op: WeightOp, layout: number[], q: Int8Array, qw: QuantizedWeights, quantDim: number): [number, number] => {
    const name = op.layer;
    if (qw.fromMeta) notes.push(`${name}: reused compress's ${meta.weightQuant[name].bits}-bit weight scales (INT4)`);
    const quant = {
      scale: qw.perChannel ? Array.from(qw.scales) : [qw.scales[0]],
      zeroPoint: qw.perChannel ? new Array(qw.scales.length).fill(0) : [0],
      quantizedDimension: qw.perChannel ? quantDim : 0,
    };
    const packed = m.addTensor(`${name}/kernel${int8 ? '' : '_int4'}`, layout, TensorType.INT4, packInt4(q), quant);
    if (int8) return [packed, int32Bias(op, qw.scales, qw.perChannel)];
    const float = m.addTensor(`${name}/kernel`, layout, TensorType.FLOAT32);
    m.addOperator(Op.DEQUANTIZE, 6, [packed], [float]);
    return [float, m.addTensor(`${name}/bias`, [op.bias.length], TensorType.FLOAT32, bytesOf(op.bias))];
  };
  /** The int32 bias of a full-int8 op: scale input scale x weight scale, per channel like the weights. */
  const int32Bias = (op: WeightOp, wScales: Float32Array, perCh: boolean): number => {
    const qb = quantizeBias(op.bias, params[op.inputs[0]]!.scale, wScales);
    // The bias is quantized like the weights: per channel, or one scale (XNNPACK rejects a per-tensor conv with a per-channel bias).
    const bScales = perCh ? Array.from(qb.scales) : [qb.scales[0]];
    return m.addTensor(`${op.layer}/bias`, [op.bias.length], TensorType.INT32, bytesOf(qb.q), { scale: bScales, zeroPoint: new Array(bScales.length).fill(0), quantizedDimension: 0 });
  };

  /**
   * Weights [+ bias] of a conv/dense op in the TFLite layout and this precision. `hybridKernel`: LiteRT runs the op with
   * float activations and int8 weights; where it does not, dynamic-int8 stores int8 weights + DEQUANTIZE (weight-only).
   */
  const weightInputs = (op: WeightOp, layout: number[], perm: number[] | null, quantDim: number, perChannel: boolean, hybridKernel = true): [number, number] => {
    const name = op.layer;
    const kshape = op.kernelShape as number[];
    const reorder = <T extends Float32Array | Int8Array>(a: T): T => (perm ? permute(a, kshape, perm) : a);
    if (precision === 'float32') {
      const w = addWeight(m, `${name}/kernel`, layout, TensorType.FLOAT32, reorder(op.kernel), undefined, storageOf(op));
      if (w.sparse) notes.push(`${name}: sparse kernel (CSR + DENSIFY)`);
      return [w.tensor, floatConst(`${name}/bias`, [op.bias.length], op.bias)];
    }
    // int4: weight-only (INT4 + DEQUANTIZE, float ops). int8: a layer the quantize stage left on a <= 4-bit
    // symmetric grid keeps exactly those integers as INT4 (FULLY_CONNECTED v10, CONV_2D / DEPTHWISE v7; measured
    // in LiteRT; TRANSPOSE_CONV stays int8).
    const q4 = precision === 'int4' || (int8 && INT4_IN_INT8.has(op.kind)) ? quantizeWeights(op, meta, perChannel, INT4_QMAX) : undefined;
    if (q4 && (precision === 'int4' || q4.fromMeta)) return int4Weights(op, layout, reorder(q4.q), q4, quantDim);
    if (!int8 && !hybrid) {
      return [floatConst(`${name}/kernel`, layout, reorder(op.kernel)), floatConst(`${name}/bias`, [op.bias.length], op.bias)];
    }
    if (hybrid && !perChannel && op.kind === 'depthwise') {
      // Measured: LiteRT 2.5.3 runs a dynamic-range DEPTHWISE_CONV_2D with one weight scale without an error and returns wrong values.
      throw new ExportError('tflite', op.layer, 'dynamic-int8 depthwise convolutions need per-channel weights in LiteRT; use perChannel: true or precision int8');
    }
    const qw = quantizeWeights(op, meta, perChannel);
    if (qw.fromMeta) notes.push(`${name}: reused compress's int8 weight scales`);
    const wQuant = {
      scale: qw.perChannel ? Array.from(qw.scales) : [qw.scales[0]],
      zeroPoint: qw.perChannel ? new Array(qw.scales.length).fill(0) : [0],
      quantizedDimension: qw.perChannel ? quantDim : 0,
    };
    if (hybrid && !hybridKernel) {
      const q = m.addTensor(`${name}/kernel_int8`, layout, TensorType.INT8, bytesOf(reorder(qw.q)), wQuant);
      const f = m.addTensor(`${name}/kernel`, layout, TensorType.FLOAT32);
      m.addOperator(Op.DEQUANTIZE, 2, [q], [f]);
      notes.push(`${name}: int8 weights + DEQUANTIZE (LiteRT has no dynamic-range kernel for this op)`);
      return [f, m.addTensor(`${name}/bias`, [op.bias.length], TensorType.FLOAT32, bytesOf(op.bias))];
    }
    const w = addWeight(m, `${name}/kernel`, layout, TensorType.INT8, reorder(qw.q), wQuant, storageOf(op), hybrid ? { dequantizeTo: TensorType.FLOAT32 } : { viaReshape: true });
    if (w.sparse) notes.push(`${name}: sparse kernel (CSR + DENSIFY${hybrid ? ' + DEQUANTIZE' : ' + RESHAPE'})`);
    const wt = w.tensor;
    if (hybrid) return [wt, m.addTensor(`${name}/bias`, [op.bias.length], TensorType.FLOAT32, bytesOf(op.bias))];
    return [wt, int32Bias(op, qw.scales, qw.perChannel)];
  };

  /** Full int8 with a final softmax: its float output tensor. */
  let floatOutput: number | undefined;
  for (const op of ir.ops) {
    const x = tfl[op.inputs[0]];
    const outName = ir.tensors[op.output].layer;
    const inP = params[op.inputs[0]];
    let out: number;
    let options: OptionsTable | undefined;
    switch (op.kind) {
      case 'conv2d': {
        const [kh, kw, ci, co] = op.kernelShape;
        const [w, b] = weightInputs(op, [co, kh, kw, ci], [3, 0, 1, 2], 0, perChannel);
        out = actTensor(op.output, outName, int8 ? ownParams(op.output) : undefined);
        options = {
          type: Options.Conv2DOptions, numFields: Conv2DSlot.numFields,
          fields: [[Conv2DSlot.padding, 'i8', pad(op.padding)], [Conv2DSlot.stride_w, 'i32', op.strides[1]], [Conv2DSlot.stride_h, 'i32', op.strides[0]],
            [Conv2DSlot.fused_activation, 'i8', fusedAct(op.activation)], [Conv2DSlot.dilation_w, 'i32', op.dilation[1]], [Conv2DSlot.dilation_h, 'i32', op.dilation[0]]],
        };
        m.addOperator(Op.CONV_2D, v(1, 3, 5), [x, w, b], [out], options);
        break;
      }
      case 'depthwise': {
        const [kh, kw, ci, mult] = op.kernelShape;
        const [w, b] = weightInputs(op, [1, kh, kw, ci * mult], null, 3, perChannel);
        out = actTensor(op.output, outName, int8 ? ownParams(op.output) : undefined);
        options = {
          type: Options.DepthwiseConv2DOptions, numFields: DepthwiseSlot.numFields,
          fields: [[DepthwiseSlot.padding, 'i8', pad(op.padding)], [DepthwiseSlot.stride_w, 'i32', op.strides[1]], [DepthwiseSlot.stride_h, 'i32', op.strides[0]],
            [DepthwiseSlot.depth_multiplier, 'i32', mult], [DepthwiseSlot.fused_activation, 'i8', fusedAct(op.activation)],
            [DepthwiseSlot.dilation_w, 'i32', op.dilation[1]], [DepthwiseSlot.dilation_h, 'i32', op.dilation[0]]],
        };
        m.addOperator(Op.DEPTHWISE_CONV_2D, v(1, 3, 6), [x, w, b], [out], options);
        break;
      }
      case 'conv_transpose': {
        // Inputs: output shape, weights [cout, kh, kw, cin], input, bias. LiteRT's kernel wants weights of the input's type.
        const [kh, kw, ci, co] = op.kernelShape;
        const [w, b] = weightInputs(op, [co, kh, kw, ci], [3, 0, 1, 2], 0, perChannel, false);
        out = actTensor(op.output, outName, int8 ? ownParams(op.output) : undefined);
        const shape = int32Const(`${op.layer}/output_shape`, [1, ...ir.tensors[op.output].shape]);
        options = {
          type: Options.TransposeConvOptions, numFields: TransposeConvSlot.numFields,
          fields: [[TransposeConvSlot.padding, 'i8', pad(op.padding)], [TransposeConvSlot.stride_w, 'i32', op.strides[1]], [TransposeConvSlot.stride_h, 'i32', op.strides[0]],
            [TransposeConvSlot.fused_activation, 'i8', fusedAct(op.activation)]],
        };
        m.addOperator(Op.TRANSPOSE_CONV, 3, [shape, w, x, b], [out], options);
        break;
      }
      case 'dense': {
        const [kin, kout] = op.kernelShape;
        const [w, b] = weightInputs(op, [kout, kin], [1, 0], 0, perChannel);
        out = actTensor(op.output, outName, int8 ? ownParams(op.output) : undefined);
        options = {
          type: Options.FullyConnectedOptions, numFields: FullyConnectedSlot.numFields,
          fields: [[FullyConnectedSlot.fused_activation, 'i8', fusedAct(op.activation)], [FullyConnectedSlot.weights_format, 'i8', 0],
            [FullyConnectedSlot.keep_num_dims, 'bool', false], [FullyConnectedSlot.asymmetric_quantize_inputs, 'bool', hybrid]],
        };
        m.addOperator(Op.FULLY_CONNECTED, v(1, 4, 3), [x, w, b], [out], options);
        break;
      }
      case 'maxpool':
      case 'avgpool': {
        out = actTensor(op.output, outName, inP);
        options = {
          type: Options.Pool2DOptions, numFields: Pool2DSlot.numFields,
          fields: [[Pool2DSlot.padding, 'i8', pad(op.padding)], [Pool2DSlot.stride_w, 'i32', op.strides[1]], [Pool2DSlot.stride_h, 'i32', op.strides[0]],
            [Pool2DSlot.filter_w, 'i32', op.pool[1]], [Pool2DSlot.filter_h, 'i32', op.pool[0]], [Pool2DSlot.fused_activation, 'i8', 0]],
        };
        m.addOperator(op.kind === 'maxpool' ? Op.MAX_POOL_2D : Op.AVERAGE_POOL_2D, v(1, 2), [x], [out], options);
        break;
      }
      case 'gap': {
        out = actTensor(op.output, outName, int8 ? ownParams(op.output) : undefined);
        const axes = int32Const(`${op.layer}/axes`, [1, 2]);
        options = { type: Options.ReducerOptions, numFields: ReducerSlot.numFields, fields: [[ReducerSlot.keep_dims, 'bool', false]] };
        m.addOperator(Op.MEAN, v(1, 2), [x, axes], [out], options);
        break;
      }
      case 'reshape': {
        out = actTensor(op.output, outName, inP);
        const newShape = [1, ...op.shape];
        const shapeT = int32Const(`${op.layer}/shape`, newShape);
        options = { type: Options.ReshapeOptions, numFields: ReshapeSlot.numFields, fields: [[ReshapeSlot.new_shape, 'i32vec', newShape]] };
        m.addOperator(Op.RESHAPE, 1, [x, shapeT], [out], options);
        break;
      }
      case 'softmax':
      case 'sigmoid':
      case 'tanh':
      case 'relu':
      case 'relu6': {
        if (op.kind === 'softmax') {
          if (ir.tensors[op.output].shape.length !== 1) throw new ExportError('tflite', op.layer, 'softmax is only exported on [batch, classes] tensors');
          options = { type: Options.SoftmaxOptions, numFields: SoftmaxSlot.numFields, fields: [[SoftmaxSlot.beta, 'f32', 1.0]] };
        }
        if (int8 && op.kind === 'softmax' && op.output === ir.output) {
          // The model's final softmax runs in float on the dequantized logits (as in the ONNX export): an int8
          // softmax output has steps of 1/256, so classes closer than that tie and the first one wins.
          const logits = m.addTensor(`${ir.tensors[op.inputs[0]].layer}/float`, [1, ...ir.tensors[op.inputs[0]].shape], TensorType.FLOAT32);
          m.addOperator(Op.DEQUANTIZE, 2, [x], [logits]);
          out = m.addTensor('output', [1, ...ir.tensors[op.output].shape], TensorType.FLOAT32);
          m.addOperator(Op.SOFTMAX, 1, [logits], [out], options);
          floatOutput = out;
          break;
        }
        out = actTensor(op.output, outName, int8 ? INT8_FIXED[op.kind] ?? ownParams(op.output) : undefined);
        const code = { softmax: Op.SOFTMAX, sigmoid: Op.LOGISTIC, tanh: Op.TANH, relu: Op.RELU, relu6: Op.RELU6 }[op.kind];
        m.addOperator(code, v(1, 2), [x], [out], options);
        break;
      }
      case 'add': {
        out = actTensor(op.output, outName, int8 ? ownParams(op.output) : undefined);
        options = { type: Options.AddOptions, numFields: AddSlot.numFields, fields: [[AddSlot.fused_activation, 'i8', fusedAct(op.activation)]] };
        m.addOperator(Op.ADD, v(1, 2), op.inputs.map((i) => tfl[i]), [out], options);
        break;
      }
      case 'sub':
      case 'mul': {
        out = actTensor(op.output, outName, int8 ? ownParams(op.output) : undefined);
        const slot = op.kind === 'sub' ? SubSlot : MulSlot;
        options = { type: op.kind === 'sub' ? Options.SubOptions : Options.MulOptions, numFields: slot.numFields, fields: [[slot.fused_activation, 'i8', fusedAct(op.activation)]] };
        m.addOperator(op.kind === 'sub' ? Op.SUB : Op.MUL, 1, op.inputs.map((i) => tfl[i]), [out], options);
        break;
      }
      case 'max':
      case 'min': {
        // int8 MAXIMUM/MINIMUM compare raw codes: both inputs go on the output's grid.
        const p = int8 ? ownParams(op.output) : undefined;
        out = actTensor(op.output, outName, p);
        m.addOperator(op.kind === 'max' ? Op.MAXIMUM : Op.MINIMUM, 1, op.inputs.map((i) => onGrid(i, p)), [out], noOptions(Options.MaximumMinimumOptions));
        break;
      }
      case 'pad': {
        out = actTensor(op.output, outName, inP);
        const pads = m.addTensor(`${op.layer}/paddings`, [4, 2], TensorType.INT32, bytesOf(Int32Array.from([0, 0, ...op.pads[0], ...op.pads[1], 0, 0])));
        m.addOperator(Op.PAD, 1, [x, pads], [out], noOptions(Options.PadOptions));
        break;
      }
      case 'slice': {
        out = actTensor(op.output, outName, inP);
        const begin = int32Const(`${op.layer}/begin`, [0, ...op.begin]);
        const size = int32Const(`${op.layer}/size`, [1, ...op.size]);
        m.addOperator(Op.SLICE, 1, [x, begin, size], [out], noOptions(Options.SliceOptions));
        break;
      }
      case 'transpose': {
        out = actTensor(op.output, outName, inP);
        const perm = int32Const(`${op.layer}/perm`, [0, ...op.perm.map((a) => a + 1)]);
        m.addOperator(Op.TRANSPOSE, 1, [x, perm], [out], noOptions(Options.TransposeOptions));
        break;
      }
      case 'resize': {
        out = actTensor(op.output, outName, inP);
        const size = int32Const(`${op.layer}/size`, op.size);
        options = {
          type: Options.ResizeNearestNeighborOptions, numFields: ResizeNearestSlot.numFields,
          fields: [[ResizeNearestSlot.align_corners, 'bool', false], [ResizeNearestSlot.half_pixel_centers, 'bool', false]],
        };
        m.addOperator(Op.RESIZE_NEAREST_NEIGHBOR, 1, [x, size], [out], options);
        break;
      }
      case 'gmp':
      case 'mean_last': {
        const max = op.kind === 'gmp';
        out = actTensor(op.output, outName, int8 ? (max ? inP : ownParams(op.output)) : undefined);
        const axes = int32Const(`${op.layer}/axes`, max ? [1, 2] : [ir.tensors[op.inputs[0]].shape.length]);
        options = { type: Options.ReducerOptions, numFields: ReducerSlot.numFields, fields: [[ReducerSlot.keep_dims, 'bool', !max]] };
        m.addOperator(max ? Op.REDUCE_MAX : Op.MEAN, 1, [x, axes], [out], options);
        break;
      }
      case 'elu':
      case 'hard_swish':
      case 'rsqrt': {
        out = actTensor(op.output, outName, int8 ? ownParams(op.output) : undefined);
        const code = { elu: Op.ELU, hard_swish: Op.HARD_SWISH, rsqrt: Op.RSQRT }[op.kind];
        m.addOperator(code, 1, [x], [out], op.kind === 'hard_swish' ? noOptions(Options.HardSwishOptions) : undefined);
        break;
      }
      case 'leaky_relu': {
        out = actTensor(op.output, outName, int8 ? ownParams(op.output) : undefined);
        options = { type: Options.LeakyReluOptions, numFields: LeakyReluSlot.numFields, fields: [[LeakyReluSlot.alpha, 'f32', op.alpha]] };
        m.addOperator(Op.LEAKY_RELU, 1, [x], [out], options);
        break;
      }
      case 'gelu': {
        out = actTensor(op.output, outName, int8 ? ownParams(op.output) : undefined);
        options = { type: Options.GeluOptions, numFields: GeluSlot.numFields, fields: [[GeluSlot.approximate, 'bool', op.approximate]] };
        m.addOperator(Op.GELU, 1, [x], [out], options);
        break;
      }
      case 'concat': {
        const p = int8 ? ownParams(op.output) : undefined;
        out = actTensor(op.output, outName, p);
        // int8 CONCATENATION needs every input on the output's grid: requantize the others.
        const ins = op.inputs.map((i) => onGrid(i, p));
        options = {
          type: Options.ConcatenationOptions, numFields: ConcatenationSlot.numFields,
          fields: [[ConcatenationSlot.axis, 'i32', op.axis + 1], [ConcatenationSlot.fused_activation, 'i8', 0]],
        };
        m.addOperator(Op.CONCATENATION, v(1, 2), ins, [out], options);
        break;
      }
    }
    tfl[op.output] = out!;
  }

  const last = tfl[ir.output];
  if (floatOutput !== undefined) m.outputs = [floatOutput];
  else if (int8) {
    const f = m.addTensor('output', [1, ...ir.tensors[ir.output].shape], TensorType.FLOAT32);
    m.addOperator(Op.DEQUANTIZE, 2, [last], [f]);
    m.outputs = [f];
  } else m.outputs = [last];
  return { bytes: m.finish(`compress ${precision} export of ${ir.name}`), notes };
}

/**
 * Full-int8 files write a mean over the channel axis (LayerNormalization's mean and variance) of an image [H, W, C] as
 * the 1x1 CONV_2D with filter 1/C (one output channel; 1/C is exact on its per-channel grid: every weight is 127), of
 * a vector [C] as the FULLY_CONNECTED with kernel 1/C: the same mean, summed in int32. LiteRT ran an int8 MEAN over the
 * last axis wrongly where it read the quantized model input (agreement 0.20 against onnxruntime's 0.95 on a
 * LayerNormalization of the input; a ConvNeXt-style block failed its check after fine-tuning while its ONNX int8 file
 * passed): its XNNPACK delegate takes the convs, not that MEAN. Float files keep MEAN.
 */
function withChannelMeansAsConvs(ir: IrGraph): IrGraph {
  const ops = ir.ops.map((op) => {
    if (op.kind !== 'mean_last') return op;
    const shape = ir.tensors[op.inputs[0]].shape;
    const C = shape[shape.length - 1];
    const kernel = new Float32Array(C).fill(1 / C);
    if (shape.length === 3) {
      return { kind: 'conv2d', layer: op.layer, inputs: op.inputs, output: op.output, kernelShape: [1, 1, C, 1], kernel, bias: new Float32Array(1), strides: [1, 1], dilation: [1, 1], padding: 'valid', activation: 'none', folded: false } as IrOp;
    }
    if (shape.length === 1) return { kind: 'dense', layer: op.layer, inputs: op.inputs, output: op.output, kernelShape: [C, 1], kernel, bias: new Float32Array(1), activation: 'none', folded: false } as IrOp;
    return op;
  });
  return { ...ir, ops };
}
