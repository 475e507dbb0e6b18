/**
 * The recipe validator (ajv, every stage kind's `with` schema). Compiling it is most of what `validate`
 * costs, so the build writes it as code (dist/src/recipe/recipe-validator.cjs, with the digest of the
 * schemas it came from); at run time that code is used when its digest matches, else it is compiled.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { STAGE_KINDS } from '../stages/registry.js';
import { buildRecipeSchema, buildStageSchema, stageSchemaId } from './schema.js';

export const PREBUILT_VALIDATOR = new URL('./recipe-validator.cjs', import.meta.url);
export const PREBUILT_DIGEST = new URL('./recipe-validator.digest', import.meta.url);

function schemas() {
  return { stages: STAGE_KINDS.map((k) => [stageSchemaId(k.kind), buildStageSchema(k)] as const), recipe: buildRecipeSchema(STAGE_KINDS) };
}

/** Digest of the schemas and of the ajv options: what the prebuilt code must have been made from. */
export function validatorDigest(): string {
  return createHash('sha256').update(JSON.stringify({ ...schemas(), ajv: AJV_OPTIONS, version: 1 })).digest('hex');
}

const AJV_OPTIONS = { allErrors: true, useDefaults: true, strict: false, verbose: true } as const;

/** Compiles the validator (with `source`, one whose code the build can write out). */
export function compileValidator(source = false): { ajv: Ajv2020; validate: ValidateFunction } {
  const { stages, recipe } = schemas();
  const ajv = new Ajv2020({ ...AJV_OPTIONS, code: source ? { source: true } : undefined });
  for (const [id, s] of stages) ajv.addSchema(s, id);
  return { ajv, validate: ajv.compile(recipe) };
}

/** The prebuilt validator when it was made from these schemas, else a freshly compiled one. */
export function loadValidator(): ValidateFunction {
  try {
    if (existsSync(PREBUILT_DIGEST) && readFileSync(PREBUILT_DIGEST, 'utf8').trim() === validatorDigest()) {
      const mod = createRequire(import.meta.url)(PREBUILT_VALIDATOR.pathname) as { default?: ValidateFunction } & ValidateFunction;
      return (mod.default ?? mod) as ValidateFunction;
    }
  } catch {
    // A damaged prebuilt file: compile instead.
  }
  return compileValidator().validate;
}
