/**
 * The export targets: one entry each, with the precisions it writes, the files it writes, how it writes
 * them and how it opens them in its real runtime. A new target is one more entry here. Writers and
 * runtimes are imported when used, so reading this table (recipe schema, `validate`) loads none of them.
 */
import type * as tfType from '@tensorflow/tfjs';
import type { ModelMeta } from '../model/meta.js';
import type { IrGraph } from './ir.js';
import type { Range } from './quant.js';
import type { OnnxPrecision } from './onnx/export.js';
import { TFJS_MODEL_JSON, TFJS_SHARD, type TfjsPrecision } from './tfjs/export.js';
import type { TflitePrecision } from './tflite/export.js';
import type { Runner } from './verify/runners.js';

export interface ExportInput {
  tf: typeof tfType;
  model: tfType.LayersModel;
  meta: ModelMeta;
  /** Representative input samples, row-major, for int8 activation ranges when meta.activationRanges lacks them. */
  calibration?: Float32Array;
  calibrationShape?: number[];
  /** int8 / dynamic-int8 weights with one scale per output channel (default true); false: per tensor. */
  perChannel?: boolean;
  /** TFLite: pruned FULLY_CONNECTED weights as sparse tensors (auto: when smaller and LiteRT runs it). */
  storage?: 'auto' | 'dense' | 'sparse';
}

/** Reads one of the files an export wrote. */
export type ReadExport = (name: string) => Promise<Uint8Array>;

/** What verification learns from the file besides agreement (ONNX int8: the quantized ops it runs as). */
export interface ExportFacts {
  quantizedOps?: string[];
}

interface TargetSpec<P extends string> {
  precisions: readonly P[];
  /** File names written, relative to the export directory. */
  files: readonly string[];
  /** One-line description for the recipe schema. */
  describe: string;
  write(input: ExportInput, precision: P): Promise<Array<[string, Uint8Array]>>;
  /** Opens the written files in the target's own runtime. */
  open(tf: typeof tfType, read: ReadExport): Promise<Runner>;
  facts?(read: ReadExport, precision: P): Promise<ExportFacts>;
}

/** A table entry: its precision type checked once, where the entry is called. */
export interface ExportTargetEntry<P extends string = string> {
  precisions: readonly P[];
  files: readonly string[];
  describe: string;
  supports(precision: string): precision is P;
  write(input: ExportInput, precision: string): Promise<Array<[string, Uint8Array]>>;
  open(tf: typeof tfType, read: ReadExport): Promise<Runner>;
  facts(read: ReadExport, precision: string): Promise<ExportFacts>;
}

function defineTarget<P extends string>(spec: TargetSpec<P>): ExportTargetEntry<P> {
  const supports = (p: string): p is P => (spec.precisions as readonly string[]).includes(p);
  const checked = (p: string): P => {
    if (!supports(p)) throw new Error(`precision '${p}' is not one of ${spec.precisions.join(', ')}`);
    return p;
  };
  return {
    precisions: spec.precisions,
    files: spec.files,
    describe: spec.describe,
    supports,
    write: (input, p) => spec.write(input, checked(p)),
    open: spec.open,
    facts: async (read, p) => (spec.facts ? spec.facts(read, checked(p)) : {}),
  };
}

/** The IR every graph target is converted from, and int8 activation ranges when the precision needs them. */
async function irFor(target: string, input: ExportInput, int8: boolean): Promise<{ ir: IrGraph; ranges?: Range[] }> {
  const [{ buildIr }, { tensorRanges }] = await Promise.all([import('./ir.js'), import('./quant.js')]);
  const ir = buildIr(input.model, target);
  const ranges = int8 ? tensorRanges(input.tf, ir, input.meta, target, input.calibration, input.calibrationShape) : undefined;
  return { ir, ranges };
}

export const TFLITE_FILE = 'model.tflite';
export const ONNX_FILE = 'model.onnx';

export const EXPORT_TARGETS = {
  tflite: defineTarget<TflitePrecision>({
    precisions: ['float32', 'float16', 'dynamic-int8', 'int8'],
    files: [TFLITE_FILE],
    describe: 'mobile',
    async write(input, precision) {
      const { ir, ranges } = await irFor('tflite', input, precision === 'int8');
      const { irToTflite } = await import('./tflite/export.js');
      return [[TFLITE_FILE, irToTflite(ir, input.meta, precision, ranges, { perChannel: input.perChannel, storage: input.storage }).bytes]];
    },
    async open(_tf, read) {
      const { tfliteRunner } = await import('./verify/runners.js');
      return tfliteRunner(await read(TFLITE_FILE));
    },
  }),
  onnx: defineTarget<OnnxPrecision>({
    precisions: ['float32', 'int8'],
    files: [ONNX_FILE],
    describe: 'edge',
    async write(input, precision) {
      const { ir, ranges } = await irFor('onnx', input, precision === 'int8');
      const { irToOnnx } = await import('./onnx/export.js');
      return [[ONNX_FILE, irToOnnx(ir, input.meta, precision, ranges, { perChannel: input.perChannel }).bytes]];
    },
    async open(_tf, read) {
      const { onnxRunner } = await import('./verify/runners.js');
      return onnxRunner(await read(ONNX_FILE));
    },
    async facts(read, precision) {
      if (precision !== 'int8') return {};
      const { onnxOptimizedOpTypes } = await import('./verify/onnx-ops.js');
      const ops = await onnxOptimizedOpTypes(await read(ONNX_FILE));
      return { quantizedOps: [...new Set(ops.filter((t) => /QLinear|QGemm|MatMulInteger|ConvInteger/.test(t)))].sort() };
    },
  }),
  tfjs: defineTarget<TfjsPrecision>({
    precisions: ['float32', 'float16', 'uint8', 'uint16'],
    files: [TFJS_MODEL_JSON, TFJS_SHARD],
    describe: 'cloud / web',
    async write(input, precision) {
      const { tfjsArtifacts } = await import('./tfjs/export.js');
      const { modelJson, shard } = await tfjsArtifacts(input.tf, input.model, precision);
      return [
        [TFJS_MODEL_JSON, new TextEncoder().encode(JSON.stringify(modelJson))],
        [TFJS_SHARD, shard],
      ];
    },
    async open(tf, read) {
      const { tfjsRunner } = await import('./verify/runners.js');
      const modelJson = JSON.parse(new TextDecoder().decode(await read(TFJS_MODEL_JSON)));
      return tfjsRunner(tf, modelJson, await read(TFJS_SHARD));
    },
  }),
};

export type ExportTarget = keyof typeof EXPORT_TARGETS;
export type ExportPrecision = (typeof EXPORT_TARGETS)[ExportTarget]['precisions'][number];

export const EXPORT_TARGET_NAMES = Object.keys(EXPORT_TARGETS) as ExportTarget[];
/** Every precision some target writes, in table order. */
export const EXPORT_PRECISIONS = [...new Set(Object.values(EXPORT_TARGETS).flatMap((t) => t.precisions))] as ExportPrecision[];

/** Which precisions each target writes. */
export const SUPPORTED_PRECISIONS = Object.fromEntries(EXPORT_TARGET_NAMES.map((t) => [t, EXPORT_TARGETS[t].precisions])) as Record<ExportTarget, readonly ExportPrecision[]>;

export function exportTarget(name: string): ExportTargetEntry | undefined {
  return Object.hasOwn(EXPORT_TARGETS, name) ? EXPORT_TARGETS[name as ExportTarget] : undefined;
}
