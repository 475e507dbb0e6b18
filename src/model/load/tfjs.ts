import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { InputError, describeError } from '../../errors/input-error.js';
import { confinedPath } from '../../util/paths.js';
import { assertFiniteWeights, refuseIgnoredOptions, sameShape, shapeStr } from './common.js';
import { checkShardSizes, checkTopology, checkWeightBudget, shardSizes } from './precheck.js';
import { flattenNestedModels, hasNestedModels } from './flatten.js';
import { isKerasArchitectureJson } from './keras.js';
import type { GraphSource } from './tfjs-graph.js';

type Tf = typeof tfType;

interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  group?: string;
  quantization?: { dtype: string; scale?: number; min?: number };
}
interface ManifestGroup {
  paths: string[];
  weights: WeightSpec[];
}

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, float16: 2, string: NaN, complex64: 8 };
const QUANT_BYTES: Record<string, number> = { uint8: 1, uint16: 2, float16: 2 };

/**
 * Loads a TF.js layers model from a directory (containing model.json) or a model.json path:
 * the JSON, the weight shards named in its weightsManifest (several allowed), with checks that
 * turn every way these can be wrong into an InputError naming the file (and layer). A graph model
 * (tensorflowjs_converter's graph-model format) is imported into Keras layers (tfjs-graph.ts) and checked
 * against tfjs's graph executor.
 */
