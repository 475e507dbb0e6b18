import type { FromSchema } from 'json-schema-to-ts';
import type * as tfType from '@tensorflow/tfjs';
import { accountSizes, accountSizesInBackground, type SizeLayerInput, type SizeOptions } from '../compression/size.js';
import { ratioBase } from '../report/sizes.js';
import { dataRefSchema } from './common-schema.js';
import { defineStage } from './types.js';
import { engineFor, inputShapeOf, outputClassesOf, loadInputModel } from './support.js';
import { fitDataToModel } from '../data/fit.js';
import { modelStats } from '../prune/stats.js';
import type { ModelMeta } from '../model/meta.js';
import { inferencePlan } from '../engine/inference.js';
import { median, timeCalls } from '../util/latency.js';

export const evaluateWithSchema = {
  type: 'object',
  properties: {
    data: dataRefSchema,
    split: { enum: ['test', 'validation', 'train'], default: 'test' },
    batchSize: { type: 'integer', minimum: 1, default: 256 },
    topK: { type: 'integer', minimum: 1, default: 5 },
    latencySamples: { type: 'integer', minimum: 0, default: 50, description: 'batch-1 inferences timed for latencyMs, at most (fewer once 10 have taken 2 s, e.g. a 224x224 model); 0: skip' },
    indexBits: { type: 'integer', minimum: 1, maximum: 16, description: 'relative-index width for sparse size (default 5 dense, 8 conv)' },
    gates: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'e.g. "accuracy >= stages.baseline.accuracy - 0.005"' },
  },
  additionalProperties: false,
} as const;

export type EvaluateWith = FromSchema<typeof evaluateWithSchema>;

/**
 * Sizes here are accounting of the model's weights, not files (see src/compression/size.ts): `denseBytes` is
 * dense fp32; `estimatedBytes` (= `finalBytes`) the Deep Compression storage estimate (CSR + codebook +
 * Huffman) and `estimatedRatio` denseBytes / estimatedBytes (`compressionRatio` the same, but the loaded file's real bytes
 * / estimatedBytes when the model comes straight from a load stage: `compressionRatioOf` says which); `estimatedGzipBytes`
 * gzip -9 of the weights' dense codes laid end to end. Real file sizes come from `export` stages.
 */
export const EVALUATE_METRICS = [
  'accuracy', 'topK', 'loss', 'sparsity', 'params', 'nonzeros', 'denseBytes', 'sparseBytes', 'finalBytes', 'estimatedBytes',
  'estimatedGzipBytes', 'compressionRatio', 'compressionRatioOf', 'sourceFileBytes', 'estimatedRatio', 'macs', 'effectiveMacs', 'latencyMs',
] as const;

