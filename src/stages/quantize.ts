import type { FromSchema } from 'json-schema-to-ts';
import type * as tfType from '@tensorflow/tfjs';
import { applyWeightQuant, cloneModel, layerErrorReport, type WeightQuantSpec } from '../compression/fakequant.js';
import { CALIBRATION_METHODS, calibrateActivations } from '../compression/calibrate.js';
import { assertSelected, layerInfos, noOpSelectorEntries, resolveLayerSettings, kernelVariable } from '../prune/index.js';
import { dataRefSchema, selectorKeys, trainingSchema } from './common-schema.js';
import { defineStage } from './types.js';
import { engineFor, inputShapeOf, outputClassesOf, loadInputModel, saveOutputModel } from './support.js';
import { fitDataToModel } from '../data/fit.js';
import { sampleSize, type Dataset } from '../data/dataset.js';
import { trainOptions } from './training-options.js';
import { quantFinetuneHooks } from './quant-finetune.js';

const quantSettings = {
  method: { enum: ['linear', 'kmeans', 'float16'], description: 'uniform int-N, k-means weight sharing, or float16' },
  bits: {
    oneOf: [{ type: 'integer', minimum: 1, maximum: 16 }, { const: 'auto' }],
    description: 'linear: 2..8; kmeans: 1..16 (2^bits shared values); auto: chosen per layer under `budget`',
  },
  symmetric: { type: 'boolean', description: 'linear: zero point 0 (default true)' },
  perChannel: { type: 'boolean', description: 'linear: one scale per output channel (default true)' },
  init: { enum: ['linear', 'density', 'kmeans++', 'optimal'], description: "kmeans: centroid initialisation (default linear); 'optimal' starts from the least-squared-error clustering (dynamic programming) and gives the lowest error" },
} as const;

export const quantizeWithSchema = {
  type: 'object',
  properties: {
    default: { type: 'object', properties: quantSettings, additionalProperties: false },
    layers: {
      type: 'array',
      description: 'per-layer overrides by selector; entries that only select (match/type, no setting), first in the list, choose the layers the stage acts on; later entries override earlier ones',
      items: { type: 'object', properties: { ...selectorKeys, ...quantSettings }, additionalProperties: false },
    },
    budget: { type: 'number', minimum: 0, maximum: 1, default: 0.005, description: 'bits: auto: allowed accuracy drop on the validation split' },
    activations: {
      type: 'object',
      description: 'activation calibration for full-integer exports',
      properties: {
        calibrate: {
          type: 'boolean',
          description:
            'record int8 activation ranges (and the full-integer accuracy estimate); default: true when a layer is quantized linear int-N, false when every layer is k-means or float16 (an int8 export of such a model calibrates itself on its calibrationSamples)',
        },
        method: { enum: CALIBRATION_METHODS, default: 'minmax' },
        percentile: { type: 'number', exclusiveMinimum: 50, maximum: 100 },
        samples: { type: 'integer', minimum: 1, default: 512 },
      },
      additionalProperties: false,
    },
    finetune: {
      ...trainingSchema,
      properties: { ...trainingSchema.properties, centroidLearningRate: { type: 'number', exclusiveMinimum: 0, description: 'kmeans: Adam step for the shared centroids (default 1e-4)' } },
      description: 'fine-tune on the quantization grid: k-means centroids (Deep Compression) or linear weights with a straight-through estimator',
    },
    data: dataRefSchema,
  },
  additionalProperties: false,
} as const;

export type QuantizeWith = FromSchema<typeof quantizeWithSchema>;

interface LayerQuantSetting {
  method: 'linear' | 'kmeans' | 'float16';
  bits: number | 'auto';
  symmetric?: boolean;
  perChannel?: boolean;
  init?: 'linear' | 'density' | 'kmeans++';
}

