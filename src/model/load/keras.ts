import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { InputError, describeError } from '../../errors/input-error.js';
import { assertFiniteWeights, sameShape, shapeStr, tfjsIgnoredOption } from './common.js';
import { checkTopology, resolveReshapeTargets } from './precheck.js';
import { depthwiseFromGroups } from './depthwise-groups.js';
import { datasetToFloat32, withH5File, type H5Dataset, type H5File, type H5Group } from './h5.js';
import { readZip } from './zip.js';
import { setOwn } from '../../util/own.js';
import { flattenNestedModels, hasNestedModels, type Flattened } from './flatten.js';
import { CUSTOM_ACTIVATION_NAMES } from '../custom-layers.js';
import { convertTensorOp, isKeras3Op, tensorOpName, type TensorRef } from './keras-ops.js';

type Tf = typeof tfType;
type Json = Record<string, unknown>;

/**
 * Keras models into tf.LayersModel:
 *  - Keras 2 `.h5`: root attribute `model_config` (JSON), weights in `model_weights/<layer>/` with
 *    a `weight_names` attribute per layer group naming datasets such as `<layer>/kernel:0`;
 *  - Keras 3 `.keras`: a zip of `config.json` + `model.weights.h5`, whose weights are in
 *    `layers/<key>/vars/0..n` (key = the snake-cased class name with a per-class counter, as Keras
 *    writes it; files keyed by layer name are accepted too).
 * The Keras config is converted to the tfjs dialect (Keras 3 `module`/`registered_name` wrappers,
 * dtype policies, `batch_shape`, `__keras_tensor__` node args...; raw tensor ops, tf.keras 2
 * `TFOpLambda` and Keras 3 `keras.src.ops`, as the standard layers of ./keras-ops.ts), then weights
 * are set by layer.
 */

/** Layer classes the converter knows how to translate faithfully. */
export const SUPPORTED_KERAS_LAYERS = [
  'InputLayer', 'Dense', 'Conv2D', 'DepthwiseConv2D', 'SeparableConv2D', 'Conv2DTranspose', 'MaxPooling2D', 'AveragePooling2D',
  'GlobalAveragePooling2D', 'GlobalMaxPooling2D', 'BatchNormalization', 'Dropout', 'Flatten', 'Reshape',
  'Activation', 'ReLU', 'LeakyReLU', 'ELU', 'Softmax', 'Add', 'Subtract', 'Multiply', 'Average', 'Maximum', 'Minimum', 'Concatenate',
  'ZeroPadding2D', 'Cropping2D', 'UpSampling2D', 'Permute', 'LayerNormalization', 'Rescaling', 'Normalization',
  'LayerScale', 'StochasticDepth', 'CustomScaleLayer',
] as const;

/** compress classes a Keras class loads as, by config (the README's layer table shows them as loadable). */
export const LOADED_FROM_KERAS: Record<string, string> = { GroupedConv2D: 'Conv2D with groups > 1' };

const ALIASES: Record<string, string> = {
  Convolution2D: 'Conv2D',
  MaxPool2D: 'MaxPooling2D',
  AvgPool2D: 'AveragePooling2D',
  GlobalAvgPool2D: 'GlobalAveragePooling2D',
  GlobalMaxPool2D: 'GlobalMaxPooling2D',
  SeparableConvolution2D: 'SeparableConv2D',
  Convolution2DTranspose: 'Conv2DTranspose',
};

const COMMON_KEYS = ['name', 'trainable', 'dtype', 'batch_input_shape'];
const CONV_KEYS = ['kernel_size', 'strides', 'padding', 'data_format', 'dilation_rate', 'activation', 'use_bias', 'bias_regularizer', 'activity_regularizer', 'bias_constraint'];
const LAYER_KEYS: Record<string, string[]> = {
  InputLayer: ['sparse'],
  Dense: ['units', 'activation', 'use_bias', 'kernel_regularizer', 'bias_regularizer', 'activity_regularizer', 'kernel_constraint', 'bias_constraint'],
  Conv2D: ['filters', ...CONV_KEYS, 'kernel_regularizer', 'kernel_constraint'],
  DepthwiseConv2D: [...CONV_KEYS, 'depth_multiplier', 'depthwise_regularizer', 'depthwise_constraint'],
  Conv2DTranspose: ['filters', ...CONV_KEYS, 'kernel_regularizer', 'kernel_constraint'],
  SeparableConv2D: ['filters', ...CONV_KEYS, 'depth_multiplier', 'depthwise_regularizer', 'pointwise_regularizer', 'depthwise_constraint', 'pointwise_constraint'],
  MaxPooling2D: ['pool_size', 'strides', 'padding', 'data_format'],
  AveragePooling2D: ['pool_size', 'strides', 'padding', 'data_format'],
  GlobalAveragePooling2D: ['data_format'],
  GlobalMaxPooling2D: ['data_format'],
  BatchNormalization: ['axis', 'momentum', 'epsilon', 'center', 'scale', 'beta_regularizer', 'gamma_regularizer', 'beta_constraint', 'gamma_constraint'],
  Dropout: ['rate', 'noise_shape', 'seed'],
  Flatten: ['data_format'],
  Reshape: ['target_shape'],
  Activation: ['activation'],
  ReLU: ['max_value'],
  LeakyReLU: ['alpha'],
  Softmax: ['axis'],
  Add: [],
  Multiply: [],
  Average: [],
  Maximum: [],
  Concatenate: ['axis'],
  ZeroPadding2D: ['padding', 'data_format'],
  Cropping2D: ['cropping', 'data_format'],
  UpSampling2D: ['size', 'data_format', 'interpolation'],
  Permute: ['dims'],
  ELU: ['alpha'],
  Subtract: [],
  Minimum: [],
  LayerNormalization: ['axis', 'epsilon', 'center', 'scale'],
  Rescaling: ['scale', 'offset'],
  Normalization: ['axis', 'mean', 'variance'],
  LayerScale: ['init_values', 'projection_dim'],
  StochasticDepth: ['drop_path_rate'],
  CustomScaleLayer: ['scale'],
};

