/**
 * Canonical Huffman coding of non-negative integer symbol streams (weight codes, index gaps).
 *
 * The encoded blob is self-contained and bit-packed MSB first:
 *   count          32 bits   number of symbols
 *   alphabetSize   16 bits   symbols are 0..alphabetSize-1 (max 65536, stored as alphabetSize-1)
 *   lengths        5 bits per symbol of the alphabet (0 = symbol absent; codes are <= 24 bits)
 *   payload        the canonical codes of the symbols, in order
 * `tableBits` counts the alphabet size and the lengths; `headerBits` the count.
 */

export const HUFFMAN_MAX_CODE_LENGTH = 24;
const LENGTH_FIELD_BITS = 5;
const COUNT_BITS = 32;
const ALPHABET_BITS = 16;

export interface HuffmanEncoded {
  /** The whole self-contained blob (header, table, payload). */
  bytes: Uint8Array;
  /** Code length per symbol (0 = unused). */
  lengths: Uint8Array;
  count: number;
  alphabetSize: number;
  headerBits: number;
  tableBits: number;
  payloadBits: number;
  /** headerBits + tableBits + payloadBits; bytes.length === ceil(totalBits / 8). */
  totalBits: number;
}

/** Symbol frequencies over 0..alphabetSize-1 (alphabetSize defaults to max symbol + 1). */
export function symbolFrequencies(symbols: ArrayLike<number>, alphabetSize?: number): Float64Array {
  let size = alphabetSize ?? 0;
  if (alphabetSize === undefined) for (let i = 0; i < symbols.length; i++) size = Math.max(size, symbols[i] + 1);
  const f = new Float64Array(size);
  for (let i = 0; i < symbols.length; i++) {
    const s = symbols[i];
    if (!Number.isInteger(s) || s < 0 || s >= size) throw new Error(`symbol ${s} at ${i} outside alphabet 0..${size - 1}`);
    f[s]++;
  }
  return f;
}

/**
 * Huffman code lengths from frequencies (0 for absent symbols). A single used symbol gets length 1.
 * Lengths are limited to `maxLength` by repeatedly flattening the frequencies (valid prefix code,
 * near-optimal; the limit only binds for extremely skewed streams).
 */
export function huffmanCodeLengths(freqs: ArrayLike<number>, maxLength = HUFFMAN_MAX_CODE_LENGTH): Uint8Array {
  const n = freqs.length;
  let f = Float64Array.from(freqs);
  const used: number[] = [];
  for (let s = 0; s < n; s++) if (f[s] > 0) used.push(s);
  const lengths = new Uint8Array(n);
  if (used.length === 0) return lengths;
  if (used.length === 1) {
    lengths[used[0]] = 1;
    return lengths;
  }
  if (2 ** maxLength < used.length) throw new Error(`${used.length} symbols cannot fit codes of <= ${maxLength} bits`);
  for (;;) {
    const lens = buildLengths(used.map((s) => f[s]));
    let max = 0;
    for (const l of lens) max = Math.max(max, l);
    if (max <= maxLength) {
      used.forEach((s, i) => (lengths[s] = lens[i]));
      return lengths;
    }
    f = f.map((x) => (x > 0 ? Math.max(1, Math.floor(x / 2)) : 0));
  }
}

/** Code lengths of a Huffman tree over positive weights (two-queue construction after a sort). */
function buildLengths(w: number[]): number[] {
  const m = w.length;
  const order = w.map((_, i) => i).sort((a, b) => w[a] - w[b] || a - b);
  // Nodes 0..m-1 are leaves (in sorted order), m..2m-2 internal.
  const weight = new Float64Array(2 * m - 1);
  const parent = new Int32Array(2 * m - 1).fill(-1);
  for (let i = 0; i < m; i++) weight[i] = w[order[i]];
  let leaf = 0;
  let inner = m;
  let next = m;
  const pick = (): number => {
    if (leaf < m && (inner >= next || weight[leaf] <= weight[inner])) return leaf++;
    return inner++;
  };
  while (next < 2 * m - 1) {
    const a = pick();
    const b = pick();
    weight[next] = weight[a] + weight[b];
    parent[a] = next;
    parent[b] = next;
    next++;
  }
  const depth = new Int32Array(2 * m - 1);
  for (let i = 2 * m - 3; i >= 0; i--) depth[i] = depth[parent[i]] + 1;
  const out = new Array<number>(m);
  for (let i = 0; i < m; i++) out[order[i]] = depth[i];
  return out;
}

/** Canonical codes from lengths: shorter codes first, ties by symbol value. */
export function canonicalCodes(lengths: ArrayLike<number>): Uint32Array {
  const maxLen = Math.max(0, ...Array.from(lengths));
  const blCount = new Uint32Array(maxLen + 1);
  for (let s = 0; s < lengths.length; s++) if (lengths[s] > 0) blCount[lengths[s]]++;
  const nextCode = new Uint32Array(maxLen + 1);
  let code = 0;
  for (let len = 1; len <= maxLen; len++) {
    code = (code + blCount[len - 1]) * 2;
    nextCode[len] = code;
  }
  const codes = new Uint32Array(lengths.length);
  for (let s = 0; s < lengths.length; s++) {
    const l = lengths[s];
    if (l > 0) codes[s] = nextCode[l]++;
  }
  return codes;
}

