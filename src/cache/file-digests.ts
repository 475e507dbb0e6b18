import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { hashFile } from './hash.js';
import { writeFileAtomic } from './fsutil.js';
import { setOwn } from '../util/own.js';

interface Entry {
  size: number;
  mtimeMs: number;
  ino: number;
  sha256: string;
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
      this.entries = JSON.parse(readFileSync(this.path, 'utf8'));
    } catch {
      this.entries = {};
    }
  }

  async digest(file: string): Promise<string> {
    const st = statSync(file);
    const e = this.entries[file];
    if (e && e.size === st.size && e.mtimeMs === st.mtimeMs && e.ino === st.ino) return e.sha256;
    const { sha256 } = await hashFile(file);
    setOwn(this.entries, file, { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, sha256 });
    this.dirty = true;
    return sha256;
  }

  async save(): Promise<void> {
    if (!this.dirty) return;
    await writeFileAtomic(this.path, JSON.stringify(this.entries), 'digests', { tmpDir: join(dirname(this.path), 'tmp') });
    this.dirty = false;
  }
}
