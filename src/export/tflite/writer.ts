import * as flatbuffers from 'flatbuffers';
import { OP_VERSION_RULES, opVersion, type OpSignature } from './op-versions.js';
import { writeSparsity, type SparsitySpec } from './sparsity.js';
import {
  BufferSlot, DepthwiseSlot, FullyConnectedSlot, Op, FILE_IDENTIFIER, ModelSlot, OpCodeSlot, OperatorSlot, QuantSlot, SCHEMA_VERSION, SubGraphSlot, TensorSlot, TransposeConvSlot,
} from './schema.js';

/** One field of an options table: slot, kind and value. */
export type OptionField =
  | [number, 'i8' | 'bool', number | boolean]
  | [number, 'i32', number]
  | [number, 'f32', number]
  | [number, 'i32vec', number[]];

export interface OptionsTable {
  type: number;
  numFields: number;
  fields: OptionField[];
}

export interface TensorQuant {
  scale: number[];
  zeroPoint: number[];
  quantizedDimension?: number;
}

interface TensorSpec {
  shape: number[];
  type: number;
  buffer: number;
  name: string;
  quant?: TensorQuant;
  /** TFLite SparsityParameters (sparsity.ts); the buffer then holds only the non-zero values. */
  sparsity?: SparsitySpec;
}

interface OperatorSpec {
  opcode: number;
  inputs: number[];
  outputs: number[];
  options?: OptionsTable;
}

/** Collects a single-subgraph TFLite model and serialises it with the flatbuffers Builder. */
export class TfliteModelBuilder {
  private buffers: Uint8Array[] = [new Uint8Array(0)]; // buffers[0] is the empty sentinel
  private tensors: TensorSpec[] = [];
  private operators: OperatorSpec[] = [];
  private opcodes: Array<{ code: number; version: number }> = [];
  inputs: number[] = [];
  outputs: number[] = [];

  addTensor(name: string, shape: number[], type: number, data?: Uint8Array, quant?: TensorQuant, sparsity?: SparsitySpec): number {
    let buffer = 0;
    if (data) {
      this.buffers.push(data);
      buffer = this.buffers.length - 1;
    }
    this.tensors.push({ name, shape, type, buffer, quant, sparsity });
    return this.tensors.length - 1;
  }

  tensorType(t: number): number {
    return this.tensors[t].type;
  }

  /**
   * Adds an operator. Its version comes from TFLite's rules for the tensors and options it is written with
   * (op-versions.ts); `version` is kept only for ops those rules do not cover.
   */
  addOperator(code: number, version: number, inputs: number[], outputs: number[], options?: OptionsTable): void {
    if (OP_VERSION_RULES[code]) version = opVersion(code, this.signature(code, inputs, outputs, options));
    let idx = this.opcodes.findIndex((o) => o.code === code && o.version === version);
    if (idx < 0) {
      this.opcodes.push({ code, version });
      idx = this.opcodes.length - 1;
    }
    this.operators.push({ opcode: idx, inputs, outputs, options });
  }

  /** What op_signature.cc reads from an operator's tensors and options. */
  private signature(code: number, inputs: number[], outputs: number[], options?: OptionsTable): OpSignature {
    const t = (i: number | undefined) => (i === undefined || i < 0 ? undefined : this.tensors[i]);
    const field = (slot: number) => options?.fields.find((f) => f[0] === slot)?.[2];
    const quantized = code === Op.DEQUANTIZE || code === Op.QUANTIZE ? t(inputs[0]) : t(inputs[1]);
    const dw = code === Op.DEPTHWISE_CONV_2D;
    const fc = code === Op.FULLY_CONNECTED;
    return {
      input: t(inputs[0])!.type,
      weight: t(inputs[1])?.type,
      output: t(outputs[0])!.type,
      inputCount: inputs.length,
      inputRank: t(inputs[0])!.shape.length,
      perChannel: (quantized?.quant?.scale.length ?? 0) > 1,
      sparseWeight: !!t(inputs[1])?.sparsity,
      asymmetricInputs: fc && !!field(FullyConnectedSlot.asymmetric_quantize_inputs),
      keepNumDims: fc && !!field(FullyConnectedSlot.keep_num_dims),
      grouped: code === Op.CONV_2D && t(inputs[0])!.shape[3] !== t(inputs[1])?.shape[3],
      dilated: dw && ((field(DepthwiseSlot.dilation_w) ?? 1) !== 1 || (field(DepthwiseSlot.dilation_h) ?? 1) !== 1),
      fusedActivation: code === Op.TRANSPOSE_CONV && (field(TransposeConvSlot.fused_activation) ?? 0) !== 0,
    };
  }

