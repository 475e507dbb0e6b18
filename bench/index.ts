/** `npm run bench`: runs compress's benchmarks and prints their tables (`npm run bench -- remote`: the remote cache). */
import { benchTrain, formatTrainBench } from './train.js';

if (process.argv[2] === 'remote') {
  const { benchRemote } = await import('./remote.js');
  console.log(await benchRemote());
} else {
  const { backend, rows } = await benchTrain();
  console.log(formatTrainBench(backend, rows));
}
