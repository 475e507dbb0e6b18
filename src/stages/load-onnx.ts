import type * as tfType from '@tensorflow/tfjs';
import { InputError } from '../errors/input-error.js';
import { importOnnx } from '../model/load/onnx.js';
import { checkImport, type ImportCheck } from '../model/load/onnx-verify.js';
import type { ModelMeta } from '../model/meta.js';
import { importCheckInputs, importCheckLine } from './import-check-inputs.js';
import type { LoadWith } from './load.js';
import type { StageContext } from './types.js';

/**
 * The load stage's ONNX path: import, then check the import against onnxruntime on the recipe's
 * data (its test split) or seeded random inputs; a difference beyond the tolerance fails the stage.
 */
export async function importOnnxVerified(tf: typeof tfType, file: string, ctx: StageContext<LoadWith>, meta: ModelMeta): Promise<{ model: tfType.LayersModel; importCheck: ImportCheck & Record<string, unknown> }> {
  const { model, reference, info } = await importOnnx(tf, file, { softmax: ctx.with.softmax });
  try {
    meta.provenance = { ...meta.provenance, format: 'onnx', onnxOpset: info.opset, onnxIrVersion: info.irVersion, onnxProducer: info.producer, onnxInputLayout: info.inputLayout, onnxAppendedSoftmax: String(info.appendedSoftmax) };
    const shape = (model.inputs[0].shape.slice(1) as number[]);
    const { x, n, inputs } = await importCheckInputs(ctx, shape, info.fixedBatch, 'onnx-import-check');
    const check = await checkImport(tf, reference, info, file, x, n, { tolerance: ctx.with.verify?.tolerance, inputs });
    ctx.log(importCheckLine(check));
    if (!check.passed) {
      throw new InputError(
        `the imported model's outputs differ from onnxruntime's: max |diff| ${check.maxAbsDiff.toExponential(3)} is ${check.relativeDiff.toExponential(3)} of the output scale ${check.outputScale.toPrecision(4)} (tolerance ${check.tolerance}) on ${inputs}`,
        { file, hint: 'the conversion is not exact for this model: please report it with the .onnx file; with.verify.tolerance raises the bound' },
      );
    }
    return { model, importCheck: { ...check, opset: info.opset, irVersion: info.irVersion, inputLayout: info.inputLayout, appendedSoftmax: info.appendedSoftmax } };
  } catch (e) {
    model.dispose();
    throw e;
  }
}
