/**
 * Sweeps: `matrix:` on a stage expands it into one branch per combination of values, with ids like
 * `prune[finalSparsity=0.9]`. A stage downstream of a swept stage is fanned out too (one branch per
 * upstream branch), so `quantize` after a 3-way `prune` sweep with its own 3-way `bits` matrix becomes
 * 9 branches `quantize[finalSparsity=0.5,bits=4]` ... Shared upstream stages stay single, so they
 * run (and are cached) once.
 *
 * Expansion works on the plain recipe object after `${params}` interpolation and before schema
 * validation, so every branch's `with` is validated like a hand-written stage; `origins` maps each
 * branch back to the stage and matrix entry it came from, for error positions.
 */

import { getOwn, RESERVED_KEYS, setOwn } from '../util/own.js';

export type MatrixValue = number | string | boolean;

/** One swept coordinate: the stage whose matrix declared it, the `with` path, and the chosen value. */
export interface Coordinate {
  stage: string;
  key: string;
  src: string[];
  index: number;
  value: MatrixValue;
}

export interface BranchOrigin {
  /** The stage id as written in the recipe. */
  stage: string;
  /** The stage's own matrix coordinates (upstream ones are not positions in this stage). */
  own: Coordinate[];
}

export interface Expansion {
  /** The `stages` mapping with every swept stage replaced by its branches (file order kept). */
  stages: Record<string, unknown>;
  origins: Map<string, BranchOrigin>;
  problems: Array<{ path: Array<string | number>; message: string }>;
}

/** Values become parts of stage ids and directory names: keep them to characters that are safe in both. */
export const MATRIX_VALUE_PATTERN = '^[A-Za-z0-9_.+-]+$';
const SAFE_VALUE = new RegExp(MATRIX_VALUE_PATTERN);
const KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

type Spec = Record<string, unknown>;
const isObject = (v: unknown): v is Spec => v !== null && typeof v === 'object' && !Array.isArray(v);

interface Axis {
  /** Dotted `with` path. */
  key: string;
  /** Where the list is under `matrix:` as written (`default.bits` or `default`, `bits`). */
  src: string[];
  values: MatrixValue[];
}

/**
 * A stage's matrix as axes. Keys are `with` paths, dotted (`default.bits: [4, 8]`) or nested
 * (`default: { bits: [4, 8] }`, which `--set stages.q.matrix.default.bits=[4,5]` can address).
 */
function axesOf(matrix: Spec, problems: Expansion['problems'], at: Array<string | number>): Axis[] {
  const axes: Axis[] = [];
  const walk = (m: Spec, src: string[]) => {
    for (const [k, v] of Object.entries(m)) {
      const here = [...src, k];
      if (k.split('.').some((seg) => RESERVED_KEYS.has(seg))) problems.push({ path: [...at, ...here], message: `matrix key '${k}': '__proto__' is not a \`with\` key` });
      else if (!KEY_PATTERN.test(k)) problems.push({ path: [...at, ...here], message: `matrix key '${k}' is not a \`with\` key path` });
      else if (isObject(v)) walk(v, here);
      else if (!Array.isArray(v) || v.length === 0) problems.push({ path: [...at, ...here], message: 'a matrix entry is a non-empty list of values (or a mapping of `with` keys to lists)' });
      else {
        const bad = v.findIndex((x) => !((typeof x === 'number' && Number.isFinite(x)) || typeof x === 'boolean' || (typeof x === 'string' && SAFE_VALUE.test(x))));
        const dup = v.findIndex((x, i) => v.findIndex((y) => String(y) === String(x)) !== i);
        if (bad >= 0) problems.push({ path: [...at, ...here, bad], message: `matrix value ${JSON.stringify(v[bad])}: use numbers, booleans or strings of letters, digits and _ . + - (they become part of stage ids)` });
        else if (dup >= 0) problems.push({ path: [...at, ...here, dup], message: `matrix value ${JSON.stringify(v[dup])} is listed twice` });
        else axes.push({ key: here.join('.'), src: here, values: v as MatrixValue[] });
      }
    }
  };
  walk(matrix, []);
  return axes;
}

/**
 * `prune[finalSparsity=0.9]` (the last segment of the `with` path names the axis); an axis name that two
 * coordinates share is qualified by stage and full path to stay unambiguous.
 */
export function branchId(stage: string, coords: Coordinate[]): string {
  if (!coords.length) return stage;
  const short = (c: Coordinate) => c.key.slice(c.key.lastIndexOf('.') + 1);
  const label = (c: Coordinate) => (coords.some((o) => o !== c && short(o) === short(c)) ? `${c.stage}.${c.key}` : short(c));
  return `${stage}[${coords.map((c) => `${label(c)}=${String(c.value)}`).join(',')}]`;
}

const sameAxis = (a: Coordinate, b: Coordinate) => a.stage === b.stage && a.key === b.key;

/** Merges two coordinate lists when they agree on every shared axis; undefined when they conflict. */
function merge(a: Coordinate[], b: Coordinate[]): Coordinate[] | undefined {
  const out = [...a];
  for (const c of b) {
    const same = out.find((o) => sameAxis(o, c));
    if (!same) out.push(c);
    else if (same.index !== c.index) return undefined;
  }
  return out;
}

const within = (small: Coordinate[], big: Coordinate[]) => small.every((c) => big.some((o) => sameAxis(o, c) && o.index === c.index));

