/**
 * MobileNetV2 benchmarks, side by side in one run:
 * - inference latency per image (batch 1 and 32) of the engine vs onnxruntime-node fp32 running the
 *   same model (compress's own float32 ONNX export), both on one thread;
 * - training step time (batch 32, Adam) of a MobileNetV2-0.35 at 96x96x3 vs PyTorch CPU (torchvision's
 *   mobilenet_v2, same width) with 1 thread and with every core;
 * - the full recipe (bench/pipeline.ts): wall time, peak RSS and every stage's time and memory.
 * Usage: node dist/bench/mobilenet-bench.js [inference] [train] [pipeline]  (default: all three)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { trainModel } from '../src/engine/train.js';
import { exportModel } from '../src/export/index.js';
import { emptyMeta } from '../src/model/meta.js';
import { createRng } from '../src/util/rng.js';
import { buildMobileNetV2 } from './mobilenet.js';
import { formatPipeline, preparePipeline, runPipeline } from './pipeline.js';

const PYTHON = process.env.COMPRESS_BENCH_PYTHON ?? '/usr/bin/python3';
const torchScript = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'torch_mobilenet.py');
const load = () => `load ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${availableParallelism()} cores`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function randomInput(n: number, size: number, seed: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n * size }, () => rng() * 2 - 1);
}

export async function benchInference(): Promise<string> {
  const { tf, backend } = await initEngine('wasm');
  const model = buildMobileNetV2(tf, { alpha: 1, inputShape: [224, 224, 3], numClasses: 1000, seed: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'compress-mnv2-onnx-'));
  try {
    const { files } = await exportModel(tf, model, emptyMeta(), { target: 'onnx', precision: 'float32' }, dir);
    const ort = await import('onnxruntime-node');
    const session = await ort.InferenceSession.create(readFileSync(join(dir, files[0])), { intraOpNumThreads: 1, interOpNumThreads: 1, executionProviders: ['cpu'] });
    const size = 224 * 224 * 3;
    const lines = [`inference: MobileNetV2 1.0 224x224x3 (3.5M params), ms per image, engine ${backend} vs onnxruntime-node ${ort.env.versions?.common ?? ''} fp32, both 1 thread (${load()})`, '| batch | compress ms/image | onnxruntime ms/image | compress/onnxruntime |', '| --- | --- | --- | --- |'];
    for (const [batch, reps] of [[1, 15], [32, 3]] as const) {
      const x = randomInput(batch, size, batch);
      const xt = tf.tensor(x, [batch, 224, 224, 3]);
      const runTf = () => tf.tidy(() => (model.predict(xt) as tfType.Tensor).dataSync());
      // onnxruntime runs the exported NHWC-input graph as compress wrote it.
      const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x, [batch, 224, 224, 3]) };
      const runOrt = () => session.run(feeds);
      runTf();
      await runOrt();
      const tfMs: number[] = [];
      const ortMs: number[] = [];
      for (let i = 0; i < reps; i++) {
        let t0 = performance.now();
        runTf();
        tfMs.push((performance.now() - t0) / batch);
        t0 = performance.now();
        await runOrt();
        ortMs.push((performance.now() - t0) / batch);
      }
      xt.dispose();
      const a = median(tfMs);
      const b = median(ortMs);
      lines.push(`| ${batch} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(a / b).toFixed(2)} |`);
    }
    await session.release();
    return lines.join('\n');
  } finally {
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchTrainStep(steps = 5): Promise<string> {
  const { tf, backend } = await initEngine('auto');
  const batch = 32, size = 96, classes = 10;
  const model = buildMobileNetV2(tf, { alpha: 0.35, inputShape: [size, size, 3], numClasses: classes, seed: 2 });
  const n = batch * (steps + 2);
  const rng = createRng(3);
  const data = { x: randomInput(n, size * size * 3, 4), y: Int32Array.from({ length: n }, () => Math.floor(rng() * classes)), n, sampleShape: [size, size, 3], numClasses: classes };
  const opts = { batchSize: batch, seed: 1, optimizer: { name: 'adam' as const, learningRate: 1e-3 } };
  await trainModel(tf, model, data, { ...opts, steps: 2 }); // warm-up (kernels compiled, moments allocated)
  const t0 = performance.now();
  await trainModel(tf, model, data, { ...opts, steps });
  const ours = (performance.now() - t0) / steps;
  model.dispose();
  const torch = async (threads: number): Promise<number | string> => {
    try {
      const r = await execa(PYTHON, [torchScript, '0.35', String(size), String(classes), String(batch), String(steps), String(threads), '1']);
      return (JSON.parse(r.stdout.trim().split('\n').pop()!) as { msPerStep: number }).msPerStep;
    } catch (e) {
      return `n/a (${(e as Error).message.split('\n')[0]})`;
    }
  };
  const cores = availableParallelism();
  const one = await torch(1);
  const all = await torch(cores);
  const ratio = (t: number | string) => (typeof t === 'number' ? (ours / t).toFixed(2) : 'n/a');
  const ms = (t: number | string) => (typeof t === 'number' ? t.toFixed(0) : t);
  return [
    `train step: MobileNetV2-0.35 96x96x3, ${classes} classes, batch ${batch}, Adam; mean of ${steps} steps after 2 warm-up steps (${load()})`,
    `| compress ms/step (${backend}) | torch ms/step (1 thread) | compress/torch | torch ms/step (${cores} threads) | compress/torch ${cores}t |`,
    '| --- | --- | --- | --- | --- |',
    `| ${ours.toFixed(0)} | ${ms(one)} | ${ratio(one)} | ${ms(all)} | ${ratio(all)} |`,
  ].join('\n');
}

export async function benchPipeline(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'compress-mnv2-'));
  try {
    await preparePipeline(dir);
    const before = load();
    const r = await runPipeline(dir);
    const st = (id: string) => r.stages.find((s) => s.id === id);
    const goal = (v: number | undefined, max: number, unit: string) => (v === undefined ? 'n/a' : `${v.toFixed(1)} ${unit} (goal <= ${max} ${unit}: ${v <= max ? 'met' : 'NOT met'})`);
    return [
      formatPipeline(r),
      `full recipe: ${goal(r.seconds, 180, 's')}, peak RSS ${goal(r.peakRssMb, 2048, 'MB')}; int8 quantize stage ${goal(st('int8')?.seconds, 10, 's')}; k-means 5-bit stage ${goal(st('kmeans')?.seconds, 15, 's')}`,
      `(${before} at the start, ${load()} at the end)`,
    ].join('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchMobileNet(parts: string[]): Promise<string[]> {
  const all = parts.length === 0;
  const out: string[] = [];
  if (all || parts.includes('inference')) out.push(await benchInference());
  if (all || parts.includes('train')) out.push(await benchTrainStep());
  if (all || parts.includes('pipeline')) out.push(await benchPipeline());
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const s of await benchMobileNet(process.argv.slice(2))) console.log(s + '\n');
}
