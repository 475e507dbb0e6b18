/**
 * MobileNetV2 benchmarks, side by side in one run:
 * - inference latency per image (batch 1 and 32) of the engine vs onnxruntime-node fp32 running the
 *   same model (compress's own float32 ONNX export), both on one thread, then both on every core;
 * - training step time (batch 32, Adam) of a MobileNetV2-0.35 at 96x96x3 vs PyTorch CPU (torchvision's
 *   mobilenet_v2, same width) with 1 thread and with every core (the engine likewise: data-parallel
 *   replicas, COMPRESS_TRAIN_WORKERS, and XNNPACK threads, COMPRESS_WASM_THREADS);
 * Each engine measurement runs in a child process (this file with --json-inference / --json-train-N and
 * COMPRESS_WASM_THREADS / COMPRESS_TRAIN_WORKERS set): the engine's thread count is fixed per process.
 * - the full recipe (bench/pipeline.ts): wall time, peak RSS and every stage's time and memory.
 * Usage: node dist/bench/mobilenet-bench.js [inference] [train] [pipeline]  (default: all three)
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { initEngine, resolveBackend, wasmThreads } from '../src/engine/backend.js';
import { inferencePlan } from '../src/engine/inference.js';
import { MAX_WASM_THREADS } from '../src/engine/threads.js';
import { trainModel } from '../src/engine/train.js';
import { trainWorkers } from '../src/engine/data-parallel.js';
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

interface InferenceRow {
  batch: number;
  engineMs: number;
  engineCpuMs: number;
  ortMs: number;
  ortCpuMs: number;
}

/** Process CPU time (user + system, all threads) in ms since `since`. */
const cpuMs = (since: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
};

/**
 * In this process: ms per image of the engine's inference (its plan: batch norm folded, activations
 * fused; src/engine/inference.ts) and of onnxruntime-node running compress's float32 ONNX export of
 * the same model with `threads` intra-op threads, at batch 1 and 32; wall and process CPU time, medians.
 */
