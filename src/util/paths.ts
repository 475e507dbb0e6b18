import { realpathSync, existsSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';

export class PathEscapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PathEscapeError';
  }
}

function inside(root: string, p: string): boolean {
  const rel = relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel) && rel.split(sep)[0] !== '..');
}

/**
 * Resolves a path a recipe gives, refusing anything that leaves the workspace: absolute paths,
 * `..` that climbs out, and symlinks whose target is outside.
 */
export function confinedPath(workspace: string, p: string, what = 'path'): string {
  if (isAbsolute(p)) throw new PathEscapeError(`${what} '${p}' is absolute; use a path relative to the recipe's directory`);
  const root = realpathSync(workspace);
  const full = resolve(root, p);
  if (!inside(root, full)) throw new PathEscapeError(`${what} '${p}' leaves the workspace ${root}`);
  if (existsSync(full)) {
    const real = realpathSync(full);
    if (!inside(root, real)) throw new PathEscapeError(`${what} '${p}' is a link to '${real}', outside the workspace ${root}`);
  }
  return full;
}