export const quantizeStage = defineStage<QuantizeWith>({
  kind: 'quantize',
  // 2: calibration, activation fake-quant and per-layer errors on the inference graph (conv blocks fused).
  // 3: a softmax classifier's logits calibrated too (logitsKey).
  // 4: activations calibrated by default only when a layer is linear int-N (k-means / float16 models: on request).
  version: '4',
  description: 'quantize weights per layer (int-N linear, k-means sharing, float16), calibrate activations, optionally fine-tune on the grid',
  withSchema: quantizeWithSchema,
  datasets: (w) => (w.data ? [w.data] : []),
  producesModel: true,
  metrics: ['accuracy', 'floatAccuracy', 'accuracyDrop', 'int8Accuracy', 'meanBits', 'loss'],
  needsModels: [1, 1],
  check(w) {
    return [...bitRangeProblems(w), ...noOpSelectorEntries(w.layers)];
  },
  async run(ctx) {
    const { tf } = await engineFor(ctx);
    const { trainModel, evaluateModel, EvalAccumulator } = await import('../engine/train.js');
    const w = ctx.with;
    const { model, meta } = await loadInputModel(tf, ctx);
    const splits = await ctx.loadData(w.data!);
    const shape = inputShapeOf(model);
    const classes = outputClassesOf(model, ctx.stageId);
    const train = fitDataToModel(splits.train, shape, ctx.stageId, classes);
    const validation = fitDataToModel(splits.validation.n ? splits.validation : splits.test, shape, ctx.stageId, classes);
    const test = fitDataToModel(splits.test, shape, ctx.stageId, classes);
    // The float model, for the per-layer error report; its accuracy comes from that report's pass.
    const reference = await cloneModel(tf, model);

    const defaults: LayerQuantSetting = { method: 'linear', bits: 8, ...(w.default as Partial<LayerQuantSetting>) };
    const settings = resolveLayerSettings<LayerQuantSetting>(layerInfos(model), (w.layers ?? []) as never, defaults);
    assertSelected(ctx.stageId, 'quantize', settings, layerInfos(model));
    for (const [name, s] of settings) {
      if (s.method === 'float16' || s.bits === 'auto') continue;
      const [lo, hi] = BIT_RANGE[s.method];
      if (s.bits < lo || s.bits > hi) throw new Error(`layer '${name}': ${s.method} quantization takes ${lo}..${hi} bits (got ${s.bits})${s.method === 'linear' ? '; use method: kmeans for other widths' : ''}`);
    }
    const toSpec = (s: LayerQuantSetting, bits: number): WeightQuantSpec =>
      s.method === 'float16'
        ? { method: 'float16' }
        : s.method === 'kmeans'
          ? { method: 'kmeans', bits, init: s.init, seed: ctx.seed }
          : { method: 'linear', bits, symmetric: s.symmetric ?? true, perChannel: s.perChannel ?? true };

    const chosen = new Map<string, number>();
    for (const [name, s] of settings) if (s.bits !== 'auto') chosen.set(name, s.bits);
    const auto = [...settings].filter((e): e is [string, LayerQuantSetting & { method: 'linear' | 'kmeans' }] => e[1].bits === 'auto' && e[1].method !== 'float16');
    if (auto.length) {
      const accuracyWith = (policy: Record<string, WeightQuantSpec>) => withTemporaryPolicy(tf, model, policy, () => evaluateModel(tf, model, validation).accuracy);
      const base = evaluateModel(tf, model, validation).accuracy;
      const picked = chooseAutoBits(auto, w.budget ?? 0.005, base, (name, b) => {
        ctx.progress({ message: `sensitivity scan: ${name} at ${b} bits` });
        return accuracyWith({ [name]: toSpec(settings.get(name)!, b) });
      }, (bits) => accuracyWith(Object.fromEntries([...settings].map(([n, s]) => [n, toSpec(s, chosen.get(n) ?? bits.get(n) ?? 8)]))));
      for (const [n, b] of picked) chosen.set(n, b);
      ctx.log(`bits: auto chose ${[...chosen].map(([n, b]) => `${n}=${b}`).join(', ')}`);
    }

    const policy = Object.fromEntries([...settings].map(([n, s]) => [n, toSpec(s, chosen.get(n) ?? 8)]));
    ctx.progress({ message: `quantizing ${Object.keys(policy).length} layers` });
    warnFloatKernels(ctx, model, Object.keys(policy));
    const applied = applyWeightQuant(tf, model, policy);
    let weightQuant = applied.weightQuant;

    if (w.finetune) {
      const ft = quantFinetuneHooks(tf, model, weightQuant, w.finetune.centroidLearningRate ?? 1e-4);
      await trainModel(tf, model, train, trainOptions(ctx, { ...w.finetune, epochs: w.finetune.epochs ?? 1 }, validation, ft.hooks, 'fine-tuning on the grid: '));
      weightQuant = ft.finish();
    }

    const act: Partial<NonNullable<QuantizeWith["activations"]>> = w.activations ?? {};
    meta.weightQuant = { ...meta.weightQuant, ...weightQuant };
    const calibrate = act.calibrate ?? calibratesByDefault(policy);
    if (calibrate) {
      ctx.progress({ message: `calibrating activations (${act.method ?? 'minmax'})` });
      // The first samples of the train split, as a view (no copy).
      const k = Math.min(train.n, act.samples ?? 512);
      const calib = { x: train.x.subarray(0, k * sampleSize(train)), n: k, sampleShape: train.sampleShape };
      meta.activationRanges = await calibrateActivations(tf, model, calib, { method: act.method ?? 'minmax', percentile: act.percentile });
    } else {
      // The weights changed: ranges an upstream stage calibrated no longer hold; an int8 export calibrates itself.
      meta.activationRanges = {};
      ctx.log(`activations not calibrated (${act.calibrate === false ? 'activations.calibrate: false' : 'no layer is linear int-N'}): no int8Accuracy; an int8 export of this model calibrates on its own calibrationSamples`);
    }
    // One pass over the test split, float and quantized models side by side: per-layer errors, the
    // float accuracy and, with calibrated ranges, the full-integer accuracy estimate. Without them the
    // quantized side of that pass is the output model itself: its accuracy and loss come from it too.
    ctx.progress({ message: 'measuring per-layer error and accuracy' });
    const withActivations = calibrate;
    let floatHits = 0;
    let candHits = 0;
    const hits = (t: tfType.Tensor, start: number) => {
      const p = tf.tidy(() => t.argMax(-1).dataSync());
      let h = 0;
      for (let i = 0; i < p.length; i++) if (p[i] === test.y[start + i]) h++;
      return h;
    };
    const outputEval = withActivations ? undefined : new EvalAccumulator(tf, test);
    const errors = await layerErrorReport(tf, reference, model, test, {
      activationRanges: withActivations ? meta.activationRanges : undefined,
      maxSamples: test.n,
      errorSamples: ERROR_REPORT_SAMPLES,
      onOutputs: (start, ref, cand) => {
        floatHits += hits(ref, start);
        if (withActivations) candHits += hits(cand, start);
        outputEval?.add(cand, start);
      },
    });
    const floatAccuracy = test.n ? floatHits / test.n : 0;
    const int8Accuracy = withActivations ? (test.n ? candHits / test.n : 0) : undefined;
    // With activation fake-quant the pass above ran another model: the output model's own evaluation.
    const ev = outputEval ? outputEval.result() : evaluateModel(tf, model, test);
    await saveOutputModel(tf, model, meta, ctx);
    const bitsOf = (n: string) => (weightQuant[n]?.bits ?? 32);
    const counts = [...settings.keys()].map((n) => ({ n, size: sizeOf(model, n) }));
    const total = counts.reduce((a, c) => a + c.size, 0);
    const metrics = {
      accuracy: ev.accuracy,
      loss: ev.loss,
      floatAccuracy,
      accuracyDrop: floatAccuracy - ev.accuracy,
      int8Accuracy,
      meanBits: total ? counts.reduce((a, c) => a + c.size * bitsOf(c.n), 0) / total : 32,
      layers: [...settings.keys()].map((n) => {
        const e = errors.find((r) => r.layer === n);
        return {
          name: n,
          method: weightQuant[n]?.method,
          bits: bitsOf(n),
          weightRelL2: applied.errors[n]?.relL2,
          weightSqnrDb: finite(applied.errors[n]?.sqnrDb),
          outputRelL2: e?.output.relL2,
          outputSqnrDb: finite(e?.output.sqnrDb),
        };
      }),
    };
    reference.dispose();
    model.dispose();
    return { metrics };
  },
});

