/** Fuzz worker: generates and checks cases [start, end) of a seed, announcing each before it runs. */
import { parentPort, workerData } from 'node:worker_threads';
import { checkCase, generateCase } from './recipes.js';

if (parentPort) {
  const { seed, start, end } = workerData as { seed: number; start: number; end: number };
  // Warnings the yaml library prints for odd tags are expected noise here.
  process.removeAllListeners('warning');
  for (let i = start; i < end; i++) {
    parentPort.postMessage({ type: 'start', index: i });
    parentPort.postMessage({ type: 'result', result: checkCase(generateCase(seed, i)) });
  }
}
