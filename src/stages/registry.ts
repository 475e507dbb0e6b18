import type { StageKind } from './types.js';
import { loadStage } from './load.js';
import { trainStage } from './train.js';
import { evaluateStage } from './evaluate.js';
import { exportStage } from './export.js';
import { pruneStage } from './prune.js';
import { quantizeStage } from './quantize.js';
import { retrainStage } from './retrain.js';
import { factorizeStage } from './factorize.js';
import { execStage } from './exec.js';

/** Every stage kind, in the order `compress --help` and the schema list them. */
export const STAGE_KINDS: StageKind[] = [loadStage, trainStage, pruneStage, retrainStage, quantizeStage, factorizeStage, evaluateStage, exportStage, execStage];

const byKind = new Map(STAGE_KINDS.map((k) => [k.kind, k]));

export function stageKind(kind: string): StageKind | undefined {
  return byKind.get(kind);
}