/**
 * `activations.calibrate` when the recipe does not say: int8 activation ranges are for full-integer exports,
 * so a stage calibrates when some layer gets a linear int-N grid; a k-means or float16 model's int8 export
 * calibrates itself (export `calibrationSamples`), so its quantize stage spends no inference passes on it.
 */
export function calibratesByDefault(policy: Record<string, WeightQuantSpec>): boolean {
  return Object.values(policy).some((p) => p.method === 'linear');
}

/** Samples of the test split the per-layer error report accumulates over (accuracies use every sample). */
export const ERROR_REPORT_SAMPLES = 256;

function finite(v: number | undefined): number | undefined {
  return v === undefined || Number.isFinite(v) ? v : undefined;
}

function sizeOf(model: tfType.LayersModel, layer: string): number {
  const v = kernelVariable(model.getLayer(layer));
  return v ? (v.shape as number[]).reduce((a, b) => a * b, 1) : 0;
}

/** The widths each method takes: linear int-N 2..8, k-means 1..16 (up to 2^16 shared values). */
const BIT_RANGE: Record<'linear' | 'kmeans', readonly [number, number]> = { linear: [2, 8], kmeans: [1, 16] };

/**
 * `validate` and the start of `run`: a width outside its method's range (`default`, or a `layers` entry
 * with the method and bits it inherits from `default`), reported where the recipe sets the bits.
 */
