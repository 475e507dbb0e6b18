import { existsSync, writeFileSync } from 'node:fs';
import { relative, resolve, dirname } from 'node:path';
import { UsageError } from '../recipe/errors.js';

/** A starter recipe: for a model file when given one, else the built-in MNIST pipeline. */
export function starterRecipe(modelPath?: string, schemaPath = './schemas/recipe.schema.json'): string {
  const head = `# yaml-language-server: $schema=${schemaPath}\nversion: 1\nname: ${modelPath ? 'compress-my-model' : 'mnist-mlp'}\nseed: 42\nparams:\n  sparsity: 0.8\ndata:\n  digits: { source: mnist, split: { train: 0.8, validation: 0.1, test: 0.1 } }\nstages:\n`;
  const first = modelPath
    ? `  model:\n    uses: load\n    with: { path: ${JSON.stringify(modelPath)} }\n  baseline:\n    uses: evaluate\n    needs: [model]\n`
    : `  model:\n    uses: train\n    with: { model: lenet-300-100, epochs: 3, optimizer: { name: adam, learningRate: 0.001 } }\n  baseline:\n    uses: evaluate\n    needs: [model]\n`;
  return (
    head +
    first +
    `  prune:\n    uses: prune\n    needs: [model]\n    with:\n      method: magnitude\n      schedule: { kind: polynomial-decay, initialSparsity: 0, finalSparsity: "\${params.sparsity}", beginStep: 0, endStep: 300, frequency: 50 }\n      train: { epochs: 2 }\n` +
    `  report:\n    uses: evaluate\n    needs: [prune, baseline]\n    with:\n      gates:\n        - accuracy >= stages.baseline.accuracy - 0.02\n` +
    `  cloud:\n    uses: export\n    needs: [prune]\n    with: { target: tfjs, precision: float32 }\n`
  );
}

export function initCommand(modelPath: string | undefined, flags: { output?: string; force?: boolean }): number {
  const out = flags.output ?? 'compress.config.yaml';
  if (existsSync(out) && !flags.force) throw new UsageError(`${out} already exists; pass --force to overwrite or --output to write elsewhere`);
  if (modelPath && !existsSync(modelPath)) throw new UsageError(`model '${modelPath}' not found`);
  const rel = modelPath ? relative(dirname(resolve(out)), resolve(modelPath)) : undefined;
  writeFileSync(out, starterRecipe(rel));
  process.stdout.write(`wrote ${out}; run it with: npx compress run ${out === 'compress.config.yaml' ? '' : out}\n`);
  return 0;
}
