/** `npm run bench`: runs compress's benchmarks and prints their tables. */
import { benchTrain, formatTrainBench } from './train.js';

const { backend, rows } = await benchTrain();
console.log(formatTrainBench(backend, rows));
