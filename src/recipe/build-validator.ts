/** Build step (`npm run build`): writes the recipe validator as code next to validator.js (see validator.ts). */
import { renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type { Ajv2020, ValidateFunction } from 'ajv/dist/2020.js';
import { compileValidator, PREBUILT_DIGEST, PREBUILT_VALIDATOR, validatorDigest } from './validator.js';

function writeAtomic(url: URL, data: string): void {
  const path = fileURLToPath(url);
  writeFileSync(`${path}.tmp`, data);
  renameSync(`${path}.tmp`, path);
}

const standaloneCode = (createRequire(import.meta.url)('ajv/dist/standalone') as { default: (ajv: Ajv2020, validate: ValidateFunction) => string }).default;
const { ajv, validate } = compileValidator(true);
// The digest last: code without its digest (an interrupted build) is never used.
writeAtomic(PREBUILT_VALIDATOR, standaloneCode(ajv, validate));
writeAtomic(PREBUILT_DIGEST, `${validatorDigest()}\n`);
