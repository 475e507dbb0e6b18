import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize, relative } from 'node:path';
import { createRequire } from 'node:module';
import type onnxProto from 'onnx-proto';
import { decodeFloat16 } from '../../util/float16.js';
import { InputError, describeError } from '../../errors/input-error.js';

/**
 * Reads an .onnx file into a plain graph: nodes with decoded attributes, initializers as typed
 * arrays (float32 / float16 -> Float32Array, integer types -> Float64Array), external data resolved
 * next to the model. The protobuf is decoded by `onnx-proto` (protobufjs).
 */

/** onnx-proto (protobufjs), loaded when an .onnx file is first read: not on the way of runs without one. */
let protoModule: typeof onnxProto | undefined;
function proto(): typeof onnxProto.onnx {
  protoModule ??= createRequire(import.meta.url)('onnx-proto') as typeof onnxProto;
  return protoModule.onnx;
}

export const SUPPORTED_IR = [3, 10] as const;
export const SUPPORTED_OPSETS = [9, 21] as const;

/** A constant tensor. `int` tensors hold integer values (shapes, indices, axes) as doubles. */
export interface Const {
  dims: number[];
  data: Float32Array | Float64Array;
  int: boolean;
}

export type AttrValue = number | number[] | string | string[] | Const | undefined;

export interface OnnxNode {
  /** The node's name, or `<opType>_<index>` when the exporter gave none. */
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: Map<string, AttrValue>;
}

export interface OnnxValueInfo {
  name: string;
  /** Known sizes as numbers; symbolic ones (`dim_param`) as their name; unknown as null. */
  dims: Array<number | string | null>;
  elemType: number;
}

