import { Command, CommanderError, Option } from 'commander';
import { VERSION } from './version.js';
import { BACKEND_CHOICES } from './engine/backend.js';
import { RecipeError, UsageError, formatProblem } from './recipe/errors.js';
import { CacheBusyError, FrozenLockError } from './run/errors.js';
import { collect, parseConcurrency } from './commands/args.js';
import { EXIT } from './exit-codes.js';
import { mark } from './util/timings.js';

// Each command's module is imported when that command runs: `--help` and `validate` load neither the
// engine nor the runtimes (see bench/startup.ts).


function program(): Command {
  const p = new Command('compress')
    .description('Turn a neural network into smaller, faster deployable models from a YAML recipe.')
    .version(VERSION)
    .option('--verbose', 'print stack traces and worker output')
    .exitOverride()
    .showSuggestionAfterError()
    .addHelpText('after', `\nExit codes: 0 ok, 1 a stage failed, 2 invalid recipe or usage (or --frozen mismatch, or verify found outputs differing from the lock), 3 a gate failed, 75 cache gc/clean refused while a run uses the cache, 130 interrupted (SIGINT), 143 stopped by SIGTERM, 129 by SIGHUP.`);
  const setOpt = () => new Option('--set <path=value>', 'override a recipe value, e.g. stages.prune.with.epochs=3 (repeatable)').argParser(collect);

  p.command('run')
    .description('run the recipe\'s stages in dependency order, re-running only what changed')
    .argument('[recipe]', 'recipe file', undefined)
    .addOption(setOpt())
    .option('--cache-dir <dir>', 'cache directory (default: env COMPRESS_CACHE_DIR, recipe cache.dir, .compress/cache)')
    .option('-j, --concurrency <n>', 'stages run at once (default: CPU count)', parseConcurrency)
    .option('--only <stage>', 'run only this stage; its upstream must be cached (repeatable)', collect)
    .option('--from <stage>', 'run this stage and everything downstream of it')
    .option('--until <stage>', 'run this stage and everything upstream of it')
    .option('--force [stages...]', 'ignore the cache (for the given stages, or all selected)')
    .option('--frozen', 'fail (exit 2) if the run would change the lock file: the CI mode')
    .addOption(new Option('--backend <name>', 'engine backend').choices(BACKEND_CHOICES))
    .option('--remote <url>', 'shared remote cache s3://bucket/prefix (default: env COMPRESS_REMOTE, recipe cache.remote)')
    .option('--no-remote', 'use the local cache only')
    .option('--push', 'upload computed stages to the remote (default: yes, except on CI outside cache.trustedRefs)')
    .option('--no-push', 'read the remote, never write it')
    .option('--queue <url>', 'send stages to `compress worker`s through this Redis (redis://host:port); needs a remote cache')
    .option('--json', 'machine-readable events (one JSON object per line) and summary')
    .option('-q, --quiet', 'print only errors')
    .action(async (recipe, opts, cmd) => {
      const force = opts.force === true ? true : Array.isArray(opts.force) ? opts.force : undefined;
      // `--force [stages...]` takes every word after it: a recipe path written last lands there.
      const file = Array.isArray(force) && recipe === undefined ? force.find((f: string) => /\.ya?ml$/.test(f)) : undefined;
      if (file) throw new UsageError(`--force took '${file}' as a stage name; write the recipe path before --force (compress run ${file} --force ${force.filter((f: string) => f !== file).join(' ')})`);
      const { runCommand } = await import('./commands/run.js');
      process.exitCode = await runCommand(recipe, { ...opts, force, verbose: cmd.optsWithGlobals().verbose });
    });

  p.command('worker')
    .description('compute stages that `compress run --queue` sends, from this checkout (inputs and outputs go through the remote cache)')
    .requiredOption('--queue <url>', 'the Redis the coordinator uses (redis://host:port)')
    .option('-j, --concurrency <n>', 'stages computed at once (default 1)', parseConcurrency)
    .option('--cache-dir <dir>', 'local cache directory (default as for run)')
    .option('--remote <url>', 'remote cache s3://bucket/prefix (default: env COMPRESS_REMOTE, recipe cache.remote)')
    .action(async (opts) => {
      const { workerCommand } = await import('./commands/worker.js');
      process.exitCode = await workerCommand(opts);
    });

  p.command('verify')
    .description('recompute stages in a temporary cache and check their outputs against the lock file (your outputs, lock and cache are untouched); exit 2 when any differs')
    .argument('[recipe]', 'recipe file', undefined)
    .addOption(setOpt())
    .option('--only <stage>', 'verify only this stage (repeatable); its inputs come from the cache when it holds them as locked, else are recomputed too', collect)
    .option('--cache-dir <dir>', 'the cache --only reads inputs from (read only; default as for run)')
    .option('-j, --concurrency <n>', 'stages run at once (default: CPU count)', parseConcurrency)
    .addOption(new Option('--backend <name>', 'engine backend').choices(BACKEND_CHOICES))
    .option('--remote <url>', 'remote cache that --only inputs are fetched from (verified) when the local cache lacks them; default env COMPRESS_REMOTE, recipe cache.remote')
    .option('--keep', 'keep the recomputed outputs (the path is printed) to diff them')
    .option('--json', 'machine-readable result')
    .option('-q, --quiet', 'print only stages that differ and errors')
    .action(async (recipe, opts, cmd) => {
      const { verifyCommand } = await import('./commands/verify.js');
      process.exitCode = await verifyCommand(recipe, { ...opts, verbose: cmd.optsWithGlobals().verbose });
    });

  p.command('validate')
    .description('check a recipe against the schema and the stage graph; print every problem with its position')
    .argument('[recipe]')
    .addOption(setOpt())
    .action(async (recipe, opts) => {
      const { validateCommand } = await import('./commands/inspect.js');
      process.exitCode = await validateCommand(recipe, opts);
    });

  p.command('plan')
    .description('print the stage graph')
    .argument('[recipe]')
    .addOption(setOpt())
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'mermaid', 'dot', 'json']).default('text'))
    .option('--status', 'annotate stages with cached/stale')
    .option('--cache-dir <dir>', 'cache directory')
    .action(async (recipe, opts) => {
      const { planCommand } = await import('./commands/inspect.js');
      process.exitCode = await planCommand(recipe, opts);
    });

  p.command('status')
    .description('show which stages are cached (locally, or in the remote cache) and why the others would run, without running anything')
    .argument('[recipe]')
    .addOption(setOpt())
    .option('--cache-dir <dir>', 'cache directory')
    .option('--remote <url>', 'also look stages up in this remote cache s3://bucket/prefix, one small GET each (default: env COMPRESS_REMOTE, recipe cache.remote)')
    .option('--no-remote', 'the local cache only')
    .option('--json', 'machine-readable output')
    .action(async (recipe, opts) => {
      const { statusCommand } = await import('./commands/inspect.js');
      process.exitCode = await statusCommand(recipe, opts);
    });

  p.command('report')
    .description('print the summary of the latest run (or of [run]: a run id, latest, previous, or a report dir); --compare two runs')
    .argument('[run]', 'run id (or unique prefix), latest, previous, or a report directory', undefined)
    .option('--recipe <file>', 'recipe whose runs to read (reports live in <recipe dir>/.compress/reports/)', 'compress.config.yaml')
    .addOption(new Option('--format <format>', 'md: the summary; json: report.json; html-path: where report.html is').choices(['md', 'json', 'html-path']).default('md'))
    .option('--compare <runs...>', 'what changed from run A to run B: metrics per stage and which stages re-ran (e.g. --compare previous latest)')
    .action(async (run, opts) => {
      const { reportCommand } = await import('./commands/report.js');
      process.exitCode = await reportCommand(run, opts);
    });

  const cache = p.command('cache').description('inspect and prune the artifact cache');
  cache.command('ls').argument('[recipe]').option('--cache-dir <dir>').option('--json').description('list cache entries').action(async (recipe, opts) => {
    const { cacheLs } = await import('./commands/cache.js');
    process.exitCode = await cacheLs(recipe, opts);
  });
  cache.command('gc').argument('[recipe]').option('--cache-dir <dir>').description('remove entries the recipe and its lock no longer reference (what the other locks in its directory, or written from runs on this cache, name is kept)').action(async (recipe, opts) => {
    const { cacheGc } = await import('./commands/cache.js');
    process.exitCode = await cacheGc(recipe, opts);
  });
  cache.command('push').argument('[recipe]').addOption(setOpt()).option('--cache-dir <dir>').option('--remote <url>', 'remote s3://bucket/prefix (default: env COMPRESS_REMOTE, recipe cache.remote)').option('--push', 'push even where the run would be read-only (CI outside cache.trustedRefs)').option('-q, --quiet')
    .description('upload the entries the lock names to the remote cache (objects first, record last)').action(async (recipe, opts) => {
      const { cachePush } = await import('./commands/remote.js');
      process.exitCode = await cachePush(recipe, opts);
    });
  cache.command('pull').argument('[recipe]').addOption(setOpt()).option('--cache-dir <dir>').option('--remote <url>', 'remote s3://bucket/prefix (default: env COMPRESS_REMOTE, recipe cache.remote)').option('-q, --quiet')
    .description('fetch the entries the lock names from the remote cache into the local one, verifying every digest').action(async (recipe, opts) => {
      const { cachePull } = await import('./commands/remote.js');
      process.exitCode = await cachePull(recipe, opts);
    });
  cache.command('clean').argument('[recipe]').option('--cache-dir <dir>').description('remove the whole cache').action(async (recipe, opts) => {
    const { cacheClean } = await import('./commands/cache.js');
    process.exitCode = await cacheClean(recipe, opts);
  });

  p.command('layers')
    .description('list a model\'s layers (name, type, shape, params, sparsity) to write selectors from')
    .argument('<model-or-stage>', 'a stage id of the recipe, a model path (model.json, .h5, .keras, .onnx) or a built-in architecture')
    .option('--recipe <file>', 'recipe to look stages up in', 'compress.config.yaml')
    .option('--json', 'machine-readable output')
    .action(async (target, opts) => {
      const { layersCommand } = await import('./commands/layers.js');
      process.exitCode = await layersCommand(target, opts);
    });

  p.command('init')
    .description('write a starter recipe (for a model file when given one); asks nothing')
    .argument('[model]', 'a TF.js model.json (layers or graph model), Keras .h5 / .keras, or ONNX .onnx file')
    .option('-o, --output <file>', 'recipe to write', 'compress.config.yaml')
    .option('--force', 'overwrite an existing recipe')
    .action(async (model, opts) => {
      const { initCommand } = await import('./commands/init.js');
      process.exitCode = await initCommand(model, opts);
    });
  return p;
}

/** Runs the CLI; every error becomes a message and a documented exit code (stack only with --verbose). */
export async function main(argv: string[]): Promise<number> {
  mark('node and CLI loaded');
  const verbose = argv.includes('--verbose');
  try {
    await program().parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.ok;
      return EXIT.usage;
    }
    if (e instanceof RecipeError) {
      for (const p of e.problems) process.stderr.write(formatProblem(p) + '\n');
      process.stderr.write(`${e.problems.length} problem${e.problems.length === 1 ? '' : 's'}; recipe not run\n`);
      return EXIT.usage;
    }
    if (e instanceof UsageError || e instanceof FrozenLockError) {
      process.stderr.write(`error: ${e.message}\n`);
      return EXIT.usage;
    }
    if (e instanceof CacheBusyError) {
      process.stderr.write(`error: ${e.message}\n`);
      return EXIT.cacheBusy;
    }
    const err = e as Error;
    process.stderr.write(`error: ${err?.message ?? String(e)}\n`);
    if (verbose && err?.stack) process.stderr.write(err.stack + '\n');
    return EXIT.stageFailed;
  }
}
