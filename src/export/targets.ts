/**
 * The export targets: one entry each, with the precisions it writes, the files it writes, how it writes
 * them and how it opens them in its real runtime. A new target is one more entry here. Writers and
 * runtimes are imported when used, so reading this table (recipe schema, `validate`) loads none of them.
 */
import type * as tfType from '@tensorflow/tfjs';
import type { ModelMeta } from '../model/meta.js';
import type { IrGraph } from './ir.js';
import type { Range } from './quant.js';
import type { Int8Options } from './int8-options.js';
import type { WeightQmax } from './layer-error.js';
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
  /** Pruned weights in the target's sparse encoding: auto (where smaller and the runtime reads it), dense, sparse. */
  storage?: Storage;
  /** Full int8: calibration method, equalization, bias correction (int8-prep.ts). */
  int8?: Int8Options;
}

/** The graph a full-int8 export writes: prepared (int8-prep.ts) with the target's weight grid, and its activation ranges. */
export interface Int8Graph {
  ir: IrGraph;
  /** The float reference of `ir` (before bias correction). */
  float: IrGraph;
  ranges: Range[];
  weightQmax: WeightQmax;
  steps: string[];
}

export type Storage = 'auto' | 'dense' | 'sparse';

/**
 * Whether a target stores pruned weights sparse in a precision, and how (or why not): what its runtime was
 * measured to read. `auto` uses the encoding per weight where it makes the file smaller; `sparse` where this
 * says it cannot is refused (at validate for recipes).
 */
export interface StorageRule {
  /** `storage: sparse` can be written. */
  sparse: boolean;
  /** `storage: auto` uses it (where smaller): only where the format's own tools accept the file too. */
  auto: boolean;
  how: string;
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
  /** Full-int8 targets: the prepared graph and ranges the writer uses for int8 (and the per-layer error simulates). */
  int8Graph?(input: ExportInput): Promise<Int8Graph>;
  /** Opens the written files in the target's own runtime. */
  open(tf: typeof tfType, read: ReadExport): Promise<Runner>;
  facts?(read: ReadExport, precision: P): Promise<ExportFacts>;
  storage: Record<P, StorageRule>;
  /** How many weight tensors the written file stores sparse. */
  sparseTensors?(read: ReadExport): Promise<number>;
}

/** A table entry: its precision type checked once, where the entry is called. */
export interface ExportTargetEntry<P extends string = string> {
  precisions: readonly P[];
  files: readonly string[];
  describe: string;
  supports(precision: string): precision is P;
  write(input: ExportInput, precision: string): Promise<Array<[string, Uint8Array]>>;
  int8Graph?(input: ExportInput): Promise<Int8Graph>;
  open(tf: typeof tfType, read: ReadExport): Promise<Runner>;
  facts(read: ReadExport, precision: string): Promise<ExportFacts>;
  storage(precision: string): StorageRule;
  sparseTensors(read: ReadExport): Promise<number>;
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
    ...(spec.int8Graph ? { int8Graph: spec.int8Graph } : {}),
    open: spec.open,
    facts: async (read, p) => (spec.facts ? spec.facts(read, checked(p)) : {}),
    storage: (p) => spec.storage[checked(p)],
    sparseTensors: async (read) => (spec.sparseTensors ? spec.sparseTensors(read) : 0),
  };
}

/**
 * The storage the writer gets: `dense` where the precision has no sparse encoding (auto), an error where
 * `sparse` was asked of it.
 */
function writerStorage(target: string, rules: Record<string, StorageRule>, precision: string, storage: Storage = 'auto'): Storage {
  const rule = rules[precision];
  if (storage === 'sparse' && !rule.sparse) throw new Error(sparseRefusal(target, precision, rule));
  return storage === 'sparse' || (storage === 'auto' && rule.auto) ? storage : 'dense';
}

/** Why `storage: sparse` cannot be had for target + precision. */
export function sparseRefusal(target: string, precision: string, rule: StorageRule): string {
  return `storage 'sparse': ${target} ${precision} exports cannot store weights sparse (${rule.how}); use storage auto or dense`;
}

const TFLITE_STORAGE: Record<TflitePrecision, StorageRule> = {
  float32: { sparse: true, auto: true, how: 'float32 CSR values + DENSIFY (Dense, Conv2D and depthwise kernels)' },
  'dynamic-int8': { sparse: true, auto: true, how: 'int8 CSR values + DENSIFY + DEQUANTIZE: those layers run weight-only int8 (float activations) instead of hybrid' },
  int8: {
    sparse: true,
    auto: true,
    how: "int8 CSR values + DENSIFY + RESHAPE: behind the RESHAPE LiteRT's XNNPACK leaves the int8 op to TFLite's own kernel (straight from DENSIFY it claims the op and fails to prepare it)",
  },

  float16: { sparse: false, auto: false, how: 'kept dense: float16 weights are already DEQUANTIZE inputs' },
  int4: { sparse: false, auto: false, how: 'kept dense: sparse INT4 tensors are not written (packed nibbles; DENSIFY is not known to read them)' },
};
/**
 * ONNX sparse_initializers: onnxruntime densifies them at load (same outputs, QDQ still fuses), but onnx's own
 * checker (full_check) types one as sparse_tensor(T), which Gemm / Conv / DequantizeLinear do not take, so
 * `auto` keeps ONNX weights dense; `sparse` opts in.
 */
