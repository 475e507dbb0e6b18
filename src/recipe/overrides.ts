import { parse as parseYamlValue } from 'yaml';
import { UsageError } from './errors.js';

export interface Override {
  /** As the user wrote it, for messages. */
  text: string;
  path: string[];
  value: unknown;
}

/** Parses `--set a.b.c=value`; the value is read as YAML, so `0.8`, `true`, `[1,2]` keep their types. */
export function parseOverride(text: string): Override {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`--set ${text}: expected path=value, e.g. --set stages.prune.with.epochs=3`);
  const path = text.slice(0, eq).trim().split('.');
  if (path.some((p) => p === '')) throw new UsageError(`--set ${text}: empty segment in path '${text.slice(0, eq)}'`);
  let value: unknown;
  try {
    value = parseYamlValue(text.slice(eq + 1));
  } catch (e) {
    throw new UsageError(`--set ${text}: value is not valid YAML (${(e as Error).message.split('\n')[0]})`);
  }
  return { text, path, value: value === undefined ? null : value };
}
