import type * as tfType from '@tensorflow/tfjs';
import type { ImportCheck } from '../model/load/onnx-verify.js';
import { checkGraphImport, importCheckError, importTfjsGraph, type GraphSource } from '../model/load/tfjs-graph.js';
import type { ModelMeta } from '../model/meta.js';
import { importCheckInputs, importCheckLine } from './import-check-inputs.js';
import type { LoadWith } from './load.js';
import type { StageContext } from './types.js';

/**
 * The load stage's TF.js graph-model path: import into Keras layers, then check the import against tfjs's own
 * graph executor running the same model.json on the recipe's data (its test split) or seeded random inputs;
 * a difference beyond the tolerance fails the stage.
 */
export async function importTfjsGraphVerified(tf: typeof tfType, src: GraphSource, ctx: StageContext<LoadWith>, meta: ModelMeta): Promise<{ model: tfType.LayersModel; importCheck: ImportCheck & Record<string, unknown> }> {
  const imp = importTfjsGraph(tf, src);
  try {
    meta.provenance = { ...meta.provenance, format: 'tfjs-graph-model', tfjsConvertedBy: imp.info.convertedBy };
    const shape = imp.model.inputs[0].shape.slice(1) as number[];
    const { x, n, inputs } = await importCheckInputs(ctx, shape, imp.info.fixedBatch, 'tfjs-graph-import-check');
    const check = await checkGraphImport(tf, imp, x, n, { tolerance: ctx.with.verify?.tolerance, inputs });
    ctx.log(importCheckLine(check));
    if (!check.passed) throw importCheckError(check, src.file);
    return { model: imp.model, importCheck: { ...check, graphNodes: imp.info.nodes, convertedBy: imp.info.convertedBy } };
  } catch (e) {
    imp.model.dispose();
    throw e;
  }
}
