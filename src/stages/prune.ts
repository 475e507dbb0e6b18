import type { FromSchema } from 'json-schema-to-ts';
import type * as tfType from '@tensorflow/tfjs';
import {
  createSchedule,
  layerInfos,
  MaskSet,
  modelStats,
  pruningMeta,
  readKernel,
  removeUnits,
  removalBlockers,
  resolveLayerSettings,
  noOpSelectorEntries,
  assertSelected,
  biasVariable,
  taylorImportance,
  ScheduleError,
  SCHEDULE_KEYS,
  type PruningSchedule,
  type ScheduleSpec,
} from '../prune/index.js';
import { PRUNE_METHOD_NAMES, PRUNE_METHODS, pruneMethod, type PruneMethod, type PruneMethodName } from '../prune/methods.js';
import { dataRefSchema, selectorKeys, trainingSchema } from './common-schema.js';
import { defineStage, type StageContext } from './types.js';
import { engineFor, inputShapeOf, outputClassesOf, loadInputModel, saveOutputModel } from './support.js';
import { fitDataToModel } from '../data/fit.js';
import { plannedSteps, trainOptions } from './training-options.js';
import type { Dataset } from '../data/dataset.js';
import { setOwn } from '../util/own.js';
import { InputError } from '../errors/input-error.js';

const sparsity = { type: 'number', minimum: 0, exclusiveMaximum: 1 } as const;

export const scheduleSchema = {
  type: 'object',
  description: 'When and how far to prune (TF-MOT / Zhu & Gupta semantics); steps are optimizer steps.',
  properties: {
    kind: { enum: ['one-shot', 'constant', 'polynomial-decay', 'agp', 'iterative'] },
    sparsity: { ...sparsity, description: 'one-shot: target sparsity' },
    step: { type: 'integer', minimum: 0, description: 'one-shot: the step to prune at (default 0)' },
    targetSparsity: { ...sparsity, description: 'constant: target sparsity' },
    initialSparsity: sparsity,
    finalSparsity: sparsity,
    beginStep: { type: 'integer', minimum: 0 },
    endStep: { type: 'integer', minimum: -1 },
    startStep: { type: 'integer', minimum: 0, description: 'agp: t0' },
    numEvents: { type: 'integer', minimum: 1, description: 'agp: n pruning events' },
    power: { type: 'number', minimum: 0 },
    frequency: { type: 'integer', minimum: 1 },
    rounds: { type: 'integer', minimum: 1, description: 'iterative: prune-then-retrain rounds' },
    rate: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1, description: 'iterative: fraction of remaining weights pruned each round' },
  },
  required: ['kind'],
  additionalProperties: false,
} as const;

export const pruneWithSchema = {
  type: 'object',
  properties: {
    method: { enum: PRUNE_METHOD_NAMES, default: 'magnitude', description: PRUNE_METHOD_NAMES.map((m) => `${m}: ${PRUNE_METHODS[m].description}`).join('; ') },
    scope: { enum: ['layer', 'global'], default: 'layer', description: 'one threshold per layer, or one across all selected layers' },
    criterion: { enum: ['l1', 'l2', 'taylor'], default: 'l1', description: 'importance: weight magnitude / filter norm, or first-order Taylor |w·dL/dw|' },
    sparsity: { ...sparsity, description: 'one-shot target sparsity (shorthand for schedule: {kind: one-shot})' },
    threshold: { type: 'number', minimum: 0, description: 'prune |w| < threshold instead of a target sparsity' },
    sensitivity: { type: 'number', minimum: 0, description: 'prune |w| < sensitivity * std(w) (Distiller)' },
    n: { type: 'integer', minimum: 1, description: 'n:m: weights kept per group' },
    m: { type: 'integer', minimum: 2, description: 'n:m: group size along the input dimension' },
    schedule: scheduleSchema,
    layers: {
      type: 'array',
      description: 'per-layer settings; entries that only select (match/type, no setting), first in the list, choose the layers the stage acts on; later entries override earlier ones',
      items: {
        type: 'object',
        properties: { ...selectorKeys, finalSparsity: sparsity, threshold: { type: 'number', minimum: 0 }, sensitivity: { type: 'number', minimum: 0 } },
        additionalProperties: false,
      },
    },
    remove: { type: 'boolean', default: true, description: 'structured: physically remove pruned filters/neurons' },
    calibrationBatches: { type: 'integer', minimum: 1, default: 8, description: 'taylor: batches of training data to score on' },
    train: { ...trainingSchema, description: 'training during a gradual schedule, or fine-tuning after one-shot pruning' },
    data: dataRefSchema,
  },
  additionalProperties: false,
} as const;

