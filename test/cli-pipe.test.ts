import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, workspace } from './helpers.js';

const GATED = `version: 1
name: pipe
stages:
  measure:
    uses: exec
    with:
      command: [node, -e, "require('fs').writeFileSync(process.argv[1], JSON.stringify({ score: 1 }))", "\${outputs}/m.json"]
      outputs: [m.json]
      metrics: m.json
      gates: ["score >= 2"]
`;

test('a reader that closes the pipe (`compress run | head`) does not end the run: it finishes, writes its lock, and exits with its own code (3: a gate failed)', async () => {
  const { dir } = workspace(GATED);
  const child = execa('node', [CLI, 'run'], { cwd: dir, reject: false, env: { CI: 'true' }, stdout: 'pipe', stderr: 'ignore' });
  child.stdout!.destroy(); // the reader is gone before the run writes its first line: every write gets EPIPE
  const r = await child;
  assert.equal(r.exitCode, 3);
  assert.ok(existsSync(join(dir, 'compress.lock')), 'the run did not finish: no lock');
});
