import { InputError } from '../../errors/input-error.js';

type Json = Record<string, unknown>;

/**
 * Raw tensor ops in a Keras functional model, as standard tfjs layers. Keras applications write
 * them inline, e.g. MobileNetV3's `hard_sigmoid(x) = layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)`:
 *
 *  - tf.keras 2.4-2.15 saves each as a `TFOpLambda` layer whose `config.function` names the TF
 *    function (`__operators__.add`, `math.multiply`, `nn.relu6`...). Its one inbound node is the
 *    first call argument, not wrapped in a list, with the other arguments as its kwargs:
 *    `["re_lu", 0, 0, {"y": 3.0, "name": null}]`, a tensor operand as a reference
 *    (`{"y": ["tf.cast_4", 0, 0], "name": null}`), a constant first argument as
 *    `["_CONSTANT_VALUE", -1, 3.0, {...}]`.
 *  - Keras 3 saves the `keras.src.ops` operation itself: `{"module": "keras.src.ops.numpy",
 *    "class_name": "Add", ...}` whose node `args` hold `__keras_tensor__` objects and plain numbers.
 *
 * TENSOR_OPS is the one table: TF function name (Keras 2) or `<ops module>.<class>` (Keras 3) →
 * the parameters it reads and the layer it becomes. tensor ⊕ number becomes Rescaling (scale,
 * offset), tensor ⊕ tensor Add/Subtract/Multiply. Anything else is refused naming the layer.
 */

/** A reference to a layer's output as tfjs writes it: [layer, node, tensor, kwargs]. */
export type TensorRef = [string, number, number, Json];
export type Operand = { ref: TensorRef } | { value: unknown };

/** One call of a tensor op, its operands in the order of the rule's `params`. */
export interface OpCall {
  /** TFOpLambda function or `<ops module>.<class>`. */
  fn: string;
  args: Array<Operand | undefined>;
}

/** A tfjs layer (without name and inbound node) and the tensors it takes. */
export interface OpLayer {
  class_name: string;
  config: Json;
  inputs: TensorRef[];
}

interface OpRule {
  /** The op's parameters in call order (Keras 2 passes all but the first as kwargs by these names). */
  params: string[];
  convert: (args: Array<Operand | undefined>, fail: (why: string) => never) => OpLayer;
}

const isRef = (o: Operand | undefined): o is { ref: TensorRef } => !!o && 'ref' in o;

function scalar(o: Operand | undefined, fail: (why: string) => never): number {
  const v = o && 'value' in o ? o.value : undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`operand ${JSON.stringify(v) ?? 'undefined'} is not a number (only tensor ⊕ tensor and tensor ⊕ scalar convert)`);
  return v as number;
}

const rescaling = (x: TensorRef, scale: number, offset: number): OpLayer => ({ class_name: 'Rescaling', config: { scale, offset }, inputs: [x] });

type Arith = 'add' | 'sub' | 'mul' | 'div';
const MERGE: Record<Arith, string | undefined> = { add: 'Add', sub: 'Subtract', mul: 'Multiply', div: undefined };

/** x ⊕ y: two tensors as the merge layer, a tensor and a number as Rescaling(scale, offset). */
function arith(kind: Arith): OpRule {
  return {
    params: ['x', 'y'],
    convert: ([a, b], fail) => {
      if (isRef(a) && isRef(b)) {
        const merge = MERGE[kind] ?? fail('tensor / tensor has no standard layer');
        return { class_name: merge, config: {}, inputs: [a.ref, b.ref] };
      }
      if (isRef(a)) {
        const c = scalar(b, fail);
        if (kind === 'div' && c === 0) fail('division by the constant 0');
        const [scale, offset] = { add: [1, c], sub: [1, -c], mul: [c, 0], div: [1 / c, 0] }[kind];
        return rescaling(a.ref, scale, offset);
      }
      if (isRef(b)) {
        const c = scalar(a, fail);
        if (kind === 'div') fail('number / tensor has no standard layer');
        const [scale, offset] = { add: [1, c], sub: [-1, c], mul: [c, 0] }[kind as Exclude<Arith, 'div'>];
        return rescaling(b.ref, scale, offset);
      }
      return fail('neither operand is a tensor');
    },
  };
}

/** f(x) as one layer of the given class and config. */
function unary(class_name: string, config: Json, param = 'x'): OpRule {
  return {
    params: [param],
    convert: ([x], fail) => (isRef(x) ? { class_name, config, inputs: [x.ref] } : fail('its input is not a tensor')),
  };
}

