import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exportModel, verifyExport } from '../src/export/index.js';
import { emptyMeta } from '../src/model/meta.js';
import { cachedConvNet, type ConvNet } from './fixtures/export/conv-nets.js';
import { engine, tempDir } from './fixtures/export/models.js';

/**
 * Int8 on real conv nets (issue 17): the built-in dw-cnn and a MobileNetV2-style net (ReLU6, inverted residuals,
 * residual Add), trained on MNIST digits, exported to full-int8 TFLite and ONNX with the default preparation
 * (auto calibration, bias correction) and run in LiteRT / onnxruntime on 1,000 held-out digits: plain top-1
 * agreement with the float model >= 99.5% (an explicit threshold: every sample counts, confident or not) and
 * at most 0.3 points of accuracy lost.
 */
for (const name of ['dw-cnn', 'mobilenetv2-small'] as ConvNet[]) {
  test(`int8: ${name} trained on digits agrees >= 99.5% with the float model in LiteRT and onnxruntime on 1,000 digits, <= 0.3 pt accuracy drop`, async () => {
    const tf = await engine();
    const net = await cachedConvNet(tf, name);
    assert.equal(net.test.n, 1000);
    const calibration = net.train.x.subarray(0, 256 * 784);
    for (const target of ['tflite', 'onnx'] as const) {
      const dir = tempDir(`int8-${name}-${target}`);
      const res = await exportModel(tf, net.model, emptyMeta(), { target, precision: 'int8', calibration }, dir);
      const v = await verifyExport(tf, { target, precision: 'int8', dir, files: res.files }, net.model, net.test, { threshold: 0.995 });
      console.log(`${name} ${target} int8: agreement ${v.agreement}, accuracy ${v.referenceAccuracy} -> ${v.accuracy}, noise ${v.noise.toExponential(2)}`);
      assert.ok(v.agreement >= 0.995, `${target}: ${JSON.stringify(v)}`);
      assert.ok(v.accuracyDelta >= -0.003 - 1e-9, `${target}: ${JSON.stringify(v)}`); // at most 3 of 1,000 digits
    }
  });
}
