import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { FromSchema } from 'json-schema-to-ts';
import { onnxExternalFiles } from '../model/load/onnx-read.js';
import { emptyMeta } from '../model/meta.js';
import { InputError } from '../errors/input-error.js';
import { confinedPath, lexicalEscape } from '../util/paths.js';
import { defineStage } from './types.js';
import { engineFor, saveOutputModel } from './support.js';

export const loadWithSchema = {
  type: 'object',
  properties: {
    path: { type: 'string', minLength: 1, description: 'a TF.js model directory or model.json, a Keras .h5, a Keras 3 .keras or an ONNX .onnx file, relative to the recipe' },
    weights: { type: 'string', minLength: 1, description: "Keras's model.save_weights() file (.h5 / .weights.h5) for a `path` holding model.to_json() architecture JSON, relative to the recipe" },
    from: { type: 'string', minLength: 1, description: 'an upstream stage (listed in needs) whose output directory holds `path`, e.g. an exec stage that trains and exports the model in PyTorch' },
    data: { type: 'string', minLength: 1, description: 'ONNX / TF.js graph-model import: the dataset whose samples check the import against onnxruntime / tfjs\'s graph executor (default: the recipe\'s only dataset; seeded random inputs when there is none)' },
    output: { type: 'string', minLength: 1, description: "TF.js graph-model import of a model with several outputs (a detector's heads, a face model's age and gender): the one to import, by signature key or tensor name (`Identity_1`, `Identity_1:0`)" },
    softmax: { type: 'boolean', description: 'ONNX import: add a Softmax after a classifier that outputs logits or log-probabilities (default true: compress trains and evaluates on probabilities)' },
    verify: {
      type: 'object',
      description: 'import check (ONNX, TF.js graph models): the original file runs in onnxruntime / tfjs\'s graph executor and the imported model in tfjs on the same inputs',
      properties: {
        tolerance: { type: 'number', exclusiveMinimum: 0, default: 0.0001, description: 'largest allowed max |difference| / max |reference output|' },
        samples: { type: 'integer', minimum: 1, maximum: 1024, default: 8, description: 'how many samples to compare' },
      },
      additionalProperties: false,
    },
  },
  required: ['path'],
  additionalProperties: false,
} as const;

export type LoadWith = FromSchema<typeof loadWithSchema>;

/** The files a model path stands for (a TF.js model is model.json plus its shards). */
export function modelFiles(workspace: string, path: string): string[] {
  const full = confinedPath(workspace, path, 'model path');
  const st = statSync(full, { throwIfNoEntry: false });
  if (!st) return [full];
  const dir = st.isDirectory() ? full : full.endsWith('.json') ? dirname(full) : undefined;
  if (!dir) return isOnnxPath(full) ? [full, ...onnxExternalFiles(full)] : [full];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json') || f.endsWith('.bin'))
    .sort()
    .map((f) => join(dir, f));
}

const isOnnxPath = (p: string): boolean => p.toLowerCase().endsWith('.onnx');

