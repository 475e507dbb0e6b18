/**
 * Crash safety: `compress run` SIGKILLed at checkpoints picked (seeded) from the trace of an
 * uninterrupted run never leaves a cache entry, lock or output directory that is read as valid but
 * is wrong, and the next run finishes with the uninterrupted run's artifacts. Ctrl-C stops cleanly.
 *
 * The uninterrupted run is made in three legs (`--until baseline`, `--until prune`, then the rest),
 * each traced, with a snapshot of the workspace before each leg: a kill point of a leg is replayed
 * from that leg's snapshot, so a point late in the pipeline does not pay for re-running the early
 * stages first (the run up to the point is the same run the trace came from).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, TINY, workspace } from './helpers.js';
import { assertMatchesReference, assertNothingHalfWritten, describeRun, outRoot, pool, rng, run, smallWorkspace, STACK, type Reference } from './reliability-util.js';

const SEED = Number(process.env.COMPRESS_CRASH_SEED ?? 20240611);
const KILL_POINTS = 21;

const LEGS: string[][] = [['--until', 'baseline'], ['--until', 'prune'], []];

interface Traced {
  ref: Reference;
  /** Per leg: the workspace snapshot before it and the checkpoints it reached. */
  legs: Array<{ args: string[]; snapshot: string; trace: string[] }>;
}

async function tracedRun(): Promise<Traced> {
  const { dir } = smallWorkspace();
  const legs: Traced['legs'] = [];
  for (const args of LEGS) {
    const snapshot = mkdtempSync(join(tmpdir(), 'compress-snap-'));
    cpSync(dir, snapshot, { recursive: true });
    const tracePath = join(mkdtempSync(join(tmpdir(), 'compress-trace-')), 'trace.txt');
    const r = await run(dir, ['--json', ...args], { COMPRESS_TEST_TRACE: tracePath });
    assert.equal(r.exitCode, 0, r.stderr);
    legs.push({ args, snapshot, trace: readFileSync(tracePath, 'utf8').split('\n').filter(Boolean) });
  }
  return { ref: { ...(await describeRun(dir)), trace: legs.flatMap((l) => l.trace) }, legs };
}

let tracedP: Promise<Traced> | undefined;
const traced = () => (tracedP ??= tracedRun());
const reference = async () => (await traced()).ref;

/** A copy of a snapshot to replay a leg in. */
function fromSnapshot(snapshot: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'compress-test-'));
  cpSync(snapshot, dir, { recursive: true });
  return dir;
}

/** The area a checkpoint belongs to; mid-stage points are split by stage so every stage gets some. */
function areaOf(event: string): string {
  if (event.startsWith('run:')) return `mid-stage:${event.split(':').pop()}`;
  if (event.startsWith('store:record:')) return 'atomic:record';
  if (event.startsWith('store:object')) return 'store:object';
  if (event.startsWith('materialize:')) return 'materialize';
  if (event.startsWith('lockfile:')) return 'lockfile';
  if (event.startsWith('lock:')) return 'lock';
  if (event.startsWith('digests:')) return 'atomic:digests';
  return 'other';
}

interface KillPoint {
  leg: number;
  /** `<event>:<n>`: the n-th time the leg reaches checkpoint <event>. */
  point: string;
  area: string;
}

/** Every checkpoint occurrence of the legs' traces, picked round-robin over areas in seeded order. */
function pickKillPoints(legs: Traced['legs'], count: number, seed: number): KillPoint[] {
  const byArea = new Map<string, KillPoint[]>();
  legs.forEach((leg, i) => {
    const seen = new Map<string, number>();
    for (const ev of leg.trace) {
      const n = (seen.get(ev) ?? 0) + 1;
      seen.set(ev, n);
      const area = areaOf(ev);
      // A copied workspace re-hashes its data files (their inode changed): the data digests file is
      // written at other moments than in the traced leg, so its points are taken from the first leg only.
      if (area === 'atomic:digests' && i > 0) continue;
      if (!byArea.has(area)) byArea.set(area, []);
      byArea.get(area)!.push({ leg: i, point: `${ev}:${n}`, area });
    }
  });
  const random = rng(seed);
  for (const list of byArea.values()) {
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [list[i], list[j]] = [list[j], list[i]];
    }
  }
  const out: KillPoint[] = [];
  const areas = [...byArea.keys()].sort();
  while (out.length < count && areas.some((a) => byArea.get(a)!.length)) {
    for (const a of areas) {
      const p = byArea.get(a)!.shift();
      if (p && out.length < count) out.push(p);
    }
  }
  return out;
}

/** Lock files a killed run may have left holding (cache key locks, output dir locks, the lock file's lock). */
function leftLocks(dir: string): string[] {
  const found: string[] = [];
  const locks = join(dir, '.compress', 'cache', 'locks');
  if (existsSync(locks)) found.push(...readdirSync(locks).filter((n) => n.endsWith('.lock')));
  if (existsSync(outRoot(dir))) found.push(...readdirSync(outRoot(dir)).filter((n) => n.endsWith('.lock')));
  if (existsSync(join(dir, 'compress.lock.writing'))) found.push('compress.lock.writing');
  return found;
}

test('the trace of an uninterrupted run covers store, atomic writes, materialize, lock file and every stage', async () => {
  const ref = await reference();
  const areas = new Set(ref.trace.map(areaOf));
  for (const a of ['store:object', 'atomic:record', 'materialize', 'lockfile', 'lock', 'mid-stage:baseline', 'mid-stage:prune', 'mid-stage:report']) assert.ok(areas.has(a), `trace has ${a}: ${[...areas].join(', ')}`);
  assert.ok(ref.trace.filter((e) => e.startsWith('run:progress:')).length >= 3, 'progress checkpoints inside stages');
  assert.deepEqual(Object.keys(ref.digests).sort(), ['baseline', 'prune', 'report']);
});