export function bitRangeProblems(w: QuantizeWith): Array<{ path: Array<string | number>; message: string }> {
  const base = (w.default ?? {}) as Partial<LayerQuantSetting>;
  const problem = (path: Array<string | number>, s: Partial<LayerQuantSetting>) => {
    const method = s.method ?? 'linear';
    if (method === 'float16' || typeof s.bits !== 'number') return [];
    const [lo, hi] = BIT_RANGE[method];
    if (s.bits >= lo && s.bits <= hi) return [];
    return [{ path, message: `${method} quantization takes ${lo}..${hi} bits (got ${s.bits})${method === 'linear' ? '; use method: kmeans for other widths' : ''}` }];
  };
  const out = problem(['with', 'default', 'bits'], base);
  (w.layers ?? []).forEach((l, i) => {
    const own = l as Partial<LayerQuantSetting>;
    if (own.bits === undefined && own.method === undefined) return;
    out.push(...problem(['with', 'layers', i, own.bits !== undefined ? 'bits' : 'method'], { method: own.method ?? base.method, bits: own.bits ?? base.bits }));
  });
  return out;
}

/**
 * `bits: auto`: each layer gets the narrowest width (from its method's range) whose accuracy drop, that
 * layer alone quantized, is within an equal share of `budget` (the widest when none is); then, while the
 * whole model is over budget, the layer whose drop at its width is largest is widened by one bit. Drops are
 * measured when first needed (`accuracyWithLayer`), so a wide k-means range costs only the widths it reaches.
 */
export function chooseAutoBits(
  auto: Array<[string, { method: 'linear' | 'kmeans' }]>,
  budget: number,
  base: number,
  accuracyWithLayer: (layer: string, bits: number) => number,
  accuracyWithAll: (bits: Map<string, number>) => number,
): Map<string, number> {
  const drops = new Map<string, Map<number, number>>(auto.map(([n]) => [n, new Map()]));
  const dropAt = (name: string, b: number): number => {
    const row = drops.get(name)!;
    if (!row.has(b)) row.set(b, base - accuracyWithLayer(name, b));
    return row.get(b)!;
  };
  const chosen = new Map<string, number>();
  const per = budget / auto.length;
  for (const [name, s] of auto) {
    const [lo, hi] = BIT_RANGE[s.method];
    let b = lo;
    while (b < hi && dropAt(name, b) > per) b++;
    chosen.set(name, b);
  }
  // Joint check: raise the bits of the most sensitive layer until the whole model is within budget.
  for (let guard = 0; guard < 64; guard++) {
    if (base - accuracyWithAll(chosen) <= budget) break;
    const raisable = auto.filter(([n, s]) => chosen.get(n)! < BIT_RANGE[s.method][1]);
    if (!raisable.length) break;
    raisable.sort(([a], [b]) => dropAt(b, chosen.get(b)!) - dropAt(a, chosen.get(a)!));
    chosen.set(raisable[0][0], chosen.get(raisable[0][0])! + 1);
  }
  return chosen;
}

function withTemporaryPolicy<T>(tf: typeof tfType, model: tfType.LayersModel, policy: Record<string, WeightQuantSpec>, f: () => T): T {
  const saved = Object.keys(policy).map((n) => ({ layer: model.getLayer(n), weights: model.getLayer(n).getWeights().map((t) => t.clone()) }));
  try {
    applyWeightQuant(tf, model, policy);
    return f();
  } finally {
    for (const s of saved) {
      s.layer.setWeights(s.weights);
      tf.dispose(s.weights);
    }
  }
}

export type { Dataset };

/**
 * Layers with a second kernel the quantize record cannot describe (a SeparableConv2D's pointwise kernel: one record
 * per layer, for its depthwise kernel): that kernel stays float32 here (the size estimate counts it so; int8 exports
 * quantize both kernels from the float model). Said, not silent.
 */
function warnFloatKernels(ctx: { log(message: string): void }, model: tfType.LayersModel, names: string[]): void {
  const partial = names
    .map((n) => model.layers.find((l) => l.name === n))
    .filter((l): l is tfType.layers.Layer => !!l && l.getClassName() === 'SeparableConv2D')
    .map((l) => `${l.name} (${(l.getWeights()[1]?.size ?? 0).toLocaleString('en-US')} pointwise weights)`);
  if (partial.length) ctx.log(`warning: SeparableConv2D layers get their depthwise kernel quantized only; the pointwise kernel stays float32 in this stage's model and size estimate (int8 exports quantize both from the float model): ${partial.join(', ')}`);
}
