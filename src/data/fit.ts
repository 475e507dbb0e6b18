import { InputError } from '../errors/input-error.js';
import { reshapeSamples, sampleSize, type Dataset } from './dataset.js';

/**
 * Makes a dataset's samples fit a model input: equal shapes pass, equal sizes are re-viewed
 * (e.g. [784] vs [28,28,1]); anything else is an error naming both shapes.
 */
export function fitDataToModel(d: Dataset, inputShape: number[], where: string): Dataset {
  const same = inputShape.length === d.sampleShape.length && inputShape.every((v, i) => v === -1 || v === d.sampleShape[i]);
  if (same) return d;
  const want = inputShape.reduce((a, b) => a * b, 1);
  if (inputShape.every((v) => v > 0) && want === sampleSize(d)) return reshapeSamples(d, inputShape);
  throw new InputError(
    `${where}: data samples have shape [${d.sampleShape.join(', ')}] but the model's input expects [${inputShape.map((v) => (v < 0 ? '?' : v)).join(', ')}]`,
    { file: d.source, hint: 'choose a model whose input matches the data, or set the dataset\'s sampleShape' },
  );
}
