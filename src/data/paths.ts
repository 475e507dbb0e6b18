import { realpathSync } from 'node:fs';
import { delimiter, isAbsolute, posix } from 'node:path';
import { confinedPath, isInside, lexicalEscape, PathEscapeError } from '../util/paths.js';

/**
 * Where data files may come from. A recipe's data paths are relative to the recipe's directory and
 * stay inside it (like every other path a recipe names), with one explicit exception: a dataset's
 * `root:` may be an absolute directory inside a *system dataset directory* — read-only data installed
 * for every user, such as Debian's `dataset-*` packages under /usr/share/datasets. More such
 * directories are the user's choice, not the recipe's: they come from the COMPRESS_DATA_DIRS
 * environment variable (absolute paths separated by the platform's path delimiter). Files named
 * under a root stay inside that root (no `..`, no absolute names, no symbolic links out of it).
 */
export const SYSTEM_DATA_DIRS = ['/usr/share/datasets'];

export const dataRootSchema = {
  type: 'string',
  minLength: 1,
  description: "directory the dataset's file names are relative to: inside the recipe's directory, or an absolute path inside a system dataset directory (/usr/share/datasets; more with COMPRESS_DATA_DIRS)",
} as const;

/** The system dataset directories: the defaults plus COMPRESS_DATA_DIRS. */
export function systemDataDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const extra = (env.COMPRESS_DATA_DIRS ?? '').split(delimiter).filter((d) => d !== '' && isAbsolute(d));
  return [...SYSTEM_DATA_DIRS, ...extra];
}

/** A data file as a recipe names it: `file`, relative to `root` when the dataset sets one. */
export interface DataPathRef {
  file: string;
  /** The dataset's `root:` (relative to the recipe, or absolute inside a system dataset directory). */
  root?: string;
  /** What the file is, for messages: e.g. `data images path`. */
  what: string;
}

function rootProblem(root: string): string | undefined {
  if (!isAbsolute(root)) {
    const why = lexicalEscape(root);
    return why ? `data root '${root}' ${why}; a root outside it must be an absolute path inside a system dataset directory (${systemDataDirs().join(', ')})` : undefined;
  }
  if (root.includes('\0')) return `data root '${root}' contains a NUL character`;
  const n = posix.normalize(root);
  if (systemDataDirs().some((d) => isInside(d, n))) return undefined;
  return `data root '${root}' is outside the recipe's directory and not inside a system dataset directory (${systemDataDirs().join(', ')}); add one with COMPRESS_DATA_DIRS`;
}

/** What is wrong with a data path: its dataset's root, or the file itself. */
export interface DataPathProblem {
  at: 'root' | 'file';
  message: string;
}

/**
 * Why a data path cannot be used, judged on the text alone (validation time, so the problem can be
 * positioned on the recipe line), or undefined when it is fine. `dataPath` applies the same rules
 * plus symbolic links when the file is read.
 */
export function dataPathProblem(ref: DataPathRef): DataPathProblem | undefined {
  if (ref.root !== undefined) {
    const r = rootProblem(ref.root);
    if (r) return { at: 'root', message: r };
  }
  const why = lexicalEscape(ref.file, ref.root === undefined ? "the recipe's directory" : `the data root '${ref.root}'`);
  return why ? { at: 'file', message: `${ref.what} '${ref.file}' ${why}` } : undefined;
}

/**
 * The full path of a data file, refusing (PathEscapeError) anything `dataPathProblem` refuses and
 * symbolic links that lead out of the recipe's directory, or out of the data root when one is set.
 */
export function dataPath(recipeDir: string, ref: DataPathRef): string {
  const why = dataPathProblem(ref);
  if (why) throw new PathEscapeError(why.message);
  if (ref.root === undefined) return confinedPath(recipeDir, ref.file, ref.what);
  const root = isAbsolute(ref.root) ? systemRoot(ref.root) : confinedPath(recipeDir, ref.root, 'data root');
  return confinedPath(root, ref.file, ref.what, `the data root '${ref.root}'`);
}

/** An absolute root, checked again on the real filesystem (a symbolic link may lead out of the system directory). */
function systemRoot(root: string): string {
  let real: string;
  try {
    real = realpathSync(root);
  } catch {
    throw new PathEscapeError(`data root '${root}' does not exist`);
  }
  const dirs = systemDataDirs().flatMap((d) => {
    try {
      return [realpathSync(d)];
    } catch {
      return [];
    }
  });
  if (!dirs.some((d) => isInside(d, real))) throw new PathEscapeError(`data root '${root}' leads to '${real}', outside the system dataset directories (${systemDataDirs().join(', ')})`);
  return root;
}
