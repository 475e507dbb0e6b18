import onnxProto from 'onnx-proto';
import type { ModelMeta } from '../../model/meta.js';
import { VERSION } from '../../version.js';
import { ExportError } from '../errors.js';
import { samePads, transposeCrop, type IrGraph, type IrOp, type WeightOp } from '../ir.js';
import { packInt4 } from '../../util/int4.js';
import { activationParams, INT4_QMAX, permute, quantizeBias, quantizeWeights, type QParams, type Range } from '../quant.js';

const { onnx } = onnxProto;
type Storage = 'auto' | 'dense' | 'sparse';
type INode = onnxProto.onnx.INodeProto;
type ITensor = onnxProto.onnx.ITensorProto;
type IAttr = onnxProto.onnx.IAttributeProto;

export type OnnxPrecision = 'float32' | 'int8' | 'int4';
export const ONNX_IR_VERSION = 8;
export const ONNX_OPSET = 13;
/** int4 weights (DequantizeLinear of INT4 initializers) need opset 21, which needs IR 10. */
const INT4_OPSET = 21;
const INT4_IR_VERSION = 10;

/**
 * Weights use the reduced grid [-63, 63] ("reduce_range"): onnxruntime's fused U8S8 kernels on
 * AVX2 CPUs without VNNI add pairs of u8*s8 products in int16 (VPMADDUBSW), which saturates for
 * 255 * 127 * 2 (measured: 4e-2 output error on an MLP). 255 * 63 * 2 fits, and fused == unfused.
 * Activations keep the full uint8 grid (7-bit activations cost more agreement than 7-bit weights).
 */
export const ONNX_WEIGHT_QMAX = 63;

/** The int8 weight grid of an op in ONNX: depthwise convs run in MLAS's int32 depthwise kernel (no pairwise int16 sums), so the full grid. */
export function onnxWeightQmax(op: WeightOp): number {
  return op.kind === 'depthwise' ? 127 : ONNX_WEIGHT_QMAX;
}
export const ONNX_ACT_QMAX = 255;
const ACT_QMAX = ONNX_ACT_QMAX;

const DT = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, INT4: 22 } as const;
const AT = onnx.AttributeProto.AttributeType;