export type PruneWith = FromSchema<typeof pruneWithSchema>;

interface LayerSetting {
  finalSparsity?: number;
  threshold?: number;
  sensitivity?: number;
}

/**
 * Structured removal of layers whose outputs meet in an element-wise merge (a residual Add) fails
 * unless they lose the same channels (a squeeze-excitation gate loses its Multiply's, and cannot be
 * selected on its own); said before any pruning or training, naming every such layer and the
 * selector that leaves them out (it failed after the whole schedule had run).
 */
function failOnCoupledLayers(tf: typeof tfType, model: tfType.LayersModel, names: string[], stageId: string): void {
  const blocked = removalBlockers(tf, model, names);
  if (!blocked.length) return;
  const layers = blocked.flatMap((b) => b.layers);
  const regex = `re:^(${layers.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})$`;
  throw new Error(
    `stage '${stageId}': structured pruning cannot remove filters of ${layers.length} selected layer${layers.length === 1 ? '' : 's'} on ${layers.length === 1 ? 'its' : 'their'} own (nothing was pruned or trained):\n` +
      blocked.map((b) => `  ${b.why}`).join('\n') +
      `\n  hint: removed filters must pass through every layer up to the next conv or dense layer, and layers whose outputs meet in an element-wise merge (a residual Add) would have to lose the same filters (a squeeze-excitation Multiply passes them: its excitation conv loses the same units, so it is not selected itself); leave these out of structured pruning: layers: [..., { match: ${JSON.stringify(regex)}, exclude: true }], or prune them with method: magnitude` +
      (blocked.some((b) => b.why.includes('(GroupedConv2D)')) ? '; a grouped conv (GroupedConv2D) keeps equal channel groups, so neither its filters nor its input channels can go (its producers are listed too)' : ''),
  );
}

/**
 * Fails before training when no schedule prunes to a target above 0 within the `total` training steps (on a
 * small dataset the first such step, a multiple of the frequency after beginStep, can lie past the end of
 * training): the stage would train and save an unpruned model with sparsity 0%.
 */
function assertSchedulePrunes(schedules: Iterable<PruningSchedule>, total: number, t: NonNullable<PruneWith['train']>, n: number): void {
  const list = [...schedules];
  // A pruning step at a target of 0 (polynomial decay's first step) removes nothing.
  if (list.some((s) => s.pruneSteps(Math.max(0, total - 1)).some((step) => step < total && s.sparsityAt(step) > 0))) return;
  const how = t.steps ? `${t.steps} steps` : `${t.epochs ?? 1} epoch(s) x ${Math.ceil(n / (t.batchSize ?? 64))} batches of ${t.batchSize ?? 64} on ${n} training samples`;
  throw new InputError(`the pruning schedule removes nothing: training takes ${total} steps (${how}) and no pruning step before that has a target above 0 (the schedule ends at step ${Math.max(...list.map((s) => s.endStep))})`, {
    hint: `lower schedule.endStep and schedule.frequency to fit ${total} steps, raise train.epochs, or use schedule: { kind: one-shot }`,
  });
}