  finish(description: string): Uint8Array {
    const total = this.buffers.reduce((a, b) => a + b.length + 32, 4096);
    const b = new flatbuffers.Builder(total);
    const i32vec = (v: number[]) => {
      b.startVector(4, v.length, 4);
      for (let i = v.length - 1; i >= 0; i--) b.addInt32(v[i]);
      return b.endVector();
    };
    const f32vec = (v: number[]) => {
      b.startVector(4, v.length, 4);
      for (let i = v.length - 1; i >= 0; i--) b.addFloat32(v[i]);
      return b.endVector();
    };
    const i64vec = (v: number[]) => {
      b.startVector(8, v.length, 8);
      for (let i = v.length - 1; i >= 0; i--) b.addInt64(BigInt(v[i]));
      return b.endVector();
    };
    const offvec = (v: number[]) => {
      b.startVector(4, v.length, 4);
      for (let i = v.length - 1; i >= 0; i--) b.addOffset(v[i]);
      return b.endVector();
    };
    const bytes = (data: Uint8Array) => {
      // A byte vector aligned to 16 (the runtime maps weights in place).
      b.startVector(1, data.length, 16);
      const bb = b as unknown as { space: number; bb: flatbuffers.ByteBuffer };
      bb.space -= data.length;
      bb.bb.setPosition(bb.space);
      bb.bb.bytes().set(data, bb.space);
      return b.endVector();
    };

    const bufferOffsets = this.buffers.map((data) => {
      const d = data.length > 0 ? bytes(data) : 0;
      b.startObject(BufferSlot.numFields);
      if (d) b.addFieldOffset(BufferSlot.data, d, 0);
      return b.endObject();
    });

    const tensorOffsets = this.tensors.map((t) => {
      const shape = i32vec(t.shape);
      const name = b.createString(t.name);
      let quant = 0;
      if (t.quant) {
        const scale = f32vec(t.quant.scale);
        const zp = i64vec(t.quant.zeroPoint);
        b.startObject(QuantSlot.numFields);
        b.addFieldOffset(QuantSlot.scale, scale, 0);
        b.addFieldOffset(QuantSlot.zero_point, zp, 0);
        b.addFieldInt32(QuantSlot.quantized_dimension, t.quant.quantizedDimension ?? 0, null as unknown as number);
        quant = b.endObject();
      }
      const sparsity = t.sparsity ? writeSparsity(b, t.sparsity) : 0;
      b.startObject(TensorSlot.numFields);
      b.addFieldOffset(TensorSlot.shape, shape, 0);
      if (sparsity) b.addFieldOffset(TensorSlot.sparsity, sparsity, 0);
      b.addFieldInt8(TensorSlot.type, t.type, null as unknown as number);
      b.addFieldInt32(TensorSlot.buffer, t.buffer, null as unknown as number);
      b.addFieldOffset(TensorSlot.name, name, 0);
      if (quant) b.addFieldOffset(TensorSlot.quantization, quant, 0);
      return b.endObject();
    });

    const operatorOffsets = this.operators.map((op) => {
      const inputs = i32vec(op.inputs);
      const outputs = i32vec(op.outputs);
      let options = 0;
      if (op.options) {
        const vecs = op.options.fields.map((f) => (f[1] === 'i32vec' ? i32vec(f[2] as number[]) : 0));
        b.startObject(op.options.numFields);
        op.options.fields.forEach((f, i) => {
          const [slot, kind, value] = f;
          if (kind === 'i8' || kind === 'bool') b.addFieldInt8(slot, Number(value), null as unknown as number);
          else if (kind === 'i32') b.addFieldInt32(slot, value as number, null as unknown as number);
          else if (kind === 'f32') b.addFieldFloat32(slot, value as number, null as unknown as number);
          else b.addFieldOffset(slot, vecs[i], 0);
        });
        options = b.endObject();
      }
      b.startObject(OperatorSlot.numFields);
      b.addFieldInt32(OperatorSlot.opcode_index, op.opcode, null as unknown as number);
      b.addFieldOffset(OperatorSlot.inputs, inputs, 0);
      b.addFieldOffset(OperatorSlot.outputs, outputs, 0);
      if (op.options) {
        b.addFieldInt8(OperatorSlot.builtin_options_type, op.options.type, null as unknown as number);
        b.addFieldOffset(OperatorSlot.builtin_options, options, 0);
      }
      return b.endObject();
    });

    const opcodeOffsets = this.opcodes.map((o) => {
      b.startObject(OpCodeSlot.numFields);
      b.addFieldInt8(OpCodeSlot.deprecated_builtin_code, Math.min(o.code, 127), null as unknown as number);
      b.addFieldInt32(OpCodeSlot.version, o.version, null as unknown as number);
      b.addFieldInt32(OpCodeSlot.builtin_code, o.code, null as unknown as number);
      return b.endObject();
    });

    const tensorsVec = offvec(tensorOffsets);
    const inputsVec = i32vec(this.inputs);
    const outputsVec = i32vec(this.outputs);
    const operatorsVec = offvec(operatorOffsets);
    const sgName = b.createString('main');
    b.startObject(SubGraphSlot.numFields);
    b.addFieldOffset(SubGraphSlot.tensors, tensorsVec, 0);
    b.addFieldOffset(SubGraphSlot.inputs, inputsVec, 0);
    b.addFieldOffset(SubGraphSlot.outputs, outputsVec, 0);
    b.addFieldOffset(SubGraphSlot.operators, operatorsVec, 0);
    b.addFieldOffset(SubGraphSlot.name, sgName, 0);
    const subgraph = b.endObject();

    const opcodesVec = offvec(opcodeOffsets);
    const subgraphsVec = offvec([subgraph]);
    const desc = b.createString(description);
    const buffersVec = offvec(bufferOffsets);
    b.startObject(ModelSlot.numFields);
    b.addFieldInt32(ModelSlot.version, SCHEMA_VERSION, null as unknown as number);
    b.addFieldOffset(ModelSlot.operator_codes, opcodesVec, 0);
    b.addFieldOffset(ModelSlot.subgraphs, subgraphsVec, 0);
    b.addFieldOffset(ModelSlot.description, desc, 0);
    b.addFieldOffset(ModelSlot.buffers, buffersVec, 0);
    const model = b.endObject();
    b.finish(model, FILE_IDENTIFIER);
    return b.asUint8Array().slice();
  }
}

export function bytesOf(a: Float32Array | Int32Array | Int8Array | Uint16Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}
