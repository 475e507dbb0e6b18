import { fitDataToModel } from '../data/fit.js';
import { randomInputs, type ImportCheck } from '../model/load/onnx-verify.js';
import { deriveSeed } from '../util/rng.js';
import type { LoadWith } from './load.js';
import type { StageContext } from './types.js';

/**
 * The samples an import check compares on (ONNX against onnxruntime, TF.js graph models against tfjs's graph
 * executor): the recipe dataset's test split (with.data) or seeded random inputs; `n` a multiple of a fixed batch.
 */
export async function importCheckInputs(ctx: StageContext<LoadWith>, shape: number[], fixedBatch: number | null, seedName: string): Promise<{ x: Float32Array; n: number; inputs: string }> {
  const want = ctx.with.verify?.samples ?? 8;
  let n = fixedBatch ? Math.max(fixedBatch, Math.floor(want / fixedBatch) * fixedBatch) : want;
  if (!ctx.with.data) return { x: randomInputs(shape, n, deriveSeed(ctx.seed, seedName)), n, inputs: `${n} seeded random samples` };
  const splits = await ctx.loadData(ctx.with.data);
  const d = fitDataToModel(splits.test.n > 0 ? splits.test : splits.train, shape, `stage '${ctx.stageId}'`);
  const per = shape.reduce((a, b) => a * b, 1);
  if (fixedBatch && d.n < fixedBatch) {
    // Fewer samples than the model's fixed batch: one batch of them, repeated in order.
    n = fixedBatch;
    const x = new Float32Array(n * per);
    for (let i = 0; i < n; i++) x.set(d.x.subarray((i % d.n) * per, ((i % d.n) + 1) * per), i * per);
    return { x, n, inputs: `dataset '${ctx.with.data}' (${d.n} test samples, repeated to the model's fixed batch of ${n})` };
  }
  n = Math.min(n, fixedBatch ? d.n - (d.n % fixedBatch) : d.n);
  return { x: d.x.slice(0, n * per), n, inputs: `dataset '${ctx.with.data}' (${n} test samples)` };
}

/** The load stage's log line for an import check: what was compared with what, and the numbers. */
export const importCheckLine = (c: ImportCheck): string =>
  `import check vs ${c.runtime}: max |diff| ${c.maxAbsDiff.toExponential(2)} over output scale ${c.outputScale.toPrecision(3)} (relative ${c.relativeDiff.toExponential(2)}, tolerance ${c.tolerance}) on ${c.inputs}`;
