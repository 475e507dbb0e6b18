import type * as tfType from '@tensorflow/tfjs';
import { convertOnnx, type ImportInfo } from './onnx-convert.js';
import { readOnnx } from './onnx-read.js';

export type { ImportInfo } from './onnx-convert.js';
export { supportedOps as SUPPORTED_ONNX_OPS } from './onnx-ops.js';

/**
 * Imports an .onnx file (a classifier's logits get a Softmax layer unless `softmax: false`: compress
 * trains and evaluates on probabilities) (IR 3-10, opsets 9-21; what torch.onnx.export writes) as a tf.LayersModel
 * of standard Keras layers, NHWC. `info` says how its input / output relate to the ONNX ones.
 */
export async function importOnnx(tf: typeof tfType, path: string, opts: { softmax?: boolean } = {}): Promise<{ model: tfType.LayersModel; reference: tfType.LayersModel; info: ImportInfo }> {
  return convertOnnx(tf, readOnnx(path), opts);
}

export async function loadOnnxModel(tf: typeof tfType, path: string): Promise<tfType.LayersModel> {
  return (await importOnnx(tf, path)).model;
}
