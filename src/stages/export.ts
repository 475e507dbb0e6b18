import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FromSchema } from 'json-schema-to-ts';
import { dataRefSchema } from './common-schema.js';
import { defineStage } from './types.js';
import { sizeReport } from './evaluate.js';
import { ratioBase } from '../report/sizes.js';
import type * as tfType from '@tensorflow/tfjs';
import { CUSTOM_LAYER_CLASSES } from '../model/custom-layers.js';
import type { ModelMeta } from '../model/meta.js';
import { engineFor, inputShapeOf, outputClassesOf, loadInputModel } from './support.js';
import { fitDataToModel } from '../data/fit.js';
import { sampleSize, transposeImages } from '../data/dataset.js';
import { withNchwInput } from '../model/layout.js';

import { int8OptionsSchema } from '../export/int8-options.js';
import { EXPORT_PRECISIONS, EXPORT_TARGET_NAMES, EXPORT_TARGETS, sparseRefusal, type ExportPrecision, type ExportTarget, type ExportTargetEntry } from '../export/targets.js';

const TARGETS = EXPORT_TARGET_NAMES;
const PRECISIONS = EXPORT_PRECISIONS;

/** Deployment profiles: shorthands for the exports a target environment wants. */
export const PROFILES = {
  mobile: [{ target: 'tflite', precision: 'int8' }],
  edge: [{ target: 'onnx', precision: 'int8' }],
  cloud: [
    { target: 'tfjs', precision: 'float32' },
    { target: 'onnx', precision: 'float32' },
  ],
} as const;

const STORAGES = ['auto', 'dense', 'sparse'] as const;

const one = {
  type: 'object',
  properties: { target: { enum: TARGETS }, precision: { enum: PRECISIONS }, perChannel: { type: 'boolean' }, storage: { enum: STORAGES } },
  required: ['target'],
  additionalProperties: false,
} as const;

export const exportWithSchema = {
  type: 'object',
  properties: {
    target: { enum: TARGETS, description: TARGETS.map((t) => `${t} (${EXPORT_TARGETS[t].describe})`).join(', ') },
    precision: { enum: PRECISIONS, description: TARGETS.map((t) => `${t}: ${EXPORT_TARGETS[t].precisions.join('/')}`).join('; ') },
    profile: { enum: ['mobile', 'edge', 'cloud'], description: 'mobile = tflite int8; edge = onnx int8; cloud = tfjs float32 + onnx float32' },
    targets: { type: 'array', items: one, minItems: 1, description: 'several exports from one stage' },
    perChannel: { type: 'boolean', default: true, description: 'int8 weights with one scale per output channel; false: one per tensor (runtimes / NPUs that need per-tensor weights, e.g. ArmNN 20.08)' },
    storage: { enum: STORAGES, default: 'auto', description: "pruned weights in the target's sparse encoding: auto = per weight where the file gets smaller and the runtime reads it (tflite float32/dynamic-int8/int8: CSR + DENSIFY; onnx float32/int8: sparse_initializer, only with sparse), dense, or sparse (an error where the target/precision has none)" },
    verify: { type: 'boolean', default: true, description: 'load each export in its runtime and compare it with the in-process model on the test split' },
    threshold: { type: 'number', minimum: 0, maximum: 1, description: 'minimum top-1 agreement; without it the default check: agreement on samples whose float margin exceeds the quantization noise >= 0.99 int8 / 0.999 float, and accuracy loss <= 1 point (0.2 float)' },
    inputLayout: { enum: ['nhwc', 'nchw'], description: 'nchw: the exported model takes channels-first images [C, H, W] like the PyTorch model (a transpose at its input); verified with NCHW inputs' },
    calibrationSamples: { type: 'integer', minimum: 1, default: 256, description: 'training samples for activation ranges, equalization and bias correction (int8)' },
    int8: int8OptionsSchema,
    data: dataRefSchema,
    gates: { type: 'array', items: { type: 'string', minLength: 1 } },
  },
  additionalProperties: false,
} as const;

export type ExportWith = FromSchema<typeof exportWithSchema>;

export interface ExportSpec {
  target: ExportTarget;
  precision: ExportPrecision;
  perChannel: boolean;
  storage: (typeof STORAGES)[number];
}

export function exportsOf(w: ExportWith): ExportSpec[] {
  const perChannel = w.perChannel ?? true;
  const storage = w.storage ?? 'auto';
  if (w.targets) return w.targets.map((t) => ({ target: t.target, precision: t.precision ?? 'float32', perChannel: t.perChannel ?? perChannel, storage: t.storage ?? storage }));
  if (w.profile) return PROFILES[w.profile].map((p) => ({ ...p, perChannel, storage }));
  if (w.target) return [{ target: w.target, precision: w.precision ?? 'float32', perChannel, storage }];
  return [];
}

