/**
 * The memory bomb of issue 20: a 600-byte model.json declaring a Dense 30000x30000 (3.6 GB of float32)
 * next to a 1 KB weights.bin. Its declared sizes are checked before the model is built, so the stage
 * worker fails fast and small; measured by the worker's own memory report (JS heap + array buffers +
 * wasm memory), not by wall time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { WorkerJob, WorkerMessage } from '../src/run/worker.js';

const WORKER = new URL('../src/run/worker.js', import.meta.url);

function dense(units: number, inputs: number, manifestShape: number[]): string {
  return JSON.stringify({
    format: 'layers-model',
    modelTopology: {
      class_name: 'Sequential',
      config: { name: 's', layers: [{ class_name: 'Dense', config: { name: 'd', units, use_bias: false, activation: 'linear', kernel_initializer: { class_name: 'GlorotUniform', config: { seed: null } }, batch_input_shape: [null, inputs], dtype: 'float32' } }] },
    },
    weightsManifest: [{ paths: ['weights.bin'], weights: [{ name: 'd/kernel', shape: manifestShape, dtype: 'float32' }] }],
  });
}

/** Runs a load stage in the real stage worker; returns its error message and the peak memory it reported. */
async function loadInWorker(modelJson: string, weightBytes: number): Promise<{ error?: string; peakBytes: number }> {
  const ws = mkdtempSync(join(tmpdir(), 'compress-bomb-'));
  mkdirSync(join(ws, 'm'));
  writeFileSync(join(ws, 'm', 'model.json'), modelJson);
  writeFileSync(join(ws, 'm', 'weights.bin'), Buffer.alloc(weightBytes));
  mkdirSync(join(ws, 'out'));
  const job: WorkerJob = { stageId: 'm', uses: 'load', with: { path: 'm' }, seed: 1, backend: 'cpu', outDir: join(ws, 'out'), workspace: ws, inputs: [], data: {}, memoryMb: 1024 };
  const worker = new Worker(WORKER, { workerData: job, stdout: true, stderr: true });
  let peakBytes = 0;
  const error = await new Promise<string | undefined>((resolve, reject) => {
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'memory') peakBytes = Math.max(peakBytes, m.bytes);
      else if (m.type === 'error') resolve(m.message);
      else if (m.type === 'done') resolve(undefined);
    });
    worker.on('error', reject);
  });
  await worker.terminate();
  return { error, peakBytes };
}

test('memory bomb: model.json declaring Dense 30000x30000 with a 1 KB shard fails below 300 MB, naming the shard', async () => {
  const json = dense(30000, 30000, [30000, 30000]);
  assert.ok(json.length < 700, `model.json is ${json.length} bytes`);
  const r = await loadInWorker(json, 1024);
  assert.match(r.error ?? '', /weight shard 'weights\.bin' is 1024 bytes, expected 3600000000/);
  assert.ok(r.peakBytes > 0, 'the worker reported its memory');
  assert.ok(r.peakBytes < 300 * 1048576, `peak ${(r.peakBytes / 1048576).toFixed(0)} MB`);
});

test('memory bomb: a topology needing far more weights than the manifest declares is refused before the build', async () => {
  // The manifest and shard agree (a 4x4 kernel), the topology asks for 30000x30000.
  const r = await loadInWorker(dense(30000, 30000, [4, 4]), 64);
  assert.match(r.error ?? '', /layers need 900000000 weights .* weight files declare 16/);
  assert.ok(r.peakBytes < 300 * 1048576, `peak ${(r.peakBytes / 1048576).toFixed(0)} MB`);
});

