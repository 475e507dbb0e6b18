import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { FromSchema } from 'json-schema-to-ts';
import { emptyMeta } from '../model/meta.js';
import { confinedPath, lexicalEscape } from '../util/paths.js';
import { defineStage } from './types.js';
import { engineFor, saveOutputModel } from './support.js';

export const loadWithSchema = {
  type: 'object',
  properties: {
    path: { type: 'string', minLength: 1, description: 'a TF.js model directory or model.json, a Keras .h5 or a Keras 3 .keras file, relative to the recipe' },
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
  if (!dir) return [full];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json') || f.endsWith('.bin'))
    .sort()
    .map((f) => join(dir, f));
}

export const loadStage = defineStage<LoadWith>({
  kind: 'load',
  version: '1',
  description: 'load a TF.js layers model or a Keras (.h5 / .keras) model from the repository',
  withSchema: loadWithSchema,
  datasets: () => [],
  files: (w, workspace) => modelFiles(workspace, w.path),
  producesModel: true,
  metrics: ['params'],
  needsModels: [0, 0],
  // At validation time, so the error points at the recipe line; symlinks are judged when read.
  check(w) {
    const why = lexicalEscape(w.path);
    return why ? [{ path: ['with', 'path'], message: `model path '${w.path}' ${why}` }] : [];
  },
  async run(ctx) {
    const { tf } = await engineFor(ctx);
    const { loadModelFrom } = await import('../model/load/index.js');
    const model = await loadModelFrom(tf, confinedPath(ctx.workspace, ctx.with.path, 'model path'));
    const meta = emptyMeta();
    meta.provenance = { source: ctx.with.path };
    await saveOutputModel(tf, model, meta, ctx);
    const params = model.countParams();
    const layers = model.layers.map((l) => ({ name: l.name, type: l.getClassName(), params: l.countParams() }));
    model.dispose();
    return { metrics: { params, layers } };
  },
});
