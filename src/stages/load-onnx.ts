import type * as tfType from '@tensorflow/tfjs';
import { fitDataToModel } from '../data/fit.js';
import { InputError } from '../errors/input-error.js';
import { importOnnx } from '../model/load/onnx.js';
import { checkImport, randomInputs, type ImportCheck } from '../model/load/onnx-verify.js';
import type { ModelMeta } from '../model/meta.js';
import { deriveSeed } from '../util/rng.js';
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
    const want = ctx.with.verify?.samples ?? 8;
    let n = info.fixedBatch ? Math.max(info.fixedBatch, Math.floor(want / info.fixedBatch) * info.fixedBatch) : want;
    let x: Float32Array;
    let inputs: string;
    if (ctx.with.data) {
      const splits = await ctx.loadData(ctx.with.data);
      const d = fitDataToModel(splits.test.n > 0 ? splits.test : splits.train, shape, `stage '${ctx.stageId}'`);
      const per = shape.reduce((a, b) => a * b, 1);
      if (info.fixedBatch && d.n < info.fixedBatch) {
        // Fewer samples than the model's fixed batch: one batch of them, repeated in order.
        n = info.fixedBatch;
        x = new Float32Array(n * per);
        for (let i = 0; i < n; i++) x.set(d.x.subarray((i % d.n) * per, ((i % d.n) + 1) * per), i * per);
        inputs = `dataset '${ctx.with.data}' (${d.n} test samples, repeated to the model's fixed batch of ${n})`;
      } else {
        n = Math.min(n, info.fixedBatch ? d.n - (d.n % info.fixedBatch) : d.n);
        x = d.x.slice(0, n * per);
        inputs = `dataset '${ctx.with.data}' (${n} test samples)`;
      }
    } else {
      x = randomInputs(shape, n, deriveSeed(ctx.seed, 'onnx-import-check'));
      inputs = `${n} seeded random samples`;
    }
    const check = await checkImport(tf, reference, info, file, x, n, { tolerance: ctx.with.verify?.tolerance, inputs });
    ctx.log(`import check vs ${check.runtime}: max |diff| ${check.maxAbsDiff.toExponential(2)} over output scale ${check.outputScale.toPrecision(3)} (relative ${check.relativeDiff.toExponential(2)}, tolerance ${check.tolerance}) on ${inputs}`);
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
