import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { emptyMeta, type ModelMeta } from './meta.js';
import { setOwn } from '../util/own.js';

/**
 * A model artifact is a directory: `model.json` + `weights.bin` (the TF.js layers format, so
 * `tf.loadLayersModel` reads it) and `meta.json` (see meta.ts).
 */
export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';
export const META_JSON = 'meta.json';

export interface LoadedModel {
  model: tfType.LayersModel;
  meta: ModelMeta;
}

export async function saveModelDir(tf: typeof tfType, model: tfType.LayersModel, meta: ModelMeta, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weightData = artifacts.weightData
        ? Buffer.from(concatWeightData(artifacts.weightData))
        : Buffer.alloc(0);
      const modelJson = {
        format: 'layers-model',
        generatedBy: 'compress',
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: [`./${WEIGHTS_BIN}`], weights: artifacts.weightSpecs ?? [] }],
      };
      await writeFile(join(dir, MODEL_JSON), stableJson(modelJson));
      await writeFile(join(dir, WEIGHTS_BIN), weightData);
      return { modelArtifactsInfo: { dateSaved: new Date(0), modelTopologyType: 'JSON' } };
    }),
  );
  await writeFile(join(dir, META_JSON), stableJson(meta));
}

export async function loadModelDir(tf: typeof tfType, dir: string): Promise<LoadedModel> {
  const modelJson = JSON.parse(await readFile(join(dir, MODEL_JSON), 'utf8'));
  const weights = await readFile(join(dir, WEIGHTS_BIN));
  const specs = modelJson.weightsManifest.flatMap((g: { weights: unknown[] }) => g.weights);
  const model = await tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: modelJson.modelTopology,
      weightSpecs: specs,
      weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
    }),
  );
  let meta: ModelMeta = emptyMeta();
  try {
    meta = { ...emptyMeta(), ...JSON.parse(await readFile(join(dir, META_JSON), 'utf8')) };
  } catch {
    // A plain TF.js model directory has no sidecar.
  }
  return { model, meta };
}

function concatWeightData(data: ArrayBuffer | ArrayBuffer[]): Uint8Array {
  if (!Array.isArray(data)) return new Uint8Array(data);
  const total = data.reduce((n, b) => n + b.byteLength, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const b of data) {
    out.set(new Uint8Array(b), off);
    off += b.byteLength;
  }
  return out;
}

/** JSON with sorted keys, so equal content gives equal bytes (and equal digests). */
export function stableJson(value: unknown): string {
  return JSON.stringify(sortKeys(value), null, 1);
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) setOwn(out, k, sortKeys((v as Record<string, unknown>)[k]));
    return out;
  }
  return v;
}
