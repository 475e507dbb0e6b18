import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { cli, TINY, workspace } from './helpers.js';

/** Every file under `dir`: path -> sha256 and mtime (so a rewrite with the same bytes shows too). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[relative(dir, p)] = `${createHash('sha256').update(readFileSync(p)).digest('hex')} ${statSync(p).mtimeMs}`;
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

/** A private TMPDIR per call, so a test can see that verify leaves nothing behind. */
function privateTmp(): string {
  return mkdtempSync(join(tmpdir(), 'compress-verify-test-'));
}

const verify = (args: string[], cwd: string, env: Record<string, string> = {}) => cli(['verify', ...args], cwd, env);

/** Lines of verify's stdout as stage -> verdict text. */
function verdicts(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of stdout.matchAll(/^ {2}(\S+)\s+(.+)$/gm)) out[m[1]] = m[2];
  return out;
}

// One real ML pipeline (train -> prune -> evaluate), run once; tests that tamper with its lock restore it.
let ws: { dir: string; file: string };
let lockPath: string;
let lockText: string;

before(async () => {
  ws = workspace(TINY);
  const r = await cli(['run', '-j', '1'], ws.dir);
  assert.equal(r.exitCode, 0, r.stderr);
  lockPath = join(ws.dir, 'compress.lock');
  lockText = readFileSync(lockPath, 'utf8');
});

test('verify recomputes every stage in a temporary cache, reports each ok, and leaves outputs, lock, cache and reports untouched', async () => {
  const before = {
    out: snapshot(join(ws.dir, '.compress', 'out')),
    cache: snapshot(join(ws.dir, '.compress', 'cache')),
    reports: snapshot(join(ws.dir, '.compress', 'reports')),
    lock: snapshot(ws.dir)['compress.lock'],
  };
  assert.ok(Object.keys(before.out).some((f) => f.endsWith('weights.bin')));
  const tmp = privateTmp();
  const r = await verify(['-j', '1'], ws.dir, { TMPDIR: tmp });
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  assert.deepEqual(verdicts(r.stdout), { baseline: 'ok', prune: 'ok', report: 'ok' });
  assert.match(r.stdout, /verify: 3 stages recomputed, all match compress\.lock/);
  // It really recomputed them (a fresh cache), it did not read the user's cache.
  for (const id of ['baseline', 'prune', 'report']) assert.match(r.stderr, new RegExp(`recomputing ${id}\\b`));
  assert.deepEqual(snapshot(join(ws.dir, '.compress', 'out')), before.out);
  assert.deepEqual(snapshot(join(ws.dir, '.compress', 'cache')), before.cache);
  assert.deepEqual(snapshot(join(ws.dir, '.compress', 'reports')), before.reports);
  assert.equal(snapshot(ws.dir)['compress.lock'], before.lock);
  assert.deepEqual(readdirSync(tmp), [], 'the temporary cache and out dir are removed');
});

test('verify --only checks one stage cheaply: its inputs come from the cache as locked, downstream is not run', async () => {
  const r = await verify(['--only', 'prune'], ws.dir);
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  assert.deepEqual(verdicts(r.stdout), { baseline: '(input, from the cache as locked)', prune: 'ok' });
  assert.match(r.stderr, /recomputing 1 stage\b/);
  assert.match(r.stderr, /recomputing prune/);
  assert.doesNotMatch(r.stderr, /recomputing (baseline|report)/);
  assert.match(r.stdout, /1 stage recomputed, all match/);
});

test('verify --only without the inputs in the cache recomputes (and checks) them too', async () => {
  const empty = mkdtempSync(join(tmpdir(), 'compress-empty-cache-'));
  const r = await verify(['--only', 'prune', '--cache-dir', empty, '--json'], ws.dir);
  assert.equal(r.exitCode, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  assert.deepEqual(res.stages.map((s: { id: string; state: string }) => `${s.id}:${s.state}`), ['baseline:ok', 'prune:ok']);
  assert.equal(res.exitCode, 0);
  assert.deepEqual(readdirSync(empty), [], 'the cache --only reads from is never written');
});

test('a stage whose output differs from the lock is named with its files, exit 2, and the lock is left as it was', async () => {
  const lock = readFileSync(lockPath, 'utf8');
  const digest = /\n {2}prune:\n[\s\S]*?weights\.bin: ([0-9a-f]{64})/.exec(lock)![1];
  const tampered = lock.replace(digest, '0'.repeat(64));
  assert.notEqual(tampered, lock);
  writeFileSync(lockPath, tampered);
  try {
    const r = await verify(['--only', 'prune'], ws.dir);
    assert.equal(r.exitCode, 2, `${r.stdout}\n${r.stderr}`);
    assert.equal(verdicts(r.stdout).prune, 'differs: weights.bin');
    assert.match(r.stderr, /error: verify: 1 of 1 stage differs from compress\.lock: prune/);
    assert.equal(readFileSync(lockPath, 'utf8'), tampered, 'verify never rewrites the lock');
    // The whole recipe: baseline still matches, prune differs.
    const all = await verify(['--json'], ws.dir);
    assert.equal(all.exitCode, 2);
    const states = Object.fromEntries(JSON.parse(all.stdout).stages.map((s: { id: string; state: string; files: unknown }) => [s.id, [s.state, s.files]]));
    assert.deepEqual(states.baseline, ['ok', { changed: [], missing: [], extra: [] }]);
    assert.deepEqual(states.prune, ['differs', { changed: ['weights.bin'], missing: [], extra: [] }]);
  } finally {
    writeFileSync(lockPath, lockText);
  }
});

test('an evaluate stage (no files) is checked by its metrics', async () => {
  const lock = readFileSync(lockPath, 'utf8');
  const m = /\n {2}report:\n[\s\S]*?\n {6}accuracy: ([0-9.e-]+)\n/.exec(lock)!;
  writeFileSync(lockPath, lock.replace(m[0], m[0].replace(`accuracy: ${m[1]}`, 'accuracy: 0.123')));
  try {
    const r = await verify(['--only', 'report'], ws.dir);
    assert.equal(r.exitCode, 2, `${r.stdout}\n${r.stderr}`);
    assert.equal(verdicts(r.stdout).report, `differs: metrics accuracy 0.123 -> ${Number(m[1])}`);
  } finally {
    writeFileSync(lockPath, lockText);
  }
});

test('a recipe changed since the lock is reported stale (exit 2), not silently compared', async () => {
  const r = await verify(['--only', 'prune', '--set', 'params.sparsity=0.8'], ws.dir);
  assert.equal(r.exitCode, 2, `${r.stdout}\n${r.stderr}`);
  assert.match(verdicts(r.stdout).prune, /^stale: its key differs from the lock: the recipe, data, engine or code changed .*run `compress run` and commit the lock\); meta\.json, weights\.bin; metrics .*sparsity 0\.600011 -> 0\.799996$/);
});

