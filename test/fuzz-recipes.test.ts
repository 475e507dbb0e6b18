import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runFuzz, type FuzzSummary } from '../src/fuzz/harness.js';
import { BASE_RECIPES, MUTATION_FAMILIES, generateCase, type FuzzCase } from '../src/fuzz/recipes.js';
import { parseRecipe } from '../src/recipe/load.js';
import { RecipeError, UsageError } from '../src/recipe/errors.js';
import { MAX_ALIAS_VALUES, MAX_DEPTH } from '../src/recipe/yaml-guard.js';
import { cli } from './helpers.js';

const SEED = 20240611;
const COUNT = 2000;

let summary: Promise<FuzzSummary> | undefined;
/** One fuzz run shared by the tests below (it is the slow part). */
// A hang never ends: 60 s per case still finds one, and a busy CI machine cannot turn a slow case into a finding
// (the speed of each case is `npm run fuzz`'s report, not this test's).
const fuzz = () => (summary ??= runFuzz({ seed: SEED, count: COUNT, caseTimeoutMs: 60_000 }));

test('the base recipes parse (the mutations start from valid recipes)', () => {
  for (const text of BASE_RECIPES) parseRecipe(text, 'base.yaml');
});

test(`${COUNT} seeded broken recipes: every one parses or is refused with positioned problems`, async () => {
  const s = await fuzz();
  assert.equal(s.results.length, COUNT);
  const findings = [...s.findings].map(([sig, f]) => `${sig}: ${f.count} (e.g. --replay ${SEED}:${f.indices[0]}) ${f.detail ?? ''}`);
  assert.deepEqual(findings, []);
});

test('the fuzz mix is meaningful: mostly refused, some parsed, every mutation family exercised and refused', async () => {
  const s = await fuzz();
  assert.ok((s.counts['recipe-error'] ?? 0) >= COUNT / 2, JSON.stringify(s.counts));
  assert.ok((s.counts.parsed ?? 0) >= 20, JSON.stringify(s.counts));
  assert.ok((s.counts['usage-error'] ?? 0) >= 20, JSON.stringify(s.counts));
  const seen = new Map<string, { cases: number; refused: number }>();
  for (const r of s.results) {
    for (const m of new Set(generateCase(SEED, r.index).mutations)) {
      const f = seen.get(m) ?? { cases: 0, refused: 0 };
      f.cases++;
      if (r.status !== 'parsed') f.refused++;
      seen.set(m, f);
    }
  }
  for (const m of MUTATION_FAMILIES) {
    const f = seen.get(m);
    assert.ok(f && f.cases >= 10 && f.refused > 0, `mutation '${m}': ${JSON.stringify(f)}`);
  }
});

test('the CLI reports ~30 fuzzed broken recipes as file:line:col problems, exit 2, no stack trace', async () => {
  const s = await fuzz();
  // Refused cases without --set (whose problems point at the file), at most two per first mutation.
  const perFamily = new Map<string, number>();
  const picked: FuzzCase[] = [];
  for (const r of s.results) {
    const c = generateCase(SEED, r.index);
    const n = perFamily.get(c.mutations[0]) ?? 0;
    if (r.status !== 'recipe-error' || c.sets || n >= 2 || picked.length === 30) continue;
    perFamily.set(c.mutations[0], n + 1);
    picked.push(c);
  }
  assert.equal(picked.length, 30);
  const dir = mkdtempSync(join(tmpdir(), 'compress-fuzz-'));
  const check = async (c: FuzzCase) => {
    const name = `case-${c.index}.yaml`;
    writeFileSync(join(dir, name), c.text);
    const r = await cli(['validate', name], dir);
    const what = `case ${SEED}:${c.index} (${c.mutations.join('+')}):\n${r.stderr}`;
    assert.equal(r.exitCode, 2, what);
    assert.doesNotMatch(r.stderr, /\n\s+at /, what);
    const positioned = r.stderr.split('\n').filter((l) => l.startsWith(`${name}:`));
    const count = Number(/^(\d+) problems?; recipe not run$/m.exec(r.stderr)?.[1]);
    assert.ok(count >= 1, what);
    assert.equal(positioned.length, count, what);
    for (const l of positioned) assert.match(l, new RegExp(`^${name.replace('.', '\\.')}:\\d+:\\d+ `), what);
  };
  // Two at a time: the CLI start-up dominates, and the machine running the tests may have two cores.
  for (let i = 0; i < picked.length; i += 2) await Promise.all(picked.slice(i, i + 2).map(check));
});

