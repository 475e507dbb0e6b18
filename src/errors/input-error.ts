/**
 * An error in something the user handed us (a model file, a data file): the CLI prints its
 * message without a stack trace. The message always names the file, and the layer where one is
 * relevant, so the user can find the problem without a debugger.
 */
export interface InputErrorOptions {
  /** The file at fault (as the user gave it, or resolved). */
  file?: string;
  /** The model layer at fault, if any. */
  layer?: string;
  /** What the user can do about it. */
  hint?: string;
  /** 1-based line (and column) in a text file: the message then starts `file:line:col: `. */
  line?: number;
  column?: number;
  cause?: unknown;
}

export class InputError extends Error {
  readonly file?: string;
  readonly layer?: string;
  readonly hint?: string;
  readonly line?: number;
  readonly column?: number;
  /** The message without the file/layer prefix and the hint. */
  readonly detail: string;

  constructor(detail: string, opts: InputErrorOptions = {}) {
    super(formatInputError(detail, opts), opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'InputError';
    this.detail = detail;
    if (opts.file !== undefined) this.file = opts.file;
    if (opts.layer !== undefined) this.layer = opts.layer;
    if (opts.hint !== undefined) this.hint = opts.hint;
    if (opts.line !== undefined) this.line = opts.line;
    if (opts.column !== undefined) this.column = opts.column;
  }
}

export function isInputError(e: unknown): e is InputError {
  return e instanceof InputError;
}

function formatInputError(detail: string, opts: InputErrorOptions): string {
  let msg = '';
  if (opts.file) {
    msg += opts.file;
    if (opts.line !== undefined) msg += `:${opts.line}${opts.column !== undefined ? `:${opts.column}` : ''}`;
    msg += ': ';
  }
  if (opts.layer) msg += `layer '${opts.layer}': `;
  msg += detail;
  if (opts.hint) msg += `\n  hint: ${opts.hint}`;
  return msg;
}

/** A short, one-line rendering of an unknown thrown value (for wrapping library errors). */
export function describeError(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  const line = s.split('\n').find((l) => l.trim() !== '') ?? s;
  return line.length > 300 ? `${line.slice(0, 297)}...` : line.trim();
}
