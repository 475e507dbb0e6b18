import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, workspace } from './helpers.js';
import { confinedPath, PathEscapeError } from '../src/util/paths.js';
import { dataPath } from '../src/data/paths.js';
import { initEngine } from '../src/engine/backend.js';
import { buildModel } from '../src/engine/models.js';
import { saveModelDir } from '../src/model/io.js';
import { emptyMeta } from '../src/model/meta.js';
import { loadModelFrom } from '../src/model/load/index.js';
import { InputError } from '../src/errors/input-error.js';

/** A directory outside every workspace, holding a file no recipe may read or overwrite. */
function outside(): { dir: string; secret: string } {
  const dir = mkdtempSync(join(tmpdir(), 'compress-outside-'));
  const secret = `TOP-SECRET-${process.pid}-${Date.now()}`;
  writeFileSync(join(dir, 'secret.txt'), secret);
  writeFileSync(join(dir, 'data.csv'), 'a,b,label\n1,2,0\n3,4,1\n');
  return { dir, secret };
}

/** Every file under `dir` (following nothing), for "the secret never landed here" checks. */
function allFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

async function runJson(dir: string, args: string[] = []) {
  const r = await cli(['run', '--json', ...args], dir);
  const events = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const stages = Object.fromEntries(events.filter((e) => e.type === 'stage-end').map((e) => [e.outcome.id, e.outcome]));
  return { r, stages };
}

