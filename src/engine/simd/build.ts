/**
 * Build step (`npm run build`): assembles the SIMD kernels' text into dist/ next to module.js, with
 * the digest of the text it came from, so that engine start-up loads bytes instead of starting wabt.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { assembleKernels, kernelsDigest, prebuilt, SOURCES, type MemoryKind } from './module.js';

function writeAtomic(url: URL, data: Uint8Array | string): void {
  const path = fileURLToPath(url);
  writeFileSync(`${path}.tmp`, data);
  renameSync(`${path}.tmp`, path);
}

// The digest last: a binary without its digest (an interrupted build) is never used.
for (const source of SOURCES) {
  for (const kind of ['plain', 'shared'] as MemoryKind[]) {
    const files = prebuilt(kind, source);
    writeAtomic(files.wasm, await assembleKernels(kind, source));
    writeAtomic(files.digest, `${kernelsDigest(kind, source)}\n`);
  }
}
