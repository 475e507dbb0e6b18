import type { ReportJson } from './write.js';

/**
 * One home for what a size in a report measures. Every size a report prints is one of these, and every
 * ratio divides the dense fp32 bytes of the stage's OWN source model (not the recipe's first model):
 *
 *   sourceBytes     dense fp32 bytes of the model the stage measured / exported (weights x 4 bytes)
 *   fileBytes       raw bytes of a real exported file (export stages)
 *   gzipBytes       gzip -9 of that file
 *   estimatedBytes  Deep Compression storage estimate (CSR gaps + codebook / scales + Huffman); no file has it
 *   fileRatio       sourceBytes / fileBytes, or sourceFileBytes / fileBytes when the source is a load stage
 *                   (its real file: a uint8 TF.js model is not 4x bigger than it is); `fileRatioOf` says which
 *   estimatedRatio  sourceBytes / estimatedBytes
 */
export const SIZE_METRICS = {
  sourceBytes: "dense fp32 bytes of the stage's source model (weights x 4)",
  fileBytes: 'raw bytes of the exported file(s)',
  sourceFileBytes: 'raw bytes of the loaded model file(s) (load stages; a uint8 TF.js model is about a quarter of sourceBytes)',
  gzipBytes: 'gzip -9 bytes of the exported file(s)',
  estimatedBytes: 'Deep Compression storage estimate (CSR + codebook + Huffman), not a file',
  fileRatio: 'sourceBytes / fileBytes, or sourceFileBytes / fileBytes when the source is a load stage (fileRatioOf says which)',
  fileRatioOf: "what fileRatio divides: 'sourceFileBytes' (the loaded file's real bytes) or 'sourceBytes' (dense fp32)",
  compressionRatioOf: "what an evaluate stage's compressionRatio divides by estimatedBytes: 'sourceFileBytes' when its model comes straight from a load stage, else 'sourceBytes' (dense fp32)",
  estimatedRatio: 'sourceBytes / estimatedBytes (an estimate)',
} as const;

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

export type SizeKind = 'file' | 'estimate' | 'dense-fp32';
export type RatioOf = 'sourceFileBytes' | 'sourceBytes';

/**
 * The bytes a ratio against a stage's source divides: the real bytes of the loaded file(s) when the model
 * comes straight from a load stage (its `sourceFileBytes`), else the model's dense fp32 bytes.
 */
export function ratioBase(input: { kind: string; metrics: Record<string, unknown> } | undefined, denseBytes: number): { bytes: number; of: RatioOf; sourceFileBytes?: number } {
  const file = input?.kind === 'load' ? num(input.metrics?.sourceFileBytes) : undefined;
  return file ? { bytes: file, of: 'sourceFileBytes', sourceFileBytes: file } : { bytes: denseBytes, of: 'sourceBytes' };
}

export interface ModelRow {
  /** The stage id. */
  id: string;
  /** The stage id, with `target precision` appended when the stage exported several files. */
  label: string;
  uses: string;
  status: string;
  /** `target precision` of an export. */
  note?: string;
  accuracy?: number;
  /** What the accuracy and latency were measured on: `500 test · litert-wasm@2.5.3`, `500 test · engine (wasm)`. */
  measuredOn?: string;
  sparsity?: number;
  latencyMs?: number;
  sourceBytes?: number;
  fileBytes?: number;
  gzipBytes?: number;
  estimatedBytes?: number;
  fileRatio?: number;
  /** What fileRatio divides: the loaded file's real bytes, or dense fp32. */
  fileRatioOf?: RatioOf;
  estimatedRatio?: number;
  /** The one size to plot: the file when there is one, else the estimate, else dense fp32. */
  size?: number;
  sizeKind?: SizeKind;
}

type Stage = Pick<ReportJson['stages'][number], 'id' | 'uses' | 'status' | 'metrics'>;
type Metrics = Record<string, unknown>;

const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? a / b : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);