export function expandMatrix(stages: Record<string, unknown>): Expansion {
  const problems: Expansion['problems'] = [];
  const ids = Object.keys(stages);
  for (const id of ids) if (id.includes('[')) problems.push({ path: ['stages', id], message: `'[' in a stage id is reserved for sweep branches (write a matrix: instead)` });
  const memo = new Map<string, Coordinate[][]>();
  const visiting = new Set<string>();

  const variantsOf = (id: string): Coordinate[][] => {
    const known = memo.get(id);
    if (known) return known;
    const spec = stages[id];
    // Cycles and malformed stages are reported by validation; here they just don't fan out.
    if (visiting.has(id) || !isObject(spec)) return [[]];
    visiting.add(id);
    let combos: Coordinate[][] = [[]];
    const needs = Array.isArray(spec.needs) ? spec.needs.filter((n): n is string => typeof n === 'string' && Object.hasOwn(stages, n) && n !== id) : [];
    for (const n of needs) {
      const up = variantsOf(n);
      if (up.length === 1 && up[0].length === 0) continue;
      combos = combos.flatMap((c) => up.map((u) => merge(c, u)).filter((x): x is Coordinate[] => x !== undefined));
    }
    const axes = isObject(spec.matrix) ? axesOf(spec.matrix, problems, ['stages', id, 'matrix']) : [];
    for (const { key, src, values } of axes) {
      combos = combos.flatMap((c) => values.map((value, index) => [...c, { stage: id, key, src, index, value }]));
    }
    visiting.delete(id);
    memo.set(id, combos);
    return combos;
  };

  const out: Record<string, unknown> = {};
  const origins = new Map<string, BranchOrigin>();
  for (const id of ids) {
    const spec = stages[id];
    const variants = variantsOf(id);
    if (variants.length === 1 && variants[0].length === 0) {
      setOwn(out, id, spec);
      continue;
    }
    for (const coords of variants) {
      const bid = branchId(id, coords);
      const s = structuredClone(spec) as Spec;
      delete s.matrix;
      const own = coords.filter((c) => c.stage === id);
      const w: Spec = isObject(s.with) ? s.with : (s.with = {});
      for (const c of own) {
        const err = setPath(w, c.key.split('.'), c.value);
        if (err) problems.push({ path: ['stages', id, 'matrix', ...c.src], message: err });
      }
      // Each need becomes the upstream branch with the same coordinates.
      const renamed = new Map<string, string>();
      if (Array.isArray(s.needs)) {
        s.needs = s.needs.map((n) => {
          if (typeof n !== 'string' || !Object.hasOwn(stages, n)) return n;
          const up = (memo.get(n) ?? [[]]).find((u) => within(u, coords));
          const nid = up ? branchId(n, up) : n;
          if (nid !== n) renamed.set(n, nid);
          return nid;
        });
      }
      // Upstream ids also appear in `with`: a retrain teacher, and gate references to any ancestor.
      if (typeof w.teacher === 'string' && renamed.has(w.teacher)) w.teacher = renamed.get(w.teacher);
      if (Array.isArray(w.gates)) w.gates = w.gates.map((g) => (typeof g === 'string' ? renameGateRefs(g, memo, coords) : g));
      setOwn(out, bid, s);
      origins.set(bid, { stage: id, own });
    }
  }
  return { stages: out, origins, problems };
}

/** Rewrites `stages.<id>.` / `exports.<id>.` for swept ancestors to the branch matching `coords`. */
function renameGateRefs(gate: string, memo: Map<string, Coordinate[][]>, coords: Coordinate[]): string {
  return gate.replace(/\b(stages|exports)\.([A-Za-z_][A-Za-z0-9_-]*)\./g, (all, ns: string, id: string) => {
    const variants = memo.get(id);
    if (!variants || (variants.length === 1 && variants[0].length === 0)) return all;
    const up = variants.find((u) => within(u, coords));
    return up ? `${ns}.${branchId(id, up)}.` : all;
  });
}

/** Sets `with.<path>` through own keys only: `__proto__` or `constructor` never reach a prototype. */
function setPath(target: Spec, path: string[], value: MatrixValue): string | undefined {
  let o = target;
  for (const seg of path.slice(0, -1)) {
    if (getOwn(o, seg) === undefined) setOwn(o, seg, {});
    const next = getOwn(o, seg);
    if (!isObject(next)) return `matrix key '${path.join('.')}': with.${seg} is not a mapping`;
    o = next;
  }
  setOwn(o, path[path.length - 1], value);
  return undefined;
}

/**
 * Maps a problem path under a branch (`stages.<branch>.with.<key>`) to where the user wrote it: the
 * matrix value, or the matrix key when the problem is about the key itself.
 */
export function sourcePath(path: Array<string | number>, origins: Map<string, BranchOrigin>, atKey = false): Array<string | number> {
  if (path[0] !== 'stages' || typeof path[1] !== 'string') return path;
  const o = origins.get(path[1]);
  if (!o) return path;
  if (path[2] === 'with') {
    const rest = path.slice(3).map(String).join('.');
    const c = o.own.find((x) => rest === x.key || rest.startsWith(`${x.key}.`));
    if (c) return atKey && rest === c.key ? ['stages', o.stage, 'matrix', ...c.src] : ['stages', o.stage, 'matrix', ...c.src, c.index];
  }
  return ['stages', o.stage, ...path.slice(2)];
}

/** Stage ids a selector names: the id itself, or every branch of a swept stage (`--only prune`). */
export function selectIds(selector: string, ids: Iterable<string>): string[] {
  const all = [...ids];
  if (all.includes(selector)) return [selector];
  return all.filter((id) => id.startsWith(`${selector}[`));
}
