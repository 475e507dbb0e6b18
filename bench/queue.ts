/**
 * Queue benchmark (`npm run bench -- queue`): the committed 3x3 sweep (pipelines/sweep-lenet-300-100.yaml,
 * 20 stages) computed by `compress worker` processes through `compress run --queue`, once with 1 worker
 * and once with 2. Each configuration gets its own redis-server and S3 prefix and fresh workspaces (the
 * coordinator's and each worker's), so no stage is a cache hit. Prints both wall times (coordinator
 * start to exit), their ratio, the CPU count and load average (the machine is shared: a ratio near 1 on
 * a busy 2-core box says the cores were taken, not that the queue serialises), and checks that the two
 * runs wrote the same lock.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { isDeepStrictEqual } from 'node:util';
import { execa, type ResultPromise } from 'execa';
import { readLock, type LockStage } from '../src/run/lockfile.js';
import { CLI, ROOT, workspace } from '../test/helpers.js';
import { startRedis, startS3, type S3Server } from '../test/servers.js';

const RECIPE = join(ROOT, 'pipelines', 'sweep-lenet-300-100.yaml');

interface Measured {
  workers: number;
  seconds: number;
  stages: number;
  ran: number;
  lock: Record<string, LockStage>;
}

/** A worker in its own fresh workspace; resolves once it listens on the queue. */
async function startWorker(redisUrl: string, env: Record<string, string>, text: string): Promise<{ proc: ResultPromise }> {
  const { dir } = workspace(text);
  const proc = execa('node', [CLI, 'worker', '--queue', redisUrl], { cwd: dir, reject: false, env, stderr: 'pipe' });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: proc.stderr! }).on('line', (l) => {
      if (l.includes('worker ready')) resolve();
    });
    void proc.then((r) => reject(new Error(`worker exited before ready: ${r.stderr}`)));
  });
  // Wrapped: the subprocess is itself a promise, which an async function's result would wait for.
  return { proc };
}

async function sweepWith(workers: number, s3: S3Server, text: string): Promise<Measured> {
  const redis = await startRedis();
  const env = { ...s3.env(`bench-queue-${workers}w-${Date.now()}`), CI: 'true', GITHUB_REF: 'refs/heads/main' };
  const procs: ResultPromise[] = [];
  try {
    for (let i = 0; i < workers; i++) procs.push((await startWorker(redis.url, env, text)).proc);
    const { dir } = workspace(text);
    const t0 = performance.now();
    const r = await execa('node', [CLI, 'run', '--json', '--queue', redis.url], { cwd: dir, reject: false, env });
    const seconds = (performance.now() - t0) / 1000;
    if (r.exitCode !== 0 && r.exitCode !== 3) throw new Error(`run --queue with ${workers} worker(s) exited ${r.exitCode}: ${r.stderr}`);
    const ends = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; outcome?: { status: string } }).filter((e) => e.type === 'stage-end');
    const lock = readLock(join(dir, 'compress.lock'));
    if (!lock) throw new Error(`run --queue with ${workers} worker(s) wrote no lock`);
    return { workers, seconds, stages: ends.length, ran: ends.filter((e) => e.outcome?.status === 'ran').length, lock: lock.stages };
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs);
    await redis.stop();
  }
}

export async function benchQueue(): Promise<string> {
  const text = readFileSync(RECIPE, 'utf8');
  const s3 = await startS3();
  const load0 = loadavg();
  try {
    const one = await sweepWith(1, s3, text);
    const two = await sweepWith(2, s3, text);
    const load1 = loadavg();
    const same = isDeepStrictEqual(one.lock, two.lock);
    const fmt = (m: Measured) => `${m.workers} worker${m.workers === 1 ? ' ' : 's'}: ${m.seconds.toFixed(1)} s wall (${m.ran} of ${m.stages} stages computed by workers)`;
    return [
      `sweep-lenet-300-100 via run --queue (fresh remote prefix and workspaces each time; ${availableParallelism()} CPUs, load average ${load0.map((x) => x.toFixed(1)).join(' ')} before, ${load1.map((x) => x.toFixed(1)).join(' ')} after)`,
      `  ${fmt(one)}`,
      `  ${fmt(two)}`,
      `  1 worker / 2 workers: ${(one.seconds / two.seconds).toFixed(2)}x`,
      `  locks ${same ? 'identical' : 'DIFFER'} (${Object.keys(one.lock).length} stages: keys and output digests)`,
    ].join('\n');
  } finally {
    await s3.stop();
  }
}
