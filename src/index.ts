/**
 * compress as a library (`import { createSchedule, magnitudeMask, runRecipe } from '@compress-ml/compress'`): the
 * same pieces the recipe stages use, for programmatic pipelines and notebooks-in-TypeScript.
 */
// Recipes and the runner.
export { loadRecipe, parseRecipe, type LoadedRecipe, type ResolvedStage, type LoadOptions } from './recipe/load.js';
export { RecipeError, UsageError } from './recipe/errors.js';
export { runRecipe, stageStates, type RunOptions, type RunSummary, type RunEvent, type StageOutcome } from './run/execute.js';

// Engine: backends, built-in architectures, the training loop.
export { initEngine, resolveBackend, engineIdentity, tfjsNodeAvailable, type BackendChoice, type BackendName } from './engine/backend.js';
export { buildModel, BUILTIN_MODELS, type BuiltinModel, type BuildOptions } from './engine/models.js';
export { trainModel, evaluateModel, learningRateAt, type TrainOptions, type TrainHooks, type TrainResult, type EvalResult, type OptimizerSpec, type LrSchedule } from './engine/train.js';
export { FusedAdam } from './engine/optimizers.js';

// Data and models.
export { loadMnist, splitDataset, type SplitSpec } from './data/mnist.js';
export { loadModelFrom, detectModelFormat, loadTfjsModel, loadKerasModel, type ModelFormat } from './model/load/index.js';

// Pruning: schedules, selectors, masks, structured removal, statistics.
export * from './prune/index.js';
// Quantization, weight sharing, Huffman coding, size accounting, factorization.
export * from './compression/index.js';
// Export to TFLite, ONNX and TF.js.
export { exportModel, ExportError, SUPPORTED_PRECISIONS, type ExportTarget, type ExportPrecision, type ExportOptions, type ExportResult } from './export/index.js';