/**
 * Size metrics name what they measure (see src/report/sizes.ts): `fileBytes` / `gzipBytes` are the real
 * exported file(s), raw and gzip -9; `sourceBytes` is the source model dense fp32 (weights x 4 bytes);
 * `estimatedBytes` is the Deep Compression storage estimate of the source model (CSR + codebook + Huffman),
 * which no file holds; ratios divide the source model's dense fp32 bytes by them. Scalars are the first
 * export's; `exports` lists every export of the stage.
 */
export const EXPORT_METRICS = [
  'fileBytes', 'gzipBytes', 'sourceBytes', 'sourceFileBytes', 'fileRatio', 'fileRatioOf', 'estimatedBytes', 'estimatedRatio', 'accuracy', 'agreement', 'confidentAgreement',
  'accuracyDelta', 'maxAbsDiff', 'latencyMs',
] as const;

export const exportStage = defineStage<ExportWith>({
  kind: 'export',
  version: '9',
  description: 'write the upstream model for a deployment target (TFLite, ONNX, TF.js) and verify it in that runtime',
  withSchema: exportWithSchema,
  datasets: (w) => (w.data ? [w.data] : []),
  producesModel: false,
  metrics: EXPORT_METRICS,
  needsModels: [1, 1],
  check(w) {
    const list = exportsOf(w);
    if (!list.length) return [{ path: ['with'], message: 'an export stage needs with.target, with.profile or with.targets' }];
    // Each target has its own precisions and storages (the export-target registry); a pair it lacks fails at validation.
    return list.flatMap((e, i) => {
      const entry = EXPORT_TARGETS[e.target] as ExportTargetEntry;
      if (!entry.supports(e.precision)) {
        return [{ path: w.targets ? ['with', 'targets', i, 'precision'] : ['with', 'precision'], message: `target '${e.target}' has no precision '${e.precision}' (${e.target}: ${entry.precisions.join(', ')})` }];
      }
      const rule = entry.storage(e.precision);
      if (e.storage !== 'sparse' || rule.sparse) return [];
      const path = w.targets?.[i]?.storage ? ['with', 'targets', i, 'storage'] : ['with', 'storage'];
      return [{ path, message: sparseRefusal(e.target, e.precision, rule) }];
    });
  },
  async run(ctx) {
    const { tf } = await engineFor(ctx);
    const { writeExport, exportLayerErrors, verifyExport, worstLayer } = await import('../export/index.js');
    const w = ctx.with;
    const list = exportsOf(w);
    if (!list.length) throw new Error(`stage '${ctx.stageId}': set with.target, with.profile or with.targets`);
    const loaded = await loadInputModel(tf, ctx);
    const { meta } = loaded;
    const splits = await ctx.loadData(w.data!);
    const shape = inputShapeOf(loaded.model);
    const classes = outputClassesOf(loaded.model, ctx.stageId);
    let train = fitDataToModel(splits.train, shape, ctx.stageId, classes);
    let test = fitDataToModel(splits.test, shape, ctx.stageId, classes);
    let model = loaded.model;
    if (w.inputLayout === 'nchw') {
      // The exports take [C, H, W]: the model gets a transpose in front, and is checked on NCHW samples.
      model = withNchwInput(tf, loaded.model);
      train = transposeImages(train, 'nchw');
      test = transposeImages(test, 'nchw');
    }
    // The first samples of the train split, as a view (no copy); one object, so the export and its layer-error
    // report share one int8-prepared graph (targets.ts caches it by the calibration array).
    const k = Math.min(train.n, w.calibrationSamples ?? 256);
    const calib = { x: train.x.subarray(0, k * sampleSize(train)), sampleShape: train.sampleShape };
    const source = sourceSizes(model, meta);
    const base = ratioBase(loaded.input, source.sourceBytes);
    const rows: Array<Record<string, unknown>> = [];
    for (const e of list) {
      const dir = list.length === 1 ? ctx.outDir : join(ctx.outDir, `${e.target}-${e.precision}${e.perChannel ? "" : "-per-tensor"}`);
      ctx.progress({ message: `exporting ${e.target} ${e.precision}` });
      const opts = { target: e.target, precision: e.precision, perChannel: e.perChannel, storage: e.storage, int8: w.int8 };
      // The file's gzip -9 size is computed in the thread pool while the layer errors and the verification run.
      const res = await writeExport(tf, model, meta, { ...opts, calibration: calib.x, calibrationShape: calib.sampleShape }, dir);
      const row: Record<string, unknown> = {
        target: e.target, precision: e.precision, ...(e.perChannel ? {} : { perChannel: false }), files: res.files, fileBytes: res.bytes, gzipBytes: undefined,
        sourceBytes: source.sourceBytes, ...(base.sourceFileBytes ? { sourceFileBytes: base.sourceFileBytes } : {}), fileRatio: base.bytes / res.bytes, fileRatioOf: base.of, estimatedBytes: source.estimatedBytes, estimatedRatio: source.estimatedRatio,
        ...(await storageFacts(e, dir, res.files)),
        ...tfjsCustomClasses(e.target, model, ctx),
      };
      const report = await exportLayerErrors(tf, model, meta, { ...opts, calibration: calib.x, calibrationShape: calib.sampleShape }, test.x, Math.min(test.n, LAYER_ERROR_SAMPLES));
      const errors = report?.layers;
      const worst = errors ? worstLayer(errors) : undefined;
      if (report && errors) {
        Object.assign(row, {
          layers: errors.map((l) => ({ ...l, snrDb: round(l.snrDb), snrDropDb: round(l.snrDropDb), cosine: round(l.cosine, 6) })), layerSamples: report.samples,
          worstLayer: worst?.layer, worstLayerSnrDb: worst && round(worst.snrDb), worstLayerSnrDropDb: worst && round(worst.snrDropDb),
        });
      }
      if (w.verify ?? true) {
        ctx.progress({ message: `verifying ${e.target} ${e.precision} in its runtime on ${test.n} samples` });
        const v = await verifyExport(tf, { target: e.target, precision: e.precision, dir, files: res.files }, model, test, { threshold: w.threshold, meta, perChannel: e.perChannel, layerErrors: errors }).catch((err: Error & { check?: Record<string, unknown> }) => {
          // A failed check keeps its numbers (agreement, flips, accuracy delta) in report.json next to the rows before it.
          if (err.check) Object.assign(err, { metrics: { exports: [...rows, { ...row, ...err.check, failed: err.message }] } });
          throw err;
        });
        Object.assign(row, v);
      }
      row.gzipBytes = await res.gzipBytes;
      rows.push(row);
    }
    loaded.model.dispose();
    const first = rows[0];
    return {
      metrics: {
        ...Object.fromEntries(EXPORT_METRICS.map((k) => [k, first[k]])),
        target: first.target,
        precision: first.precision,
        runtime: first.runtime,
        exports: rows,
      },
    };
  },
});

