import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../src/errors/input-error.js';
import { parseCsv, readCsv, splitLabelColumn } from '../src/data/csv.js';

const dir = mkdtempSync(join(tmpdir(), 'compress-csv-'));

test('csv with header, quotes, comments, CRLF and nan/inf tokens', () => {
  const p = join(dir, 'a.csv');
  writeFileSync(p, '# written by savetxt\r\nf1,"f 2",label\r\n1, 2.5 ,0\r\n\r\n-3e2,"4",1\r\nnan,-inf,2\r\n');
  const t = readCsv(p);
  assert.deepEqual(t.header, ['f1', 'f 2', 'label']);
  assert.equal(t.rows, 3);
  assert.equal(t.cols, 3);
  assert.deepEqual(Array.from(t.lines), [3, 5, 6]);
  assert.deepEqual(Array.from(t.values).slice(0, 6), [1, 2.5, 0, -300, 4, 1]);
  assert.ok(Number.isNaN(t.values[6]) && t.values[7] === -Infinity);
  const s = splitLabelColumn(t, 'label');
  assert.deepEqual(Array.from(s.labels!), [0, 1, 2]);
  assert.equal(s.featureCols, 2);
  assert.deepEqual(Array.from(s.features.slice(0, 4)), [1, 2.5, -300, 4]);
  assert.deepEqual(s.locateFeature(5), { line: 6, column: 5 });
  // by index, negative from the end
  assert.deepEqual(Array.from(splitLabelColumn(t, -1).labels!), [0, 1, 2]);
  assert.deepEqual(Array.from(splitLabelColumn(t, 0).labels!), [1, -300, NaN]);
});

test('headerless csv and tsv', () => {
  const t = parseCsv('1,2\n3,4\n', 'b.csv');
  assert.equal(t.header, undefined);
  assert.equal(t.rows, 2);
  const p = join(dir, 'c.tsv');
  writeFileSync(p, '1\t2\t3\n');
  assert.equal(readCsv(p).cols, 3);
});

function errorAt(text: string, line: number, col: number | undefined, re: RegExp) {
  assert.throws(
    () => parseCsv(text, 'd.csv'),
    (e: unknown) =>
      e instanceof InputError && e.file === 'd.csv' && e.line === line && e.column === col &&
      e.message.startsWith(`d.csv:${line}${col === undefined ? '' : `:${col}`}: `) && re.test(e.message),
  );
}

test('csv errors name file:line:col', () => {
  errorAt('a,b\n1,2\n3,x7\n', 3, 3, /cannot parse "x7" as a number \(column 'b'\)/);
  errorAt('1,2\n3,\n', 2, 3, /empty field \(column 2\)/);
  errorAt('1,2\n3,4,5\n', 2, undefined, /expected 2 fields \(as on line 1\), found 3/);
  errorAt('1,"2\n', 1, 3, /unterminated/);
  const t = parseCsv('x,y\n1,2\n', 'e.csv');
  assert.throws(() => splitLabelColumn(t, 'label'), /e\.csv: no column named 'label' \(columns: x, y\)/);
  assert.throws(() => splitLabelColumn(t, 5), /out of range/);
  assert.throws(() => splitLabelColumn(parseCsv('1,2\n', 'f.csv'), 'label'), /no header line/);
});

test('a text class name in a csv says how to turn names into class indices (hint), an empty field how to fill it', () => {
  const hintOf = (text: string) => {
    try {
      parseCsv(text, 'g.csv');
    } catch (e) {
      return (e as InputError).hint;
    }
    return undefined;
  };
  assert.match(hintOf('x,label\n0.5,cat\n')!, /text class names must become 0-based class indices.*cat\.codes/);
  assert.match(hintOf('x,label\n0.5,\n')!, /fill or drop missing values/);
});
