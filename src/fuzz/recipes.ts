/**
 * A seeded generator of broken recipes: mutations of valid recipes at the text level (deleted,
 * duplicated or re-indented lines, tabs, unterminated flows, random bytes, truncation) and at the
 * value level (wrong types, huge numbers, NaN strings, bad `${params}` refs, cycles, unknown
 * kinds/stages/datasets, bad gates, deep nesting, alias bombs), plus `--set` overrides with garbage.
 *
 * `checkCase` is the oracle: a case must either parse or throw a RecipeError whose every problem has
 * a position (line) or an origin (`--set ...`) and a message. Anything else is a finding.
 * Used by test/fuzz-recipes.test.ts and bench/fuzz.ts (through ./harness.ts, which bounds time).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument, stringify } from 'yaml';
import { createRng } from '../util/rng.js';
import { parseRecipe } from '../recipe/load.js';
import { RecipeError, UsageError } from '../recipe/errors.js';
import { checkTree } from '../recipe/yaml-guard.js';
import { recipeLevelProblems } from '../run/preflight.js';
import { setOwn } from '../util/own.js';

export interface FuzzCase {
  /** Index in the seeded sequence: (seed, index) regenerates the case. */
  index: number;
  seed: number;
  /** Which mutations were applied, e.g. `deleteLine+wrongType`. */
  mutations: string[];
  text: string;
  sets?: string[];
}

export type CaseStatus = 'parsed' | 'recipe-error' | 'usage-error' | 'finding';

export interface CaseResult {
  index: number;
  status: CaseStatus;
  /** For findings: a short signature that groups findings with one cause (e.g. `RangeError@recipe/gates.js`). */
  signature?: string;
  detail?: string;
  ms: number;
}

/** Valid recipes the mutations start from (each parses; checked by the test). */
export const BASE_RECIPES: string[] = [
  `version: 1
name: tiny
seed: 7
params:
  sparsity: 0.6
data:
  digits: { source: mnist, limit: 400 }
stages:
  baseline:
    uses: train
    with: { model: mlp-small, epochs: 1, batchSize: 32 }
  prune:
    uses: prune
    needs: [baseline]
    with: { sparsity: "\${params.sparsity}", train: { epochs: 1, batchSize: 32 } }
  report:
    uses: evaluate
    needs: [prune]
    with: { latencySamples: 0 }
`,
  `# yaml-language-server: $schema=./schemas/recipe.schema.json
version: 1
name: lenet-300-100-prune
seed: 42
params:
  sparsity: 0.9
  epochs: 4
  lr: 0.001
data:
  digits: { source: mnist, split: { train: 0.8, validation: 0.1, test: 0.1 } }
stages:
  baseline:
    uses: train
    with:
      model: lenet-300-100
      epochs: \${params.epochs}
      optimizer: { name: adam, learningRate: "\${params.lr}" }
      lrSchedule: { kind: cosine, minLearningRate: 0.0001 }
  prune:
    uses: prune
    needs: [baseline]
    timeout: 600
    memoryMb: 2048
    with:
      schedule: { kind: polynomial-decay, initialSparsity: 0, finalSparsity: "\${params.sparsity}",
                  beginStep: 0, endStep: 500, frequency: 50 }
      layers:
        - { match: "dense_*" }
        - { match: dense_3, finalSparsity: 0.7 }
        - { match: "re:^conv_[12]$", exclude: true }
      train: { epochs: 4 }
  report:
    uses: evaluate
    needs: [prune]
    with:
      topK: 3
      gates:
        - "accuracy >= stages.baseline.accuracy - 0.01"
        - "sparsity >= 85%"
        - "compressionRatio >= 4"
`,
  `version: 1
name: files
cache: { dir: .cache }
outDir: out
data:
  mine:
    source: files
    format: csv
    features: data/train.csv
    labelColumn: label
    numClasses: 3
    sampleShape: [4]
    split: { train: 0.7, validation: 0.15, test: 0.15 }
  other: { source: files, format: npy, features: x.npy, labels: y.npy, numClasses: 10 }
stages:
  model:
    uses: load
    with: { path: models/model.json }
  tuned:
    uses: train
    needs: [model]
    with: { data: mine, steps: 20, optimizer: { name: sgd, learningRate: 0.1, momentum: 0.9 } }
  eval:
    uses: evaluate
    needs: [tuned]
    with: { data: mine, split: validation, gates: ["accuracy > 0.5", "params <= 100000"] }
`,
  `version: 1
backend: wasm
data:
  d: { source: mnist, limit: 100, seed: 3 }
stages:
  a: { uses: train, with: { model: lenet-5, epochs: 1 } }
  b: { uses: prune, needs: [a], with: { method: structured, sparsity: 0.5 } }
  c: { uses: prune, needs: [a], with: { method: "n:m", n: 2, m: 4 } }
  d: { uses: evaluate, needs: [b], with: { gates: ["accuracy >= stages.a.accuracy - 0.05"] } }
  e: { uses: evaluate, needs: [c] }
`,
];

