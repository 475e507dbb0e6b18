import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, cli, workspace } from './helpers.js';

/** A tool the recipes run with `node`: writes what it saw (argv, env, an input) into its out dir. */
const TOOL = `import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
const [mode, out, ...rest] = process.argv.slice(2);
if (mode === 'gen') {
  writeFileSync(out + '/rows.csv', 'a,b\\n1,2\\n');
} else if (mode === 'convert') {
  const [upstream] = rest;
  const extra = readFileSync('data/extra.csv', 'utf8').trim().split('\\n');
  appendFileSync('runs.log', 'convert\\n');
  writeFileSync(out + '/model.bin', readFileSync(upstream + '/rows.csv', 'utf8') + extra.join(';'));
  writeFileSync(out + '/stats.json', JSON.stringify({ score: 0.75, rows: extra.length, label: 'not a number' }));
  console.log('converted', extra.length, 'rows');
} else if (mode === 'args') {
  writeFileSync(out + '/args.json', JSON.stringify(rest));
} else if (mode === 'env') {
  writeFileSync(out + '/env.json', JSON.stringify(process.env));
} else if (mode === 'sleep') {
  writeFileSync('child.pid', String(process.pid));
  console.log('started');
  setInterval(() => undefined, 1000); // runs until it is killed
} else if (mode === 'fail') {
  for (let i = 1; i <= 30; i++) console.error('diagnostic line ' + i);
  console.log('some stdout');
  process.exit(4);
}
`;

function execWorkspace(stages: string, params = ''): string {
  const { dir } = workspace(`version: 1\nname: exec-test\n${params}stages:\n${stages}`);
  mkdirSync(join(dir, 'tools'));
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'tools', 'tool.mjs'), TOOL);
  writeFileSync(join(dir, 'data', 'extra.csv'), 'x\ny\nz\n');
  return dir;
}

