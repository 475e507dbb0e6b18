import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { BackendChoice } from '../engine/backend.js';
import { dirname, join, resolve } from 'node:path';
import type { ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';
import { loadValidator } from './validator.js';
import { LineCounter, parseDocument } from 'yaml';
import { stageKind } from '../stages/registry.js';
import { RecipeError, shown, suggestion, type RecipeProblem } from './errors.js';
import { interpolateParams, type Unresolved } from './interpolate.js';
import { dotted, locate, pointerToPath, positionOf } from './locate.js';
import { applyOverride, parseOverride, type Override } from './overrides.js';
import { checkTree, yamlErrorMessage } from './yaml-guard.js';
import { recipeBaseSchema, type CacheSpec, type DataSpec, type Recipe } from './schema.js';
import { pathProblems } from './path-fields.js';
import { getOwn, setOwn } from '../util/own.js';
import { findCycle } from '../stage-graph/dag.js';
import { dataSpecProblems, missingDataFiles } from '../data/load.js';
import { confinedPath } from '../util/paths.js';
import { checkGates } from './gates-check.js';
import { expandMatrix, sourcePath, type BranchOrigin } from './matrix.js';

export interface ResolvedStage {
  id: string;
  uses: string;
  needs: string[];
  with: Record<string, any>;
  /** Datasets the stage reads (defaulted to the only dataset when the recipe declares one). */
  datasets: string[];
  timeout?: number;
  memoryMb?: number;
  description?: string;
}

export interface LoadedRecipe {
  file: string;
  dir: string;
  name: string;
  seed: number;
  backend: BackendChoice;
  cacheDir?: string;
  /** The recipe's `cache:` settings (dir, remote, push, endpoint, ...). */
  cache: CacheSpec;
  outDir?: string;
  data: Record<string, DataSpec>;
  params: Record<string, unknown>;
  /** In file order. */
  stages: ResolvedStage[];
  stageById: Map<string, ResolvedStage>;
  overrides: Override[];
  /**
   * A problem at a recipe path (`['stages', id, 'with', 'path']`, a sweep branch's id included), with
   * the position validation would give it: line and column in the file, or the `--set` it came from.
   */
  problemAt?: (path: Array<string | number>, message: string) => RecipeProblem;
}

let validator: ValidateFunction | undefined;

function getValidator(): ValidateFunction {
  validator ??= loadValidator();
  return validator;
}

export interface LoadOptions {
  /** `--set path=value` strings. */
  sets?: string[];
  /** Also check that the data files and model files the stages read exist (validate, the start of run). */
  checkFiles?: boolean;
}

export function loadRecipe(file: string, opts: LoadOptions = {}): LoadedRecipe {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new RecipeError([{ file, path: '', message: code === 'ENOENT' ? 'recipe file not found' : code === 'EISDIR' ? recipesIn(file) : `cannot read recipe (${code})` }]);
  }
  return parseRecipe(text, file, opts);
}

/** For a directory given as the recipe: it is one, and the recipes in it (one is run at a time). */
function recipesIn(dir: string): string {
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch {
    // listed below as none
  }
  return `is a directory; give one recipe file${names.length ? ` (here: ${names.slice(0, 8).map((n) => join(dir, n)).join(', ')}${names.length > 8 ? ', ...' : ''})` : ''}`;
}

