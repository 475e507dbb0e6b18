import { isAlias, isMap, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import { suggestion, UsageError } from './errors.js';
import { checkTree, yamlErrorMessage } from './yaml-guard.js';
import { RESERVED_KEYS } from '../util/own.js';

export interface Override {
  /** As the user wrote it, for messages. */
  text: string;
  path: string[];
  value: unknown;
}

/** Parses `--set a.b.c=value`; the value is read as YAML, so `0.8`, `true`, `[1,2]` keep their types. */
export function parseOverride(text: string): Override {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`--set ${text}: expected path=value, e.g. --set stages.prune.with.epochs=3`);
  const path = text.slice(0, eq).trim().split('.');
  if (path.some((p) => p === '')) throw new UsageError(`--set ${text}: empty segment in path '${text.slice(0, eq)}'`);
  const reserved = path.find((p) => RESERVED_KEYS.has(p));
  if (reserved) throw new UsageError(`--set ${text}: '${reserved}' is not allowed in a path (it names the prototype of JavaScript objects)`);
  const doc = parseDocument(text.slice(eq + 1));
  if (doc.errors.length) throw new UsageError(`--set ${text}: value is not valid YAML (${yamlErrorMessage(doc.errors[0].message)})`);
  // The same limits as the recipe file: `&a [*a]` would otherwise become a cyclic value.
  const bad = checkTree(doc);
  if (bad) throw new UsageError(`--set ${text}: ${bad.message}`);
  const value = doc.toJS({ maxAliasCount: -1 });
  return { text, path, value: value === undefined ? null : value };
}

/**
 * Sets the override's value in the document, creating missing maps on the way (an empty value such
 * as `params:` counts as missing). Keys that contain dots are found as written: at each mapping the
 * longest run of the remaining segments that names an existing key is taken, so
 * `--set stages.prune.matrix.schedule.finalSparsity=[0.5,0.9]` replaces a recipe's dotted
 * `schedule.finalSparsity:` sweep instead of adding a second, nested axis for the same key (a new
 * key is created nested, which the matrix reads as the same dotted path). A path through a scalar, an alias or a list with a non-index segment is a UsageError naming
 * the `--set` argument.
 */
export function applyOverride(doc: Document, o: Override): void {
  const fail = (i: number, why: string) => new UsageError(`--set ${o.text}: '${o.path.slice(0, i).join('.') || '(recipe)'}' ${why}`);
  const at: unknown[] = [];
  let node: unknown = doc.contents;
  let undeclared: { key: string; keys: string[] } | undefined;
  for (let i = 0; i < o.path.length; ) {
    const seg = o.path[i];
    if (node === null || node === undefined || (isScalar(node) && node.value === null)) {
      node = doc.createNode({});
      if (at.length) doc.setIn(at, node);
      else doc.contents = node as Document['contents'];
    }
    if (isMap(node)) {
      const keys = node.items.map((p) => (isScalar(p.key) ? String(p.key.value) : ''));
      const { key, used } = mapKey(keys, o.path, i);
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
      if (!pair && i === 1 && o.path[0] === 'params') undeclared = { key, keys };
      at.push(pair ? (pair.key as { value: unknown }).value : key);
      node = pair?.value;
      i += used;
    } else if (isSeq(node)) {
      if (!/^\d+$/.test(seg)) throw fail(i, `is a list, so '${seg}' must be an index (0, 1, ...)`);
      if (Number(seg) > node.items.length) throw fail(i, `has ${node.items.length} items, so index ${seg} is past its end`);
      at.push(Number(seg));
      node = node.items[Number(seg)];
      i += 1;
    } else if (isAlias(node)) {
      throw fail(i, `is an alias (*${node.source}); set the anchored value instead`);
    } else {
      const shown = isScalar(node) ? JSON.stringify(node.value)?.slice(0, 40) : 'a value';
      throw fail(i, `is ${shown}, not a mapping, so it cannot hold '${seg}'`);
    }
  }
  const text = undeclared ? doc.toString() : '';
  doc.setIn(at, doc.createNode(o.value));
  // A param the recipe neither declares nor reads would be set and used by nothing: a typo, said so.
  if (undeclared && !text.includes(`params.${undeclared.key}`)) {
    const { key, keys } = undeclared;
    throw fail(1, `has no param '${key}' and nothing reads \${params.${key}} (the recipe's params: ${keys.join(', ') || 'none'})${suggestion(key, keys)}`);
  }
}

/** The key a path takes at a mapping (from segment i): see applyOverride. Pure. */
export function mapKey(keys: readonly string[], path: readonly string[], i: number): { key: string; used: number } {
  const existing = new Set(keys);
  for (let n = path.length - i; n > 1; n--) {
    const key = path.slice(i, i + n).join('.');
    if (existing.has(key)) return { key, used: n };
  }
  return { key: path[i], used: 1 };
}