test('confinedPath: refuses absolute paths, climbing `..` and symlinks out, also for paths not written yet', () => {
  const ws = mkdtempSync(join(tmpdir(), 'compress-confine-'));
  const out = outside();
  mkdirSync(join(ws, 'sub'));
  symlinkSync(out.dir, join(ws, 'link-dir'));
  symlinkSync(join(out.dir, 'secret.txt'), join(ws, 'link-file'));
  symlinkSync(join(out.dir, 'not-yet'), join(ws, 'dangling'));
  symlinkSync(join(ws, 'sub'), join(ws, 'inner-link'));
  const refused = (p: string, re: RegExp) => assert.throws(() => confinedPath(ws, p, 'thing'), (e: unknown) => e instanceof PathEscapeError && re.test(e.message));
  refused('/etc/passwd', /thing '\/etc\/passwd' is absolute/);
  refused('C:\\Windows\\x', /is absolute/);
  refused('../x', /thing '\.\.\/x' climbs out of the recipe's directory with '\.\.'/);
  refused('sub/../../x', /climbs out/);
  refused('link-file', /goes through a symbolic link to '.*secret\.txt', outside/);
  refused('link-dir/new/file.bin', /goes through a symbolic link/);
  refused('dangling', /goes through a symbolic link to '.*not-yet'/);
  // Inside stays fine: a name starting with '..', a link within, a path not written yet.
  assert.equal(confinedPath(ws, '..hidden'), join(ws, '..hidden'));
  assert.equal(confinedPath(ws, 'inner-link/x/y'), join(ws, 'inner-link', 'x', 'y'));
  assert.equal(confinedPath(ws, 'sub/../sub/z'), join(ws, 'sub', 'z'));
});

test('load.path: `..` and absolute are positioned recipe errors; a symlink out is refused before any stage (run\'s preflight)', async () => {
  const out = outside();
  const { dir } = workspace(`version: 1
stages:
  a:
    uses: load
    with: { path: ../model.json }
  b:
    uses: load
    with: { path: ${join(out.dir, 'model.json')} }
`);
  const v = await cli(['validate'], dir);
  assert.equal(v.exitCode, 2);
  assert.match(v.stderr, /compress\.config\.yaml:5:19  stages\.a\.with\.path  model path '\.\.\/model\.json' climbs out of the recipe's directory/);
  assert.match(v.stderr, /compress\.config\.yaml:8:19  stages\.b\.with\.path  model path '.*' is absolute/);

  const ws = workspace(`version: 1
stages:
  m:
    uses: load
    with: { path: models/model.json }
`);
  symlinkSync(out.dir, join(ws.dir, 'models'));
  const { r, stages } = await runJson(ws.dir);
  assert.equal(r.exitCode, 2, r.stderr);
  assert.deepEqual(stages, {}, 'no stage ran');
  assert.match(r.stderr, /compress\.config\.yaml:5:\d+  stages\.m\.with  model path 'models\/model\.json' goes through a symbolic link to '.*', outside the recipe's directory/);
});

test('model.json weight shards may not point outside the model directory', async () => {
  const { tf } = await initEngine('cpu');
  const dir = mkdtempSync(join(tmpdir(), 'compress-shards-'));
  await saveModelDir(tf, buildModel(tf, 'mlp-small', { inputShape: [4, 4, 1], numClasses: 3, seed: 1 }), emptyMeta(), join(dir, 'm'));
  const jsonPath = join(dir, 'm', 'model.json');
  const json = JSON.parse(readFileSync(jsonPath, 'utf8'));
  for (const [paths, re] of [
    [['../../../../etc/passwd'], /weight shard '\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd' climbs out of the model directory/],
    [['/etc/passwd'], /weight shard '\/etc\/passwd' is absolute/],
  ] as const) {
    json.weightsManifest[0].paths = paths;
    writeFileSync(jsonPath, JSON.stringify(json));
    await assert.rejects(loadModelFrom(tf, join(dir, 'm')), (e: unknown) => e instanceof InputError && re.test(e.message) && e.message.includes('model.json'));
  }
});

test('data file paths: `..` and absolute are positioned recipe errors; a symlink out is refused before anything runs', async () => {
  const out = outside();
  const recipe = (features: string) => `version: 1
data:
  d: { source: files, format: csv, features: "${features}", numClasses: 2 }
stages:
  t:
    uses: train
    with: { model: mlp-small, epochs: 1 }
`;
  for (const [features, code, re] of [
    ['../data.csv', 2, /compress\.config\.yaml:3:\d+  data\.d\.features  data features path '\.\.\/data\.csv' climbs out of the recipe's directory/],
    [join(out.dir, 'data.csv'), 2, /compress\.config\.yaml:3:\d+  data\.d\.features  data features path '.*data\.csv' is absolute/],
    ['linked.csv', 2, /compress\.config\.yaml:3:\d+  data\.d  data features path 'linked\.csv' goes through a symbolic link to '.*data\.csv', outside the recipe's directory/],
  ] as const) {
    const { dir } = workspace(recipe(features));
    symlinkSync(join(out.dir, 'data.csv'), join(dir, 'linked.csv'));
    const r = await cli(['run'], dir);
    assert.equal(r.exitCode, code, r.stderr);
    assert.match(r.stderr, re);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'a message, not a stack trace');
    assert.ok(!existsSync(join(dir, '.compress', 'out', 't')), 'no stage ran');
  }
});

test('exec inputs/outputs: `..` and absolute are positioned errors; input symlinks out are refused before any stage, output symlinks out when the stage ends; nothing leaks into the cache', async () => {
  const out = outside();
  const { dir } = workspace(`version: 1
stages:
  a:
    uses: exec
    with:
      command: [node, -e, "0"]
      inputs: [../secret.txt, /etc/passwd]
      outputs: [../up.bin, /tmp/abs.bin]
      metrics: ../m.json
`);
  const v = await cli(['validate'], dir);
  assert.equal(v.exitCode, 2);
  assert.match(v.stderr, /compress\.config\.yaml:7:16  stages\.a\.with\.inputs\[0\]  input '\.\.\/secret\.txt' climbs out of the recipe's directory with '\.\.'/);
  assert.match(v.stderr, /compress\.config\.yaml:7:31  stages\.a\.with\.inputs\[1\]  input '\/etc\/passwd' is absolute/);
  assert.match(v.stderr, /compress\.config\.yaml:8:17  stages\.a\.with\.outputs\[0\]  output '\.\.\/up\.bin' climbs out of the stage's output directory/);
  assert.match(v.stderr, /compress\.config\.yaml:8:28  stages\.a\.with\.outputs\[1\]  output '\/tmp\/abs\.bin' is absolute/);
  assert.match(v.stderr, /compress\.config\.yaml:9:16  stages\.a\.with\.metrics  metrics file '\.\.\/m\.json' climbs out/);

  const inputs = workspace(`version: 1
stages:
  in-file:
    uses: exec
    with: { command: [node, -e, "0"], inputs: [secret-link.txt] }
  in-dir:
    uses: exec
    with: { command: [node, -e, "0"], inputs: [tools] }
`);
  symlinkSync(join(out.dir, 'secret.txt'), join(inputs.dir, 'secret-link.txt'));
  mkdirSync(join(inputs.dir, 'tools'));
  writeFileSync(join(inputs.dir, 'tools', 'ok.py'), 'print(1)\n');
  symlinkSync(out.dir, join(inputs.dir, 'tools', 'more'));
  const refused = await runJson(inputs.dir);
  assert.equal(refused.r.exitCode, 2, refused.r.stderr);
  assert.deepEqual(refused.stages, {}, 'no stage ran');
  assert.match(refused.r.stderr, /compress\.config\.yaml:5:\d+  stages\.in-file\.with  input 'secret-link\.txt' goes through a symbolic link to '.*secret\.txt', outside the recipe's directory/);
  assert.match(refused.r.stderr, /compress\.config\.yaml:8:\d+  stages\.in-dir\.with  input 'tools\/more' goes through a symbolic link to '.*compress-outside-.*', outside/);

  const ws = workspace(`version: 1
stages:
  out-link:
    uses: exec
    with:
      command: [node, -e, "require('fs').symlinkSync(process.argv[1], process.argv[2] + '/model.bin')", ${JSON.stringify(join(out.dir, 'secret.txt'))}, "\${outputs}"]
      outputs: [model.bin]
  out-link-undeclared:
    uses: exec
    with:
      command: [node, -e, "require('fs').mkdirSync(process.argv[2] + '/d'); require('fs').symlinkSync(process.argv[1], process.argv[2] + '/d/x')", ${JSON.stringify(out.dir)}, "\${outputs}"]
  in-link:
    uses: exec
    with:
      command: [node, -e, "const fs = require('fs'); fs.writeFileSync(process.argv[1] + '/real.bin', 'ok'); fs.symlinkSync('real.bin', process.argv[1] + '/model.bin')", "\${outputs}"]
      outputs: [model.bin]
`);
  const { r, stages } = await runJson(ws.dir);
  assert.equal(r.exitCode, 1);
  assert.match(stages['out-link'].reason, /output 'model\.bin' is a symbolic link to '.*secret\.txt', outside the stage's output directory: refused/);
  assert.match(stages['out-link-undeclared'].reason, /output 'd\/x' is a symbolic link to '.*compress-outside-.*', outside the stage's output directory: refused/);
  // A link inside the out dir is kept, as a copy (the cache stores plain files).
  assert.equal(stages['in-link'].status, 'ran');
  const kept = join(ws.dir, '.compress', 'out', 'in-link', 'model.bin');
  assert.equal(readFileSync(kept, 'utf8'), 'ok');
  assert.ok(statSync(kept).isFile());
  for (const f of [...allFiles(join(ws.dir, '.compress')), join(ws.dir, 'compress.lock')]) {
    assert.ok(!readFileSync(f, 'utf8').includes(out.secret), `${f} holds the outside secret`);
  }
});

test('outDir and cache.dir named by the recipe stay inside it; --cache-dir may point anywhere', async () => {
  const out = outside();
  const stages = `stages:
  a:
    uses: exec
    with: { command: [node, -e, "require('fs').writeFileSync(process.argv[1] + '/o.txt', 'o')", "\${outputs}"], outputs: [o.txt] }
`;
  const cases: Array<[string, RegExp]> = [
    ['outDir: ../elsewhere', /compress\.config\.yaml:2:9  outDir  outDir '\.\.\/elsewhere' climbs out of the recipe's directory/],
    [`outDir: ${out.dir}`, /outDir '.*' is absolute/],
    ['outDir: linked/out', /outDir 'linked\/out' goes through a symbolic link to '.*compress-outside-.*', outside the recipe's directory/],
    [`cache: { dir: ${out.dir} }`, /cache\.dir '.*' is absolute.*--cache-dir or COMPRESS_CACHE_DIR/],
    ['cache: { dir: linked }', /cache\.dir 'linked' goes through a symbolic link/],
    ['cache: { dir: "." }', /cache\.dir '\.' is the recipe's directory itself/],
  ];
  for (const [line, re] of cases) {
    const { dir } = workspace(`version: 1\n${line}\n${stages}`);
    symlinkSync(out.dir, join(dir, 'linked'));
    const r = await cli(['run'], dir);
    assert.equal(r.exitCode, 2, `${line}: ${r.stderr}`);
    assert.match(r.stderr, re);
    if (line.startsWith('cache')) {
      // `cache clean` deletes the cache dir: it must refuse the same way, leaving everything in place.
      const c = await cli(['cache', 'clean'], dir);
      assert.equal(c.exitCode, 2, `${line}: ${c.stderr}`);
      assert.match(c.stderr, re);
      assert.ok(existsSync(join(dir, 'compress.config.yaml')));
    }
  }
  assert.deepEqual(readdirSync(out.dir).sort(), ['data.csv', 'secret.txt'], 'nothing was written outside');

  // The user's explicit choice on the command line is not a recipe string: allowed.
  const { dir } = workspace(`version: 1\noutDir: build/out\n${stages}`);
  const cacheDir = join(out.dir, 'my-cache');
  const r = await cli(['run', '--cache-dir', cacheDir], dir);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(allFiles(join(cacheDir, 'runs')).length, 1, 'the run record went to --cache-dir');
  assert.equal(existsSync(join(dir, '.compress', 'cache')), false);
  assert.equal(readFileSync(join(dir, 'build', 'out', 'a', 'o.txt'), 'utf8'), 'o');
});

test('recipe strings are never evaluated as code', async () => {
  const { dir } = workspace(`version: 1
stages:
  a:
    uses: exec
    with:
      command: [node, -e, "0", "\${constructor.constructor('require(\\"fs\\").writeFileSync(\\"pwned\\", \\"\\")')()}"]
      metrics: m.json
      gates: ["x >= process.exit(1)"]
`);
  const r = await cli(['validate'], dir);
  assert.equal(r.exitCode, 2);
  assert.match(r.stderr, /compress\.config\.yaml:6:32  stages\.a\.with\.command\[3\]  unknown reference '\$\{constructor\.constructor\(/);
  assert.match(r.stderr, /compress\.config\.yaml:8:15  stages\.a\.with\.gates\[0\]  gate 'x >= process\.exit\(1\)': unexpected '\(' after the comparison at column 18/);
  assert.equal(existsSync(join(dir, 'pwned')), false);

  // Parameters are the recipe's own keys, not the properties every JS object inherits.
  const { dir: d1 } = workspace(`version: 1
params:
  p: 1
stages:
  a:
    uses: exec
    with: { command: [node, -e, "0", "\${params.constructor}", "\${params.__proto__}", "\${params.toString}"] }
`);
  const r1 = await cli(['validate'], d1);
  assert.equal(r1.exitCode, 2);
  assert.match(r1.stderr, /compress\.config\.yaml:7:38  stages\.a\.with\.command\[3\]  unknown parameter 'constructor'/);
  assert.match(r1.stderr, /compress\.config\.yaml:7:63  stages\.a\.with\.command\[4\]  unknown parameter '__proto__'/);
  assert.match(r1.stderr, /unknown parameter 'toString'/);

  // YAML's JS-specific tags are not executed either: an unknown tag is a plain string at most.
  const { dir: d2 } = workspace(`version: 1
name: !!js/function 'function () { require("fs").writeFileSync("pwned", "") }'
stages:
  a:
    uses: exec
    with: { command: [node, -e, "0"] }
`);
  await cli(['validate'], d2);
  assert.equal(existsSync(join(d2, 'pwned')), false);
});

test('report.html escapes recipe strings and command output', async () => {
  const { dir } = workspace(`version: 1
name: "<script>document.title='xss'</script>"
stages:
  a:
    uses: exec
    with: { command: [node, -e, "console.error('<img src=x onerror=alert(1)>'); process.exit(2)"] }
`);
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 1);
  const reports = join(dir, '.compress', 'reports');
  const html = readFileSync(join(reports, readdirSync(reports)[0], 'report.html'), 'utf8');
  assert.ok(!html.includes("<script>document.title='xss'"), 'recipe name is escaped');
  assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;'), 'command output is escaped');
  assert.ok(!html.includes('<img src=x'));
});

test('data roots: an absolute root must be inside a system dataset directory, and neither the root nor its files may link out', () => {
  const system = mkdtempSync(join(tmpdir(), 'compress-sysdata-'));
  const elsewhere = mkdtempSync(join(tmpdir(), 'compress-elsewhere-'));
  const ws = mkdtempSync(join(tmpdir(), 'compress-ws-'));
  mkdirSync(join(system, 'set'));
  writeFileSync(join(system, 'set', 'a.idx'), 'x');
  writeFileSync(join(elsewhere, 'secret'), 'x');
  symlinkSync(elsewhere, join(system, 'escape'));
  symlinkSync(join(elsewhere, 'secret'), join(system, 'set', 'secret-link'));
  const saved = process.env.COMPRESS_DATA_DIRS;
  process.env.COMPRESS_DATA_DIRS = system;
  try {
    const ref = (root: string, file: string) => ({ root, file, what: 'data images path' });
    assert.equal(dataPath(ws, ref(join(system, 'set'), 'a.idx')), join(system, 'set', 'a.idx'));
    assert.throws(() => dataPath(ws, ref(elsewhere, 'secret')), /data root '.*' is outside the recipe's directory and not inside a system dataset directory/);
    assert.throws(() => dataPath(ws, ref(join(system, 'escape'), 'secret')), /data root '.*escape' leads to '.*', outside the system dataset directories/);
    assert.throws(() => dataPath(ws, ref(join(system, 'set'), 'secret-link')), /data images path 'secret-link' goes through a symbolic link to '.*secret', outside the data root/);
    assert.throws(() => dataPath(ws, ref(join(system, 'set'), '../set/a.idx')), /climbs out of the data root/);
    assert.throws(() => dataPath(ws, ref(`${system}/set/../../${elsewhere.split('/').pop()}`, 'secret')), /is outside the recipe's directory/, 'a root is judged after normalising its `..`');
    delete process.env.COMPRESS_DATA_DIRS;
    assert.throws(() => dataPath(ws, ref(join(system, 'set'), 'a.idx')), /not inside a system dataset directory \(\/usr\/share\/datasets\)/, 'only the user (environment) adds directories');
  } finally {
    if (saved === undefined) delete process.env.COMPRESS_DATA_DIRS;
    else process.env.COMPRESS_DATA_DIRS = saved;
  }
});
