import type { BackendChoice } from '../engine/backend.js';
import type { Splits } from '../data/dataset.js';

export type Metrics = Record<string, unknown>;

/** What one upstream stage hands to a stage: its output directory (read-only) and its metrics. */
export interface StageInput {
  id: string;
  kind: string;
  dir: string;
  metrics: Metrics;
}

export interface StageProgress {
  /** One short line for the progress display, e.g. `epoch 2/5 batch 40/125 loss 0.31`. */
  message: string;
  /** 0..1 when known. */
  fraction?: number;
}

export interface StageContext<W> {
  stageId: string;
  with: W;
  seed: number;
  backend: BackendChoice;
  /** Empty directory the stage writes its outputs into; everything in it becomes the artifact. */
  outDir: string;
  /** Directory of the recipe file: relative paths in `with` resolve against it. */
  workspace: string;
  /** Upstream stages, in `needs` order. */
  inputs: StageInput[];
  /** Loads a dataset declared in the recipe by name (the name already defaulted by the runner). */
  loadData(name: string): Promise<Splits>;
  progress(p: StageProgress): void;
  log(message: string): void;
  signal: AbortSignal;
}

export interface StageResult {
  metrics: Metrics;
}

export interface StageKind<W = any> {
  kind: string;
  /** Bumped whenever the implementation changes what it outputs: part of every cache key. */
  version: string;
  description: string;
  /** JSON Schema of `with` (draft 2020-12); `with` types derive from it. */
  withSchema: object;
  /** Dataset names `with` refers to (their content digests go into the cache key). */
  datasets(w: W): string[];
  /**
   * Kinds whose schema has `data` read it whenever they run, so validation requires one (defaulted when
   * the recipe declares one dataset); true for a kind that reads data only for some settings.
   */
  dataOptional?: boolean;
  /** Repository files `with` refers to (e.g. a model to load): their content digests go into the cache key. */
  files?(w: W, workspace: string): string[];
  /**
   * Repository files `with` names that must exist before the stage can run, with where `with` names
   * them: `validate` and the start of `run` report a missing one at its recipe position.
   */
  requiredFiles?(w: W): Array<{ path: Array<string | number>; file: string; what: string }>;
  /** Whether the stage produces a model artifact (model.json + weights.bin + meta.json) in outDir. */
  producesModel: boolean;
  /** Numeric metrics the stage reports (what gates may reference). */
  metrics: readonly string[];
  /**
   * For kinds whose metric names are only known at run time (exec reads them from the JSON file its
   * `with.metrics` names): true lets gates name any metric (a missing one fails the gate when it is
   * evaluated), false means the stage reports none.
   */
  openMetrics?(w: W): boolean;
  /** Minimum and maximum number of upstream model stages in `needs`. */
  needsModels: [min: number, max: number];
  /**
   * Top-level `with` keys whose strings the kind expands itself when it runs (placeholders, `$$` for
   * `$`): parameter text interpolated into them is escaped, so it is never expanded a second time.
   */
  templates?: readonly string[];
  /** Checks of `with` that need the stage's place in the graph (positioned under the stage by the caller). */
  check?(w: W, stage: { id: string; needs: string[] }): Array<{ path: Array<string | number>; message: string }>;
  run(ctx: StageContext<W>): Promise<StageResult>;
}

/** Defined once, so each kind module reads `defineStage({...})` and stays typed. */
export function defineStage<W>(k: StageKind<W>): StageKind<W> {
  return k;
}