export const pruneStage = defineStage<PruneWith>({
  kind: 'prune',
  version: '1',
  description: 'prune weights (magnitude, structured filters/neurons, n:m) on a schedule, training in between',
  withSchema: pruneWithSchema,
  datasets: (w) => (w.data ? [w.data] : []),
  producesModel: true,
  metrics: ['accuracy', 'loss', 'sparsity', 'params', 'nonzeros', 'paramsBefore', 'removedUnits', 'steps', 'macs', 'effectiveMacs'],
  needsModels: [1, 1],
  check: (w) => [...scheduleProblems(w), ...noOpSelectorEntries(w.layers)],
  async run(ctx) {
    const { tf } = await engineFor(ctx);
    const { trainModel, evaluateModel } = await import('../engine/train.js');
    const w = ctx.with;
    let { model, meta } = await loadInputModel(tf, ctx);
    const splits = await ctx.loadData(w.data!);
    const shape = inputShapeOf(model);
    const classes = outputClassesOf(model, ctx.stageId);
    const train = fitDataToModel(splits.train, shape, ctx.stageId, classes);
    const validation = fitDataToModel(splits.validation, shape, ctx.stageId, classes);
    const test = fitDataToModel(splits.test, shape, ctx.stageId, classes);
    const paramsBefore = model.countParams();
    const kernelNonZeroBefore = modelStats(model).kernelNonZero;

    const spec = scheduleSpec(w);
    const finalDefault = finalOf(spec);
    const settings = resolveLayerSettings<LayerSetting>(layerInfos(model), (w.layers ?? []) as never, {
      finalSparsity: finalDefault,
      threshold: w.threshold,
      sensitivity: w.sensitivity,
    });
    const layerNames = [...settings.keys()];
    const schedules = new Map<string, PruningSchedule>();
    for (const [name, s] of settings) schedules.set(name, createSchedule(withFinal(spec, s.finalSparsity ?? finalDefault)));
    const anySchedule = schedules.values().next().value as PruningSchedule | undefined;
    assertSelected(ctx.stageId, 'prune', settings, layerInfos(model));
    if (!anySchedule) throw new Error(`stage '${ctx.stageId}': no prunable layer selected`);

    const masks = new MaskSet();
    const methodName: PruneMethodName = w.method ?? 'magnitude';
    const method: PruneMethod = pruneMethod(methodName);
    for (const name of layerNames) {
      const why = method.refuses?.(model.getLayer(name).getClassName());
      if (why) throw new Error(`stage '${ctx.stageId}': method ${methodName} cannot prune layer '${name}': ${why}`);
    }
    if (method.removesUnits && (w.remove ?? true)) failOnCoupledLayers(tf, model, layerNames, ctx.stageId);
    const methods: Record<string, PruneMethodName> = {};
    const units: Record<string, number[]> = {};
    let importance: Map<string, Float32Array> | undefined;

    const prune = (step: number) => {
      if (w.criterion === 'taylor') importance = taylorScores(tf, model, train, w.calibrationBatches ?? 8, layerNames);
      const values = (name: string) => importance?.get(name) ?? (readKernel(model, name).values as Float32Array);
      const global = w.scope === 'global' && w.threshold === undefined && w.sensitivity === undefined ? method.globalMasks : undefined;
      if (global) {
        for (const [name, m] of global(layerNames.map((name) => ({ name, values: values(name) })), anySchedule.sparsityAt(step))) {
          masks.set(name, m);
          setOwn(methods, name, methodName);
        }
      } else {
        for (const name of layerNames) {
          const s = settings.get(name)!;
          const r = method.layerMask({
            values: values(name),
            shape: readKernel(model, name).shape,
            className: model.getLayer(name).getClassName(),
            target: schedules.get(name)!.sparsityAt(step),
            threshold: s.threshold,
            sensitivity: s.sensitivity,
            criterion: w.criterion,
            n: w.n,
            m: w.m,
          });
          // A conv without bias (use_bias=False, as in every keras.applications model) has no bias to zero.
          masks.set(name, r.mask, r.bias && biasVariable(model.getLayer(name)) ? { bias: r.bias } : undefined);
          if (r.units) setOwn(units, name, r.units);
          setOwn(methods, name, methodName);
        }
      }
      masks.applyMasks(tf, model);
    };

    const gradual = spec.kind !== 'one-shot';
    const t = w.train;
    let steps = 0;
    if (!gradual || !t) {
      ctx.progress({ message: 'pruning (one shot)' });
      prune(Number.MAX_SAFE_INTEGER);
    }
    if (t) {
      const total = plannedSteps(t, train.n);
      const end = Math.max(...[...schedules.values()].map((s) => s.endStep));
      if (gradual) assertSchedulePrunes(schedules.values(), total, t, train.n);
      if (gradual && end > total) ctx.log(`warning: the schedule ends at step ${end} but training takes ${total} steps; final sparsity is not reached (raise train.epochs or lower endStep)`);
      else if (gradual) warnShortOfTarget(ctx, [...schedules.values()][0], total);
      if (gradual) masks.bind(tf, model);
      const result = await trainModel(tf, model, train, trainOptions(ctx, t, validation, {
        beforeStep: gradual ? (step) => {
          if ([...schedules.values()].some((s) => s.shouldPrune(step))) prune(step);
        } : undefined,
        transformGradients: (grads) => (masks.size ? masks.maskGradients(grads) : grads),
        afterStep: () => {
          if (masks.size) masks.applyMasks(tf, model);
        },
      }, 'pruning: '));
      steps = result.steps;
    }

    let removed: Record<string, number[]> = {};
    if (method.removesUnits && (w.remove ?? true)) {
      ctx.progress({ message: 'removing pruned filters/neurons' });
      const r = removeUnits(tf, model, units, { name: model.name });
      model.dispose();
      model = r.model;
      removed = r.removed;
    }
    meta = { ...meta, pruning: { ...meta.pruning, ...pruningMeta(model, filterExisting(model, methods), removed) } };
    const ev = evaluateModel(tf, model, test);
    const stats = modelStats(model);
    const removedCount = Object.values(removed).reduce((a, u) => a + u.length, 0);
    if (removedCount === 0 && stats.kernelNonZero === kernelNonZeroBefore) {
      ctx.log(`warning: pruning changed nothing: no weight became zero and no unit was removed (the target rounds to 0 weights or units in every selected layer, or they were already pruned); raise sparsity`);
    }
    await saveOutputModel(tf, model, meta, ctx);
    masks.dispose();
    const result = {
      accuracy: ev.accuracy,
      loss: ev.loss,
      sparsity: stats.kernelSparsity,
      params: model.countParams(),
      nonzeros: stats.kernelNonZero,
      paramsBefore,
      removedUnits: Object.values(removed).reduce((a, r) => a + r.length, 0),
      steps,
      macs: stats.macs,
      effectiveMacs: stats.effectiveMacs,
      layers: stats.layers.filter((l) => layerNames.includes(l.name)).map((l) => ({ name: l.name, sparsity: l.sparsity, params: l.params, removed: removed[l.name]?.length ?? 0 })),
    };
    model.dispose();
    return { metrics: result };
  },
});

