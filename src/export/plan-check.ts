import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError, describeError } from '../errors/input-error.js';
import type { LoadedRecipe, ResolvedStage } from '../recipe/load.js';
import { stageKind } from '../stages/registry.js';
import { confinedPath } from '../util/paths.js';
import { staticLayerProblem } from './layers.js';

/**
 * Fail fast: before any stage runs (`compress validate`, the start of `compress run`), every export
 * stage's targets are checked against the layers of the model it will export, read from the load
 * stage's file without building the model. A layer a target cannot express stops the run naming the
 * stage, the target, the layer and what to change, instead of failing after training and
 * quantization. Built-in architectures export everywhere; an ONNX import is checked when it runs.
 */
export interface StaticLayer {
  /** Path name, as the loader names it (`mobilenetv2_0.35/Conv1` inside nested models). */
  name: string;
  className: string;
  /** tfjs (camelCase) config. */
  config: Record<string, unknown>;
}

type Json = Record<string, unknown>;
const NESTED = new Set(['Sequential', 'Model', 'Functional']);
/** Targets written from the IR (the TF.js target stores tfjs's own layers, so whatever loads exports). */
const GRAPH_TARGETS = new Set(['tflite', 'onnx']);

const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** tfjs's reading of a Keras-dialect config: keys and string values (other than names) in camelCase. */
function tfjsConfig(c: Json): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(c)) out[camel(k)] = typeof v === 'string' && k !== 'name' ? camel(v) : v;
  return out;
}

/** The layers of a tfjs-dialect topology (`{class_name, config}`, possibly under `model_config`), nested models expanded. */
export function topologyLayers(topology: Json, prefix: string[] = []): StaticLayer[] {
  const t = (topology.model_config && typeof topology.model_config === 'object' ? topology.model_config : topology) as Json;
  const cfg = t.config as Json | Json[] | undefined;
  const layers = (Array.isArray(cfg) ? cfg : (cfg?.layers as Json[] | undefined)) ?? [];
  return layers.flatMap((l) => {
    const lc = (l.config ?? {}) as Json;
    const name = String(l.name ?? lc.name ?? '');
    const cls = String(l.class_name ?? '');
    if (NESTED.has(cls)) return topologyLayers(l, [...prefix, name]);
    return [{ name: [...prefix, name].join('/'), className: cls, config: tfjsConfig(lc) }];
  });
}

/** The layers a model file declares, without building it; undefined for ONNX and TF.js graph models (known only after the import). */
export async function modelFileLayers(path: string): Promise<StaticLayer[] | undefined> {
  const { detectModelFormat } = await import('../model/load/index.js');
  const format = await detectModelFormat(path);
  if (format === 'onnx') return undefined;
  if (format === 'tfjs') {
    const json = (await stat(path)).isDirectory() ? join(path, 'model.json') : path;
    let parsed: Json;
    try {
      parsed = JSON.parse(await readFile(json, 'utf8')) as Json;
    } catch (e) {
      throw new InputError(`cannot read the model topology: ${describeError(e)}`, { file: json });
    }
    const keras = await import('../model/load/keras.js');
    if (keras.isKerasArchitectureJson(parsed)) return topologyLayers(keras.kerasConfigToTfjs(parsed, json));
    if (!parsed.modelTopology || typeof parsed.modelTopology !== 'object') return undefined; // the load stage reports it
    if ('node' in parsed.modelTopology) return undefined; // a graph model: its layers are known after the import
    return topologyLayers(parsed.modelTopology as Json);
  }
  const { readKerasTopology } = await import('../model/load/keras.js');
  return topologyLayers(await readKerasTopology(path));
}

/** The load stage whose model `stage` ends up with (following the first upstream model of each stage), if any. */
function sourceLoad(recipe: LoadedRecipe, stage: ResolvedStage): ResolvedStage | undefined {
  const seen = new Set<string>();
  let s: ResolvedStage | undefined = stage;
  while (s && !seen.has(s.id)) {
    seen.add(s.id);
    if (s.uses === 'load') return s;
    if (s.uses === 'train' && s.with.model) return undefined; // a built-in architecture
    const up: string | undefined = s.needs.find((n) => stageKind(recipe.stageById.get(n)?.uses ?? '')?.producesModel);
    s = up ? recipe.stageById.get(up) : undefined;
  }
  return undefined;
}

/** Targets of an export stage's `with` (target, targets[], profile). */
function targetsOf(w: Json): string[] {
  if (Array.isArray(w.targets)) return (w.targets as Json[]).map((t) => String(t.target));
  if (w.profile === 'mobile') return ['tflite'];
  if (w.profile === 'edge') return ['onnx'];
  if (w.profile === 'cloud') return ['tfjs', 'onnx'];
  return w.target ? [String(w.target)] : [];
}

/** Throws an InputError listing every export a layer makes impossible; resolves when there is none. */
export async function checkExportPlan(recipe: LoadedRecipe): Promise<void> {
  const problems: string[] = [];
  const layersOf = new Map<string, Promise<StaticLayer[] | undefined>>();
  for (const stage of recipe.stages.filter((s) => s.uses === 'export')) {
    const targets = [...new Set(targetsOf(stage.with))].filter((t) => GRAPH_TARGETS.has(t));
    const load = targets.length ? sourceLoad(recipe, stage) : undefined;
    // A model an upstream stage writes (load `from:`) exists only once that stage has run.
    if (!load || load.with.from) continue;
    const file = confinedPath(recipe.dir, String(load.with.path), 'model path');
    if (!layersOf.has(file)) layersOf.set(file, modelFileLayers(file));
    const layers = await layersOf.get(file)!;
    if (!layers) continue;
    for (const target of targets) {
      const bad = layers.map((l) => ({ l, why: staticLayerProblem(l.className, l.config) })).filter((x) => x.why);
      if (!bad.length) continue;
      const more = bad.length > 1 ? ` (and ${bad.length - 1} more: ${bad.slice(1, 4).map((x) => `'${x.l.name}' (${x.l.className})`).join(', ')}${bad.length > 4 ? ', ...' : ''})` : '';
      problems.push(
        `stage '${stage.id}' exports to ${target}, which cannot express layer '${bad[0].l.name}' (${bad[0].l.className}) of ${String(load.with.path)} ` +
          `(loaded by stage '${load.id}'): ${bad[0].why}${more}; export this model with target tfjs, or change the layer`,
      );
    }
  }
  if (problems.length) {
    throw new InputError(`${problems.join('\n')}\nno stage was run`, { file: recipe.file });
  }
}
