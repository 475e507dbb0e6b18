import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { cli, workspace } from './helpers.js';

/** A one-stage recipe whose exec stage writes `text` (cheap: no engine). */
const recipe = (name: string, text: string) => `version: 1
name: ${name}
stages:
  make:
    uses: exec
    with:
      command: [node, -e, "require('fs').writeFileSync(process.argv[1], process.argv[2])", "\${outputs}/out.txt", "${text}"]
      outputs: [out.txt]
`;

test('cache gc of one recipe keeps the entries the other recipes of its directory lock (pipelines/a.yaml and b.yaml share one cache)', async () => {
  const { dir } = workspace(recipe('a', 'from a'), 'a.yaml');
  writeFileSync(join(dir, 'b.yaml'), recipe('b', 'from b'));
  writeFileSync(join(dir, 'yarn.lock'), '# not a compress lock\n');
  assert.equal((await cli(['run', 'a.yaml'], dir)).exitCode, 0);
  assert.equal((await cli(['run', 'b.yaml'], dir)).exitCode, 0);
  const gc = await cli(['cache', 'gc', 'a.yaml'], dir);
  assert.equal(gc.exitCode, 0, gc.stderr);
  assert.match(gc.stdout, /removed 0 entries .*other locks using this cache name: b\.lock\)/);
  const status = await cli(['status', 'b.yaml'], dir);
  assert.match(status.stdout, /^ {2}make +cached/m, status.stdout);
});

test('cache gc of one recipe keeps the entries of recipes in other directories that share its cache (COMPRESS_CACHE_DIR)', async () => {
  const { dir } = workspace(recipe('root', 'from root'), 'compress.config.yaml');
  mkdirSync(join(dir, 'pipelines'));
  writeFileSync(join(dir, 'pipelines', 'b.yaml'), recipe('b', 'from b'));
  const env = { COMPRESS_CACHE_DIR: join(dir, 'shared-cache') };
  assert.equal((await cli(['run'], dir, env)).exitCode, 0);
  assert.equal((await cli(['run', 'pipelines/b.yaml'], dir, env)).exitCode, 0);
  const gc = await cli(['cache', 'gc'], dir, env);
  assert.equal(gc.exitCode, 0, gc.stderr);
  assert.match(gc.stdout, /removed 0 entries .*other locks using this cache name: pipelines\/b\.lock\)/);
  const status = await cli(['status', 'pipelines/b.yaml'], dir, env);
  assert.match(status.stdout, /^ {2}make +cached/m, status.stdout);
});

test('a run keeps .compress/ (cache, outputs, reports) out of git: `git add .` in a fresh repository stages the recipe and lock only', async () => {
  const { dir } = workspace(recipe('a', 'from a'), 'a.yaml');
  await execa('git', ['init', '-q'], { cwd: dir });
  assert.equal((await cli(['run', 'a.yaml'], dir)).exitCode, 0);
  const { stdout } = await execa('git', ['status', '--porcelain', '--untracked-files=all'], { cwd: dir });
  assert.deepEqual(stdout.split('\n').sort(), ['?? a.lock', '?? a.yaml']);
});

test('`compress layers <stage>` lists the cached model of the recipe as it is, not what a --set run left in .compress/out', async () => {
  const { dir } = workspace(`version: 1
name: layers
seed: 7
params:
  sparsity: 0.5
data:
  digits: { source: mnist, limit: 200 }
stages:
  base:
    uses: train
    with: { model: mlp-small, epochs: 1, batchSize: 50 }
  prune:
    uses: prune
    needs: [base]
    with: { sparsity: "\${params.sparsity}", schedule: { kind: one-shot } }
`);
  assert.equal((await cli(['run'], dir)).exitCode, 0);
  assert.equal((await cli(['run', '--set', 'params.sparsity=0.9'], dir)).exitCode, 0);
  const r = await cli(['layers', 'prune', '--json'], dir);
  assert.equal(r.exitCode, 0, r.stderr);
  const sparsities = (JSON.parse(r.stdout) as { layers: Array<{ params: number; sparsity: number }> }).layers.filter((l) => l.params > 0).map((l) => Math.round(l.sparsity * 10) / 10);
  assert.deepEqual([...new Set(sparsities)], [0.5]);
});

test('--frozen says what a teammate changed, as status does (with.<field>: old -> new), not only that a stage would change', async () => {
  const { dir, file } = workspace(recipe('a', 'first'), 'a.yaml');
  assert.equal((await cli(['run', 'a.yaml'], dir)).exitCode, 0);
  writeFileSync(file, recipe('a', 'second'));
  const r = await cli(['run', 'a.yaml', '--frozen'], dir);
  assert.equal(r.exitCode, 2);
  assert.match(r.stderr, /'make' would change: with\.command: .*"first".* -> .*"second"/);
});

