import type * as tfType from '@tensorflow/tfjs';
import { InputError, describeError } from '../../errors/input-error.js';
import { concatFloat32 } from '../../util/ndarray.js';
import { sanitizeLayerName } from './common.js';
import { compareOutputs, randomInputs, type ImportCheck } from './onnx-verify.js';
import { fuseBiases } from './tfjs-graph-fuse.js';
import { OPS, supportedGraphOps, type GraphCtx, type Val } from './tfjs-graph-ops.js';
import { decodeB64, readTfjsGraph, type GraphAttr, type GraphModelJson, type GraphNode, type TfGraph } from './tfjs-graph-read.js';

export { supportedGraphOps as SUPPORTED_TFJS_GRAPH_OPS } from './tfjs-graph-ops.js';

/**
 * Imports a TF.js graph model (tensorflowjs_converter's graph-model output: tfhub and tfjs-models image classifiers,
 * Teachable Machine exports) as a tf.LayersModel of standard Keras layers, one op table entry per TF op
 * (tfjs-graph-ops.ts), and checks the import against tfjs's own graph executor running the same model.json.
 */

export interface GraphImportInfo {
  inputName: string;
  outputName: string;
  /** The input's batch size when the graph fixes it, else null. */
  fixedBatch: number | null;
  convertedBy: string;
  nodes: number;
}

export interface GraphImport {
  model: tfType.LayersModel;
  file: string;
  info: GraphImportInfo;
  /** The model.json and weights as tfjs's loadGraphModel takes them: the reference the import is checked against. */
  artifacts: tfType.io.ModelArtifacts;
}

/** The parsed model.json of a graph model, its weight specs (all groups) and their bytes. */
export interface GraphSource {
  json: GraphModelJson & Record<string, unknown>;
  specs: tfType.io.WeightsManifestEntry[];
  data: ArrayBuffer;
  file: string;
  /** Of a model with several outputs, the one to import (a signature key or tensor name). */
  output?: string;
}

/** 'StatefulPartitionedCall/model/block_1_expand/Conv2D' -> 'model/block_1_expand' (the Keras layer's path). */
function layerBaseName(node: GraphNode): string {
  const levels = node.name.split('/').filter((l) => l && !/^(Stateful)?PartitionedCall(_\d+)?$/.test(l));
  return sanitizeLayerName(levels.length > 1 ? levels.slice(0, -1).join('/') : levels.join('/')) || node.op.toLowerCase();
}

function nodeError(g: TfGraph, node: GraphNode, msg: string, hint?: string): InputError {
  return new InputError(`node '${node.name}' (${node.label ?? node.op}): ${msg}`, { file: g.file, ...(hint ? { hint } : {}) });
}

/** Builds the Keras model; weights are owned by the model, nothing else is left allocated. */
export function convertTfjsGraph(tf: typeof tfType, g: TfGraph): tfType.LayersModel {
  const shape = g.input.shape;
  if (shape.length < 2 || shape.slice(1).some((d) => d < 0)) {
    throw new InputError(`input '${g.input.node}' has shape [${shape.join(', ')}]: only the batch axis may be free`, { file: g.file, hint: 'convert the model with a fixed input size (e.g. a Keras model built with input_shape=(224, 224, 3))' });
  }
  const inp = tf.input({ shape: shape.slice(1), name: sanitizeLayerName(g.input.node) || 'input' });
  const values = new Map<string, Val>([[`${g.input.node}:0`, { kind: 'sym', t: inp }]]);
  for (const [name, c] of g.consts) values.set(`${name}:0`, { kind: 'const', c });
  const usedNames = new Set<string>([inp.name]);
  const weightTensors: tfType.Tensor[] = [];
  try {
    for (const node of fuseBiases(g)) convertNode(tf, g, node, values, usedNames, weightTensors);
    const out = values.get(g.output);
    if (!out) throw new InputError(`output '${g.output}' is not produced by any node`, { file: g.file });
    if (out.kind === 'const') throw new InputError(`output '${g.output}' is a constant: the model does not depend on its input`, { file: g.file });
    const name = sanitizeLayerName(g.file.split(/[\\/]/).slice(-2).join('_').replace(/\.json$/i, '')) || 'graph_model';
    return tf.model({ inputs: inp, outputs: out.t, name });
  } finally {
    for (const w of weightTensors) w.dispose();
  }
}