const TFJS_ACTIVATIONS = new Set(['elu', 'hard_sigmoid', 'linear', 'relu', 'relu6', 'selu', 'sigmoid', 'softmax', 'softplus', 'softsign', 'tanh', 'swish', 'mish', 'gelu', 'gelu_new', ...CUSTOM_ACTIVATION_NAMES]);
const KNOWN_CONSTRAINTS = new Set(['MaxNorm', 'UnitNorm', 'NonNeg', 'MinMaxNorm']);

/** Loads a `.h5` (Keras 2 HDF5) or `.keras` (Keras 3 zip) model file. */
export async function loadKerasModel(tf: Tf, path: string): Promise<tfType.LayersModel> {
  const ext = extname(path).toLowerCase();
  if (ext === '.keras') return loadKeras3(tf, path);
  return loadKerasH5(tf, path);
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new InputError(`cannot read: ${describeError(e)}`, { file: path });
  }
}

// ---------------------------------------------------------------------------------------------
// Keras 2 .h5

interface LayerWeights {
  /** Weight names as stored (e.g. `conv_1/kernel:0`, or `0`, `1` for Keras 3). */
  names: string[];
  values: Array<{ values: Float32Array; shape: number[] }>;
}

/**
 * The model config of a Keras `.h5` / `.keras` file in the tfjs dialect (what the loader builds
 * from), read without building the model or reading weights: for checks before any stage runs.
 */
export async function readKerasTopology(path: string): Promise<Json> {
  const bytes = await readBytes(path);
  let config: Json;
  if (extname(path).toLowerCase() === '.keras') {
    const cfg = readZip(bytes, path).get('config.json');
    if (!cfg) throw new InputError("archive has no 'config.json': not a Keras 3 model file", { file: path });
    try {
      config = JSON.parse(new TextDecoder().decode(cfg));
    } catch (e) {
      throw new InputError(`config.json is not valid JSON: ${describeError(e)}`, { file: `${path} (config.json)` });
    }
  } else {
    config = await withH5File(bytes, path, (f) => {
      if (!attrNames(f).includes('model_config')) throw new InputError("no 'model_config' attribute: not a Keras model file", { file: path });
      return parseJsonAttr(f, 'model_config', path);
    });
  }
  return kerasConfigToTfjs(config, path);
}

/**
 * Keras's `model.to_json()` architecture with the weights of `model.save_weights()`: a Keras 2
 * weights `.h5` (root `layer_names`) or a Keras 3 `.weights.h5` (`layers/<key>/vars`).
 */
export async function loadKerasJsonWithWeights(tf: Tf, jsonPath: string, weightsPath: string): Promise<tfType.LayersModel> {
  let config: Json;
  try {
    config = JSON.parse(new TextDecoder().decode(await readBytes(jsonPath))) as Json;
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`not valid JSON: ${describeError(e)}`, { file: jsonPath });
  }
  if (!isKerasArchitectureJson(config)) {
    throw new InputError('not Keras architecture JSON (expected the {"class_name", "config"} of model.to_json())', { file: jsonPath, hint: 'with.weights pairs a model.to_json() file with its save_weights() file' });
  }
  const bytes = await readBytes(weightsPath);
  const read = await withH5File(bytes, weightsPath, (f) =>
    attrNames(f).includes('layer_names') ? { keras2: readKeras2Weights(f as H5Group, weightsPath) } : { keras3: readKeras3Weights(f, weightsPath) },
  );
  const version = typeof config.keras_version === 'string' ? config.keras_version : undefined;
  if (read.keras2) return buildWithKeras2Weights(tf, config, read.keras2, weightsPath, version);
  if (!read.keras3 || read.keras3.size === 0) throw new InputError('no layer weights found (neither Keras 2 layer_names nor Keras 3 layers/*/vars)', { file: weightsPath });
  return buildWithKeras3Weights(tf, config, read.keras3, jsonPath, weightsPath, version);
}

/** Whether parsed JSON is Keras's model.to_json() output. */
export function isKerasArchitectureJson(o: unknown): boolean {
  if (!o || typeof o !== 'object' || Array.isArray(o)) return false;
  const j = o as Json;
  return typeof j.class_name === 'string' && !!j.config && typeof j.config === 'object' && !('modelTopology' in j);
}

