import type * as tfType from '@tensorflow/tfjs';
import { InputError } from '../../errors/input-error.js';
import { constOf } from './onnx-fold.js';
import type { Const } from './onnx-read.js';

/**
 * Reads a TF.js graph model (tensorflowjs_converter's `"format": "graph-model"` model.json: a TF GraphDef as JSON,
 * its Const nodes' values in the weight shards) into the nodes the model's output needs, in computation order.
 *
 * The converter's JSON is the GraphDef proto's JSON mapping: an attribute is one of `s` (bytes, base64: padding,
 * data_format, fused_ops), `i` (int64 as a string), `f`, `b`, `type` ('DT_FLOAT'), `shape`, `list: {s|i|f: [...]}`;
 * a node input is 'name' (output 0), 'name:k' or '^name' (a control dependency).
 */

export interface GraphAttr {
  s?: string;
  i?: string | number;
  f?: number;
  b?: boolean;
  type?: string;
  list?: { s?: string[]; i?: Array<string | number>; f?: number[] };
  shape?: { dim?: Array<{ size?: string | number }>; unknownRank?: boolean };
  tensor?: { dtype?: string; tensorShape?: { dim?: Array<{ size?: string | number }> }; floatVal?: number[]; intVal?: number[] };
}

export interface GraphNode {
  name: string;
  op: string;
  /** Data inputs as 'node:k' (control dependencies dropped). */
  inputs: string[];
  attr: Record<string, GraphAttr>;
  /** For a node the importer fused from several (tfjs-graph-fuse.ts): the ops it stands for, for messages. */
  label?: string;
}

export interface TfGraph {
  file: string;
  /** The nodes the output depends on, each after its inputs. */
  nodes: GraphNode[];
  /** Const nodes' values by node name (from the weight shards, or inline in the node). */
  consts: Map<string, Const>;
  /** The Placeholder node and its shape (-1 for a free dimension). */
  input: { node: string; shape: number[] };
  /** The output tensor ('node:k'). */
  output: string;
  convertedBy: string;
  /** All nodes in the file. */
  nodeCount: number;
}

export interface GraphModelJson {
  modelTopology: { node?: unknown[] } & Record<string, unknown>;
  signature?: { inputs?: Record<string, { name?: string }>; outputs?: Record<string, { name?: string }> };
  convertedBy?: string;
}

/** 'name' / 'name:0' -> 'name:0'; '^name' -> undefined. */
export function tensorRef(input: string): string | undefined {
  if (input.startsWith('^')) return undefined;
  return /:\d+$/.test(input) ? input : `${input}:0`;
}

const nodeOf = (ref: string): string => ref.replace(/:\d+$/, '');

export const decodeB64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');

export function dimsOf(shape: { dim?: Array<{ size?: string | number }> } | undefined): number[] {
  return (shape?.dim ?? []).map((d) => Number(d.size ?? -1));
}

function parseNodes(raw: unknown[], file: string): GraphNode[] {
  return raw.map((n, k) => {
    const o = n as Record<string, unknown>;
    if (!o || typeof o.name !== 'string' || typeof o.op !== 'string') throw new InputError(`modelTopology.node[${k}] needs a name and an op`, { file });
    const inputs = Array.isArray(o.input) ? (o.input as unknown[]).map(String).map(tensorRef).filter((r): r is string => r !== undefined) : [];
    return { name: o.name, op: o.op, inputs, attr: (o.attr && typeof o.attr === 'object' ? o.attr : {}) as Record<string, GraphAttr> };
  });
}

/**
 * The signature's single input / output (or the one Placeholder and the one unread node); `choose` picks one of
 * several outputs by its signature key or tensor name ('Identity_1' / 'Identity_1:0').
 */
function endpoints(json: GraphModelJson, nodes: GraphNode[], file: string, choose?: string): { input: string; output: string } {
  const names = (o: Record<string, { name?: string }> | undefined): string[] => Object.values(o ?? {}).map((v) => tensorRef(String(v.name)) as string);
  let inputs = names(json.signature?.inputs).map(nodeOf);
  let outputs = names(json.signature?.outputs);
  if (!inputs.length) inputs = nodes.filter((n) => n.op === 'Placeholder').map((n) => n.name);
  if (!outputs.length) {
    const read = new Set(nodes.flatMap((n) => n.inputs.map(nodeOf)));
    outputs = nodes.filter((n) => !read.has(n.name) && !['Const', 'NoOp', 'Placeholder'].includes(n.op)).map((n) => `${n.name}:0`);
  }
  if (inputs.length !== 1) throw new InputError(`the graph model has ${inputs.length} inputs (${inputs.join(', ')}); compress imports models with one input`, { file });
  if (choose !== undefined) {
    const keyed = json.signature?.outputs?.[choose]?.name;
    const ref = keyed !== undefined ? tensorRef(String(keyed)) : tensorRef(choose);
    if (!ref || !outputs.includes(ref)) throw new InputError(`output '${choose}' is not one of the graph model's outputs (${outputs.join(', ')})`, { file, hint: "the load stage's `output` names one of them" });
    return { input: inputs[0], output: ref };
  }
  if (outputs.length !== 1) {
    throw new InputError(`the graph model has ${outputs.length} outputs (${outputs.join(', ')}); compress imports models with one output`, { file, hint: `choose one with the load stage's \`output\` (e.g. output: ${outputs[0].replace(/:0$/, '')}), or convert with --output_node_names naming one` });
  }
  return { input: inputs[0], output: outputs[0] };
}

