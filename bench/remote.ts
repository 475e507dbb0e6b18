/**
 * Remote-cache benchmark (`npm run bench -- remote`): the default recipe is run once in a workspace that
 * pushes to an S3-compatible server (s3rver on loopback, started here); then a fresh workspace (a new CI
 * runner: empty local cache) runs it again and takes every stage from the remote. Prints the wall time of
 * that second `compress run` as a user sees it (process start to exit, downloads and materialisation
 * included), and how many bytes it fetched.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, ROOT } from '../test/helpers.js';
import { startS3 } from '../test/servers.js';

function bytesUnder(dir: string): number {
  let n = 0;
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    n += ent.isDirectory() ? bytesUnder(p) : statSync(p).size;
  }
  return n;
}

function freshWorkspace(): string {
  const dir = mkdtempSync(join(tmpdir(), 'compress-bench-remote-'));
  writeFileSync(join(dir, 'compress.config.yaml'), readFileSync(join(ROOT, 'compress.config.yaml')));
  return dir;
}

export async function benchRemote(runs = 3): Promise<string> {
  const s3 = await startS3();
  try {
    const env = { ...s3.env('bench'), CI: 'true', GITHUB_REF: 'refs/heads/main' };
    const first = freshWorkspace();
    let t = Date.now();
    const r1 = await execa('node', [CLI, 'run'], { cwd: first, env, reject: false });
    if (r1.exitCode !== 0) throw new Error(`first run failed: ${r1.stderr}`);
    const coldSeconds = (Date.now() - t) / 1000;
    const lines = [`default recipe, first run (computes, pushes): ${coldSeconds.toFixed(1)} s`];
    for (let i = 0; i < runs; i++) {
      const ws = freshWorkspace();
      t = Date.now();
      const r = await execa('node', [CLI, 'run'], { cwd: ws, env, reject: false });
      const wall = (Date.now() - t) / 1000;
      if (r.exitCode !== 0 || !/7 stages: 0 ran, 7 cached/.test(r.stdout)) throw new Error(`warm run was not all hits: ${r.stdout}\n${r.stderr}`);
      const fetched = bytesUnder(join(ws, '.compress', 'cache', 'objects'));
      lines.push(`fresh workspace, warm remote, run ${i + 1}: ${wall.toFixed(2)} s wall for \`compress run\` (7 of 7 stages remote hits, ${(fetched / 1024).toFixed(0)} KiB of objects downloaded)`);
    }
    return lines.join('\n');
  } finally {
    await s3.stop();
  }
}
