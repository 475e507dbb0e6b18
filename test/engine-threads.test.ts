import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type * as tfType from '@tensorflow/tfjs';

/**
 * tfjs-backend-wasm's threaded build under Node (COMPRESS_WASM_THREADS): each case runs in a child
 * process (this file again, with COMPRESS_TEST_THREADS_CHILD set), since the engine is per process.
 * The child trains a small MobileNetV2 (conv, depthwise, batch norm, ReLU6, add, pooling, dense) for
 * two Adam steps and prints the digests of its predictions and its trained weights.
 */
interface ChildReport {
  threads: number;
  simd: boolean;
  predictions: string;
  weights: string;
}

async function child(): Promise<void> {
  const { initEngine } = await import('../src/engine/backend.js');
  const { simdKernels } = await import('../src/engine/simd/module.js');
  const { trainModel } = await import('../src/engine/train.js');
  const { buildMobileNetV2 } = await import('../bench/mobilenet.js');
  const { tf } = await initEngine('wasm');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const digest = (arrays: ArrayLike<number>[]) => {
    const h = createHash('sha256');
    for (const a of arrays) h.update(new Uint8Array(Float32Array.from(a).buffer));
    return h.digest('hex');
  };
  const model = buildMobileNetV2(tf, { alpha: 0.35, inputShape: [32, 32, 3], numClasses: 10, seed: 3 });
  const n = 16;
  const data = {
    x: Float32Array.from({ length: n * 32 * 32 * 3 }, (_, i) => Math.sin(i * 0.37)),
    y: Int32Array.from({ length: n }, (_, i) => i % 10),
    n,
    sampleShape: [32, 32, 3],
    numClasses: 10,
  };
  await trainModel(tf, model, data, { batchSize: 8, seed: 1, steps: 2, optimizer: { name: 'adam', learningRate: 1e-3 } });
  const predictions = tf.tidy(() => (model.predict(tf.tensor(data.x, [n, 32, 32, 3])) as tfType.Tensor).dataSync() as Float32Array);
  const report: ChildReport = {
    threads: wasm.getThreadsCount(),
    simd: simdKernels(tf.backend()) !== undefined,
    predictions: digest([predictions]),
    weights: digest(model.getWeights().map((w) => w.dataSync() as Float32Array)),
  };
  console.log(JSON.stringify(report));
}

async function runChild(threads?: string): Promise<ChildReport> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT' && k !== 'COMPRESS_WASM_THREADS'));
  const r = await execa(process.execPath, [fileURLToPath(import.meta.url)], {
    env: { ...env, COMPRESS_TEST_THREADS_CHILD: '1', ...(threads ? { COMPRESS_WASM_THREADS: threads } : {}) },
    extendEnv: false,
    reject: false,
    all: true,
  });
  assert.equal(r.exitCode, 0, r.all);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildReport;
}

if (process.env.COMPRESS_TEST_THREADS_CHILD) {
  await child();
  process.exit(0); // the threaded build's pthread workers keep the event loop alive
} else {
  test('COMPRESS_WASM_THREADS=2 trains and predicts bit-identically to the single-threaded build, on 2 threads with the SIMD kernels', async () => {
    const [single, threaded] = await Promise.all([runChild(), runChild('2')]);
    assert.equal(single.threads, 1);
    assert.equal(threaded.threads, 2, 'XNNPACK got 2 threads');
    assert.ok(single.simd && threaded.simd, 'compress SIMD kernels loaded on both heaps (plain and shared)');
    assert.equal(threaded.predictions, single.predictions);
    assert.equal(threaded.weights, single.weights);
  });

  test('COMPRESS_WASM_THREADS outside 1..8 is refused with a message naming it', async () => {
    const { wasmThreads } = await import('../src/engine/backend.js');
    const saved = process.env.COMPRESS_WASM_THREADS;
    try {
      process.env.COMPRESS_WASM_THREADS = '0';
      assert.throws(() => wasmThreads(), /COMPRESS_WASM_THREADS must be an integer from 1 to 8, got '0'/);
      process.env.COMPRESS_WASM_THREADS = '2';
      assert.equal(wasmThreads(), 2);
    } finally {
      if (saved === undefined) delete process.env.COMPRESS_WASM_THREADS;
      else process.env.COMPRESS_WASM_THREADS = saved;
    }
  });

  test('the conv pool polls before sleeping: spinWhileEqual sees a changed slot, and gives up (no hang) on an unchanged one', async () => {
    const { spinWhileEqual, SPIN_MS } = await import('../src/engine/simd/pool.js');
    const ctl = new Int32Array(new SharedArrayBuffer(16));
    Atomics.store(ctl, 1, 7);
    assert.equal(spinWhileEqual(ctl, 1, 6), true);
    const t0 = performance.now();
    assert.equal(spinWhileEqual(ctl, 1, 7), false);
    assert.ok(performance.now() - t0 >= SPIN_MS, 'it polled for SPIN_MS before giving up');
  });
}
