import type { Dataset } from '../../data/dataset.js';
import { concatFloat32 } from '../../util/ndarray.js';
import { timeCalls } from '../../util/latency.js';
import { shapeSize } from '../ir.js';
import type { Runner } from './runners.js';

/**
 * Every test sample's output in the runtime, and its batch-1 latency from the same runs: the first samples
 * run one at a time (timeCalls: 5 warm-up runs, then up to 100 timed ones, fewer once 10 took 2 s; the
 * latency is their mean), the rest in batches of `batch` where the runtime takes batches. A test set smaller
 * than the warm-up plus the timed runs is cycled through for the remaining timed runs.
 */
export async function runtimeOutputs(runner: Runner, test: Pick<Dataset, 'x' | 'n'>, shape: number[], batch: number): Promise<{ out: Float32Array; latencyMs: number }> {
  const per = shapeSize(shape);
  const n = test.n;
  const sample = (i: number) => test.x.subarray(i * per, (i + 1) * per);
  const single: Float32Array[] = [];
  let calls = 0;
  const times = await timeCalls(
    async () => {
      const i = calls++;
      const y = await runner.run(sample(i % n), 1, shape);
      if (i < n) single.push(y);
    },
    { samples: Math.min(100, n), warmup: Math.min(5, n) },
  );
  const parts = [...single];
  const done = single.length;
  if (done < n) {
    if (runner.batched) {
      for (let s = done; s < n; s += batch) {
        const m = Math.min(batch, n - s);
        parts.push(await runner.run(test.x.subarray(s * per, (s + m) * per), m, shape));
      }
    } else parts.push(await runner.run(test.x.subarray(done * per), n - done, shape));
  }
  const latencyMs = times.length > 0 ? times.reduce((a, t) => a + t, 0) / times.length : 0;
  return { out: concatFloat32(parts), latencyMs };
}
