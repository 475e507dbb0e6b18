import type { FromSchema } from 'json-schema-to-ts';
import { factorizeModel } from '../compression/factorize.js';
import { assertSelected, layerInfos, resolveLayerSettings } from '../prune/index.js';
import { dataRefSchema, selectorKeys } from './common-schema.js';
import { defineStage } from './types.js';
import { engineFor, inputShapeOf, outputClassesOf, loadInputModel, saveOutputModel } from './support.js';
import { fitDataToModel } from '../data/fit.js';

export const factorizeWithSchema = {
  type: 'object',
  properties: {
    energy: { type: 'number', exclusiveMinimum: 0, maximum: 1, default: 0.9, description: 'keep the smallest rank whose singular values hold this fraction of the energy' },
    rank: { type: 'integer', minimum: 1, description: 'a fixed rank instead of an energy fraction' },
    layers: {
      type: 'array',
      description: 'layers to factorize (default: every Dense layer except the last); later entries override earlier ones',
      items: { type: 'object', properties: { ...selectorKeys, energy: { type: 'number', exclusiveMinimum: 0, maximum: 1 }, rank: { type: 'integer', minimum: 1 } }, additionalProperties: false },
    },
    data: dataRefSchema,
  },
  additionalProperties: false,
} as const;

export type FactorizeWith = FromSchema<typeof factorizeWithSchema>;

interface RankSetting {
  energy?: number;
  rank?: number;
}

export const factorizeStage = defineStage<FactorizeWith>({
  kind: 'factorize',
  version: '1',
  description: 'replace Dense (and Conv2D) layers by two low-rank layers from a truncated SVD; follow with retrain',
  withSchema: factorizeWithSchema,
  datasets: (w) => (w.data ? [w.data] : []),
  producesModel: true,
  metrics: ['accuracy', 'params', 'paramsBefore'],
  needsModels: [1, 1],
  async run(ctx) {
    const { tf } = await engineFor(ctx);
    const { evaluateModel } = await import('../engine/train.js');
    const w = ctx.with;
    const { model, meta } = await loadInputModel(tf, ctx);
    const infos = layerInfos(model);
    const dense = infos.filter((l) => l.className === 'Dense');
    // `layers` lists the layers to factorize: nothing is selected before its first entry.
    const entries = [{ match: '*', exclude: true }, ...(w.layers?.length ? w.layers : dense.slice(0, -1).map((l) => ({ match: l.name })))];
    const settings = resolveLayerSettings<RankSetting>(infos, entries as never, { energy: w.rank ? undefined : (w.energy ?? 0.9), rank: w.rank }, { classes: ['Dense', 'Conv2D'] });
    if (!w.layers?.length && settings.size === 0) {
      const convs = infos.filter((l) => l.className === 'Conv2D').map((l) => l.name);
      throw new Error(
        `stage '${ctx.stageId}': no layer to factorize: by default factorize takes every Dense layer but the last (the classifier), ` +
          `and this model has ${dense.length} Dense layer${dense.length === 1 ? '' : 's'}` +
          (convs.length ? `; list the layers to factorize, e.g. layers: [{ type: Conv2D }] (${convs.length} Conv2D layers)` : '; list the layers to factorize in layers:'),
      );
    }
    assertSelected(ctx.stageId, 'factorize', settings, infos, ['Dense', 'Conv2D']);
    ctx.progress({ message: `factorizing ${settings.size} layers` });
    const { model: small, layers } = factorizeModel(tf, model, [...settings].map(([layer, s]) => (s.rank ? { layer, rank: s.rank } : { layer, energy: s.energy ?? 0.9 })));
    const splits = await ctx.loadData(w.data!);
    const test = fitDataToModel(splits.test, inputShapeOf(small), ctx.stageId, outputClassesOf(small, ctx.stageId));
    const ev = evaluateModel(tf, small, test);
    // Quantization records no longer describe the new layers; pruning records of untouched layers stay.
    meta.weightQuant = {};
    await saveOutputModel(tf, small, meta, ctx);
    const metrics = { accuracy: ev.accuracy, params: small.countParams(), paramsBefore: model.countParams(), layers };
    small.dispose();
    model.dispose();
    return { metrics };
  },
});