/** The table: TF function (tf.keras 2 TFOpLambda) or Keras 3 `<ops module>.<class>` → conversion. */
export const TENSOR_OPS: Record<string, OpRule> = {
  '__operators__.add': arith('add'),
  'math.add': arith('add'),
  'numpy.Add': arith('add'),
  '__operators__.sub': arith('sub'),
  'math.subtract': arith('sub'),
  'numpy.Subtract': arith('sub'),
  'math.multiply': arith('mul'),
  'numpy.Multiply': arith('mul'),
  'math.truediv': arith('div'),
  'math.divide': arith('div'),
  'numpy.TrueDivide': arith('div'),
  'numpy.Divide': arith('div'),
  'nn.relu': unary('ReLU', {}, 'features'),
  'nn.Relu': unary('ReLU', {}),
  'nn.relu6': unary('ReLU', { max_value: 6 }, 'features'),
  'nn.Relu6': unary('ReLU', { max_value: 6 }),
  'math.sigmoid': unary('Activation', { activation: 'sigmoid' }),
  'nn.sigmoid': unary('Activation', { activation: 'sigmoid' }),
  'nn.Sigmoid': unary('Activation', { activation: 'sigmoid' }),
  'math.tanh': unary('Activation', { activation: 'tanh' }),
  'numpy.Tanh': unary('Activation', { activation: 'tanh' }),
  'nn.HardSilu': unary('Activation', { activation: 'hard_swish' }),
};

/** Layer classes whose records are tensor ops. */
export const TF_OP_CLASSES = new Set(['TFOpLambda', 'SlicingOpLambda']);
const KERAS3_OPS_MODULE = /^keras\.src\.ops\.(\w+)$/;

/** The table key of a layer record that is a tensor op, or undefined for a layer. */
export function tensorOpName(l: Json): string | undefined {
  if (TF_OP_CLASSES.has(String(l.class_name))) return String((l.config as Json | undefined)?.function ?? '');
  const m = KERAS3_OPS_MODULE.exec(String(l.module ?? ''));
  return m ? `${m[1]}.${String(l.class_name)}` : undefined;
}

/** Whether a Keras 3 layer record is an operation (not a layer: Keras tracks no weights for it). */
export function isKeras3Op(l: Json): boolean {
  return KERAS3_OPS_MODULE.test(String(l.module ?? ''));
}

const KERAS2_CONSTANT = '_CONSTANT_VALUE';

/**
 * The tfjs layer a tensor-op record becomes. `keras3Ref` turns a `__keras_tensor__` object into a
 * reference (undefined for anything else).
 */
export function convertTensorOp(l: Json, name: string, file: string, keras3Ref: (o: unknown) => TensorRef | undefined): OpLayer {
  const fn = tensorOpName(l) ?? '';
  const label = TF_OP_CLASSES.has(String(l.class_name)) ? `${String(l.class_name)} function '${fn}'` : `Keras op '${fn}'`;
  const fail = (why: string): never => {
    throw new InputError(`${label}: ${why}`, { file, layer: name });
  };
  const rule = TENSOR_OPS[fn];
  if (!rule) {
    throw new InputError(`${label} is not supported`, {
      file,
      layer: name,
      hint: `supported tensor ops: ${Object.keys(TENSOR_OPS).join(', ')}; or rebuild the model with standard layers`,
    });
  }
  const nodes = l.inbound_nodes;
  if (!Array.isArray(nodes) || nodes.length !== 1) fail(`expected one call, the config has ${Array.isArray(nodes) ? nodes.length : 'no'} inbound node(s)`);
  const node = (nodes as unknown[])[0];
  const call = Array.isArray(node) ? keras2Call(node, rule.params, fail) : keras3Call(node, rule.params, keras3Ref, fail);
  return rule.convert(call, fail);
}

/** `[first arg..., {kwargs}]` of a TFOpLambda node → operands in `params` order. */
function keras2Call(node: unknown[], params: string[], fail: (why: string) => never): Array<Operand | undefined> {
  if (typeof node[0] !== 'string' || node.length < 3) fail('its inbound node is not one tensor or constant (a list of tensors is not supported)');
  const kwargs = { ...((node[3] ?? {}) as Json) };
  const first: Operand = node[0] === KERAS2_CONSTANT ? { value: node[2] } : { ref: [node[0] as string, Number(node[1] ?? 0), Number(node[2] ?? 0), {}] };
  delete kwargs.name;
  const rest = params.slice(1).map((p): Operand | undefined => {
    if (!(p in kwargs)) return undefined;
    const v = kwargs[p];
    delete kwargs[p];
    return Array.isArray(v) && typeof v[0] === 'string' && typeof v[1] === 'number' ? { ref: [v[0], v[1], Number(v[2] ?? 0), {}] } : { value: v };
  });
  const extra = Object.keys(kwargs);
  if (extra.length) fail(`argument(s) ${extra.join(', ')} are not supported`);
  return [first, ...rest];
}

/** `{args, kwargs}` of a Keras 3 op node → operands in `params` order. */
function keras3Call(node: unknown, params: string[], keras3Ref: (o: unknown) => TensorRef | undefined, fail: (why: string) => never): Array<Operand | undefined> {
  if (!node || typeof node !== 'object') return fail('its inbound node is malformed');
  const { args = [], kwargs = {} } = node as { args?: unknown[]; kwargs?: Json };
  const operand = (v: unknown): Operand => {
    const ref = keras3Ref(v);
    return ref ? { ref } : { value: v };
  };
  const out: Array<Operand | undefined> = params.map((p, i) => (i < args.length ? operand(args[i]) : p in kwargs ? operand(kwargs[p]) : undefined));
  const extra = [...(args.length > params.length ? [`${args.length - params.length} positional`] : []), ...Object.keys(kwargs).filter((k) => !params.includes(k))];
  if (extra.length) fail(`argument(s) ${extra.join(', ')} are not supported`);
  return out;
}
