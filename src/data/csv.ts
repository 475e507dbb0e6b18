import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { InputError, describeError } from '../errors/input-error.js';

/**
 * Numeric CSV tables (features, optionally with a label column). Blank lines and lines starting
 * with `#` (numpy.savetxt headers) are skipped; fields may be double-quoted; `nan`/`inf` parse to
 * NaN/Infinity (validation reports them); anything else non-numeric is an InputError at
 * file:line:col.
 */
export interface CsvTable {
  file: string;
  /** Column names when the file has a header line. */
  header?: string[];
  rows: number;
  cols: number;
  /** rows * cols values, row-major. */
  values: Float64Array;
  /** 1-based line number of each row. */
  lines: Int32Array;
  /** 1-based character column where each field starts, per row (rows * cols). */
  columns: Int32Array;
}

export interface CsvOptions {
  /** true: first line is a header; false: it is data; 'auto' (default): a header if any field of it is not a number. */
  header?: boolean | 'auto';
  /** Field separator; default ',' (tab for .tsv). */
  delimiter?: string;
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const SPECIAL = /^([+-]?)(nan|inf|infinity)$/i;

export function parseNumber(s: string): number | undefined {
  const t = s.trim();
  if (NUMBER.test(t)) return Number(t);
  const m = t.match(SPECIAL);
  if (m) return m[2].toLowerCase() === 'nan' ? NaN : m[1] === '-' ? -Infinity : Infinity;
  return undefined;
}

export function readCsv(path: string, opts: CsvOptions = {}): CsvTable {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read: ${describeError(e)}`, { file: path });
  }
  const delimiter = opts.delimiter ?? (extname(path).toLowerCase() === '.tsv' ? '\t' : ',');
  return parseCsv(text, path, { ...opts, delimiter });
}

/** Splits one line into fields with their 1-based start columns. */
function splitLine(line: string, delim: string, file: string, lineNo: number): Array<{ text: string; col: number }> {
  const out: Array<{ text: string; col: number }> = [];
  let i = 0;
  for (;;) {
    const col = i + 1;
    let text = '';
    // leading spaces before a quote
    let j = i;
    while (line[j] === ' ') j++;
    if (line[j] === '"') {
      j++;
      for (;;) {
        if (j >= line.length) throw new InputError('unterminated quoted field', { file, line: lineNo, column: col });
        if (line[j] === '"') {
          if (line[j + 1] === '"') {
            text += '"';
            j += 2;
            continue;
          }
          j++;
          break;
        }
        text += line[j++];
      }
      while (line[j] === ' ') j++;
      if (j < line.length && !line.startsWith(delim, j)) {
        throw new InputError('unexpected text after a quoted field', { file, line: lineNo, column: j + 1 });
      }
      i = j;
    } else {
      const k = line.indexOf(delim, i);
      text = k < 0 ? line.slice(i) : line.slice(i, k);
      i = k < 0 ? line.length : k;
    }
    out.push({ text, col });
    if (i >= line.length) break;
    i += delim.length;
    if (i > line.length) break;
  }
  return out;
}

export function parseCsv(text: string, file: string, opts: CsvOptions = {}): CsvTable {
  const delim = opts.delimiter ?? ',';
  const rawLines = text.split(/\r?\n/);
  let header: string[] | undefined;
  let cols = -1;
  let firstDataLine = 0;
  const values: number[] = [];
  const lines: number[] = [];
  const columns: number[] = [];
  let first = true;
  for (let li = 0; li < rawLines.length; li++) {
    const line = rawLines[li];
    const lineNo = li + 1;
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const fields = splitLine(line, delim, file, lineNo);
    if (first) {
      first = false;
      const isHeader = opts.header === 'auto' || opts.header === undefined ? fields.some((f) => parseNumber(f.text) === undefined) : opts.header;
      cols = fields.length;
      firstDataLine = lineNo;
      if (isHeader) {
        header = fields.map((f) => f.text.trim());
        continue;
      }
    }
    if (fields.length !== cols) {
      throw new InputError(`expected ${cols} fields (as on line ${firstDataLine}), found ${fields.length}`, { file, line: lineNo });
    }
    for (let c = 0; c < fields.length; c++) {
      const f = fields[c];
      const v = parseNumber(f.text);
      if (v === undefined) {
        const empty = f.text.trim() === '';
        const what = empty ? 'empty field' : `cannot parse ${JSON.stringify(f.text.trim().slice(0, 40))} as a number`;
        const name = header ? ` (column '${header[c]}')` : ` (column ${c + 1})`;
        // Text class names are the usual cause: say how to turn them into the indices compress reads.
        const hint = empty
          ? 'fill or drop missing values before compressing'
          : "every field is a number: text class names must become 0-based class indices, in the model's output order (pandas, sorted names: df[col] = df[col].astype('category').cat.codes)";
        throw new InputError(`${what}${name}`, { file, line: lineNo, column: f.col, hint });
      }
      values.push(v);
      columns.push(f.col);
    }
    lines.push(lineNo);
  }
  return {
    file,
    ...(header ? { header } : {}),
    rows: lines.length,
    cols: Math.max(cols, 0),
    values: Float64Array.from(values),
    lines: Int32Array.from(lines),
    columns: Int32Array.from(columns),
  };
}

/** Resolves a label column given by name (needs a header) or 0-based index (negative: from the end). */
export function resolveColumn(table: CsvTable, column: string | number): number {
  if (typeof column === 'number') {
    const c = column < 0 ? table.cols + column : column;
    if (!Number.isInteger(c) || c < 0 || c >= table.cols) {
      throw new InputError(`label column ${column} is out of range: the file has ${table.cols} columns (0-based index)`, { file: table.file });
    }
    return c;
  }
  if (/^-?\d+$/.test(column)) return resolveColumn(table, Number(column));
  if (!table.header) {
    throw new InputError(`label column '${column}' given by name, but the file has no header line`, { file: table.file, hint: 'give the column as a 0-based index' });
  }
  const c = table.header.indexOf(column);
  if (c < 0) {
    throw new InputError(`no column named '${column}' (columns: ${table.header.slice(0, 10).join(', ')}${table.header.length > 10 ? ', ...' : ''})`, { file: table.file });
  }
  return c;
}

export interface CsvSplit {
  /** rows * (cols - 1) feature values (or rows * cols without a label column), row-major. */
  features: Float32Array;
  featureCols: number;
  labels?: Float64Array;
  labelColumn?: number;
  /** Line and column of feature value `i` (flat index into features). */
  locateFeature(i: number): { line: number; column: number };
  /** Line and column of label `row`. */
  locateLabel(row: number): { line: number; column: number };
}

/** Separates the label column (if any) from the features. */
export function splitLabelColumn(table: CsvTable, labelColumn?: string | number): CsvSplit {
  const lc = labelColumn === undefined ? undefined : resolveColumn(table, labelColumn);
  const fcols = lc === undefined ? table.cols : table.cols - 1;
  const features = new Float32Array(table.rows * fcols);
  const labels = lc === undefined ? undefined : new Float64Array(table.rows);
  for (let r = 0; r < table.rows; r++) {
    let k = 0;
    for (let c = 0; c < table.cols; c++) {
      const v = table.values[r * table.cols + c];
      if (c === lc) labels![r] = v;
      else features[r * fcols + k++] = v;
    }
  }
  const srcCol = (fc: number) => (lc !== undefined && fc >= lc ? fc + 1 : fc);
  return {
    features,
    featureCols: fcols,
    ...(labels ? { labels, labelColumn: lc } : {}),
    locateFeature: (i: number) => {
      const r = Math.floor(i / Math.max(fcols, 1));
      const c = srcCol(i % Math.max(fcols, 1));
      return { line: table.lines[r], column: table.columns[r * table.cols + c] };
    },
    locateLabel: (r: number) => ({ line: table.lines[r], column: lc === undefined ? 1 : table.columns[r * table.cols + lc] }),
  };
}
