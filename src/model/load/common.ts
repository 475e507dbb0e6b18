import { InputError } from '../../errors/input-error.js';

/** Throws an InputError naming the layer and weight if `values` holds a NaN or an infinity. */
export function assertFiniteWeights(values: ArrayLike<number>, file: string, layer: string, weight: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      let count = 0;
      for (let j = i; j < values.length; j++) if (!Number.isFinite(values[j])) count++;
      throw new InputError(`weight '${weight}' contains ${count} non-finite value(s) (first: ${v} at flat index ${i})`, {
        file,
        layer,
        hint: 'the model was saved after training diverged, or the file is corrupt',
      });
    }
  }
}

export function shapeStr(s: ArrayLike<number | null>): string {
  return `[${Array.from(s, (d) => (d === null ? 'null' : String(d))).join(', ')}]`;
}

export function sameShape(a: ArrayLike<number | null>, b: ArrayLike<number | null>): boolean {
  return a.length === b.length && Array.from(a).every((d, i) => d === b[i]);
}
