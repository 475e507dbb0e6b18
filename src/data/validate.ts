import { extname, isAbsolute, join } from 'node:path';
import { InputError } from '../errors/input-error.js';
import { reshapeSamples, sampleSize, type Dataset } from './dataset.js';
import { readCsv, splitLabelColumn, type CsvSplit } from './csv.js';
import { npyToFloat32, npyToNumbers, readNpy } from './npy.js';
import { splitKeys } from './split.js';
import { normalizeKeys } from './normalize.js';

export const filesDataSchema = {
  type: 'object',
  properties: {
    source: { const: 'files', description: 'user data: features and labels from .npy or CSV files' },
    format: { enum: ['npy', 'csv'] },
    features: { type: 'string', minLength: 1, description: 'path relative to the recipe' },
    labels: { type: 'string', minLength: 1, description: 'path relative to the recipe (npy); CSV takes labelColumn' },
    labelColumn: { type: ['string', 'integer'] },
    numClasses: { type: 'integer', minimum: 2 },
    sampleShape: { type: 'array', items: { type: 'integer', minimum: 1 }, minItems: 1 },
    layout: { enum: ['nhwc', 'nchw'], description: 'image samples as stored: nchw = [C, H, W] (PyTorch), transposed to [H, W, C] on load' },
    ...normalizeKeys,
    scale: { type: 'number', description: 'value = stored * scale + offset (default 1: files are kept as stored, uint8 too; 0.00392156862745098 = 1/255 maps bytes to 0..1)' },
    split: splitKeys.split,
    limit: { type: 'integer', minimum: 10 },
    seed: { type: 'integer', minimum: 0 },
  },
  required: ['source', 'features'],
  additionalProperties: false,
} as const;

/** User data as a recipe names it. Paths are relative to `baseDir`. */
export interface UserDataSpec {
  /** .npy array of shape [n, ...sampleShape], or a .csv/.tsv table (one sample per row). */
  features: string;
  /** .npy ([n], [n, 1] or one-hot [n, k]) or .csv labels; for CSV features the label column may instead be in `features`. */
  labels?: string;
  /** Format of `features`; by default from its extension. */
  format?: 'npy' | 'csv';
  /**
   * CSV label column, by header name or 0-based index (negative: from the end). Default, when
   * `labels` is not given: the column named `label` if the header has one, else the last column.
   */
  labelColumn?: string | number;
  /** Number of classes; by default max(label) + 1. */
  numClasses?: number;
  /** Per-sample shape, e.g. [28, 28, 1]; by default the array's trailing dims (CSV: [columns]). */
  sampleShape?: number[];
}

type Locate = (i: number) => { line: number; column: number } | undefined;

interface Raw {
  x: Float32Array;
  n: number;
  sampleShape: number[];
  file: string;
  locate?: Locate;
}
interface RawLabels {
  values: Float64Array;
  file: string;
  locate?: Locate;
  /** From one-hot labels. */
  numClasses?: number;
}

function formatOf(path: string, given?: 'npy' | 'csv'): 'npy' | 'csv' {
  if (given) return given;
  const ext = extname(path).toLowerCase();
  if (ext === '.npy') return 'npy';
  if (ext === '.csv' || ext === '.tsv' || ext === '.txt') return 'csv';
  throw new InputError(`unknown data file type '${ext || path}'`, { file: path, hint: "use .npy or .csv, or set format: 'npy' | 'csv'" });
}