test('a missing lock or an unknown stage is a usage error (exit 2) with a clear message', async () => {
  const { dir } = workspace(TINY);
  const r = await verify([], dir);
  assert.equal(r.exitCode, 2);
  assert.match(r.stderr, /error: no lock file compress\.lock to verify against: run `compress run` first/);
  assert.equal(r.stdout, '');
  const u = await verify(['--only', 'nope'], ws.dir);
  assert.equal(u.exitCode, 2);
  assert.match(u.stderr, /unknown stage 'nope' \(stages: baseline, prune, report\)/);
  const h = await cli(['verify', '--help'], ws.dir);
  assert.match(h.stdout, /--only <stage>/);
  const top = await cli(['--help'], ws.dir);
  assert.match(top.stdout, /verify \[options\] \[recipe\]/);
  assert.match(top.stdout, /2 invalid recipe or usage \(or --frozen mismatch, or verify found outputs differing from the lock\)/);
});

test('verify catches a non-deterministic stage without any tampering; stages fed by it are flagged through their input', async () => {
  const { dir } = workspace(`version: 1
name: nondet
stages:
  fixed:
    uses: exec
    with:
      command: [node, -e, "require('fs').writeFileSync(process.argv[1] + '/a.txt', 'same')", "\${outputs}"]
      outputs: [a.txt]
  noisy:
    uses: exec
    with:
      command: [node, -e, "require('fs').writeFileSync(process.argv[1] + '/r.txt', String(Math.random()))", "\${outputs}"]
      outputs: [r.txt]
  copy:
    uses: exec
    needs: [noisy]
    with:
      command: [node, -e, "const fs = require('fs'); fs.copyFileSync(process.argv[2] + '/r.txt', process.argv[1] + '/c.txt')", "\${outputs}", "\${inputs.noisy}"]
      outputs: [c.txt]
`);
  const run = await cli(['run'], dir);
  assert.equal(run.exitCode, 0, run.stderr);
  const r = await verify([], dir);
  assert.equal(r.exitCode, 2, `${r.stdout}\n${r.stderr}`);
  assert.deepEqual(verdicts(r.stdout), {
    fixed: 'ok',
    noisy: 'differs: r.txt',
    copy: "differs: c.txt (its input 'noisy' changed)",
  });
  assert.match(r.stderr, /2 of 3 stages differ from compress\.lock: noisy, copy/);
  // The deterministic stage verifies on its own.
  const one = await verify(['--only', 'fixed', '-q'], dir);
  assert.equal(one.exitCode, 0, one.stderr);
  assert.equal(one.stdout, '');
});

test('a stage that cannot be recomputed is reported as failed (exit 1), not as a match', async () => {
  const { dir } = workspace(`version: 1
name: flaky
stages:
  gen:
    uses: exec
    with:
      command: [node, -e, "if (require('fs').existsSync('broken')) { console.error('tool is broken'); process.exit(3) } require('fs').writeFileSync(process.argv[1] + '/g.txt', 'g')", "\${outputs}"]
      outputs: [g.txt]
  use:
    uses: exec
    needs: [gen]
    with:
      command: [node, -e, "require('fs').copyFileSync(process.argv[2] + '/g.txt', process.argv[1] + '/u.txt')", "\${outputs}", "\${inputs.gen}"]
      outputs: [u.txt]
`);
  const run = await cli(['run'], dir);
  assert.equal(run.exitCode, 0, run.stderr);
  writeFileSync(join(dir, 'broken'), '');
  const r = await verify(['--json'], dir);
  assert.equal(r.exitCode, 1, `${r.stdout}\n${r.stderr}`);
  const res = JSON.parse(r.stdout);
  assert.deepEqual(res.stages.map((s: { id: string; state: string }) => `${s.id}:${s.state}`), ['gen:failed', 'use:failed']);
  assert.match(res.stages[0].detail, /^failed: .*exit/);
  assert.match(res.stages[1].detail, /^not recomputed: upstream 'gen' failed/);
  const text = await verify([], dir);
  assert.equal(text.exitCode, 1);
  assert.match(text.stderr, /error: verify: 'gen', 'use' could not be recomputed/);
  // `--only use` does not re-run the broken tool: its input comes from the cache as locked.
  const only = await verify(['--only', 'use'], dir);
  assert.equal(only.exitCode, 0, only.stderr);
  assert.match(only.stdout, /gen +\(input, from the cache as locked\)\n {2}use +ok/);
});
