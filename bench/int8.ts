/**
 * `node dist/bench/int8.js [net...]`: int8 agreement of the TFLite and ONNX exports of conv nets trained on
 * MNIST digits (test/fixtures/export/conv-nets.ts), for each int8 preparation setting, measured in LiteRT and
 * onnxruntime on 1,000 test digits: top-1 agreement, accuracy delta, and the worst layer of the simulated run.
 */
import { initEngine } from '../src/engine/backend.js';
import { exportLayerErrors, exportModel, verifyExport, worstLayer, type ExportOptions } from '../src/export/index.js';
import { emptyMeta } from '../src/model/meta.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedConvNet, CONV_NETS, type ConvNet } from '../test/fixtures/export/conv-nets.js';

const { tf } = await initEngine('wasm');
const nets = (process.argv.slice(2).filter((a) => a in CONV_NETS) as ConvNet[]);
const settings: Array<[string, Partial<ExportOptions>]> = JSON.parse(process.env.INT8_SETTINGS ?? '[["default", {}]]');
const targets = (process.env.INT8_TARGETS ?? 'tflite,onnx').split(',') as Array<'tflite' | 'onnx'>;
for (const name of nets.length ? nets : (Object.keys(CONV_NETS) as ConvNet[])) {
  const t0 = performance.now();
  const net = await cachedConvNet(tf, name);
  console.log(`${name}: ready in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${net.model.countParams()} params`);
  const calib = net.train.x.subarray(0, 256 * 784);
  for (const [label, extra] of settings) {
    for (const target of targets) {
      const dir = mkdtempSync(join(tmpdir(), 'int8-bench-'));
      const opts: ExportOptions = { target, precision: 'int8', calibration: calib, ...extra };
      const res = await exportModel(tf, net.model, emptyMeta(), opts, dir);
      const v = await verifyExport(tf, { target, precision: 'int8', dir, files: res.files }, net.model, net.test, { threshold: 0 });
      const errs = (await exportLayerErrors(tf, net.model, emptyMeta(), opts, net.test.x, 64))!.layers;
      const w = worstLayer(errs)!;
      console.log(
        `${name} ${target} ${label}: agreement ${(v.agreement * 100).toFixed(1)}% confident ${(v.confidentAgreement * 100).toFixed(1)}% (${v.confidentSamples}) ` +
          `acc ${(v.referenceAccuracy * 100).toFixed(1)}% delta ${(v.accuracyDelta * 100).toFixed(2)} pt noise ${v.noise.toExponential(2)} flippedMaxMargin ${v.flippedMaxMargin.toFixed(3)} worst ${w.layer} ${w.snrDb.toFixed(1)} dB`,
      );
      if (process.env.INT8_LAYERS) console.log(errs.map((e) => `  ${e.layer} ${e.op} ${e.snrDb.toFixed(1)} dB`).join('\n'));
    }
  }
}