function convertNode(tf: typeof tfType, g: TfGraph, node: GraphNode, values: Map<string, Val>, usedNames: Set<string>, weightTensors: tfType.Tensor[]): void {
  const entry = Object.hasOwn(OPS, node.op) ? OPS[node.op] : undefined;
  if (!entry) throw nodeError(g, node, `op '${node.op}' is not supported`, `supported ops: ${supportedGraphOps().join(', ')}`);
  if (entry.source) {
    if (node.op === 'Placeholder' && node.name !== g.input.node) throw nodeError(g, node, 'a second input is not supported');
    return;
  }
  const ctx = makeCtx(tf, g, node, values, usedNames, weightTensors);
  const allConst = node.inputs.every((n) => values.get(n)?.kind === 'const');
  if (allConst && entry.fold) return entry.fold(ctx);
  if (!entry.convert) ctx.fail(`op '${node.op}' is supported only on constants (shape arithmetic); on a tensor computed from the model's input it is not supported`);
  if (allConst) ctx.fail('computes on constants only, which is not supported for this op');
  entry.convert!(ctx);
  if (!values.has(`${node.name}:0`)) ctx.fail('produced no output (internal error)');
}

function makeCtx(tf: typeof tfType, g: TfGraph, node: GraphNode, values: Map<string, Val>, usedNames: Set<string>, weightTensors: tfType.Tensor[]): GraphCtx {
  const fail = (msg: string, hint?: string): never => {
    throw nodeError(g, node, msg, hint);
  };
  const val = (i: number): Val => {
    const v = values.get(node.inputs[i] ?? '');
    return v ?? fail(`input ${i} ('${node.inputs[i] ?? ''}') is missing`);
  };
  const attr = <T>(name: string, def: T | undefined, read: (a: GraphAttr) => T | undefined, what: string): T => {
    const a = node.attr[name];
    if (a === undefined) return def !== undefined ? def : fail(`attribute '${name}' is missing`);
    const v = read(a);
    return v !== undefined ? v : fail(`attribute '${name}' should be ${what}`);
  };
  const ctx: GraphCtx = {
    tf,
    op: node.op,
    arity: node.inputs.length,
    sym(i) {
      const v = val(i);
      return v.kind === 'sym' ? v : fail(`input ${i} ('${node.inputs[i]}') is a constant where a computed tensor is expected`);
    },
    const(i) {
      const v = val(i);
      return v.kind === 'const' ? v.c : fail(`input ${i} ('${node.inputs[i]}') must be a constant (it is computed from the model's input)`, 'only constant weights, shapes and axes are supported');
    },
    ints: (i) => Array.from(ctx.const(i).data),
    isConst: (i) => val(i).kind === 'const',
    attrStr: (name, def) => attr(name, def, (a) => (typeof a.s === 'string' ? decodeB64(a.s) : undefined), 'a string'),
    attrStrs: (name) => attr(name, [], (a) => a.list?.s?.map(decodeB64) ?? (a.list ? [] : undefined), 'a list of strings'),
    attrInts: (name, def) => attr(name, def, (a) => a.list?.i?.map(Number) ?? (a.list ? [] : undefined), 'a list of integers'),
    attrFloat: (name, def) => attr(name, def, (a) => (typeof a.f === 'number' ? a.f : a.f === undefined && a.i === undefined ? 0 : undefined), 'a number'),
    attrInt: (name, def) => attr(name, def, (a) => (a.i !== undefined ? Number(a.i) : a.f === undefined && a.b === undefined ? 0 : undefined), 'an integer'),
    attrBool: (name, def) => attr(name, def, (a) => (typeof a.b === 'boolean' ? a.b : a.b === undefined ? false : undefined), 'a boolean'),
    out(v, i = 0) {
      values.set(`${node.name}:${i}`, v);
    },
    fail,
    layer(factory, config, inputs, weights, suffix) {
      const base = layerBaseName(node) + (suffix ? `_${suffix}` : '');
      let name = base;
      for (let k = 1; usedNames.has(name); k++) name = `${base}_${k}`;
      usedNames.add(name);
      const make = (tf.layers as unknown as Record<string, (c: object) => tfType.layers.Layer>)[factory];
      if (!make) throw new Error(`no tf.layers factory '${factory}'`);
      for (const w of weights ?? []) {
        const bad = w.data.findIndex((v) => !Number.isFinite(v));
        if (bad >= 0) fail(`a weight of shape [${w.shape.join(', ')}] from its constants contains ${w.data.filter((v) => !Number.isFinite(v)).length} non-finite value(s) (first: ${w.data[bad]} at flat index ${bad})`, 'the model was saved after training diverged, or the file is corrupt');
      }
      const ws = weights?.map((w) => tf.tensor(w.data, w.shape));
      if (ws) weightTensors.push(...ws);
      try {
        return make({ ...config, name, ...(ws ? { weights: ws } : {}) }).apply(inputs) as tfType.SymbolicTensor;
      } catch (e) {
        if (e instanceof InputError) throw e;
        return fail(`cannot build its ${factory} layer: ${describeError(e)}`);
      }
    },
  };
  return ctx;
}