/** `500 test · <runtime>`: how many samples of which split, and where they ran (undefined without a count). */
function measured(samples: number | undefined, split: string | undefined, where: string): string | undefined {
  return samples === undefined ? undefined : `${samples}${split ? ` ${split}` : ''} · ${where}`;
}

function withPlotSize(r: ModelRow): ModelRow {
  if (r.fileBytes !== undefined) return { ...r, size: r.fileBytes, sizeKind: 'file' };
  if (r.estimatedBytes !== undefined) return { ...r, size: r.estimatedBytes, sizeKind: 'estimate' };
  if (r.sourceBytes !== undefined) return { ...r, size: r.sourceBytes, sizeKind: 'dense-fp32' };
  return r;
}

/** One export (a row of an export stage's `exports`, or its scalar metrics) as a model row. */
function exportRow(s: Stage, m: Metrics, e: Metrics, several: boolean): ModelRow {
  const sparse = typeof e.storage === 'string' && e.storage.startsWith('sparse');
  const note = [e.target, e.precision, sparse ? 'sparse' : undefined].filter((x) => typeof x === 'string').join(' ') || undefined;
  const sourceBytes = num(e.sourceBytes) ?? num(m.sourceBytes);
  const fileBytes = num(e.fileBytes) ?? num(e.bytes);
  const estimatedBytes = num(e.estimatedBytes) ?? num(m.estimatedBytes);
  return {
    id: s.id,
    label: several && note ? `${s.id} (${note})` : s.id,
    uses: s.uses,
    status: s.status,
    note,
    accuracy: num(e.accuracy),
    // Export checks run the file on the test split, in the file's own runtime.
    measuredOn: measured(num(e.samples), 'test', str(e.runtime) ?? `${str(e.target) ?? 'its'} runtime`),
    latencyMs: num(e.latencyMs),
    sourceBytes,
    fileBytes,
    gzipBytes: num(e.gzipBytes),
    estimatedBytes,
    fileRatio: num(e.fileRatio) ?? ratio(sourceBytes, fileBytes),
    fileRatioOf: e.fileRatioOf === 'sourceFileBytes' ? 'sourceFileBytes' : undefined,
    estimatedRatio: num(e.estimatedRatio) ?? ratio(sourceBytes, estimatedBytes),
  };
}

/**
 * The models a stage reports, sizes labelled: an export stage gives one row per exported file; an evaluate
 * stage its estimate; a train/load stage its dense fp32 size (params x 4).
 */
export function modelRows(s: Stage): ModelRow[] {
  const m = (s.metrics ?? {}) as Metrics;
  const where = str(m.backend) ? `engine (${str(m.backend)})` : 'engine';
  const base: ModelRow = { id: s.id, label: s.id, uses: s.uses, status: s.status, accuracy: num(m.accuracy), measuredOn: measured(num(m.samples), str(m.split), where), sparsity: num(m.sparsity), latencyMs: num(m.latencyMs) };
  if (s.uses === 'export') {
    const list = Array.isArray(m.exports) ? (m.exports as Metrics[]).filter((e) => e && typeof e === 'object') : [m];
    return list.map((e) => withPlotSize(exportRow(s, m, e, list.length > 1)));
  }
  if (s.uses === 'train' || s.uses === 'load') {
    const params = num(m.params);
    return [withPlotSize({ ...base, sourceBytes: params !== undefined ? params * 4 : undefined })];
  }
  const sourceBytes = num(m.denseBytes);
  const estimatedBytes = num(m.estimatedBytes) ?? num(m.finalBytes);
  return [withPlotSize({ ...base, sourceBytes, estimatedBytes, estimatedRatio: num(m.estimatedRatio) ?? num(m.compressionRatio) ?? ratio(sourceBytes, estimatedBytes) })];
}

/** How a size of this kind is labelled next to its number. */
export const SIZE_KIND_LABEL: Record<SizeKind, string> = {
  file: 'file',
  estimate: 'estimate (CSR + codebook + Huffman)',
  'dense-fp32': 'dense fp32 (params x 4)',
};
