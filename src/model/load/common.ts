import { InputError } from '../../errors/input-error.js';
import { setOwn } from '../../util/own.js';

/** Throws an InputError naming the layer and weight if `values` holds a NaN or an infinity. */
export function assertFiniteWeights(values: ArrayLike<number>, file: string, layer: string, weight: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      let count = 0;
      for (let j = i; j < values.length; j++) if (!Number.isFinite(values[j])) count++;
      throw new InputError(`weight '${weight}' contains ${count} non-finite value(s) (first: ${v} at flat index ${i})`, {
        file,
        layer,
        hint: 'the model was saved after training diverged, or the file is corrupt',
      });
    }
  }
}

/** A name from a model file as a layer name: leading punctuation dropped, other characters than [A-Za-z0-9_./-] as '_'. */
export const sanitizeLayerName = (s: string): string => s.replace(/^[^A-Za-z0-9]+/, '').replace(/[^A-Za-z0-9_./-]+/g, '_').replace(/\/+$/, '');

export function shapeStr(s: ArrayLike<number | null>): string {
  return `[${Array.from(s, (d) => (d === null ? 'null' : String(d))).join(', ')}]`;
}

export function sameShape(a: ArrayLike<number | null>, b: ArrayLike<number | null>): boolean {
  return a.length === b.length && Array.from(a).every((d, i) => d === b[i]);
}

/**
 * Layer options tfjs-layers accepts and then does not compute, so a model using them would run differently in
 * compress than in Keras: class -> why, from the tfjs (camelCase) config. The loaders refuse such layers and the
 * export layer table reuses the check.
 */
export const TFJS_IGNORED_OPTIONS: Record<string, (config: Record<string, unknown>) => string | undefined> = {
  Conv2DTranspose: (c) => {
    const d = c.dilationRate;
    if (d !== undefined && d !== null && (Array.isArray(d) ? d.some((v) => v !== 1) : d !== 1)) {
      return `dilation_rate ${JSON.stringify(d)} is not supported (tfjs's Conv2DTranspose ignores it); use dilation 1`;
    }
    if (c.outputPadding !== undefined && c.outputPadding !== null) return `output_padding ${JSON.stringify(c.outputPadding)} is not supported (tfjs's Conv2DTranspose has none); remove it`;
    return undefined;
  },
};

/** Why tfjs would not compute this layer as written (see TFJS_IGNORED_OPTIONS), or undefined. */
export function tfjsIgnoredOption(className: string, config: Record<string, unknown>): string | undefined {
  return Object.hasOwn(TFJS_IGNORED_OPTIONS, className) ? TFJS_IGNORED_OPTIONS[className](config) : undefined;
}

const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Refuses a tfjs-dialect topology (`{class_name, config}`, nested models included) with a layer tfjs would not compute as written. */
export function refuseIgnoredOptions(topology: unknown, file: string): void {
  const t = topology as Record<string, any> | undefined;
  const root = t?.model_config && typeof t.model_config === 'object' ? t.model_config : t;
  const cfg = root?.config;
  const layers: Array<Record<string, any>> = Array.isArray(cfg) ? cfg : Array.isArray(cfg?.layers) ? cfg.layers : [];
  for (const l of layers) {
    if (!l || typeof l !== 'object') continue;
    if (l.config && (Array.isArray(l.config) || Array.isArray(l.config.layers))) {
      refuseIgnoredOptions(l, file);
      continue;
    }
    const c: Record<string, unknown> = {};
    for (const [k, v] of Object.entries((l.config ?? {}) as Record<string, unknown>)) setOwn(c, camel(k), v);
    const why = tfjsIgnoredOption(String(l.class_name), c);
    if (why) throw new InputError(`${String(l.class_name)} with ${why}`, { file, layer: String(c.name ?? l.name ?? '') });
  }
}