function raw(a: Float32Array | Int8Array | Uint8Array | Int32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

/** Framing a sparse initializer adds besides its values and indices (two TensorProto headers, the dims). */
const SPARSE_OVERHEAD = 48;

class GraphBuilder {
  nodes: INode[] = [];
  inits: ITensor[] = [];
  sparseInits: onnxProto.onnx.ISparseTensorProto[] = [];
  constructor(private storage: Storage = 'dense') {}
  private used = new Set<string>();

  unique(base: string): string {
    let n = base;
    for (let i = 1; this.used.has(n); i++) n = `${base}_${i}`;
    this.used.add(n);
    return n;
  }
  init(name: string, dataType: number, dims: number[], data: Float32Array | Int8Array | Uint8Array | Int32Array | BigInt64Array): string {
    // (int4: `data` is already packed two per byte.)
    const n = this.unique(name);
    this.inits.push({ name: n, dataType, dims, rawData: raw(data) });
    return n;
  }
  /**
   * A weight initializer in the chosen storage: a sparse_initializer (the non-zero values and their int64
   * positions in the flattened tensor, ascending: ONNX's 1-D index form) when `storage` is sparse, or auto and
   * that is fewer bytes than the dense tensor; a plain initializer otherwise.
   */
  weight(name: string, dataType: number, dims: number[], data: Float32Array | Int8Array): string {
    if (this.storage === 'dense') return this.init(name, dataType, dims, data);
    const at: number[] = [];
    for (let i = 0; i < data.length; i++) if (data[i] !== 0) at.push(i);
    const sparseBytes = at.length * (data.BYTES_PER_ELEMENT + 8) + SPARSE_OVERHEAD;
    const smaller = sparseBytes < data.byteLength;
    if (at.length === data.length || (this.storage === 'auto' && !smaller)) return this.init(name, dataType, dims, data);
    const n = this.unique(name);
    const values = new (data.constructor as new (k: number) => Float32Array | Int8Array)(at.length);
    at.forEach((p, i) => (values[i] = data[p]));
    this.sparseInits.push({
      values: { name: n, dataType, dims: [at.length], rawData: raw(values) },
      indices: { name: `${n}/indices`, dataType: DT.INT64, dims: [at.length], rawData: raw(BigInt64Array.from(at, BigInt)) },
      dims,
    });
    return n;
  }
  node(opType: string, inputs: string[], outName: string, attrs: IAttr[] = []): string {
    const out = this.unique(outName);
    this.nodes.push({ opType, input: inputs, output: [out], name: this.unique(`${out}/${opType}`), attribute: attrs });
    return out;
  }
}

const ints = (name: string, v: number[]): IAttr => ({ name, type: AT.INTS, ints: v });
const int = (name: string, v: number): IAttr => ({ name, type: AT.INT, i: v });

/**
 * The tensors of each channel shuffle in the IR: Reshape [H, W, C] -> [H, W, g, C/g] -> Transpose swapping
 * the last two axes -> Reshape [H, W, C], each feeding only the next. The export holds them as
 * [N, g, C/g, H, W] and [N, C/g, g, H, W], so the shuffle is Reshape, Transpose, Reshape of the NCHW image
 * (not the NHWC steps between two more transposes).
 */
function channelShuffleTensors(ir: IrGraph): Set<number> {
  const readers = new Map<number, number>([[ir.output, 1]]);
  for (const op of ir.ops) for (const i of op.inputs) readers.set(i, (readers.get(i) ?? 0) + 1);
  const producer = new Map(ir.ops.map((op) => [op.output, op]));
  const sole = (id: number) => (readers.get(id) === 1 ? producer.get(id) : undefined);
  const out = new Set<number>();
  for (const back of ir.ops) {
    const swap = back.kind === 'reshape' ? sole(back.inputs[0]) : undefined;
    const split = swap?.kind === 'transpose' && swap.perm.join() === '0,1,3,2' ? sole(swap.inputs[0]) : undefined;
    if (back.kind !== 'reshape' || swap?.kind !== 'transpose' || split?.kind !== 'reshape') continue;
    const image = ir.tensors[split.inputs[0]].shape;
    const [H, W] = split.shape;
    if (image.length === 3 && split.shape.length === 4 && H === image[0] && W === image[1] && back.shape.join() === image.join()) {
      out.add(split.output);
      out.add(swap.output);
    }
  }
  return out;
}

/**
 * Writes the IR as an ONNX model (IR 8, opset 13). The graph input stays NHWC float (callers pass
 * the same data as to the Keras model); a Transpose moves it to NCHW for the convolutions.
 * int8 is QDQ: uint8 activations (asymmetric per tensor), int8 symmetric per-axis weights, int32
 * biases without zero point. A ReLU/ReLU6 after a quantized op is expressed by the uint8 output
 * range starting at 0 (zero point 0), so DQ -> Conv/Gemm -> Q groups fuse into QLinearConv/QGemm.
 */
export function irToOnnx(ir: IrGraph, meta: ModelMeta, precision: OnnxPrecision, ranges?: Range[], opts: { perChannel?: boolean; storage?: Storage } = {}): { bytes: Uint8Array; notes: string[] } {
  const perChannel = opts.perChannel ?? true;
  const g = new GraphBuilder(opts.storage ?? 'auto');
  const notes: string[] = [];
  const int8 = precision === 'int8';
  const int4 = precision === 'int4';
  const opset = int4 ? INT4_OPSET : ONNX_OPSET;
  if (int8 && !ranges) throw new ExportError('onnx', undefined, 'int8 export needs activation ranges');
  const name = new Map<number, string>(); // IR tensor -> value name (int8: the uint8 value)
  const params: Array<QParams | undefined> = [];
  const nchw = (id: number) => ir.tensors[id].shape.length === 3;
  const shuffled = channelShuffleTensors(ir);
  const own = (id: number): QParams => activationParams(ranges![id].min, ranges![id].max, 0, ACT_QMAX);
  const qparamInits = (base: string, p: QParams): [string, string] => [
    g.init(`${base}/scale`, DT.FLOAT, [], Float32Array.of(p.scale)),
    g.init(`${base}/zero_point`, DT.UINT8, [], Uint8Array.of(p.zeroPoint)),
  ];
  /** A float view of IR tensor `id` for one consumer. */
  const floatIn = (id: number): string => {
    if (!int8 || ir.tensors[id].data) return name.get(id) as string;
    const [s, z] = qparamInits(ir.tensors[id].layer, params[id]!);
    return g.node('DequantizeLinear', [name.get(id) as string, s, z], `${ir.tensors[id].layer}/dq`);
  };
  /** Publishes the float value `v` as IR tensor `id` (int8: quantized with `p`). */
  const publish = (id: number, v: string, p?: QParams) => {
    if (!int8) {
      name.set(id, v);
      return;
    }
    const q = p ?? own(id);
    params[id] = q;
    const [s, z] = qparamInits(ir.tensors[id].layer, q);
    name.set(id, g.node('QuantizeLinear', [v, s, z], `${ir.tensors[id].layer}/q`));
  };
  /** Applies a layout-only node chain in int8 as its own QDQ group (params unchanged). */
  const layoutStep = (id: number, opType: string, extra: string[], attrs: IAttr[], label: string): void => {
    const v = g.node(opType, [floatIn(id), ...extra], label, attrs);
    if (int8) {
      const [s, z] = qparamInits(label, params[id]!);
      name.set(id, g.node('QuantizeLinear', [v, s, z], `${label}/q`));
    } else name.set(id, v);
  };

  /** Per-sample axis `a` of IR tensor `id` as an ONNX axis (images are NCHW). */
  const onnxAxis = (id: number, a: number): number => (nchw(id) ? [2, 3, 1][a] : a + 1);
  /** A float constant operand, laid out to broadcast against `partner` (a per-channel vector of an image is [C, 1, 1]). */
  const constFor = (id: number, partner: number): string => {
    const t = ir.tensors[id];
    let dims = t.shape;
    if (nchw(partner) && dims.length === 1 && dims[0] > 1) dims = [dims[0], 1, 1];
    else if (nchw(partner) && dims.length === 3) dims = [dims[2], dims[0], dims[1]];
    const data = dims.length === 3 && t.shape.length === 3 ? permute(t.data as Float32Array, t.shape, [2, 0, 1]) : (t.data as Float32Array);
    return g.init(`${t.layer}/const`, DT.FLOAT, dims, data);
  };
  /** The float inputs of an element-wise op (constants laid out against the other operand). */
  const operands = (op: IrOp): string[] => op.inputs.map((i, k) => (ir.tensors[i].data ? constFor(i, op.inputs[1 - k] ?? i) : floatIn(i)));
  const scalar = (label: string, v: number): string => g.init(label, DT.FLOAT, [], Float32Array.of(v));

  // Input: NHWC float; images go to NCHW before anything else.
  const inShape = ir.tensors[ir.input].shape;
  let x0 = 'input';
  if (nchw(ir.input)) x0 = g.node('Transpose', ['input'], 'input_nchw', [ints('perm', [0, 3, 1, 2])]);
  publish(ir.input, x0, int8 ? own(ir.input) : undefined);

  /** Weight and bias of a conv/dense op in `layout`; int8: QDQ with per-channel scales along `channelAxis` of that layout. */
  const weightAndBias = (op: WeightOp, layout: number[], reorder: <T extends Float32Array | Int8Array>(a: T) => T, channelAxis = 0): [string, string] => {
    if (int4) {
      // Weight-only int4: DequantizeLinear of a packed INT4 initializer (symmetric, no zero point) feeds the float op.
      const qw = quantizeWeights(op, meta, perChannel, INT4_QMAX);
      if (qw.fromMeta) notes.push(`${op.layer}: reused compress's 4-bit weight scales`);
      const wq = g.init(`${op.layer}/kernel_q`, DT.INT4, layout, packInt4(reorder(qw.q)));
      const ws = g.init(`${op.layer}/kernel_scale`, DT.FLOAT, qw.perChannel ? [qw.scales.length] : [], qw.perChannel ? qw.scales : qw.scales.subarray(0, 1));
      const w = g.node('DequantizeLinear', [wq, ws], `${op.layer}/kernel`, qw.perChannel ? [int('axis', channelAxis)] : []);
      return [w, g.init(`${op.layer}/bias`, DT.FLOAT, [op.bias.length], op.bias)];
    }
    if (!int8) {
      return [g.weight(`${op.layer}/kernel`, DT.FLOAT, layout, reorder(op.kernel)), g.init(`${op.layer}/bias`, DT.FLOAT, [op.bias.length], op.bias)];
    }
    const qw = quantizeWeights(op, meta, perChannel, onnxWeightQmax(op));
    if (qw.fromMeta) notes.push(`${op.layer}: reused compress's int8 weight scales`);
    const n = qw.scales.length;
    // Per-axis: one scale per output channel (the weight's `channelAxis`, the bias's only axis); per-tensor: scalar scale and zero point.
    const [dims, wAxis, bAxis] = qw.perChannel ? [[n], [int('axis', channelAxis)], [int('axis', 0)]] : [[], [], []];
    const scalesOf = (a: Float32Array) => (qw.perChannel ? a : a.subarray(0, 1));
    const wq = g.weight(`${op.layer}/kernel_q`, DT.INT8, layout, reorder(qw.q));
    const ws = g.init(`${op.layer}/kernel_scale`, DT.FLOAT, dims, scalesOf(qw.scales));
    const wz = g.init(`${op.layer}/kernel_zero_point`, DT.INT8, dims, new Int8Array(qw.perChannel ? n : 1));
    const w = g.node('DequantizeLinear', [wq, ws, wz], `${op.layer}/kernel`, wAxis);
    const qb = quantizeBias(op.bias, params[op.inputs[0]]!.scale, qw.scales);
    const bq = g.init(`${op.layer}/bias_q`, DT.INT32, [n], qb.q);
    const bs = g.init(`${op.layer}/bias_scale`, DT.FLOAT, dims, scalesOf(qb.scales));
    const b = g.node('DequantizeLinear', [bq, bs], `${op.layer}/bias`, bAxis);
    return [w, b];
  };
  /** Float activation after a compute op; in int8 ReLU/ReLU6 become the output range. */
  const activate = (op: IrOp & { activation: string }, v: string): string => {
    if (op.activation === 'none' || int8) return v;
    if (op.activation === 'relu') return g.node('Relu', [v], `${op.layer}/relu`);
    const lo = g.init(`${op.layer}/clip_min`, DT.FLOAT, [], Float32Array.of(0));
    const hi = g.init(`${op.layer}/clip_max`, DT.FLOAT, [], Float32Array.of(6));
    return g.node('Clip', [v, lo, hi], `${op.layer}/relu6`);
  };
  const spatialPads = (inId: number, k: [number, number], s: [number, number], d: [number, number], padding: string): number[] => {
    if (padding === 'valid') return [0, 0, 0, 0];
    const [H, W] = ir.tensors[inId].shape;
    const ph = samePads(H, k[0], s[0], d[0]);
    const pw = samePads(W, k[1], s[1], d[1]);
    return [ph[0], pw[0], ph[1], pw[1]];
  };
  const actOut = (id: number, act: string): QParams | undefined => {
    if (!int8) return undefined;
    const r = ranges![id];
    // A fused ReLU/ReLU6 must clamp at 0 (and 6): make the uint8 grid start at exactly 0.
    if (act === 'relu') return activationParams(0, Math.max(r.max, 1e-6), 0, ACT_QMAX);
    if (act === 'relu6') return activationParams(0, Math.min(Math.max(r.max, 1e-6), 6), 0, ACT_QMAX);
    return own(id);
  };

  const lastOp = ir.ops.length ? ir.ops[ir.ops.length - 1] : undefined;
  const finalFloat = int8 && lastOp !== undefined && lastOp.kind === 'softmax' && lastOp.output === ir.output;
  let finalName: string | undefined;

  for (const op of ir.ops) {
    const x = op.inputs[0];
    const label = ir.tensors[op.output].layer;
    switch (op.kind) {
      case 'conv2d':
      case 'depthwise': {
        const [kh, kw, ci, m] = op.kernelShape;
        const depth = op.kind === 'depthwise';
        const layout = depth ? [ci * m, 1, kh, kw] : [m, ci, kh, kw];
        const [w, b] = weightAndBias(op, layout, (a) => permute(a, op.kernelShape, depth ? [2, 3, 0, 1] : [3, 2, 0, 1]));
        const v = g.node('Conv', [floatIn(x), w, b], label, [
          ints('kernel_shape', [kh, kw]), ints('strides', op.strides), ints('dilations', op.dilation),
          ints('pads', spatialPads(x, [kh, kw], op.strides, op.dilation, op.padding)), int('group', depth ? ci : (op.groups ?? 1)),
        ]);
        publish(op.output, activate(op, v), actOut(op.output, op.activation));
        break;
      }
      case 'conv_transpose': {
        // ONNX weight [cin, cout, kh, kw], per-channel along axis 1. The full result is cropped by `pads` (TF's SAME split)
        // or extended by `output_padding` so the output has Keras's size.
        const [kh, kw] = op.kernelShape;
        const [H, W] = ir.tensors[x].shape;
        const [ch, cw] = [transposeCrop(H, kh, op.strides[0], op.padding), transposeCrop(W, kw, op.strides[1], op.padding)];
        const [w, b] = weightAndBias(op, [op.kernelShape[2], op.kernelShape[3], kh, kw], (a) => permute(a, op.kernelShape, [2, 3, 0, 1]), 1);
        const v = g.node('ConvTranspose', [floatIn(x), w, b], label, [
          ints('kernel_shape', [kh, kw]), ints('strides', op.strides), ints('pads', [ch.crop[0], cw.crop[0], ch.crop[1], cw.crop[1]]),
          ints('output_padding', [ch.extra, cw.extra]),
        ]);
        publish(op.output, activate(op, v), actOut(op.output, op.activation));
        break;
      }
      case 'dense': {
        const [kin, kout] = op.kernelShape;
        const [w, b] = weightAndBias(op, [kout, kin], (a) => permute(a, [kin, kout], [1, 0]));
        const v = g.node('Gemm', [floatIn(x), w, b], label, [int('transB', 1)]);
        publish(op.output, activate(op, v), actOut(op.output, op.activation));
        break;
      }
      case 'maxpool':
      case 'avgpool': {
        const attrs = [ints('kernel_shape', op.pool), ints('strides', op.strides), ints('pads', spatialPads(x, op.pool, op.strides, [1, 1], op.padding))];
        if (op.kind === 'avgpool') attrs.push(int('count_include_pad', 0));
        const v = g.node(op.kind === 'maxpool' ? 'MaxPool' : 'AveragePool', [floatIn(x)], label, attrs);
        publish(op.output, v, int8 ? params[x] : undefined);
        break;
      }
      case 'gap': {
        const v = g.node('GlobalAveragePool', [floatIn(x)], `${label}_nchw`);
        publish(op.output, v, int8 ? own(op.output) : undefined);
        const shape = g.init(`${label}/shape`, DT.INT64, [2], BigInt64Array.of(0n, -1n));
        layoutStep(op.output, 'Reshape', [shape], [], label);
        break;
      }
      case 'reshape': {
        // Keras reshapes in NHWC order: go back to NHWC first, and to NCHW after if the result is an image.
        name.set(op.output, name.get(x) as string);
        params[op.output] = params[x];
        if (shuffled.has(op.output) || shuffled.has(x)) {
          // A channel shuffle's reshapes keep NCHW's element order: [N, C, H, W] <-> [N, g, C/g, H, W].
          const [H, W, groups, per] = ir.tensors[shuffled.has(op.output) ? op.output : x].shape;
          const dims = shuffled.has(op.output) ? [0, groups, per, H, W] : [0, groups * per, H, W];
          layoutStep(op.output, 'Reshape', [g.init(`${label}/shape`, DT.INT64, [dims.length], BigInt64Array.from(dims.map(BigInt)))], [], label);
          break;
        }
        if (nchw(x)) layoutStep(op.output, 'Transpose', [], [ints('perm', [0, 2, 3, 1])], `${label}_nhwc`);
        const shape = g.init(`${label}/shape`, DT.INT64, [op.shape.length + 1], BigInt64Array.from([0, ...op.shape].map(BigInt)));
        layoutStep(op.output, 'Reshape', [shape], [], nchw(op.output) ? `${label}_nhwc_out` : label);
        if (nchw(op.output)) layoutStep(op.output, 'Transpose', [], [ints('perm', [0, 3, 1, 2])], label);
        break;
      }
      case 'add':
      case 'sub':
      case 'mul':
      case 'max':
      case 'min': {
        const type = { add: 'Add', sub: 'Sub', mul: 'Mul', max: 'Max', min: 'Min' }[op.kind];
        const v = g.node(type, operands(op), label);
        publish(op.output, activate(op, v), actOut(op.output, op.activation));
        break;
      }
      case 'pad': {
        const [[t, bt], [l, r]] = op.pads;
        const pads = g.init(`${label}/pads`, DT.INT64, [8], BigInt64Array.from([0, 0, t, l, 0, 0, bt, r].map(BigInt)));
        name.set(op.output, name.get(x) as string);
        params[op.output] = params[x];
        layoutStep(op.output, 'Pad', [pads], [], label);
        break;
      }
      case 'slice': {
        const axes = op.begin.map((_, a) => onnxAxis(x, a));
        const i64 = (v: number[]) => BigInt64Array.from(v.map(BigInt));
        const starts = g.init(`${label}/starts`, DT.INT64, [axes.length], i64(op.begin));
        const ends = g.init(`${label}/ends`, DT.INT64, [axes.length], i64(op.begin.map((b, a) => b + op.size[a])));
        const ax = g.init(`${label}/axes`, DT.INT64, [axes.length], i64(axes));
        name.set(op.output, name.get(x) as string);
        params[op.output] = params[x];
        layoutStep(op.output, 'Slice', [starts, ends, ax], [], label);
        break;
      }
      case 'resize': {
        const [H, W] = ir.tensors[x].shape;
        const scales = g.init(`${label}/scales`, DT.FLOAT, [4], Float32Array.of(1, 1, op.size[0] / H, op.size[1] / W));
        const attrs: IAttr[] = [
          { name: 'mode', type: AT.STRING, s: new TextEncoder().encode('nearest') },
          { name: 'coordinate_transformation_mode', type: AT.STRING, s: new TextEncoder().encode('asymmetric') },
          { name: 'nearest_mode', type: AT.STRING, s: new TextEncoder().encode('floor') },
        ];
        name.set(op.output, name.get(x) as string);
        params[op.output] = params[x];
        layoutStep(op.output, 'Resize', ['', scales], attrs, label);
        break;
      }
      case 'transpose': {
        if (shuffled.has(x)) {
          // [N, g, C/g, H, W] -> [N, C/g, g, H, W] (the Keras perm swaps the last two axes of [H, W, g, C/g]).
          name.set(op.output, name.get(x) as string);
          params[op.output] = params[x];
          layoutStep(op.output, 'Transpose', [], [ints('perm', [0, 2, 1, 3, 4])], label);
          break;
        }
        // Physical perm = (NCHW -> NHWC of the input) then the Keras perm then (NHWC -> NCHW of the output).
        const full = [0, ...op.perm.map((a) => a + 1)];
        const inv = nchw(x) ? [0, 2, 3, 1] : full.map((_, i) => i);
        const outL = nchw(op.output) ? [0, 3, 1, 2] : full.map((_, i) => i);
        const perm = outL.map((o) => inv[full[o]]);
        name.set(op.output, name.get(x) as string);
        params[op.output] = params[x];
        layoutStep(op.output, 'Transpose', [], [ints('perm', perm)], label);
        break;
      }
      case 'gmp': {
        const v = g.node('GlobalMaxPool', [floatIn(x)], `${label}_nchw`);
        publish(op.output, v, int8 ? params[x] : undefined);
        const shape = g.init(`${label}/shape`, DT.INT64, [2], BigInt64Array.of(0n, -1n));
        layoutStep(op.output, 'Reshape', [shape], [], label);
        break;
      }
      case 'mean_last': {
        // Opset 18 moved ReduceMean's axes from an attribute to an input.
        const axis = onnxAxis(x, ir.tensors[x].shape.length - 1);
        const v = opset >= 18
          ? g.node('ReduceMean', [floatIn(x), g.init(`${label}/axes`, DT.INT64, [1], BigInt64Array.of(BigInt(axis)))], label, [int('keepdims', 1)])
          : g.node('ReduceMean', [floatIn(x)], label, [ints('axes', [axis]), int('keepdims', 1)]);
        publish(op.output, v, int8 ? own(op.output) : undefined);
        break;
      }
      case 'rsqrt': {
        const v = g.node('Reciprocal', [g.node('Sqrt', [floatIn(x)], `${label}/sqrt`)], label);
        publish(op.output, v, int8 ? own(op.output) : undefined);
        break;
      }
      case 'elu':
      case 'leaky_relu': {
        const attrs = [{ name: 'alpha', type: AT.FLOAT, f: op.kind === 'leaky_relu' ? op.alpha : 1 }];
        const v = g.node(op.kind === 'elu' ? 'Elu' : 'LeakyRelu', [floatIn(x)], label, attrs);
        publish(op.output, v, int8 ? own(op.output) : undefined);
        break;
      }
      case 'hard_swish': {
        // HardSwish is opset 14: x * HardSigmoid(x; 1/6, 0.5).
        const inp = floatIn(x);
        const hs = g.node('HardSigmoid', [inp], `${label}/hard_sigmoid`, [{ name: 'alpha', type: AT.FLOAT, f: 1 / 6 }, { name: 'beta', type: AT.FLOAT, f: 0.5 }]);
        publish(op.output, g.node('Mul', [inp, hs], label), int8 ? own(op.output) : undefined);
        break;
      }
      case 'gelu': {
        // No Gelu before opset 20: 0.5 x (1 + erf(x / sqrt 2)), or the tanh form.
        const inp = floatIn(x);
        let inner: string;
        if (op.approximate) {
          const x3 = g.node('Mul', [g.node('Mul', [inp, inp], `${label}/x2`), inp], `${label}/x3`);
          const s = g.node('Add', [inp, g.node('Mul', [x3, scalar(`${label}/c`, 0.044715)], `${label}/cx3`)], `${label}/sum`);
          inner = g.node('Tanh', [g.node('Mul', [s, scalar(`${label}/k`, Math.sqrt(2 / Math.PI))], `${label}/ks`)], `${label}/tanh`);
        } else inner = g.node('Erf', [g.node('Div', [inp, scalar(`${label}/sqrt2`, Math.SQRT2)], `${label}/scaled`)], `${label}/erf`);
        const onePlus = g.node('Add', [inner, scalar(`${label}/one`, 1)], `${label}/one_plus`);
        const v = g.node('Mul', [g.node('Mul', [inp, onePlus], `${label}/x_one_plus`), scalar(`${label}/half`, 0.5)], label);
        publish(op.output, v, int8 ? own(op.output) : undefined);
        break;
      }
      case 'concat': {
        const axis = nchw(op.output) ? [2, 3, 1][op.axis] : op.axis + 1;
        const v = g.node('Concat', op.inputs.map(floatIn), label, [int('axis', axis)]);
        publish(op.output, v, int8 ? own(op.output) : undefined);
        break;
      }
      case 'softmax':
      case 'sigmoid':
      case 'tanh':
      case 'relu':
      case 'relu6': {
        let v: string;
        const inp = floatIn(x);
        if (op.kind === 'softmax') v = g.node('Softmax', [inp], label, [int('axis', nchw(x) ? 1 : -1)]);
        else if (op.kind === 'relu6') {
          const lo = g.init(`${label}/clip_min`, DT.FLOAT, [], Float32Array.of(0));
          const hi = g.init(`${label}/clip_max`, DT.FLOAT, [], Float32Array.of(6));
          v = g.node('Clip', [inp, lo, hi], label);
        } else v = g.node({ sigmoid: 'Sigmoid', tanh: 'Tanh', relu: 'Relu' }[op.kind], [inp], label);
        if (finalFloat && op === lastOp) {
          finalName = v;
          break;
        }
        const fixed = op.kind === 'softmax' || op.kind === 'sigmoid' ? { scale: 1 / ACT_QMAX, zeroPoint: 0 } : undefined;
        publish(op.output, v, int8 ? fixed ?? own(op.output) : undefined);
        break;
      }
    }
  }

  // Output: NHWC float.
  let out = finalName ?? floatIn(ir.output);
  if (!finalName && nchw(ir.output)) out = g.node('Transpose', [out], 'output_nhwc', [ints('perm', [0, 2, 3, 1])]);
  g.nodes.push({ opType: 'Identity', input: [out], output: ['output'], name: 'output/Identity' });

  const dims = (shape: number[]) => ({ dim: [{ dimParam: 'N' }, ...shape.map((d) => ({ dimValue: d }))] });
  const model = onnx.ModelProto.create({
    irVersion: int4 ? INT4_IR_VERSION : ONNX_IR_VERSION,
    opsetImport: [{ domain: '', version: opset }],
    producerName: 'compress',
    producerVersion: VERSION,
    docString: `compress ${precision} export of ${ir.name}`,
    graph: {
      name: ir.name || 'model',
      node: g.nodes,
      initializer: g.inits,
      sparseInitializer: g.sparseInits,
      input: [{ name: 'input', type: { tensorType: { elemType: DT.FLOAT, shape: dims(inShape) } } }],
      output: [{ name: 'output', type: { tensorType: { elemType: DT.FLOAT, shape: dims(ir.tensors[ir.output].shape) } } }],
    },
  });
  return { bytes: onnx.ModelProto.encode(model).finish(), notes };
}

/** How many sparse_initializers an ONNX file holds. */
export function onnxSparseInitializers(bytes: Uint8Array): number {
  return onnx.ModelProto.decode(bytes).graph?.sparseInitializer?.length ?? 0;
}
