import { InputError } from '../errors/input-error.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine, type BackendName } from '../engine/backend.js';
import { loadModelDir, saveModelDir, MODEL_JSON, type LoadedModel } from '../model/io.js';
import type { ModelMeta } from '../model/meta.js';
import type { StageContext, StageInput } from './types.js';

export async function engineFor(ctx: StageContext<unknown>): Promise<{ tf: typeof tfType; backend: BackendName }> {
  return initEngine(ctx.backend);
}

/** Upstream stages that hand over a model, in `needs` order. */
export function modelInputs(ctx: StageContext<unknown>): StageInput[] {
  return ctx.inputs.filter((i) => existsSync(join(i.dir, MODEL_JSON)));
}

/** The (first) upstream model; the recipe validator guarantees kinds that need one have one. */
export async function loadInputModel(tf: typeof tfType, ctx: StageContext<unknown>, index = 0): Promise<LoadedModel & { input: StageInput }> {
  const input = modelInputs(ctx)[index];
  if (!input) throw new Error(`stage '${ctx.stageId}' has no upstream model`);
  const loaded = await loadModelDir(tf, input.dir);
  return { ...loaded, input };
}

export async function saveOutputModel(tf: typeof tfType, model: tfType.LayersModel, meta: ModelMeta, ctx: StageContext<unknown>): Promise<void> {
  meta.provenance = { ...meta.provenance, stage: ctx.stageId };
  await saveModelDir(tf, model, meta, ctx.outDir);
}

/** The model's per-sample input shape (without the batch dimension). */
export function inputShapeOf(model: tfType.LayersModel): number[] {
  return (model.inputs[0].shape.slice(1) as Array<number | null>).map((d) => d ?? -1);
}

/** The units of a classifier's output ([batch, units]); undefined for other outputs. */
export function outputClassesOf(model: tfType.LayersModel, stage?: string): number | undefined {
  const shape = model.outputs[0].shape;
  if (shape.length > 2) {
    // A segmentation or detection head: every stage that reads labels scores a [classes] vector per sample.
    throw new InputError(`${stage ? `stage '${stage}': ` : ''}the model's output per sample is [${shape.slice(1).map((d) => d ?? '?').join(', ')}], not a vector of class scores: this stage scores predictions against the dataset's labels, which needs a classifier`, {
      hint: 'compress loads, lists (`compress layers`) and imports such a model, but its training, evaluation, quantization and export stages work on classifiers ([N, classes] outputs)',
    });
  }
  if (shape.length === 2 && shape[1] === 1) {
    // One unit (a sigmoid binary classifier, a regression head): argmax and top-k of one score say nothing about labels.
    throw new InputError(`${stage ? `stage '${stage}': ` : ''}the model's output per sample is one value (a sigmoid binary classifier or a regression head), not a vector of class scores: this stage scores predictions against the dataset's labels, which needs one output per class`, {
      hint: 'compress loads, lists (`compress layers`) and imports such a model; to evaluate, quantize or export it, give it one softmax output per class (a binary classifier: two)',
    });
  }
  return shape.length === 2 && typeof shape[1] === 'number' && shape[1] > 1 ? shape[1] : undefined;
}

/** A compact progress line from the training loop's events. */
export function trainProgressLine(p: { epoch: number; epochs: number; batch: number; batches: number; loss: number; accuracy?: number; valAccuracy?: number }): string {
  const acc = p.accuracy !== undefined ? ` acc ${(p.accuracy * 100).toFixed(1)}%` : '';
  const val = p.valAccuracy !== undefined ? ` val ${(p.valAccuracy * 100).toFixed(1)}%` : '';
  return `epoch ${p.epoch + 1}/${p.epochs} batch ${p.batch}/${p.batches} loss ${p.loss.toFixed(4)}${acc}${val}`;
}