/** Parses, overrides, interpolates, validates and checks a recipe; throws RecipeError with every problem. */
export function parseRecipe(text: string, file: string, opts: LoadOptions = {}): LoadedRecipe {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const problems: RecipeProblem[] = [];
  for (const err of doc.errors) {
    const lp = err.linePos?.[0] ?? lc.linePos(err.pos[0]);
    problems.push({ file, line: lp.line, col: lp.col, path: '', message: `YAML: ${yamlErrorMessage(err.message)}` });
  }
  // An unknown tag (`!!js/function`, `!custom`) would silently become a plain string: say it is not YAML a recipe knows.
  for (const w of doc.warnings.filter((x) => x.code === 'TAG_RESOLVE_FAILED')) {
    const lp = w.linePos?.[0] ?? lc.linePos(w.pos[0]);
    const tag = /Unresolved tag: (\S+)/.exec(w.message)?.[1] ?? 'tag';
    problems.push({ file, line: lp.line, col: lp.col, path: '', message: `YAML: unknown tag ${shown(tag)}: recipes use plain YAML values (no !! or ! tags beyond the YAML 1.2 core schema)` });
  }
  if (problems.length) throw new RecipeError(problems);
  const tree = checkTree(doc);
  if (tree) throw new RecipeError([{ file, ...positionOf(lc, tree.offset), path: '', message: `YAML: ${tree.message}` }]);

  const overrides = (opts.sets ?? []).map(parseOverride);
  for (const o of overrides) applyOverride(doc, o);

  let raw: unknown;
  try {
    // checkTree bounded what aliases expand to (and with a position); yaml's own count would refuse
    // ordinary reuse of an anchor over 100 times, without one.
    raw = doc.toJS({ maxAliasCount: -1 });
  } catch (e) {
    throw new RecipeError([{ file, path: '', message: `YAML: ${(e as Error).message.split('\n')[0]}` }]);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new RecipeError([{ file, line: 1, col: 1, path: '', message: 'a recipe must be a mapping with `version` and `stages`' }]);
  }

  let origins = new Map<string, BranchOrigin>();
  const where = (at: Array<string | number>, atKey = false) => {
    const path = sourcePath(at, origins, atKey);
    const o = overrides.find((ov) => ov.path.length <= path.length && ov.path.every((s, i) => String(path[i]) === s));
    if (o) return { origin: `--set ${o.text}` };
    const pos = locate(doc, lc, path, atKey);
    if (pos) return pos;
    // A node only --set made (`--set stages.x.with.y=1` makes `stages.x`) has no place in the file.
    const maker = overrides.find((ov) => path.every((s, i) => ov.path[i] === String(s)));
    return maker ? { origin: `--set ${maker.text}` } : {};
  };
  const problem = (path: Array<string | number>, message: string, atKey = false) =>
    problems.push({ file, path: dotted(sourcePath(path, origins, atKey)), message, ...where(path, atKey) });

  // ${params.x}: resolve before validation so types are checked on the values stages will see.
  const params = ((raw as Record<string, unknown>).params ?? {}) as Record<string, unknown>;
  const unresolved: Unresolved[] = [];
  const obj = raw as Record<string, unknown>;
  // Fields a stage kind expands itself at run time (exec's command) get parameter text escaped, so it stays literal.
  const isTemplate = (path: Array<string | number>) => {
    if (path[0] !== 'stages' || path[2] !== 'with' || typeof path[1] !== 'string' || typeof path[3] !== 'string') return false;
    const uses = getOwn(getOwn(obj.stages, path[1]), 'uses');
    return typeof uses === 'string' && (stageKind(uses)?.templates ?? []).includes(path[3]);
  };
  for (const key of Object.keys(obj)) {
    if (key === 'params') continue;
    setOwn(obj, key, interpolateParams(obj[key], params, [key], unresolved, isTemplate));
  }
  for (const u of unresolved) problem(u.path, `unknown parameter '${shown(u.name)}'${suggestion(u.name, Object.keys(params))}`);

  // Sweeps expand before validation, so each branch is checked like a stage written by hand.
  if (obj.stages !== null && typeof obj.stages === 'object' && !Array.isArray(obj.stages)) {
    const ex = expandMatrix(obj.stages as Record<string, unknown>);
    obj.stages = ex.stages;
    origins = ex.origins;
    for (const p of ex.problems) problem(p.path, p.message);
  }

  const validate = getValidator();
  if (!validate(obj)) {
    for (const err of relevantErrors(validate.errors ?? [])) {
      const { path, message, atKey } = describeAjvError(err);
      // A value still holding an unknown `${params.x}` is reported once, as the unknown parameter.
      if (unresolved.some((u) => u.path.join('.') === path.join('.'))) continue;
      problem(path, message, atKey);
    }
  }
  if (problems.length) throw new RecipeError(sortProblems(problems));

  const recipe = obj as unknown as Recipe;
  const data = (recipe.data ?? {}) as Record<string, DataSpec>;
  for (const [name, spec] of Object.entries(data)) for (const p of dataSpecProblems(spec)) problem(['data', name, ...p.path], p.message);
  const dataNames = Object.keys(data);
  const stageIds = Object.keys(recipe.stages);
  const stages: ResolvedStage[] = [];
  for (const id of stageIds) {
    const spec = recipe.stages[id];
    const kind = stageKind(spec.uses)!;
    const w = (spec.with ?? {}) as Record<string, any>;
    const needs = (spec.needs ?? []) as string[];
    needs.forEach((n, i) => {
      if (n === id) problem(['stages', id, 'needs', i], `stage '${id}' cannot need itself`);
      else if (!stageIds.includes(n)) problem(['stages', id, 'needs', i], `unknown stage '${shown(n)}'${suggestion(n, stageIds)}`);
    });
    if (w.data === undefined && dataNames.length === 1 && kindReadsData(kind.withSchema)) w.data = dataNames[0];
    const datasets = kind.datasets(w);
    for (const d of datasets) {
      if (!dataNames.includes(d)) {
        problem(['stages', id, 'with', 'data'], `unknown dataset '${shown(d)}'${suggestion(d, dataNames)}${dataNames.length ? ` (declared: ${dataNames.join(', ')})` : '; declare it under `data:`'}`);
      }
    }
    // Kinds that read data load `with.data` whenever they run (load only for an ONNX import check, which it decides).
    if (kindReadsData(kind.withSchema) && kind.dataOptional !== true && w.data === undefined) {
      problem(['stages', id, spec.with ? 'with' : 'uses'], dataNames.length
        ? `${article(kind.kind)} '${kind.kind}' stage reads a dataset: set with.data (declared: ${dataNames.join(', ')})`
        : `${article(kind.kind)} '${kind.kind}' stage reads a dataset: declare one under \`data:\``);
    }
    for (const pp of pathProblems(kind.withSchema, w, ['stages', id, 'with'])) problem(pp.path, pp.message);
    const models = needs.filter((n) => stageIds.includes(n) && stageKind(recipe.stages[n].uses)?.producesModel);
    const [min, max] = kind.needsModels;
    if (models.length < min) problem(['stages', id, needs.length ? 'needs' : 'uses'], `${article(kind.kind)} '${kind.kind}' stage needs ${min === max ? min : `at least ${min}`} upstream model stage${min === 1 ? '' : 's'} in needs (has ${models.length})`);
    if (models.length > max) problem(['stages', id, 'needs'], `${article(kind.kind)} '${kind.kind}' stage takes at most ${max} upstream model stage${max === 1 ? '' : 's'} (has ${models.length}: ${models.join(', ')})`);
    for (const c of kind.check?.(w as never, { id, needs }) ?? []) problem(['stages', id, ...c.path], c.message);
    stages.push({ id, uses: spec.uses, needs, with: w, datasets, timeout: spec.timeout, memoryMb: spec.memoryMb, description: spec.description });
  }
  // outDir, cache.dir and data file paths: what `run` would refuse before any stage, said here with a position.
  for (const pp of pathProblems(recipeBaseSchema, { ...recipe, stages: {} }, [])) problem(pp.path, pp.message);
  const stageById = new Map(stages.map((s) => [s.id, s]));
  const cycle = findCycle(stages.map((s) => ({ id: s.id, needs: s.needs.filter((n) => stageById.has(n) && n !== s.id) })));
  if (cycle) problem(['stages', cycle[0], 'needs'], `dependency cycle: ${cycle.join(' needs ')}`);
  for (const g of checkGates(stages, stageById)) problem(g.path, g.message);
  if (problems.length) throw new RecipeError(sortProblems(problems));
  if (opts.checkFiles) {
    for (const p of missingInputs(dirname(resolve(file)), data, stages)) problem(p.path, p.message);
    if (problems.length) throw new RecipeError(sortProblems(problems));
  }

  return {
    file,
    dir: dirname(resolve(file)),
    name: recipe.name ?? stripExt(file),
    seed: recipe.seed ?? 0,
    backend: recipe.backend ?? 'auto',
    cacheDir: recipe.cache?.dir,
    cache: recipe.cache ?? {},
    outDir: recipe.outDir,
    data,
    params,
    stages,
    stageById,
    overrides,
    problemAt: (path, message) => ({ file, path: dotted(sourcePath(path, origins)), message, ...where(path) }),
  };
}

