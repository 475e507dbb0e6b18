/** A problem found in a recipe, with where it is. Positions are 1-based, like editors show them. */
export interface RecipeProblem {
  file: string;
  line?: number;
  col?: number;
  /** Dotted path inside the recipe (`stages.prune.with.epochs`), or '' for the document. */
  path: string;
  message: string;
  /** Where the value came from when not from the file, e.g. `--set stages.x.with.y=3`. */
  origin?: string;
}

export function formatProblem(p: RecipeProblem): string {
  const where = p.origin ?? (p.line !== undefined ? `${p.file}:${p.line}:${p.col ?? 1}` : p.file);
  return `${where}  ${p.path || '(recipe)'}  ${p.message}`;
}

/** Thrown when a recipe is invalid; carries every problem found, not just the first. */
export class RecipeError extends Error {
  readonly problems: RecipeProblem[];
  constructor(problems: RecipeProblem[]) {
    super(
      `${problems.length} problem${problems.length === 1 ? '' : 's'} in recipe:\n` +
        problems.map((p) => '  ' + formatProblem(p)).join('\n'),
    );
    this.name = 'RecipeError';
    this.problems = problems;
  }
}

/** Bad command-line usage (exit code 2, like an invalid recipe). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Optimal-string-alignment distance (a swap of two letters counts 1); recipes are short, so O(nm) is fine. */
export function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) dp[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      dp[i][j] = Math.min(dp[i - 1][j] + 1, dp[i][j - 1] + 1, dp[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) dp[i][j] = Math.min(dp[i][j], dp[i - 2][j - 2] + 1);
    }
  }
  return dp[a.length][b.length];
}

/** Suggestions are computed only for words this short: edit distance is O(nm) in time and memory. */
export const MAX_SUGGEST_LENGTH = 64;
/** Longest user value a message echoes; longer ones are cut with their length said. */
export const MAX_SHOWN_LENGTH = 80;

/**
 * A user value as a message shows it: strings with control characters escaped and cut to
 * MAX_SHOWN_LENGTH, other values as compact JSON (never `[object Object]`), NaN and infinities by name.
 */
export function shown(value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean' || value === null || value === undefined) text = String(value);
  else if (value instanceof Set) text = JSON.stringify([...value]);
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = Object.prototype.toString.call(value);
    }
  }
  // eslint-disable-next-line no-control-regex
  const escaped = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  return escaped.length > MAX_SHOWN_LENGTH ? `${escaped.slice(0, MAX_SHOWN_LENGTH)}… (${text.length} characters)` : escaped;
}

/** The closest candidate when it is close enough to be a likely typo (none for long words: see MAX_SUGGEST_LENGTH). */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  if (word.length > MAX_SUGGEST_LENGTH) return undefined;
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    if (c.length > MAX_SUGGEST_LENGTH) continue;
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  const limit = Math.max(1, Math.floor(word.length / 3));
  return best !== undefined && bestD <= limit ? best : undefined;
}

export function suggestion(word: string, candidates: Iterable<string>): string {
  const s = didYouMean(word, candidates);
  return s ? `; did you mean '${s}'?` : '';
}
