import { resolve } from 'node:path';
import { UsageError } from '../recipe/errors.js';

export interface WorkerFlags {
  queue?: string;
  concurrency?: number;
  cacheDir?: string;
  remote?: string;
}

/** `compress worker --queue redis://…`: computes stage jobs until SIGINT/SIGTERM. */
export async function workerCommand(flags: WorkerFlags): Promise<number> {
  if (!flags.queue) throw new UsageError('compress worker needs --queue redis://host:port');
  const { startQueueWorker } = await import('../run/queue-worker.js');
  const log = (l: string) => process.stderr.write(`${new Date().toISOString()} ${l}\n`);
  // COMPRESS_QUEUE_LOCK_MS: how soon a killed worker's job is taken over (default 30 s; tests use less).
  const lockMs = Number(process.env.COMPRESS_QUEUE_LOCK_MS ?? 30000);
  const { worker, close } = startQueueWorker({ url: flags.queue, concurrency: flags.concurrency ?? 1, root: resolve('.'), cacheDir: flags.cacheDir, remote: flags.remote, lockMs, log });
  await worker.waitUntilReady();
  log(`worker ready on ${flags.queue} (concurrency ${flags.concurrency ?? 1})`);
  await new Promise<void>((r) => {
    process.once('SIGINT', r);
    process.once('SIGTERM', r);
  });
  log('stopping: finishing running stages');
  await close();
  return 0;
}
