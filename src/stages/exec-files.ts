/** File checks of the exec stage: declared inputs in the workspace, what the command left in its out dir. */
import { copyFileSync, existsSync, lstatSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { confinedPath, isInside, PathEscapeError } from '../util/paths.js';

/** Every file under `dir`, sorted, each confined to the workspace (a link inside may not lead out). */
function filesUnder(workspace: string, dir: string, seen = new Set<string>()): string[] {
  // Linked directories are followed (their files are inputs too), each real directory once: no cycles.
  const real = realpathSync(dir);
  if (seen.has(real)) return [];
  seen.add(real);
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    confinedPath(workspace, relative(realpathSync(workspace), full), 'input');
    if (statSync(full).isDirectory()) out.push(...filesUnder(workspace, full, seen));
    else out.push(full);
  }
  return out;
}

/**
 * The workspace files declared as inputs (directories expanded), confined to the workspace with
 * symlinks resolved. A missing input is returned as is (its digest reads 'missing') unless
 * `mustExist`, when it is an error: the key can be computed, the command cannot run.
 */
export function workspaceFiles(workspace: string, inputs: readonly string[], mustExist = false): string[] {
  const out: string[] = [];
  for (const p of inputs) {
    const full = confinedPath(workspace, p, 'input');
    const st = statSync(full, { throwIfNoEntry: false });
    if (!st) {
      if (mustExist) throw new Error(`declared input '${p}' does not exist (relative to ${workspace})`);
      out.push(full);
    } else if (st.isDirectory()) out.push(...filesUnder(workspace, full));
    else out.push(full);
  }
  return out;
}

/**
 * After the command: no symlink under the out dir may lead outside it (the cache would copy what it
 * points at into the artifact), links inside become copies (the cache stores plain files only and
 * would drop them), and every declared output must exist.
 */
export function checkOutputs(outDir: string, declared: readonly string[]): void {
  const root = realpathSync(outDir);
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      const rel = relative(root, full);
      const st = lstatSync(full);
      if (st.isSymbolicLink()) {
        const target = resolve(dirname(full), readlinkSync(full));
        const real = existsSync(full) ? realpathSync(full) : target;
        if (!isInside(root, real)) throw new PathEscapeError(`output '${rel}' is a symbolic link to '${real}', outside the stage's output directory: refused`);
        if (!existsSync(full)) throw new Error(`output '${rel}' is a dangling symbolic link to '${target}'`);
        if (statSync(full).isDirectory()) throw new Error(`output '${rel}' is a symbolic link to a directory; write the files themselves`);
        rmSync(full);
        copyFileSync(real, full);
      } else if (st.isDirectory()) walk(full);
    }
  };
  walk(root);
  for (const p of declared) {
    const full = confinedPath(root, p, 'output', "the stage's output directory");
    if (!existsSync(full)) throw new Error(`declared output '${p}' was not written by the command (expected at \${outputs}/${p})`);
  }
}
