import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../bin/compress.js', import.meta.url));
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A temp workspace holding `compress.config.yaml` with the given text. */
export function workspace(recipe: string, name = 'compress.config.yaml'): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'compress-test-'));
  const file = join(dir, name);
  writeFileSync(file, recipe);
  return { dir, file };
}

/** Runs the CLI (no shell) in `cwd`; never throws on a non-zero exit. The 15-minute bound only stops a hung run (a busy CI
 * machine made the 3x3 sweep outlast a 5-minute one). */
export async function cli(args: string[], cwd: string, env: Record<string, string> = {}) {
  return execa('node', [CLI, ...args], { cwd, reject: false, env: { CI: 'true', ...env }, timeout: 900_000 });
}

/** A tiny but real pipeline: MLP on 400 seeded MNIST digits, pruned, evaluated. */
export const TINY = `version: 1
name: tiny
seed: 7
params:
  sparsity: 0.6
data:
  digits: { source: mnist, limit: 400 }
stages:
  baseline:
    uses: train
    with: { model: mlp-small, epochs: 1, batchSize: 32 }
  prune:
    uses: prune
    needs: [baseline]
    with: { sparsity: "\${params.sparsity}", train: { epochs: 1, batchSize: 32 } }
  report:
    uses: evaluate
    needs: [prune]
    with: { latencySamples: 0 }
`;
