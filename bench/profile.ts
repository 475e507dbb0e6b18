/**
 * Where a training step's time goes on the wasm backend: wraps every registered wasm kernel with a
 * timer, trains `steps` steps of a built-in model and prints time per kernel (ms per step).
 * `mobilenetv2-0.35` trains bench/mobilenet.ts's MobileNetV2-0.35 at 96x96x3 (batch 32, synthetic
 * data); `--inference` instead runs MobileNetV2 1.0 224x224x3 inference through the engine's plan
 * (src/engine/inference.ts) at batch `--batch N` (default 1). Times are process CPU time (user +
 * system), which a busy machine inflates less than wall time.
 * Usage: node dist/bench/profile.js [model=lenet-5] [steps=30] [--detail] [--inference [--batch N]]
 */
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { buildModel, type BuiltinModel } from '../src/engine/models.js';
import { loadMnist, splitDataset } from '../src/data/mnist.js';
import { trainModel } from '../src/engine/train.js';
import { inferencePlan } from '../src/engine/inference.js';
import type { Dataset } from '../src/data/dataset.js';
import { buildMobileNetV2 } from './mobilenet.js';

const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Wraps every wasm kernel with a CPU timer (top-level calls only); returns the table being filled. */
function instrument(tf: typeof tfType, detail: boolean): Map<string, { ms: number; calls: number }> {
  const stats = new Map<string, { ms: number; calls: number }>();
  let depth = 0;
  for (const k of tf.getKernelsForBackend('wasm')) {
    const inner = k.kernelFunc;
    tf.unregisterKernel(k.kernelName, 'wasm');
    tf.registerKernel({
      ...k,
      kernelFunc: ((args: Parameters<tfType.KernelFunc>[0]) => {
        depth++;
        const t0 = cpuNow();
        try {
          return inner(args);
        } finally {
          depth--;
          const key = detail ? `${k.kernelName} ${Object.values(args.inputs).map((t) => `[${t?.shape}]`).join(' ')}` : k.kernelName;
          const s = stats.get(key) ?? { ms: 0, calls: 0 };
          // Only top-level kernels (composed kernels count their inner calls as their own time).
          if (depth === 0) {
            s.ms += cpuNow() - t0;
            s.calls++;
          }
          stats.set(key, s);
        }
      }) as tfType.KernelFunc,
    });
  }
  return stats;
}

function table(title: string, stats: Map<string, { ms: number; calls: number }>, reps: number, detail: boolean, unit: string): string {
  const rows = [...stats.entries()].filter(([, v]) => v.calls > 0).sort((a, b) => b[1].ms - a[1].ms);
  const kernelMs = rows.reduce((a, [, v]) => a + v.ms, 0);
  const lines = [`${title}, ${(kernelMs / reps).toFixed(1)} ms/${unit} CPU in kernels`];
  lines.push('kernel'.padEnd(detail ? 70 : 38) + `ms/${unit}`.padStart(9) + `calls/${unit}`.padStart(12));
  for (const [name, v] of rows) lines.push(name.padEnd(detail ? 70 : 38) + (v.ms / reps).toFixed(2).padStart(9) + (v.calls / reps).toFixed(1).padStart(12));
  return lines.join('\n');
}

/** Synthetic MobileNetV2-0.35 96x96x3 training data (the train bench's shapes). */
function mobilenetData(n: number): Dataset {
  return {
    x: Float32Array.from({ length: n * 96 * 96 * 3 }, (_, i) => Math.sin(i * 0.37)),
    y: Int32Array.from({ length: n }, (_, i) => i % 10),
    n,
    sampleShape: [96, 96, 3],
    numClasses: 10,
  };
}

export async function profileTraining(modelName: BuiltinModel | 'mobilenetv2-0.35', steps: number, detail = false): Promise<string> {
  const { tf } = await initEngine('wasm');
  const stats = instrument(tf, detail);
  const mobile = modelName === 'mobilenetv2-0.35';
  const batchSize = mobile ? 32 : 64;
  const train = mobile ? mobilenetData(batchSize * (steps + 5)) : splitDataset(loadMnist(), { train: 1, validation: 0, test: 0 }, 7, 64 * (steps + 5)).train;
  const model = mobile
    ? buildMobileNetV2(tf, { alpha: 0.35, inputShape: [96, 96, 3], numClasses: 10, seed: 2 })
    : buildModel(tf, modelName, { inputShape: [28, 28, 1], numClasses: 10, seed: 1 });
  const opts = { batchSize, seed: 1, optimizer: { name: 'adam' as const, learningRate: 1e-3 } };
  await trainModel(tf, model, train, { ...opts, steps: mobile ? 2 : 5 }); // warm-up
  stats.clear();
  const t0 = cpuNow();
  await trainModel(tf, model, train, { ...opts, steps });
  const total = cpuNow() - t0;
  model.dispose();
  return table(`${modelName}: ${(total / steps).toFixed(1)} ms/step CPU total`, stats, steps, detail, 'step');
}

export async function profileInference(batch: number, reps: number, detail = false): Promise<string> {
  const { tf } = await initEngine('wasm');
  const stats = instrument(tf, detail);
  const model = buildMobileNetV2(tf, { alpha: 1, inputShape: [224, 224, 3], numClasses: 1000, seed: 1 });
  const plan = inferencePlan(tf, model);
  const x = tf.randomUniform([batch, 224, 224, 3], -1, 1, 'float32', 1);
  const run = () => {
    const y = plan.predict(x);
    y.dataSync();
    y.dispose();
  };
  run(); // warm-up (XNNPACK operators created)
  stats.clear();
  const t0 = cpuNow();
  for (let i = 0; i < reps; i++) run();
  const total = cpuNow() - t0;
  x.dispose();
  plan.dispose();
  model.dispose();
  return table(`MobileNetV2 1.0 224x224x3 inference (plan), batch ${batch}: ${(total / reps).toFixed(1)} ms/pass CPU total`, stats, reps, detail, 'pass');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const detail = process.argv.includes('--detail');
  if (process.argv.includes('--inference')) {
    const b = process.argv.indexOf('--batch');
    console.log(await profileInference(b > 0 ? Number(process.argv[b + 1]) : 1, Number(args.find((a) => /^\d+$/.test(a)) ?? 5), detail));
  } else {
    const model = (args[0] ?? 'lenet-5') as BuiltinModel | 'mobilenetv2-0.35';
    console.log(await profileTraining(model, Number(args[1] ?? 30), detail));
  }
  process.exit(0); // a threaded engine's pthread workers keep the event loop alive
}