/** Reads and converts the graph; the artifacts are what tfjs's graph executor loads the same model from. */
export function importTfjsGraph(tf: typeof tfType, src: GraphSource): GraphImport {
  const g = readTfjsGraph(tf, src.json, src.specs, src.data, src.file, src.output);
  const model = convertTfjsGraph(tf, g);
  const batch = g.input.shape[0];
  return {
    model,
    file: src.file,
    info: { inputName: g.input.node, outputName: g.output, fixedBatch: batch > 0 ? batch : null, convertedBy: g.convertedBy, nodes: g.nodeCount },
    artifacts: {
      modelTopology: src.json.modelTopology,
      format: 'graph-model',
      ...(src.json.signature ? { signature: src.json.signature } : {}),
      weightSpecs: src.specs,
      weightData: src.data,
    },
  };
}

/**
 * Runs the original model.json in tfjs's graph executor (tf.loadGraphModel) and the imported model on `x`
 * (n samples, NHWC) and compares: max |diff| over the graph executor's largest |output|.
 */
export async function checkGraphImport(tf: typeof tfType, imp: GraphImport, x: Float32Array, n: number, opts: { tolerance?: number; inputs: string }): Promise<ImportCheck> {
  const shape = imp.model.inputs[0].shape.slice(1) as number[];
  const per = shape.reduce((a, b) => a * b, 1);
  const batch = imp.info.fixedBatch ?? n;
  if (n % batch !== 0) throw new Error(`the graph model takes batches of exactly ${batch}; ${n} samples do not divide into them`);
  const ref: Float32Array[] = [];
  let graph: tfType.GraphModel | undefined;
  try {
    graph = await tf.loadGraphModel(tf.io.fromMemory(imp.artifacts));
    for (let i = 0; i < n; i += batch) {
      const y = tf.tidy(() => graph!.execute({ [imp.info.inputName]: tf.tensor(x.subarray(i * per, (i + batch) * per), [batch, ...shape]) }, imp.info.outputName) as tfType.Tensor);
      ref.push(Float32Array.from(await y.data() as Float32Array));
      y.dispose();
    }
  } catch (e) {
    // The reference cannot run what it was given (an op tfjs lacks, a fused op it refuses): nothing to compare against.
    throw new InputError(`tfjs's graph executor cannot run the graph model, so the import cannot be checked: ${describeError(e)}`, { file: imp.file });
  } finally {
    graph?.dispose();
  }
  const y = tf.tidy(() => imp.model.predict(tf.tensor(x, [n, ...shape])) as tfType.Tensor);
  const got = Float32Array.from(await y.data() as Float32Array);
  y.dispose();
  const version = (tf.version as Record<string, string>)['tfjs-converter'] ?? (tf.version as Record<string, string>)['tfjs-core'];
  return compareOutputs(got, concatFloat32(ref), { runtime: `tfjs graph executor (tfjs-converter@${version})`, samples: n, inputs: opts.inputs, tolerance: opts.tolerance });
}

/** The error a failed check raises: the numbers, no node names (the difference has no single source). */
export function importCheckError(check: ImportCheck, file: string): InputError {
  return new InputError(
    `the imported model's outputs differ from the ${check.runtime}'s: max |diff| ${check.maxAbsDiff.toExponential(3)} is ${check.relativeDiff.toExponential(3)} of the output scale ${check.outputScale.toPrecision(4)} (tolerance ${check.tolerance}) on ${check.inputs}`,
    { file, hint: 'the conversion is not exact for this model: please report it with the model.json; with.verify.tolerance raises the bound' },
  );
}

/** The samples a check uses without data: seeded standard-normal images, a multiple of a fixed batch. */
export function defaultCheckSamples(info: GraphImportInfo, want = 8): number {
  return info.fixedBatch ? Math.max(info.fixedBatch, Math.floor(want / info.fixedBatch) * info.fixedBatch) : want;
}

/** Imports and checks on seeded random inputs (loadModelFrom, `compress layers`); a failed check is an InputError. */
export async function loadTfjsGraphChecked(tf: typeof tfType, src: GraphSource): Promise<tfType.LayersModel> {
  const imp = importTfjsGraph(tf, src);
  try {
    const n = defaultCheckSamples(imp.info);
    const shape = imp.model.inputs[0].shape.slice(1) as number[];
    const check = await checkGraphImport(tf, imp, randomInputs(shape, n, 1), n, { inputs: `${n} seeded random samples` });
    if (!check.passed) throw importCheckError(check, src.file);
    return imp.model;
  } catch (e) {
    imp.model.dispose();
    throw e;
  }
}
