/**
 * Where a training step's time goes on the wasm backend: wraps every registered wasm kernel with a
 * timer, trains `steps` steps of a built-in model and prints time per kernel (ms per step).
 * Usage: node dist/bench/profile.js [model=lenet-5] [steps=30]
 */
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { buildModel, type BuiltinModel } from '../src/engine/models.js';
import { loadMnist, splitDataset } from '../src/data/mnist.js';
import { trainModel } from '../src/engine/train.js';

export async function profileTraining(modelName: BuiltinModel, steps: number, detail = false): Promise<string> {
  const { tf } = await initEngine('wasm');
  const stats = new Map<string, { ms: number; calls: number }>();
  let depth = 0;
  for (const k of tf.getKernelsForBackend('wasm')) {
    const inner = k.kernelFunc;
    tf.unregisterKernel(k.kernelName, 'wasm');
    tf.registerKernel({
      ...k,
      kernelFunc: ((args: Parameters<tfType.KernelFunc>[0]) => {
        depth++;
        const t0 = performance.now();
        try {
          return inner(args);
        } finally {
          depth--;
          const key = detail ? `${k.kernelName} ${Object.values(args.inputs).map((t) => `[${t?.shape}]`).join(' ')}` : k.kernelName;
          const s = stats.get(key) ?? { ms: 0, calls: 0 };
          // Only top-level kernels (composed kernels count their inner calls as their own time).
          if (depth === 0) {
            s.ms += performance.now() - t0;
            s.calls++;
          }
          stats.set(key, s);
        }
      }) as tfType.KernelFunc,
    });
  }
  const s = splitDataset(loadMnist(), { train: 1, validation: 0, test: 0 }, 7, 64 * (steps + 5));
  const model = buildModel(tf, modelName, { inputShape: [28, 28, 1], numClasses: 10, seed: 1 });
  const opts = { batchSize: 64, seed: 1, optimizer: { name: 'adam' as const, learningRate: 1e-3 } };
  await trainModel(tf, model, s.train, { ...opts, steps: 5 }); // warm-up
  stats.clear();
  const t0 = performance.now();
  await trainModel(tf, model, s.train, { ...opts, steps });
  const total = performance.now() - t0;
  model.dispose();
  const rows = [...stats.entries()].filter(([, v]) => v.calls > 0).sort((a, b) => b[1].ms - a[1].ms);
  const kernelMs = rows.reduce((a, [, v]) => a + v.ms, 0);
  const lines = [`${modelName}: ${(total / steps).toFixed(1)} ms/step total, ${(kernelMs / steps).toFixed(1)} ms/step in kernels`];
  lines.push('kernel'.padEnd(detail ? 70 : 38) + 'ms/step'.padStart(9) + 'calls/step'.padStart(12));
  for (const [name, v] of rows) lines.push(name.padEnd(detail ? 70 : 38) + (v.ms / steps).toFixed(2).padStart(9) + (v.calls / steps).toFixed(1).padStart(12));
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const model = (process.argv[2] ?? 'lenet-5') as BuiltinModel;
  const steps = Number(process.argv[3] ?? 30);
  console.log(await profileTraining(model, steps, process.argv.includes('--detail')));
}
