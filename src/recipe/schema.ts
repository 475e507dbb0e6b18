import type { FromSchema } from 'json-schema-to-ts';
import { dataSchemaFor, type DataSpec } from '../data/load.js';
import { BACKEND_CHOICES } from '../engine/backend.js';

export type { DataSpec };

export const SCHEMA_ID = 'https://compress.dev/schemas/recipe.schema.json';
export const STAGE_ID_PATTERN = '^[A-Za-z_][A-Za-z0-9_-]*$';
/** A stage id, or a sweep branch's id (`prune[finalSparsity=0.9]`, made by src/recipe/matrix.ts). */
const BRANCH_ID_PATTERN = '^[A-Za-z_][A-Za-z0-9_-]*(\\[[A-Za-z0-9_.+=,-]+\\])?$';

/** Where the cache lives, and the shared remote cache (S3-compatible) it reads from and pushes to. */
export const remoteCacheSchema = {
  remote: { type: 'string', pattern: '^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$', description: 'shared remote cache: s3://bucket/prefix (credentials only from the AWS SDK chain: env, profile, role; never here)' },
  push: { type: 'boolean', description: 'upload what this run computes (default true; false on CI unless the ref is trusted)' },
  endpoint: { type: 'string', pattern: '^https?://[^/@\\s]+(/.*)?$', description: 'S3-compatible endpoint URL (MinIO, R2, GCS); default env AWS_ENDPOINT_URL, else AWS S3' },
  region: { type: 'string', minLength: 1, description: 'region (default env AWS_REGION, else the SDK profile\'s; us-east-1 for a custom endpoint)' },
  pathStyle: { type: 'boolean', description: 'path-style addressing (default: on for IP and localhost endpoints)' },
  trustedRefs: {
    type: 'array',
    items: { type: 'string', minLength: 1 },
    description: 'branches or refs (globs: main, release/*, refs/tags/*) whose CI runs may push; default [main, master]',
  },
} as const;

const cacheSchema = {
  type: 'object',
  properties: {
    dir: {
      type: 'string',
      minLength: 1,
      'x-compress-path': { what: 'cache.dir', root: 'write-dir', hint: 'a cache outside the workspace is chosen with --cache-dir or COMPRESS_CACHE_DIR' },
    },
    ...remoteCacheSchema,
  },
  additionalProperties: false,
} as const;

/** The recipe without the per-kind `with` schemas and per-source `data` schemas (those are added by buildRecipeSchema). */
export const recipeBaseSchema = {
  type: 'object',
  properties: {
    $schema: { type: 'string' },
    version: { const: 1, description: 'recipe format version' },
    name: { type: 'string', minLength: 1 },
    description: { type: 'string' },
    seed: { type: 'integer', minimum: 0, maximum: 4294967295, default: 0 },
    backend: { enum: BACKEND_CHOICES, default: 'auto' },
    cache: cacheSchema,
    outDir: { type: 'string', minLength: 1, description: 'where stage outputs are placed (default .compress/out)', 'x-compress-path': { what: 'outDir', root: 'write-dir' } },
    params: {
      type: 'object',
      description: 'named values that stages reference as ${params.name}',
      propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
      additionalProperties: { type: ['number', 'string', 'boolean', 'array', 'object'] },
    },
    data: {
      type: 'object',
      propertyNames: { pattern: STAGE_ID_PATTERN },
      // Each dataset's schema (one per source) is added by buildRecipeSchema.
      additionalProperties: { type: 'object' },
    },
    stages: {
      type: 'object',
      minProperties: 1,
      propertyNames: { pattern: BRANCH_ID_PATTERN },
      additionalProperties: {
        type: 'object',
        properties: {
          uses: { type: 'string' },
          needs: { type: 'array', items: { type: 'string', pattern: BRANCH_ID_PATTERN }, uniqueItems: true },
          matrix: {
            type: 'object',
            description: 'a sweep: `with` paths (dotted, or nested mappings) to lists of values; the stage and everything downstream run once per combination, as branches like `prune[finalSparsity=0.9]`',
            minProperties: 1,
          },
          with: { type: 'object' },
          description: { type: 'string' },
          timeout: { type: 'number', exclusiveMinimum: 0, description: 'seconds before the stage is stopped' },
          memoryMb: { type: 'integer', minimum: 64, description: 'heap budget of the stage worker' },
        },
        required: ['uses'],
        additionalProperties: false,
      },
    },
  },
  required: ['version', 'stages'],
  additionalProperties: false,
} as const;

export type Recipe = FromSchema<typeof recipeBaseSchema>;
export type StageSpec = Recipe['stages'][string];
export type CacheSpec = NonNullable<Recipe['cache']>;

/**
 * The full recipe schema: the base plus, for each stage kind, `if uses == kind then with: <kind schema>`.
 * Editors (yaml-language-server) complete and validate `with` from this too.
 */
export function buildRecipeSchema(kinds: Array<{ kind: string; description: string; withSchema: object }>): object {
  const base = structuredClone(recipeBaseSchema) as any;
  base.properties.data.additionalProperties = dataSchemaFor();
  const stage = base.properties.stages.additionalProperties;
  stage.properties.uses = { enum: kinds.map((k) => k.kind), description: kinds.map((k) => `${k.kind}: ${k.description}`).join('\n') };
  stage.allOf = kinds.map((k) => ({
    if: { properties: { uses: { const: k.kind } }, required: ['uses'] },
    then: {
      properties: { with: { $ref: `stages/${k.kind}.schema.json` } },
      // A kind with required settings needs `with:` itself, or its checks would see none of them.
      ...((k.withSchema as { required?: string[] }).required?.length ? { required: ['with'] } : {}),
    },
  }));
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: SCHEMA_ID,
    title: 'compress recipe',
    ...base,
  };
}

export function stageSchemaId(kind: string): string {
  return `https://compress.dev/schemas/stages/${kind}.schema.json`;
}

export function buildStageSchema(k: { kind: string; description: string; withSchema: object }): object {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: stageSchemaId(k.kind),
    title: `with: of a \`${k.kind}\` stage`,
    description: k.description,
    ...k.withSchema,
  };
}
