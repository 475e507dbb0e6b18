/**
 * Training benchmark: one epoch of Adam (lr 1e-3, batch 64) on the same 8,000 real MNIST digits,
 * compress's trainModel on the auto backend vs PyTorch CPU (Debian's python3-torch under /usr/bin/python3)
 * with 1 thread and with every core (torch.set_num_threads(nproc)), for LeNet-300-100 and LeNet-5; compress
 * likewise on 1 thread and on every core (data-parallel replicas, src/engine/data-parallel.ts); all tested on
 * the same 2,000 held-out digits.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { availableParallelism, loadavg } from 'node:os';
import { MAX_TRAIN_WORKERS } from '../src/engine/data-parallel.js';
import { initEngine } from '../src/engine/backend.js';
import { buildModel, type BuiltinModel } from '../src/engine/models.js';
import { loadMnist, splitDataset } from '../src/data/mnist.js';
import { evaluateModel, trainModel } from '../src/engine/train.js';
import { createRng, deriveSeed, shuffledIndices } from '../src/util/rng.js';

export interface TrainBenchRow {
  model: BuiltinModel;
  compressSeconds: number;
  torchSeconds?: number;
  ratio?: number;
  /** PyTorch with every core (torch.set_num_threads(nproc)). */
  torchAllSeconds?: number;
  ratioAll?: number;
  compressAccuracy: number;
  /** compress on every core: data-parallel replicas (trainModel's `workers`), replica start included. */
  compressDpSeconds?: number;
  /** Process CPU seconds (user + system, every thread) of the two compress runs. */
  compressCpuSeconds?: number;
  compressDpCpuSeconds?: number;
  compressDpAccuracy?: number;
  ratioDpAll?: number;
  torchAccuracy?: number;
  torchError?: string;
}

const N_TRAIN = 8000, N_TEST = 2000, BATCH = 64, LR = 1e-3, SEED = 42;
const PYTHON = process.env.COMPRESS_BENCH_PYTHON ?? '/usr/bin/python3';
/** bench/torch_train.py, found from dist/bench/ or bench/. */
const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'torch_train.py');

const cpuSeconds = (since: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};

export async function benchTrain(models: BuiltinModel[] = ['lenet-300-100', 'lenet-5']): Promise<{ backend: string; rows: TrainBenchRow[] }> {
  const { tf, backend } = await initEngine('auto');
  const s = splitDataset(loadMnist(), { train: N_TRAIN, validation: 0, test: N_TEST }, SEED, N_TRAIN + N_TEST);
  const train = s.train, test = s.test;
  // The batch order compress's trainModel uses for epoch 0, handed to torch so both see the same batches.
  const order = shuffledIndices(train.n, createRng(deriveSeed(SEED, 'epoch0')));
  const dir = mkdtempSync(join(tmpdir(), 'compress-bench-'));
  const file = join(dir, 'data.bin');
  const parts = [train.x, test.x, train.y, test.y, Int32Array.from(order)];
  writeFileSync(file, Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))));
  const rows: TrainBenchRow[] = [];
  try {
    for (const name of models) {
      const model = buildModel(tf, name, { inputShape: train.sampleShape, numClasses: train.numClasses, seed: SEED });
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await trainModel(tf, model, train, { epochs: 1, batchSize: BATCH, seed: SEED, optimizer: { name: 'adam', learningRate: LR } });
      const compressSeconds = (performance.now() - t0) / 1000;
      const compressCpuSeconds = cpuSeconds(c0);
      const compressAccuracy = evaluateModel(tf, model, test).accuracy;
      model.dispose();
      const row: TrainBenchRow = { model: name, compressSeconds, compressAccuracy, compressCpuSeconds };
      if (availableParallelism() > 1) {
        const dp = buildModel(tf, name, { inputShape: train.sampleShape, numClasses: train.numClasses, seed: SEED });
        const c1 = process.cpuUsage();
        const t1 = performance.now();
        await trainModel(tf, dp, train, { epochs: 1, batchSize: BATCH, seed: SEED, optimizer: { name: 'adam', learningRate: LR }, workers: Math.min(availableParallelism(), MAX_TRAIN_WORKERS) });
        row.compressDpSeconds = (performance.now() - t1) / 1000;
        row.compressDpCpuSeconds = cpuSeconds(c1);
        row.compressDpAccuracy = evaluateModel(tf, dp, test).accuracy;
        dp.dispose();
      }
      try {
        const torch = async (threads: number) => {
          const r = await execa(PYTHON, [script, name, file, String(train.n), String(test.n), String(BATCH), String(LR), String(SEED), String(threads)]);
          return JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; accuracy: number };
        };
        const one = await torch(1);
        row.torchSeconds = one.seconds;
        row.torchAccuracy = one.accuracy;
        row.ratio = compressSeconds / one.seconds;
        const all = await torch(availableParallelism());
        row.torchAllSeconds = all.seconds;
        row.ratioAll = compressSeconds / all.seconds;
        if (row.compressDpSeconds !== undefined) row.ratioDpAll = row.compressDpSeconds / all.seconds;
      } catch (e) {
        row.torchError = (e as Error).message.split('\n')[0];
      }
      rows.push(row);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { backend, rows };
}

export function formatTrainBench(backend: string, rows: TrainBenchRow[]): string {
  const cores = availableParallelism();
  const w = Math.min(cores, MAX_TRAIN_WORKERS);
  const head = ['model', `compress s (${backend})`, `compress s (${w} replicas)`, 'torch s (1 thread)', 'compress/torch', `torch s (${cores} threads)`, `compress/torch ${cores}t`, `compress ${w} replicas/torch ${cores}t`, 'compress CPU s', `compress CPU s (${w} replicas)`, 'compress acc', `compress acc (${w} replicas)`, 'torch acc'];
  const body = rows.map((r) => [
    r.model,
    r.compressSeconds.toFixed(2),
    r.compressDpSeconds?.toFixed(2) ?? 'n/a',
    r.torchSeconds?.toFixed(2) ?? `n/a (${r.torchError ?? 'not run'})`,
    r.ratio?.toFixed(2) ?? 'n/a',
    r.torchAllSeconds?.toFixed(2) ?? 'n/a',
    r.ratioAll?.toFixed(2) ?? 'n/a',
    r.ratioDpAll?.toFixed(2) ?? 'n/a',
    r.compressCpuSeconds?.toFixed(2) ?? 'n/a',
    r.compressDpCpuSeconds?.toFixed(2) ?? 'n/a',
    r.compressAccuracy.toFixed(4),
    r.compressDpAccuracy?.toFixed(4) ?? 'n/a',
    r.torchAccuracy?.toFixed(4) ?? 'n/a',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
  return [
    `train: 1 epoch, ${N_TRAIN} MNIST digits, batch ${BATCH}, Adam lr ${LR}, tested on ${N_TEST} held-out digits; compress on 1 thread and on ${w} data-parallel replicas (batch split ${w} ways, replica start included), wall seconds (load ${loadavg().map((l) => l.toFixed(1)).join(' ')})`,
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...body.map(line),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { backend, rows } = await benchTrain();
  console.log(formatTrainBench(backend, rows));
}