export const loadStage = defineStage<LoadWith>({
  kind: 'load',
  // 5: an ONNX model ending in LogSoftmax gets its softmax on the logits (the LogSoftmax layer leaves it);
  // a fixed-batch export's Reshape to [batch, -1] keeps the batch axis.
  version: '5',
  description: 'load a TF.js layers model, a Keras (.h5 / .keras) model, a TF.js graph model (imported and checked against tfjs\'s graph executor) or an ONNX model (imported and checked against onnxruntime) from the repository or an upstream stage',
  withSchema: loadWithSchema,
  // A .json / directory may be a graph model (checked on the data too): only Keras files never use it.
  datasets: (w) => (w.data && !/\.(h5|hdf5|keras)$/i.test(w.path) ? [w.data] : []),
  dataOptional: true,
  // A model from an upstream stage is covered by that stage's output digests.
  files: (w, workspace) => (w.from ? [] : [...modelFiles(workspace, w.path), ...(w.weights ? [confinedPath(workspace, w.weights, 'weights path')] : [])]),
  // A model from an upstream stage exists only once that stage has run.
  requiredFiles: (w) =>
    w.from
      ? []
      : [{ path: ['with', 'path'], file: w.path, what: 'model path' }, ...(w.weights ? [{ path: ['with', 'weights'], file: w.weights, what: 'weights path' }] : [])],
  producesModel: true,
  metrics: ['params', 'sourceFileBytes', 'sourceBytes', 'importRelativeDiff'],
  needsModels: [0, 0],
  // At validation time, so the error points at the recipe line; symlinks are judged when read.
  check(w, stage) {
    const why = lexicalEscape(w.path, w.from ? `stage '${w.from}''s output directory` : undefined);
    const problems = why ? [{ path: ['with', 'path'], message: `model path '${w.path}' ${why}` }] : [];
    const whyWeights = w.weights ? lexicalEscape(w.weights) : undefined;
    if (whyWeights) problems.push({ path: ['with', 'weights'], message: `weights path '${w.weights}' ${whyWeights}` });
    if (w.from && !stage.needs.includes(w.from)) problems.push({ path: ['with', 'from'], message: `'${w.from}' is not in needs (needs: ${stage.needs.join(', ') || 'none'})` });
    return problems;
  },
  async run(ctx) {
    const { tf } = await engineFor(ctx);
    const { loadModelFrom, detectModelFormat } = await import('../model/load/index.js');
    const base = ctx.with.from ? ctx.inputs.find((i) => i.id === ctx.with.from)?.dir : ctx.workspace;
    if (!base) throw new Error(`stage '${ctx.stageId}': upstream stage '${ctx.with.from}' handed over no output directory`);
    const file = confinedPath(base, ctx.with.path, 'model path');
    const meta = emptyMeta();
    meta.provenance = { source: ctx.with.from ? `${ctx.with.from}:${ctx.with.path}` : ctx.with.path };
    let model: Awaited<ReturnType<typeof loadModelFrom>>;
    let importCheck: Record<string, unknown> | undefined;
    const { readTfjsGraphSource } = await import('../model/load/tfjs.js');
    // A TF.js graph model is imported and checked like an ONNX file; a layers model.json loads as it is.
    const graph = !ctx.with.weights && (await detectModelFormat(file)) === 'tfjs' ? await readTfjsGraphSource(tf, file) : undefined;
    if (ctx.with.output !== undefined && !graph) throw new InputError(`output '${ctx.with.output}': choosing an output is for TF.js graph models only, and ${ctx.with.path} is not one`, { file });
    if (graph) graph.output = ctx.with.output;
    if (isOnnxPath(ctx.with.path)) {
      const { importOnnxVerified } = await import('./load-onnx.js');
      ({ model, importCheck } = await importOnnxVerified(tf, file, ctx, meta));
    } else if (graph) {
      const { importTfjsGraphVerified } = await import('./load-tfjs-graph.js');
      ({ model, importCheck } = await importTfjsGraphVerified(tf, graph, ctx, meta));
    } else if (ctx.with.weights) {
      const { loadKerasJsonWithWeights } = await import('../model/load/keras.js');
      model = await loadKerasJsonWithWeights(tf, file, confinedPath(base, ctx.with.weights, 'weights path'));
    } else model = await loadModelFrom(tf, file);
    // The source's real size: its files' bytes (a TF.js model stored as uint8 is a quarter of its fp32 size).
    const files = [...(ctx.with.from ? modelFiles(base, ctx.with.path) : modelFiles(ctx.workspace, ctx.with.path)), ...(ctx.with.weights ? [confinedPath(base, ctx.with.weights, 'weights path')] : [])];
    const sourceFileBytes = files.reduce((a, f) => a + (statSync(f, { throwIfNoEntry: false })?.size ?? 0), 0);
    meta.provenance.sourceFileBytes = sourceFileBytes;
    await saveOutputModel(tf, model, meta, ctx);
    const params = model.countParams();
    const layers = model.layers.map((l) => ({ name: l.name, type: l.getClassName(), params: l.countParams() }));
    model.dispose();
    return { metrics: { params, sourceFileBytes, sourceBytes: params * 4, layers, ...(importCheck ? { importCheck, importRelativeDiff: importCheck.relativeDiff } : {}) } };
  },
});