class BitWriter {
  private buf: Uint8Array;
  private bitPos = 0;
  constructor(totalBits: number) {
    this.buf = new Uint8Array(Math.ceil(totalBits / 8));
  }
  write(value: number, bits: number): void {
    for (let b = bits - 1; b >= 0; b--) {
      if ((value / 2 ** b) & 1) this.buf[this.bitPos >>> 3] |= 0x80 >>> (this.bitPos & 7);
      this.bitPos++;
    }
  }
  get bytes(): Uint8Array {
    return this.buf;
  }
}

class BitReader {
  private bitPos = 0;
  constructor(private readonly buf: Uint8Array) {}
  bit(): number {
    if (this.bitPos >= this.buf.length * 8) throw new Error('huffman stream truncated');
    const v = (this.buf[this.bitPos >>> 3] >>> (7 - (this.bitPos & 7))) & 1;
    this.bitPos++;
    return v;
  }
  read(bits: number): number {
    let v = 0;
    for (let b = 0; b < bits; b++) v = v * 2 + this.bit();
    return v;
  }
}

/** Bits a stream would take (header + table + payload) without producing it. */
export function huffmanEncodedBits(symbols: ArrayLike<number>, alphabetSize?: number): { headerBits: number; tableBits: number; payloadBits: number; totalBits: number; lengths: Uint8Array } {
  const freqs = symbolFrequencies(symbols, alphabetSize);
  const lengths = huffmanCodeLengths(freqs);
  let payloadBits = 0;
  for (let s = 0; s < freqs.length; s++) payloadBits += freqs[s] * lengths[s];
  const tableBits = ALPHABET_BITS + LENGTH_FIELD_BITS * Math.max(1, freqs.length);
  const headerBits = COUNT_BITS;
  return { headerBits, tableBits, payloadBits, totalBits: headerBits + tableBits + payloadBits, lengths };
}

export function huffmanEncode(symbols: ArrayLike<number>, alphabetSize?: number): HuffmanEncoded {
  const size = Math.max(1, alphabetSize ?? symbolFrequencies(symbols).length);
  if (size > 65536) throw new Error(`alphabet of ${size} symbols exceeds 65536`);
  if (symbols.length > 0xffffffff) throw new Error('too many symbols');
  const acc = huffmanEncodedBits(symbols, size);
  const { lengths } = acc;
  const codes = canonicalCodes(lengths);
  const w = new BitWriter(acc.totalBits);
  w.write(symbols.length, COUNT_BITS);
  w.write(size - 1, ALPHABET_BITS);
  for (let s = 0; s < size; s++) w.write(lengths[s], LENGTH_FIELD_BITS);
  for (let i = 0; i < symbols.length; i++) w.write(codes[symbols[i]], lengths[symbols[i]]);
  return { bytes: w.bytes, lengths, count: symbols.length, alphabetSize: size, ...pick(acc) };
}

function pick(a: { headerBits: number; tableBits: number; payloadBits: number; totalBits: number }) {
  return { headerBits: a.headerBits, tableBits: a.tableBits, payloadBits: a.payloadBits, totalBits: a.totalBits };
}

/** Decodes a blob from `huffmanEncode` back to its symbols. */
export function huffmanDecode(bytes: Uint8Array): Uint32Array {
  const r = new BitReader(bytes);
  const count = r.read(COUNT_BITS);
  const size = r.read(ALPHABET_BITS) + 1;
  const lengths = new Uint8Array(size);
  for (let s = 0; s < size; s++) lengths[s] = r.read(LENGTH_FIELD_BITS);
  const maxLen = Math.max(0, ...Array.from(lengths));
  // Canonical decoding tables: symbols sorted by (length, symbol); first code and offset per length.
  const blCount = new Uint32Array(maxLen + 1);
  for (let s = 0; s < size; s++) if (lengths[s] > 0) blCount[lengths[s]]++;
  const sortedSyms: number[] = [];
  for (let len = 1; len <= maxLen; len++) for (let s = 0; s < size; s++) if (lengths[s] === len) sortedSyms.push(s);
  const firstCode = new Float64Array(maxLen + 1);
  const offset = new Uint32Array(maxLen + 1);
  let code = 0;
  let off = 0;
  for (let len = 1; len <= maxLen; len++) {
    code = (code + blCount[len - 1]) * 2;
    firstCode[len] = code;
    offset[len] = off;
    off += blCount[len];
  }
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    let c = 0;
    let len = 0;
    for (;;) {
      c = c * 2 + r.bit();
      len++;
      if (len > maxLen) throw new Error('invalid huffman code in stream');
      const d = c - firstCode[len];
      if (d >= 0 && d < blCount[len]) {
        out[i] = sortedSyms[offset[len] + d];
        break;
      }
    }
  }
  return out;
}