const ONNX_SPARSE = (t: string) =>
  `graph sparse_initializer: ${t} values + int64 linear indices, densified by onnxruntime at load; auto keeps ONNX dense: onnx.checker full_check rejects a sparse_tensor input to Gemm/Conv/DequantizeLinear`;
const ONNX_STORAGE: Record<OnnxPrecision, StorageRule> = {
  float32: { sparse: true, auto: false, how: ONNX_SPARSE('float32') },
  int8: { sparse: true, auto: false, how: ONNX_SPARSE('int8') },
  int4: { sparse: false, auto: false, how: 'kept dense: int64 indices cost 16x a packed int4 value' },
};
const TFJS_NO_SPARSE = { sparse: false, auto: false, how: 'TF.js weight shards have no sparse encoding' };

/** The IR every graph target is converted from: as built, or prepared for full int8 with its activation ranges. */
async function irFor(target: string, input: ExportInput, int8: boolean, weightQmax: WeightQmax): Promise<{ ir: IrGraph; ranges?: Range[] }> {
  const { buildIr } = await import('./ir.js');
  if (!int8) return { ir: buildIr(input.model, target) };
  return preparedInt8(target, input, weightQmax);
}

/**
 * The int8-prepared graph, computed once per (model, meta, calibration samples, target, options): an export and
 * its per-layer error report use the same one.
 */
const prepCache = new WeakMap<object, WeakMap<object, WeakMap<object, Map<string, Promise<Int8Graph>>>>>();
async function preparedInt8(target: string, input: ExportInput, weightQmax: WeightQmax): Promise<Int8Graph> {
  const key = JSON.stringify([target, input.perChannel ?? true, input.int8 ?? {}, input.calibrationShape ?? null]);
  const calib: object = input.calibration ?? prepCache;
  const byMeta = prepCache.get(input.model) ?? new WeakMap();
  prepCache.set(input.model, byMeta);
  const byCalib = byMeta.get(input.meta) ?? new WeakMap();
  byMeta.set(input.meta, byCalib);
  const byKey = byCalib.get(calib) ?? new Map<string, Promise<Int8Graph>>();
  byCalib.set(calib, byKey);
  let p = byKey.get(key);
  if (!p) {
    p = (async () => {
      const [{ buildIr }, { prepareInt8 }] = await Promise.all([import('./ir.js'), import('./int8-prep.js')]);
      const prep = prepareInt8(input.tf, buildIr(input.model, target), input.meta, target, { ...input, perChannel: input.perChannel ?? true, weightQmax });
      return { ...prep, weightQmax };
    })();
    byKey.set(key, p);
    p.catch(() => byKey.delete(key));
  }
  return p;
}

const TFLITE_WEIGHT_QMAX: WeightQmax = () => 127;

export const TFLITE_FILE = 'model.tflite';
export const ONNX_FILE = 'model.onnx';

export const EXPORT_TARGETS = {
  tflite: defineTarget<TflitePrecision>({
    precisions: ['float32', 'float16', 'dynamic-int8', 'int8', 'int4'],
    files: [TFLITE_FILE],
    describe: 'mobile',
    async write(input, precision) {
      const { ir, ranges } = await irFor('tflite', input, precision === 'int8', TFLITE_WEIGHT_QMAX);
      const { irToTflite } = await import('./tflite/export.js');
      const storage = writerStorage('tflite', TFLITE_STORAGE, precision, input.storage);
      return [[TFLITE_FILE, irToTflite(ir, input.meta, precision, ranges, { perChannel: input.perChannel, storage }).bytes]];
    },
    int8Graph: (input) => preparedInt8('tflite', input, TFLITE_WEIGHT_QMAX),
    storage: TFLITE_STORAGE,
    async sparseTensors(read) {
      const { readTflite } = await import('./tflite/reader.js');
      return readTflite(await read(TFLITE_FILE)).tensors.filter((t) => t.sparse).length;
    },
    async open(_tf, read) {
      const { tfliteRunner } = await import('./verify/runners.js');
      return tfliteRunner(await read(TFLITE_FILE));
    },
  }),
  onnx: defineTarget<OnnxPrecision>({
    precisions: ['float32', 'int8', 'int4'],
    files: [ONNX_FILE],
    describe: 'edge',
    async write(input, precision) {
      const { irToOnnx, onnxWeightQmax } = await import('./onnx/export.js');
      const { ir, ranges } = await irFor('onnx', input, precision === 'int8', onnxWeightQmax);
      const storage = writerStorage('onnx', ONNX_STORAGE, precision, input.storage);
      return [[ONNX_FILE, irToOnnx(ir, input.meta, precision, ranges, { perChannel: input.perChannel, storage }).bytes]];
    },
    async int8Graph(input) {
      const { onnxWeightQmax } = await import('./onnx/export.js');
      return preparedInt8('onnx', input, onnxWeightQmax);
    },
    storage: ONNX_STORAGE,
    async sparseTensors(read) {
      const { onnxSparseInitializers } = await import('./onnx/export.js');
      return onnxSparseInitializers(await read(ONNX_FILE));
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
    storage: { float32: TFJS_NO_SPARSE, float16: TFJS_NO_SPARSE, uint8: TFJS_NO_SPARSE, uint16: TFJS_NO_SPARSE },
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
