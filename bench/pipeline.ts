/**
 * The MobileNetV2 pipeline benchmark: a seeded MobileNetV2 (alpha 1.0, 224x224x3, 1000 classes,
 * 3.5M parameters) saved as a TF.js model, 256 seeded synthetic images labelled by the model itself
 * (so the float model is 100% accurate and every drop is the compression's), and the recipe
 * load -> evaluate -> prune 50% -> int8 / k-means 5-bit -> evaluates -> export tflite int8, onnx int8,
 * tfjs. The recipe runs as `compress run --json` in a child process under /usr/bin/time, so its wall
 * time, peak RSS (the whole process: main thread and every stage worker) and each stage's phases (the
 * time between its progress messages) are what a user would see.
 *
 * Usage: node dist/bench/pipeline.js [--keep] [--dir <dir>]  (prints the per-stage / per-phase profile)
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { saveModelDir } from '../src/model/io.js';
import { emptyMeta } from '../src/model/meta.js';
import { createRng } from '../src/util/rng.js';
import { buildMobileNetV2 } from './mobilenet.js';
import { layerSteps, modelGraph } from '../src/compression/layer-by-layer.js';

export const PIPELINE_IMAGES = 256;
const SHAPE: [number, number, number] = [224, 224, 3];
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const PIPELINE_RECIPE = `version: 1
name: mobilenetv2-pipeline
seed: 1
data:
  images: { source: files, features: data/x.npy, labels: data/y.npy, numClasses: 1000, split: { train: 0.5, validation: 0.25, test: 0.25 } }
stages:
  load: { uses: load, with: { path: model } }
  baseline-eval: { uses: evaluate, needs: [load] }
  prune: { uses: prune, needs: [load], with: { method: magnitude, sparsity: 0.5 } }
  prune-eval: { uses: evaluate, needs: [prune] }
  int8: { uses: quantize, needs: [prune], with: { default: { method: linear, bits: 8 } } }
  int8-eval: { uses: evaluate, needs: [int8] }
  kmeans: { uses: quantize, needs: [prune], with: { default: { method: kmeans, bits: 5 } } }
  kmeans-eval: { uses: evaluate, needs: [kmeans] }
  tflite: { uses: export, needs: [int8], with: { target: tflite, precision: int8 } }
  onnx: { uses: export, needs: [int8], with: { target: onnx, precision: int8 } }
  tfjs: { uses: export, needs: [kmeans], with: { target: tfjs, precision: float32 } }
`;

function npy(descr: string, shape: number[], data: ArrayBufferView): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

/** Writes model/, data/x.npy, data/y.npy and recipe.yaml into `dir`. */
export async function preparePipeline(dir: string, seed = 1): Promise<{ params: number }> {
  const { tf } = await initEngine('wasm');
  const model = buildMobileNetV2(tf, { alpha: 1, inputShape: SHAPE, numClasses: 1000, seed });
  const size = SHAPE[0] * SHAPE[1] * SHAPE[2];
  const x = new Float32Array(PIPELINE_IMAGES * size);
  const rng = createRng(seed);
  // Smooth random images in [-1, 1] (MobileNet's input range): a few random sinusoids per channel.
  for (let n = 0; n < PIPELINE_IMAGES; n++) {
    for (let c = 0; c < 3; c++) {
      const fx = 1 + rng() * 8, fy = 1 + rng() * 8, ph = rng() * 6.28, amp = 0.5 + rng() * 0.5;
      for (let i = 0; i < SHAPE[0]; i++)
        for (let j = 0; j < SHAPE[1]; j++) {
          const v = amp * Math.sin((fx * i) / SHAPE[0] * 6.28 + (fy * j) / SHAPE[1] * 6.28 + ph) + 0.2 * (rng() - 0.5);
          x[n * size + (i * SHAPE[1] + j) * 3 + c] = Math.max(-1, Math.min(1, v));
        }
    }
  }
  setBatchNormStatistics(tf, model, x.subarray(0, 16 * size), 16);
  const y = new Int32Array(PIPELINE_IMAGES);
  for (let s = 0; s < PIPELINE_IMAGES; s += 16) {
    const k = Math.min(16, PIPELINE_IMAGES - s);
    const p = tf.tidy(() => (model.predict(tf.tensor(x.subarray(s * size, (s + k) * size), [k, ...SHAPE])) as tfType.Tensor).argMax(-1));
    y.set(p.dataSync() as Int32Array, s);
    p.dispose();
  }
  mkdirSync(join(dir, 'data'), { recursive: true });
  writeFileSync(join(dir, 'data', 'x.npy'), npy('<f4', [PIPELINE_IMAGES, ...SHAPE], x));
  writeFileSync(join(dir, 'data', 'y.npy'), npy('<i4', [PIPELINE_IMAGES], y));
  await saveModelDir(tf, model, emptyMeta(), join(dir, 'model'));
  writeFileSync(join(dir, 'recipe.yaml'), PIPELINE_RECIPE);
  const params = model.countParams();
  model.dispose();
  return { params };
}