/** Loads and validates user data into a Dataset (see UserDataSpec). */
export function loadUserData(spec: UserDataSpec, baseDir: string): Dataset {
  const resolvePath = (p: string) => (isAbsolute(p) ? p : join(baseDir, p));
  const featuresFile = resolvePath(spec.features);
  const fmt = formatOf(featuresFile, spec.format);
  let raw: Raw;
  let labels: RawLabels | undefined;
  if (fmt === 'npy') {
    const a = readNpy(featuresFile);
    if (a.shape.length === 0) throw new InputError('features array is a scalar; expected shape [n, ...sampleShape]', { file: featuresFile });
    raw = { x: npyToFloat32(a), n: a.shape[0], sampleShape: a.shape.length === 1 ? [1] : a.shape.slice(1), file: featuresFile };
    if (!spec.labels) {
      throw new InputError('.npy features need a labels file (labels: path to a .npy or .csv of class indices)', { file: featuresFile });
    }
  } else {
    const table = readCsv(featuresFile);
    let labelColumn = spec.labels ? undefined : spec.labelColumn;
    if (!spec.labels && labelColumn === undefined) labelColumn = table.header?.includes('label') ? 'label' : -1;
    if (table.cols < (labelColumn === undefined ? 1 : 2) && table.rows > 0) {
      throw new InputError(`has ${table.cols} column(s): no room for features${labelColumn === undefined ? '' : ' and a label column'}`, { file: featuresFile });
    }
    const split: CsvSplit = splitLabelColumn(table, labelColumn);
    raw = { x: split.features, n: table.rows, sampleShape: [split.featureCols], file: featuresFile, locate: split.locateFeature };
    if (split.labels) labels = { values: split.labels, file: featuresFile, locate: split.locateLabel };
  }
  if (spec.labels) labels = readLabels(resolvePath(spec.labels), spec.labelColumn);
  return buildDataset(raw, labels!, { numClasses: spec.numClasses, sampleShape: spec.sampleShape });
}

function readLabels(file: string, labelColumn?: string | number): RawLabels {
  const fmt = formatOf(file);
  if (fmt === 'npy') {
    const a = readNpy(file);
    const v = npyToNumbers(a);
    if (a.shape.length <= 1 || (a.shape.length === 2 && a.shape[1] === 1)) return { values: v, file };
    if (a.shape.length === 2) {
      // one-hot (or probabilities): argmax per row, rows must be one-hot
      const [n, k] = a.shape;
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        let best = -1;
        for (let j = 0; j < k; j++) {
          const x = v[i * k + j];
          if (x !== 0 && x !== 1) throw new InputError(`labels of shape [${n}, ${k}] are not one-hot: row ${i} has value ${x}`, { file });
          if (x === 1) {
            if (best >= 0) throw new InputError(`labels of shape [${n}, ${k}] are not one-hot: row ${i} has several 1s`, { file });
            best = j;
          }
        }
        if (best < 0) throw new InputError(`labels of shape [${n}, ${k}] are not one-hot: row ${i} has no 1`, { file });
        out[i] = best;
      }
      return { values: out, file, numClasses: k };
    }
    throw new InputError(`labels must have shape [n], [n, 1] or one-hot [n, k], not [${a.shape.join(', ')}]`, { file });
  }
  const table = readCsv(file);
  const col = labelColumn ?? (table.cols === 1 ? 0 : table.header?.includes('label') ? 'label' : undefined);
  if (col === undefined) throw new InputError(`labels file has ${table.cols} columns; say which holds the labels (labelColumn)`, { file });
  const split = splitLabelColumn(table, col);
  return { values: split.labels!, file, locate: split.locateLabel };
}

export interface BuildOptions {
  numClasses?: number;
  sampleShape?: number[];
}

/**
 * Checks features and labels and assembles the Dataset: not empty, finite features, labels
 * integers in [0, numClasses), counts and shapes consistent. Errors name the file and the first
 * offending index (line:col for CSV).
 */