/** The data files (of datasets stages read) and repository files (load paths) that are not there. */
function missingInputs(dir: string, data: Record<string, DataSpec>, stages: ResolvedStage[]): Array<{ path: Array<string | number>; message: string }> {
  const out: Array<{ path: Array<string | number>; message: string }> = [];
  for (const name of new Set(stages.flatMap((s) => s.datasets))) {
    if (Object.hasOwn(data, name)) for (const p of missingDataFiles(data[name], dir)) out.push({ path: ['data', name, ...p.path], message: p.message });
  }
  for (const s of stages) {
    for (const f of stageKind(s.uses)?.requiredFiles?.(s.with as never) ?? []) {
      let full: string;
      try {
        full = confinedPath(dir, f.file, f.what);
      } catch {
        continue; // a path that leaves the recipe's directory: reported by the path checks or by the stage
      }
      if (!existsSync(full)) out.push({ path: ['stages', s.id, ...f.path], message: `${f.what} '${f.file}' not found (${full})` });
    }
  }
  return out;
}

/** What a value of the wrong type is, for `must be integer, got ...`: NaN and 1.5 by value, others by kind. */
function gotType(v: unknown): string {
  if (typeof v === 'number') return Number.isFinite(v) ? `number ${v}` : String(v);
  return Array.isArray(v) ? 'array' : v instanceof Set ? 'a set (!!set)' : typeof v === 'object' ? 'mapping' : typeof v;
}

