import type { TrainHooks, TrainOptions } from '../engine/train.js';
import type { Dataset } from '../data/dataset.js';
import type { StageContext } from './types.js';
import { trainProgressLine } from './support.js';
import type { TrainingBlock } from './common-schema.js';
import { trainWorkers } from '../engine/data-parallel.js';

export type { TrainingBlock };

/** The `train:` block several stages share (trainingSchema), turned into trainModel options. */
export function trainOptions(ctx: StageContext<unknown>, t: TrainingBlock, validation: Dataset | undefined, hooks?: TrainHooks, label = ''): TrainOptions {
  return {
    epochs: t.steps ? undefined : (t.epochs ?? 1),
    steps: t.steps,
    batchSize: t.batchSize ?? 64,
    seed: ctx.seed,
    optimizer: { name: 'adam', learningRate: 0.001, ...t.optimizer },
    lrSchedule: t.lrSchedule,
    earlyStopping: t.earlyStopping,
    validation: validation?.n ? validation : undefined,
    hooks,
    signal: ctx.signal,
    // COMPRESS_TRAIN_WORKERS; part of the engine identity, so of every cache key.
    workers: trainWorkers(),
    onNote: (m) => ctx.log(m),
    onProgress: (p) => ctx.progress({ message: `${label}${trainProgressLine(p)}`, fraction: (p.epoch + p.batch / Math.max(1, p.batches)) / p.epochs }),
  };
}

/** Optimizer steps a training block will take on `n` samples (for schedule checks). */
export function plannedSteps(t: TrainingBlock, n: number): number {
  if (t.steps) return t.steps;
  return (t.epochs ?? 1) * Math.ceil(n / (t.batchSize ?? 64));
}
