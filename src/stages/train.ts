import type { FromSchema } from 'json-schema-to-ts';
import { BUILTIN_MODELS, buildModel } from '../engine/models.js';
import { trainWorkers } from '../engine/data-parallel.js';
import { emptyMeta } from '../model/meta.js';
import { dataRefSchema, trainingSchema } from './common-schema.js';
import { defineStage } from './types.js';
import { engineFor, inputShapeOf, outputClassesOf, loadInputModel, modelInputs, saveOutputModel, trainProgressLine } from './support.js';
import { fitDataToModel } from '../data/fit.js';

export const trainWithSchema = {
  type: 'object',
  properties: {
    model: { enum: BUILTIN_MODELS, description: 'built-in architecture; omit to train the upstream model' },
    data: dataRefSchema,
    ...trainingSchema.properties,
    epochs: { ...trainingSchema.properties.epochs, default: 3 },
  },
  additionalProperties: false,
} as const;

export type TrainWith = FromSchema<typeof trainWithSchema>;

export const trainStage = defineStage<TrainWith>({
  kind: 'train',
  version: '1',
  description: 'train a built-in architecture (or the upstream model) on a dataset',
  withSchema: trainWithSchema,
  datasets: (w) => (w.data ? [w.data] : []),
  producesModel: true,
  metrics: ['accuracy', 'loss', 'valAccuracy', 'valLoss', 'params', 'epochs', 'steps', 'trainSeconds'],
  needsModels: [0, 1],
  async run(ctx) {
    const { tf, backend } = await engineFor(ctx);
    const { trainModel, evaluateModel } = await import('../engine/train.js');
    const w = ctx.with;
    const splits = await ctx.loadData(w.data!);
    let model;
    let meta = emptyMeta();
    if (modelInputs(ctx).length) {
      ({ model, meta } = await loadInputModel(tf, ctx));
    } else {
      if (!w.model) throw new Error(`stage '${ctx.stageId}': set with.model (one of ${BUILTIN_MODELS.join(', ')}) or add an upstream model stage to needs`);
      model = buildModel(tf, w.model, { inputShape: splits.train.sampleShape, numClasses: splits.train.numClasses, seed: ctx.seed });
      meta.provenance = { architecture: w.model };
    }
    const train = fitDataToModel(splits.train, inputShapeOf(model), ctx.stageId, outputClassesOf(model, ctx.stageId));
    const validation = fitDataToModel(splits.validation, inputShapeOf(model), ctx.stageId, outputClassesOf(model, ctx.stageId));
    const test = fitDataToModel(splits.test, inputShapeOf(model), ctx.stageId, outputClassesOf(model, ctx.stageId));
    const t0 = performance.now();
    const result = await trainModel(tf, model, train, {
      epochs: w.steps ? undefined : w.epochs,
      steps: w.steps,
      batchSize: w.batchSize ?? 64,
      seed: ctx.seed,
      optimizer: { name: 'adam', learningRate: 0.001, ...w.optimizer },
      lrSchedule: w.lrSchedule as never,
      earlyStopping: w.earlyStopping,
      validation: validation.n ? validation : undefined,
      signal: ctx.signal,
      // COMPRESS_TRAIN_WORKERS; part of the engine identity, so of every cache key.
      workers: trainWorkers(),
      onNote: (m) => ctx.log(m),
      onProgress: (p) => ctx.progress({ message: trainProgressLine(p), fraction: (p.epoch + p.batch / Math.max(1, p.batches)) / p.epochs }),
    });
    const trainSeconds = (performance.now() - t0) / 1000;
    const evalTest = evaluateModel(tf, model, test);
    const last = result.history[result.history.length - 1];
    await saveOutputModel(tf, model, meta, ctx);
    const params = model.countParams();
    model.dispose();
    return {
      metrics: {
        accuracy: evalTest.accuracy,
        loss: evalTest.loss,
        valAccuracy: last?.valAccuracy,
        valLoss: last?.valLoss,
        params,
        epochs: result.history.length,
        steps: result.steps,
        trainSeconds,
        backend,
        history: result.history,
      },
    };
  },
});