/** Values of the wrong kind, in YAML source form. */
const GARBAGE_VALUES = [
  'NaN', '.nan', '.NaN', '"NaN"', '.inf', '-.inf', '1e999', '-1e999', '1e-999', '99999999999999999999999999999999', '-0', '0x7fffffff', '0o17', '+12',
  '~', 'null', 'Null', 'true', 'yes', 'no', 'on', '[]', '{}', '[1, [2, [3]]]', '{a: {b: {c: 1}}}', '""', "''", '" "', '-1', '0', '1.5', '2147483648',
  '"${params.nope}"', '"${params.constructor}"', '"${params.__proto__}"', '"${params.toString}"', '"${params.}"', '"${params"', '"${}"', '"${params.sparsity}x"',
  '"$(rm -rf /)"', '"; rm -rf ~"', '"`id`"', '"{{7*7}}"', '"__proto__"', '!!binary aGVsbG8=', '!!str 3', '!!int x', '!!float y', '!!map {}', '!!seq []',
  '!!timestamp 2001-12-14', '2001-12-14t21:59:43.10-05:00', '!custom x', '&anchor 1', '*undefinedAlias', '? complex key', '|\n  block', '>-\n  folded',
  '"\\u0000"', '"\\uD800"', '"\\x41"', '"a\\qb"', '"unterminated', "'unterminated", '[1, 2', '{a: 1', ']', '}', '- item', ': x', '@reserved', '`reserved',
  '%TAG', '"' + 'x'.repeat(5000) + '"',
];

const GARBAGE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '', ' ', 'with ', 'Uses', 'stage', '1', '-', '?', '"quoted key"', 'a.b', '${params.x}', '<<'];

const GATES = [
  'accuracy >= ', '>= 1', 'accuracy >>= 1', 'accuracy >= stages.nope.accuracy', 'accuracy >= stages.report.accuracy', 'nosuchmetric >= 0',
  'accuracy >= 1 +', 'accuracy >= (1', 'accuracy >= 1)', 'accuracy', 'accuracy >= 0 >= 1', 'accuracy >= process.exit(7)', 'accuracy >= require("fs")',
  'accuracy >= ${params.sparsity}', 'accuracy >= 1e999', 'accuracy >= NaN', 'sparsity >= 90%%', 'sparsity >= %', 'accuracy = 1', 'accuracy === 1',
  'accuracy >= stages..accuracy', 'accuracy >= stages.baseline.', 'accuracy >= stages["baseline"].accuracy', 'accuracy >= 1/0', 'accuracy >= --1', '',
  'accuracy >= ' + '('.repeat(300) + '1' + ')'.repeat(300), 'accuracy >= ' + '-'.repeat(300) + '1', 'accuracy >= ' + Array.from({ length: 300 }, () => '1').join(' + '),
];

const KIND_NAMES = ['train', 'prune', 'evaluate', 'load', 'trian', 'quantize', 'export', 'exec', 'Train', '', 'constructor', '__proto__', 'train '];
const INJECT_SNIPPETS = [
  '\t', '\u0000', '\u0007', '\ufeff', '\u2028', '\ud800', '\r', '\r\n', '#', '&', '*', '!', '|', '>', '%', '@', '`', '"', "'", '{', '[', '}', ']', ',', ':', '- ', '? ', '---\n', '...\n',
];