async function inferenceRows(threads: number): Promise<InferenceRow[]> {
  const { tf } = await initEngine('wasm');
  const model = buildMobileNetV2(tf, { alpha: 1, inputShape: [224, 224, 3], numClasses: 1000, seed: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'compress-mnv2-onnx-'));
  const plan = inferencePlan(tf, model);
  try {
    const { files } = await exportModel(tf, model, emptyMeta(), { target: 'onnx', precision: 'float32' }, dir);
    const ort = await import('onnxruntime-node');
    const session = await ort.InferenceSession.create(readFileSync(join(dir, files[0])), { intraOpNumThreads: threads, interOpNumThreads: 1, executionProviders: ['cpu'] });
    const size = 224 * 224 * 3;
    const rows: InferenceRow[] = [];
    for (const [batch, reps] of [[1, 15], [32, 3]] as const) {
      const x = randomInput(batch, size, batch);
      const xt = tf.tensor(x, [batch, 224, 224, 3]);
      const runTf = () => {
        const y = plan.predict(xt);
        y.dataSync();
        y.dispose();
      };
      // onnxruntime runs the exported NHWC-input graph as compress wrote it.
      const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x, [batch, 224, 224, 3]) };
      const runOrt = () => session.run(feeds);
      runTf();
      await runOrt();
      const t = { tf: [] as number[], tfCpu: [] as number[], ort: [] as number[], ortCpu: [] as number[] };
      // Blocks of runs, alternating (engine, onnxruntime, three times over: drift shows on both sides),
      // with a pause before each block: both runtimes' threads poll for work a while after a run, and a
      // block right after the other runtime's run would share the cores with its polling threads.
      const settle = () => new Promise((r) => setTimeout(r, 100));
      for (let round = 0; round < 3; round++) {
        const n = Math.ceil(reps / 3);
        await settle();
        for (let i = 0; i < n; i++) {
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          runTf();
          t.tf.push((performance.now() - t0) / batch);
          t.tfCpu.push(cpuMs(c0) / batch);
        }
        await settle();
        for (let i = 0; i < n; i++) {
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          await runOrt();
          t.ort.push((performance.now() - t0) / batch);
          t.ortCpu.push(cpuMs(c0) / batch);
        }
      }
      xt.dispose();
      rows.push({ batch, engineMs: median(t.tf), engineCpuMs: median(t.tfCpu), ortMs: median(t.ort), ortCpuMs: median(t.ortCpu) });
    }
    await session.release();
    return rows;
  } finally {
    plan.dispose();
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs this file in a child process with the engine on `threads` threads (the engine is per process). */
async function inChild<T>(part: string, env: Record<string, string>): Promise<T> {
  const r = await execa(process.execPath, [fileURLToPath(import.meta.url), `--json-${part}`], { env });
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

/** The thread counts compared: 1 and every core (tfjs-backend-wasm's threaded build, src/engine/threads.ts). */
const threadCounts = () => [...new Set([1, Math.min(availableParallelism(), MAX_WASM_THREADS)])];

export async function benchInference(): Promise<string> {
  const ortVersion = ((await import('onnxruntime-node')).env.versions as { common?: string } | undefined)?.common ?? '';
  const lines = [
    `inference: MobileNetV2 1.0 224x224x3 (3.5M params), ms per image, engine wasm (inference plan) vs onnxruntime-node ${ortVersion} fp32, same threads; wall and process CPU time (user+system of all threads), medians (${load()})`,
    '| threads | batch | compress ms/image | onnxruntime ms/image | compress/onnxruntime | compress CPU ms/image | onnxruntime CPU ms/image | CPU ratio |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const threads of threadCounts()) {
    for (const r of await inChild<InferenceRow[]>('inference', { COMPRESS_WASM_THREADS: String(threads) })) {
      lines.push(`| ${threads} | ${r.batch} | ${r.engineMs.toFixed(1)} | ${r.ortMs.toFixed(1)} | ${(r.engineMs / r.ortMs).toFixed(2)} | ${r.engineCpuMs.toFixed(1)} | ${r.ortCpuMs.toFixed(1)} | ${(r.engineCpuMs / r.ortCpuMs).toFixed(2)} |`);
    }
  }
  lines.push(`(${load()} at the end)`);
  return lines.join('\n');
}

interface StepTime {
  /** Median wall ms per step. */
  ms: number;
  /** Median process CPU ms per step (all threads, replicas included). */
  cpuMs: number;
  /** Wall ms from the timed call's start to its first step (data-parallel: starting the replicas). */
  startMs: number;
  /**
   * Mean CPU ms per step of the busiest thread of this process (a replica; Linux, else absent): the wall
   * time a step needs at least, even on an idle machine, whatever the load when measured.
   */
  busiestMs?: number;
}

/**
 * Steps before the timed ones: a fresh engine's wasm and JS are still being optimised on V8's background
 * threads for many steps. Per-step wall times of a 2-replica run (bench probe, 2026-12-01, idle): steps
 * 1-8 ~200-235 ms, 9-15 ~150-180, from step 16 on ~130-150; one thread shows no trend beyond its noise.
 * A training run lasts hundreds of steps, so the steady state is what it sees. (torch runs compiled
 * kernels: its script warms up 2 steps.)
 */
const WARMUP_STEPS = 16;

/** CPU ms (user + system) of every thread of this process, by thread id (Linux /proc; empty elsewhere). */
function threadCpuMs(): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const t of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${t}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(t, ((Number(f[11]) + Number(f[12])) * 1000) / 100); // USER_HZ ticks
    }
  } catch {
    // not Linux: no per-thread times
  }
  return out;
}

/**
 * In this process: MobileNetV2-0.35 96x96 training step time (batch 32, Adam) after WARMUP_STEPS steps, on
 * COMPRESS_TRAIN_WORKERS replicas. Per step, from one step's end to the next (so a data-parallel run's
 * replica start is not in it; reported apart); medians, like the torch script's.
 */
