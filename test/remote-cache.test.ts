/**
 * Two "machines" (fresh workspaces) sharing one remote cache on a real S3-compatible server (s3rver,
 * started on loopback here): the default recipe computed once, then taken from the remote; a tampered
 * remote object; a read-only CI run; the server killed in the middle of a run.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { parse } from 'yaml';
import { CLI, cli, ROOT, TINY, workspace } from './helpers.js';
import { startS3, type S3Server } from './servers.js';
import { sha256 } from '../src/cache/hash.js';
import { execa } from 'execa';

const DEFAULT_RECIPE = readFileSync(join(ROOT, 'compress.config.yaml'), 'utf8');
/** On CI, only a trusted ref (main by default) pushes. */
const MAIN = { GITHUB_REF: 'refs/heads/main' };

let s3: S3Server;
/** The first machine: ran the default recipe and pushed every stage to prefix `shared`. */
let first: { dir: string; file: string };

before(async () => {
  s3 = await startS3();
  first = workspace(DEFAULT_RECIPE);
  const r = await cli(['run'], first.dir, { ...s3.env('shared'), ...MAIN });
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /remote: s3:\/\/compress\/shared · 0 hits, 7 pushed/);
});

after(async () => {
  await s3?.stop();
});

function report(dir: string): { stages: Array<{ id: string; status: string; reason: string }>; remote?: { hits: number; pushed: number } } {
  const root = join(dir, '.compress', 'reports');
  const runs = readdirSync(root).sort();
  return JSON.parse(readFileSync(join(root, runs[runs.length - 1], 'report.json'), 'utf8'));
}

function filesUnder(dir: string, base = dir): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) Object.assign(out, filesUnder(p, base));
    else out[relative(base, p)] = readFileSync(p);
  }
  return out;
}

const lockOf = (dir: string) => readFileSync(join(dir, 'compress.lock'));

test('a fresh workspace takes every stage of the default recipe from the remote: outputs and lock byte-identical', async () => {
  const second = workspace(DEFAULT_RECIPE);
  const before = s3.objectCount();
  const r = await cli(['run'], second.dir, { ...s3.env('shared'), ...MAIN });
  assert.equal(r.exitCode, 0, r.stderr);
  const rep = report(second.dir);
  assert.equal(rep.stages.length, 7);
  for (const s of rep.stages) assert.deepEqual([s.id, s.status, s.reason], [s.id, 'cached', 'cached (remote)']);
  assert.deepEqual(rep.remote && [rep.remote.hits, rep.remote.pushed], [7, 0]);
  assert.deepEqual(lockOf(second.dir), lockOf(first.dir));
  const a = filesUnder(join(first.dir, '.compress', 'out'));
  const b = filesUnder(join(second.dir, '.compress', 'out'));
  assert.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
  for (const f of Object.keys(a)) assert.ok(a[f].equals(b[f]), `${f} differs`);
  assert.equal(s3.objectCount(), before, 'a run of hits uploads nothing');
});

test('a fresh clone with the committed lock: the lock\'s entries are prefetched from the remote; every stage a remote hit, same lock', async () => {
  const clone = workspace(DEFAULT_RECIPE);
  copyFileSync(join(first.dir, 'compress.lock'), join(clone.dir, 'compress.lock'));
  const r = await cli(['run'], clone.dir, { ...s3.env('shared'), ...MAIN });
  assert.equal(r.exitCode, 0, r.stderr);
  const rep = report(clone.dir);
  for (const s of rep.stages) assert.deepEqual([s.id, s.status, s.reason], [s.id, 'cached', 'cached (remote)']);
  assert.deepEqual(rep.remote && [rep.remote.hits, rep.remote.pushed], [7, 0]);
  assert.deepEqual(lockOf(clone.dir), lockOf(first.dir));
});

test('status in a fresh workspace names the stages the remote holds, fetching no object; a changed stage is stale', async () => {
  const second = workspace(DEFAULT_RECIPE);
  const before = s3.objectCount();
  const r = await cli(['status', '--json', '--set', 'stages.report.with.latencySamples=3'], second.dir, { ...s3.env('shared'), ...MAIN });
  assert.equal(r.exitCode, 0, r.stderr);
  const states = (JSON.parse(r.stdout) as { stages: Array<{ id: string; state: string }> }).stages;
  assert.deepEqual(Object.fromEntries(states.map((s) => [s.id, s.state])), { baseline: 'remote', 'baseline-eval': 'remote', prune: 'remote', report: 'stale', mobile: 'remote', edge: 'remote', cloud: 'remote' });
  assert.ok(!existsSync(join(second.dir, '.compress', 'cache', 'objects')), 'no object downloaded');
  assert.ok(!existsSync(join(second.dir, '.compress', 'out')), 'nothing materialised');
  assert.equal(s3.objectCount(), before);
});

