import { isAlias, isCollection, isPair, isScalar, type Document, type Node } from 'yaml';
import { RESERVED_KEYS } from '../util/own.js';

/**
 * Limits on the shape of a parsed YAML document, checked on the syntax tree before it becomes a JS
 * value: everything downstream (interpolation, schema validation, `--set`) walks that value
 * recursively and would overflow the stack on deep nesting, loop forever on a cycle, or run out of
 * memory on an alias bomb. Checking here gives each problem the position of the node that causes it.
 */

/** Far deeper than any recipe needs, far shallower than what overflows a recursive walk. */
export const MAX_DEPTH = 64;
/** Values that aliases may add in all: generous for real reuse, far too few for `*a` fanned out 10^9 times. */
export const MAX_ALIAS_VALUES = 10_000;
/** Longest string value: paths, commands, gates and descriptions are far shorter; a 1 MB string is an attack. */
export const MAX_STRING_LENGTH = 4096;
/** Longest key (stage ids, dataset and parameter names, `with` keys). */
export const MAX_KEY_LENGTH = 128;
/** Message from yaml when its own recursive parser overflows the stack on deep flow nesting. */
const YAML_STACK_OVERFLOW = /^Maximum call stack size exceeded/;

/** yaml's own stack overflow (3,000 nested `[`) is the nesting limit, said the way checkTree says it. */
export function yamlErrorMessage(message: string): string {
  const first = message.split('\n')[0];
  if (YAML_STACK_OVERFLOW.test(first)) return `values nested more than ${MAX_DEPTH} levels deep`;
  // yaml's wording names its own API (`YAML.parseAllDocuments()`), which means nothing to a recipe author.
  if (/multiple documents/.test(first)) return "the file holds more than one YAML document (a '---' or '...' line starts another); a recipe is one document";
  return first;
}

export interface TreeProblem {
  /** Offset in the source text of the node at fault. */
  offset?: number;
  message: string;
}

interface Measure {
  /** Values the node stands for once aliases are expanded. */
  size: number;
  /** Nesting levels below the node once aliases are expanded. */
  height: number;
}

/**
 * The first structural problem of the document, or undefined: an alias with no anchor before it, an
 * alias inside the value it names (a cycle), nesting deeper than MAX_DEPTH (counting what aliases
 * bring in), aliases that expand to more than MAX_ALIAS_VALUES values, a `__proto__` key, a key longer
 * than MAX_KEY_LENGTH or a string longer than MAX_STRING_LENGTH.
 */
export function checkTree(doc: Document): TreeProblem | undefined {
  // Anchors in document order, as yaml resolves them: an alias names the last anchor before it.
  const anchors = new Map<string, Node>();
  const measured = new Map<Node, Measure>();
  /** Collections being walked: an alias to one of them is a cycle. */
  const open = new Set<Node>();
  let aliased = 0;
  let found: TreeProblem | undefined;
  const fail = (node: Node, message: string): Measure => {
    found ??= { offset: node.range?.[0], message };
    return { size: 0, height: 0 };
  };

  const walk = (node: unknown, depth: number): Measure => {
    if (found || node === null || node === undefined) return { size: 0, height: 0 };
    if (isPair(node)) {
      const key = node.key;
      if (isScalar(key) && typeof key.value === 'string') {
        if (RESERVED_KEYS.has(key.value)) return fail(key, `key '${key.value}' is not allowed (it names the prototype of JavaScript objects)`);
        if (key.value.length > MAX_KEY_LENGTH) return fail(key, `key of ${key.value.length} characters is longer than ${MAX_KEY_LENGTH}`);
      }
      const k = walk(node.key, depth);
      const v = walk(node.value, depth);
      return { size: k.size + v.size, height: Math.max(k.height, v.height) };
    }
    if (isAlias(node)) {
      const target = anchors.get(node.source);
      if (!target) return fail(node, `unknown alias '*${node.source}': an anchor '&${node.source}' must come before it`);
      if (open.has(target)) return fail(node, `alias '*${node.source}' is inside the value it refers to (a cycle)`);
      const m = measured.get(target)!;
      aliased += m.size;
      if (aliased > MAX_ALIAS_VALUES) return fail(node, `aliases expand to more than ${MAX_ALIAS_VALUES} values (an alias bomb?)`);
      if (depth + m.height > MAX_DEPTH) return fail(node, `alias '*${node.source}' nests values more than ${MAX_DEPTH} levels deep`);
      return m;
    }
    const n = node as Node;
    if (depth > MAX_DEPTH) return fail(n, `values nested more than ${MAX_DEPTH} levels deep`);
    if (isScalar(n) && typeof n.value === 'string' && n.value.length > MAX_STRING_LENGTH) {
      return fail(n, `string of ${n.value.length} characters is longer than ${MAX_STRING_LENGTH}`);
    }
    if (n.anchor) anchors.set(n.anchor, n);
    let m: Measure = { size: 1, height: 0 };
    if (isCollection(n)) {
      open.add(n);
      for (const item of n.items) {
        const c = walk(item, depth + 1);
        m = { size: m.size + c.size, height: Math.max(m.height, c.height + 1) };
      }
      open.delete(n);
    }
    measured.set(n, m);
    return m;
  };
  walk(doc.contents, 0);
  return found;
}