test('--frozen on a lock with git merge conflict markers says so at their line (not "no lock file")', async () => {
  const { dir } = workspace(recipe('a', 'first'), 'a.yaml');
  assert.equal((await cli(['run', 'a.yaml'], dir)).exitCode, 0);
  const lock = readFileSync(join(dir, 'a.lock'), 'utf8').split('\n');
  const at = lock.findIndex((l) => l.trim().startsWith('key:'));
  lock.splice(at, 1, '<<<<<<< HEAD', lock[at], '=======', lock[at].replace(/[0-9a-f]{64}/, '1'.repeat(64)), '>>>>>>> teammate');
  writeFileSync(join(dir, 'a.lock'), lock.join('\n'));
  const r = await cli(['run', 'a.yaml', '--frozen'], dir);
  assert.equal(r.exitCode, 2);
  assert.match(r.stderr, new RegExp(`a\\.lock is not a lock compress can read: it has git merge conflict markers \\(line ${at + 1}\\)`));
});

test('cache push to an unreachable remote exits 1 saying the push stopped, not "continuing with the local cache only"', async () => {
  const { dir } = workspace(recipe('a', 'first'), 'a.yaml');
  assert.equal((await cli(['run', 'a.yaml'], dir)).exitCode, 0);
  const env = { AWS_ENDPOINT_URL: 'http://127.0.0.1:1', AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' };
  const r = await cli(['cache', 'push', 'a.yaml', '--remote', 's3://team/cache', '--push'], dir, env);
  assert.equal(r.exitCode, 1);
  assert.match(r.stderr, /remote cache s3:\/\/team\/cache is unavailable \(.*\): cache push stopped \(exit 1\)/);
  assert.doesNotMatch(r.stderr, /continuing with the local cache/);
});

test('init --help and layers --help name .onnx among the model files they take (README: init model.onnx)', async () => {
  const { dir } = workspace(recipe('a', 'x'), 'a.yaml');
  assert.match((await cli(['init', '--help'], dir)).stdout, /\.onnx/);
  assert.match((await cli(['layers', '--help'], dir)).stdout, /\.onnx/);
});

test('a run with --set says its lock was written with the overrides (a run without them, like CI\'s --frozen, may not match it)', async () => {
  const { dir } = workspace(recipe('a', 'first'), 'a.yaml');
  const r = await cli(['run', 'a.yaml', '--set', 'name=b'], dir);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /lock: a\.lock \(written with 1 --set override: a run without it, like CI's --frozen, may not match this lock\)/);
  assert.doesNotMatch((await cli(['run', 'a.yaml'], dir)).stdout, /--set override/);
});

test('`compress run pipelines` (a directory) says to give one recipe file and lists those in it (exit 2)', async () => {
  const { dir } = workspace(recipe('a', 'x'), 'compress.config.yaml');
  mkdirSync(join(dir, 'pipelines'));
  writeFileSync(join(dir, 'pipelines', 'b.yaml'), recipe('b', 'y'));
  writeFileSync(join(dir, 'pipelines', 'c.yml'), recipe('c', 'z'));
  const r = await cli(['run', 'pipelines'], dir);
  assert.equal(r.exitCode, 2);
  assert.match(r.stdout + r.stderr, /pipelines +\(recipe\) +is a directory; give one recipe file \(here: pipelines\/b\.yaml, pipelines\/c\.yml\)/);
});

test('two recipes that would share one lock (compress.yaml next to compress.config.yaml) are refused (exit 2), not overwriting each other\'s lock', async () => {
  const { dir } = workspace(recipe('main', 'x'));
  writeFileSync(join(dir, 'compress.yaml'), recipe('other', 'y'));
  assert.equal((await cli(['run'], dir)).exitCode, 0);
  const lock = readFileSync(join(dir, 'compress.lock'), 'utf8');
  const r = await cli(['run', 'compress.yaml'], dir);
  assert.equal(r.exitCode, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /compress\.lock is the lock of compress\.config\.yaml, which is next to compress\.yaml: two recipes cannot share one lock/);
  assert.equal(readFileSync(join(dir, 'compress.lock'), 'utf8'), lock);
});

test("a recipe under pipelines/ naming ../models/... is told where its files may be (its own directory and below), not only that '..' climbs out", async () => {
  const { dir } = workspace(recipe('root', 'x'));
  mkdirSync(join(dir, 'pipelines'));
  writeFileSync(join(dir, 'pipelines', 'p.yaml'), 'version: 1\nname: p\nstages:\n  m: { uses: load, with: { path: ../models/m.onnx } }\n');
  const r = await cli(['validate', 'pipelines/p.yaml'], dir);
  assert.equal(r.exitCode, 2);
  assert.match(r.stdout + r.stderr, /model path '\.\.\/models\/m\.onnx' climbs out of the recipe's directory with '\.\.' \(a recipe reads files at or below its own directory: move the file there, or the recipe up\)/);
});