// ---- the findings the fuzzer made, one regression each ------------------------------------------

const TINY = BASE_RECIPES[0];

function refused(text: string, sets?: string[]): RecipeError {
  try {
    parseRecipe(text, 'r.yaml', { sets });
  } catch (e) {
    if (e instanceof RecipeError) return e;
    throw e;
  }
  assert.fail('recipe was accepted');
}

function usage(text: string, sets: string[]): string {
  assert.throws(() => parseRecipe(text, 'r.yaml', { sets }), UsageError);
  try {
    parseRecipe(text, 'r.yaml', { sets });
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

const at = (e: RecipeError) => e.problems.map((p) => `${p.line}:${p.col} ${p.message}`);

test('${params.constructor} is an unknown parameter, not Object.prototype.constructor', () => {
  const e = refused(TINY.replace('"${params.sparsity}"', '"${params.constructor}"'));
  assert.deepEqual(at(e), ["15:23 unknown parameter 'constructor'"]);
});

test('an alias inside its own anchored value is a positioned cycle, not a stack overflow', () => {
  const e = refused(TINY.replace('with: { model:', 'with: &loop { self: [*loop], model:'));
  assert.deepEqual(at(e), ["11:26 YAML: alias '*loop' is inside the value it refers to (a cycle)"]);
});

test('nesting beyond the limit is refused at its position', () => {
  const deep = (n: number) => TINY.replace('stages:', `extra: ${'['.repeat(n)}${']'.repeat(n)}\nstages:`);
  assert.deepEqual(at(refused(deep(200))), [`8:${8 + MAX_DEPTH} YAML: values nested more than ${MAX_DEPTH} levels deep`]);
  // Within the limit the document is read (and the unknown key reported, not the nesting).
  assert.match(at(refused(deep(MAX_DEPTH - 2)))[0], /^8:1 unknown key 'extra'/);
});

test('alias bombs are refused at the alias that crosses the limit; plain reuse of an anchor is fine', () => {
  const bomb = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 6; i++) bomb.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]`);
  const e = refused(TINY.replace('params:\n', `params:\n${bomb.map((l) => '  ' + l).join('\n')}\n`));
  assert.equal(e.problems.length, 1);
  assert.match(e.problems[0].message, new RegExp(`aliases expand to more than ${MAX_ALIAS_VALUES} values`));
  assert.equal(e.problems[0].line, 8); // a3: the first anchor whose aliases cross the limit
  // yaml's own limit (maxAliasCount 100) would refuse this ordinary recipe.
  const reuse = TINY.replace('sparsity: 0.6', `sparsity: 0.6\n  base: &b { epochs: 1 }\n  uses: [${Array(150).fill('*b').join(', ')}]`);
  assert.equal(parseRecipe(reuse, 'r.yaml').params.uses instanceof Array, true);
});

test('an alias with no anchor before it is positioned', () => {
  assert.deepEqual(at(refused(TINY.replace('seed: 7', 'seed: *nope'))), ["3:7 YAML: unknown alias '*nope': an anchor '&nope' must come before it"]);
});

test('--set through a scalar, a list or a cyclic value is a usage error naming the argument', () => {
  assert.equal(usage(TINY, ['version.x=1']), "--set version.x=1: 'version' is 1, not a mapping, so it cannot hold 'x'");
  assert.equal(usage(TINY, ['stages.prune.needs.x=1']), "--set stages.prune.needs.x=1: 'stages.prune.needs' is a list, so 'x' must be an index (0, 1, ...)");
  assert.equal(usage(TINY, ['stages.prune.needs.5=a']), "--set stages.prune.needs.5=a: 'stages.prune.needs' has 1 items, so index 5 is past its end");
  assert.match(usage(TINY, ['params.x=&a [*a]']), /^--set params\.x=&a \[\*a\]: alias '\*a' is inside the value it refers to/);
  // An empty value (`params:`) is a place to set keys in.
  const r = parseRecipe(TINY.replace('params:\n  sparsity: 0.6', 'params:'), 'r.yaml', { sets: ['params.sparsity=0.5'] });
  assert.equal(r.stageById.get('prune')!.with.sparsity, 0.5);
});
