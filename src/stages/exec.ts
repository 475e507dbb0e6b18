import { readFile } from 'node:fs/promises';
import type { FromSchema } from 'json-schema-to-ts';
import { confinedPath } from '../util/paths.js';
import { checkOutputs, workspaceFiles } from './exec-files.js';
import { expandTemplate, templateRefs } from '../recipe/interpolate.js';
import { defineStage, type StageContext } from './types.js';
import { setOwn } from '../util/own.js';

export const execWithSchema = {
  type: 'object',
  properties: {
    command: {
      type: 'array',
      minItems: 1,
      items: { type: ['string', 'number', 'boolean'] },
      description:
        'program and arguments, run without a shell; ${inputs.<stage>} (an upstream stage\'s output directory) and ${outputs} (this stage\'s) are substituted inside arguments, once ($$ is a literal $; ${params.x} text stays literal)',
    },
    inputs: { type: 'array', items: { type: 'string', minLength: 1, 'x-compress-path': { what: 'input', root: 'workspace' } }, uniqueItems: true, default: [], description: 'files or directories the command reads, relative to the recipe: their content is part of the cache key' },
    outputs: { type: 'array', items: { type: 'string', minLength: 1, 'x-compress-path': { what: 'output', root: 'output' } }, uniqueItems: true, default: [], description: 'files the command must write under ${outputs}' },
    metrics: { type: 'string', minLength: 1, 'x-compress-path': { what: 'metrics file', root: 'output' }, description: 'a JSON object of numeric metrics the command writes under ${outputs} (gates can use them)' },
    env: {
      type: 'array',
      items: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
      uniqueItems: true,
      default: [],
      description: 'environment variables passed from compress\'s environment (PATH always is); nothing else is',
    },
    timeoutSeconds: { type: 'number', exclusiveMinimum: 0, default: 3600, description: 'the command is killed after this long' },
    gates: { type: 'array', items: { type: 'string', minLength: 1 } },
  },
  required: ['command'],
  additionalProperties: false,
} as const;

export type ExecWith = FromSchema<typeof execWithSchema>;


/**
 * Variables a child always gets besides the allowlist. On POSIX only PATH (to find programs); Windows
 * programs cannot start without SystemRoot and friends. Everything else (HOME, LANG, tokens) must be
 * listed in `env`, so secrets in compress's environment never reach a command by accident.
 */
const ALWAYS_ENV = process.platform === 'win32' ? ['PATH', 'SYSTEMROOT', 'WINDIR', 'COMSPEC', 'PATHEXT', 'TEMP', 'TMP'] : ['PATH'];

/** Which `needs` entry `${inputs.<name>}` means: the stage itself, or the one sweep branch of it (`prune[...]`). */
function inputId(name: string, needs: string[]): string | undefined {
  if (needs.includes(name)) return name;
  const branches = needs.filter((n) => n.startsWith(`${name}[`));
  return branches.length === 1 ? branches[0] : undefined;
}

/** The problem with one `${...}` reference, or undefined when it will be substituted. */
function badReference(ref: string, needs: string[]): string | undefined {
  if (ref === 'outputs') return undefined;
  const m = /^inputs\.(.+)$/.exec(ref);
  if (m) return inputId(m[1], needs) ? undefined : `'\${${ref}}': '${m[1]}' is not in needs (needs: ${needs.join(', ') || 'none'})`;
  return `unknown reference '\${${ref}}': only \${inputs.<stage>} and \${outputs} are substituted (no shell runs the command, so environment variables are not expanded)`;
}

/** argv with placeholders replaced by plain text: each element stays one argument, whatever it contains. */
export function substitute(command: ExecWith['command'], outDir: string, inputs: Array<{ id: string; dir: string }>): string[] {
  const ids = inputs.map((i) => i.id);
  return command.map((part) =>
    expandTemplate(String(part), (ref) => {
      if (ref === 'outputs') return outDir;
      const id = inputId(ref.slice('inputs.'.length), ids);
      const input = inputs.find((i) => i.id === id);
      if (!ref.startsWith('inputs.') || !input) throw new Error(`command reference '\${${ref}}' cannot be resolved`);
      return input.dir;
    }),
  );
}

export function childEnv(allow: readonly string[], from: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...ALWAYS_ENV, ...allow]) {
    // Windows spells variable names in any case; match them the way it does.
    const key = process.platform === 'win32' ? Object.keys(from).find((k) => k.toUpperCase() === name.toUpperCase()) : name;
    const v = key === undefined ? undefined : from[key];
    if (v !== undefined) setOwn(env, name, v);
  }
  return env;
}