function article(word: string): string {
  return /^[aeiou]/i.test(word) ? 'an' : 'a';
}

function kindReadsData(schema: object): boolean {
  return Boolean((schema as { properties?: Record<string, unknown> }).properties?.data);
}

function stripExt(file: string): string {
  return file.replace(/^.*[\\/]/, '').replace(/\.(ya?ml)$/, '');
}

/** Drops the noise ajv adds for if/then branches and repeats, keeping the errors a person acts on. */
function relevantErrors(errors: ErrorObject[]): ErrorObject[] {
  const seen = new Set<string>();
  const out: ErrorObject[] = [];
  for (const e of errors) {
    if (e.keyword === 'if') continue;
    const key = `${e.instancePath}|${e.keyword}|${JSON.stringify(e.params)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(e);
  }
  // A property error that a more specific error below it explains adds nothing.
  return out.filter((e) => !(e.keyword === 'propertyNames' && out.some((o) => o.keyword === 'pattern' && o.instancePath.startsWith(e.instancePath))));
}

function describeAjvError(e: ErrorObject): { path: Array<string | number>; message: string; atKey?: boolean } {
  const path = pointerToPath(e.instancePath);
  const parent = e.parentSchema as { properties?: Record<string, unknown>; enum?: unknown[] } | undefined;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      const allowed = Object.keys(parent?.properties ?? {});
      return {
        path: [...path, key],
        atKey: true,
        message: `unknown key '${shown(key)}'${suggestion(key, allowed)}${allowed.length ? ` (allowed: ${allowed.join(', ')})` : ''}`,
      };
    }
    case 'required': {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      return { path, message: `missing required key '${missing}'` };
    }
    case 'enum': {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues;
      const got = shown(e.data);
      const isKind = path.length === 3 && path[0] === 'stages' && path[2] === 'uses';
      const what = isKind ? `unknown stage kind '${got}'` : `'${got}' is not allowed`;
      return { path, message: `${what}${suggestion(got, allowed.map(String))} (allowed: ${allowed.map(String).join(', ')})` };
    }
    case 'const':
      return { path, message: `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}` };
    case 'propertyNames':
      return { path, message: e.message ?? 'invalid key' };
    case 'pattern': {
      const isName = e.instancePath === '' ? false : true;
      return { path, message: isName ? `invalid name '${shown(e.data)}': use letters, digits, '_' and '-', starting with a letter or '_'` : e.message! };
    }
    case 'type':
      return { path, message: `must be ${(e.params as { type: string | string[] }).type}${e.data === null ? ' (got null)' : `, got ${gotType(e.data)}`}` };
    default:
      return { path, message: e.message ?? e.keyword };
  }
}

/** Sorted by position; sweep branches that share a mistake report it once, at the line it is on. */
function sortProblems(ps: RecipeProblem[]): RecipeProblem[] {
  const seen = new Set<string>();
  ps = ps.filter((p) => {
    const k = `${p.line}:${p.col}:${p.origin ?? ''}:${p.path}:${p.message}`;
    return !seen.has(k) && Boolean(seen.add(k));
  });
  return ps.sort((a, b) => (a.line ?? 1e9) - (b.line ?? 1e9) || (a.col ?? 0) - (b.col ?? 0));
}
