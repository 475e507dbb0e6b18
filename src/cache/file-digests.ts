import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { hashFile, hashJson } from './hash.js';
import { writeFileAtomic } from './fsutil.js';
import { setOwn } from '../util/own.js';

interface Entry {
  size: number;
  mtimeMs: number;
  ino: number;
  sha256: string;
  /** hashJson of the file's path and the fields above: an entry damaged on disk is not trusted. */
  check: string;
}

function entryCheck(file: string, e: Omit<Entry, 'check'>): string {
  return hashJson({ file, size: e.size, mtimeMs: e.mtimeMs, ino: e.ino, sha256: e.sha256 });
}

/**
 * Digests of data files, remembered by (size, mtime, inode) like DVC's state db, so a cached run does
 * not re-read tens of megabytes of data to learn that nothing changed.
 */
export class FileDigests {
  private entries: Record<string, Entry> = {};
  private dirty = false;
  private readonly path: string;

  constructor(cacheRoot: string) {
    this.path = join(cacheRoot, 'file-digests.json');
    try {
      const parsed: unknown = JSON.parse(readFileSync(this.path, 'utf8'));
      this.entries = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, Entry>) : {};
    } catch {
      this.entries = {};
    }
  }

  async digest(file: string): Promise<string> {
    const st = statSync(file);
    const e = Object.hasOwn(this.entries, file) ? (this.entries[file] as Entry | null) : undefined;
    // Trusted only if unchanged on disk (size, mtime, inode) and the entry passes its own check.
    if (e && typeof e === 'object' && e.size === st.size && e.mtimeMs === st.mtimeMs && e.ino === st.ino && e.check === entryCheck(file, e)) return e.sha256;
    const { sha256 } = await hashFile(file);
    const fresh = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, sha256 };
    setOwn(this.entries, file, { ...fresh, check: entryCheck(file, fresh) });
    this.dirty = true;
    return sha256;
  }

  async save(): Promise<void> {
    if (!this.dirty) return;
    await writeFileAtomic(this.path, JSON.stringify(this.entries), 'digests', { tmpDir: join(dirname(this.path), 'tmp') });
    this.dirty = false;
  }
}