/** The last lines of a stream, kept bounded however much the command prints. */
class Tail {
  private lines: string[] = [];
  private partial = '';
  constructor(private readonly max: number) {}
  push(chunk: string, each: (line: string) => void): void {
    const parts = (this.partial + chunk).split(/\r?\n/);
    this.partial = parts.pop()!;
    for (const l of parts) this.add(l, each);
  }
  end(each: (line: string) => void): void {
    if (this.partial) this.add(this.partial, each);
    this.partial = '';
  }
  private add(line: string, each: (line: string) => void): void {
    each(line);
    this.lines.push(line.length > 500 ? `${line.slice(0, 500)}…` : line);
    if (this.lines.length > this.max) this.lines.shift();
  }
  text(): string {
    return this.lines.join('\n');
  }
}

async function runCommand(ctx: StageContext<ExecWith>, argv: string[]): Promise<void> {
  const w = ctx.with;
  const [file, ...args] = argv;
  const stdout = new Tail(20);
  const stderr = new Tail(20);
  const log = (stream: string) => (line: string) => {
    ctx.log(`${stream}: ${line}`);
    ctx.progress({ message: line.slice(0, 120) });
  };
  ctx.progress({ message: `running ${file}` });
  const { execa } = await import('execa');
  const child = execa(file, args, {
    shell: false,
    cwd: ctx.workspace,
    extendEnv: false,
    env: childEnv(w.env ?? []),
    stdin: 'ignore',
    buffer: false,
    reject: false,
    timeout: (w.timeoutSeconds ?? 3600) * 1000,
    cancelSignal: ctx.signal,
    // SIGTERM first so the program can clean up; SIGKILL if it does not stop.
    forceKillAfterDelay: 3000,
    windowsHide: true,
  });
  child.stdout?.setEncoding('utf8').on('data', (d: string) => stdout.push(d, log('stdout')));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => stderr.push(d, log('stderr')));
  const r = await child;
  stdout.end(log('stdout'));
  stderr.end(log('stderr'));
  const tail = stderr.text() || stdout.text();
  const shown = tail ? `; last output:\n${tail}` : '';
  const name = `command '${file}'`;
  if (r.timedOut) throw new Error(`${name} timed out after ${w.timeoutSeconds ?? 3600} s and was killed (timeoutSeconds)${shown}`);
  if (r.isCanceled) throw new Error(`${name} was interrupted`);
  if (r.code === 'ENOENT') throw new Error(`${name} not found (searched PATH=${childEnv([]).PATH ?? ''}; the command runs without a shell)`);
  if (r.code === 'EACCES') throw new Error(`${name} is not executable`);
  if (r.signal) throw new Error(`${name} was killed by ${r.signal}${shown}`);
  if (r.exitCode !== 0) throw new Error(`${name} exited with code ${r.exitCode ?? '?'}${shown}`);
}

/** The metrics file: a JSON object whose finite numbers become the stage's metrics. */
async function readMetrics(ctx: StageContext<ExecWith>, path: string): Promise<Record<string, number>> {
  const file = confinedPath(ctx.outDir, path, 'metrics file', "the stage's output directory");
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `the command did not write its metrics file '${path}'` : `metrics file '${path}' is not valid JSON: ${(e as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`metrics file '${path}' must hold a JSON object of numbers`);
  const out: Record<string, number> = {};
  const skipped: string[] = [];
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v === 'number' && Number.isFinite(v)) setOwn(out, k, v);
    else skipped.push(k);
  }
  if (skipped.length) ctx.log(`metrics file '${path}': ignored non-numeric ${skipped.join(', ')}`);
  return out;
}

export const execStage = defineStage<ExecWith>({
  kind: 'exec',
  version: '1',
  description: 'run a program (no shell) on declared inputs; its declared output files become the artifact',
  withSchema: execWithSchema,
  datasets: () => [],
  // The cache key holds these digests, the command, and the env *names*. Values are left out on
  // purpose: HOME or LANG differ between machines and CI, and keying on them would re-run everything
  // everywhere and break --frozen; a value that changes the output belongs in the command (${params.x}).
  files: (w, workspace) => workspaceFiles(workspace, w.inputs ?? []),
  producesModel: false,
  metrics: [],
  openMetrics: (w) => Boolean(w.metrics),
  needsModels: [0, Infinity],
  templates: ['command'],
  check(w, stage) {
    const problems: Array<{ path: Array<string | number>; message: string }> = [];
    if (typeof w.command[0] !== 'string' || !w.command[0].trim()) problems.push({ path: ['with', 'command', 0], message: 'the first element must name the program to run' });
    w.command.forEach((part, i) => {
      for (const ref of templateRefs(String(part))) {
        const bad = badReference(ref, stage.needs);
        if (bad) problems.push({ path: ['with', 'command', i], message: bad });
      }
    });
    return problems;
  },
  async run(ctx) {
    const w = ctx.with;
    // files() already digested the inputs; here a missing one is an error, not a changed key.
    workspaceFiles(ctx.workspace, w.inputs ?? [], true);
    await runCommand(ctx, substitute(w.command, ctx.outDir, ctx.inputs));
    checkOutputs(ctx.outDir, [...(w.outputs ?? []), ...(w.metrics ? [w.metrics] : [])]);
    return { metrics: w.metrics ? await readMetrics(ctx, w.metrics) : {} };
  },
});
