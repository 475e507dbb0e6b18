/**
 * Distributed stages: a coordinator (`run --queue`) and worker processes (`compress worker`), each in
 * its own copy of the workspace ("machines"), sharing a real redis-server and a real S3-compatible
 * server (s3rver) started on loopback here.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, watch, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { readLock, type LockStage } from '../src/run/lockfile.js';
import { CLI, ROOT, cli, workspace } from './helpers.js';
import { startRedis, startS3, type RedisServer, type S3Server } from './servers.js';

let redis: RedisServer;
let s3: S3Server;
let recipeText: string;
/** The lock of a plain local run of the same reduced sweep: what the queued runs must reproduce. */
let localLock: Record<string, LockStage>;

// The committed sweep, shrunk: 600 digits, 2 sparsities x 1 width, up to the evaluations (no exports).
const SMALL = ['data.digits.limit=600', 'stages.baseline.with.epochs=1', 'stages.prune.with.train.epochs=1', 'stages.prune.with.schedule.endStep=6', 'stages.prune.with.schedule.frequency=2',
  'stages.prune.matrix={"schedule.finalSparsity": [0.5, 0.75]}', 'stages.quantize.matrix.default.bits=[4]', 'stages.quantize.with.finetune.epochs=1'].flatMap((s) => ['--set', s]);

before(async () => {
  [redis, s3] = await Promise.all([startRedis(), startS3()]);
  recipeText = readFileSync(join(ROOT, 'pipelines', 'sweep-lenet-300-100.yaml'), 'utf8');
  const { dir } = workspace(recipeText);
  const local = await cli(['run', '--no-remote', '-q', ...SMALL, '--until', 'eval'], dir);
  assert.ok([0, 3].includes(local.exitCode!), local.stderr);
  localLock = lockOf(dir);
});

after(async () => {
  await Promise.all([redis?.stop(), s3?.stop()]);
});

interface WorkerProc {
  proc: ResultPromise;
  ready: Promise<void>;
}

/** A worker in its own copy of the workspace; `ready` resolves when it listens on the queue. */
function startWorker(env: Record<string, string>, text = recipeText): WorkerProc {
  const { dir } = workspace(text);
  const proc = execa('node', [CLI, 'worker', '--queue', redis.url], { cwd: dir, reject: false, env: { ...env, COMPRESS_QUEUE_LOCK_MS: '3000' }, stderr: 'pipe' });
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: proc.stderr! }).on('line', (l) => {
      if (l.includes('worker ready')) resolve();
    });
    void proc.then((r) => reject(new Error(`worker exited before ready: ${r.stderr}`)));
  });
  return { proc, ready };
}

async function stopWorker(w: WorkerProc): Promise<void> {
  w.proc.kill('SIGTERM');
  await w.proc;
}

function lockOf(dir: string): Record<string, LockStage> {
  const lock = readLock(join(dir, 'compress.lock'));
  assert.ok(lock, `no lock in ${dir}`);
  return lock.stages;
}

/** Resolves once `file` exists (fs.watch on its directory, then a check for a creation before the watch). */
function fileAppears(file: string): Promise<void> {
  return new Promise((resolve) => {
    const w = watch(join(file, '..'), () => {
      if (existsSync(file)) {
        w.close();
        resolve();
      }
    });
    if (existsSync(file)) {
      w.close();
      resolve();
    }
  });
}

test('run --queue: a coordinator and 2 workers run the sweep; every stage computed by a worker; lock identical to a local run', async () => {
  const env = s3.env('queue-sweep');
  const workers = [startWorker(env), startWorker(env)];
  try {
    await Promise.all(workers.map((w) => w.ready));
    const { dir } = workspace(recipeText);
    const r = await cli(['run', '--json', '--queue', redis.url, ...SMALL, '--until', 'eval'], dir, env);
    assert.ok([0, 3].includes(r.exitCode!), r.stderr);
    const events = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const ends = events.filter((e) => e.type === 'stage-end').map((e) => e.outcome);
    assert.equal(ends.length, 8);
    assert.ok(ends.every((o) => o.status === 'ran'), JSON.stringify(ends.map((o) => [o.id, o.status, o.reason])));
    const onWorker = events.filter((e) => e.type === 'stage-log' && /^computed on worker /.test(e.message)).map((e) => e.id);
    assert.deepEqual(onWorker.sort(), ends.map((o) => o.id).sort(), 'each stage was computed by a worker');
    assert.deepEqual(lockOf(dir), localLock);
  } finally {
    await Promise.all(workers.map(stopWorker));
  }
});

test('run --queue: a worker SIGKILLed mid-stage → its job is taken over by the other worker; same digests as a local run', async () => {
  const env = s3.env('queue-kill');
  const signal = join(mkdtempSync(join(tmpdir(), 'compress-q-')), 'go');
  // The first worker stops inside the first stage it takes (baseline: the only job at first) until killed.
  const first = startWorker({ ...env, COMPRESS_TEST_WAIT_AT: `queue:stage-start:baseline:1:${signal}` });
  let second: WorkerProc | undefined;
  try {
    await first.ready;
    const { dir } = workspace(recipeText);
    const run = cli(['run', '--json', '--queue', redis.url, ...SMALL, '--until', 'prune'], dir, env);
    await fileAppears(`${signal}.reached`);
    second = startWorker(env);
    await second.ready;
    first.proc.kill('SIGKILL');
    const killed = await first.proc;
    assert.equal(killed.signal, 'SIGKILL');
    const r = await run;
    assert.equal(r.exitCode, 0, r.stderr);
    const lock = lockOf(dir);
    assert.deepEqual(Object.keys(lock).sort(), ['baseline', 'prune[finalSparsity=0.5]', 'prune[finalSparsity=0.75]']);
    for (const [id, entry] of Object.entries(lock)) assert.deepEqual(entry, localLock[id], id);
  } finally {
    writeFileSync(signal, '');
    if (second) await stopWorker(second);
  }
});

test('run --queue without a remote cache is a usage error (exit 2) before any stage runs', async () => {
  const { dir } = workspace(recipeText);
  const r = await cli(['run', '--queue', redis.url, '--no-remote', ...SMALL], dir);
  assert.equal(r.exitCode, 2);
  assert.match(r.stderr, /--queue needs a remote cache/);
  assert.ok(!existsSync(join(dir, 'compress.lock')));
});



test('run --queue: a worker whose checkout gives the stage another key refuses it; the failure names the worker host', async () => {
  const env = s3.env('queue-mismatch');
  const worker = startWorker(env, recipeText.replace('seed: 42', 'seed: 43'));
  try {
    await worker.ready;
    const { dir } = workspace(recipeText);
    const r = await cli(['run', '--queue', redis.url, ...SMALL, '--until', 'baseline'], dir, env);
    assert.equal(r.exitCode, 1, r.stderr);
    assert.match(r.stderr, /stage 'baseline' failed: .*has key \w+ on this worker but \w+ on the coordinator.*\(on worker [^ ]+ \(pid \d+\)\)/);
    assert.ok(r.stderr.includes(`on worker ${hostname()} (pid `), r.stderr);
  } finally {
    await stopWorker(worker);
  }
});
