/**
 * Path-valued recipe fields, found through their schema's `x-compress-path` annotation (see
 * src/util/paths.ts): validation checks every one of them with the same function, so a field that
 * `run` would refuse (`..`, absolute, the workspace itself as an output directory) is a positioned
 * recipe error instead, whatever stage kind or data source declares it.
 */
import { PATH_KEYWORD, pathFieldProblem, type PathField } from '../util/paths.js';
import { getOwn } from '../util/own.js';

type Schema = Record<string, unknown>;
type At = Array<string | number>;

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Whether an `if` of the shape `{ properties: { k: { const: c } } }` holds for `value`. */
function holds(cond: unknown, value: unknown): boolean {
  if (!isObj(cond) || !isObj(value)) return false;
  const props = isObj(cond.properties) ? cond.properties : {};
  return Object.entries(props).every(([k, s]) => !isObj(s) || !('const' in s) || getOwn(value, k) === s.const);
}

/** Every annotated path field present in `value`, with its path. */
export function pathFieldsIn(schema: unknown, value: unknown, at: At = [], out: Array<{ path: At; field: PathField; value: string }> = []) {
  if (!isObj(schema)) return out;
  const field = schema[PATH_KEYWORD] as PathField | undefined;
  if (field && typeof value === 'string') out.push({ path: at, field, value });
  if (Array.isArray(value) && schema.items) value.forEach((v, i) => pathFieldsIn(schema.items, v, [...at, i], out));
  if (isObj(value)) {
    const props = isObj(schema.properties) ? schema.properties : {};
    for (const k of Object.keys(value)) {
      if (Object.hasOwn(props, k)) pathFieldsIn(props[k], value[k], [...at, k], out);
      else if (isObj(schema.additionalProperties)) pathFieldsIn(schema.additionalProperties, value[k], [...at, k], out);
    }
  }
  for (const branch of Array.isArray(schema.allOf) ? schema.allOf : []) {
    if (!isObj(branch)) continue;
    if (branch.if === undefined) pathFieldsIn(branch, value, at, out);
    else if (holds(branch.if, value)) pathFieldsIn(branch.then, value, at, out);
  }
  return out;
}

/** The problems of every path field in `value` (positioned by the caller). */
export function pathProblems(schema: unknown, value: unknown, at: At = []): Array<{ path: At; message: string }> {
  return pathFieldsIn(schema, value, at).flatMap(({ path, field, value: p }) => {
    const message = pathFieldProblem(p, field);
    return message ? [{ path, message }] : [];
  });
}

/** The annotated fields a schema declares (`[]` marks an array item), for tests that cover each. */
export function declaredPathFields(schema: unknown, at: string[] = []): Array<{ path: string[]; field: PathField }> {
  if (!isObj(schema)) return [];
  const out: Array<{ path: string[]; field: PathField }> = [];
  if (schema[PATH_KEYWORD]) out.push({ path: at, field: schema[PATH_KEYWORD] as PathField });
  if (isObj(schema.properties)) for (const [k, s] of Object.entries(schema.properties)) out.push(...declaredPathFields(s, [...at, k]));
  if (schema.items) out.push(...declaredPathFields(schema.items, [...at, '[]']));
  if (isObj(schema.additionalProperties)) out.push(...declaredPathFields(schema.additionalProperties, [...at, '*']));
  for (const b of Array.isArray(schema.allOf) ? schema.allOf : []) if (isObj(b)) out.push(...declaredPathFields(b.then ?? b, at));
  return out;
}
