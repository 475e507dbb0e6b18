/**
 * `${params.name}` references. A string that is exactly one reference takes the parameter's value
 * with its type (so `"${params.sparsity}"` becomes the number 0.9); references inside longer strings
 * are replaced by the value's text. Other `${...}` forms (e.g. `${stages.x.accuracy}` in gates) are
 * left for their consumers.
 */
const WHOLE = /^\$\{params\.([A-Za-z_][A-Za-z0-9_]*)\}$/;
const PART = /\$\{params\.([A-Za-z_][A-Za-z0-9_]*)\}/g;

export interface Unresolved {
  path: Array<string | number>;
  name: string;
}

/**
 * Only the parameters' own keys count: `${params.constructor}` is an unknown parameter, not
 * Object.prototype.constructor. Recursion depth is bounded by checkTree (yaml-guard.ts) upstream.
 */
export function interpolateParams(
  value: unknown,
  params: Record<string, unknown>,
  path: Array<string | number> = [],
  unresolved: Unresolved[] = [],
): unknown {
  const has = (name: string) => params !== null && typeof params === 'object' && !Array.isArray(params) && Object.hasOwn(params, name);
  if (typeof value === 'string') {
    const whole = WHOLE.exec(value);
    if (whole) {
      if (!has(whole[1])) {
        unresolved.push({ path, name: whole[1] });
        return value;
      }
      return structuredClone(params[whole[1]]);
    }
    return value.replace(PART, (ref, name: string) => {
      if (!has(name)) {
        unresolved.push({ path, name });
        return ref;
      }
      const v = params[name];
      return typeof v === 'object' ? JSON.stringify(v) : String(v);
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolateParams(v, params, [...path, i], unresolved));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolateParams(v, params, [...path, k], unresolved);
    return out;
  }
  return value;
}
