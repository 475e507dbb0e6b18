/**
 * The published package, used the way a user's repository uses it: `npm pack` this checkout, install the
 * tarball (offline, from the npm cache) into a fresh project that has its own model and data, then
 * `npx compress init <model>` and `npx compress run`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import * as tf from '@tensorflow/tfjs';
import { ROOT } from './helpers.js';
import { encodeNpy } from '../src/data/npy.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; bin: Record<string, string> };
const npmEnv = { CI: 'true', npm_config_update_notifier: 'false' };

/** A user's own model (4 features -> 3 classes) as TF.js files, and 150 labelled samples as .npy. */
async function userProject(dir: string): Promise<void> {
  await tf.setBackend('cpu');
  const model = tf.sequential({ layers: [tf.layers.dense({ units: 16, activation: 'relu', inputShape: [4], name: 'hidden' }), tf.layers.dense({ units: 3, activation: 'softmax', name: 'out' })] });
  mkdirSync(join(dir, 'model'));
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      writeFileSync(join(dir, 'model', 'model.json'), JSON.stringify({ modelTopology: a.modelTopology, format: 'layers-model', weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }] }));
      writeFileSync(join(dir, 'model', 'weights.bin'), new Uint8Array(a.weightData as ArrayBuffer));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  const n = 150;
  const x = new Float32Array(n * 4);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % 3;
    for (let j = 0; j < 4; j++) x[i * 4 + j] = (j === y[i] ? 1 : 0) + ((i * 7 + j * 3) % 5) / 10;
  }
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'data', 'features.npy'), encodeNpy(x, [n, 4], 'f4'));
  writeFileSync(join(dir, 'data', 'labels.npy'), encodeNpy(y, [n], 'i4'));
  // As README "Use it in your repo" says: onnxruntime-node's install script would download its CUDA
  // provider (not used: compress runs on the CPU); the project's install-script policy skips it.
  const allowScripts = { 'onnxruntime-node': false, 'core-js': true, 'msgpackr-extract': true, protobufjs: true };
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'user-project', version: '1.0.0', private: true, allowScripts }, null, 2));
}

/** A lock for `user` (depending on our tarball) that pins our dependencies as our own lock does. */
function userLock(user: { name: string; version: string; devDependencies: Record<string, string>; allowScripts: object }, tarball: string) {
  const ours = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, Record<string, unknown>> };
  const self = ours.packages[''] as { version: string; dependencies: object; bin: object; license: string; engines: object; peerDependencies: object; peerDependenciesMeta: object };
  const packages: Record<string, unknown> = {
    '': { name: user.name, version: user.version, devDependencies: user.devDependencies },
    [`node_modules/${pkg.name}`]: { version: self.version, resolved: tarball, dev: true, license: self.license, dependencies: self.dependencies, bin: self.bin, engines: self.engines, peerDependencies: self.peerDependencies, peerDependenciesMeta: self.peerDependenciesMeta },
  };
  for (const [path, entry] of Object.entries(ours.packages)) if (path && !entry.dev) packages[path] = { ...entry, dev: true };
  return { name: user.name, version: user.version, lockfileVersion: 3, requires: true, packages };
}

test(`npm pack -> install into a fresh project (offline) -> npx compress init <model> -> npx compress run: every stage runs, a report and a lock`, async () => {
  const packDir = mkdtempSync(join(tmpdir(), 'compress-pack-'));
  // --ignore-scripts: dist/ is already built (by `npm test`); rebuilding it here would disturb tests running beside this one.
  const packed = await execa('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir], { cwd: ROOT, env: npmEnv });
  const [{ filename, files }] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const paths = new Set(files.map((f) => f.path));
  for (const p of ['package.json', 'README.md', 'bin/compress.js', 'dist/src/cli.js', 'dist/src/run/worker.js', 'schemas/recipe.schema.json']) assert.ok(paths.has(p), `the tarball has ${p}`);
  assert.ok(![...paths].some((p) => p.startsWith('dist/test/') || p.startsWith('test/') || p.startsWith('src/')), 'no tests or TypeScript sources in the tarball');

  const project = mkdtempSync(join(tmpdir(), 'compress-user-'));
  await userProject(project);
  // The project depends on the tarball; its lock pins our dependencies as this checkout's lock does, so
  // `npm ci --offline` installs everything from the npm cache (no registry metadata needed).
  const tarball = `file:${relative(project, join(packDir, filename)).split('\\').join('/')}`;
  const user = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8'));
  user.devDependencies = { [pkg.name]: tarball };
  writeFileSync(join(project, 'package.json'), JSON.stringify(user, null, 2));
  writeFileSync(join(project, 'package-lock.json'), JSON.stringify(userLock(user, tarball), null, 2));
  const install = await execa('npm', ['ci', '--offline', '--no-audit', '--no-fund'], { cwd: project, env: npmEnv, reject: false });
  assert.equal(install.exitCode, 0, install.stderr);
  assert.ok(existsSync(join(project, 'node_modules', ...pkg.name.split('/'), pkg.bin.compress)), 'the package is installed under its name');

  const npx = (args: string[]) => execa('npx', ['--no-install', 'compress', ...args], { cwd: project, env: npmEnv, reject: false });
  const init = await npx(['init', 'model/model.json']);
  assert.equal(init.exitCode, 0, init.stderr);
  assert.doesNotMatch(`${init.stdout}${init.stderr}`, /npm warn/, 'npx prints no npm warnings');
  // init points the recipe at data/features.npy + data/labels.npy for a model that does not take MNIST digits.
  const recipe = readFileSync(join(project, 'compress.config.yaml'), 'utf8');
  assert.match(recipe, /features: data\/features\.npy, labels: data\/labels\.npy, numClasses: 3/);
  assert.match(recipe, /\$schema=\.\/node_modules\/.*\/schemas\/recipe\.schema\.json/);

  // The user's model is untrained and tiny (112 weights): pruning 80% of it in one shot may cost more accuracy
  // than the starter gate allows, which is exit 3 (a gate failed), with every stage run.
  const run = await npx(['run']);
  assert.ok(run.exitCode === 0 || run.exitCode === 3, `${run.stdout}\n${run.stderr}`);
  const reports = join(project, '.compress', 'reports');
  const [runId] = readdirSync(reports);
  const report = JSON.parse(readFileSync(join(reports, runId, 'report.json'), 'utf8')) as { exitCode: number; stages: Array<{ id: string; status: string; metrics: { sparsity?: number } }> };
  assert.equal(report.exitCode, run.exitCode);
  const sparsity = report.stages.find((s) => s.id === 'prune')!.metrics.sparsity!;
  assert.ok(sparsity > 0.7, `the starter prune stage pruned (sparsity ${sparsity})`);
  assert.deepEqual(report.stages.map((s) => `${s.id}:${s.status}`).sort(), ['baseline:ran', 'cloud:ran', 'model:ran', 'prune:ran', 'report:ran']);
  assert.ok(existsSync(join(project, 'compress.lock')), 'the lock to commit');
});
