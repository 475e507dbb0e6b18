import type { Const, OnnxGraph, OnnxNode } from './onnx-read.js';

/**
 * Fused patterns: chains of ONNX nodes that exporters emit for one Keras-level operation. Each
 * entry matches at the chain's LAST node and returns one synthetic node (domain `compress`, whose
 * conversion is the op-table entry of the same name) plus the earlier nodes it replaces. A chain
 * is fused only when its intermediate tensors feed nothing else.
 */

interface GraphIndex {
  producer(name: string): OnnxNode | undefined;
  consumers(name: string): number;
  /** The scalar value of a constant (initializer or Constant node), if `name` is one. */
  scalar(name: string): number | undefined;
  isConst(name: string): boolean;
  /** The value of a constant (initializer or Constant node), if `name` is one. */
  constant(name: string): Const | undefined;
}

interface Fusion {
  name: string;
  match(n: OnnxNode, g: GraphIndex): { node: OnnxNode; replaces: OnnxNode[] } | undefined;
}

const synth = (last: OnnxNode, opType: string, inputs: string[]): OnnxNode => ({
  name: last.name,
  opType,
  domain: 'compress',
  inputs,
  outputs: [last.outputs[0]],
  attrs: new Map(),
});

/** `name` comes from a node of type `op` whose output feeds only one node. */
function single(g: GraphIndex, name: string, op: string): OnnxNode | undefined {
  const p = g.producer(name);
  return p && p.opType === op && g.consumers(name) === 1 ? p : undefined;
}

const near = (a: number | undefined, b: number, tol = 1e-4): boolean => a !== undefined && Math.abs(a - b) <= tol * Math.abs(b);

