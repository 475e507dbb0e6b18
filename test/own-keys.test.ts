/**
 * Lint: in the code that turns user input into object keys (recipe keys, matrix paths, stage ids,
 * file paths, layer/tensor names from model files, metric names), a computed-key assignment
 * `obj[key] = v` is written `setOwn(obj, key, v)` (src/util/own.ts): with key `__proto__` the plain
 * form replaces the object's prototype, or pollutes Object.prototype through a path walk.
 * Index assignments into arrays (`a[i] = ...`, numeric index names or arithmetic) are not keys.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers.js';
import { setOwn } from '../src/util/own.js';

const DIRS = ['recipe', 'run', 'cache', 'stages', 'report', 'commands', 'data', 'model', 'prune', 'compression', 'fuzz', 'util', 'stage-graph'];
/** `x[expr] =` / `x[expr] ??=` (not `==`). */
const ASSIGN = /([\w$.)\]]+)\[([^\]]+)\]\s*(?:\?\?|\|\||\+|-)?=(?!=)/g;
/** Index expressions that are array positions: literals, short loop names, arithmetic, `.length`. */
const NUMERIC = /^(\d+|[a-jl-np-rt-z]\d?|oc|ic|ow|oh|kh|kw|ax|idx|index|axis|pos|off|offset|row|col|len|depth|bit|byte|sym|len\w*|next|\w+(Idx|Index|Pos|Offset|Bin)|.*[-+*%/].*|.*\.length|Number\(.*\))$/;

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/** Loop counters of a file (`for (let k = 0`, `let o = 0`): numeric, whatever their names. */
function counters(text: string): Set<string> {
  const lets = [...text.matchAll(/\blet\s+([A-Za-z_$][\w$]*)\s*=\s*[\d(]/g), ...text.matchAll(/\bfor\s*\(\s*let\s+([A-Za-z_$][\w$]*)\s*=/g)].map((m) => m[1]);
  // `.map((c, k) =>` / `.forEach((x, i) =>`: the second parameter is an index.
  const indices = [...text.matchAll(/\.(?:map|forEach)\(\(\s*[\w$]+\s*,\s*([\w$]+)\s*\)\s*=>/g)].map((m) => m[1]);
  const lengths = [...text.matchAll(/\bconst\s+([A-Za-z_$][\w$]*)\s*=\s*[\w$.]+\.length;/g)].map((m) => m[1]);
  return new Set([...lets, ...indices, ...lengths]);
}

/** Numeric indices the patterns above cannot tell, each with why. */
const ALLOW = [
  'src/compression/fakequant.ts: next[k] = tf.tensor', // k = kernelIndex(layer), a position in getWeights()
];

export function keyedAssignments(text: string): Array<{ line: number; code: string }> {
  const out: Array<{ line: number; code: string }> = [];
  const numeric = counters(text);
  text.split('\n').forEach((line, i) => {
    const code = line.replace(/\/\/.*$/, '');
    if (/^\s*(\*|\/\*)/.test(code)) return;
    for (const m of code.matchAll(ASSIGN)) {
      // `Plan['weights'] = null` is a type annotation, not a write.
      if (/^[A-Z]/.test(m[1])) continue;
      if (!NUMERIC.test(m[2].trim()) && !numeric.has(m[2].trim())) out.push({ line: i + 1, code: line.trim() });
    }
  });
  return out;
}

test('the lint catches `obj[key] = v` and `o[seg] ??= {}`, and passes array index writes', () => {
  assert.equal(keyedAssignments('  out[name] = one(name, g);\n  o[seg] ??= {};\n').length, 2);
  assert.equal(keyedAssignments('  a[i] = 1;\n  x[j * 2 + 1] = 0;\n  buf[offset] = 3;\n  if (a[i] === b) c();\n').length, 0);
});

test('no computed-key assignment outside setOwn where user keys become object keys', () => {
  const hits: string[] = [];
  for (const d of DIRS) {
    for (const f of sources(join(ROOT, 'src', d))) {
      for (const h of keyedAssignments(readFileSync(f, 'utf8'))) {
        if (!ALLOW.some((a) => a.startsWith(`${f.slice(ROOT.length)}:`) && h.code.includes(a.slice(a.indexOf(': ') + 2)))) hits.push(`${f.slice(ROOT.length)}:${h.line}: ${h.code}`);
      }
    }
  }
  assert.deepEqual(hits, [], `use setOwn (src/util/own.ts) for these:\n${hits.join('\n')}`);
});

test('setOwn stores `__proto__` as data and leaves prototypes alone', () => {
  const o: Record<string, unknown> = {};
  setOwn(o, '__proto__', { polluted: 1 });
  assert.equal(Object.getPrototypeOf(o), Object.prototype);
  assert.equal((o as { polluted?: number }).polluted, undefined);
  assert.deepEqual(Object.keys(o), ['__proto__']);
});