/**
 * A TF.js export of a model with compress's own layer classes (GroupedConv2D, LayerScale, ...: Keras layers
 * tfjs-layers lacks) loads in a TF.js app only after it registers them: the row names them and the stage says how.
 */
function tfjsCustomClasses(target: string, model: tfType.LayersModel, ctx: { log(m: string): void }): { customLayerClasses?: string[] } {
  if (target !== 'tfjs') return {};
  const used = [...new Set(model.layers.map((l) => l.getClassName()).filter((c) => CUSTOM_LAYER_CLASSES.includes(c)))];
  if (!used.length) return {};
  ctx.log(`note: the TF.js model uses compress's layer classes ${used.join(', ')} (Keras layers tfjs-layers lacks); a TF.js app registers them before loading it: import { registerCustomLayers } from '@compress-ml/compress/tfjs-layers'; registerCustomLayers(tf)`);
  return { customLayerClasses: used };
}

/** Test samples the simulated per-layer int8 error runs on at most (fewer for a large model: layerErrorSampleCount). */
const LAYER_ERROR_SAMPLES = 64;
const round = (v: number, d = 2) => Number(v.toFixed(d));

/**
 * The source model's dense fp32 bytes and its Deep Compression storage estimate (the same accounting as `evaluate`;
 * without its gzip column, which the export's metrics do not report: the file's own gzip is measured).
 */
function sourceSizes(model: tfType.LayersModel, meta: ModelMeta): { sourceBytes: number; estimatedBytes: number; estimatedRatio: number } {
  const t = sizeReport(model, meta, undefined, { gzip: false }).total;
  return { sourceBytes: t.denseBytes, estimatedBytes: t.finalBytes, estimatedRatio: t.ratio };
}

/**
 * How the file stores its weights, read back from it: `sparse (n tensors)` or `dense`, and how (sparse) or
 * why pruned weights stayed dense where the target or precision cannot carry them.
 */
async function storageFacts(e: ExportSpec, dir: string, files: string[]): Promise<{ storage: string; storageNote?: string }> {
  const entry = EXPORT_TARGETS[e.target] as ExportTargetEntry;
  const rule = entry.storage(e.precision);
  const read = async (name: string) => {
    if (!files.includes(name)) throw new Error(`export in ${dir} has no ${name}`);
    return new Uint8Array(await readFile(join(dir, name)));
  };
  const sparse = await entry.sparseTensors(read);
  if (sparse) return { storage: `sparse (${sparse} tensor${sparse === 1 ? '' : 's'})`, storageNote: rule.how };
  if (e.storage === 'dense') return { storage: 'dense' };
  if (!rule.sparse || (e.storage === 'auto' && !rule.auto)) return { storage: 'dense', storageNote: rule.how };
  return { storage: 'dense', storageNote: e.storage === 'sparse' ? 'no weight has zeros: nothing to store sparse' : 'no weight is smaller sparse' };
}