export const FUSIONS: Fusion[] = [
  {
    // x * sigmoid(x) (torch.nn.SiLU at opsets < 14 and hand-written swish) -> Activation('swish')
    name: 'SiLU',
    match(n, g) {
      if (n.opType !== 'Mul') return undefined;
      for (const [a, b] of [[0, 1], [1, 0]]) {
        const sig = single(g, n.inputs[b], 'Sigmoid');
        if (sig && sig.inputs[0] === n.inputs[a]) return { node: synth(n, 'SiLU', [n.inputs[a]]), replaces: [sig] };
      }
      return undefined;
    },
  },
  {
    // x * HardSigmoid(x; 1/6, 0.5) (torch.nn.Hardswish at opsets < 14) -> HardSwish
    name: 'HardSwish',
    match(n, g) {
      if (n.opType !== 'Mul') return undefined;
      for (const [a, b] of [[0, 1], [1, 0]]) {
        const hs = single(g, n.inputs[b], 'HardSigmoid');
        if (hs && hs.inputs[0] === n.inputs[a] && near(hs.attrs.get('alpha') as number, 1 / 6) && near((hs.attrs.get('beta') as number | undefined) ?? 0.5, 0.5)) {
          return { node: synth(n, 'HardSwish', [n.inputs[a]]), replaces: [hs] };
        }
      }
      return undefined;
    },
  },
  {
    // x * 0.5 * (1 + erf(x / sqrt(2))) in either association (torch.nn.GELU) -> Activation('gelu')
    name: 'GELU',
    match(n, g) {
      if (n.opType !== 'Mul') return undefined;
      // The product's factors through at most one inner Mul that feeds only this one.
      const factors: string[] = [];
      const inner: OnnxNode[] = [];
      for (const f of n.inputs) {
        const m = single(g, f, 'Mul');
        if (m && inner.length === 0) {
          inner.push(m);
          factors.push(...m.inputs);
        } else factors.push(f);
      }
      if (factors.length !== 3 || inner.length !== 1) return undefined;
      const half = factors.findIndex((f) => near(g.scalar(f), 0.5));
      if (half < 0) return undefined;
      const rest = factors.filter((_, i) => i !== half);
      for (const [xi, ai] of [[0, 1], [1, 0]]) {
        const x = rest[xi];
        const add = single(g, rest[ai], 'Add');
        if (!add) continue;
        const one = add.inputs.findIndex((f) => near(g.scalar(f), 1));
        if (one < 0) continue;
        const erf = single(g, add.inputs[1 - one], 'Erf');
        const div = erf && (single(g, erf.inputs[0], 'Div') ?? single(g, erf.inputs[0], 'Mul'));
        if (!erf || !div || div.inputs[0] !== x) continue;
        const c = g.scalar(div.inputs[1]);
        if (!(div.opType === 'Div' ? near(c, Math.SQRT2) : near(c, Math.SQRT1_2))) continue;
        return { node: synth(n, 'GELU', [x]), replaces: [...inner, add, erf, div] };
      }
      return undefined;
    },
  },
  {
    // nn.LayerNorm below opset 17: the mean/variance chain, * weight + bias -> LayerNormalization
    name: 'LayerNorm',
    match(n, g) {
      if (n.opType !== 'Add') return undefined;
      for (const [a, b] of [[0, 1], [1, 0]]) {
        const mul = single(g, n.inputs[a], 'Mul');
        if (!mul || !g.isConst(n.inputs[b])) continue;
        for (const [d, w] of [[0, 1], [1, 0]]) {
          const div = single(g, mul.inputs[d], 'Div');
          const chain = div && g.isConst(mul.inputs[w]) ? layerNormChain(div, g) : undefined;
          if (chain) return { node: layerNorm(n, [chain.x, mul.inputs[w], n.inputs[b]], chain.eps), replaces: [...chain.nodes, div!, mul] };
        }
      }
      return undefined;
    },
  },
  {
    // nn.LayerNorm(elementwise_affine=False) below opset 17: the chain alone
    name: 'LayerNormPlain',
    match(n, g) {
      const chain = layerNormChain(n, g);
      return chain ? { node: layerNorm(n, [chain.x], chain.eps), replaces: chain.nodes } : undefined;
    },
  },
  {
    // MatMul(x, W) + b with constant W and b (torch.nn.Linear on some exporters) -> Dense with bias
    name: 'MatMulAdd',
    match(n, g) {
      if (n.opType !== 'Add') return undefined;
      for (const [a, b] of [[0, 1], [1, 0]]) {
        const mm = single(g, n.inputs[a], 'MatMul');
        if (mm && g.isConst(mm.inputs[1]) && !g.isConst(mm.inputs[0]) && g.isConst(n.inputs[b])) {
          return { node: synth(n, 'MatMulAdd', [mm.inputs[0], mm.inputs[1], n.inputs[b]]), replaces: [mm] };
        }
      }
      return undefined;
    },
  },
  {
    // conv(x) * s + b, conv(x) + b with per-channel constants [1, C, 1, 1] (a batch norm folded by hand or by an
    // exporter) -> ConvAffine: the constants folded into the conv's kernel and bias
    name: 'ConvScaleShift',
    match(n, g) {
      if (n.opType !== 'Add') return undefined;
      for (const [a, b] of [[0, 1], [1, 0]]) {
        const conv = single(g, n.inputs[a], 'Conv');
        if (conv && perChannel(g, n.inputs[b], conv)) return { node: convAffine(n, conv, '', n.inputs[b]), replaces: [conv] };
        const mul = single(g, n.inputs[a], 'Mul');
        const scaled = mul && convTimes(mul, g);
        if (scaled && perChannel(g, n.inputs[b], scaled.conv)) return { node: convAffine(n, scaled.conv, scaled.scale, n.inputs[b]), replaces: [scaled.conv, mul!] };
      }
      return undefined;
    },
  },
  {
    // conv(x) * s with a per-channel constant s -> ConvAffine (after ConvScaleShift: a Mul followed by an Add is its)
    name: 'ConvScale',
    match(n, g) {
      const scaled = n.opType === 'Mul' ? convTimes(n, g) : undefined;
      return scaled && { node: convAffine(n, scaled.conv, scaled.scale, ''), replaces: [scaled.conv] };
    },
  },
  {
    // channel_shuffle (ShuffleNet): Reshape [N, g, C/g, H, W] -> Transpose(0, 2, 1, 3, 4) -> Reshape [N, C, H, W]
    // -> ChannelShuffle(x, shape1, shape2), which checks the shapes once they are known
    name: 'ChannelShuffle',
    match(n, g) {
      if (n.opType !== 'Reshape' || n.attrs.get('allowzero') === 1) return undefined;
      const tr = single(g, n.inputs[0], 'Transpose');
      const first = tr && (tr.attrs.get('perm') as number[] | undefined)?.join() === '0,2,1,3,4' ? single(g, tr.inputs[0], 'Reshape') : undefined;
      if (!first || first.attrs.get('allowzero') === 1) return undefined;
      return { node: synth(n, 'ChannelShuffle', [first.inputs[0], first.inputs[1], n.inputs[1]]), replaces: [first, tr!] };
    },
  },
];

/**
 * The mean/variance chain torch.onnx.export writes for nn.LayerNorm below opset 17, ending at `div`:
 * Div(Sub(x, ReduceMean(x)), Sqrt(Add(ReduceMean(Pow(Sub, 2)), eps))), both means over the last axis.
 */
