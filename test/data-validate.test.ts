import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../src/errors/input-error.js';
import { encodeNpy } from '../src/data/npy.js';
import { checkModelInput, loadUserData } from '../src/data/validate.js';

const dir = mkdtempSync(join(tmpdir(), 'compress-validate-'));
const put = (name: string, data: string | Uint8Array) => (writeFileSync(join(dir, name), data), name);

function inputError(file: string, re: RegExp, loc?: { line?: number; column?: number }) {
  return (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.equal(e.file, join(dir, file));
    assert.ok(e.message.startsWith(join(dir, file)), e.message);
    assert.match(e.message, re);
    if (loc) {
      assert.equal(e.line, loc.line);
      assert.equal(e.column, loc.column);
    }
    return true;
  };
}

test('npy features + labels -> Dataset with sampleShape from the array', () => {
  const x = new Float32Array(4 * 2 * 3).map((_, i) => i / 10);
  const f = put('x.npy', encodeNpy(x, [4, 2, 3], 'f4'));
  const l = put('y.npy', encodeNpy(BigInt64Array.of(0n, 2n, 1n, 2n), [4], 'i8'));
  const d = loadUserData({ features: f, labels: l }, dir);
  assert.equal(d.n, 4);
  assert.deepEqual(d.sampleShape, [2, 3]);
  assert.equal(d.numClasses, 3);
  assert.deepEqual(Array.from(d.y), [0, 2, 1, 2]);
  assert.deepEqual(d.x, x);
  const d2 = loadUserData({ features: f, labels: l, numClasses: 5, sampleShape: [6] }, dir);
  assert.equal(d2.numClasses, 5);
  assert.deepEqual(d2.sampleShape, [6]);
  // one-hot labels
  const oh = put('oh.npy', encodeNpy(Uint8Array.of(1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0), [4, 3], 'u1'));
  const d3 = loadUserData({ features: f, labels: oh }, dir);
  assert.deepEqual(Array.from(d3.y), [0, 1, 2, 0]);
  assert.equal(d3.numClasses, 3);
});

test('csv with a label column (default: "label", else last) or a separate labels file', () => {
  const f = put('d.csv', 'a,label,b\n1,0,2\n3,1,4\n');
  const d = loadUserData({ features: f }, dir);
  assert.deepEqual(Array.from(d.x), [1, 2, 3, 4]);
  assert.deepEqual(Array.from(d.y), [0, 1]);
  assert.deepEqual(d.sampleShape, [2]);
  const g = put('e.csv', '1,2,1\n3,4,0\n');
  assert.deepEqual(Array.from(loadUserData({ features: g }, dir).y), [1, 0]);
  assert.deepEqual(Array.from(loadUserData({ features: g, labelColumn: 0 }, dir).y), [1, 3]);
  const lab = put('lab.csv', 'label\n1\n1\n');
  const d4 = loadUserData({ features: g, labels: lab }, dir);
  assert.deepEqual(d4.sampleShape, [3]);
  assert.deepEqual(Array.from(d4.y), [1, 1]);
});

test('label out of range or not an integer: file, index/line and value', () => {
  const f = put('r.csv', 'a,label\n1,0\n2,3\n3,1\n');
  assert.throws(() => loadUserData({ features: f, numClasses: 3 }, dir), inputError('r.csv', /label at index 1 is 3, outside \[0, 3\)/, { line: 3, column: 3 }));
  const g = put('nonint.csv', 'a,label\n1,0\n2,1.5\n');
  assert.throws(() => loadUserData({ features: g }, dir), inputError('nonint.csv', /label at index 1 is 1.5/, { line: 3, column: 3 }));
  const x = put('x2.npy', encodeNpy(Float32Array.of(1, 2, 3), [3], 'f4'));
  const y = put('neg.npy', encodeNpy(Int32Array.of(0, -1, 1), [3], 'i4'));
  assert.throws(() => loadUserData({ features: x, labels: y }, dir), inputError('neg.npy', /label at index 1 is -1/));
  const y2 = put('short.npy', encodeNpy(Int32Array.of(0, 1), [2], 'i4'));
  assert.throws(() => loadUserData({ features: x, labels: y2 }, dir), inputError('short.npy', /has 2 labels but .*x2\.npy has 3 samples/));
});

test('NaN / Inf inputs name the file and the first bad index', () => {
  const x = new Float32Array(12).fill(1);
  x[7] = NaN;
  x[9] = Infinity;
  const f = put('nan.npy', encodeNpy(x, [3, 4], 'f4'));
  const l = put('l3.npy', encodeNpy(Uint8Array.of(0, 1, 0), [3], 'u1'));
  assert.throws(() => loadUserData({ features: f, labels: l }, dir), inputError('nan.npy', /NaN at sample 1, element 3 \(flat index 7\)/));
  const c = put('inf.csv', 'a,b,label\n1,2,0\n3,inf,1\n');
  assert.throws(() => loadUserData({ features: c }, dir), inputError('inf.csv', /Infinity at sample 1, element 1/, { line: 3, column: 3 }));
});

test('empty dataset', () => {
  const f = put('empty.csv', 'a,b,label\n');
  assert.throws(() => loadUserData({ features: f }, dir), inputError('empty.csv', /empty \(0 samples\)/));
  const x = put('empty.npy', encodeNpy(new Float32Array(0), [0, 4], 'f4'));
  const y = put('empty-y.npy', encodeNpy(new Int32Array(0), [0], 'i4'));
  assert.throws(() => loadUserData({ features: x, labels: y }, dir), inputError('empty.npy', /empty/));
});

test('sample shape mismatches: spec sampleShape, and model input names both shapes and the layer', () => {
  const x = put('s.npy', encodeNpy(new Float32Array(2 * 784), [2, 784], 'f4'));
  const y = put('s-y.npy', encodeNpy(Int32Array.of(0, 1), [2], 'i4'));
  assert.throws(() => loadUserData({ features: x, labels: y, sampleShape: [28, 27] }, dir), inputError('s.npy', /\[784\].*\[28, 27\]/));
  const d = loadUserData({ features: x, labels: y }, dir);
  const model = (shape: number[]) => ({ inputs: [{ shape: [null, ...shape] }], outputs: [{ shape: [null, 10] }], inputLayers: [{ name: 'pixels' }] });
  // same size: viewed in the model's shape, numClasses from the model
  const v = checkModelInput(d, model([28, 28, 1]), join(dir, x));
  assert.deepEqual(v.sampleShape, [28, 28, 1]);
  assert.equal(v.numClasses, 10);
  assert.throws(
    () => checkModelInput(d, model([32, 32, 3]), join(dir, x)),
    inputError('s.npy', /samples have shape \[784\] but the model's input layer 'pixels' expects \[32, 32, 3\]/),
  );
  assert.throws(() => checkModelInput({ ...d, numClasses: 12 }, model([784]), join(dir, x)), /12 classes but the model's output has 10/);
});

test('missing files, unknown formats and missing labels', () => {
  assert.throws(() => loadUserData({ features: 'nope.npy', labels: 'y.npy' }, dir), inputError('nope.npy', /cannot read/));
  const f = put('x.parquet', 'x');
  assert.throws(() => loadUserData({ features: f }, dir), inputError('x.parquet', /unknown data file type/));
  const x = put('nolab.npy', encodeNpy(Float32Array.of(1), [1], 'f4'));
  assert.throws(() => loadUserData({ features: x }, dir), inputError('nolab.npy', /need a labels file/));
});
