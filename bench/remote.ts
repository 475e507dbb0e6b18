/**
 * Remote-cache benchmark (`npm run bench -- remote`): the default recipe is run once in a workspace that
 * pushes to an S3-compatible server (s3rver on loopback, started here); then fresh workspaces (new CI
 * runners: empty local caches), without and then with the committed lock (whose keys the run
 * prefetches), run it again and take every stage from the remote. Prints the wall time
 * of each such `compress run` as a user sees it (process start to exit, downloads and materialisation
 * included), its CPU time, the bytes it fetched, the load average, and where the time went: the
 * process's phase marks and spans (COMPRESS_TIMINGS, src/util/timings.ts). On a shared machine the wall
 * time is mostly waiting for a core; the CPU time is what the run itself costs.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, ROOT } from '../test/helpers.js';
import { startS3 } from '../test/servers.js';
import type { Timings } from '../src/util/timings.js';

function bytesUnder(dir: string): number {
  let n = 0;
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    n += ent.isDirectory() ? bytesUnder(p) : statSync(p).size;
  }
  return n;
}

/** A new runner's checkout: the recipe, and the lock `from` committed (a fresh clone), if given. */
function freshWorkspace(lockFrom?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'compress-bench-remote-'));
  writeFileSync(join(dir, 'compress.config.yaml'), readFileSync(join(ROOT, 'compress.config.yaml')));
  if (lockFrom) writeFileSync(join(dir, 'compress.lock'), readFileSync(join(lockFrom, 'compress.lock')));
  return dir;
}

const ms = (x: number) => `${Math.round(x)} ms`.padStart(8);

/**
 * The phases between marks (each from the previous one): wall and CPU time (on a busy machine the CPU
 * column is what a phase costs, the wall column how long it waited too), then the spans summed over stages.
 */
export function formatTimings(t: Timings): string[] {
  const lines = [`    ${'wall'.padStart(8)}  ${'CPU'.padStart(8)}  phase (ending at)`];
  let prev = 0;
  let prevCpu = 0;
  for (const [name, at] of Object.entries(t.marks).sort((a, b) => a[1] - b[1])) {
    lines.push(`    ${ms(at - prev)}  ${ms(t.cpuAt[name] - prevCpu)}  ${name}`);
    prev = at;
    prevCpu = t.cpuAt[name];
  }
  lines.push(`    ${ms(t.exitMs - prev)}  ${ms((t.cpu.user + t.cpu.system) / 1000 - prevCpu)}  exit`);
  for (const [name, s] of Object.entries(t.spans)) lines.push(`    ${ms(s.ms)}  ${ms(s.cpuMs)}  (${name}: summed over ${s.calls} call${s.calls === 1 ? '' : 's'}; stages overlap, CPU includes work alongside)`);
  return lines;
}

export async function benchRemote(runs = 2): Promise<string> {
  const s3 = await startS3();
  try {
    const env = { ...s3.env('bench'), CI: 'true', GITHUB_REF: 'refs/heads/main' };
    const first = freshWorkspace();
    let t = performance.now();
    const r1 = await execa('node', [CLI, 'run'], { cwd: first, env, reject: false });
    if (r1.exitCode !== 0) throw new Error(`first run failed: ${r1.stderr}`);
    const coldSeconds = (performance.now() - t) / 1000;
    const lines = [`default recipe, first run (computes, pushes): ${coldSeconds.toFixed(1)} s (${availableParallelism()} CPUs, load average ${loadavg()[0].toFixed(1)})`];
    // Without a lock, lookups follow the chain of stages; with the committed lock, its keys are prefetched.
    for (let i = 0; i < 2 * runs; i++) {
      const withLock = i >= runs;
      const ws = freshWorkspace(withLock ? first : undefined);
      const timings = join(ws, 'timings.json');
      const load = loadavg()[0];
      t = performance.now();
      const r = await execa('node', [CLI, 'run'], { cwd: ws, env: { ...env, COMPRESS_TIMINGS: timings }, reject: false });
      const wall = (performance.now() - t) / 1000;
      if (r.exitCode !== 0 || !/7 stages: 0 ran, 7 cached/.test(r.stdout)) throw new Error(`warm run was not all hits: ${r.stdout}\n${r.stderr}`);
      const fetched = bytesUnder(join(ws, '.compress', 'cache', 'objects'));
      const tm = JSON.parse(readFileSync(timings, 'utf8')) as Timings;
      const cpu = (tm.cpu.user + tm.cpu.system) / 1e6;
      lines.push(
        `fresh workspace${withLock ? ' with the committed lock' : ', no lock'}, warm remote, run ${(i % runs) + 1}: ${wall.toFixed(2)} s wall, ${cpu.toFixed(2)} s CPU (user+sys) for \`compress run\` ` +
          `(7 of 7 stages remote hits, ${(fetched / 1024).toFixed(0)} KiB of objects downloaded and verified; load average ${load.toFixed(1)})`,
      );
      lines.push(...formatTimings(tm));
    }
    return lines.join('\n');
  } finally {
    await s3.stop();
  }
}