function layerNormChain(div: OnnxNode, g: GraphIndex): { x: string; eps: number; nodes: OnnxNode[] } | undefined {
  if (div.opType !== 'Div') return undefined;
  const sub = g.producer(div.inputs[0]);
  const sqrt = single(g, div.inputs[1], 'Sqrt');
  const add = sqrt && single(g, sqrt.inputs[0], 'Add');
  if (!sub || sub.opType !== 'Sub' || g.consumers(sub.outputs[0]) !== 2 || !add) return undefined;
  const epsAt = add.inputs.findIndex((i) => g.scalar(i) !== undefined);
  const varMean = epsAt < 0 ? undefined : single(g, add.inputs[1 - epsAt], 'ReduceMean');
  const pow = varMean && single(g, varMean.inputs[0], 'Pow');
  const mean = single(g, sub.inputs[1], 'ReduceMean');
  // axes: an attribute below opset 18, the second input from it on.
  const lastAxis = (r: OnnxNode) => ((r.attrs.get('axes') as number[] | undefined)?.join() === '-1' || (r.inputs[1] !== undefined && g.scalar(r.inputs[1]) === -1)) && r.attrs.get('keepdims') !== 0;
  if (!pow || pow.inputs[0] !== sub.outputs[0] || g.scalar(pow.inputs[1]) !== 2 || !mean || mean.inputs[0] !== sub.inputs[0] || !lastAxis(mean) || !lastAxis(varMean!)) return undefined;
  return { x: sub.inputs[0], eps: g.scalar(add.inputs[epsAt])!, nodes: [mean, sub, pow, varMean!, add, sqrt!] };
}

/** Whether `name` is a float constant of one value per output channel of 2-D `conv` (or a scalar), broadcasting over NCHW. */
function perChannel(g: GraphIndex, name: string, conv: OnnxNode): boolean {
  const k = g.constant(name);
  const w = g.constant(conv.inputs[1]);
  if (!k || k.int || !w || w.dims.length !== 4 || k.dims.length > 4) return false;
  const off = 4 - k.dims.length;
  return (k.data.length === 1 || k.data.length === w.dims[0]) && k.dims.every((d, i) => d === 1 || (i + off === 1 && d === w.dims[0]));
}

/** A Mul of a Conv's output (its only reader) by a per-channel constant. */
function convTimes(mul: OnnxNode, g: GraphIndex): { conv: OnnxNode; scale: string } | undefined {
  for (const [a, b] of [[0, 1], [1, 0]]) {
    const conv = single(g, mul.inputs[a], 'Conv');
    if (conv && perChannel(g, mul.inputs[b], conv)) return { conv, scale: mul.inputs[b] };
  }
  return undefined;
}

/** ConvAffine(x, W, B, scale, shift) with the conv's name and attributes (an absent input is ''). */
const convAffine = (last: OnnxNode, conv: OnnxNode, scale: string, shift: string): OnnxNode => ({
  ...synth(last, 'ConvAffine', [conv.inputs[0], conv.inputs[1], conv.inputs[2] ?? '', scale, shift]),
  name: conv.name,
  attrs: conv.attrs,
});

const layerNorm = (last: OnnxNode, inputs: string[], eps: number): OnnxNode => ({ ...synth(last, 'LayerNormalization', inputs), attrs: new Map([['epsilon', eps]]) });

function indexGraph(g: OnnxGraph, nodes: OnnxNode[]): GraphIndex {
  const producers = new Map<string, OnnxNode>();
  const counts = new Map<string, number>();
  for (const n of nodes) {
    for (const o of n.outputs) producers.set(o, n);
    for (const i of n.inputs) counts.set(i, (counts.get(i) ?? 0) + 1);
  }
  for (const o of g.outputs) counts.set(o.name, (counts.get(o.name) ?? 0) + 1);
  const constOf = (name: string) => {
    const init = g.initializers.get(name);
    if (init) return init;
    const p = producers.get(name);
    const v = p?.opType === 'Constant' ? p.attrs.get('value') : undefined;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v;
    return undefined;
  };
  return {
    producer: (name) => producers.get(name),
    consumers: (name) => counts.get(name) ?? 0,
    scalar(name) {
      const c = constOf(name);
      return c && c.data.length === 1 ? c.data[0] : undefined;
    },
    isConst: (name) => constOf(name) !== undefined || producers.get(name)?.opType === 'Constant',
    constant: constOf,
  };
}

/** The node list with every matched pattern replaced by its synthetic node. */
export function applyFusions(g: OnnxGraph): OnnxNode[] {
  let nodes = g.nodes.slice();
  for (const f of FUSIONS) {
    const idx = indexGraph(g, nodes);
    const removed = new Set<OnnxNode>();
    nodes = nodes.map((n) => {
      const m = f.match(n, idx);
      if (!m) return n;
      for (const r of m.replaces) removed.add(r);
      return m.node;
    });
    nodes = nodes.filter((n) => !removed.has(n));
  }
  return nodes;
}