export function buildDataset(raw: Raw, labels: RawLabels, opts: BuildOptions = {}): Dataset {
  const { file } = raw;
  if (raw.n === 0) throw new InputError('dataset is empty (0 samples)', { file });
  let sampleShape = raw.sampleShape;
  const size = sampleSize({ sampleShape });
  if (size === 0) throw new InputError(`samples are empty (shape [${sampleShape.join(', ')}])`, { file });
  if (opts.sampleShape) {
    const want = opts.sampleShape.reduce((a, b) => a * b, 1);
    if (!opts.sampleShape.every((d) => Number.isInteger(d) && d > 0) || want !== size) {
      throw new InputError(`samples have shape [${sampleShape.join(', ')}] (${size} values), which cannot be viewed as sampleShape [${opts.sampleShape.join(', ')}] (${want} values)`, { file });
    }
    sampleShape = opts.sampleShape.slice();
  }
  for (let i = 0; i < raw.x.length; i++) {
    if (!Number.isFinite(raw.x[i])) {
      const at = raw.locate?.(i);
      const s = Math.floor(i / size);
      throw new InputError(`input value ${raw.x[i]} at sample ${s}, element ${i % size} (flat index ${i}); inputs must be finite`, {
        file,
        ...(at ?? {}),
        hint: 'clean or impute missing values before compressing',
      });
    }
  }
  if (labels.values.length !== raw.n) {
    throw new InputError(`has ${labels.values.length} labels but ${raw.file} has ${raw.n} samples`, { file: labels.file });
  }
  let max = -1;
  for (let i = 0; i < labels.values.length; i++) {
    const v = labels.values[i];
    if (!Number.isInteger(v) || v < 0) {
      throw new InputError(`label at index ${i} is ${v}; labels must be integer class indices >= 0`, { file: labels.file, ...(labels.locate?.(i) ?? {}) });
    }
    if (v > max) max = v;
  }
  const numClasses = opts.numClasses ?? labels.numClasses ?? max + 1;
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new InputError(`numClasses must be a positive integer, not ${numClasses}`, { file: labels.file });
  if (labels.numClasses !== undefined && opts.numClasses !== undefined && labels.numClasses !== opts.numClasses) {
    throw new InputError(`one-hot labels have ${labels.numClasses} classes but numClasses is ${opts.numClasses}`, { file: labels.file });
  }
  if (max >= numClasses) {
    const i = labels.values.findIndex((v) => v >= numClasses);
    throw new InputError(`label at index ${i} is ${labels.values[i]}, outside [0, ${numClasses})`, {
      file: labels.file,
      ...(labels.locate?.(i) ?? {}),
      hint: 'numClasses is too small, or the labels are not 0-based class indices',
    });
  }
  return { x: raw.x, y: Int32Array.from(labels.values), n: raw.n, sampleShape, numClasses, source: file };
}

/** What checkModelInput needs of a model (a tf.LayersModel fits). */
export interface ModelIO {
  name?: string;
  inputs: Array<{ shape: Array<number | null> }>;
  outputs?: Array<{ shape: Array<number | null> }>;
  inputLayers?: Array<{ name: string }>;
  inputNames?: string[];
}

/**
 * Checks the dataset against the model's input (and output) shape. Samples whose shape differs
 * but whose size matches (a flat CSV row for a [28, 28, 1] input) are viewed in the model's
 * shape; otherwise an InputError names both shapes and the model's input layer.
 */
export function checkModelInput(d: Dataset, model: ModelIO, file?: string): Dataset {
  if (model.inputs.length !== 1) {
    throw new InputError(`the model has ${model.inputs.length} inputs; only single-input models are supported`, { file });
  }
  const inputName = model.inputLayers?.[0]?.name ?? model.inputNames?.[0] ?? 'input';
  const want = model.inputs[0].shape.slice(1);
  const ok = want.length === d.sampleShape.length && want.every((w, i) => w === null || w === d.sampleShape[i]);
  let out = d;
  if (!ok) {
    const fixed = want.every((w) => w !== null) ? (want as number[]) : undefined;
    if (fixed && fixed.reduce((a, b) => a * b, 1) === sampleSize(d)) out = reshapeSamples(d, fixed);
    else {
      throw new InputError(
        `samples have shape [${d.sampleShape.join(', ')}] but the model's input layer '${inputName}' expects [${want.map((w) => (w === null ? 'any' : w)).join(', ')}]`,
        { file, hint: 'set sampleShape in the data spec, or use data that matches the model' },
      );
    }
  }
  const classes = model.outputs?.[0]?.shape.at(-1);
  if (typeof classes === 'number' && classes > 1 && d.numClasses > classes) {
    throw new InputError(`labels have ${d.numClasses} classes but the model's output has ${classes}`, { file });
  }
  if (typeof classes === 'number' && classes > 1 && d.numClasses < classes) out = { ...out, numClasses: classes };
  return out;
}