export async function loadKerasH5(tf: Tf, path: string): Promise<tfType.LayersModel> {
  const bytes = await readBytes(path);
  const { config, weights, kerasVersion } = await withH5File(bytes, path, (f) => {
    const attrs = attrNames(f);
    if (!attrs.includes('model_config')) {
      const weightsOnly = attrs.includes('layer_names');
      throw new InputError(
        weightsOnly ? 'file holds only weights (saved with save_weights), no model_config' : "no 'model_config' attribute: not a Keras model file",
        { file: path, hint: 'save the whole model with model.save("model.h5") (Keras 2) or model.save("model.keras") (Keras 3)' },
      );
    }
    const config = parseJsonAttr(f, 'model_config', path);
    const kerasVersion = attrs.includes('keras_version') ? String(f.get_attribute('keras_version', false)) : undefined;
    const root = f.keys().includes('model_weights') ? (f.get('model_weights') as H5Group) : (f as H5Group);
    const weights = readKeras2Weights(root, path);
    return { config, weights, kerasVersion };
  });
  return buildWithKeras2Weights(tf, config, weights, path, kerasVersion);
}

/** Builds `config` (flattened) and sets the weights of a Keras 2 weights group (`model_weights` or a save_weights file). */
async function buildWithKeras2Weights(tf: Tf, config: Json, weights: Map<string, LayerWeights>, path: string, kerasVersion?: string): Promise<tfType.LayersModel> {
  const { model, paths } = await buildFlat(tf, config, path, kerasVersion, declaredElements(weights));
  try {
    const weighted = new Set(model.layers.filter((l) => l.weights.length > 0).map((l) => (paths.get(l.name) ?? [l.name])[0]));
    const extra = [...weights.entries()].filter(([k, g]) => g.values.length > 0 && !weighted.has(k)).map(([k]) => k);
    const lookup = (layer: string): LayerWeights | undefined => {
      const p = paths.get(layer) ?? [layer];
      const group = weights.get(p[0]);
      return p.length === 1 || !group ? group : nestedWeights(group, p);
    };
    const where = (layer: string) => {
      const p = paths.get(layer) ?? [layer];
      return p.length === 1 ? `model_weights/${layer}` : `model_weights/${p[0]}/.../${p[p.length - 1]}/*`;
    };
    assignWeights(tf, model, path, lookup, where, extra);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return depthwiseFromGroups(tf, model);
}

/**
 * The weights of the layer at `path` inside the nested model group `group` (Keras 2 saves a nested
 * model as one group whose weight_names are the variables' names, e.g. `Conv1/kernel:0`, possibly
 * prefixed by enclosing model names): the names whose layer part is the longest suffix of the path.
 */
function nestedWeights(group: LayerWeights, path: string[]): LayerWeights | undefined {
  const matchLen = (name: string): number => {
    const segs = name.replace(/:\d+$/, '').split('/').slice(0, -1);
    if (segs.length === 0 || segs.length > path.length) return 0;
    return segs.every((seg, i) => seg === path[path.length - segs.length + i]) ? segs.length : 0;
  };
  const lens = group.names.map(matchLen);
  const best = Math.max(0, ...lens);
  if (best === 0) return undefined;
  const idx = lens.map((l, i) => (l === best ? i : -1)).filter((i) => i >= 0);
  return { names: idx.map((i) => group.names[i]), values: idx.map((i) => group.values[i]) };
}

/** Builds the model from its Keras config and flattens nested models into one graph. */
async function buildFlat(tf: Tf, config: Json, file: string, kerasVersion: string | undefined, declared: number): Promise<Flattened> {
  const nested = await buildFromKerasConfig(tf, config, file, kerasVersion, declared);
  if (!hasNestedModels(nested)) return flattenNestedModels(tf, nested);
  try {
    return flattenNestedModels(tf, nested);
  } catch (e) {
    throw new InputError(`cannot flatten the nested models into one graph: ${describeError(e)}`, { file, cause: e });
  } finally {
    nested.dispose();
  }
}

function attrNames(g: H5Group): string[] {
  return Object.keys((g as unknown as { attrs: Record<string, unknown> }).attrs ?? {});
}

function attrStrings(g: H5Group, name: string): string[] {
  if (!attrNames(g).includes(name)) return [];
  const v = g.get_attribute(name, false) as unknown;
  const one = (x: unknown): string => (typeof x === 'string' ? x : x instanceof Uint8Array ? new TextDecoder().decode(x) : String(x));
  if (Array.isArray(v)) return v.map(one);
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<unknown>, one); // e.g. an empty float64 array
  if (typeof v === 'string') return v === '' ? [] : [v];
  if (v === null || v === undefined) return [];
  return [one(v)];
}

function parseJsonAttr(f: H5File, name: string, file: string): Json {
  const raw = f.get_attribute(name, false) as unknown;
  const text = typeof raw === 'string' ? raw : raw instanceof Uint8Array ? new TextDecoder().decode(raw) : String(raw);
  try {
    const j = JSON.parse(text);
    if (!j || typeof j !== 'object') throw new Error('not an object');
    return j as Json;
  } catch (e) {
    throw new InputError(`attribute '${name}' is not valid JSON: ${describeError(e)}`, { file });
  }
}

