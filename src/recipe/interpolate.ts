/**
 * `${params.name}` references. A string that is exactly one reference takes the parameter's value
 * with its type (so `"${params.sparsity}"` becomes the number 0.9); references inside longer strings
 * are replaced by the value's text. Other `${...}` forms (e.g. `${stages.x.accuracy}` in gates) are
 * left for their consumers.
 */
import { setOwn } from '../util/own.js';

const WHOLE = /^\$\{params\.([A-Za-z_][A-Za-z0-9_]*)\}$/;
const PART = /\$\{params\.([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Run-time templates: strings a stage kind expands itself when it runs (exec's `command` with
 * `${inputs.<id>}` / `${outputs}`). `$$` stands for a literal `$` there. Parameter text inserted into
 * a template is escaped that way, so each placeholder is expanded exactly once: a parameter holding
 * `${outputs}/../x` reaches the program as that literal text, never as a second expansion.
 */
const TEMPLATE_TOKEN = /\$\$|\$\{([^}]*)\}/g;

/** Text that a template shows literally (`$` doubled). */
export function escapeTemplateText(text: string): string {
  return text.replace(/\$/g, () => '$$');
}

/** The `${...}` references of a template, in order (escaped `$$` skipped). */
export function templateRefs(template: string): string[] {
  return [...template.matchAll(TEMPLATE_TOKEN)].filter((m) => m[0] !== '$$').map((m) => m[1]);
}

/** Expands a template in one pass: each reference by `resolve`, `$$` to `$`; replacement text is never rescanned. */
export function expandTemplate(template: string, resolve: (ref: string) => string): string {
  return template.replace(TEMPLATE_TOKEN, (all, ref: string | undefined) => (all === '$$' ? '$' : resolve(ref!)));
}

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
  isTemplate: (path: Array<string | number>) => boolean = () => false,
): unknown {
  const has = (name: string) => params !== null && typeof params === 'object' && !Array.isArray(params) && Object.hasOwn(params, name);
  if (typeof value === 'string') {
    const whole = WHOLE.exec(value);
    if (whole) {
      if (!has(whole[1])) {
        unresolved.push({ path, name: whole[1] });
        return value;
      }
      const v = structuredClone(params[whole[1]]);
      return typeof v === 'string' && isTemplate(path) ? escapeTemplateText(v) : v;
    }
    return value.replace(PART, (ref, name: string) => {
      if (!has(name)) {
        unresolved.push({ path, name });
        return ref;
      }
      const v = params[name];
      const text = typeof v === 'object' ? JSON.stringify(v) : String(v);
      return isTemplate(path) ? escapeTemplateText(text) : text;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolateParams(v, params, [...path, i], unresolved, isTemplate));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) setOwn(out, k, interpolateParams(v, params, [...path, k], unresolved, isTemplate));
    return out;
  }
  return value;
}