test('a tampered remote object is detected, its stage recomputed (same digests) and the object re-uploaded', async () => {
  const push = await cli(['cache', 'push', '--remote', 's3://compress/tamper'], first.dir, { ...s3.env('unused'), ...MAIN });
  assert.equal(push.exitCode, 0, push.stderr);
  assert.match(push.stdout, /pushed 7 entries/);
  const lock = parse(readFileSync(join(first.dir, 'compress.lock'), 'utf8'));
  const [file, digest] = Object.entries(lock.stages.mobile.outputs as Record<string, string>)[0];
  const stored = s3.objectFile(`tamper/objects/${digest.slice(0, 2)}/${digest}`);
  const bytes = readFileSync(stored);
  bytes[bytes.length >> 1] ^= 0x01;
  writeFileSync(stored, bytes);

  const third = workspace(DEFAULT_RECIPE);
  const r = await cli(['run'], third.dir, { ...s3.env('tamper'), ...MAIN });
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`warning: remote cache entry of mobile refused: object '${file.replace('.', '\\.')}' is corrupt`));
  const byId = Object.fromEntries(report(third.dir).stages.map((s) => [s.id, s]));
  assert.equal(byId.mobile.status, 'ran');
  for (const id of ['baseline', 'baseline-eval', 'prune', 'report', 'edge', 'cloud']) assert.equal(byId[id].reason, 'cached (remote)', id);
  assert.deepEqual(lockOf(third.dir), lockOf(first.dir));
  assert.equal(sha256(readFileSync(stored)), digest, 'the recomputed object replaced the tampered one');
});

test('a read-only run (CI on a pull request) computes a changed stage but writes nothing to the remote', async () => {
  const ws = workspace(DEFAULT_RECIPE);
  const before = s3.objectCount();
  // A different latency sample count changes the report stage's key: a new entry that a push would add.
  const r = await cli(['run', '--set', 'stages.report.with.latencySamples=7'], ws.dir, { ...s3.env('shared'), GITHUB_REF: 'refs/pull/7/merge' });
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /remote: s3:\/\/compress\/shared \(read-only: CI run on the untrusted ref refs\/pull\/7\/merge.*\) · 6 hits, 0 pushed/);
  const byId = Object.fromEntries(report(ws.dir).stages.map((s) => [s.id, s]));
  assert.equal(byId.report.status, 'ran');
  assert.equal(s3.objectCount(), before, 'server-side object count unchanged');
});

test('cache push on a pull request is refused (exit 2) and writes nothing', async () => {
  const before = s3.objectCount();
  const r = await cli(['cache', 'push', '--remote', 's3://compress/pr'], first.dir, { ...s3.env('unused'), GITHUB_REF: 'refs/pull/9/merge' });
  assert.equal(r.exitCode, 2);
  assert.match(r.stderr, /remote s3:\/\/compress\/pr is read-only here: CI run on the untrusted ref refs\/pull\/9\/merge/);
  assert.equal(s3.objectCount(), before);
});

test('verify checks a teammate\'s lock with its inputs taken only from the remote', async () => {
  const ws = workspace(DEFAULT_RECIPE);
  copyFileSync(join(first.dir, 'compress.lock'), join(ws.dir, 'compress.lock'));
  const r = await cli(['verify', '--only', 'edge'], ws.dir, { ...s3.env('shared'), ...MAIN });
  assert.equal(r.exitCode, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /edge\s+ok/);
  assert.match(r.stdout, /prune\s+\(input, from the cache as locked\)/);
  assert.equal(existsSync(join(ws.dir, '.compress', 'cache')), false, 'the workspace cache was not used');
});

test('cache pull fills a fresh local cache from the remote; the run is then all local hits', async () => {
  const ws = workspace(DEFAULT_RECIPE);
  copyFileSync(join(first.dir, 'compress.lock'), join(ws.dir, 'compress.lock'));
  const pull = await cli(['cache', 'pull'], ws.dir, { ...s3.env('shared'), ...MAIN });
  assert.equal(pull.exitCode, 0, pull.stderr);
  assert.match(pull.stdout, /pulled 7 entries from s3:\/\/compress\/shared \(0 already local\)/);
  const r = await cli(['run', '--no-remote'], ws.dir, {});
  assert.equal(r.exitCode, 0, r.stderr);
  for (const s of report(ws.dir).stages) assert.deepEqual([s.id, s.reason], [s.id, 'cached']);
  assert.deepEqual(lockOf(ws.dir), lockOf(first.dir));
});

test('the server killed in the middle of a run: the run completes local-only with one warning', async () => {
  const own = await startS3();
  try {
    const ws = workspace(TINY);
    const signal = join(ws.dir, 'go');
    // The run stops right after its first stage is pushed, until the test has killed the server.
    const run = execa('node', [CLI, 'run'], { cwd: ws.dir, reject: false, env: { CI: 'true', ...own.env('k'), ...MAIN, COMPRESS_TEST_WAIT_AT: `remote:pushed:1:${signal}` } });
    while (!existsSync(`${signal}.reached`)) {
      if (run.exitCode !== null && run.exitCode !== undefined) break;
      await delay(20);
    }
    assert.ok(existsSync(`${signal}.reached`), 'the run reached its first push');
    assert.ok(own.objectCount('k') > 0);
    await own.kill();
    writeFileSync(signal, '');
    const r = await run;
    assert.equal(r.exitCode, 0, `${r.signal ? `killed by ${r.signal}; ` : ''}${r.stderr}`);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('warning:'));
    assert.equal(warnings.length, 1, r.stderr);
    assert.match(warnings[0], /remote cache s3:\/\/compress\/k is unavailable \(.*ECONNREFUSED.*\): continuing with the local cache only/);
    assert.deepEqual(report(ws.dir).stages.map((s) => s.status), ['ran', 'ran', 'ran']);
    assert.match(r.stdout, /1 pushed · unavailable/);
    assert.ok(existsSync(join(ws.dir, 'compress.lock')));
  } finally {
    await own.stop();
  }
});