function filterExisting(model: tfType.LayersModel, methods: Record<string, PruneMethodName>): Record<string, PruneMethodName> {
  const names = new Set(model.layers.map((l) => l.name));
  return Object.fromEntries(Object.entries(methods).filter(([n]) => names.has(n)));
}


/**
 * The stage's schedule: `schedule` as written, its target taken from the stage's `sparsity` when the schedule
 * gives none (`sparsity: 0.5, schedule: { kind: polynomial-decay, ... }` reads as the target of that schedule);
 * without a schedule, one-shot at `sparsity` (default 0.5).
 */
function scheduleSpec(w: PruneWith): ScheduleSpec {
  if (!w.schedule) return { kind: 'one-shot', sparsity: w.sparsity ?? 0.5 };
  const spec = { ...(w.schedule as unknown as Record<string, unknown>) };
  const key = SCHEDULE_KEYS[spec.kind as ScheduleSpec['kind']].target;
  const hasTarget = spec[key] !== undefined || (spec.kind === 'iterative' && spec.rate !== undefined);
  if (!hasTarget && w.sparsity !== undefined) setOwn(spec, key, w.sparsity);
  return spec as unknown as ScheduleSpec;
}

/**
 * A gradual schedule whose last pruning step within training (steps 0..total-1) comes before it reaches its target
 * (its end step is not a pruning step: (endStep - beginStep) not a multiple of frequency, or the end is the step
 * count itself) stops short: say by how much.
 */
function warnShortOfTarget(ctx: { log(m: string): void }, schedule: PruningSchedule, total: number): void {
  const last = schedule.pruneSteps(total - 1).at(-1);
  const reached = last === undefined ? 0 : schedule.sparsityAt(last);
  if (reached >= schedule.finalSparsity - 1e-9) return;
  ctx.log(
    `warning: the schedule's last pruning step within the ${total} training steps is ${last ?? 'none'}, at sparsity ${(reached * 100).toFixed(1)}% ` +
      `of the target ${(schedule.finalSparsity * 100).toFixed(1)}% (make endStep a pruning step below ${total}: beginStep + a multiple of frequency)`,
  );
}

type Problem = { path: Array<string | number>; message: string };

/**
 * What `validate` can tell of the schedule and the stage's targets before anything runs: keys the schedule kind
 * does not read, missing ones (all of them), a target given twice with different values or next to `rate`, a
 * `sparsity` the method or a `threshold` overrides, and a schedule that cannot be made (begin after end...).
 */
