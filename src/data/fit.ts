import { InputError } from '../errors/input-error.js';
import { reshapeSamples, sampleSize, type Dataset } from './dataset.js';
import { resizeBilinear } from './resize.js';

/**
 * Makes a dataset's samples fit a model input: equal shapes pass, equal sizes are re-viewed
 * (e.g. [784] vs [28,28,1]), images ([h, w, c] from an image source) are resized bilinearly to the
 * input's height and width when the channels agree; anything else is an error naming both shapes.
 * With `outputClasses` (the units of a classifier's output) the labels must fit it too (`fitClasses`).
 */
export function fitDataToModel(d: Dataset, inputShape: number[], where: string, outputClasses?: number): Dataset {
  return fitSamples(outputClasses === undefined ? d : fitClasses(d, outputClasses), inputShape, where);
}

/**
 * A dataset whose classes are the model's output units. Labels that index fewer classes than the model
 * has (a files dataset whose largest label is below them) are taken as those of the model's classes;
 * more classes than outputs, or named classes (image folders, `classes:`) that are not one per output
 * unit, are an error: training and evaluation would compare a [n, classes] one-hot with [n, units].
 */
export function fitClasses(d: Dataset, outputClasses: number): Dataset {
  if (d.numClasses === outputClasses) return d;
  if (d.numClasses < outputClasses && !d.classNames) return { ...d, numClasses: outputClasses };
  const names = d.classNames ? ` (${listNames(d.classNames)})` : '';
  throw new InputError(`the data has ${d.numClasses} classes${names} but the model's output has ${outputClasses} units, one per class`, {
    ...(d.source ? { file: d.source } : {}),
    hint:
      d.numClasses > outputClasses
        ? `use a model with ${d.numClasses} outputs (replace its last layer before exporting it, e.g. PyTorch's model.fc = nn.Linear(in_features, ${d.numClasses})) or data with at most ${outputClasses} classes`
        : `give the model one output per class folder (replace its last layer before exporting it, e.g. PyTorch's model.fc = nn.Linear(in_features, ${d.numClasses})), or list the model's ${outputClasses} class names in its output order as the dataset's classes: (image folders may be fewer)`,
  });
}

function listNames(names: string[]): string {
  return names.length <= 5 ? names.join(', ') : `${names.slice(0, 5).join(', ')}, ...`;
}

function fitSamples(d: Dataset, inputShape: number[], where: string): Dataset {
  if (sameShape(d.sampleShape, inputShape)) return d;
  if (d.storedShape && sameShape(d.storedShape, inputShape)) {
    // [N, 28, 28, 1] with `layout: nchw` is read as 28 channels of 28x1: a re-view would scramble every image.
    throw new InputError(
      `${where}: data samples are stored as [${d.storedShape.join(', ')}], the model's input shape, but \`layout: nchw\` reads them as [C, H, W] and transposes them to [${d.sampleShape.join(', ')}]`,
      { file: d.source, hint: 'the data is channels-last already: remove `layout: nchw` from the dataset' },
    );
  }
  const want = inputShape.reduce((a, b) => a * b, 1);
  if (isAxisPermutation(d.sampleShape, inputShape)) {
    // [3, 96, 96] into [96, 96, 3] has the right size, but a re-view would scramble every image.
    throw new InputError(
      `${where}: data samples have shape [${d.sampleShape.join(', ')}] but the model's input expects [${inputShape.join(', ')}]: the same axes in another order`,
      {
        file: d.source,
        hint: "channels-first arrays ([N, C, H, W], PyTorch's layout) need `layout: nchw` on the dataset; channels-last ones ([N, H, W, C]) must not have it",
      },
    );
  }
  if (inputShape.every((v) => v > 0) && want === sampleSize(d)) return reshapeSamples(d, inputShape);
  const resized = resizeToInput(d, inputShape);
  if (resized) return resized;
  throw new InputError(
    `${where}: data samples have shape [${d.sampleShape.join(', ')}] but the model's input expects [${inputShape.map((v) => (v < 0 ? '?' : v)).join(', ')}]`,
    { file: d.source, hint: shapeHint(d, inputShape) },
  );
}

/** What to do about samples that do not fit: the channels (where the source converts them, or how to), else the model or sampleShape. */
function shapeHint(d: Dataset, inputShape: number[]): string {
  const want = inputShape.length === 3 && inputShape[2] > 0 ? inputShape[2] : undefined;
  const s = d.sampleShape;
  // [H, W] or [H, W, C] images whose channels are not the model's (the height and width fit, or are resized).
  const has = s.length === 2 ? 1 : s.length === 3 ? s[2] : undefined;
  const sameSize = s[0] === inputShape[0] && s[1] === inputShape[1];
  if (want === undefined || has === undefined || has === want || !(d.image || sameSize)) return "choose a model whose input matches the data, or set the dataset's sampleShape";
  if (d.colorOption) return `the model takes ${want} channel(s): set the dataset's color: ${want === 1 ? 'grayscale' : 'rgb'}`;
  const axis = d.storedShape ? 1 : -1; // the channel axis as stored: [N, C, H, W] with layout: nchw
  const how =
    want === 3 && has === 1
      ? `repeat the grey channel (numpy: np.repeat(x, 3, axis=${axis}) on ${axis === 1 ? '[N, 1, H, W]' : '[N, H, W, 1]'} arrays), or read image files as an \`images\` dataset with color: rgb`
      : want === 1 && has === 3
        ? `make them grey (numpy: x.mean(axis=${axis}, keepdims=True)), or read image files as an \`images\` dataset with color: grayscale`
        : 'convert the arrays';
  return `the samples have ${has} channel(s) and the model takes ${want}: ${how}; or use a model that takes ${has}`;
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && b.every((v, i) => v === -1 || v === a[i]);
}

/**
 * Whether `a` has `b`'s dimensions (rank 2 or more) in another order that a re-view would scramble
 * (moving only axes of size 1, e.g. [28, 28, 1] vs [1, 28, 28], keeps the element order).
 */
function isAxisPermutation(a: number[], b: number[]): boolean {
  if (a.length !== b.length || a.length < 2 || b.some((v) => v <= 0)) return false;
  const sorted = (v: number[]) => [...v].sort((x, y) => x - y).join(',');
  const big = (v: number[]) => v.filter((d) => d > 1).join(',');
  return sorted(a) === sorted(b) && big(a) !== big(b);
}

/** Image samples resized to an [H, W, C] input with the same C, or undefined when that does not apply. */
function resizeToInput(d: Dataset, inputShape: number[]): Dataset | undefined {
  if (!d.image || inputShape.length !== 3 || d.sampleShape.length !== 3) return undefined;
  const [h, w, c] = d.sampleShape;
  const [outH, outW, outC] = inputShape;
  if (outH <= 0 || outW <= 0 || (outC !== -1 && outC !== c)) return undefined;
  const out = new Float32Array(d.n * outH * outW * c);
  const size = h * w * c;
  for (let i = 0; i < d.n; i++) resizeBilinear(d.x.subarray(i * size, (i + 1) * size), h, w, c, outH, outW, out, i * outH * outW * c);
  return { ...d, x: out, sampleShape: [outH, outW, c] };
}
