/**
 * Signals (issue 20): SIGTERM and SIGHUP are handled like SIGINT (stages stop, the report is written,
 * temp dirs and locks go) and exit with the conventional 128 + signal number; stages that never
 * started say why; a zombie pid does not keep a killed run's lock or temp dir alive.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, TINY, workspace } from './helpers.js';
import { isZombie, pidAlive } from '../src/cache/fsutil.js';

/** Runs the recipe and sends `sig` when the first training epoch is reported (synchronised on output, no sleeps). */
async function runStoppedBy(sig: 'SIGTERM' | 'SIGHUP') {
  const { dir } = workspace(TINY.replace('epochs: 1, batchSize: 32 }\n  prune', 'epochs: 60, batchSize: 32 }\n  prune'));
  const child = execa('node', [CLI, 'run'], { cwd: dir, reject: false, env: { CI: 'true' } });
  let sent = false;
  child.stdout!.on('data', (d: Buffer) => {
    if (!sent && /› epoch/.test(d.toString())) {
      sent = true;
      child.kill(sig);
    }
  });
  const r = await child;
  const reports = join(dir, '.compress', 'reports');
  const report = existsSync(reports) && readdirSync(reports).length
    ? (JSON.parse(readFileSync(join(reports, readdirSync(reports).sort().at(-1)!, 'report.json'), 'utf8')) as { stages: Array<{ id: string; status: string; reason: string; error?: { message: string } }> })
    : undefined;
  return { dir, r, sent, report };
}

for (const [sig, code] of [['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  test(`${sig} stops the run with exit ${code}, says ${sig}, writes the report and leaves no temp dir or lock`, async () => {
    const { dir, r, sent, report } = await runStoppedBy(sig);
    assert.ok(sent, r.stdout);
    assert.equal(r.exitCode, code, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`interrupted by ${sig}`));
    assert.ok(report, 'report.json was written');
    const baseline = report.stages.find((s) => s.id === 'baseline');
    assert.equal(baseline?.status, 'interrupted');
    assert.match(baseline?.error?.message ?? '', new RegExp(`stopped by ${sig}`));
    // Stages that never started say so.
    for (const s of report.stages.filter((x) => x.id !== 'baseline')) {
      assert.ok(s.status === 'interrupted' || s.status === 'skipped', JSON.stringify(s));
      assert.ok((s.error?.message ?? s.reason).length > 0, `stage ${s.id} has an empty message`);
    }
    const cache = join(dir, '.compress', 'cache');
    assert.deepEqual(readdirSync(join(cache, 'tmp')).filter((n) => !n.startsWith('.')), [], 'temp work dirs removed');
    assert.deepEqual(existsSync(join(cache, 'locks')) ? readdirSync(join(cache, 'locks')).filter((n) => n.endsWith('.lock')) : [], [], 'locks released');
  });
}

test('isZombie reads the state after the command name, whatever the name holds', () => {
  assert.equal(isZombie(1, '4242 (node) Z 1 4242 4242 0 -1'), true);
  assert.equal(isZombie(1, '4242 (node) S 1 4242 4242 0 -1'), false);
  assert.equal(isZombie(1, '4242 (a) Z (b) R 1 4242 0 -1'), false, 'a name with ") Z" inside is not the state');
});

test('a zombie pid is not alive for stale-lock and temp-dir recovery', { skip: process.platform !== 'linux' && 'needs /proc' }, async () => {
  // A parent that never reaps its exited child leaves it a zombie until the parent goes.
  const parent = execa('/usr/bin/python3', ['-c', 'import os,sys\npid=os.fork()\nif pid==0: os._exit(0)\nprint(pid, flush=True)\nsys.stdin.read()'], { reject: false, stdin: 'pipe' });
  const pid = await new Promise<number>((resolve) => parent.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  // Synchronise on the state itself: the child is a zombie once it has exited.
  while (!readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z')) await new Promise((res) => setImmediate(res));
  assert.doesNotThrow(() => process.kill(pid, 0), 'kill(pid, 0) still succeeds for a zombie');
  assert.equal(pidAlive(pid), false);
  assert.equal(pidAlive(process.pid), true);
  parent.stdin!.end();
  await parent;
});