test(`SIGKILL at ${KILL_POINTS} seeded checkpoints: nothing half-written is read as valid; the next run matches an uninterrupted run`, async () => {
  const { ref, legs } = await traced();
  const points = pickKillPoints(legs, KILL_POINTS, SEED);
  assert.equal(new Set(points.map((p) => `${p.leg}/${p.point}`)).size, KILL_POINTS, 'distinct kill points');
  assert.ok(new Set(points.map((p) => p.area)).size >= 8, 'spread over areas');
  // Which points ran is printed so a failure can be replayed (COMPRESS_CRASH_SEED, COMPRESS_TEST_KILL_AT).
  console.log(`kill points (seed ${SEED}): ${points.map((p) => `${p.point} (${legs[p.leg].args.join(' ') || 'full run'})`).join(', ')}`);

  const failures: string[] = [];
  await pool(points, 2, async ({ leg, point: at }) => {
    const point = `${at} [leg ${leg}]`;
    const dir = fromSnapshot(legs[leg].snapshot);
    try {
      const killed = await run(dir, ['--json', ...legs[leg].args], { COMPRESS_TEST_KILL_AT: at });
      assert.equal(killed.signal, 'SIGKILL', `${point}: the run was killed there (exit ${killed.exitCode}: ${killed.stderr})`);

      const valid = await assertNothingHalfWritten(dir, ref, point);
      const locks = leftLocks(dir);

      const next = await run(dir, ['--json']);
      assert.equal(next.exitCode, 0, `${point}: next run: ${next.stderr}`);
      assert.doesNotMatch(next.stderr, STACK, point);
      // What the killed run finished is reused, not recomputed.
      for (const id of valid) assert.equal(next.status[id], 'cached', `${point}: ${id} completed before the kill is cached`);
      // Locks the killed run held are taken over, and the run says so.
      if (locks.length) {
        const warnings = next.events.filter((e) => e.type === 'warning').map((e) => e.message as string);
        assert.ok(warnings.some((w) => /recovered the stale lock .* left by process \d+/.test(w)), `${point}: stale lock (${locks.join(', ')}) reported: ${JSON.stringify(warnings)}`);
      }
      await assertMatchesReference(dir, ref, `${point}: after the next run`);
      rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      failures.push(`${(e as Error).message} (workspace kept: ${dir})`);
    }
  });
  assert.deepEqual(failures, []);
});

/**
 * `compress run` in dir with plain (non-JSON) output, as a user at a terminal or in CI sees it,
 * sent SIGINT at the first progress line of the first stage (the stage is mid-run).
 */
async function runInterruptedAtFirstEpoch(dir: string) {
  const child = execa('node', [CLI, 'run'], { cwd: dir, reject: false, env: { CI: 'true' } });
  let sent = false;
  child.stdout!.on('data', (d: Buffer) => {
    if (!sent && /› epoch/.test(d.toString())) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  return { r: await child, sent };
}

test('SIGINT stops a running stage with exit 130 and a message (no stack trace); the next run completes', async () => {
  const ref = await reference();
  const { dir } = smallWorkspace();
  const { r, sent } = await runInterruptedAtFirstEpoch(dir);
  assert.ok(sent, `a stage reported progress: ${r.stdout}`);
  assert.equal(r.exitCode, 130, `exit code (stdout: ${r.stdout}; stderr: ${r.stderr})`);
  assert.match(r.stderr, /interrupted by SIGINT: stopping stages/);
  assert.doesNotMatch(r.stderr + r.stdout, STACK);
  assert.match(r.stdout, /exit 130/, 'the summary is still printed');
  assert.match(r.stdout, /^\s+\S+\s+interrupted/m, 'a stage is marked interrupted');
  await assertNothingHalfWritten(dir, ref, 'after SIGINT');

  const next = await run(dir, ['--json']);
  assert.equal(next.exitCode, 0, next.stderr);
  await assertMatchesReference(dir, ref, 'after SIGINT and a new run');
});

test("a stage interrupted mid-run is reported as interrupted, not by its worker's exit code", async () => {
  // A baseline long enough (60 epochs) to be mid-run when the first progress line arrives.
  const { dir } = workspace(TINY.replace('epochs: 1, batchSize: 32 }\n  prune', 'epochs: 60, batchSize: 32 }\n  prune'));
  const { r } = await runInterruptedAtFirstEpoch(dir);
  assert.equal(r.exitCode, 130, r.stdout + r.stderr);
  const reports = join(dir, '.compress', 'reports');
  const report = JSON.parse(readFileSync(join(reports, readdirSync(reports).sort().at(-1)!, 'report.json'), 'utf8')) as {
    stages: Array<{ id: string; status: string; error?: { name: string; message: string } }>;
  };
  const baseline = report.stages.find((s) => s.id === 'baseline');
  assert.equal(baseline?.status, 'interrupted', JSON.stringify(report.stages));
  assert.equal(baseline?.error?.name, 'Interrupted');
  assert.match(baseline?.error?.message ?? '', /stage 'baseline' was stopped by SIGINT/);
  assert.doesNotMatch(JSON.stringify(report) + r.stdout + r.stderr, /worker exit code/);
});