/** The nodes `output` depends on, inputs first (an iterative depth-first walk: the file's node order does not matter, and a deep graph cannot exhaust the stack). */
function neededNodes(byName: Map<string, GraphNode>, output: string, file: string): GraphNode[] {
  const order: GraphNode[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: Array<{ name: string; from: string; expanded: boolean }> = [{ name: nodeOf(output), from: '(output)', expanded: false }];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const node = byName.get(top.name);
    if (!node) {
      const who = top.from === '(output)' ? `the model's output '${output}' (signature / outputs)` : `node '${top.from}'`;
      throw new InputError(`${who} ${top.from === '(output)' ? 'names' : 'reads'} '${top.name}', which is not a node of the graph`, { file });
    }
    if (top.expanded) {
      stack.pop();
      if (state.get(top.name) !== 'done') {
        state.set(top.name, 'done');
        order.push(node);
      }
      continue;
    }
    top.expanded = true;
    if (state.get(top.name) === 'done') continue;
    state.set(top.name, 'visiting');
    for (const i of node.inputs) {
      const dep = nodeOf(i);
      if (state.get(dep) === 'visiting') {
        throw new InputError(`node '${dep}' (${byName.get(dep)?.op}): the graph has a cycle through it: control flow (a while loop: Enter / Merge / NextIteration) is not supported`, { file, hint: 'convert the model without its loop (post-processing such as non-max suppression), e.g. with --output_node_names naming the network\'s raw outputs' });
      }
      if (state.get(dep) !== 'done') stack.push({ name: dep, from: node.name, expanded: false });
    }
  }
  return order;
}

/** A Const node's value written inline (small constants some converters leave in the node). */
function inlineConst(node: GraphNode): Const | undefined {
  const t = node.attr.value?.tensor;
  const dims = dimsOf(t?.tensorShape);
  const vals = t?.floatVal ?? t?.intVal;
  if (!t || !vals) return undefined;
  const n = dims.reduce((a, b) => a * b, 1);
  const data = vals.length === n ? vals : Array.from({ length: n }, () => Number(vals[0]));
  return constOf(dims, data.map(Number), t.dtype !== 'DT_FLOAT' && t.dtype !== 'DT_HALF');
}

/**
 * The graph of a parsed graph-model model.json, with the weight shards' bytes (all groups, in manifest order)
 * decoded by tfjs itself (float16 and the converter's uint8 / uint16 quantization included).
 */
export function readTfjsGraph(tf: typeof tfType, json: GraphModelJson, specs: tfType.io.WeightsManifestEntry[], data: ArrayBuffer, file: string, output?: string): TfGraph {
  if (!Array.isArray(json.modelTopology.node)) throw new InputError("modelTopology.node must be an array of nodes", { file });
  const all = parseNodes(json.modelTopology.node, file);
  const byName = new Map(all.map((n) => [n.name, n]));
  const { input, output: out } = endpoints(json, all, file, output);
  const nodes = neededNodes(byName, out, file);
  const inputNode = byName.get(input);
  if (!inputNode || inputNode.op !== 'Placeholder') throw new InputError(`the input '${input}' is not a Placeholder node of the graph`, { file });
  const dtype = inputNode.attr.dtype?.type ?? 'DT_FLOAT';
  if (dtype !== 'DT_FLOAT') throw new InputError(`input '${input}' is ${dtype}; only float32 inputs are supported`, { file, hint: 'convert a model whose signature takes float images (e.g. without a uint8 decoding step)' });
  const consts = new Map<string, Const>();
  const decoded = tf.io.decodeWeights(data, specs);
  try {
    for (const s of specs) {
      const t = decoded[s.name];
      // Non-finite values are refused where a constant becomes a layer's weight (tfjs-graph.ts), naming the node: a
      // -Infinity is a legitimate PadV2 value before a max pool, refused there as a padding value.
      consts.set(s.name, constOf(t.shape, t.dataSync(), t.dtype !== 'float32'));
    }
  } finally {
    for (const t of Object.values(decoded)) t.dispose();
  }
  for (const n of nodes) {
    if (n.op !== 'Const' || consts.has(n.name)) continue;
    const c = inlineConst(n);
    if (!c) throw new InputError(`Const node '${n.name}' has no value: it is not in weightsManifest`, { file, hint: 'model.json and its weights do not match; re-convert the model' });
    consts.set(n.name, c);
  }
  const shape = dimsOf(inputNode.attr.shape?.shape);
  return { file, nodes, consts, input: { node: input, shape }, output: out, convertedBy: String(json.convertedBy ?? 'unknown converter'), nodeCount: all.length };
}
