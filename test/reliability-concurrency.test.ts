/**
 * Concurrency: two `compress run` processes on one cache and one lock file finish with a solo run's
 * results and lose none of each other's lock entries; locks left by killed runs are recovered, and
 * the run says so.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertMatchesReference, cacheOf, lockDigests, referenceRun, run, SMALL, smallWorkspace, STACK, traced, waitFor, type Reference } from './reliability-util.js';

let refP: Promise<Reference> | undefined;
const reference = () => (refP ??= referenceRun());

test('two runs at once on one cache and lock file: both finish with a solo run\'s digests, each stage computed once', async () => {
  const ref = await reference();
  const { dir } = smallWorkspace();
  const [a, b] = await Promise.all([run(dir, ['--json']), run(dir, ['--json'])]);
  assert.equal(a.exitCode, 0, a.stderr);
  assert.equal(b.exitCode, 0, b.stderr);
  for (const id of Object.keys(ref.digests)) {
    // One process computed it; the other waited on its key lock and took the result.
    const statuses = [a.status[id], b.status[id]].sort();
    assert.deepEqual(statuses, ['cached', 'ran'], `${id}: ${statuses}`);
  }
  // Both report the solo run's outputs, and the lock, cache and out dir hold exactly them.
  for (const r of [a, b]) {
    const summary = r.events.find((e) => e.type === 'run-end')!.summary;
    for (const s of summary.stages) assert.deepEqual(s.outputs, ref.files[s.id], s.id);
  }
  await assertMatchesReference(dir, ref, 'two concurrent runs');
  assert.equal((await cacheOf(dir).listRecords()).length, 3, 'one record per stage, no duplicates');
});

test('two runs writing different stages into one lock file at the same moment lose no entry', async () => {
  const ref = await reference();
  // A second branch off baseline: run A does baseline+prune, run B baseline+evalbase.
  const recipe = SMALL + `  evalbase:\n    uses: evaluate\n    needs: [baseline]\n    with: { latencySamples: 0 }\n`;
  const { dir } = smallWorkspace(recipe);
  const sync = mkdtempSync(join(tmpdir(), 'compress-sync-'));
  // Whichever run takes the lock file's lock first stops holding it (right after reading the lock) and goes
  // on only once the other is seen waiting for that lock; the second must then merge into what the first
  // wrote (without the lock it would overwrite it).
  const side = (x: string) => ({ go: join(sync, `go-${x}`), trace: join(sync, `trace-${x}.txt`) });
  const [A, B] = [side('a'), side('b')];
  const env = (s: { go: string; trace: string }) => ({ COMPRESS_TEST_WAIT_AT: `lockfile:read:1:${s.go}`, COMPRESS_TEST_TRACE: s.trace });
  const a = run(dir, ['--json', '--until', 'prune'], env(A));
  const b = run(dir, ['--json', '--until', 'evalbase'], env(B));
  const holdsWhileOtherWaits = (x: typeof A, y: typeof A) => existsSync(`${x.go}.reached`) && traced(y.trace, 'lockfile:wait');
  await waitFor(() => holdsWhileOtherWaits(A, B) || holdsWhileOtherWaits(B, A));
  for (const s of [A, B]) writeFileSync(s.go, '');
  const [ra, rb] = await Promise.all([a, b]);
  assert.equal(ra.exitCode, 0, ra.stderr);
  assert.equal(rb.exitCode, 0, rb.stderr);
  const lock = lockDigests(join(dir, 'compress.lock'))!;
  assert.deepEqual(Object.keys(lock).sort(), ['baseline', 'evalbase', 'prune']);
  assert.equal(lock.baseline, ref.digests.baseline);
  assert.equal(lock.prune, ref.digests.prune);
  const evalbase = rb.events.find((e) => e.type === 'stage-end' && e.outcome.id === 'evalbase')!.outcome;
  const rec = (await cacheOf(dir).getRecord(evalbase.key))!;
  assert.equal(lock.evalbase, rec.outputsDigest);
  // A third run finds every stage the two established and adds only the one neither ran.
  const c = await run(dir, ['--json']);
  assert.equal(c.exitCode, 0, c.stderr);
  assert.deepEqual(c.status, { baseline: 'cached', prune: 'cached', evalbase: 'cached', report: 'ran' });
  assert.equal(lockDigests(join(dir, 'compress.lock'))!.report, ref.digests.report);
});

test('locks left by killed runs (a stage\'s key lock, the lock file\'s lock) are recovered with a message naming the dead pid', async () => {
  const ref = await reference();
  const { dir } = smallWorkspace();
  // Killed while computing prune: its key lock stays behind, naming the dead process.
  const k1 = await run(dir, ['--json'], { COMPRESS_TEST_KILL_AT: 'run:stage-start:prune:1' });
  assert.equal(k1.signal, 'SIGKILL');
  const keyLocks = readdirSync(join(dir, '.compress', 'cache', 'locks'));
  assert.equal(keyLocks.length, 1);
  const [pid1] = readFileSync(join(dir, '.compress', 'cache', 'locks', keyLocks[0]), 'utf8').split('@');

  // Killed while holding the lock file's lock (after every stage finished).
  const k2 = await run(dir, ['--json'], { COMPRESS_TEST_KILL_AT: 'lockfile:locked:1' });
  assert.equal(k2.signal, 'SIGKILL');
  const warnings2 = k2.events.filter((e) => e.type === 'warning').map((e) => e.message as string);
  assert.equal(warnings2.length, 1, JSON.stringify(warnings2));
  assert.match(warnings2[0], new RegExp(`recovered the stale lock .*locks/${keyLocks[0]} left by process ${pid1} on ${hostname()}, which no longer runs`));
  assert.ok(existsSync(join(dir, 'compress.lock.writing')));
  assert.equal(existsSync(join(dir, 'compress.lock')), false, 'the killed run wrote no lock file');
  const [pid2] = readFileSync(join(dir, 'compress.lock.writing'), 'utf8').split('@');
  assert.notEqual(pid2, pid1);

  // A lock naming a pid that never ran on this host is just as stale (a hand-made one for an output dir).
  writeFileSync(join(dir, '.compress', 'out', '.report.lock'), `999999999@${hostname()}`);

  // Plain output: the user sees the recovery on stderr, the run completes.
  const r = await run(dir, []);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`warning: recovered the stale lock \\S*compress\\.lock\\.writing left by process ${pid2} on ${hostname()}, which no longer runs \\(killed or crashed run\\)`));
  assert.match(r.stderr, /warning: recovered the stale lock \S*\.report\.lock left by process 999999999/);
  assert.doesNotMatch(r.stderr, STACK);
  assert.match(r.stdout, /3 stages: 0 ran, 3 cached/);
  await assertMatchesReference(dir, ref, 'after recovering stale locks');
  assert.equal(existsSync(join(dir, 'compress.lock.writing')), false);
});

test('a live run\'s lock is never taken over: a second run waits for it', async () => {
  const { dir } = smallWorkspace();
  const sync = mkdtempSync(join(tmpdir(), 'compress-sync-'));
  const go = join(sync, 'go');
  const trace = join(sync, 'trace.txt');
  // The first run stops holding the lock file's lock until the second is seen waiting for it.
  const first = run(dir, ['--json'], { COMPRESS_TEST_WAIT_AT: `lockfile:locked:1:${go}` });
  await waitFor(() => existsSync(`${go}.reached`));
  assert.ok(existsSync(join(dir, 'compress.lock.writing')), 'the first run holds the lock');
  const second = run(dir, ['--json'], { COMPRESS_TEST_TRACE: trace });
  await waitFor(() => traced(trace, 'lockfile:wait'));
  writeFileSync(go, '');
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.exitCode, 0, a.stderr);
  assert.equal(b.exitCode, 0, b.stderr);
  assert.deepEqual(b.events.filter((e) => e.type === 'warning'), [], 'no live lock reported as stale');
  assert.deepEqual(Object.keys(lockDigests(join(dir, 'compress.lock'))!).sort(), ['baseline', 'prune', 'report']);
});
