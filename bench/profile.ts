/**
 * Where a training step's time goes on the wasm backend: wraps every registered wasm kernel with a
 * timer, trains `steps` steps of a built-in model and prints time per kernel (ms per step).
 * `mobilenetv2-0.35` trains bench/mobilenet.ts's MobileNetV2-0.35 at 96x96x3 (batch 32, synthetic
 * data); `--inference` instead runs MobileNetV2 1.0 224x224x3 inference through the engine's plan
 * (src/engine/inference.ts) at batch `--batch N` (default 1); with `--compare` it runs each pass
 * twice, its 1x1, 3x3 depthwise and first (3x3 over 3 channels) convs once by XNNPACK and once by compress's SIMD kernels
 * (src/engine/simd/conv.wat.ts), and prints the two side by side. Times are process CPU time (user +
 * system), which a busy machine inflates less than wall time; with --detail, each conv shape's multiply-adds per CPU
 * second (GMAC/s). `--inference --model FILE` profiles any model compress loads (.onnx, Keras .h5/.keras, a TF.js
 * model.json or directory) at its own input shape instead of MobileNetV2; `--keras-padding` builds MobileNetV2 as
 * keras.applications writes it (ZeroPadding2D + 'valid' before the stride-2 convs, bench/mobilenet.ts).
 * Usage: node dist/bench/profile.js [model=lenet-5] [steps=30] [--detail] [--inference [--batch N] [--compare] [--model FILE | --keras-padding]]
 */
import { loadavg } from 'node:os';
import { basename } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { buildModel, type BuiltinModel } from '../src/engine/models.js';
import { loadMnist, splitDataset } from '../src/data/mnist.js';
import { trainModel } from '../src/engine/train.js';
import { inferencePlan } from '../src/engine/inference.js';
import { setInferenceConvs, type InferenceConvs } from '../src/engine/kernels/index.js';
import { fusedMultiplyAdd } from '../src/engine/simd/module.js';
import type { Dataset } from '../src/data/dataset.js';
import { buildMobileNetV2 } from './mobilenet.js';
import { loadModelFrom } from '../src/model/load/index.js';

const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

type Stats = Map<string, { ms: number; calls: number; macs: number }>;

/**
 * Wraps every wasm kernel with a CPU timer (top-level calls only); returns the table being filled
 * (or fills the table `into()` returns at each call).
 */
function instrument(tf: typeof tfType, detail: boolean, into?: () => Stats): Stats {
  const own: Stats = new Map();
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
          const stats = into ? into() : own;
          const key = detail ? `${k.kernelName} ${Object.values(args.inputs).map((t) => `[${t?.shape}]`).join(' ')}` : k.kernelName;
          const s = stats.get(key) ?? { ms: 0, calls: 0, macs: 0 };
          // Only top-level kernels (composed kernels count their inner calls as their own time).
          if (depth === 0) {
            s.ms += cpuNow() - t0;
            s.calls++;
            s.macs += convMacs(tf, k.kernelName, args);
          }
          stats.set(key, s);
        }
      }) as tfType.KernelFunc,
    });
  }
  return own;
}

function table(title: string, stats: Stats, reps: number, detail: boolean, unit: string): string {
  const rows = [...stats.entries()].filter(([, v]) => v.calls > 0).sort((a, b) => b[1].ms - a[1].ms);
  const kernelMs = rows.reduce((a, [, v]) => a + v.ms, 0);
  const lines = [`${title}, ${(kernelMs / reps).toFixed(1)} ms/${unit} CPU in kernels`];
  lines.push('kernel'.padEnd(detail ? 80 : 38) + `ms/${unit}`.padStart(9) + `calls/${unit}`.padStart(12) + 'GMAC/s'.padStart(8));
  // GMAC/s: the conv kernels' multiply-adds per CPU second (convMacs)
  const rate = (v: { ms: number; macs: number }) => (v.macs > 0 && v.ms > 0 ? (v.macs / v.ms / 1e6).toFixed(1) : '');
  for (const [name, v] of rows) lines.push(name.padEnd(detail ? 80 : 38) + (v.ms / reps).toFixed(2).padStart(9) + (v.calls / reps).toFixed(1).padStart(12) + rate(v).padStart(8));
  return lines.join('\n');
}