/** `compress run --json`: exit code, each stage's outcome and the gate results. */
async function run(dir: string, env: Record<string, string> = {}) {
  const r = await cli(['run', '--json'], dir, env);
  const events = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const stages = Object.fromEntries(events.filter((e) => e.type === 'stage-end').map((e) => [e.outcome.id, e.outcome]));
  const gates = events.filter((e) => e.type === 'gate').map((e) => e.result);
  return { r, stages, gates, events };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const PIPELINE = `  gen:
    uses: exec
    with:
      command: [node, tools/tool.mjs, gen, "\${outputs}"]
      inputs: [tools/tool.mjs]
      outputs: [rows.csv]
  convert:
    uses: exec
    needs: [gen]
    with:
      command: [node, tools/tool.mjs, convert, "\${outputs}", "\${inputs.gen}"]
      inputs: [tools/tool.mjs, data/extra.csv]
      outputs: [model.bin, stats.json]
      metrics: stats.json
      gates: ["score >= 0.5", "rows >= 3"]
`;

test('exec: outputs stored and materialised, cached on rerun, input change re-runs only that stage', async () => {
  const dir = execWorkspace(PIPELINE);
  const a = await run(dir);
  assert.equal(a.r.exitCode, 0, a.r.stderr + a.r.stdout);
  assert.equal(a.stages.gen.status, 'ran');
  assert.equal(a.stages.convert.status, 'ran');
  const out = join(dir, '.compress', 'out', 'convert');
  assert.equal(readFileSync(join(out, 'model.bin'), 'utf8'), 'a,b\n1,2\nx;y;z');
  assert.deepEqual(Object.keys(a.stages.convert.outputs).sort(), ['model.bin', 'stats.json']);
  // Numbers from the metrics file are the stage's metrics; other values are left out.
  assert.deepEqual(a.stages.convert.metrics, { score: 0.75, rows: 3 });
  assert.ok(a.events.some((e) => e.type === 'stage-log' && e.id === 'convert' && /stdout: converted 3 rows/.test(e.message)), 'output is streamed as stage logs');

  const b = await run(dir);
  assert.equal(b.r.exitCode, 0, b.r.stderr);
  assert.equal(b.stages.gen.status, 'cached');
  assert.equal(b.stages.convert.status, 'cached');
  assert.equal(readFileSync(join(dir, 'runs.log'), 'utf8'), 'convert\n', 'the cached rerun did not start the command');

  writeFileSync(join(dir, 'data', 'extra.csv'), 'x\ny\nz\nw\n');
  const c = await run(dir);
  assert.equal(c.r.exitCode, 0, c.r.stderr);
  assert.equal(c.stages.gen.status, 'cached');
  assert.equal(c.stages.convert.status, 'ran');
  assert.match(c.stages.convert.reason, /data\/extra\.csv changed/);
  assert.deepEqual(c.stages.convert.metrics, { score: 0.75, rows: 4 });
  assert.equal(readFileSync(join(out, 'model.bin'), 'utf8'), 'a,b\n1,2\nx;y;z;w');
});

test('exec: metrics from the JSON file are reachable from gates (own and downstream), a failing one exits 3', async () => {
  const dir = execWorkspace(
    PIPELINE.replace('"rows >= 3"', '"rows > 100"') +
      `  after:
    uses: exec
    needs: [convert]
    with:
      command: [node, -e, "0"]
      gates: ["stages.convert.score * 2 == 1.5"]
`,
  );
  const a = await run(dir);
  assert.equal(a.r.exitCode, 3, a.r.stderr);
  const byGate = Object.fromEntries(a.gates.map((g) => [g.gate, g]));
  assert.equal(byGate['score >= 0.5'].passed, true);
  assert.equal(byGate['rows > 100'].passed, false);
  assert.equal(byGate['rows > 100'].left, 3);
  assert.equal(byGate['stages.convert.score * 2 == 1.5'].passed, true);
  assert.match(byGate['rows > 100'].message, /gate 'rows > 100' FAILED: 3 > 100 is false/);
});

test('exec: only allowlisted variables (and PATH) reach the command', async () => {
  const dir = execWorkspace(`  e:
    uses: exec
    with:
      command: [node, tools/tool.mjs, env, "\${outputs}"]
      outputs: [env.json]
      env: [COMPRESS_TEST_ALLOWED, COMPRESS_TEST_UNSET]
`);
  const a = await run(dir, { COMPRESS_TEST_ALLOWED: 'yes', COMPRESS_TEST_SECRET: 'hunter2' });
  assert.equal(a.r.exitCode, 0, a.r.stderr);
  const env = JSON.parse(readFileSync(join(dir, '.compress', 'out', 'e', 'env.json'), 'utf8'));
  assert.equal(env.COMPRESS_TEST_ALLOWED, 'yes');
  assert.equal(env.PATH, process.env.PATH);
  assert.equal(env.COMPRESS_TEST_SECRET, undefined);
  assert.equal(env.CI, undefined, 'set in compress\'s environment, not allowlisted');
  if (process.platform !== 'win32') assert.deepEqual(Object.keys(env).sort(), ['COMPRESS_TEST_ALLOWED', 'PATH']);
  // Values are not part of the key (names are): another value on another machine reuses the cache.
  const b = await run(dir, { COMPRESS_TEST_ALLOWED: 'other', COMPRESS_TEST_SECRET: 'x' });
  assert.equal(b.stages.e.status, 'cached');
});

test('exec: a param full of shell syntax reaches the program as one literal argument', async () => {
  const evil = '; touch pwned #';
  const sub = '$(touch pwned2)';
  const tick = '`touch pwned3` && touch pwned4 | tee pwned5';
  const dir = execWorkspace(
    `  inj:
    uses: exec
    with:
      command: [node, tools/tool.mjs, args, "\${outputs}", "\${params.evil}", "--opt=\${params.sub}", "\${params.tick}", "\${params.ctor}"]
      outputs: [args.json]
`,
    `params:\n  evil: ${JSON.stringify(evil)}\n  sub: ${JSON.stringify(sub)}\n  tick: ${JSON.stringify(tick)}\n  ctor: "constructor.constructor('x')()"\n`,
  );
  const a = await run(dir);
  assert.equal(a.r.exitCode, 0, a.r.stderr);
  const args = JSON.parse(readFileSync(join(dir, '.compress', 'out', 'inj', 'args.json'), 'utf8'));
  assert.deepEqual(args, [evil, `--opt=${sub}`, tick, "constructor.constructor('x')()"]);
  for (const f of ['pwned', 'pwned2', 'pwned3', 'pwned4', 'pwned5']) {
    assert.equal(existsSync(join(dir, f)), false, `${f} was created: the command went through a shell`);
    assert.equal(existsSync(join(dir, 'tools', f)), false);
  }
});

test('exec: timeoutSeconds kills the child and fails the stage with a clear message', async () => {
  const dir = execWorkspace(`  slow:
    uses: exec
    with:
      command: [node, tools/tool.mjs, sleep, "\${outputs}"]
      timeoutSeconds: 1
`);
  // The command never ends by itself: the run returns only because the timeout killed it.
  const a = await run(dir);
  assert.equal(a.r.exitCode, 1);
  assert.equal(a.stages.slow.status, 'failed');
  assert.match(a.stages.slow.reason, /command 'node' timed out after 1 s and was killed/);
  // On a loaded machine the command may be killed before it wrote its pid; if it did, it is gone.
  if (existsSync(join(dir, 'child.pid'))) assert.equal(alive(Number(readFileSync(join(dir, 'child.pid'), 'utf8'))), false, 'the child process is gone');
});

test('exec: Ctrl-C (SIGINT) kills the running command', async () => {
  const dir = execWorkspace(`  slow:
    uses: exec
    with:
      command: [node, tools/tool.mjs, sleep, "\${outputs}"]
`);
  const child = execa('node', [CLI, 'run', '--json'], { cwd: dir, reject: false, env: { CI: 'true' } });
  let sent = false;
  child.stdout!.on('data', (d: Buffer) => {
    if (!sent && /stdout: started/.test(d.toString())) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  const r = await child;
  assert.ok(sent, r.stderr);
  assert.equal(r.exitCode, 130, r.stderr);
  const pid = Number(readFileSync(join(dir, 'child.pid'), 'utf8'));
  // The run sent it SIGTERM as it stopped; wait for it to exit (bounded only to fail rather than hang).
  const bound = Date.now() + 120_000;
  while (alive(pid) && Date.now() < bound) await new Promise((res) => setTimeout(res, 50));
  assert.equal(alive(pid), false, 'the command was killed with the run');
});

test('exec: a non-zero exit fails the stage and shows the tail of stderr', async () => {
  const dir = execWorkspace(`  bad:
    uses: exec
    with:
      command: [node, tools/tool.mjs, fail, "\${outputs}"]
`);
  const a = await run(dir);
  assert.equal(a.r.exitCode, 1);
  const reason: string = a.stages.bad.reason;
  assert.match(reason, /command 'node' exited with code 4; last output:/);
  assert.match(reason, /diagnostic line 30$/);
  assert.match(reason, /diagnostic line 11\n/);
  assert.doesNotMatch(reason, /diagnostic line 10\n/, 'only the tail');
  assert.doesNotMatch(reason, /some stdout/, 'stderr is the tail shown when there is one');
  const plain = await cli(['run'], dir);
  assert.match(plain.stderr, /error: stage 'bad' failed: command 'node' exited with code 4; last output:\n(.*\n)*diagnostic line 30/);
});

test('exec: a declared output the command did not write, and a program not on PATH, are clear errors', async () => {
  const dir = execWorkspace(`  lazy:
    uses: exec
    with:
      command: [node, -e, "0"]
      outputs: [model.bin]
  missing:
    uses: exec
    with:
      command: [compress-no-such-program]
`);
  const a = await run(dir);
  assert.equal(a.r.exitCode, 1);
  assert.match(a.stages.lazy.reason, /declared output 'model\.bin' was not written by the command/);
  assert.match(a.stages.missing.reason, /command 'compress-no-such-program' not found .*without a shell/);
});

test('exec: a string command and unknown ${...} references are positioned recipe errors', async () => {
  const dir = execWorkspace(`  a:
    uses: exec
    with:
      command: "node tools/tool.mjs"
  b:
    uses: exec
    with:
      command: [node, "\${HOME}/x", "\${inputs.nope}"]
`);
  const r = await cli(['validate'], dir);
  assert.equal(r.exitCode, 2);
  assert.match(r.stderr, /compress\.config\.yaml:7:16  stages\.a\.with\.command  must be array, got string/);
  const dir2 = execWorkspace(`  b:
    uses: exec
    with:
      command: [node, "\${HOME}/x", "\${inputs.nope}"]
`);
  const r2 = await cli(['validate'], dir2);
  assert.equal(r2.exitCode, 2);
  assert.match(r2.stderr, /compress\.config\.yaml:7:23  stages\.b\.with\.command\[1\]  unknown reference '\$\{HOME\}'.*environment variables are not expanded/);
  assert.match(r2.stderr, /compress\.config\.yaml:7:36  stages\.b\.with\.command\[2\]  '\$\{inputs\.nope\}': 'nope' is not in needs/);
});
