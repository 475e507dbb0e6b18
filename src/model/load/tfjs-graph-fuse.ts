import type { Const } from './onnx-read.js';
import { OPS, fusableActivations } from './tfjs-graph-ops.js';
import { decodeB64, type GraphNode, type TfGraph } from './tfjs-graph-read.js';

/**
 * Bias folding: a plain Conv2D / DepthwiseConv2dNative / MatMul followed by a BiasAdd (or an Add / AddV2 of a constant
 * vector with one value per output channel), optionally then an activation, is what grappler's remapper fuses into
 * _FusedConv2D / FusedDepthwiseConv2dNative / _FusedMatMul; graphs converted without it keep the ops apart. Each such
 * chain becomes the fused node, so the bias is the layer's own (Keras's Conv2D kernel + bias, TensorFlow's parameter
 * count) rather than a separate per-channel affine. A chain is folded only when its intermediate tensors feed nothing
 * else; an Add's vector must be a Const node (a BiasAdd's bias may be any constant subgraph).
 */

interface Producer {
  /** The fused op whose conversion (tfjs-graph-ops.ts) takes [x, weight, bias] and `fused_ops`. */
  fused: string;
  /** The output's rank (an Add's vector may not have more axes) and the weight's. */
  rank: number;
  /** Output channels, from the weight. */
  channels(w: Const, n: GraphNode): number;
}

const PRODUCERS: Record<string, Producer> = {
  Conv2D: { fused: '_FusedConv2D', rank: 4, channels: (w) => w.dims[3] },
  DepthwiseConv2dNative: { fused: 'FusedDepthwiseConv2dNative', rank: 4, channels: (w) => w.dims[2] * w.dims[3] },
  MatMul: { fused: '_FusedMatMul', rank: 2, channels: (w, n) => w.dims[n.attr.transpose_b?.b ? 0 : 1] },
};

interface GraphFacts {
  producer(ref: string): GraphNode | undefined;
  readers(ref: string): GraphNode[];
  /** How many times the tensor is read (the model's output counts once). */
  uses(ref: string): number;
  /** Whether the tensor is a constant: a Const node, or a foldable op of constants. */
  isConst(ref: string): boolean;
  /** A Const node's value. */
  constant(ref: string): Const | undefined;
}

/** The producer's output: its rank and, when its weight is a Const node, its channel count. */
interface Out {
  rank: number;
  channels?: number;
}

/** The bias operand of bias op `b` reading the producer's output `x`, or undefined when it is not one. */
const BIAS_OPS: Record<string, (b: GraphNode, x: string, out: Out, f: GraphFacts) => string | undefined> = {
  BiasAdd(b, x, _out, f) {
    const format = b.attr.data_format?.s;
    const nhwc = format === undefined || decodeB64(format) === 'NHWC';
    return b.inputs.length === 2 && b.inputs[0] === x && nhwc && f.isConst(b.inputs[1]) ? b.inputs[1] : undefined;
  },
  Add: channelAdd,
  AddV2: channelAdd,
};

/** x + k (either order) with k a Const node of one value per channel ([C], [1, 1, 1, C]...). */
function channelAdd(b: GraphNode, x: string, out: Out, f: GraphFacts): string | undefined {
  const at = b.inputs.indexOf(x);
  const other = b.inputs[1 - at];
  const k = b.inputs.length === 2 && at >= 0 && other !== x ? f.constant(other) : undefined;
  if (!k || k.int || out.channels === undefined) return undefined;
  const last = k.dims.length - 1;
  return k.data.length === out.channels && k.dims.length <= out.rank && k.dims.every((d, i) => (i === last ? d === out.channels : d === 1)) ? other : undefined;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

function facts(g: TfGraph): GraphFacts {
  const producers = new Map(g.nodes.map((n) => [`${n.name}:0`, n]));
  const readers = new Map<string, GraphNode[]>();
  for (const n of g.nodes) {
    for (const i of n.inputs) {
      if (!readers.has(i)) readers.set(i, []);
      readers.get(i)!.push(n);
    }
  }
  const consts = new Set(Array.from(g.consts.keys(), (name) => `${name}:0`));
  for (const n of g.nodes) {
    const fold = Object.hasOwn(OPS, n.op) && OPS[n.op].fold !== undefined;
    if (fold && n.inputs.length > 0 && n.inputs.every((i) => consts.has(i))) consts.add(`${n.name}:0`);
  }
  return {
    producer: (ref) => producers.get(ref),
    readers: (ref) => readers.get(ref) ?? [],
    uses: (ref) => (readers.get(ref)?.length ?? 0) + (ref === g.output ? 1 : 0),
    isConst: (ref) => consts.has(ref),
    constant: (ref) => (ref.endsWith(':0') ? g.consts.get(ref.slice(0, -2)) : undefined),
  };
}

/** The chain ending at bias op `b`: its producer, bias operand and the activation that alone reads its output. */
function match(b: GraphNode, f: GraphFacts): { prod: GraphNode; bias: string; act?: GraphNode } | undefined {
  if (!Object.hasOwn(BIAS_OPS, b.op)) return undefined;
  for (const x of new Set(b.inputs)) {
    const prod = f.producer(x);
    if (!prod || !Object.hasOwn(PRODUCERS, prod.op) || prod.inputs.length !== 2 || f.uses(x) !== 1) continue;
    const p = PRODUCERS[prod.op];
    const w = f.constant(prod.inputs[1]);
    const bias = BIAS_OPS[b.op](b, x, { rank: p.rank, channels: w?.dims.length === p.rank ? p.channels(w, prod) : undefined }, f);
    if (!bias) continue;
    const out = `${b.name}:0`;
    const [next] = f.readers(out);
    const act = f.uses(out) === 1 && next && next.inputs.length === 1 && fusableActivations().includes(next.op) ? next : undefined;
    return { prod, bias, act };
  }
  return undefined;
}

/** The node list with each foldable chain replaced: the fused node (named as the producer) then an Identity under the chain's last name. */
export function fuseBiases(g: TfGraph): GraphNode[] {
  const f = facts(g);
  const replaced = new Map<GraphNode, GraphNode[]>();
  for (const b of g.nodes) {
    const m = match(b, f);
    if (!m) continue;
    const { prod, bias, act } = m;
    const last = act ?? b;
    const ops = ['BiasAdd', ...(act ? [act.op] : [])];
    const fused: GraphNode = {
      name: prod.name,
      op: PRODUCERS[prod.op].fused,
      inputs: [prod.inputs[0], prod.inputs[1], bias],
      // The activation's attributes (LeakyRelu's alpha) with the producer's.
      attr: { ...(act?.attr ?? {}), ...prod.attr, fused_ops: { list: { s: ops.map(b64) } } },
      label: [prod.op, b.op, ...(act ? [act.op] : [])].join(' + '),
    };
    replaced.set(prod, []);
    replaced.set(b, []);
    replaced.set(last, [fused, { name: last.name, op: 'Identity', inputs: [`${prod.name}:0`], attr: {} }]);
  }
  return g.nodes.flatMap((n) => replaced.get(n) ?? [n]);
}
