import { Listr, type ListrTaskWrapper } from 'listr2';
import type { RunEvent, StageOutcome } from './execute.js';

export type ProgressMode = 'tty' | 'plain' | 'json' | 'quiet';

export function progressMode(opts: { json?: boolean; quiet?: boolean }): ProgressMode {
  if (opts.json) return 'json';
  if (opts.quiet) return 'quiet';
  return process.stdout.isTTY && !process.env.CI ? 'tty' : 'plain';
}

interface StageSlot {
  resolve: () => void;
  reject: (e: Error) => void;
  task?: ListrTaskWrapper<unknown, any, any>;
  pending: Array<(t: ListrTaskWrapper<unknown, any, any>) => void>;
  lastPlain?: number;
  ended?: boolean;
}

/**
 * The run's display: listr2 with one task a stage (animated on a TTY, one line per event otherwise),
 * NDJSON events with --json, nothing with --quiet. The runner only emits events; this turns them
 * into output.
 */
export function createProgress(mode: ProgressMode, stages: Array<{ id: string; uses: string }>, verbose = false) {
  if (mode === 'json') {
    return {
      onEvent(e: RunEvent) {
        const noStack = (o: StageOutcome): StageOutcome => (o.error ? { ...o, error: { ...o.error, stack: undefined } } : o);
        const out = verbose ? e : e.type === 'stage-end' ? { ...e, outcome: noStack(e.outcome) } : e.type === 'run-end' ? { ...e, summary: { ...e.summary, stages: e.summary.stages.map(noStack) } } : e;
        process.stdout.write(JSON.stringify(out) + '\n');
      },
      done: async () => undefined,
    };
  }
  if (mode === 'quiet') return { onEvent: (_e: RunEvent) => undefined, done: async () => undefined };

  const slots = new Map<string, StageSlot>();
  const withTask = (id: string, f: (t: ListrTaskWrapper<unknown, any, any>) => void) => {
    const s = slots.get(id);
    if (!s) return;
    if (s.task) f(s.task);
    else s.pending.push(f);
  };
  const tasks = stages.map((st) => ({
    title: `${st.id} (${st.uses})`,
    task: (_ctx: unknown, task: ListrTaskWrapper<unknown, any, any>) =>
      new Promise<void>((resolve, reject) => {
        const slot = slots.get(st.id)!;
        slot.resolve = resolve;
        slot.reject = reject;
        slot.task = task;
        for (const f of slot.pending.splice(0)) f(task);
      }),
  }));
  for (const st of stages) slots.set(st.id, { resolve: () => undefined, reject: () => undefined, pending: [] });
  const listr = new Listr(tasks, {
    concurrent: true,
    exitOnError: false,
    // listr2's own SIGINT handler exits 127 at once; `compress run` handles Ctrl-C itself (exit 130).
    registerSignalListeners: false,
    renderer: mode === 'tty' ? 'default' : 'simple',
    rendererOptions: mode === 'tty' ? { collapseErrors: false, formatOutput: 'truncate' } : { timestamp: undefined },
    fallbackRenderer: 'simple',
  } as never);
  const running = listr.run().catch(() => undefined);
  const label = (st: { id: string; uses: string }) => `${st.id} (${st.uses})`;
  const byId = new Map(stages.map((s) => [s.id, s]));
  return {
    onEvent(e: RunEvent) {
      switch (e.type) {
        case 'stage-start':
          withTask(e.id, (t) => {
            t.title = `${label(byId.get(e.id)!)}: running (${e.reason})`;
          });
          break;
        case 'stage-progress':
          withTask(e.id, (t) => {
            // Plain logs get a line every few seconds, not one per batch.
            const slot = slots.get(e.id)!;
            if (mode === 'plain') {
              const now = Date.now();
              if (slot.lastPlain && now - slot.lastPlain < 5000) return;
              slot.lastPlain = now;
            }
            t.output = e.message;
          });
          break;
        case 'stage-log':
          withTask(e.id, (t) => {
            t.output = e.message;
          });
          break;
        case 'stage-end':
          finish(e.outcome);
          break;
        case 'warning':
          process.stderr.write(`warning: ${e.message}\n`);
          break;
        default:
          break;
      }
    },
    async done() {
      // A run that ended early (an error before stages ran, or stages outside the selection) leaves
      // tasks open; close them so the display ends instead of waiting forever.
      for (const [id, slot] of slots) if (!slot.ended) withTask(id, (t) => {
        t.skip(`${label(byId.get(id)!)}: not run`);
        slot.resolve();
      });
      await running;
    },
  };

  function finish(o: StageOutcome) {
    const s = slots.get(o.id);
    if (s) s.ended = true;
    withTask(o.id, (t) => {
      const slot = slots.get(o.id)!;
      const st = byId.get(o.id)!;
      if (o.status === 'cached') {
        t.title = `${label(st)}: cached`;
        slot.resolve();
      } else if (o.status === 'ran') {
        t.title = `${label(st)}: ran in ${o.seconds.toFixed(1)} s (${o.reason})`;
        slot.resolve();
      } else if (o.status === 'skipped' || o.status === 'interrupted') {
        t.skip(`${label(st)}: skipped (${o.reason})`);
        slot.resolve();
      } else {
        // The reason is printed once, with the run's summary (`error: stage '<id>' failed: ...`).
        slot.reject(new Error(`${label(st)}: failed`));
      }
    });
  }
}
