/**
 * `npm run bench:startup`: wall time of the commands a user waits on most, through node and through npx:
 * `--help`, `validate` and a fully cached run of the default recipe (compress.config.yaml, run once
 * first when it is not cached yet). Goals: --help < 0.3 s, validate < 0.5 s, cached run < 1 s.
 *
 *   node dist/bench/startup.js [--runs 7] [--recipe compress.config.yaml]
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = resolve(ROOT, 'bin/compress.js');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const runs = Number(arg('--runs', '7'));
const recipe = arg('--recipe', 'compress.config.yaml');
const env = { ...process.env, CI: 'true' };

/** Seconds one command took, from spawn to exit; throws when it fails. */
function timed(cmd: string, args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd: ROOT, env, encoding: 'utf8' });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return s;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const cases: Array<{ name: string; goal: number; args: string[] }> = [
  { name: '--help', goal: 0.3, args: ['--help'] },
  { name: `validate ${recipe}`, goal: 0.5, args: ['validate', recipe] },
  { name: `run ${recipe} (cached)`, goal: 1, args: ['run', recipe, '--quiet'] },
];

process.stderr.write(`making sure ${recipe} is cached (the first run computes it)...\n`);
timed('node', [BIN, 'run', recipe, '--quiet']);

const rows: string[] = ['| command | via | median s | min s | goal s | runs |', '|---|---|---:|---:|---:|---:|'];
for (const c of cases) {
  for (const [via, cmd, args] of [
    ['node', 'node', [BIN, ...c.args]],
    ['npx', 'npx', ['--no-install', 'compress', ...c.args]],
  ] as const) {
    timed(cmd, [...args]); // warm the file cache
    const t = Array.from({ length: runs }, () => timed(cmd, [...args]));
    rows.push(`| ${c.name} | ${via} | ${median(t).toFixed(3)} | ${Math.min(...t).toFixed(3)} | ${c.goal} | ${runs} |`);
  }
}
console.log(rows.join('\n'));