type Rng = () => number;
const int = (rng: Rng, n: number) => Math.floor(rng() * n);
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, xs.length)];

// ---- text-level mutations -------------------------------------------------------------------

type TextMutation = (rng: Rng, text: string) => string;

const lines = (t: string) => t.split('\n');

const TEXT_MUTATIONS: Record<string, TextMutation> = {
  deleteLine(rng, t) {
    const ls = lines(t);
    ls.splice(int(rng, ls.length), 1);
    return ls.join('\n');
  },
  duplicateLine(rng, t) {
    const ls = lines(t);
    const i = int(rng, ls.length);
    ls.splice(i, 0, ls[i]);
    return ls.join('\n');
  },
  swapLines(rng, t) {
    const ls = lines(t);
    const i = int(rng, ls.length);
    const j = int(rng, ls.length);
    [ls[i], ls[j]] = [ls[j], ls[i]];
    return ls.join('\n');
  },
  badIndent(rng, t) {
    const ls = lines(t);
    const i = int(rng, ls.length);
    ls[i] = rng() < 0.5 ? ' '.repeat(1 + int(rng, 5)) + ls[i] : ls[i].replace(/^ {1,3}/, '');
    return ls.join('\n');
  },
  tabIndent(rng, t) {
    const ls = lines(t);
    const i = int(rng, ls.length);
    ls[i] = ls[i].replace(/^( *)/, (m) => '\t'.repeat(Math.max(1, m.length / 2)));
    return ls.join('\n');
  },
  truncate(rng, t) {
    return t.slice(0, int(rng, t.length));
  },
  unterminatedFlow(rng, t) {
    const closers = [...t.matchAll(/[\]}"]/g)].map((m) => m.index!);
    if (!closers.length || rng() < 0.3) {
      const i = int(rng, t.length);
      return t.slice(0, i) + pick(rng, ['[', '{', '"', "'"]) + t.slice(i);
    }
    const i = pick(rng, closers);
    return t.slice(0, i) + t.slice(i + 1);
  },
  injectChars(rng, t) {
    let out = t;
    for (let k = 1 + int(rng, 3); k > 0; k--) {
      const i = int(rng, out.length + 1);
      out = out.slice(0, i) + pick(rng, INJECT_SNIPPETS) + out.slice(i);
    }
    return out;
  },
  randomBytes(rng, t) {
    const n = 1 + int(rng, 24);
    let junk = '';
    for (let k = 0; k < n; k++) junk += String.fromCharCode(rng() < 0.7 ? int(rng, 256) : int(rng, 0xffff));
    const i = int(rng, t.length + 1);
    return rng() < 0.2 ? junk : t.slice(0, i) + junk + t.slice(i);
  },
  replaceScalar(rng, t) {
    // Replace a value after `key: ` with garbage.
    const hits = [...t.matchAll(/: ([^\s{}\[\],#][^,{}\[\]\n]*)/g)];
    if (!hits.length) return t;
    const h = pick(rng, hits);
    const start = h.index! + 2;
    return t.slice(0, start) + pick(rng, GARBAGE_VALUES) + t.slice(start + h[1].length);
  },
  mistypeKey(rng, t) {
    // Bounded: an unbounded identifier run before a missing colon backtracks quadratically on a 1 MB line.
    const hits = [...t.matchAll(/([A-Za-z_][A-Za-z0-9_]{0,63}):/g)];
    if (!hits.length) return t;
    const h = pick(rng, hits);
    const k = h[1];
    const i = int(rng, k.length);
    const mutated = rng() < 0.5 ? pick(rng, GARBAGE_KEYS) || 'x' : k.slice(0, i) + String.fromCharCode(97 + int(rng, 26)) + k.slice(i + 1);
    return t.slice(0, h.index!) + mutated + t.slice(h.index! + k.length);
  },
  crlf(_rng, t) {
    return t.replace(/\n/g, '\r\n');
  },
  multiDocument(rng, t) {
    return rng() < 0.5 ? `${t}\n---\n${t}` : `---\n${t}\n...\n`;
  },
  longLine(rng, t) {
    const ls = lines(t);
    ls.splice(int(rng, ls.length), 0, `x${int(rng, 100)}: ${'y'.repeat(20000 + int(rng, 20000))}`);
    return ls.join('\n');
  },
  aliasBomb(rng, t) {
    const width = 5 + int(rng, 10);
    const depth = 3 + int(rng, 7);
    const ls = [`bomb0: &b0 [${Array(width).fill('"lol"').join(', ')}]`];
    for (let d = 1; d < depth; d++) ls.push(`bomb${d}: &b${d} [${Array(width).fill(`*b${d - 1}`).join(', ')}]`);
    const where = rng() < 0.5 ? 'top' : 'params';
    if (where === 'top') return ls.join('\n') + '\n' + t;
    return t.replace(/^params:\n/m, `params:\n${ls.map((l) => '  ' + l).join('\n')}\n`) + (t.includes('params:') ? '' : `params:\n${ls.map((l) => '  ' + l).join('\n')}\n`);
  },
  selfAlias(rng, t) {
    // An anchor whose value contains its own alias: a cyclic structure.
    const hits = [...t.matchAll(/with: \{/g)];
    if (!hits.length) return t;
    const h = pick(rng, hits);
    return t.slice(0, h.index!) + `with: &loop { self: ${rng() < 0.5 ? '*loop' : '[*loop]'},` + t.slice(h.index! + h[0].length);
  },
  deepNesting(rng, t) {
    const n = pick(rng, [50, 200, 1000, 5000]);
    const kind = int(rng, 3);
    const v = kind === 0 ? '['.repeat(n) + ']'.repeat(n) : kind === 1 ? '{a: '.repeat(n) + '1' + '}'.repeat(n) : '['.repeat(n);
    return t.replace(/\n( +)with: \{/, (m) => `${m} deep: ${v},`) + (rng() < 0.3 ? `\ndeep: ${v}\n` : '');
  },
};

// ---- value-level mutations (on the parsed recipe, re-serialised) ----------------------------

type Obj = Record<string, unknown>;
type ValueMutation = (rng: Rng, r: Obj) => void;

function paths(v: unknown, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(prefix);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...prefix, i], out));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) paths(x, [...prefix, k], out);
  return out;
}

function getAt(r: unknown, p: Array<string | number>): unknown {
  let v: any = r;
  for (const s of p) v = v?.[s];
  return v;
}

function setAt(r: Obj, p: Array<string | number>, value: unknown): void {
  if (!p.length) return;
  const parent = getAt(r, p.slice(0, -1)) as any;
  if (parent && typeof parent === 'object') parent[p[p.length - 1]] = value;
}

const stagesOf = (r: Obj) => (r.stages && typeof r.stages === 'object' ? (r.stages as Record<string, Obj>) : {});

const WRONG_TYPED: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, '', 'x', 'NaN', 'Infinity', '1e999', [], [1, 'a'], {}, { a: 1 }, [[[[]]]], 'a'.repeat(1000)];

const VALUE_MUTATIONS: Record<string, ValueMutation> = {
  wrongType(rng, r) {
    const ps = paths(r).filter((p) => p.length);
    setAt(r, pick(rng, ps), structuredClone(pick(rng, WRONG_TYPED)));
  },
  deleteKey(rng, r) {
    const ps = paths(r).filter((p) => p.length && typeof p[p.length - 1] === 'string');
    const p = pick(rng, ps);
    if (!p) return;
    const parent = getAt(r, p.slice(0, -1)) as Obj;
    if (parent && typeof parent === 'object') delete parent[p[p.length - 1] as string];
  },
  unknownKey(rng, r) {
    const objs = paths(r).filter((p) => { const v = getAt(r, p); return v && typeof v === 'object' && !Array.isArray(v); });
    const o = getAt(r, pick(rng, objs)) as Obj;
    o[pick(rng, ['colour', 'epoch', 'sparsty', 'uses', 'needs', 'with', 'data', 'x'.repeat(1 + int(rng, 50))])] = pick(rng, WRONG_TYPED);
  },
  hugeNumber(rng, r) {
    const nums = paths(r).filter((p) => typeof getAt(r, p) === 'number');
    if (nums.length) setAt(r, pick(rng, nums), pick(rng, [1e308, -1e308, 2 ** 64, -(2 ** 63), 1e-320, 4294967296, Number.MAX_SAFE_INTEGER + 2]));
  },
  nanString(rng, r) {
    const nums = paths(r).filter((p) => typeof getAt(r, p) === 'number');
    if (nums.length) setAt(r, pick(rng, nums), pick(rng, ['NaN', 'nan', 'Infinity', '-Infinity', '.nan', '1,5', '0.6.1', '']));
  },
  badParamRef(rng, r) {
    const strs = paths(r).filter((p) => p.length && p[0] !== 'params');
    const name = pick(rng, ['nope', 'sparsty', 'constructor', '__proto__', 'toString', 'valueOf', 'hasOwnProperty', '1x', 'a-b', 'sparsity.x', '']);
    setAt(r, pick(rng, strs), rng() < 0.6 ? `\${params.${name}}` : `pre \${params.${name}} post`);
  },
  paramsGarbage(rng, r) {
    const params = (r.params && typeof r.params === 'object' ? r.params : (r.params = {})) as Obj;
    params[pick(rng, ['sparsity', 'epochs', 'bad-name', '1st', 'ok', '__proto__', 'constructor'])] = pick(rng, [...WRONG_TYPED, '${params.sparsity}', '${params.self}']);
  },
  cycle(rng, r) {
    const ids = Object.keys(stagesOf(r));
    if (ids.length < 1) return;
    const a = pick(rng, ids);
    const b = pick(rng, ids);
    const sa = stagesOf(r)[a];
    const sb = stagesOf(r)[b];
    if (!sa || typeof sa !== 'object' || !sb || typeof sb !== 'object') return;
    sa.needs = [...(Array.isArray(sa.needs) ? sa.needs : []), b];
    sb.needs = [...(Array.isArray(sb.needs) ? sb.needs : []), a];
  },
  unknownKind(rng, r) {
    const s = pick(rng, Object.values(stagesOf(r)));
    if (s && typeof s === 'object') s.uses = pick(rng, KIND_NAMES);
  },
  unknownNeed(rng, r) {
    const s = pick(rng, Object.values(stagesOf(r)));
    if (s && typeof s === 'object') s.needs = [pick(rng, ['nope', 'baselin', 'Baseline', '', '1a', 'a b', '../x', 'report'])];
  },
  unknownDataset(rng, r) {
    const s = pick(rng, Object.values(stagesOf(r)));
    if (s && typeof s === 'object') s.with = { ...(s.with && typeof s.with === 'object' ? (s.with as Obj) : {}), data: pick(rng, ['nope', 'digit', '', 'mine', 'd']) };
  },
  badDataSpec(rng, r) {
    const data = (r.data && typeof r.data === 'object' ? r.data : (r.data = {})) as Obj;
    data[pick(rng, ['digits', 'mine', 'x', 'bad name'])] = pick(rng, [
      { source: 'mnst' }, { source: 'files' }, { source: 'files', features: '' }, { source: 'mnist', limit: 1 }, { source: 'mnist', split: { train: 0 } },
      { source: 'files', features: 'x.npy', sampleShape: [0] }, { source: 'files', features: 'x.npy', numClasses: 1 }, 'mnist', null, [],
    ]);
  },
  badGate(rng, r) {
    const evals = Object.values(stagesOf(r)).filter((s) => s && typeof s === 'object' && s.uses === 'evaluate');
    const s = pick(rng, evals.length ? evals : Object.values(stagesOf(r)));
    if (!s || typeof s !== 'object') return;
    const w = (s.with && typeof s.with === 'object' ? s.with : (s.with = {})) as Obj;
    w.gates = rng() < 0.8 ? [pick(rng, GATES)] : pick(rng, ['accuracy >= 0', 1, null, [1], [['x']]]);
  },
  renameStage(rng, r) {
    const st = stagesOf(r);
    const ids = Object.keys(st);
    if (!ids.length) return;
    const id = pick(rng, ids);
    const to = pick(rng, ['1bad', 'with space', 'a.b', '', '-x', 'ok_id', 'x'.repeat(300), 'ünïcode', '__proto__', 'constructor']);
    const v = st[id];
    delete st[id];
    setOwn(st, to, v);
  },
  manyStages(rng, r) {
    const st = (r.stages && typeof r.stages === 'object' ? r.stages : (r.stages = {})) as Obj;
    const n = 20 + int(rng, 180);
    for (let i = 0; i < n; i++) setOwn(st, `gen${i}`, { uses: 'evaluate', needs: [i ? `gen${i - 1}` : 'nope'] });
  },
  // ---- families from the issue-20 attack ----
  longString(rng, r) {
    const ps = paths(r).filter((p) => p.length);
    const n = pick(rng, [5000, 70_000, 1_000_000]);
    const big = pick(rng, ['x', 'ab', 'é', '\u0007'] as const).repeat(n);
    const st = Object.values(stagesOf(r)).filter((s) => s && typeof s === 'object');
    const s = pick(rng, st);
    const where = rng();
    if (s && where < 0.3) s.uses = big;
    else if (s && where < 0.5) s.needs = [big];
    else if (s && where < 0.6) s.with = { ...(s.with && typeof s.with === 'object' ? (s.with as Obj) : {}), data: big };
    else setAt(r, pick(rng, ps), big);
  },
  deepGate(rng, r) {
    const evals = Object.values(stagesOf(r)).filter((s) => s && typeof s === 'object' && s.uses === 'evaluate');
    const s = pick(rng, evals.length ? evals : Object.values(stagesOf(r)));
    if (!s || typeof s !== 'object') return;
    const n = pick(rng, [40, 500, 5000, 20000]);
    const w = (s.with && typeof s.with === 'object' ? s.with : (s.with = {})) as Obj;
    w.gates = [pick(rng, [
      `accuracy >= ${'('.repeat(n)}1${')'.repeat(n)}`, `accuracy >= ${'-'.repeat(n)}1`, `accuracy >= ${Array.from({ length: Math.min(n, 2000) }, () => '1').join('+')}`,
      'accuracy >= 0/0', 'accuracy != 0/0', 'accuracy >= 1/0', 'accuracy / 0 >= 1', 'accuracy >= -(1/0)',
    ])];
  },
  protoKey(rng, r) {
    const st = Object.values(stagesOf(r)).filter((s) => s && typeof s === 'object');
    const s = pick(rng, st);
    const where = rng();
    if (s && where < 0.35) setOwn(s, 'matrix', Object.fromEntries([[pick(rng, ['__proto__.polluted', 'constructor.polluted', '__proto__', 'prototype.x', 'a.__proto__.b']), [1]]]));
    else if (s && where < 0.7) {
      const w = (s.with && typeof s.with === 'object' ? s.with : (s.with = {})) as Obj;
      setOwn(w, pick(rng, ['__proto__', 'constructor', 'prototype']), { path: 'models/x', polluted: 1 });
    } else {
      const objs = paths(r).filter((p) => { const v = getAt(r, p); return v && typeof v === 'object' && !Array.isArray(v); });
      setOwn(getAt(r, pick(rng, objs)) as Obj, '__proto__', pick(rng, [{ polluted: 1 }, [1], 'x', null]));
    }
  },
  pathField(rng, r) {
    const bad = pick(rng, ['../out', '../../outside/x.npy', '/etc/passwd', '.', './', 'C:\\x', '\\\\host\\share', 'a/../../b', 'ok/dir', 'sub/../sub', 'x\u0000y', '..', '~/x']);
    const st = Object.entries(stagesOf(r)).filter(([, s]) => s && typeof s === 'object');
    const where = int(rng, 7);
    if (where === 0) r.outDir = bad;
    else if (where === 1) r.cache = { dir: bad };
    else if (where === 2) {
      const data = (r.data && typeof r.data === 'object' ? r.data : (r.data = {})) as Obj;
      setOwn(data, 'mine', { source: 'files', features: bad, labels: rng() < 0.5 ? bad : 'y.npy', numClasses: 2 });
    } else if (where === 3 && st.length) setOwn(stagesOf(r), 'loaded', { uses: 'load', with: { path: bad } });
    else if (where <= 5) setOwn(stagesOf(r), 'tool', { uses: 'exec', with: { command: ['node', 'x.js'], [where === 4 ? 'inputs' : 'outputs']: [bad] } });
    else setOwn(stagesOf(r), 'tool', { uses: 'exec', with: { command: ['node', 'x.js'], metrics: bad } });
  },
  missingData(rng, r) {
    const st = Object.values(stagesOf(r)).filter((s) => s && typeof s === 'object');
    if (rng() < 0.5) delete r.data;
    else setOwn((r.data && typeof r.data === 'object' ? r.data : (r.data = {})) as Obj, 'second', { source: 'mnist', limit: 100 });
    for (const s of st) if (s.with && typeof s.with === 'object') delete (s.with as Obj).data;
    if (rng() < 0.3) setOwn(stagesOf(r), 'ex', pick(rng, [{ uses: 'export', needs: [Object.keys(stagesOf(r))[0]] }, { uses: 'export', needs: [Object.keys(stagesOf(r))[0]], with: { target: 'tfjs', precision: 'int8' } }]));
  },
  badTimeouts(rng, r) {
    const s = pick(rng, Object.values(stagesOf(r)));
    if (s && typeof s === 'object') {
      s.timeout = pick(rng, [0, -1, 'soon', 1e308, null, 0.001]);
      s.memoryMb = pick(rng, [0, 1, 63.5, '1GB', -64, 2 ** 40]);
    }
  },
};

const SET_PATHS = [
  'params.sparsity', 'params.epochs', 'params.new', 'stages.baseline.with.epochs', 'stages.prune.with.sparsity', 'stages.report.with.gates', 'stages.report.with.gates.0',
  'stages.baseline.uses', 'stages.baseline.needs', 'stages.baseline.needs.3', 'stages.nope.with.x', 'version', 'version.x', 'seed', 'name.first', 'data.digits.limit',
  'data.digits.source', 'stages', 'stages.prune.with.layers.0.match', 'stages.prune.with.layers.9', '__proto__.polluted', 'constructor.prototype.polluted',
  'stages.baseline.timeout', 'stages.baseline.memoryMb', 'a.b.c.d.e.f', 'stages.baseline.with.optimizer.name',
];

function garbageSet(rng: Rng): string {
  const r = rng();
  if (r < 0.05) return pick(rng, ['', '=', 'novalue', '=1', 'a..b=1', '.=1', 'a.=1', ' =1']);
  const path = rng() < 0.9 ? pick(rng, SET_PATHS) : 'x'.repeat(1 + int(rng, 10));
  const value = rng() < 0.7 ? pick(rng, GARBAGE_VALUES).replace(/\n/g, ' ') : pick(rng, ['&a [*a]', '&a {x: *a}', '[', '{', '"', '*a', '!!binary ###', '0.8', '3', '[1,2]', 'true', pick(rng, GATES)]);
  return `${path}=${value}`;
}

/** Every mutation family a case can name (`set` is the `--set` overrides). */
export const MUTATION_FAMILIES: string[] = [...Object.keys(TEXT_MUTATIONS), ...Object.keys(VALUE_MUTATIONS), 'set'];

/** The case (seed, index): 1 to 3 mutations of a base recipe, sometimes with `--set` overrides. */
export function generateCase(seed: number, index: number): FuzzCase {
  const rng = createRng((seed * 0x9e3779b1) ^ (index * 0x85ebca6b) ^ 0x5bd1e995);
  let text = pick(rng, BASE_RECIPES);
  const mutations: string[] = [];
  const n = 1 + int(rng, 3);
  for (let k = 0; k < n; k++) {
    if (rng() < 0.5) {
      const name = pick(rng, Object.keys(TEXT_MUTATIONS));
      text = TEXT_MUTATIONS[name](rng, text);
      mutations.push(name);
    } else {
      const name = pick(rng, Object.keys(VALUE_MUTATIONS));
      let obj: unknown;
      try {
        const doc = parseDocument(text, { uniqueKeys: false });
        // Value mutations walk the tree recursively: a cycle or deep nesting would stall the generator.
        obj = doc.errors.length || checkTree(doc) ? undefined : doc.toJS({ maxAliasCount: 50 });
      } catch {
        obj = undefined;
      }
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) continue; // already broken beyond structure
      VALUE_MUTATIONS[name](rng, obj as Obj);
      try {
        text = stringify(obj, { lineWidth: 0, aliasDuplicateObjects: false });
      } catch {
        continue;
      }
      mutations.push(name);
    }
  }
  let sets: string[] | undefined;
  if (rng() < 0.25) {
    sets = Array.from({ length: 1 + int(rng, 3) }, () => garbageSet(rng));
    mutations.push('set');
  }
  return { index, seed, mutations, text, sets };
}

/**
 * Runs one case through parseRecipe and judges the result. Accepted: a parse, or a RecipeError
 * whose every problem has a message and a line (or an origin); a UsageError only for a malformed
 * `--set` (its message then starts with `--set`). Everything else is a finding with a signature.
 */
let empty: string | undefined;
function emptyWorkspace(): string {
  return (empty ??= mkdtempSync(join(tmpdir(), 'compress-fuzz-')));
}

export function checkCase(c: FuzzCase): CaseResult {
  const t0 = performance.now();
  const done = (status: CaseStatus, signature?: string, detail?: string): CaseResult => ({ index: c.index, status, signature, detail, ms: performance.now() - t0 });
  let result: CaseResult;
  try {
    // In an empty directory: the parse cannot know the file system (symlinks out); preflight checks it.
    const recipe = parseRecipe(c.text, join(emptyWorkspace(), 'fuzz.yaml'), { sets: c.sets });
    // What validate accepts, run's own recipe-level checks must accept too.
    const refused = recipeLevelProblems(recipe);
    result = refused.length ? done('finding', 'run-knows-more', `validate's parse accepted, run's preflight refuses: ${refused[0].message.slice(0, 200)}`) : done('parsed');
  } catch (e) {
    if (e instanceof RecipeError) {
      const bad = e.problems.find((p) => !(typeof p.message === 'string' && p.message.trim() !== '' && ((Number.isInteger(p.line) && p.line! >= 1 && (p.col === undefined || p.col >= 1)) || (typeof p.origin === 'string' && p.origin !== ''))));
      if (!e.problems.length) result = done('finding', 'RecipeError-without-problems', e.message);
      else if (bad) result = done('finding', `problem-without-position:${bad.message.replace(/[0-9'"].*$/, '').slice(0, 40)}`, JSON.stringify(bad));
      else result = done('recipe-error');
    } else if (e instanceof UsageError && c.sets?.length && /^--set /.test(e.message)) {
      result = done('usage-error');
    } else {
      const err = e instanceof Error ? e : new Error(String(e));
      const frame = (err.stack ?? '').split('\n').find((l) => /dist\/src\/|node_modules\//.test(l)) ?? '';
      const where = /dist\/src\/([^:)]+)/.exec(frame)?.[1] ?? /node_modules\/([^/]+)/.exec(frame)?.[1] ?? '?';
      result = done('finding', `${err.name}@${where}`, `${err.name}: ${err.message.split('\n')[0].slice(0, 200)}`);
    }
  }
  // A recipe must never reach the process's prototypes.
  const probe = {} as Record<string, unknown>;
  if (probe.polluted !== undefined || probe.x !== undefined || Object.keys(Object.prototype).length) {
    result = done('finding', 'prototype-pollution', Object.keys(Object.prototype).join(','));
  }
  return result;
}