/** Multiply-adds of a forward conv kernel call (Conv2D, FusedConv2D, depthwise), else 0. */
function convMacs(tf: typeof tfType, kernel: string, args: Parameters<tfType.KernelFunc>[0]): number {
  const depthwise = kernel === 'DepthwiseConv2dNative' || kernel === 'FusedDepthwiseConv2D';
  if (!depthwise && kernel !== 'Conv2D' && kernel !== 'FusedConv2D') return 0;
  const { x, filter } = args.inputs as Record<string, tfType.TensorInfo>;
  const a = args.attrs as Record<string, unknown>;
  try {
    const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filter.shape as [number, number, number, number],
      a.strides as [number, number], (a.dilations ?? 1) as [number, number], a.pad as 'same' | 'valid', a.dimRoundingMode as 'floor' | undefined, depthwise, 'channelsLast');
    const perOutput = info.filterHeight * info.filterWidth * (depthwise ? 1 : info.inChannels);
    return info.batchSize * info.outHeight * info.outWidth * info.outChannels * perOutput;
  } catch {
    return 0; // a call the kernel itself rejected: not counted
  }
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

/** The model an inference profile runs: a file given with --model, else MobileNetV2 1.0 at 224x224x3 (`kerasPadding`: keras.applications' pads). */
async function inferenceModel(tf: typeof tfType, file?: string, kerasPadding = false): Promise<{ model: tfType.LayersModel; name: string }> {
  if (!file) {
    const model = buildMobileNetV2(tf, { alpha: 1, inputShape: [224, 224, 3], numClasses: 1000, seed: 1, kerasPadding });
    return { model, name: `MobileNetV2 1.0 224x224x3${kerasPadding ? ' (keras.applications ZeroPadding2D + valid)' : ''}` };
  }
  const model = await loadModelFrom(tf, file);
  return { model, name: `${basename(file)} [${model.inputs[0].shape.slice(1).join('x')}]` };
}

export async function profileInference(batch: number, reps: number, detail = false, compare = false, file?: string, kerasPadding = false): Promise<string> {
  const { tf } = await initEngine('wasm');
  const modes: InferenceConvs[] = compare ? ['xnnpack', 'simd'] : ['auto'];
  const stats = new Map(modes.map((m) => [m, new Map() as Stats]));
  let mode = modes[0];
  instrument(tf, detail, () => stats.get(mode)!);
  const { model, name } = await inferenceModel(tf, file, kerasPadding);
  const plan = inferencePlan(tf, model);
  const x = tf.randomUniform([batch, ...(model.inputs[0].shape.slice(1) as number[])], -1, 1, 'float32', 1);
  const run = () => {
    const y = plan.predict(x);
    y.dataSync();
    y.dispose();
  };
  const total = new Map(modes.map((m) => [m, 0]));
  for (const m of modes) {
    setInferenceConvs((mode = m));
    run(); // warm-up (XNNPACK operators created, wasm tiered up)
  }
  for (const s of stats.values()) s.clear();
  for (let i = 0; i < reps; i++)
    for (const m of modes) {
      setInferenceConvs((mode = m));
      const t0 = cpuNow();
      run();
      total.set(m, total.get(m)! + cpuNow() - t0);
    }
  setInferenceConvs('auto');
  x.dispose();
  plan.dispose();
  model.dispose();
  const title = (m: InferenceConvs) => `${name} inference (plan), batch ${batch}, convs by ${m === 'auto' ? `auto (fused multiply-add: ${fusedMultiplyAdd()})` : m}: ${(total.get(m)! / reps).toFixed(1)} ms/pass CPU total`;
  if (!compare) return table(title('auto'), stats.get('auto')!, reps, detail, 'pass');
  return [`${reps} passes each, alternating (fused multiply-add: ${fusedMultiplyAdd()}; ${loadText()})`, ...modes.map((m) => table(title(m), stats.get(m)!, reps, detail, 'pass'))].join('\n\n');
}

const loadText = () => `load ${loadavg().map((l) => l.toFixed(1)).join(' ')}`;

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const detail = process.argv.includes('--detail');
  if (process.argv.includes('--inference')) {
    const b = process.argv.indexOf('--batch');
    const batch = b > 0 ? Number(process.argv[b + 1]) : 1;
    const reps = Number(args.find((a) => /^\d+$/.test(a) && a !== String(batch)) ?? 5);
    const m = process.argv.indexOf('--model');
    const file = m > 0 ? process.argv[m + 1] : undefined;
    console.log(await profileInference(batch, reps, detail, process.argv.includes('--compare'), file, process.argv.includes('--keras-padding')));
  } else {
    const model = (args[0] ?? 'lenet-5') as BuiltinModel | 'mobilenetv2-0.35';
    console.log(await profileTraining(model, Number(args[1] ?? 30), detail));
  }
  process.exit(0); // a threaded engine's pthread workers keep the event loop alive
}
