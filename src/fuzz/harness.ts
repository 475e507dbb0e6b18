/**
 * Runs fuzz cases in a worker thread with a per-case time bound: parseRecipe is synchronous, so a
 * hang can only be stopped from outside. A case that exceeds the bound is a `hang` finding; the
 * worker is replaced and the run goes on with the next case.
 */
import { Worker } from 'node:worker_threads';
import type { CaseResult } from './recipes.js';
import { setOwn } from '../util/own.js';

export interface FuzzRunOptions {
  seed: number;
  count: number;
  /** First index (default 0). */
  start?: number;
  /** Per-case bound in ms (default 5000). */
  caseTimeoutMs?: number;
  onResult?: (r: CaseResult) => void;
}

export interface FuzzSummary {
  results: CaseResult[];
  counts: Record<string, number>;
  /** Findings grouped by signature: count and the first few case indices. */
  findings: Map<string, { count: number; indices: number[]; detail?: string }>;
  slowestMs: number;
}

const WORKER = new URL('./worker.js', import.meta.url);

export async function runFuzz(opts: FuzzRunOptions): Promise<FuzzSummary> {
  const bound = opts.caseTimeoutMs ?? 5000;
  const end = (opts.start ?? 0) + opts.count;
  const results: CaseResult[] = [];
  let next = opts.start ?? 0;
  while (next < end) {
    next = await new Promise<number>((resolve, reject) => {
      const w = new Worker(WORKER, { workerData: { seed: opts.seed, start: next, end } });
      let current = next;
      let timer: NodeJS.Timeout | undefined;
      let finished = false;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          finished = true;
          const r: CaseResult = { index: current, status: 'finding', signature: 'hang', detail: `no result within ${bound} ms`, ms: bound };
          results.push(r);
          opts.onResult?.(r);
          void w.terminate();
          resolve(current + 1);
        }, bound);
      };
      arm();
      w.on('message', (m: { type: 'start'; index: number } | { type: 'result'; result: CaseResult }) => {
        if (finished) return;
        if (m.type === 'start') {
          current = m.index;
          arm();
        } else {
          results.push(m.result);
          opts.onResult?.(m.result);
        }
      });
      w.on('error', (e: Error) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        // The worker itself died (e.g. out of memory): the current case is the culprit.
        const r: CaseResult = { index: current, status: 'finding', signature: `worker-died:${(e as { code?: string }).code ?? e.name}`, detail: e.message, ms: 0 };
        results.push(r);
        opts.onResult?.(r);
        resolve(current + 1);
      });
      w.on('exit', () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        if (results.length && results[results.length - 1].index === end - 1) resolve(end);
        else reject(new Error(`fuzz worker exited early after case ${current}`));
      });
    });
  }
  const counts: Record<string, number> = {};
  const findings: FuzzSummary['findings'] = new Map();
  let slowestMs = 0;
  for (const r of results) {
    setOwn(counts, r.status, (counts[r.status] ?? 0) + 1);
    slowestMs = Math.max(slowestMs, r.ms);
    if (r.status === 'finding') {
      const f = findings.get(r.signature!) ?? { count: 0, indices: [], detail: r.detail };
      f.count++;
      if (f.indices.length < 5) f.indices.push(r.index);
      findings.set(r.signature!, f);
    }
  }
  return { results, counts, findings, slowestMs };
}
