import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers.js';
import { LAYERS } from '../src/export/layers.js';
import { BEGIN, END, layerTableMarkdown } from '../src/export/layer-table.js';

test("the README's layer support table is the one the code generates (npm run layer-table)", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const a = readme.indexOf(BEGIN);
  const b = readme.indexOf(END);
  assert.ok(a >= 0 && b > a, 'README lacks the layer table markers');
  assert.equal(readme.slice(a, b + END.length), layerTableMarkdown(), 'README layer table drifted from the code: run `npm run layer-table`');
});

test('the generated table has one row per class of the export layer table', () => {
  const table = layerTableMarkdown();
  for (const cls of Object.keys(LAYERS)) assert.match(table, new RegExp(`^\\| \`${cls}\` \\|`, 'm'), cls);
});
