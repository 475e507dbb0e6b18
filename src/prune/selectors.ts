/**
 * Per-layer settings from a list of selector entries (shared by pruning and quantization).
 *
 * Semantics of `resolveLayerSettings(layers, entries, defaults)`:
 *   - only *considered* layers take part: by default the prunable ones (a kernel: Dense, Conv2D,
 *     DepthwiseConv2D, SeparableConv2D, Conv2DTranspose); pass `opts.classes` (or `'all'`) to change that;
 *   - every considered layer starts with `defaults`, unless the list starts with entries that only select
 *     (`match` / `type`, no setting, no `exclude`): then only the layers those leading entries match do
 *     (`layers: [{ match: "features.*" }]` acts on those layers alone, as it reads);
 *   - entries are applied in order; an entry selects the considered layers matched by ALL of its
 *     criteria (`match` and/or `type`; neither = every considered layer); for each selected layer a
 *     normal entry merges its other (non-undefined) fields over the layer's current settings (or over
 *     `defaults` if an earlier entry excluded it), `exclude: true` removes the layer; so later entries
 *     override earlier ones, and a later entry can bring back an excluded layer;
 *   - `match`: a glob over the full layer name (`*` any run, `?` one char, `[abc]`/`[a-z]`/`[!a]` a
 *     class), or `re:<regex>` (JavaScript syntax, must match the WHOLE name; add `.*` for a prefix);
 *   - `type`: the tfjs class name (`layer.getClassName()`), exact, or a list of them;
 *   - an entry that selects no considered layer throws a SelectorError listing the model's layers.
 * The keys `match`, `type`, `exclude` are reserved and never copied into the settings.
 */
import { setOwn } from '../util/own.js';

export interface LayerInfo {
  name: string;
  className: string;
}

export interface SelectorEntry {
  match?: string;
  type?: string | string[];
  exclude?: boolean;
}

export const PRUNABLE_CLASSES: readonly string[] = Object.freeze(['Dense', 'Conv2D', 'GroupedConv2D', 'DepthwiseConv2D', 'SeparableConv2D', 'Conv2DTranspose']);

export interface ResolveOptions {
  /** Layer classes taken into account; default PRUNABLE_CLASSES. */
  classes?: readonly string[] | 'all';
}

export class SelectorError extends Error {
  constructor(
    message: string,
    readonly entryIndex: number,
    readonly layers: readonly LayerInfo[],
  ) {
    super(message);
    this.name = 'SelectorError';
  }
}

/** The layer list selectors work on, from a tfjs model (any object with `layers: {name, getClassName()}[]`). */
export function layerInfos(model: { layers: Array<{ name: string; getClassName(): string }> }): LayerInfo[] {
  return model.layers.map((l) => ({ name: l.name, className: l.getClassName() }));
}

/** Compiles a glob (`*`, `?`, `[...]`) or `re:<regex>` into an anchored RegExp. */
export function compileMatcher(pattern: string): RegExp {
  if (pattern.startsWith('re:')) {
    const src = pattern.slice(3);
    try {
      return new RegExp(`^(?:${src})$`);
    } catch (e) {
      throw new SelectorError(`invalid regular expression in selector ${JSON.stringify(pattern)}: ${(e as Error).message}`, -1, []);
    }
  }
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') out += '.*';
    else if (c === '?') out += '.';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close === -1) {
        out += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, close);
      const negate = body.startsWith('!') || body.startsWith('^');
      if (negate) body = body.slice(1);
      out += `[${negate ? '^' : ''}${body.replace(/[\\\]]/g, '\\$&')}]`;
      i = close;
    } else out += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** Layers listed in full in a selector error; a bigger model's list is cut (`compress layers` prints all). */
const LISTED_LAYERS = 40;

function describeLayers(layers: readonly LayerInfo[], considered: ReadonlySet<string>): string {
  const shown = layers.slice(0, LISTED_LAYERS).map((l) => `${l.name} (${l.className})${considered.has(l.name) ? '' : ' [not selectable]'}`).join(', ');
  return layers.length > LISTED_LAYERS ? `${shown}, ... and ${layers.length - LISTED_LAYERS} more (\`compress layers <model or stage>\` lists them all)` : shown;
}

/**
 * A stage whose selection is empty fails (it would otherwise succeed having changed nothing):
 * the message says what the stage works on and lists the model's layers.
 */
export function assertSelected(stage: string, what: string, selected: ReadonlyMap<string, unknown>, layers: readonly LayerInfo[], classes: readonly string[] = PRUNABLE_CLASSES): void {
  if (selected.size > 0) return;
  const considered = new Set(layers.filter((l) => classes.includes(l.className)).map((l) => l.name));
  const why = considered.size === 0 ? `the model has no ${classes.join(', ')} layer` : 'every candidate layer is excluded by the layers: selectors';
  throw new Error(`stage '${stage}': no layer to ${what}: ${why}; the model's layers are: ${describeLayers(layers, considered)}`);
}