function scheduleProblems(w: PruneWith): Problem[] {
  const out: Problem[] = [];
  if (w.sparsity !== undefined && w.method === 'n:m') out.push({ path: ['with', 'sparsity'], message: `n:m pruning keeps n of every m weights (sparsity 1 - n/m); sparsity ${w.sparsity} is not used: remove it` });
  if (w.sparsity !== undefined && w.threshold !== undefined) out.push({ path: ['with', 'threshold'], message: `threshold prunes |w| < ${w.threshold} whatever the sparsity; give threshold or sparsity, not both` });
  if (!w.schedule) return out;
  const raw = w.schedule as unknown as Record<string, unknown>;
  const keys = SCHEDULE_KEYS[raw.kind as ScheduleSpec['kind']];
  if (!keys) return out;
  const known = new Set(['kind', ...keys.required, keys.target, ...keys.optional]);
  for (const k of Object.keys(raw)) if (!known.has(k)) out.push({ path: ['with', 'schedule', k], message: `a ${String(raw.kind)} schedule does not read ${k} (its keys: ${[...known].join(', ')})` });
  const missing = keys.required.filter((k) => raw[k] === undefined);
  if (missing.length) out.push({ path: ['with', 'schedule'], message: `a ${String(raw.kind)} schedule needs ${missing.join(', ')}` });
  const perLayerTargets = (w.layers ?? []).some((e) => (e as { finalSparsity?: unknown }).finalSparsity !== undefined);
  if (w.sparsity !== undefined && raw[keys.target] !== undefined && raw[keys.target] !== w.sparsity) {
    out.push({ path: ['with', 'sparsity'], message: `sparsity ${w.sparsity} and schedule.${keys.target} ${String(raw[keys.target])} disagree; give the target once` });
  } else if (w.sparsity !== undefined && raw.rate !== undefined) {
    out.push({ path: ['with', 'sparsity'], message: `an iterative schedule with a rate sets its own target; sparsity ${w.sparsity} is not used: give one of them` });
  } else if (raw[keys.target] === undefined && raw.rate === undefined && w.sparsity === undefined && !perLayerTargets && w.threshold === undefined) {
    out.push({ path: ['with', 'schedule'], message: `a ${String(raw.kind)} schedule needs a target: set schedule.${keys.target} or the stage's sparsity` });
  }
  if (out.length) return out;
  try {
    const spec = scheduleSpec(w);
    if (finalOf(spec) !== undefined || (spec as { rate?: number }).rate !== undefined) createSchedule(spec);
  } catch (e) {
    if (!(e instanceof ScheduleError)) throw e;
    out.push({ path: ['with', 'schedule', ...(e.field && raw[e.field] !== undefined ? [e.field] : [])], message: e.message });
  }
  return out;
}

/** The schedule's own target sparsity, if it gives one (an iterative schedule may give a rate instead). */
function finalOf(spec: ScheduleSpec): number | undefined {
  switch (spec.kind) {
    case 'one-shot':
      return spec.sparsity;
    case 'constant':
      return spec.targetSparsity;
    default:
      return spec.finalSparsity;
  }
}

/** The schedule with a layer's target; without one (an iterative schedule's rate applies) the schedule as given. */
function withFinal(spec: ScheduleSpec, final: number | undefined): ScheduleSpec {
  if (final === undefined) return spec;
  switch (spec.kind) {
    case 'one-shot':
      return { ...spec, sparsity: final };
    case 'constant':
      return { ...spec, targetSparsity: final };
    default:
      return { ...spec, finalSparsity: final } as ScheduleSpec;
  }
}

function taylorScores(tf: typeof tfType, model: tfType.LayersModel, data: Dataset, batches: number, layers: string[]): Map<string, Float32Array> {
  const bs = 64;
  const size = data.sampleShape.reduce((a, b) => a * b, 1);
  const n = Math.min(batches, Math.floor(data.n / bs));
  const xs: tfType.Tensor[] = [];
  const ys: tfType.Tensor[] = [];
  for (let b = 0; b < Math.max(1, n); b++) {
    const m = Math.min(bs, data.n - b * bs);
    xs.push(tf.tensor(data.x.subarray(b * bs * size, (b * bs + m) * size), [m, ...data.sampleShape]));
    ys.push(tf.tensor1d(Array.from(data.y.subarray(b * bs, b * bs + m)), 'int32'));
  }
  try {
    return taylorImportance(tf, model, xs, ys, { layers });
  } finally {
    tf.dispose([...xs, ...ys]);
  }
}

export type { StageContext };
