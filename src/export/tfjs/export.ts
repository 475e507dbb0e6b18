import type * as tfType from '@tensorflow/tfjs';
import { ExportError } from '../errors.js';
import { encodeFloat16 } from '../../util/float16.js';

export type TfjsPrecision = 'float32' | 'float16' | 'uint8' | 'uint16';
export const TFJS_MODEL_JSON = 'model.json';
export const TFJS_SHARD = 'group1-shard1of1.bin';

interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: 'uint8' | 'uint16' | 'float16'; min?: number; scale?: number };
}

/**
 * Linear per-tensor quantization as tfjs-core's decodeWeights reads it: value = q * scale + min,
 * with min nudged onto the grid so 0 (pruned weights) decodes to exactly 0.
 */
export function quantizeTensorLinear(values: Float32Array, bits: 8 | 16): { q: Uint8Array | Uint16Array; min: number; scale: number } {
  const qmax = bits === 8 ? 255 : 65535;
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!Number.isFinite(lo)) lo = hi = 0;
  const q = bits === 8 ? new Uint8Array(values.length) : new Uint16Array(values.length);
  if (hi === lo) return { q, min: lo, scale: 1 }; // constant tensor: q = 0 decodes exactly
  let min = lo;
  let scale = (hi - lo) / qmax;
  if (lo <= 0 && hi >= 0) {
    const zp = Math.round(-lo / scale);
    min = -zp * scale;
  }
  // decodeWeights computes q * scale + min in float64 from these JSON numbers (exact round trip),
  // so q = zp gives zp * scale - zp * scale = 0 exactly.
  for (let i = 0; i < values.length; i++) q[i] = Math.max(0, Math.min(qmax, Math.round((values[i] - min) / scale)));
  return { q, min, scale };
}

/** The TF.js layers model as model.json + one shard, with weights stored in `precision`. */
export async function tfjsArtifacts(
  tf: typeof tfType,
  model: tfType.LayersModel,
  precision: TfjsPrecision,
): Promise<{ modelJson: Record<string, unknown>; shard: Uint8Array }> {
  let artifacts: tfType.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(0), modelTopologyType: 'JSON' } };
    }),
  );
  if (!artifacts) throw new ExportError('tfjs', undefined, 'model.save produced no artifacts');
  const specs = (artifacts.weightSpecs ?? []) as WeightSpec[];
  const wd = artifacts.weightData;
  const data = Array.isArray(wd) ? Buffer.concat(wd.map((b) => Buffer.from(b))) : Buffer.from(wd ?? new ArrayBuffer(0));
  const parts: Uint8Array[] = [];
  const outSpecs: WeightSpec[] = [];
  let off = 0;
  for (const spec of specs) {
    if (spec.quantization) throw new ExportError('tfjs', spec.name.split('/')[0], 'weights are already quantized in the source model');
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const bytes = data.subarray(off, off + n * 4);
    off += n * 4;
    if (spec.dtype !== 'float32' || precision === 'float32') {
      parts.push(Uint8Array.from(bytes));
      outSpecs.push({ name: spec.name, shape: spec.shape, dtype: spec.dtype });
      continue;
    }
    const values = new Float32Array(Uint8Array.from(bytes).buffer);
    if (precision === 'float16') {
      const h = encodeFloat16(values);
      parts.push(new Uint8Array(h.buffer));
      outSpecs.push({ name: spec.name, shape: spec.shape, dtype: 'float32', quantization: { dtype: 'float16' } });
    } else {
      const { q, min, scale } = quantizeTensorLinear(values, precision === 'uint8' ? 8 : 16);
      parts.push(new Uint8Array(q.buffer, q.byteOffset, q.byteLength));
      outSpecs.push({ name: spec.name, shape: spec.shape, dtype: 'float32', quantization: { dtype: precision, min, scale } });
    }
  }
  const shard = Buffer.concat(parts);
  const modelJson = {
    format: 'layers-model',
    generatedBy: `compress (tfjs ${tf.version.tfjs})`,
    convertedBy: `compress ${precision} export`,
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{ paths: [`./${TFJS_SHARD}`], weights: outSpecs }],
  };
  return { modelJson, shard: new Uint8Array(shard.buffer, shard.byteOffset, shard.byteLength) };
}
