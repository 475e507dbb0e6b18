/**
 * The recipe fuzzer at scale: `node dist/bench/fuzz.js [count=20000] [seed=random] [--case-timeout-ms=5000] [--show=N]`.
 * Prints counts, findings grouped by signature (with case indices to replay) and exits 1 when any
 * case found a problem. Replay one case: `node dist/bench/fuzz.js --replay <seed>:<index>`.
 */
import { runFuzz } from '../src/fuzz/harness.js';
import { checkCase, generateCase } from '../src/fuzz/recipes.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const positional = args.filter((a) => !a.startsWith('--'));

const replay = args.includes('--replay') ? args[args.indexOf('--replay') + 1] : undefined;
if (replay) {
  const [seed, index] = replay.split(':').map(Number);
  const c = generateCase(seed, index);
  process.stdout.write(`# seed ${seed} case ${index}: ${c.mutations.join(' + ')}\n${c.sets ? `# --set ${c.sets.map((s) => JSON.stringify(s)).join(' --set ')}\n` : ''}${c.text}\n`);
  process.stdout.write(`# => ${JSON.stringify(checkCase(c))}\n`);
  process.exit(0);
}

const count = Number(positional[0] ?? 20000);
const seed = Number(positional[1] ?? Math.floor(Math.random() * 2 ** 31));
if (!Number.isInteger(count) || count < 1 || !Number.isInteger(seed)) {
  process.stderr.write('usage: fuzz [count] [seed] [--case-timeout-ms=N] | --replay seed:index\n');
  process.exit(2);
}
const t0 = Date.now();
let done = 0;
const summary = await runFuzz({
  seed,
  count,
  caseTimeoutMs: Number(flag('case-timeout-ms') ?? 5000),
  onResult: () => {
    if (++done % 1000 === 0 && process.stderr.isTTY) process.stderr.write(`\r${done}/${count}`);
  },
});
const secs = (Date.now() - t0) / 1000;
process.stdout.write(`${count} cases, seed ${seed}, ${secs.toFixed(1)} s (${(count / secs).toFixed(0)}/s), slowest case ${summary.slowestMs.toFixed(0)} ms\n`);
process.stdout.write(`  ${Object.entries(summary.counts).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
for (const [sig, f] of summary.findings) {
  process.stdout.write(`FINDING ${sig}: ${f.count} case(s), e.g. --replay ${f.indices.map((i) => `${seed}:${i}`).join(' ')}\n    ${f.detail ?? ''}\n`);
}
process.exitCode = summary.findings.size ? 1 : 0;
