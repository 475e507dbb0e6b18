/**
 * `npm run bench [-- parts...]`: runs compress's benchmarks and prints their tables. Parts: `lenet`
 * (training vs PyTorch), `mobilenet` (all MobileNetV2 parts) or one of `inference`, `train`,
 * `pipeline`; `remote` (the remote cache) and `queue` (the sweep on 1 vs 2 queue workers), only when
 * named. Default: lenet and mobilenet, side by side in one run.
 */
import { benchTrain, formatTrainBench } from './train.js';
import { benchMobileNet } from './mobilenet-bench.js';

const args = process.argv.slice(2);
const MOBILENET_PARTS = ['inference', 'train', 'pipeline'];
const unknown = args.filter((a) => a !== 'lenet' && a !== 'mobilenet' && a !== 'remote' && a !== 'queue' && !MOBILENET_PARTS.includes(a));
if (unknown.length) {
  console.error(`unknown bench part(s): ${unknown.join(', ')}; use lenet, mobilenet, ${MOBILENET_PARTS.join(', ')}, remote or queue`);
  process.exit(2);
}
const all = args.length === 0;
if (args.includes('remote')) {
  const { benchRemote } = await import('./remote.js');
  console.log(await benchRemote());
}
if (args.includes('queue')) {
  const { benchQueue } = await import('./queue.js');
  console.log(await benchQueue());
}
if (all || args.includes('lenet')) {
  const { backend, rows } = await benchTrain();
  console.log(formatTrainBench(backend, rows) + '\n');
}
const mnParts = args.includes('mobilenet') ? [] : args.filter((a) => MOBILENET_PARTS.includes(a));
if (all || args.includes('mobilenet') || mnParts.length) {
  for (const s of await benchMobileNet(mnParts)) console.log(s + '\n');
}
