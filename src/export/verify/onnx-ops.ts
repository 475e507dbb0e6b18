import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';

/**
 * The op types (domain-prefixed when not the default domain, e.g. 'com.microsoft:QGemm') of the
 * model onnxruntime-node produces at the given optimisation level.
 */
export async function onnxOptimizedOpTypes(model: Uint8Array, level: 'basic' | 'extended' | 'all' = 'extended'): Promise<string[]> {
  const ort = await import('onnxruntime-node');
  const dir = await mkdtemp(join(tmpdir(), 'compress-onnx-'));
  const path = join(dir, 'optimized.onnx');
  try {
    const session = await ort.InferenceSession.create(model, { graphOptimizationLevel: level, optimizedModelFilePath: path, intraOpNumThreads: 1 });
    await session.release();
    const m = onnxProto.onnx.ModelProto.decode(await readFile(path));
    return (m.graph?.node ?? []).map((n) => (n.domain ? `${n.domain}:${n.opType}` : (n.opType as string)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