/** `model_weights/<layer>` groups, in `layer_names` order, each with its `weight_names` datasets. */
function readKeras2Weights(root: H5Group, file: string): Map<string, LayerWeights> {
  const out = new Map<string, LayerWeights>();
  const keys = root.keys();
  const layerNames = attrNames(root).includes('layer_names') ? attrStrings(root, 'layer_names') : keys;
  for (const layer of layerNames) {
    // h5py stores a name with '/' (tf.keras MobileNetV3's 'Conv/BatchNorm') as nested groups.
    const g = (keys.includes(layer) || keys.includes(layer.split('/')[0]) ? root.get(layer) : null) as H5Group | null;
    if (!g || typeof g.keys !== 'function') {
      throw new InputError(`'layer_names' lists '${layer}' but there is no such group in model_weights`, { file, layer });
    }
    const names = attrStrings(g, 'weight_names');
    const values = names.map((n) => {
      const ds = g.get(n) as H5Dataset | null;
      if (!ds || !('shape' in ds)) throw new InputError(`weight '${n}' is listed in weight_names but its dataset is missing`, { file, layer });
      try {
        return datasetToFloat32(ds);
      } catch (e) {
        throw new InputError(`weight '${n}': ${describeError(e)}`, { file, layer });
      }
    });
    out.set(layer, { names, values });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Keras 3 .keras

export async function loadKeras3(tf: Tf, path: string): Promise<tfType.LayersModel> {
  const bytes = await readBytes(path);
  const entries = readZip(bytes, path);
  const cfgBytes = entries.get('config.json');
  if (!cfgBytes) throw new InputError("archive has no 'config.json': not a Keras 3 model file", { file: path });
  let config: Json;
  try {
    config = JSON.parse(new TextDecoder().decode(cfgBytes));
  } catch (e) {
    throw new InputError(`config.json is not valid JSON: ${describeError(e)}`, { file: `${path} (config.json)` });
  }
  let kerasVersion: string | undefined;
  const meta = entries.get('metadata.json');
  if (meta) {
    try {
      kerasVersion = JSON.parse(new TextDecoder().decode(meta)).keras_version;
    } catch {
      // metadata is informative only
    }
  }
  const wBytes = entries.get('model.weights.h5');
  if (!wBytes) throw new InputError("archive has no 'model.weights.h5'", { file: path });
  const weightsFile = `${path} (model.weights.h5)`;
  const groups = await withH5File(wBytes, weightsFile, (f) => readKeras3Weights(f, weightsFile));
  return buildWithKeras3Weights(tf, config, groups, path, weightsFile, kerasVersion);
}

/** Builds `config` (flattened) and sets the weights of a Keras 3 weights file (`layers/<key>/vars`). */
async function buildWithKeras3Weights(tf: Tf, config: Json, groups: Map<string, LayerWeights>, path: string, weightsFile: string, kerasVersion?: string): Promise<tfType.LayersModel> {
  const { model, paths } = await buildFlat(tf, config, path, kerasVersion, declaredElements(groups));
  try {
    const byClass = keras3ClassKeys(config, paths);
    const byName = (n: string) => `layers/${(paths.get(n) ?? [n]).join('/layers/')}`;
    const weightedLayers = model.layers.filter((l) => l.weights.length > 0);
    const fits = (key: (l: string) => string | undefined) =>
      weightedLayers.every((l) => {
        const k = key(l.name);
        const g = k !== undefined ? groups.get(k) : undefined;
        return !!g && g.values.length === l.weights.length && g.values.every((v, i) => sameShape(v.shape, l.weights[i].shape));
      });
    // Keras 3 keys layers by class (`dense`, `dense_1`); some writers key them by layer name.
    const scheme = fits((n) => byClass.get(n)) ? (n: string) => byClass.get(n) : fits(byName) ? byName : (n: string) => byClass.get(n);
    const claimed = new Set(weightedLayers.map((l) => scheme(l.name)));
    const unclaimed = [...groups.entries()].filter(([k, g]) => g.values.length > 0 && !claimed.has(k)).map(([k]) => k);
    assignWeights(tf, model, weightsFile, (layer) => {
      const k = scheme(layer);
      return k !== undefined ? groups.get(k) : undefined;
    }, (layer) => `${scheme(layer)}/vars`, unclaimed);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return depthwiseFromGroups(tf, model);
}

/**
 * Every `<path>/vars/<i>` group under `layers/`, keyed by its path (`layers/dense`,
 * `layers/functional/layers/conv2d` for a nested model). Keras 2.13-2.15 on Windows joined the path
 * with backslashes (a group literally named `layers\\dense` holding `vars`): read as `/`.
 */
function readKeras3Weights(f: H5File, file: string): Map<string, LayerWeights> {
  const out = new Map<string, LayerWeights>();
  const isGroup = (g: unknown): g is H5Group => !!g && typeof (g as H5Group).keys === 'function';
  const walk = (g: H5Group, prefix: string) => {
    for (const key of g.keys()) {
      const child = g.get(key);
      if (!isGroup(child)) continue;
      const logical = [prefix, key.replace(/\\/g, '/')].filter((p) => p !== '').join('/');
      if (key === 'vars') {
        if (prefix.startsWith('layers/')) out.set(prefix, readVars(child, prefix, file));
        continue;
      }
      if (logical === 'layers' || logical.startsWith('layers/')) walk(child, logical);
    }
  };
  walk(f as unknown as H5Group, '');
  return out;
}

function readVars(vars: H5Group, key: string, file: string): LayerWeights {
  const names = vars.keys().filter((k) => /^\d+$/.test(k)).sort((a, b) => Number(a) - Number(b));
  // Other sub-groups (e.g. a Dropout's seed_generator state) hold no layer weights.
  const values = names.map((n) => {
    try {
      return datasetToFloat32(vars.get(n) as H5Dataset);
    } catch (e) {
      throw new InputError(`weight 'vars/${n}': ${describeError(e)}`, { file, layer: key });
    }
  });
  return { names, values };
}

/** Keras's naming.to_snake_case. */
export function toSnakeCase(name: string): string {
  return name
    .replace(/\W+/g, '')
    .replace(/(.)([A-Z][a-z]+)/g, '$1_$2')
    .replace(/([a-z])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

/**
 * Flat layer name -> the group Keras 3 saves its variables under: `layers/<key>` with key the
 * snake-cased class name and a per-class counter within its model, nested models' layers under
 * `layers/<model key>/layers/<key>`.
 */
function keras3ClassKeys(config: Json, paths: Map<string, string[]>): Map<string, string> {
  const byPath = new Map<string, string>();
  const walk = (cfg: Json, namePrefix: string[], keyPrefix: string) => {
    const used = new Map<string, number>();
    // Keras 3 operations (keras.src.ops) are no layers: Keras saves no variables for them.
    for (const l of kerasLayerList(cfg).filter((r) => !isKeras3Op(r))) {
      let key = toSnakeCase(String(l.class_name));
      const n = used.get(key);
      if (n === undefined) used.set(key, 0);
      else {
        used.set(key, n + 1);
        key = `${key}_${n + 1}`;
      }
      const path = [...namePrefix, layerName(l)];
      if (NESTED_CLASSES.has(String(l.class_name))) walk(l, path, `${keyPrefix}/${key}/layers`);
      else byPath.set(path.join('/'), `${keyPrefix}/${key}`);
    }
  };
  walk(config.model_config && typeof config.model_config === 'object' ? (config.model_config as Json) : config, [], 'layers');
  const out = new Map<string, string>();
  for (const [flat, path] of paths) {
    const k = byPath.get(path.join('/'));
    if (k !== undefined) out.set(flat, k);
  }
  return out;
}

const NESTED_CLASSES = new Set(['Functional', 'Sequential', 'Model']);

/** The layers as Keras 3 tracks them for saving (Sequential omits its InputLayer). */
function kerasLayerList(config: Json): Json[] {
  const cls = String(config.class_name);
  const cfg = config.config as Json | Json[];
  const layers = (Array.isArray(cfg) ? cfg : (cfg?.layers as Json[])) ?? [];
  if (cls === 'Sequential') return layers.filter((l, i) => !(i === 0 && l.class_name === 'InputLayer'));
  return layers;
}

function layerName(l: Json): string {
  return String(l.name ?? (l.config as Json | undefined)?.name ?? '');
}

// ---------------------------------------------------------------------------------------------
// weights

function assignWeights(
  tf: Tf,
  model: tfType.LayersModel,
  file: string,
  lookup: (layer: string) => LayerWeights | undefined,
  groupPath: (layer: string) => string,
  extraGroups: string[],
): void {
  if (extraGroups.length) {
    throw new InputError(
      `file has weights for ${extraGroups.length} layer(s) the model config does not have: ${extraGroups.slice(0, 5).map((g) => `'${g}'`).join(', ')}`,
      { file, layer: extraGroups[0], hint: 'the model config and the stored weights do not match' },
    );
  }
  for (const layer of model.layers) {
    const want = layer.weights;
    if (want.length === 0) continue;
    const got = lookup(layer.name);
    if (!got) {
      throw new InputError(`has ${want.length} weight(s) but the file has no weights for it (looked for '${groupPath(layer.name)}')`, {
        file,
        layer: layer.name,
        hint: 'the model config and the stored weights do not match',
      });
    }
    if (got.values.length !== want.length) {
      throw new InputError(
        `expects ${want.length} weight(s) (${want.map((w) => baseName(w.originalName)).join(', ')}), the file has ${got.values.length}` +
          (got.names.length ? ` (${got.names.join(', ')})` : ''),
        { file, layer: layer.name },
      );
    }
    const order = matchByName(want.map((w) => baseName(w.originalName)), got.names.map(baseName));
    const tensors = want.map((w, i) => {
      const j = order[i];
      const v = got.values[j];
      const name = got.names[j] ?? String(j);
      if (!sameShape(v.shape, w.shape)) {
        throw new InputError(`weight '${name}' has shape ${shapeStr(v.shape)}, the layer's ${baseName(w.originalName)} needs ${shapeStr(w.shape)}`, {
          file,
          layer: layer.name,
        });
      }
      assertFiniteWeights(v.values, file, layer.name, name);
      return v;
    });
    const ts = tensors.map((v) => tf.tensor(v.values, v.shape, 'float32'));
    try {
      layer.setWeights(ts);
    } finally {
      ts.forEach((t) => t.dispose());
    }
  }
}

/** `conv_1/kernel:0` -> `kernel`; `stem_bn/moving_mean` -> `moving_mean`. */
function baseName(n: string): string {
  const last = n.split('/').pop() ?? n;
  return last.replace(/:\d+$/, '');
}

/** For each wanted weight, the index of the stored one: by name when all names pair up, else by order. */
function matchByName(want: string[], got: string[]): number[] {
  const order = want.map((w) => got.indexOf(w));
  const ok = order.every((j) => j >= 0) && new Set(order).size === order.length && got.every((g, i) => got.indexOf(g) === i);
  return ok ? order : want.map((_, i) => i);
}

// ---------------------------------------------------------------------------------------------
// config conversion

function declaredElements(weights: Map<string, LayerWeights>): number {
  return [...weights.values()].reduce((a, g) => a + g.values.reduce((x, v) => x + v.values.length, 0), 0);
}

async function buildFromKerasConfig(tf: Tf, config: Json, file: string, kerasVersion: string | undefined, declared: number): Promise<tfType.LayersModel> {
  const topology = withKerasVersionActivations(kerasConfigToTfjs(config, file), kerasVersion);
  await resolveReshapeTargets(tf, topology);
  // Before the build initialises anything: the layers may not need more weights than the file holds.
  await checkTopology(tf, topology, declared, file);
  try {
    return await tf.models.modelFromJSON({
      modelTopology: { ...topology, keras_version: kerasVersion ?? 'unknown', backend: 'tensor_flow.js' } as unknown as tfType.io.ModelJSON['modelTopology'],
    });
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`cannot build the model from its Keras config: ${describeError(e)}`, { file, cause: e });
  }
}

/**
 * Activations whose meaning depends on the Keras version that wrote the file: Keras 3 redefined
 * hard_sigmoid as relu6(x + 3) / 6 (Keras 2 and tfjs: clip(0.2 x + 0.5, 0, 1)), so a Keras 3 file's
 * layers get the registered `hard_sigmoid_keras3` (nested models too). Returns the topology.
 */
function withKerasVersionActivations(topology: Json, kerasVersion: string | undefined): Json {
  if (!kerasVersion || Number.parseInt(kerasVersion, 10) < 3) return topology;
  const visit = (model: Json) => {
    for (const l of ((model.config as Json | undefined)?.layers ?? []) as Json[]) {
      const c = l.config as Json;
      if (c?.activation === 'hard_sigmoid') c.activation = 'hard_sigmoid_keras3';
      if (Array.isArray(c?.layers)) visit(l);
    }
  };
  visit(topology);
  return topology;
}

/**
 * Converts a Keras 2 or Keras 3 model config (`{class_name, config}`) to the Keras-2 dialect that
 * tf.models.modelFromJSON reads. Throws InputError for layers it cannot translate faithfully.
 */
export function kerasConfigToTfjs(config: Json, file: string): Json {
  if ('model_config' in config && config.model_config && typeof config.model_config === 'object') {
    return kerasConfigToTfjs(config.model_config as Json, file);
  }
  const cls = String(config.class_name ?? '');
  const cfg = config.config as Json | Json[] | undefined;
  if (cls === 'Sequential') {
    const layers = ((Array.isArray(cfg) ? cfg : cfg?.layers) ?? []) as Json[];
    if (!Array.isArray(layers)) throw new InputError('Sequential config has no layer list', { file });
    const names = new Set(layers.map(layerName));
    const out = layers.flatMap((l) => convertLayerRecord(l, file, false, names));
    // tfjs Sequential wants the input shape on the first real layer, not an InputLayer.
    let batchShape: unknown;
    if (out.length && out[0].class_name === 'InputLayer') {
      batchShape = (out[0].config as Json).batch_input_shape;
      out.shift();
    } else if (!Array.isArray(cfg) && cfg?.build_input_shape) batchShape = cfg.build_input_shape;
    if (out.length === 0) throw new InputError('Sequential model has no layers', { file });
    const first = out[0].config as Json;
    if (batchShape && !first.batch_input_shape) first.batch_input_shape = batchShape;
    if (!first.batch_input_shape && !NESTED_CLASSES.has(String(out[0].class_name))) {
      throw new InputError('Sequential model has no input shape (it was never built)', { file, layer: String(first.name), hint: 'build or call the model once before saving it' });
    }
    return { class_name: 'Sequential', config: { name: Array.isArray(cfg) ? 'sequential' : (cfg?.name ?? 'sequential'), layers: out } };
  }
  if (cls === 'Functional' || cls === 'Model') {
    if (!cfg || Array.isArray(cfg) || !Array.isArray(cfg.layers)) {
      throw new InputError(`${cls} config has no layer list`, { file, hint: 'subclassed Keras models cannot be loaded; save a Functional or Sequential model' });
    }
    return {
      class_name: 'Model',
      config: {
        name: cfg.name ?? 'model',
        layers: withNestedNodeOffset(convertFunctionalLayers(cfg.layers as Json[], file)),
        input_layers: tensorRefs(cfg.input_layers, 'input_layers', file),
        output_layers: tensorRefs(cfg.output_layers, 'output_layers', file),
      },
    };
  }
  throw new InputError(`model class '${cls || '(none)'}' is not supported; only Sequential and Functional models can be loaded`, {
    file,
    hint: 'subclassed Keras models keep their forward pass in Python code; rebuild it as a Functional model',
  });
}

/** `["in", 0, 0]` or `[["in", 0, 0], ...]` -> the list form. */
function tensorRefs(v: unknown, what: string, file: string): unknown[] {
  if (!Array.isArray(v) || v.length === 0) throw new InputError(`model config has no ${what}`, { file });
  if (typeof v[0] === 'string') return [v.slice(0, 3)];
  return v.map((r) => (Array.isArray(r) ? r.slice(0, 3) : r));
}

function convertFunctionalLayers(layers: Json[], file: string): Json[] {
  const names = new Set(layers.map(layerName));
  return layers.flatMap((l) => convertLayerRecord(l, file, true, names));
}

/**
 * One Keras layer record as the tfjs layer(s) computing it: a tensor op (keras-ops.ts) as the
 * standard layer it equals, a global pooling with keepdims=true as the pooling plus a Reshape to
 * [1, 1, C] that keeps the layer's name (the tensor the rest of the graph refers to); any other
 * layer as itself. `names` holds every name in the model, so the extra layer's name is fresh.
 */
function convertLayerRecord(l: Json, file: string, functional: boolean, names: Set<string>): Json[] {
  const name = layerName(l);
  const op = tensorOpName(l);
  if (op !== undefined) {
    if (!functional) throw new InputError(`tensor op '${op}' outside a functional model is not supported`, { file, layer: name });
    const conv = convertTensorOp(l, name, file, (v) => keras3Ref(v, file, name));
    const inputs = conv.inputs.map((r) => [r[0], r[1], r[2], { ...r[3] }]);
    return [{ class_name: conv.class_name, name, config: { name, trainable: true, dtype: 'float32', ...conv.config }, inbound_nodes: [inputs] }];
  }
  const cls = ALIASES[String(l.class_name)] ?? String(l.class_name);
  const cfg = (l.config ?? {}) as Json;
  if ((cls === 'GlobalAveragePooling2D' || cls === 'GlobalMaxPooling2D') && cfg.keepdims === true) {
    let pool = `${name}_pool`;
    for (let i = 1; names.has(pool); i++) pool = `${name}_pool_${i}`;
    names.add(pool);
    const pooled = convertLayer({ ...l, name: pool, config: { ...cfg, name: pool, keepdims: false } }, file, functional);
    const target = cfg.data_format === 'channels_first' ? [-1, 1, 1] : [1, 1, -1];
    const reshape: Json = { class_name: 'Reshape', name, config: { name, trainable: true, dtype: 'float32', target_shape: target } };
    if (functional) reshape.inbound_nodes = [[[pool, 0, 0, {}]]];
    return [pooled, reshape];
  }
  return [convertLayer(l, file, functional)];
}

function convertLayer(l: Json, file: string, functional: boolean): Json {
  const rawCls = String(l.class_name ?? '');
  const cls = ALIASES[rawCls] ?? rawCls;
  const cfg = (l.config ?? {}) as Json;
  const name = layerName(l);
  if (NESTED_CLASSES.has(cls)) {
    // A model used as a layer: converted as a model here, flattened into one graph after building.
    const inner = kerasConfigToTfjs({ class_name: cls, config: { ...(cfg as Json), name } }, file);
    const out: Json = { class_name: inner.class_name, name, config: inner.config };
    if (functional) out.inbound_nodes = convertInboundNodes(l.inbound_nodes, name, file);
    return out;
  }
  if (!(cls in LAYER_KEYS)) {
    throw new InputError(`layer class '${rawCls}' is not supported`, {
      file,
      layer: name,
      hint: `supported: ${SUPPORTED_KERAS_LAYERS.join(', ')}`,
    });
  }
  const unsupported = (what: string) => new InputError(`${rawCls} with ${what} is not supported`, { file, layer: name });
  const c: Json = {};
  // Keras 3 InputLayer says batch_shape; Keras 2 batch_input_shape.
  const src: Json = { ...cfg };
  if (src.batch_shape !== undefined && src.batch_input_shape === undefined) src.batch_input_shape = src.batch_shape;
  if (cls === 'InputLayer' && src.batch_input_shape === undefined && Array.isArray(src.input_shape)) src.batch_input_shape = [null, ...(src.input_shape as unknown[])];
  if (cls === 'LeakyReLU' && src.alpha === undefined && src.negative_slope !== undefined) src.alpha = src.negative_slope;
  for (const k of [...COMMON_KEYS, ...LAYER_KEYS[cls]]) if (src[k] !== undefined) setOwn(c, k, src[k]);
  c.name = name;
  if ('dtype' in c || cls === 'InputLayer') c.dtype = 'float32';

  // Per-class checks for options tfjs does not have.
  if (cls === 'SeparableConv2D' && src.groups !== undefined && src.groups !== 1) throw unsupported(`groups=${src.groups}`);
  // Conv2D with groups > 1 (keras.applications RegNet): compress's GroupedConv2D (src/model/custom-layers.ts).
  const grouped = cls === 'Conv2D' && src.groups !== undefined && src.groups !== null && Number(src.groups) !== 1;
  if (grouped) {
    if (!Number.isInteger(Number(src.groups)) || Number(src.groups) < 1) throw unsupported(`groups=${String(src.groups)}`);
    c.groups = Number(src.groups);
  }
  const ignored = tfjsIgnoredOption(cls, { dilationRate: src.dilation_rate, outputPadding: src.output_padding });
  if (ignored) throw new InputError(`${rawCls} with ${ignored}`, { file, layer: name });
  if (cls === 'Conv2DTranspose' && src.groups !== undefined && src.groups !== 1) throw unsupported(`groups=${src.groups}`);
  if (cls === 'ReLU') {
    if (num(src.negative_slope) !== 0) throw unsupported(`negative_slope=${src.negative_slope}`);
    if (num(src.threshold) !== 0) throw unsupported(`threshold=${src.threshold}`);
  }
  if (cls === 'BatchNormalization') {
    if (src.renorm === true) throw unsupported('renorm=true');
    if (src.virtual_batch_size !== undefined && src.virtual_batch_size !== null) throw unsupported('virtual_batch_size');
    if (Array.isArray(c.axis)) {
      if (c.axis.length !== 1) throw unsupported(`axis=${JSON.stringify(c.axis)}`);
      c.axis = c.axis[0];
    }
  }
  if (cls === 'InputLayer' && src.sparse === true) throw unsupported('sparse=true');
  if (cls === 'InputLayer') delete c.sparse;
  if (c.activation !== undefined) c.activation = convertActivation(c.activation, rawCls, name, file);
  for (const k of Object.keys(c)) {
    if (k.endsWith('_regularizer')) setOwn(c, k, convertRegularizer(c[k]));
    else if (k.endsWith('_constraint')) setOwn(c, k, convertConstraint(c[k]));
  }
  const out: Json = { class_name: grouped ? 'GroupedConv2D' : cls, name, config: c };
  if (functional) out.inbound_nodes = convertInboundNodes(l.inbound_nodes, name, file);
  return out;
}

function num(v: unknown): number {
  return v === undefined || v === null ? 0 : Number(v);
}

function convertActivation(a: unknown, cls: string, layer: string, file: string): string {
  // Keras 3 may wrap builtins: {"module": ..., "class_name": "function", "config": "relu", ...}
  let name: unknown = a;
  if (name && typeof name === 'object') {
    const o = name as Json;
    name = typeof o.config === 'string' ? o.config : o.class_name;
  }
  if (name === null || name === undefined) return 'linear';
  let s = String(name);
  if (s === 'silu') s = 'swish';
  if (s === 'hard_silu') s = 'hard_swish';
  if (!TFJS_ACTIVATIONS.has(s)) {
    throw new InputError(`${cls} activation '${s}' is not supported`, { file, layer, hint: `supported: ${[...TFJS_ACTIVATIONS].join(', ')}` });
  }
  return s;
}

function convertRegularizer(r: unknown): unknown {
  if (!r || typeof r !== 'object') return null;
  const o = r as Json;
  const cfg = (o.config ?? {}) as Json;
  const cls = String(o.class_name);
  if (cls === 'L1L2' || cls === 'L1' || cls === 'L2' || cls === 'l1_l2' || cls === 'l1' || cls === 'l2') {
    return { class_name: 'L1L2', config: { l1: Number(cfg.l1 ?? 0), l2: Number(cfg.l2 ?? 0) } };
  }
  return null;
}

function convertConstraint(r: unknown): unknown {
  if (!r || typeof r !== 'object') return null;
  const o = r as Json;
  if (!KNOWN_CONSTRAINTS.has(String(o.class_name))) return null;
  return { class_name: o.class_name, config: o.config ?? {} };
}

/**
 * Keras 2 nodes are `[[["layer", node, tensor, {kwargs}], ...], ...]`; Keras 3 nodes are
 * `[{"args": [...], "kwargs": {...}}]` whose args hold `__keras_tensor__` objects (possibly in
 * lists, for merge layers). Both become the Keras 2 form with empty kwargs.
 */
/**
 * Keras 3 numbers a nested model's calls from 0; Keras 2 and tfjs from 1 (node 0 is the model's own
 * construction). Converted Keras 3 references (marked by convertInboundNodes) are shifted.
 */
function withNestedNodeOffset(layers: Json[]): Json[] {
  const nested = new Set(layers.filter((l) => NESTED_CLASSES.has(String(l.class_name))).map((l) => String(l.name)));
  for (const l of layers) {
    for (const node of (l.inbound_nodes ?? []) as Array<Array<[string, number, number, Json]>>) {
      for (const ref of node) {
        if (KERAS3_REF in ref[3]) {
          if (nested.has(ref[0])) ref[1] += 1;
          ref[3] = {};
        }
      }
    }
  }
  return layers;
}
const KERAS3_REF = '__keras3__';

function convertInboundNodes(nodes: unknown, layer: string, file: string): unknown[] {
  if (nodes === undefined || nodes === null) return [];
  if (!Array.isArray(nodes)) throw new InputError('inbound_nodes is not a list', { file, layer });
  return nodes.map((node) => {
    if (Array.isArray(node)) {
      return node.map((ref) => {
        if (!Array.isArray(ref) || typeof ref[0] !== 'string') throw new InputError('inbound node entry is malformed', { file, layer });
        return [ref[0], ref[1] ?? 0, ref[2] ?? 0, {}];
      });
    }
    if (node && typeof node === 'object') {
      const refs: unknown[] = [];
      const walk = (v: unknown) => {
        if (Array.isArray(v)) v.forEach(walk);
        else {
          const ref = keras3Ref(v, file, layer);
          if (ref) refs.push(ref);
        }
      };
      walk((node as Json).args);
      if (refs.length === 0) throw new InputError('inbound node has no input tensors', { file, layer });
      return refs;
    }
    throw new InputError('inbound node is malformed', { file, layer });
  });
}

/** A Keras 3 `__keras_tensor__` object as a (marked) tfjs reference; undefined for anything else. */
function keras3Ref(v: unknown, file: string, layer: string): TensorRef | undefined {
  if (!v || typeof v !== 'object' || (v as Json).class_name !== '__keras_tensor__') return undefined;
  const h = ((v as Json).config as Json | undefined)?.keras_history;
  if (!Array.isArray(h)) throw new InputError('inbound tensor has no keras_history', { file, layer });
  return [String(h[0]), Number(h[1] ?? 0), Number(h[2] ?? 0), { [KERAS3_REF]: true }];
}
