import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { schemaFiles } from './schema-files.js';

const root = process.argv[2] ?? 'schemas';
for (const [rel, text] of Object.entries(schemaFiles())) {
  const p = join(root, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
  process.stdout.write(`wrote ${p}\n`);
}