async function trainStepMs(steps: number): Promise<StepTime> {
  const { tf } = await initEngine('auto');
  const batch = 32, size = 96, classes = 10;
  const model = buildMobileNetV2(tf, { alpha: 0.35, inputShape: [size, size, 3], numClasses: classes, seed: 2 });
  const n = batch * (Math.max(steps + 1, WARMUP_STEPS));
  const rng = createRng(3);
  const data = { x: randomInput(n, size * size * 3, 4), y: Int32Array.from({ length: n }, () => Math.floor(rng() * classes)), n, sampleShape: [size, size, 3], numClasses: classes };
  const opts = { batchSize: batch, seed: 1, optimizer: { name: 'adam' as const, learningRate: 1e-3 }, workers: trainWorkers() };
  await trainModel(tf, model, data, { ...opts, steps: WARMUP_STEPS }); // warm-up (kernels compiled and tiered up, moments allocated)
  const wall: number[] = [], cpu: number[] = [];
  const t0 = performance.now();
  let last: { t: number; c: NodeJS.CpuUsage } | undefined;
  let startMs = 0;
  let threads0: Map<string, number> | undefined, threads1: Map<string, number> | undefined;
  await trainModel(tf, model, data, {
    ...opts,
    steps: steps + 1,
    onProgress: (p) => {
      if (p.phase !== 'batch') return;
      const now = { t: performance.now(), c: process.cpuUsage() };
      if (last) {
        wall.push(now.t - last.t);
        cpu.push(cpuMs(last.c));
        threads1 = threadCpuMs();
      } else {
        startMs = now.t - t0;
        threads0 = threadCpuMs();
      }
      last = { t: now.t, c: process.cpuUsage() };
    },
  });
  model.dispose();
  const busiest = threads0 && threads1 ? Math.max(...[...threads1].map(([t, ms]) => ms - (threads0!.get(t) ?? 0))) / steps : undefined;
  return { ms: median(wall), cpuMs: median(cpu), startMs, ...(busiest !== undefined && busiest > 0 ? { busiestMs: busiest } : {}) };
}

/**
 * Rounds of the training comparison. The VM this runs on drifts by +-20% within minutes (other tenants
 * share its memory bandwidth), so one compress run followed by one torch run cannot resolve the ratio:
 * each round runs compress and torch back to back (1 thread, then all cores), and the ratios printed
 * are the medians of the rounds' paired ratios. COMPRESS_BENCH_ROUNDS overrides (1..9).
 */
function benchRounds(): number {
  const v = Number(process.env.COMPRESS_BENCH_ROUNDS ?? 3);
  return Number.isInteger(v) && v >= 1 && v <= 9 ? v : 3;
}

