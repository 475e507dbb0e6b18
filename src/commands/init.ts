import { existsSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../recipe/errors.js';

/** What `init` learned about a given model: whether MNIST digits fit it, and its class count. */
export interface ModelFit {
  mnist: boolean;
  numClasses?: number;
  inputShape?: number[];
  /** For an ONNX image model: its input as PyTorch sees it, [C, H, W] (its data is channels-first). */
  nchw?: number[];
}

/** For an image input ([H, W, C], 1 or 3 channels): the image-folder dataset that fits it, as a comment. */
function imagesHint(input: number[] | undefined): string {
  if (input?.length !== 3) return '';
  const [h, w, c] = input;
  if (c !== 1 && c !== 3) return '';
  return `\n# Or a folder of images, one subfolder per class (train/<class>/*.png, test/<class>/*.jpg):\n#   mine: { source: images, root: data/images, train: train, test: test, size: [${h}, ${w}], color: ${c === 1 ? 'grayscale' : 'rgb'} }`;
}

/** A starter recipe: for a model file when given one, else the built-in MNIST pipeline. */
export function starterRecipe(modelPath?: string, schemaPath = './schemas/recipe.schema.json', fit: ModelFit = { mnist: true }): string {
  const data = fit.mnist
    ? `data:\n  digits: { source: mnist, split: { train: 0.8, validation: 0.1, test: 0.1 } }\n`
    : fit.nchw
      ? `# Your model's input is [C, H, W] = ${JSON.stringify(fit.nchw)}, not a 28x28 digit: point this at your data\n# (the .npy features [N, C, H, W] your PyTorch code uses + integer labels [N]).${imagesHint(fit.inputShape)}\ndata:\n  mine: { source: files, features: data/features.npy, labels: data/labels.npy, layout: nchw, numClasses: ${fit.numClasses ?? 10}, split: { train: 0.8, validation: 0.1, test: 0.1 } }\n`
      : `# Your model's input is ${JSON.stringify(fit.inputShape ?? [])}, not a 28x28 digit: point this at your data\n# (.npy features [N, ...inputShape] + integer labels [N], or CSV with a label column).${imagesHint(fit.inputShape)}\ndata:\n  mine: { source: files, features: data/features.npy, labels: data/labels.npy, numClasses: ${fit.numClasses ?? 10}, split: { train: 0.8, validation: 0.1, test: 0.1 } }\n`;
  const head = `# yaml-language-server: $schema=${schemaPath}\nversion: 1\nname: ${modelPath ? 'compress-my-model' : 'mnist-mlp'}\nseed: 42\nparams:\n  sparsity: 0.8\n${data}stages:\n`;
  const first = modelPath
    ? `  model:\n    uses: load\n    with: { path: ${JSON.stringify(modelPath)} }\n  baseline:\n    uses: evaluate\n    needs: [model]\n`
    : `  model:\n    uses: train\n    with: { model: lenet-300-100, epochs: 3, optimizer: { name: adam, learningRate: 0.001 } }\n  baseline:\n    uses: evaluate\n    needs: [model]\n`;
  return (
    head +
    first +
    (fit.mnist
      ? `  prune:\n    uses: prune\n    needs: [model]\n    with:\n      method: magnitude\n      schedule: { kind: polynomial-decay, initialSparsity: 0, finalSparsity: "\${params.sparsity}", beginStep: 0, endStep: 200, frequency: 50 }\n      train: { epochs: 2 }\n`
      : // Data of unknown size: a gradual schedule's steps may not fit its training (then the stage fails), so one shot + fine-tuning.
        `  prune:\n    uses: prune\n    needs: [model]\n    with:\n      method: magnitude\n      # one shot to the target, then 2 epochs of fine-tuning with the pruned weights held at zero (fits any data size);\n      # gradual: schedule: { kind: polynomial-decay, initialSparsity: 0, finalSparsity: "\${params.sparsity}", beginStep: 0, endStep: <your training's steps>, frequency: 50 }\n      sparsity: "\${params.sparsity}"\n      train: { epochs: 2 }\n`) +
    `  report:\n    uses: evaluate\n    needs: [prune, baseline]\n    with:\n      gates:\n        - accuracy >= stages.baseline.accuracy - 0.02\n` +
    `  cloud:\n    uses: export\n    needs: [prune]\n    with: { target: tfjs, precision: float32 }\n`
  );
}

/** The recipe schema shipped with this package, relative to the recipe (works in this repo and under node_modules). */
function schemaPathFor(recipeFile: string): string {
  const schema = fileURLToPath(new URL('../../../schemas/recipe.schema.json', import.meta.url));
  const rel = relative(dirname(resolve(recipeFile)), schema).split('\\').join('/');
  return rel.startsWith('.') ? rel : `./${rel}`;
}

/** Reads the model's input and output shapes to decide whether the MNIST digits fit it. */
async function fitOf(modelPath: string): Promise<ModelFit> {
  const { initEngine } = await import('../engine/backend.js');
  const { loadModelFrom, detectModelFormat } = await import('../model/load/index.js');
  const { tf } = await initEngine('auto');
  const onnx = (await detectModelFormat(modelPath)) === 'onnx';
  // An ONNX model takes channels-first images unless it transposes a channels-last input itself.
  const imported = onnx ? await (await import('../model/load/onnx.js')).importOnnx(tf, modelPath) : undefined;
  const model = imported ? imported.model : await loadModelFrom(tf, modelPath);
  const input = (model.inputs[0].shape ?? []).slice(1).map((d) => d ?? 0);
  const out = model.outputs[0].shape ?? [];
  model.dispose();
  if (out.length > 2) {
    throw new UsageError(
      `the model's output ${JSON.stringify(out.slice(1))} is not a vector of class scores (a per-pixel or sequence output); compress's stages ` +
        `(evaluate, prune, quantize, export checks) score class labels, so init writes recipes for classifiers only`,
    );
  }
  const numClasses = out[out.length - 1] ?? undefined;
  const size = input.reduce((a, b) => a * b, 1);
  const nchw = imported?.info.inputLayout === 'nchw' && input.length === 3 ? [input[2], input[0], input[1]] : undefined;
  return { mnist: size === 784 && numClasses === 10, numClasses: numClasses ?? undefined, inputShape: input, ...(nchw ? { nchw } : {}) };
}

export async function initCommand(modelPath: string | undefined, flags: { output?: string; force?: boolean }): Promise<number> {
  const out = flags.output ?? 'compress.config.yaml';
  if (existsSync(out) && !flags.force) throw new UsageError(`${out} already exists; pass --force to overwrite or --output to write elsewhere`);
  if (modelPath && !existsSync(modelPath)) throw new UsageError(`model '${modelPath}' not found`);
  const rel = modelPath ? relative(dirname(resolve(out)), resolve(modelPath)).split('\\').join('/') : undefined;
  const fit = modelPath ? await fitOf(modelPath) : { mnist: true };
  writeFileSync(out, starterRecipe(rel, schemaPathFor(out), fit));
  process.stdout.write(`wrote ${out}; run it with: npx compress run${out === 'compress.config.yaml' ? '' : ` ${out}`}\n`);
  if (!fit.mnist) process.stdout.write(`next: put your data where ${out}'s data: points (data/features.npy + data/labels.npy, samples of the model's input ${fit.nchw ? `[C, H, W] = ${JSON.stringify(fit.nchw)}, layout: nchw` : JSON.stringify(fit.inputShape)}) or point it at yours (.npy or CSV files, or an image folder: an example is commented there)\n`);
  return 0;
}
