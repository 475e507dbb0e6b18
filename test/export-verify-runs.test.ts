import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runtimeOutputs } from '../src/export/verify/outputs.js';
import type { Runner } from '../src/export/verify/runners.js';
import { layerErrorSampleCount, LAYER_ERROR_MIN_SAMPLES, LAYER_ERROR_VALUES } from '../src/export/layer-error.js';
import type { IrGraph } from '../src/export/ir.js';

/** A runtime that returns each sample's own first value, doubled, and records the batch size of every call. */
function recordingRunner(batched: boolean): Runner & { calls: number[] } {
  const calls: number[] = [];
  return {
    runtime: 'fake',
    batched,
    calls,
    async run(x, n, shape) {
      calls.push(n);
      const per = shape.reduce((a, b) => a * b, 1);
      return Float32Array.from({ length: n }, (_, i) => 2 * x[i * per]);
    },
    dispose() {},
  };
}

const samples = (n: number, per: number) => ({ n, x: Float32Array.from({ length: n * per }, (_, i) => (i % per === 0 ? i / per : -1)) });

test('verification runs the first samples alone (5 warm-up + 100 timed: the latency) and the rest in batches, each sample once, in order', async () => {
  const runner = recordingRunner(true);
  const { out, latencyMs } = await runtimeOutputs(runner, samples(150, 3), [3], 16);
  assert.deepEqual(Array.from(out), Array.from({ length: 150 }, (_, i) => 2 * i));
  assert.equal(runner.calls.filter((n) => n === 1).length, 105);
  assert.deepEqual(runner.calls.slice(105), [16, 16, 13]);
  assert.ok(latencyMs >= 0 && Number.isFinite(latencyMs));
});

test('a test set smaller than the warm-up plus the timed runs is cycled for the timing, its outputs taken once', async () => {
  const runner = recordingRunner(true);
  const { out } = await runtimeOutputs(runner, samples(8, 2), [2], 4);
  assert.deepEqual(Array.from(out), [0, 2, 4, 6, 8, 10, 12, 14]);
  // 5 warm-up calls and 8 timed ones, all at batch 1; no batched call is left to make.
  assert.deepEqual(runner.calls, new Array(13).fill(1));
});

test('a runtime without batches gets the samples after the timed ones in one call', async () => {
  const runner = recordingRunner(false);
  const { out } = await runtimeOutputs(runner, samples(120, 1), [1], 16);
  assert.deepEqual(Array.from(out), Array.from({ length: 120 }, (_, i) => 2 * i));
  assert.deepEqual(runner.calls.slice(105), [15]);
});

/** A graph whose op outputs hold `values` floats per sample (one ReLU), for the sample budget. */
const graphOf = (values: number): IrGraph => ({
  name: 'g', input: 0, output: 1,
  tensors: [{ id: 0, shape: [values], layer: 'in' }, { id: 1, shape: [values], layer: 'out' }],
  ops: [{ kind: 'relu', layer: 'out', inputs: [0], output: 1 }],
});

test('per-layer error reports keep their samples on small graphs and take fewer (at least 16) on large ones', () => {
  assert.equal(layerErrorSampleCount(graphOf(10_000), 64), 64);
  assert.equal(layerErrorSampleCount(graphOf(10_000), 20), 20);
  // MobileNetV2 at 224x224: about 7M values per sample.
  assert.equal(layerErrorSampleCount(graphOf(7_000_000), 64), LAYER_ERROR_MIN_SAMPLES);
  assert.equal(layerErrorSampleCount(graphOf(LAYER_ERROR_VALUES / 40), 64), 40);
  assert.equal(layerErrorSampleCount(graphOf(7_000_000), 8), 8);
});