export const evaluateStage = defineStage<EvaluateWith>({
  kind: 'evaluate',
  version: '3',
  description: 'measure accuracy, sparsity, size, MACs and latency of the upstream model on held-out data',
  withSchema: evaluateWithSchema,
  datasets: (w) => (w.data ? [w.data] : []),
  producesModel: false,
  metrics: EVALUATE_METRICS,
  needsModels: [1, 1],
  async run(ctx) {
    const { tf, backend } = await engineFor(ctx);
    const { evaluateModel } = await import('../engine/train.js');
    const w = ctx.with;
    const { model, meta, input } = await loadInputModel(tf, ctx);
    const splits = await ctx.loadData(w.data!);
    const data = fitDataToModel(splits[w.split ?? 'test'], inputShapeOf(model), ctx.stageId, outputClassesOf(model, ctx.stageId));
    ctx.progress({ message: `evaluating on ${data.n} ${w.split ?? 'test'} samples` });
    // The storage estimate's gzip -9 of every layer's deployed bytes (seconds on a 20M-parameter model) runs in
    // the thread pool during the accuracy pass.
    const background = accountSizesInBackground(sizeLayers(model, meta, w.indexBits));
    background.sizes.catch(() => undefined); // awaited below; not an unhandled rejection if the pass throws first
    // One pass: accuracy, loss and top-k from the same predictions (batches bounded by activation memory).
    const ev = evaluateModel(tf, model, data, w.batchSize ?? 256, w.topK ?? 5);
    const topK = ev.topK!;
    ctx.progress({ message: `estimating storage (Deep Compression accounting, gzip -9 of ${(model.countParams() / 1e6).toFixed(1)}M weights)` });
    const sizes = await background.sizes;
    const stats = modelStats(model);
    // Per-layer MACs for the layers that multiply (Dense, convolutions); none for the others.
    const macsOf = new Map(stats.layers.filter((l) => l.outputPositions > 0).map((l) => [l.name, l]));
    ctx.progress({ message: 'timing latency' });
    const latencyMs = (w.latencySamples ?? 50) > 0 ? await measureLatency(tf, model, data, w.latencySamples ?? 50) : undefined;
    model.dispose();
    const t = sizes.total;
    // Straight from a load stage, the compression is measured against the loaded file's real bytes.
    const base = ratioBase(input, t.denseBytes);
    return {
      metrics: {
        accuracy: ev.accuracy,
        topK,
        loss: ev.loss,
        sparsity: t.params ? 1 - t.nonzeros / t.params : 0,
        params: t.params + t.biasParams,
        nonzeros: t.nonzeros,
        denseBytes: t.denseBytes,
        sparseBytes: t.sparseBytes,
        finalBytes: t.finalBytes,
        estimatedBytes: t.finalBytes,
        estimatedGzipBytes: t.gzipBytes,
        compressionRatio: base.of === 'sourceFileBytes' ? base.bytes / t.finalBytes : t.ratio,
        compressionRatioOf: base.of,
        ...(base.sourceFileBytes ? { sourceFileBytes: base.sourceFileBytes } : {}),
        estimatedRatio: t.ratio,
        macs: stats.macs,
        effectiveMacs: stats.effectiveMacs,
        latencyMs,
        backend,
        samples: data.n,
        split: w.split ?? 'test',
        ...(data.classNames ? { classes: data.classNames } : {}),
        layers: sizes.layers.map((l) => ({
          name: l.name,
          shape: l.shape,
          params: l.params,
          nonzeros: l.nonzeros,
          kept: l.keptFraction,
          bits: l.bits,
          storage: l.storage,
          denseBytes: l.denseBytes,
          finalBytes: l.finalBytes,
          ratio: l.ratio,
          macs: macsOf.get(l.name)?.macs,
          effectiveMacs: macsOf.get(l.name)?.effectiveMacs,
          quant: meta.weightQuant[l.name]?.method,
          pruning: meta.pruning[l.name]?.method,
        })),
      },
    };
  },
});

/** The size accounting of every layer with weights (see sizeLayers). */
export function sizeReport(model: tfType.LayersModel, meta: ModelMeta, indexBits?: number, opts: Omit<SizeOptions, 'indexBits'> = {}) {
  return accountSizes(sizeLayers(model, meta, indexBits), opts);
}

/** Every layer with weights: its first weight is the kernel (gamma for BatchNorm), the rest count as bias. */
function sizeLayers(model: tfType.LayersModel, meta: ModelMeta, indexBits?: number): SizeLayerInput[] {
  const layers: SizeLayerInput[] = [];
  for (const layer of model.layers) {
    const ws = layer.getWeights();
    if (!ws.length) continue;
    const [k, ...rest] = ws;
    const restValues = rest.map((t) => t.dataSync() as Float32Array);
    const bias = new Float32Array(restValues.reduce((n, a) => n + a.length, 0));
    let off = 0;
    for (const a of restValues) {
      bias.set(a, off);
      off += a.length;
    }
    layers.push({
      name: layer.name,
      kernel: Float32Array.from(k.dataSync() as Float32Array),
      shape: k.shape.slice(),
      bias: bias.length ? bias : undefined,
      quant: meta.weightQuant[layer.name],
      indexBits,
    });
  }
  return layers;
}

/**
 * Median batch-1 inference time after warm-up, in ms per sample, on the stage's backend: up to `samples`
 * timed runs, fewer once 10 have taken LATENCY_BUDGET_MS (util/latency.ts).
 */
export async function measureLatency(tf: typeof tfType, model: tfType.LayersModel, data: { x: Float32Array; n: number; sampleShape: number[] }, samples: number): Promise<number> {
  const size = data.sampleShape.reduce((a, b) => a * b, 1);
  const plan = inferencePlan(tf, model); // how the engine runs inference (batch norm folded)
  const run = (i: number) =>
    tf.tidy(() => {
      const x = tf.tensor(data.x.subarray((i % data.n) * size, ((i % data.n) + 1) * size), [1, ...data.sampleShape]);
      plan.predict(x).dataSync();
    });
  try {
    return median(await timeCalls(run, { samples }));
  } finally {
    plan.dispose();
  }
}
