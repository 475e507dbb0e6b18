/**
 * Validate must know what run knows (issue 20): every path-valued field of every stage kind, data
 * source and the recipe itself is refused by validation with a position when it leaves the workspace
 * (found through the schemas' `x-compress-path` annotation, so a new field is covered by declaring
 * it), and the other checks `run` made only at run time are made by validation too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stringify } from 'yaml';
import { parseRecipe } from '../src/recipe/load.js';
import { RecipeError, type RecipeProblem } from '../src/recipe/errors.js';
import { STAGE_KINDS } from '../src/stages/registry.js';
import { recipeBaseSchema } from '../src/recipe/schema.js';
import { declaredPathFields } from '../src/recipe/path-fields.js';
import { setOwn } from '../src/util/own.js';

/** One valid stage of every kind (a new kind needs an entry here, or the coverage test fails). */
const SAMPLE_STAGES: Record<string, Record<string, unknown>> = {
  load: { uses: 'load', with: { path: 'models/m' } },
  train: { uses: 'train', with: { model: 'mlp-small' } },
  prune: { uses: 'prune', needs: ['train'], with: { sparsity: 0.5 } },
  retrain: { uses: 'retrain', needs: ['prune'] },
  quantize: { uses: 'quantize', needs: ['retrain'] },
  factorize: { uses: 'factorize', needs: ['train'] },
  evaluate: { uses: 'evaluate', needs: ['quantize'] },
  export: { uses: 'export', needs: ['quantize'], with: { target: 'onnx' } },
  exec: { uses: 'exec', with: { command: ['node', 'tool.js'], inputs: ['tool.js'], outputs: ['out.bin'], metrics: 'm.json' } },
};

const base = (): Record<string, any> => ({
  version: 1,
  outDir: 'out',
  cache: { dir: 'cache' },
  data: { digits: { source: 'mnist', limit: 100 }, mine: { source: 'files', features: 'x.npy', labels: 'y.npy', numClasses: 2 } },
  stages: Object.fromEntries(Object.entries(SAMPLE_STAGES).map(([id, s]) => [id, structuredClone({ ...s, with: { ...(s.with as object), ...(id === 'load' || id === 'exec' ? {} : { data: 'digits' }) } })])),
});

function problemsOf(recipe: unknown): RecipeProblem[] {
  try {
    parseRecipe(stringify(recipe), 'r.yaml');
    return [];
  } catch (e) {
    assert.ok(e instanceof RecipeError, String(e));
    return e.problems;
  }
}

/** Sets `value` at a declared field path (`[]`: an array item, `*`: the first key of a mapping). */
function setField(target: Record<string, any>, path: string[], value: string): Array<string | number> {
  const at: Array<string | number> = [];
  let o: any = target;
  path.forEach((seg, i) => {
    const last = i === path.length - 1;
    const next = path[i + 1];
    if (seg === '[]') {
      at.push(0);
      if (last) o[0] = value;
      else o = o[0] ??= {};
      return;
    }
    const key = seg === '*' ? Object.keys(o)[0] : seg;
    at.push(key);
    if (last) setOwn(o, key, next === '[]' ? [value] : value);
    else {
      if (next === '[]') o[key] = [value];
      else o[key] ??= {};
      o = o[key];
    }
  });
  return at;
}

test('the sample recipe covers every stage kind and validates', () => {
  assert.deepEqual(STAGE_KINDS.map((k) => k.kind).filter((k) => !SAMPLE_STAGES[k]), [], 'add a sample stage for the new kind');
  assert.deepEqual(problemsOf(base()).map((p) => p.message), []);
});

/** Every annotated field: where it is set in the recipe, and which path the problem must be at. */
const FIELDS = [
  ...declaredPathFields(recipeBaseSchema).filter((f) => f.path[0] !== 'data' && f.path[0] !== 'stages').map((f) => ({ ...f, prefix: [] as string[], where: f.path.join('.') })),
  ...STAGE_KINDS.flatMap((k) => declaredPathFields(k.withSchema).map((f) => ({ ...f, prefix: ['stages', k.kind, 'with'], where: `${k.kind}.with.${f.path.join('.')}` }))),
];

test('path-valued fields are declared where run confines paths', () => {
  const where = FIELDS.map((f) => f.where).sort();
  // Data sources and load.path check their paths themselves (src/data/paths.ts, the load stage's check).
  for (const f of ['outDir', 'cache.dir', 'exec.with.inputs.[]', 'exec.with.outputs.[]', 'exec.with.metrics']) {
    assert.ok(where.includes(f), `${f} is not declared as a path field (declared: ${where.join(', ')})`);
  }
});

for (const f of FIELDS) {
  const values = ['../outside/x', '/abs/x', ...(f.field.root === 'write-dir' ? ['.', './'] : [])];
  test(`validate refuses ${f.where} = ${values.join(' | ')} with a position`, () => {
    for (const v of values) {
      const r = base();
      const at = [...f.prefix, ...setField(f.prefix.reduce((o: any, k) => o[k], r), f.path, v)];
      const dotted = at.map((s) => (typeof s === 'number' ? `[${s}]` : s)).join('.').replace(/\.\[/g, '[');
      const ps = problemsOf(r);
      const hit = ps.find((p) => p.path === dotted && p.line !== undefined && p.message.includes(`'${v}'`));
      assert.ok(hit, `${dotted} = '${v}': no positioned problem; got ${JSON.stringify(ps.map((p) => `${p.line}:${p.col} ${p.path} ${p.message}`))}`);
    }
  });
}

test('two datasets and a stage reading data without with.data is a validate error', () => {
  const r = base();
  delete r.stages.train.with.data;
  const ps = problemsOf(r);
  assert.ok(ps.some((p) => p.path === 'stages.train.with' && /reads a dataset: set with\.data \(declared: digits, mine\)/.test(p.message) && p.line), JSON.stringify(ps));
});

test('evaluate and export in a recipe without data: are validate errors', () => {
  const r = base();
  delete r.data;
  for (const s of Object.values(r.stages) as any[]) delete s.with?.data;
  const ps = problemsOf(r);
  for (const id of ['evaluate', 'export', 'train']) {
    assert.ok(ps.some((p) => p.path.startsWith(`stages.${id}.`) && /declare one under `data:`/.test(p.message)), `${id}: ${JSON.stringify(ps.map((p) => p.message))}`);
  }
  assert.ok(ps.every((p) => !/undefined/.test(p.message)));
});

test('an export stage without with: and a target/precision pair the target lacks are validate errors', () => {
  const r = base();
  delete r.stages.export.with;
  r.stages.export2 = { uses: 'export', needs: ['quantize'], with: { target: 'tfjs', precision: 'int8', data: 'digits' } };
  const ps = problemsOf(r);
  assert.ok(ps.some((p) => p.path.startsWith('stages.export') && /with\.target, with\.profile or with\.targets/.test(p.message) && p.line), JSON.stringify(ps));
  assert.ok(ps.some((p) => p.path === 'stages.export2.with.precision' && /target 'tfjs' has no precision 'int8'/.test(p.message) && p.line), JSON.stringify(ps));
});