export async function benchTrainStep(steps = 8): Promise<string> {
  const batch = 32, size = 96, classes = 10;
  const backend = resolveBackend('auto');
  const cores = availableParallelism();
  const n = Math.min(cores, MAX_WASM_THREADS);
  const rounds = benchRounds();
  const engine = (replicas: number, threads = 1) =>
    inChild<StepTime>(`train-${steps}`, { COMPRESS_WASM_THREADS: String(threads), COMPRESS_TRAIN_WORKERS: String(replicas) });
  const torch = async (threads: number): Promise<StepTime | string> => {
    try {
      const r = await execa(PYTHON, [torchScript, '0.35', String(size), String(classes), String(batch), String(steps), String(threads), '1']);
      const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as { msPerStep: number; cpuMsPerStep: number };
      return { ms: j.msPerStep, cpuMs: j.cpuMsPerStep, startMs: 0 };
    } catch (e) {
      return `n/a (${(e as Error).message.split('\n')[0]})`;
    }
  };
  // Each round: every variant once, a compress run and the torch run it is compared with back to back.
  const runs: Array<{ one: StepTime; t1: StepTime | string; dp?: StepTime; tAll: StepTime | string }> = [];
  for (let r = 0; r < rounds; r++) {
    const one = await engine(1);
    const t1 = await torch(1);
    const dp = n > 1 ? await engine(n) : undefined;
    const tAll = await torch(cores);
    runs.push({ one, t1, dp, tAll });
  }
  // XNNPACK's threads (informational: slower than the replicas on conv nets), once.
  const xnn = n > 1 && backend === 'wasm' ? await engine(1, n) : undefined;
  const num = (t: StepTime | string | undefined, k: keyof StepTime = 'ms') => (typeof t === 'object' ? t[k] : undefined);
  const med = (xs: Array<number | undefined>) => {
    const v = xs.filter((x): x is number => x !== undefined);
    return v.length === xs.length && v.length ? median(v) : undefined;
  };
  const col = (pick: (x: (typeof runs)[number]) => StepTime | string | undefined, k: keyof StepTime = 'ms') => med(runs.map((x) => num(pick(x), k)));
  const paired = (a: (x: (typeof runs)[number]) => StepTime | string | undefined, b: (x: (typeof runs)[number]) => StepTime | string | undefined) =>
    runs.map((x) => {
      const p = num(a(x)), q = num(b(x));
      return p !== undefined && q !== undefined ? p / q : undefined;
    });
  const r1 = paired((x) => x.one, (x) => x.t1);
  const rAll = paired((x) => x.dp, (x) => x.tAll);
  const f0 = (v: number | undefined) => (v === undefined ? 'n/a' : v.toFixed(0));
  const f2 = (v: number | undefined) => (v === undefined ? 'n/a' : v.toFixed(2));
  const torchError = [runs[0].t1, runs[0].tAll].find((t): t is string => typeof t === 'string');
  const goal = (v: number | undefined) => (v === undefined ? 'n/a' : `${v.toFixed(2)} (goal <= 1.0: ${v <= 1 ? 'met' : 'NOT met'})`);
  return [
    `train step: MobileNetV2-0.35 96x96x3, ${classes} classes, batch ${batch}, Adam; ${rounds} rounds, each compress then torch back to back (1 thread, then all cores); per run the median of ${steps} steps after ${WARMUP_STEPS} warm-up steps (torch: 2); wall and process CPU (user+system, all threads); compress ${backend} on 1 thread, on ${n} data-parallel replicas (COMPRESS_TRAIN_WORKERS=${n}: batch split ${n} ways, one engine per worker thread) and on ${n} XNNPACK threads (COMPRESS_WASM_THREADS=${n}, one run); torch with 1 and ${cores} threads (${load()})`,
    `| compress 1 thread | compress ${n} replicas | compress ${n} XNNPACK threads | torch 1 thread | torch ${cores} threads | compress/torch 1t | compress ${n} replicas / torch ${cores}t | compress CPU 1t | compress CPU ${n} replicas | torch CPU 1t | torch CPU ${cores}t | compress busiest thread CPU 1t | compress busiest thread CPU ${n} replicas |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    `| ${f0(col((x) => x.one))} | ${f0(col((x) => x.dp))} | ${f0(num(xnn))} | ${f0(col((x) => x.t1))} | ${f0(col((x) => x.tAll))} | ${f2(med(r1))} | ${f2(med(rAll))} | ${f0(col((x) => x.one, 'cpuMs'))} | ${f0(col((x) => x.dp, 'cpuMs'))} | ${f0(col((x) => x.t1, 'cpuMs'))} | ${f0(col((x) => x.tAll, 'cpuMs'))} | ${f0(col((x) => x.one, 'busiestMs'))} | ${f0(col((x) => x.dp, 'busiestMs'))} |`,
    `(ms per step, medians over the rounds; ratios: median of the rounds' paired ratios. Per round, compress/torch 1t: ${r1.map(f2).join(', ')}; compress ${n} replicas / torch ${cores}t: ${rAll.map(f2).join(', ')}${torchError ? `; torch: ${torchError}` : ''})`,
    `all-core training ratio: ${goal(med(rAll))}`,
    `(busiest thread: mean CPU ms a step of the process's busiest thread, the least wall time a step takes on an idle machine; the ${n} replicas took ${f0(col((x) => x.dp, 'startMs'))} ms to start (median), once per process (idle replicas are reused by later training calls); ${load()} at the end)`,
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
      `full recipe: ${goal(r.seconds, 180, 's')} wall (${r.cpuSeconds?.toFixed(1) ?? 'n/a'} s CPU), peak RSS ${goal(r.peakRssMb, 2048, 'MB')}; int8 quantize stage ${goal(st('int8')?.seconds, 10, 's')} wall (${st('int8')?.cpuSeconds?.toFixed(1) ?? 'n/a'} s CPU); k-means 5-bit stage ${goal(st('kmeans')?.seconds, 15, 's')} wall (${st('kmeans')?.cpuSeconds?.toFixed(1) ?? 'n/a'} s CPU)`,
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
  const json = process.argv.find((a) => a.startsWith('--json-'));
  if (json === '--json-inference') console.log(JSON.stringify(await inferenceRows(wasmThreads())));
  else if (json?.startsWith('--json-train-')) console.log(JSON.stringify(await trainStepMs(Number(json.slice('--json-train-'.length)))));
  else for (const s of await benchMobileNet(process.argv.slice(2))) console.log(s + '\n');
  process.exit(0); // the threaded engine's pthread workers keep the event loop alive
}
