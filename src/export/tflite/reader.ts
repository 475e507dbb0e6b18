import * as flatbuffers from 'flatbuffers';
import { BufferSlot, ModelSlot, OpCodeSlot, OperatorSlot, QuantSlot, SubGraphSlot, TensorSlot } from './schema.js';

/**
 * Reads back what a .tflite file declares (operator codes and versions, tensors, buffer sizes, sparsity):
 * what tests and reports check a written file against. Only the fields compress writes.
 */
export interface TfliteSummary {
  operators: Array<{ code: number; version: number; inputs: number[]; outputs: number[] }>;
  tensors: Array<{ name: string; type: number; shape: number[]; bufferBytes: number; scales: number; sparse: boolean }>;
}

const SPARSITY_SLOT = 6;

export function readTflite(bytes: Uint8Array): TfliteSummary {
  const bb = new flatbuffers.ByteBuffer(bytes);
  const table = (pos: number) => ({
    field(slot: number): number {
      const off = bb.__offset(pos, 4 + 2 * slot);
      return off ? pos + off : 0;
    },
  });
  const root = bb.readInt32(bb.position()) + bb.position();
  const model = table(root);
  const vec = (at: number): number[] => {
    if (!at) return [];
    const start = bb.__vector(at);
    const n = bb.__vector_len(at);
    return Array.from({ length: n }, (_, i) => start + 4 * i);
  };
  const tableAt = (p: number) => bb.__indirect(p);
  const i32vec = (at: number): number[] => vec(at).map((p) => bb.readInt32(p));
  const buffers = vec(model.field(ModelSlot.buffers)).map((p) => {
    const b = table(tableAt(p));
    const d = b.field(BufferSlot.data);
    return d ? bb.__vector_len(d) : 0;
  });
  const opcodes = vec(model.field(ModelSlot.operator_codes)).map((p) => {
    const t = table(tableAt(p));
    const dep = t.field(OpCodeSlot.deprecated_builtin_code);
    const code = t.field(OpCodeSlot.builtin_code);
    const ver = t.field(OpCodeSlot.version);
    return { code: Math.max(dep ? bb.readInt8(dep) : 0, code ? bb.readInt32(code) : 0), version: ver ? bb.readInt32(ver) : 1 };
  });
  const sg = table(tableAt(vec(model.field(ModelSlot.subgraphs))[0]));
  const tensors = vec(sg.field(SubGraphSlot.tensors)).map((p) => {
    const t = table(tableAt(p));
    const name = t.field(TensorSlot.name);
    const type = t.field(TensorSlot.type);
    const buf = t.field(TensorSlot.buffer);
    const q = t.field(TensorSlot.quantization);
    let scales = 0;
    if (q) {
      const qs = table(tableAt(q)).field(QuantSlot.scale);
      scales = qs ? bb.__vector_len(qs) : 0;
    }
    return {
      name: name ? bb.__string(name) as string : '',
      type: type ? bb.readInt8(type) : 0,
      shape: i32vec(t.field(TensorSlot.shape)),
      bufferBytes: buffers[buf ? bb.readInt32(buf) : 0] ?? 0,
      scales,
      sparse: t.field(SPARSITY_SLOT) !== 0,
    };
  });
  const operators = vec(sg.field(SubGraphSlot.operators)).map((p) => {
    const o = table(tableAt(p));
    const idx = o.field(OperatorSlot.opcode_index);
    const oc = opcodes[idx ? bb.readInt32(idx) : 0];
    return { ...oc, inputs: i32vec(o.field(OperatorSlot.inputs)), outputs: i32vec(o.field(OperatorSlot.outputs)) };
  });
  return { operators, tensors };
}
