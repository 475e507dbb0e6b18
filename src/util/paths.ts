import { existsSync, lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, posix, relative, resolve, sep, win32 } from 'node:path';

export class PathEscapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PathEscapeError';
  }
}

/** Whether `p` is `root` or below it (both already resolved). */
export function isInside(root: string, p: string): boolean {
  const rel = relative(root, p);
  // `..foo` is a legal name inside the root; only a whole `..` segment climbs out.
  return rel === '' || (!isAbsolute(rel) && rel.split(sep)[0] !== '..');
}

/**
 * Why a path given as text cannot stay inside `root`, judged on the text alone (no filesystem), or
 * undefined when it is fine lexically. Used at validation time so the error can point at the recipe
 * line; symlinks can only be judged when the path is used (confinedPath).
 */
export function lexicalEscape(p: string, root = "the recipe's directory"): string | undefined {
  // Windows drive and UNC forms are refused everywhere: a recipe written on one OS runs on others.
  if (isAbsolute(p) || win32.isAbsolute(p)) return `is absolute; use a path relative to ${root}`;
  if (p.includes('\0')) return 'contains a NUL character';
  const n = posix.normalize(p.replace(/\\/g, '/'));
  if (n === '..' || n.startsWith('../')) {
    // A team's recipes under pipelines/ meet this first: say where the files may be.
    const where = root === "the recipe's directory" ? ' (a recipe reads files at or below its own directory: move the file there, or the recipe up)' : '';
    return `climbs out of ${root} with '..'${where}`;
  }
  return undefined;
}

/**
 * How a recipe field holding a path is confined, declared in its schema as `x-compress-path` (so
 * validation finds every path-valued field the same way, whatever stage kind or data source it is on):
 * `workspace` paths are read relative to the recipe's directory, `output` paths are relative to the
 * stage's output directory, `write-dir` is a directory compress writes into and may delete (a
 * subdirectory of the workspace, never the workspace itself).
 */
export const PATH_KEYWORD = 'x-compress-path';
export interface PathField {
  /** How messages name the field (`model path`, `input`, `outDir`). */
  what: string;
  root: 'workspace' | 'output' | 'write-dir';
  /** Appended to the message (e.g. how to put a cache elsewhere). */
  hint?: string;
}

/** Why the text of a path field cannot be used, or undefined: the check `validate` runs for every annotated field. */
export function pathFieldProblem(p: string, field: PathField): string | undefined {
  const rootName = field.root === 'output' ? "the stage's output directory" : "the recipe's directory";
  const why = lexicalEscape(p, rootName);
  const self = field.root === 'write-dir' && !why && posix.normalize(p.replace(/\\/g, '/')).replace(/\/+$/, '') === '.';
  const problem = why ? `${field.what} '${p}' ${why}` : self ? `${field.what} '${p}' is the recipe's directory itself; name a subdirectory of it` : undefined;
  return problem && field.hint ? `${problem} (${field.hint})` : problem;
}

/**
 * The real path of `p`, or for a path not written yet, the real path of its deepest existing
 * ancestor with the rest appended (a dangling symlink on the way is followed to where a write
 * through it would land).
 */
function realish(p: string, hops = 0): string {
  if (hops > 40) throw new PathEscapeError(`too many levels of symbolic links at '${p}'`);
  let cur = p;
  const rest: string[] = [];
  for (;;) {
    if (existsSync(cur)) return resolve(realpathSync(cur), ...rest.reverse());
    if (lstatSync(cur, { throwIfNoEntry: false })?.isSymbolicLink()) {
      return realish(resolve(dirname(cur), readlinkSync(cur), ...rest.reverse()), hops + 1);
    }
    const parent = dirname(cur);
    if (parent === cur) return resolve(cur, ...rest.reverse());
    rest.push(relative(parent, cur));
    cur = parent;
  }
}

/**
 * Resolves a path a recipe gives, refusing anything that leaves the workspace: absolute paths,
 * `..` that climbs out, and symlinks (of the path itself or any directory on the way, existing or
 * not yet) whose target is outside. Returns the path under the workspace as written (not the
 * symlink-resolved one), so messages and cache keys show what the user wrote.
 */
export function confinedPath(workspace: string, p: string, what = 'path', rootName = "the recipe's directory"): string {
  const why = lexicalEscape(p, rootName);
  if (why) throw new PathEscapeError(`${what} '${p}' ${why}`);
  const root = realpathSync(workspace);
  const full = resolve(root, p);
  if (!isInside(root, full)) throw new PathEscapeError(`${what} '${p}' leaves ${rootName} ${root}`);
  const real = realish(full);
  if (!isInside(root, real)) throw new PathEscapeError(`${what} '${p}' goes through a symbolic link to '${real}', outside ${rootName} ${root}`);
  return full;
}

/**
 * A directory compress writes into and may delete (outDir, cache.dir), as a recipe names it: it
 * must be a subdirectory of the workspace, symlinks included, so a recipe (or a link committed next
 * to it) cannot make compress write or `cache clean` remove anything elsewhere. Directories given on
 * the command line or in the environment are the user's explicit choice and do not come through here.
 */
export function confinedWriteDir(workspace: string, p: string, what: string): string {
  const full = confinedPath(workspace, p, what);
  if (resolve(full) === realpathSync(workspace)) throw new PathEscapeError(`${what} '${p}' is the recipe's directory itself; name a subdirectory of it`);
  return full;
}
