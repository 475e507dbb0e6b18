import { STAGE_KINDS } from '../stages/registry.js';
import { buildRecipeSchema, buildStageSchema } from './schema.js';

/**
 * The JSON files under schemas/ as they must be: derived from the TypeScript schema objects (the one
 * source of truth, from which the `with` types are derived too). Written by `npm run schemas`; a test
 * fails when the committed files drift. The files carry no $id, so editors resolve `stages/*.json`
 * next to the recipe schema on disk.
 */
export function schemaFiles(): Record<string, string> {
  const strip = (s: object) => {
    const { $id: _id, ...rest } = s as Record<string, unknown>;
    return JSON.stringify(rest, null, 2) + '\n';
  };
  const files: Record<string, string> = { 'recipe.schema.json': strip(buildRecipeSchema(STAGE_KINDS)) };
  for (const k of STAGE_KINDS) files[`stages/${k.kind}.schema.json`] = strip(buildStageSchema(k));
  return files;
}
