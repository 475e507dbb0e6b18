import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { ROOT } from './helpers.js';

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split('\\').join('/'))
    .sort();
}

test('the committed schemas/ are exactly what `npm run schemas` generates (no file missing, extra or different)', async () => {
  const out = mkdtempSync(join(tmpdir(), 'compress-schemas-'));
  await execa('node', [join(ROOT, 'dist/src/recipe/write-schemas.js'), out]);
  const committed = join(ROOT, 'schemas');
  assert.deepEqual(filesUnder(out), filesUnder(committed), 'the same schema files');
  for (const f of filesUnder(out)) {
    assert.equal(readFileSync(join(committed, f), 'utf8'), readFileSync(join(out, f), 'utf8'), `schemas/${f} differs from the generated one: run \`npm run schemas\` and commit it`);
  }
});