/**
 * Data-dependent batch-norm statistics: each BatchNormalization's moving mean / variance become its
 * input's per-channel moments on `n` images, set while one layer-by-layer walk reaches it. Random
 * convolutions with unit statistics drift through 17 blocks until the output hardly depends on the
 * input; normalised, the float model's predictions depend on the image (so pruning and quantization
 * change some of them, not all).
 */
function setBatchNormStatistics(tf: typeof tfType, model: tfType.LayersModel, x: Float32Array, n: number): void {
  const graph = modelGraph(model);
  const producerOf = new Map<number, string>();
  for (const st of graph.steps) st.outputIds.forEach((id) => producerOf.set(id, st.layer.name));
  const bnAfter = new Map<string, tfType.layers.Layer>();
  for (const st of graph.steps) if (st.layer.getClassName() === 'BatchNormalization') bnAfter.set(producerOf.get(st.inputIds[0])!, st.layer);
  const input = tf.tensor(x, [n, ...SHAPE]);
  const walk = layerSteps(tf, graph, input);
  for (let r = walk.next(); !r.done; r = walk.next()) {
    const bn = bnAfter.get(r.value.layer.name);
    if (!bn) continue;
    const out = r.value.outputs[0];
    tf.tidy(() => {
      const { mean, variance } = tf.moments(out, [0, 1, 2]);
      const [gamma, beta] = bn.getWeights();
      bn.setWeights([gamma, beta, mean, variance]);
    });
  }
  input.dispose();
}

export interface PhaseRow {
  stage: string;
  phase: string;
  seconds: number;
}
export interface PipelineResult {
  exitCode: number;
  seconds: number;
  /** Peak resident set of the whole `compress run` process (from /usr/bin/time), MB. */
  peakRssMb?: number;
  /** User + system CPU seconds of the whole `compress run` process (from /usr/bin/time): less load-sensitive than wall time. */
  cpuSeconds?: number;
  stages: Array<{ id: string; uses: string; status: string; seconds: number; peakMemoryMb?: number; cpuSeconds?: number; metrics: Record<string, unknown> }>;
  phases: PhaseRow[];
  stderr: string;
}

