import { stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { InputError } from '../../errors/input-error.js';
import { loadKeras3, loadKerasH5 } from './keras.js';
import { loadTfjsModel } from './tfjs.js';
import { loadOnnxModel } from './onnx.js';

export { loadTfjsModel } from './tfjs.js';
export { importOnnx, loadOnnxModel, SUPPORTED_ONNX_OPS, type ImportInfo } from './onnx.js';
export { loadKerasModel, loadKerasH5, loadKeras3, kerasConfigToTfjs, SUPPORTED_KERAS_LAYERS } from './keras.js';

/**
 * The import formats: one entry each, with the file extensions it is chosen by and its loader. A new import
 * format is one entry here (a directory is always a TF.js layers model).
 */
const MODEL_FORMATS = {
  tfjs: { extensions: ['.json'], load: loadTfjsModel, label: 'a TF.js model directory or model.json' },
  'keras-h5': { extensions: ['.h5', '.hdf5'], load: loadKerasH5, label: 'Keras .h5/.hdf5' },
  keras3: { extensions: ['.keras'], load: loadKeras3, label: 'Keras 3 .keras' },
  onnx: { extensions: ['.onnx'], load: loadOnnxModel, label: 'ONNX .onnx' },
} as const satisfies Record<string, { extensions: readonly string[]; label: string; load: (tf: typeof tfType, path: string) => Promise<tfType.LayersModel> }>;

export type ModelFormat = keyof typeof MODEL_FORMATS;

const SUPPORTED_FILES = Object.values(MODEL_FORMATS).map((f) => f.label).join(', ');

/** The format `path` would be loaded as, from its extension (or directory-ness). */
export async function detectModelFormat(path: string): Promise<ModelFormat> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch {
    throw new InputError('no such file or directory', { file: path, hint: `give ${SUPPORTED_FILES} file` });
  }
  if (isDir) {
    try {
      await stat(join(path, 'model.json'));
    } catch {
      throw new InputError('directory has no model.json', { file: path, hint: 'a TF.js layers model directory holds model.json and its weight files' });
    }
    return 'tfjs';
  }
  const ext = extname(path).toLowerCase();
  const format = (Object.keys(MODEL_FORMATS) as ModelFormat[]).find((f) =>
    (MODEL_FORMATS[f].extensions as readonly string[]).includes(ext),
  );
  if (format) return format;
  throw new InputError(`unknown model file type '${ext || basename(path)}'`, { file: path, hint: `supported: ${SUPPORTED_FILES}` });
}

/** Loads a model from any of the import formats above. */
export async function loadModelFrom(tf: typeof tfType, path: string): Promise<tfType.LayersModel> {
  return MODEL_FORMATS[await detectModelFormat(path)].load(tf, path);
}
