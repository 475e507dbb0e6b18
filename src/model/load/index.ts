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

export type ModelFormat = 'tfjs' | 'keras-h5' | 'keras3' | 'onnx';

/** The format `path` would be loaded as, from its extension (or directory-ness). */
export async function detectModelFormat(path: string): Promise<ModelFormat> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch {
    throw new InputError('no such file or directory', { file: path, hint: 'give a TF.js model directory or model.json, a Keras .h5 file, or a Keras 3 .keras file, or an .onnx file' });
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
  if (ext === '.json') return 'tfjs';
  if (ext === '.h5' || ext === '.hdf5') return 'keras-h5';
  if (ext === '.keras') return 'keras3';
  if (ext === '.onnx') return 'onnx';
  throw new InputError(`unknown model file type '${ext || basename(path)}'`, {
    file: path,
    hint: 'supported: a TF.js model directory or model.json, Keras .h5/.hdf5, Keras 3 .keras, ONNX .onnx',
  });
}

/** Loads a model from a TF.js directory / model.json, a Keras 2 .h5, a Keras 3 .keras or an .onnx file. */
export async function loadModelFrom(tf: typeof tfType, path: string): Promise<tfType.LayersModel> {
  switch (await detectModelFormat(path)) {
    case 'tfjs':
      return loadTfjsModel(tf, path);
    case 'keras-h5':
      return loadKerasH5(tf, path);
    case 'keras3':
      return loadKeras3(tf, path);
    case 'onnx':
      return loadOnnxModel(tf, path);
  }
}