export interface OnnxGraph {
  file: string;
  irVersion: number;
  opset: number;
  producer: string;
  nodes: OnnxNode[];
  initializers: Map<string, Const>;
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

export function dataTypeName(t: number): string {
  const name = Object.entries(proto().TensorProto.DataType).find(([, v]) => v === t)?.[0];
  return name ? name.toLowerCase() : `type ${t}`;
}

const num = (v: number | { toNumber(): number } | null | undefined): number => (v === null || v === undefined ? 0 : typeof v === 'number' ? v : v.toNumber());

/** Reads and decodes `path`; throws InputError for anything that is not a usable ONNX model. */
export function readOnnx(path: string): OnnxGraph {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new InputError(`cannot read: ${describeError(e)}`, { file: path });
  }
  let model: onnxProto.onnx.ModelProto;
  try {
    model = proto().ModelProto.decode(bytes);
  } catch (e) {
    throw new InputError(`not a valid ONNX protobuf: ${describeError(e)}`, { file: path, hint: 'the file is truncated or corrupt; export it again with torch.onnx.export' });
  }
  const g = model.graph;
  if (!g || (g.node ?? []).length === 0) {
    throw new InputError('the file decodes but holds no graph (is it an ONNX model?)', { file: path, hint: 'export the model with torch.onnx.export(model, x, "model.onnx")' });
  }
  const irVersion = num(model.irVersion);
  const opset = num((model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx')?.version);
  if (irVersion < SUPPORTED_IR[0] || irVersion > SUPPORTED_IR[1]) {
    throw new InputError(`ONNX IR version ${irVersion} is not supported (supported: ${SUPPORTED_IR[0]}-${SUPPORTED_IR[1]})`, { file: path, hint: 'export again with a supported torch.onnx.export opset_version (11-17)' });
  }
  if (opset < SUPPORTED_OPSETS[0] || opset > SUPPORTED_OPSETS[1]) {
    throw new InputError(`ONNX opset ${opset} is not supported (supported: ${SUPPORTED_OPSETS[0]}-${SUPPORTED_OPSETS[1]})`, { file: path, hint: 'export again with torch.onnx.export(..., opset_version=13)' });
  }
  const initializers = new Map<string, Const>();
  for (const t of g.initializer ?? []) initializers.set(t.name ?? '', tensorToConst(t, path));
  const nodes = (g.node ?? []).map((n, i) => toNode(n, i, path));
  const valueInfo = (v: onnxProto.onnx.IValueInfoProto): OnnxValueInfo => ({
    name: v.name ?? '',
    elemType: v.type?.tensorType?.elemType ?? 0,
    dims: (v.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimParam ? d.dimParam : d.dimValue !== null && d.dimValue !== undefined && num(d.dimValue) > 0 ? num(d.dimValue) : null)),
  });
  return {
    file: path,
    irVersion,
    opset,
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
    nodes,
    initializers,
    inputs: (g.input ?? []).filter((v) => !initializers.has(v.name ?? '')).map(valueInfo),
    outputs: (g.output ?? []).map(valueInfo),
  };
}

function toNode(n: onnxProto.onnx.INodeProto, index: number, file: string): OnnxNode {
  const opType = n.opType ?? '';
  const name = n.name || `${opType}_${index}`;
  const attrs = new Map<string, AttrValue>();
  for (const a of n.attribute ?? []) attrs.set(a.name ?? '', attrValue(a, file, name));
  return { name, opType, domain: n.domain ?? '', inputs: [...(n.input ?? [])], outputs: [...(n.output ?? [])], attrs };
}

function attrValue(a: onnxProto.onnx.IAttributeProto, file: string, node: string): AttrValue {
  const AT = proto().AttributeProto.AttributeType;
  switch (a.type) {
    case AT.INT:
      return num(a.i);
    case AT.FLOAT:
      return a.f ?? 0;
    case AT.INTS:
      return (a.ints ?? []).map(num);
    case AT.FLOATS:
      return [...(a.floats ?? [])];
    case AT.STRING:
      return new TextDecoder().decode(a.s ?? new Uint8Array());
    case AT.STRINGS:
      return (a.strings ?? []).map((s) => new TextDecoder().decode(s));
    case AT.TENSOR:
      return a.t ? tensorToConst(a.t, file) : undefined;
    default:
      return undefined; // graphs, sparse tensors: ops that carry them are not supported and say so
  }
  void node;
}

/** Decodes an initializer or Constant value (raw_data, typed fields, or external data). */
export function tensorToConst(t: onnxProto.onnx.ITensorProto, file: string): Const {
  const DT = proto().TensorProto.DataType;
  const dims = (t.dims ?? []).map(num);
  const count = dims.reduce((a, b) => a * b, 1);
  const type = t.dataType ?? 0;
  const name = t.name ?? '(unnamed)';
  let raw: Uint8Array | undefined = t.rawData && t.rawData.length ? t.rawData : undefined;
  if (t.dataLocation === proto().TensorProto.DataLocation.EXTERNAL) raw = readExternal(t, file);
  const fail = (msg: string): never => {
    throw new InputError(`tensor '${name}': ${msg}`, { file, hint: 'export with float32 (or float16) weights' });
  };
  const fromRaw = <T extends { length: number }>(ctor: { new (b: ArrayBuffer): T; BYTES_PER_ELEMENT: number }): T => {
    const need = count * ctor.BYTES_PER_ELEMENT;
    if (raw!.length !== need) fail(`holds ${raw!.length} bytes but its shape [${dims.join(', ')}] needs ${need}`);
    const copy = new Uint8Array(need); // protobufjs hands out views into the file's buffer: copy for alignment
    copy.set(raw!);
    return new ctor(copy.buffer);
  };
  let data: Float32Array | Float64Array;
  let int = false;
  switch (type) {
    case DT.FLOAT:
      data = raw ? fromRaw(Float32Array) : Float32Array.from(t.floatData ?? []);
      break;
    case DT.FLOAT16:
      data = decodeFloat16(raw ? fromRaw(Uint16Array) : Uint16Array.from(t.int32Data ?? []));
      break;
    case DT.DOUBLE:
      data = Float32Array.from(raw ? fromRaw(Float64Array) : (t.doubleData ?? []));
      break;
    case DT.INT64:
      int = true;
      data = raw ? Float64Array.from(fromRaw(BigInt64Array), (v) => Number(v)) : Float64Array.from((t.int64Data ?? []).map(num));
      break;
    case DT.INT32:
      int = true;
      data = raw ? Float64Array.from(fromRaw(Int32Array)) : Float64Array.from(t.int32Data ?? []);
      break;
    case DT.INT8:
    case DT.UINT8:
    case DT.BOOL:
      int = true;
      data = raw ? Float64Array.from(type === DT.INT8 ? new Int8Array(raw) : raw) : Float64Array.from(t.int32Data ?? []);
      break;
    default:
      return fail(`data type ${dataTypeName(type)} is not supported`);
  }
  if (data.length !== count) fail(`holds ${data.length} values but its shape [${dims.join(', ')}] needs ${count}`);
  return { dims, data, int };
}

/** Reads a tensor's bytes from the external-data file named in the model (confined to the model's directory). */
function readExternal(t: onnxProto.onnx.ITensorProto, file: string): Uint8Array {
  const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = kv.get('location');
  const name = t.name ?? '(unnamed)';
  if (!location) throw new InputError(`tensor '${name}' is stored externally but names no location`, { file });
  const dir = dirname(file);
  const full = normalize(join(dir, location));
  const rel = relative(dir, full);
  if (isAbsolute(location) || rel.startsWith('..')) {
    throw new InputError(`tensor '${name}': external data '${location}' lies outside the model's directory`, { file, hint: 'keep the .data file next to the .onnx file' });
  }
  let size: number;
  try {
    size = statSync(full).size;
  } catch {
    throw new InputError(`tensor '${name}': external data file '${location}' not found next to the model`, {
      file,
      hint: 'copy the .data file torch.onnx.export / onnx.save_model wrote alongside the .onnx file',
    });
  }
  const offset = Number(kv.get('offset') ?? 0);
  const length = kv.has('length') ? Number(kv.get('length')) : size - offset;
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new InputError(`tensor '${name}': external data range ${offset}+${length} lies outside '${location}' (${size} bytes)`, { file, hint: 'the .data file is truncated or belongs to another export' });
  }
  const all = readFileSync(full);
  return all.subarray(offset, offset + length);
}

/** The external-data files an .onnx file names (existing ones, inside its directory): part of a load stage's inputs. */
export function onnxExternalFiles(path: string): string[] {
  let model: onnxProto.onnx.ModelProto;
  try {
    model = proto().ModelProto.decode(readFileSync(path));
  } catch {
    return []; // the load reports the problem
  }
  const dir = dirname(path);
  const out = new Set<string>();
  for (const t of model.graph?.initializer ?? []) {
    if (t.dataLocation !== proto().TensorProto.DataLocation.EXTERNAL) continue;
    const loc = (t.externalData ?? []).find((e) => e.key === 'location')?.value;
    if (!loc || isAbsolute(loc)) continue;
    const full = normalize(join(dir, loc));
    if (!relative(dir, full).startsWith('..') && statSync(full, { throwIfNoEntry: false })?.isFile()) out.add(full);
  }
  return [...out].sort();
}