/** Runs the prepared recipe in a child process and times every stage phase as its events arrive. */
export async function runPipeline(dir: string, extraArgs: string[] = []): Promise<PipelineResult> {
  const cli = join(root, 'bin', 'compress.js');
  const timeBin = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
  const args = [cli, 'run', 'recipe.yaml', '--json', '--force', ...extraArgs];
  const t0 = performance.now();
  const child = timeBin
    ? execa(timeBin, ['-f', 'MAXRSS_KB=%M CPU_S=%U+%S', process.execPath, ...args], { cwd: dir, reject: false, buffer: { stdout: false } })
    : execa(process.execPath, args, { cwd: dir, reject: false, buffer: { stdout: false } });
  const last = new Map<string, { phase: string; t: number }>();
  const phases: PhaseRow[] = [];
  const close = (id: string, t: number) => {
    const l = last.get(id);
    if (l) phases.push({ stage: id, phase: l.phase, seconds: (t - l.t) / 1000 });
  };
  let pending = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const t = performance.now();
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      if (!line.trim()) continue;
      const e = JSON.parse(line) as { type: string; id?: string; message?: string; outcome?: { id: string } };
      if (e.type === 'stage-start') last.set(e.id!, { phase: 'start (load model and data)', t });
      else if (e.type === 'stage-progress') {
        close(e.id!, t);
        last.set(e.id!, { phase: e.message!.replace(/\d+(\.\d+)?/g, 'N'), t });
      } else if (e.type === 'stage-end') {
        close(e.outcome!.id, t);
        last.delete(e.outcome!.id);
      }
    }
  });
  const r = await child;
  const seconds = (performance.now() - t0) / 1000;
  const rss = /MAXRSS_KB=(\d+)/.exec(r.stderr)?.[1];
  const cpu = /CPU_S=([\d.]+)\+([\d.]+)/.exec(r.stderr);
  const reports = join(dir, '.compress', 'reports');
  const latest = readdirSync(reports).sort().pop()!;
  const report = JSON.parse(readFileSync(join(reports, latest, 'report.json'), 'utf8')) as { stages: PipelineResult['stages'] };
  return {
    exitCode: r.exitCode ?? -1,
    seconds,
    peakRssMb: rss ? Number(rss) / 1024 : undefined,
    cpuSeconds: cpu ? Number(cpu[1]) + Number(cpu[2]) : undefined,
    stages: report.stages,
    phases,
    stderr: r.stderr.replace(/MAXRSS_KB=\d+ CPU_S=\S+\n?/, ''),
  };
}

export function formatPipeline(r: PipelineResult): string {
  const lines = [
    `mobilenetv2 pipeline (${PIPELINE_IMAGES} images, 224x224x3): ${r.seconds.toFixed(1)} s wall, ${r.cpuSeconds?.toFixed(1) ?? 'n/a'} s CPU (user + sys, all threads), peak RSS ${r.peakRssMb?.toFixed(0) ?? 'n/a'} MB, exit ${r.exitCode}`,
    "| stage | status | wall s | worker CPU s | worker peak MB | phases (wall s) |",
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const s of r.stages) {
    const ph = r.phases.filter((p) => p.stage === s.id).map((p) => `${p.phase} ${p.seconds.toFixed(1)}`).join('; ');
    lines.push(`| ${s.id} | ${s.status} | ${s.seconds.toFixed(1)} | ${s.cpuSeconds?.toFixed(1) ?? ''} | ${s.peakMemoryMb?.toFixed(0) ?? ''} | ${ph} |`);
  }
  lines.push("(worker CPU: user + system seconds of the stage's worker thread; worker peak: its JS heap + array buffers + wasm heap, not onnxruntime's native memory)");
  if (r.exitCode !== 0) lines.push(r.stderr.trim().split('\n').slice(-5).join('\n'));
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const di = process.argv.indexOf('--dir');
  const dir = di > 0 ? process.argv[di + 1] : mkdtempSync(join(tmpdir(), 'compress-mnv2-'));
  try {
    if (!existsSync(join(dir, 'recipe.yaml'))) {
      const t0 = performance.now();
      const { params } = await preparePipeline(dir);
      console.log(`prepared MobileNetV2 (${params} params) and ${PIPELINE_IMAGES} images in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${dir}`);
    }
    const load = () => loadavg().map((l) => l.toFixed(1)).join(' ');
    const before = load();
    console.log(formatPipeline(await runPipeline(dir)));
    console.log(`(load average ${before} at the start, ${load()} at the end, ${availableParallelism()} cores)`);
  } finally {
    if (di < 0 && !process.argv.includes('--keep')) rmSync(dir, { recursive: true, force: true });
  }
}
