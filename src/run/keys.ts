import { relative } from 'node:path';
import { hashJson } from '../cache/hash.js';
import type { FileDigests } from '../cache/file-digests.js';
import { dataFiles, dataFileNames, dataSourceVersion } from '../data/load.js';
import type { LoadedRecipe, ResolvedStage } from '../recipe/load.js';
import { stageKind } from '../stages/registry.js';
import { setOwn } from '../util/own.js';

/** `with` keys that do not change a stage's outputs (so changing them re-uses the cache). */
const OUTPUT_NEUTRAL_KEYS = new Set(['gates']);

export interface KeyInputs {
  kind: string;
  version: string;
  with: Record<string, unknown>;
  inputs: string[];
  data: Record<string, string>;
  /** Digests of repository files `with` refers to (models to load, scripts to exec). */
  files?: Record<string, string>;
  engine: string;
  seed: number;
  [k: string]: unknown;
}

export async function dataDigest(recipe: LoadedRecipe, name: string, files: FileDigests): Promise<string> {
  const spec = recipe.data[name];
  const digests = [];
  for (const f of dataFiles(spec, recipe.dir)) digests.push(await files.digest(f));
  const names = dataFileNames(spec, recipe.dir);
  const loader = dataSourceVersion(spec);
  return hashJson({ spec, files: digests, ...(names ? { names } : {}), ...(loader ? { loader } : {}) });
}

/**
 * Everything that changes a stage's output, nothing else (Turborepo-style): kind and implementation
 * version, resolved `with` (params and defaults applied), upstream output digests in `needs` order,
 * data content, engine identity and seed. Stage ids are not in it: renaming a stage keeps its cache.
 */
export function keyInputsFor(stage: ResolvedStage, upstreamDigests: string[], data: Record<string, string>, engine: string, seed: number, files?: Record<string, string>): KeyInputs {
  const kind = stageKind(stage.uses)!;
  const w: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(stage.with)) if (!OUTPUT_NEUTRAL_KEYS.has(k)) setOwn(w, k, v);
  return { kind: kind.kind, version: kind.version, with: w, inputs: upstreamDigests, data, files, engine, seed };
}

/** Digests of the repository files a stage reads, keyed by path relative to the recipe. */
export async function stageFileDigests(stage: ResolvedStage, recipe: LoadedRecipe, digests: FileDigests): Promise<Record<string, string> | undefined> {
  const kind = stageKind(stage.uses)!;
  if (!kind.files) return undefined;
  const out: Record<string, string> = {};
  for (const f of kind.files(stage.with as never, recipe.dir)) {
    try {
      setOwn(out, relative(recipe.dir, f), await digests.digest(f));
    } catch {
      setOwn(out, relative(recipe.dir, f), 'missing');
    }
  }
  return out;
}

export function keyOf(inputs: KeyInputs): string {
  return hashJson(inputs);
}

/** What every stage key of one run shares: the recipe, the engine, the data digests, the file digest cache. */
export interface KeyContext {
  recipe: LoadedRecipe;
  engine: string;
  /** Digest of each dataset the keyed stages read. */
  data: Record<string, string>;
  files: FileDigests;
}

/** Digests the named datasets once, for all the keys of a run. */
export async function keyContext(recipe: LoadedRecipe, engine: string, files: FileDigests, datasets: Iterable<string>): Promise<KeyContext> {
  const data: Record<string, string> = {};
  for (const name of new Set(datasets)) setOwn(data, name, await dataDigest(recipe, name, files));
  return { recipe, engine, data, files };
}

export interface StageKey {
  key: string;
  inputs: KeyInputs;
}

/**
 * The one way a stage's cache key is computed (run, `--frozen`, `status`, `verify`): from its upstream
 * output digests, in `needs` order (from the cache, or from the lock for `--frozen`).
 */
export async function stageKey(ctx: KeyContext, stage: ResolvedStage, upstreamDigests: string[]): Promise<StageKey> {
  const data: Record<string, string> = {};
  for (const n of stage.datasets) data[n] = ctx.data[n];
  const inputs = keyInputsFor(stage, upstreamDigests, data, ctx.engine, ctx.recipe.seed, await stageFileDigests(stage, ctx.recipe, ctx.files));
  return { key: keyOf(inputs), inputs };
}

/** Why a key differs from the previous one, in words (`with.epochs: 3 -> 5`, `upstream changed`). */
export function explainChange(prev: KeyInputs | undefined, cur: KeyInputs, needs: string[]): string {
  if (!prev) return 'not in cache';
  const reasons: string[] = [];
  if (prev.kind !== cur.kind) reasons.push(`kind ${prev.kind} -> ${cur.kind}`);
  else if (prev.version !== cur.version) reasons.push(`${cur.kind} implementation ${prev.version} -> ${cur.version}`);
  const changes = diffValues(prev.with, cur.with, 'with');
  if (changes.length) reasons.push(changes.slice(0, 3).join(', ') + (changes.length > 3 ? ` (+${changes.length - 3} more)` : ''));
  const changedUp = needs.filter((_, i) => prev.inputs[i] !== cur.inputs[i]);
  if (prev.inputs.length !== cur.inputs.length) reasons.push('upstream stages changed');
  else if (changedUp.length) reasons.push(`upstream ${changedUp.map((n) => `'${n}'`).join(', ')} changed`);
  const dataChanged = Object.keys({ ...prev.data, ...cur.data }).filter((k) => prev.data[k] !== cur.data[k]);
  if (dataChanged.length) reasons.push(`data ${dataChanged.map((n) => `'${n}'`).join(', ')} changed`);
  const pf = prev.files ?? {};
  const cf = cur.files ?? {};
  const filesChanged = Object.keys({ ...pf, ...cf }).filter((k) => pf[k] !== cf[k]);
  if (filesChanged.length) reasons.push(`file${filesChanged.length > 1 ? 's' : ''} ${filesChanged.join(', ')} changed`);
  if (prev.engine !== cur.engine) reasons.push(`engine ${prev.engine} -> ${cur.engine}`);
  if (prev.seed !== cur.seed) reasons.push(`seed ${prev.seed} -> ${cur.seed}`);
  return reasons.length ? reasons.join('; ') : 'not in cache';
}

function diffValues(a: unknown, b: unknown, path: string): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const out: string[] = [];
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      out.push(...diffValues((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`));
    }
    return out;
  }
  const show = (v: unknown) => (v === undefined ? '(unset)' : JSON.stringify(v));
  return [`${path}: ${show(a)} -> ${show(b)}`];
}