export async function loadTfjsModel(tf: Tf, path: string): Promise<tfType.LayersModel> {
  const { json, jsonPath } = await readModelJson(path);
  if (json.graph) {
    const { loadTfjsGraphChecked } = await import('./tfjs-graph.js');
    return loadTfjsGraphChecked(tf, await graphSource(tf, json, jsonPath));
  }
  refuseIgnoredOptions(json.modelTopology, jsonPath);
  const groups = validateManifest(json.weightsManifest, jsonPath);
  await precheckDeclared(tf, json.modelTopology, groups, dirname(jsonPath), jsonPath);

  let model: tfType.LayersModel;
  try {
    model = await tf.models.modelFromJSON({ modelTopology: json.modelTopology as tfType.io.ModelJSON['modelTopology'] });
  } catch (e) {
    throw new InputError(`cannot build the model from modelTopology: ${describeError(e)}`, { file: jsonPath, cause: e });
  }
  try {
    await loadWeightsInto(tf, model, groups, dirname(jsonPath), jsonPath);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return flattenLoaded(tf, model, jsonPath);
}

/** model.json of a TF.js model directory or path, parsed (an InputError naming the file when it cannot be). */
async function readModelJson(path: string): Promise<{ json: ModelJson; jsonPath: string }> {
  let jsonPath = path;
  try {
    if ((await stat(path)).isDirectory()) jsonPath = join(path, 'model.json');
  } catch {
    throw new InputError('no such file or directory', { file: path });
  }
  let text: string;
  try {
    text = await readFile(jsonPath, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read: ${describeError(e)}`, { file: jsonPath, hint: 'a TF.js model directory must contain model.json' });
  }
  return { json: parseModelJson(text, jsonPath), jsonPath };
}

/**
 * A TF.js graph model at `path` (directory or model.json) as the graph importer takes it: the JSON and all
 * weight bytes (shards checked as for layers models); undefined when `path` holds a layers model.
 */
export async function readTfjsGraphSource(tf: Tf, path: string): Promise<GraphSource | undefined> {
  const { json, jsonPath } = await readModelJson(path);
  return json.graph ? graphSource(tf, json, jsonPath) : undefined;
}

async function graphSource(tf: Tf, json: ModelJson, jsonPath: string): Promise<GraphSource> {
  const groups = validateManifest(json.weightsManifest, jsonPath);
  await precheckDeclared(tf, undefined, groups, dirname(jsonPath), jsonPath);
  const buffers: Uint8Array[] = [];
  for (const g of groups) if (g.weights.length) buffers.push(new Uint8Array(await readGroup(g, dirname(jsonPath), jsonPath)));
  const data = new Uint8Array(buffers.reduce((a, b) => a + b.length, 0));
  let off = 0;
  for (const b of buffers) {
    data.set(b, off);
    off += b.length;
  }
  const specs = groups.flatMap((g) => g.weights) as tfType.io.WeightsManifestEntry[];
  return { json: json.raw as GraphSource['json'], specs, data: data.buffer, file: jsonPath };
}

/** A model with nested models as one graph (the nested original disposed); any failure names the file. */
export function flattenLoaded(tf: Tf, model: tfType.LayersModel, file: string): tfType.LayersModel {
  if (!hasNestedModels(model)) return model;
  try {
    return flattenNestedModels(tf, model).model;
  } catch (e) {
    throw new InputError(`cannot flatten the nested models into one graph: ${describeError(e)}`, { file, cause: e });
  } finally {
    model.dispose();
  }
}

interface ModelJson {
  modelTopology: Record<string, unknown>;
  weightsManifest: unknown;
  /** A graph model (tensorflowjs_converter --output_format=tfjs_graph_model): a GraphDef as JSON. */
  graph: boolean;
  raw: Record<string, unknown>;
}

function parseModelJson(text: string, file: string): ModelJson {
  if (text.trim() === '') throw new InputError('file is empty', { file });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(`not valid JSON (truncated or corrupt?): ${describeError(e)}`, { file, cause: e });
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new InputError('expected a JSON object', { file });
  const o = json as Record<string, unknown>;
  if (o.format === 'graph-model' || (o.modelTopology && typeof o.modelTopology === 'object' && 'node' in (o.modelTopology as object))) {
    if (!o.modelTopology || typeof o.modelTopology !== 'object') throw new InputError("graph model without 'modelTopology'", { file });
    return { modelTopology: o.modelTopology as Record<string, unknown>, weightsManifest: o.weightsManifest, graph: true, raw: o };
  }
  if (isKerasArchitectureJson(o)) {
    throw new InputError('this is Keras architecture JSON (model.to_json()) without its weights', {
      file,
      hint: 'give the weights saved with model.save_weights() too: load: { path: model.json, weights: weights.h5 }',
    });
  }
  if (!o.modelTopology || typeof o.modelTopology !== 'object') {
    throw new InputError("missing 'modelTopology'", { file, hint: 'expected a TF.js layers model.json (model.save() output)' });
  }
  return { modelTopology: o.modelTopology as Record<string, unknown>, weightsManifest: o.weightsManifest, graph: false, raw: o };
}

function validateManifest(m: unknown, file: string): ManifestGroup[] {
  if (m === undefined || m === null) return [];
  if (!Array.isArray(m)) throw new InputError("'weightsManifest' must be an array", { file });
  return m.map((g, gi) => {
    const where = `weightsManifest[${gi}]`;
    if (!g || typeof g !== 'object') throw new InputError(`${where} must be an object`, { file });
    const { paths, weights } = g as Record<string, unknown>;
    if (!Array.isArray(paths) || !paths.every((p) => typeof p === 'string')) {
      throw new InputError(`${where}.paths must be an array of file names`, { file });
    }
    if (!Array.isArray(weights)) throw new InputError(`${where}.weights must be an array`, { file });
    weights.forEach((w, wi) => {
      const ok =
        w && typeof w === 'object' && typeof w.name === 'string' && typeof w.dtype === 'string' &&
        Array.isArray(w.shape) && w.shape.every((d: unknown) => Number.isInteger(d) && (d as number) >= 0);
      if (!ok) throw new InputError(`${where}.weights[${wi}] needs a name, an integer shape and a dtype`, { file });
      if (w.dtype === 'string') throw new InputError(`weight '${w.name}': string weights are not supported`, { file });
      if (!(w.dtype in DTYPE_BYTES)) throw new InputError(`weight '${w.name}': unknown dtype '${w.dtype}'`, { file });
      if (w.quantization && !(w.quantization.dtype in QUANT_BYTES)) {
        throw new InputError(`weight '${w.name}': unknown quantization dtype '${w.quantization.dtype}'`, { file });
      }
    });
    return { paths: paths as string[], weights: weights as WeightSpec[] };
  });
}

/** Declared bytes against the shards on disk, and a layers topology against the declared weights: before any tensor exists. */
async function precheckDeclared(tf: Tf, topology: unknown, groups: ManifestGroup[], dir: string, file: string): Promise<void> {
  let elements = 0;
  for (const g of groups) {
    const inside = g.paths.map((p) => { try { return confinedPath(dir, p, 'weight shard', 'the model directory'); } catch { return undefined; } });
    if (inside.every((p) => p !== undefined)) checkShardSizes(g.weights.reduce((a, w) => a + specBytes(w), 0), await shardSizes(inside as string[]), g.paths, inside as string[]);
    elements += g.weights.filter((w) => w.group !== 'optimizer').reduce((a, w) => a + w.shape.reduce((x, y) => x * y, 1), 0);
  }
  checkWeightBudget(elements, file);
  if (topology !== undefined) await checkTopology(tf, topology, elements, file);
}

function specBytes(w: WeightSpec): number {
  const n = w.shape.reduce((a, b) => a * b, 1);
  return n * (w.quantization ? QUANT_BYTES[w.quantization.dtype] : DTYPE_BYTES[w.dtype]);
}

/** Reads a group's shards and checks their sizes against what the specs need. */
async function readGroup(group: ManifestGroup, dir: string, jsonFile: string): Promise<ArrayBuffer> {
  const expected = group.weights.reduce((a, w) => a + specBytes(w), 0);
  const shards: Buffer[] = [];
  for (const p of group.paths) {
    // model.json is untrusted input too: its shard paths must stay next to it (no '..', no links out).
    let shardPath: string;
    try {
      shardPath = confinedPath(dir, p, 'weight shard', 'the model directory');
    } catch (e) {
      throw new InputError((e as Error).message, { file: jsonFile, hint: 'weightsManifest paths are file names next to model.json' });
    }
    try {
      shards.push(await readFile(shardPath));
    } catch {
      throw new InputError(`weight shard '${p}' named in ${basename(jsonFile)} is missing (expected at ${shardPath})`, {
        file: shardPath,
        hint: 'copy all weight files listed in weightsManifest next to model.json',
      });
    }
  }
  const actual = shards.reduce((a, b) => a + b.length, 0);
  // Checked from the sizes on disk before the build; again here in case a shard changed since.
  checkShardSizes(expected, shards.map((b) => b.length), group.paths, group.paths.map((p) => resolve(dir, p)));
  const out = new Uint8Array(actual);
  let off = 0;
  for (const b of shards) {
    out.set(b, off);
    off += b.length;
  }
  return out.buffer;
}

async function loadWeightsInto(tf: Tf, model: tfType.LayersModel, groups: ManifestGroup[], dir: string, file: string): Promise<void> {
  const decoded = new Map<string, tfType.Tensor>();
  const specs = new Map<string, WeightSpec>();
  try {
    for (const g of groups) {
      const weights = g.weights.filter((w) => w.group !== 'optimizer');
      if (g.weights.length === 0) continue;
      const buf = await readGroup(g, dir, file);
      const map = tf.io.decodeWeights(buf, g.weights as tfType.io.WeightsManifestEntry[]);
      for (const w of g.weights) {
        if (!weights.includes(w)) {
          map[w.name]?.dispose();
          continue;
        }
        if (decoded.has(w.name)) throw new InputError(`weight '${w.name}' appears twice in weightsManifest`, { file });
        decoded.set(w.name, map[w.name]);
        specs.set(w.name, w);
      }
    }
    const used = new Set<string>();
    for (const layer of model.layers) {
      const values: tfType.Tensor[] = [];
      for (const w of layer.weights) {
        const name = w.originalName;
        const t = decoded.get(name);
        if (!t) {
          throw new InputError(`weight '${name}' (shape ${shapeStr(w.shape)}) is not in the weightsManifest`, {
            file,
            layer: layer.name,
            hint: 'model.json and its weights do not match; re-export the model',
          });
        }
        if (!sameShape(t.shape, w.shape)) {
          throw new InputError(`weight '${name}' has shape ${shapeStr(t.shape)} in the manifest, the layer needs ${shapeStr(w.shape)}`, {
            file,
            layer: layer.name,
          });
        }
        if (t.dtype === 'float32') assertFiniteWeights(t.dataSync() as Float32Array, file, layer.name, name);
        values.push(t);
        used.add(name);
      }
      if (values.length) layer.setWeights(values);
    }
    const extra = [...decoded.keys()].filter((n) => !used.has(n));
    if (extra.length) {
      throw new InputError(
        `weightsManifest has ${extra.length} weight(s) that match no layer of modelTopology: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`,
        { file, hint: 'model.json and its weights do not match; re-export the model' },
      );
    }
  } finally {
    for (const t of decoded.values()) t.dispose();
  }
}