function describeEntry(e: SelectorEntry): string {
  const parts: string[] = [];
  if (e.match !== undefined) parts.push(`match: ${JSON.stringify(e.match)}`);
  if (e.type !== undefined) parts.push(`type: ${JSON.stringify(e.type)}`);
  if (e.exclude) parts.push('exclude: true');
  return `{ ${parts.join(', ') || '(all layers)'} }`;
}

const RESERVED = new Set(['match', 'type', 'exclude']);

/** Whether an entry only selects: no setting, no `exclude`. */
function selectsOnly(e: unknown): boolean {
  if (e === null || typeof e !== 'object') return false;
  const entry = e as Record<string, unknown>;
  return entry.exclude !== true && !Object.keys(entry).some((k) => !RESERVED.has(k) && entry[k] !== undefined);
}

/** How many entries at the start of the list only select (they choose the layers the stage acts on). */
function leadingSelections(entries: readonly unknown[]): number {
  let n = 0;
  while (n < entries.length && selectsOnly(entries[n])) n++;
  return n;
}

/**
 * `layers:` entries that change nothing (validate reports them at their position): an entry that only
 * selects, after the leading ones (which choose the layers) and with no earlier `exclude` whose layers it
 * could bring back: its layers already have their settings.
 */
export function noOpSelectorEntries(entries: readonly unknown[] | undefined, at: Array<string | number> = ['with', 'layers']): Array<{ path: Array<string | number>; message: string }> {
  const list = entries ?? [];
  const lead = leadingSelections(list);
  let excluded = false;
  const out: Array<{ path: Array<string | number>; message: string }> = [];
  list.forEach((e, i) => {
    if (i < lead || e === null || typeof e !== 'object') return;
    if ((e as SelectorEntry).exclude === true) excluded = true;
    else if (selectsOnly(e) && !excluded) {
      out.push({
        path: [...at, i],
        message: `this entry ${describeEntry(e as SelectorEntry)} sets nothing and brings back no excluded layer: it changes nothing (entries that only select choose the stage's layers at the start of the list)`,
      });
    }
  });
  return out;
}

export function resolveLayerSettings<T extends object>(
  layers: ReadonlyArray<LayerInfo>,
  entries: ReadonlyArray<SelectorEntry & Partial<T>>,
  defaults: T,
  opts: ResolveOptions = {},
): Map<string, T> {
  const classes = opts.classes ?? PRUNABLE_CLASSES;
  const consideredLayers = classes === 'all' ? [...layers] : layers.filter((l) => classes.includes(l.className));
  const considered = new Set(consideredLayers.map((l) => l.name));
  const result = new Map<string, T>();
  if (leadingSelections(entries) === 0) for (const l of consideredLayers) result.set(l.name, { ...defaults });

  entries.forEach((entry, i) => {
    if (entry === null || typeof entry !== 'object') throw new SelectorError(`selector entry #${i} must be an object`, i, layers);
    if (entry.match !== undefined && typeof entry.match !== 'string') throw new SelectorError(`selector entry #${i}: match must be a string`, i, layers);
    const re = entry.match !== undefined ? compileMatcher(entry.match) : undefined;
    const types = entry.type === undefined ? undefined : Array.isArray(entry.type) ? entry.type : [entry.type];
    const selected = consideredLayers.filter((l) => (!re || re.test(l.name)) && (!types || types.includes(l.className)));
    if (selected.length === 0) {
      const why = classes === 'all' ? '' : ` (selectable classes: ${classes.join(', ')})`;
      // A pattern matches the whole name: `re:block_1` does not find `model/block_1_expand`; say so when a partial match exists.
      const partial = entry.match?.startsWith('re:') && consideredLayers.some((l) => new RegExp(entry.match!.slice(3)).test(l.name))
        ? `; re: patterns match the whole layer name (anchored): write re:.*${entry.match.slice(3)}.* to match inside names`
        : '';
      throw new SelectorError(
        `selector entry #${i} ${describeEntry(entry)} matches no layer${why}${partial}; the model's layers are: ${describeLayers(layers, considered)}`,
        i,
        layers,
      );
    }
    const overrides: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(entry)) if (!RESERVED.has(k) && v !== undefined) setOwn(overrides, k, v);
    for (const l of selected) {
      if (entry.exclude) result.delete(l.name);
      else result.set(l.name, { ...(result.get(l.name) ?? defaults), ...overrides } as T);
    }
  });

  // Keep the model's layer order in the result.
  const ordered = new Map<string, T>();
  for (const l of consideredLayers) {
    const v = result.get(l.name);
    if (v) ordered.set(l.name, v);
  }
  return ordered;
}
