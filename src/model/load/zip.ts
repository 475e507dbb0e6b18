import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { InputError, describeError } from '../../errors/input-error.js';

/**
 * Minimal ZIP reader/writer (enough for Keras 3 `.keras` archives: stored or deflated entries,
 * no zip64, no encryption). Reads the central directory, so a truncated archive is detected.
 */
export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  crc: number;
  localOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_CDIR = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

export function listZip(buf: Uint8Array, file: string): ZipEntry[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const bad = (what: string) =>
    new InputError(`not a valid zip archive (${what}); the file may be truncated or corrupt`, {
      file,
      hint: 'a .keras file is a zip written by Keras 3 model.save(); re-save or re-download it',
    });
  if (buf.length < 22) throw bad(`only ${buf.length} bytes`);
  // End of central directory: scan back over a possible comment (at most 65535 bytes).
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 65535); i--) {
    if (dv.getUint32(i, true) === SIG_EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw bad('no end-of-central-directory record');
  const count = dv.getUint16(eocd + 10, true);
  const cdSize = dv.getUint32(eocd + 12, true);
  const cdOffset = dv.getUint32(eocd + 16, true);
  if (count === 0xffff || cdOffset === 0xffffffff) {
    throw new InputError('zip64 archives are not supported', { file });
  }
  if (cdOffset + cdSize > eocd) throw bad('central directory points past its end');
  const entries: ZipEntry[] = [];
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > buf.length || dv.getUint32(p, true) !== SIG_CDIR) throw bad(`central directory entry ${i} is damaged`);
    const flags = dv.getUint16(p + 8, true);
    const method = dv.getUint16(p + 10, true);
    const crc = dv.getUint32(p + 16, true);
    const compressedSize = dv.getUint32(p + 20, true);
    const size = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    const localOffset = dv.getUint32(p + 42, true);
    const name = Buffer.from(buf.subarray(p + 46, p + 46 + nameLen)).toString('utf8');
    if (flags & 1) throw new InputError(`zip entry '${name}' is encrypted`, { file });
    entries.push({ name, method, compressedSize, size, crc, localOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

export function readZipEntry(buf: Uint8Array, entry: ZipEntry, file: string): Uint8Array {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const where = `${file} (zip entry '${entry.name}')`;
  const o = entry.localOffset;
  if (o + 30 > buf.length || dv.getUint32(o, true) !== SIG_LOCAL) {
    throw new InputError('local header is missing or damaged; the archive is corrupt', { file: where });
  }
  const start = o + 30 + dv.getUint16(o + 26, true) + dv.getUint16(o + 28, true);
  const end = start + entry.compressedSize;
  if (end > buf.length) {
    throw new InputError(`entry data is truncated: needs ${entry.compressedSize} bytes, ${Math.max(0, buf.length - start)} present`, { file: where });
  }
  const raw = buf.subarray(start, end);
  let data: Uint8Array;
  if (entry.method === 0) data = raw;
  else if (entry.method === 8) {
    try {
      data = inflateRawSync(raw);
    } catch (e) {
      throw new InputError(`cannot inflate entry: ${describeError(e)}`, { file: where });
    }
  } else throw new InputError(`unsupported zip compression method ${entry.method}`, { file: where });
  if (data.length !== entry.size) throw new InputError(`entry is ${data.length} bytes, expected ${entry.size}`, { file: where });
  if (crc32(data) !== entry.crc) throw new InputError('CRC mismatch: the archive is corrupt', { file: where });
  return data;
}

/** All entries of a zip, by name. */
export function readZip(buf: Uint8Array, file: string): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const e of listZip(buf, file)) {
    if (e.name.endsWith('/')) continue;
    out.set(e.name, readZipEntry(buf, e, file));
  }
  return out;
}

/** A zip with the given entries (stored, or deflated with `deflate`), as Python's zipfile writes. */
export function writeZip(files: Array<{ name: string; data: Uint8Array }>, opts: { deflate?: boolean } = {}): Uint8Array {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    const method = opts.deflate ? 8 : 0;
    const body = opts.deflate ? deflateRawSync(f.data) : Buffer.from(f.data);
    const crc = crc32(f.data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(SIG_LOCAL, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(0, 6);
    lh.writeUInt16LE(method, 8);
    lh.writeUInt16LE(0, 10); // time
    lh.writeUInt16LE(0x21, 12); // date 1980-01-01
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(body.length, 18);
    lh.writeUInt32LE(f.data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    lh.writeUInt16LE(0, 28);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(SIG_CDIR, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(0, 8);
    ch.writeUInt16LE(method, 10);
    ch.writeUInt16LE(0, 12);
    ch.writeUInt16LE(0x21, 14);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(body.length, 20);
    ch.writeUInt32LE(f.data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(offset, 42);
    locals.push(lh, name, body);
    centrals.push(ch, name);
    offset += lh.length + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(SIG_EOCD, 0);
  eocd.writeUInt16LE(files.length, 8);
  eocd.writeUInt16LE(files.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return new Uint8Array(Buffer.concat([...locals, cd, eocd]));
}

let crcTable: Uint32Array | undefined;
export function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
