import type { FromSchema } from 'json-schema-to-ts';
import type * as tfType from '@tensorflow/tfjs';
import { MaskSet, kernelVariable, modelStats } from '../prune/index.js';
import { loadModelDir } from '../model/io.js';
import { dataRefSchema, trainingSchema } from './common-schema.js';
import { defineStage } from './types.js';
import { engineFor, inputShapeOf, outputClassesOf, loadInputModel, saveOutputModel } from './support.js';
import { fitDataToModel } from '../data/fit.js';
import { trainOptions } from './training-options.js';
import { quantFinetuneHooks } from './quant-finetune.js';
import type { TrainHooks } from '../engine/train.js';

export const retrainWithSchema = {
  type: 'object',
  properties: {
    train: { ...trainingSchema, description: 'how to fine-tune (default: 1 epoch of Adam 1e-3)' },
    keepMasks: { type: 'boolean', default: true, description: 'pruned weights stay exactly zero' },
    teacher: { type: 'string', minLength: 1, description: 'a stage in needs whose model teaches this one (knowledge distillation)' },
    temperature: { type: 'number', exclusiveMinimum: 0, default: 4 },
    alpha: { type: 'number', minimum: 0, maximum: 1, default: 0.5, description: 'weight of the distillation term' },
    l1: { type: 'number', minimum: 0, description: 'L1 penalty on kernels (drives weights toward zero before a threshold prune)' },
    centroidLearningRate: { type: 'number', exclusiveMinimum: 0, description: 'k-means quantized models: Adam step for the shared centroids (default 1e-4)' },
    data: dataRefSchema,
  },
  additionalProperties: false,
} as const;

export type RetrainWith = FromSchema<typeof retrainWithSchema>;

export const retrainStage = defineStage<RetrainWith>({
  kind: 'retrain',
  version: '1',
  description: 'fine-tune the upstream model keeping its sparsity (and quantization grid), optionally distilling from a teacher',
  withSchema: retrainWithSchema,
  datasets: (w) => (w.data ? [w.data] : []),
  producesModel: true,
  metrics: ['accuracy', 'loss', 'sparsity', 'steps'],
  needsModels: [1, 2],
  check(w, stage) {
    if (w.teacher && !stage.needs.includes(w.teacher)) return [{ path: ['with', 'teacher'], message: `teacher '${w.teacher}' must be listed in needs (needs: ${stage.needs.join(', ') || 'none'})` }];
    if (!w.teacher && stage.needs.length > 1) return [{ path: ['needs'], message: `a retrain stage takes one model; set with.teacher to use '${stage.needs[1]}' as a teacher` }];
    return [];
  },
  async run(ctx) {
    const { tf } = await engineFor(ctx);
    const { trainModel, evaluateModel } = await import('../engine/train.js');
    const w = ctx.with;
    const studentInput = ctx.inputs.find((i) => i.id !== w.teacher)!;
    const { model, meta } = await loadModelDir(tf, studentInput.dir);
    const teacherInput = w.teacher ? ctx.inputs.find((i) => i.id === w.teacher) : undefined;
    const teacher = teacherInput ? (await loadModelDir(tf, teacherInput.dir)).model : undefined;
    const splits = await ctx.loadData(w.data!);
    const shape = inputShapeOf(model);
    const classes = outputClassesOf(model, ctx.stageId);
    const train = fitDataToModel(splits.train, shape, ctx.stageId, classes);
    const validation = fitDataToModel(splits.validation, shape, ctx.stageId, classes);
    const test = fitDataToModel(splits.test, shape, ctx.stageId, classes);

    const quantized = Object.keys(meta.weightQuant).length > 0;
    const ft = quantized ? quantFinetuneHooks(tf, model, meta.weightQuant, w.centroidLearningRate ?? 1e-4) : undefined;
    const masks = !quantized && (w.keepMasks ?? true) ? maskZeros(model) : undefined;
    if (masks) masks.bind(tf, model);
    const kernels = model.layers.map((l) => kernelVariable(l)).filter((v): v is NonNullable<typeof v> => Boolean(v));
    const hooks: TrainHooks = {
      transformGradients: (grads, step) => {
        const g = ft?.hooks.transformGradients ? ft.hooks.transformGradients(grads, step) : grads;
        return masks ? masks.maskGradients(g) : g;
      },
      afterStep: (step) => {
        ft?.hooks.afterStep?.(step);
        masks?.applyMasks(tf, model);
      },
      extraLoss: w.l1 ? () => tf.mul(w.l1!, tf.addN(kernels.map((k) => tf.sum(tf.abs(k.read()))))) as tfType.Scalar : undefined,
      teacher: teacher ? { model: teacher, temperature: w.temperature ?? 4, alpha: w.alpha ?? 0.5 } : undefined,
    };
    const result = await trainModel(tf, model, train, trainOptions(ctx, w.train ?? {}, validation, hooks, teacher ? 'distilling: ' : 'retraining: '));
    if (ft) meta.weightQuant = ft.finish();
    const ev = evaluateModel(tf, model, test);
    const stats = modelStats(model);
    await saveOutputModel(tf, model, meta, ctx);
    masks?.dispose();
    model.dispose();
    teacher?.dispose();
    return { metrics: { accuracy: ev.accuracy, loss: ev.loss, sparsity: stats.kernelSparsity, steps: result.steps, history: result.history } };
  },
});

/** Masks for the layers that hold pruned (exactly zero) weights. */
function maskZeros(model: tfType.LayersModel): MaskSet | undefined {
  const layers = model.layers.filter((l) => {
    const v = kernelVariable(l);
    if (!v) return false;
    const d = v.read().dataSync();
    for (let i = 0; i < d.length; i++) if (d[i] === 0) return true;
    return false;
  });
  return layers.length ? MaskSet.fromZeros(model, layers.map((l) => l.name)) : undefined;
}

export { loadInputModel };
