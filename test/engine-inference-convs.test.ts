import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type * as tfType from '@tensorflow/tfjs';
import { engineIdentity, initEngine } from '../src/engine/backend.js';
import { inferencePlan } from '../src/engine/inference.js';
import { setInferenceConvs, type InferenceConvs } from '../src/engine/kernels/index.js';
import { fusedMultiplyAdd } from '../src/engine/simd/fma.js';
import { simdKernels, type SimdKernels } from '../src/engine/simd/module.js';
import { packGemmB } from '../src/engine/simd/conv.wat.js';
import { createRng } from '../src/util/rng.js';
import { buildMobileNetV2 } from '../bench/mobilenet.js';
import { relMaxError } from './fixtures/rel-error.js';

/**
 * compress's SIMD inference convs (src/engine/simd/conv.wat.ts: 1x1 conv as a GEMM, 3x3 depthwise)
 * against XNNPACK's on the same inputs, in one process (setInferenceConvs), over the shapes
 * MobileNetV2 uses and their edges: row tails of 1-3 (tiles of 4 rows), a 4-column tail, strides 1
 * and 2, 'same' and 'valid', odd sizes, every fused activation. Calls to the SIMD kernels are counted
 * so that a test cannot pass by both sides running XNNPACK.
 */
let tf: typeof tfType;
const calls = { gemm_bias_act: 0, dw3x3: 0, conv3x3c3: 0 };
before(async () => {
  ({ tf } = await initEngine('wasm'));
  const k = simdKernels(tf.backend()) as SimdKernels;
  for (const name of ['gemm_bias_act', 'dw3x3', 'conv3x3c3'] as const) {
    const inner = k[name] as (...a: number[]) => void;
    (k as unknown as Record<string, unknown>)[name] = (...a: number[]) => {
      calls[name]++;
      inner(...a);
    };
  }
});
after(() => setInferenceConvs('auto'));

function tensor(shape: number[], seed: number): tfType.Tensor {
  const rng = createRng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => rng() * 2 - 1), shape);
}

if (process.env.COMPRESS_TEST_CONVS_CHILD) {
  ({ tf } = await initEngine('wasm'));
  await threadsChild();
  process.exit(0); // the threaded build's pthread workers keep the event loop alive
}

/** The op's output with the convs run by `who`, and how many SIMD kernel calls it made. */
function run(who: InferenceConvs, op: () => tfType.Tensor): { y: Float32Array; simdCalls: number } {
  setInferenceConvs(who);
  const before = calls.gemm_bias_act + calls.dw3x3 + calls.conv3x3c3;
  const t = op();
  const y = t.dataSync() as Float32Array;
  t.dispose();
  return { y, simdCalls: calls.gemm_bias_act + calls.dw3x3 + calls.conv3x3c3 - before };
}

function assertSimdMatchesXnnpack(op: () => tfType.Tensor, what: string): void {
  const simd = run('simd', op);
  const xnn = run('xnnpack', op);
  assert.equal(simd.simdCalls, 1, `${what}: the SIMD kernel ran`);
  assert.equal(xnn.simdCalls, 0, `${what}: the reference ran XNNPACK`);
  const err = relMaxError(simd.y, xnn.y);
  assert.ok(err < 2e-6, `${what}: max relative error ${err}`);
}

const ACTIVATIONS = ['linear', 'relu', 'relu6'] as const;

test('1x1 fused conv: the SIMD GEMM equals XNNPACK on MobileNetV2 shapes and row/column tails', () => {
  // [N, H, W, Ci] -> Co: pixels % 4 = 0, 1, 2, 3; Co % 8 = 0 and 4; K from 3 to 2048 (column blocks of 32).
  // The filter is packed by the kernel here (no plan).
  const shapes: Array<[number[], number]> = [
    [[1, 14, 14, 96], 576], [[1, 7, 7, 960], 160], [[1, 28, 28, 32], 192], [[2, 5, 3, 16], 12],
    [[1, 3, 3, 24], 144], [[1, 1, 1, 8], 4], [[1, 7, 1, 3], 8], [[3, 11, 13, 20], 36], [[1, 3, 5, 2048], 40],
    // several row blocks (the last one shorter, M % 4 = 2: an overlapping last tile), 1040 columns: two column blocks
    [[1, 30, 31, 96], 20], [[1, 2, 3, 64], 1040],
    // rows packed for the tiles (64+ columns): K % 4 = 2 (a scalar rest), 4 rows exactly, a 4-column strip
    [[2, 5, 3, 18], 68], [[1, 2, 2, 8], 64],
  ];
  let seed = 1;
  for (const [xShape, co] of shapes) {
    for (const activation of ACTIVATIONS) {
      const x = tensor(xShape, seed++), filter = tensor([1, 1, xShape[3], co], seed++), bias = tensor([co], seed++);
      const op = () => tf.fused.conv2d({ x: x as tfType.Tensor4D, filter: filter as tfType.Tensor4D, strides: 1, pad: 'same', bias, activation });
      assertSimdMatchesXnnpack(op, `[${xShape}] -> ${co} ${activation}`);
      tf.dispose([x, filter, bias]);
    }
  }
});

test('1x1 fused conv: a filter the plan packed (input packedFilter) gives the bits the kernel gets packing it itself', () => {
  const shapes: Array<[number[], number]> = [[[2, 7, 7, 40], 28], [[1, 5, 5, 16], 96]];
  let seed = 60;
  for (const [xShape, co] of shapes) {
    const x = tensor(xShape, seed++), filter = tensor([1, 1, xShape[3], co], seed++), bias = tensor([co], seed++);
    const packedFilter = tf.tensor1d(packGemmB(filter.dataSync() as Float32Array, xShape[3], co));
    const attrs = { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1], activation: 'relu6' } as unknown as tfType.NamedAttrMap;
    const fused = (inputs: tfType.NamedTensorMap) => () => tf.engine().runKernel('FusedConv2D', inputs, attrs) as tfType.Tensor;
    const own = run('simd', fused({ x, filter, bias }));
    const given = run('simd', fused({ x, filter, bias, packedFilter }));
    assert.equal(given.simdCalls, 1);
    assert.deepEqual(given.y, own.y, `[${xShape}] -> ${co}`);
    tf.dispose([x, filter, bias, packedFilter]);
  }
});

test('3x3 fused conv over 3 channels (a first layer): the SIMD kernel equals XNNPACK for strides 1 and 2, same and valid, odd sizes', () => {
  // [N, H, W, 3] -> Co: MobileNetV2's first conv, widths with 0-3 pixels left after the tiles of 4, Co % 8 = 4
  const shapes: Array<[number[], number]> = [[[1, 224, 224, 3], 32], [[2, 13, 11, 3], 12], [[1, 9, 18, 3], 8], [[1, 3, 3, 3], 4], [[1, 3, 6, 3], 16]];
  let seed = 200;
  for (const [xShape, co] of shapes) {
    for (const strides of [1, 2] as const) {
      for (const pad of ['same', 'valid'] as const) {
        const activation = ACTIVATIONS[seed % 3];
        const x = tensor(xShape, seed++), filter = tensor([3, 3, 3, co], seed++), bias = tensor([co], seed++);
        const op = () => tf.fused.conv2d({ x: x as tfType.Tensor4D, filter: filter as tfType.Tensor4D, strides, pad, bias, activation });
        assertSimdMatchesXnnpack(op, `[${xShape}] -> ${co} stride ${strides} ${pad} ${activation}`);
        tf.dispose([x, filter, bias]);
      }
    }
  }
});

test('3x3 fused depthwise conv: the SIMD kernel equals XNNPACK for strides 1 and 2, same and valid, odd sizes', () => {
  const shapes = [[1, 112, 112, 32], [1, 13, 11, 8], [2, 7, 6, 12], [1, 4, 4, 4], [1, 3, 3, 16], [1, 3, 5, 4], [1, 14, 14, 576]];
  let seed = 100;
  for (const xShape of shapes) {
    for (const strides of [1, 2] as const) {
      for (const pad of ['same', 'valid'] as const) {
        const activation = ACTIVATIONS[seed % 3];
        const x = tensor(xShape, seed++), filter = tensor([3, 3, xShape[3], 1], seed++), bias = tensor([xShape[3]], seed++);
        const op = () => tf.fused.depthwiseConv2d({ x: x as tfType.Tensor4D, filter: filter as tfType.Tensor4D, strides, pad, bias, activation });
        assertSimdMatchesXnnpack(op, `[${xShape}] stride ${strides} ${pad} ${activation}`);
        tf.dispose([x, filter, bias]);
      }
    }
  }
});

test('3x3 fused conv over 3 channels and 3x3 depthwise with explicit padding (a plan\'s folded ZeroPadding2D): the SIMD kernels equal XNNPACK; a padded 1x1 conv runs XNNPACK', () => {
  type Explicit = [[number, number], [number, number], [number, number], [number, number]];
  const pads: Explicit[] = [[[0, 0], [0, 1], [0, 1], [0, 0]], [[0, 0], [1, 1], [1, 1], [0, 0]], [[0, 0], [2, 0], [1, 3], [0, 0]], [[0, 0], [0, 0], [0, 0], [0, 0]]];
  let seed = 300;
  for (const pad of pads) {
    for (const strides of [1, 2] as const) {
      const activation = ACTIVATIONS[seed % 3];
      const x3 = tensor([2, 12, 11, 3], seed++), w3 = tensor([3, 3, 3, 12], seed++), b12 = tensor([12], seed++);
      const conv = () => tf.fused.conv2d({ x: x3 as tfType.Tensor4D, filter: w3 as tfType.Tensor4D, strides, pad, bias: b12, activation });
      assertSimdMatchesXnnpack(conv, `conv3x3c3 stride ${strides} pad ${JSON.stringify(pad)}`);
      const x = tensor([2, 10, 9, 8], seed++), wd = tensor([3, 3, 8, 1], seed++), b8 = tensor([8], seed++);
      // (tfjs's op types take no explicit padding for a fused depthwise conv; its kernels do)
      const dw = () => tf.fused.depthwiseConv2d({ x: x as tfType.Tensor4D, filter: wd as tfType.Tensor4D, strides, pad: pad as unknown as 'valid', bias: b8, activation });
      assertSimdMatchesXnnpack(dw, `dw3x3 stride ${strides} pad ${JSON.stringify(pad)}`);
      tf.dispose([x3, w3, b12, x, wd, b8]);
    }
  }
  // The SIMD GEMM computes no padded pixels: a padded 1x1 conv runs XNNPACK's, which pads as tf.pad + 'valid' would.
  const x = tensor([1, 5, 6, 8], 350), w = tensor([1, 1, 8, 8], 351), b = tensor([8], 352);
  const pad: Explicit = [[0, 0], [1, 0], [0, 2], [0, 0]];
  const padded = run('simd', () => tf.fused.conv2d({ x: x as tfType.Tensor4D, filter: w as tfType.Tensor4D, strides: 1, pad, bias: b, activation: 'relu6' }));
  const want = run('xnnpack', () => tf.fused.conv2d({ x: tf.pad(x, pad) as tfType.Tensor4D, filter: w as tfType.Tensor4D, strides: 1, pad: 'valid', bias: b, activation: 'relu6' }));
  assert.equal(padded.simdCalls, 0);
  assert.ok(relMaxError(padded.y, want.y) < 2e-6, 'padded 1x1 conv');
  tf.dispose([x, w, b]);
});

test("'auto' runs the 1x1 convs by the SIMD GEMM exactly where the runtime multiplies-adds fused, 3x3 depthwise convs by the SIMD kernel", () => {
  const x = tensor([1, 9, 9, 8], 30), w1 = tensor([1, 1, 8, 8], 31), wd = tensor([3, 3, 8, 1], 32), b = tensor([8], 33);
  const conv = run('auto', () => tf.fused.conv2d({ x: x as tfType.Tensor4D, filter: w1 as tfType.Tensor4D, strides: 1, pad: 'same', bias: b, activation: 'relu6' }));
  const dw = run('auto', () => tf.fused.depthwiseConv2d({ x: x as tfType.Tensor4D, filter: wd as tfType.Tensor4D, strides: 1, pad: 'same', bias: b, activation: 'relu6' }));
  assert.equal(conv.simdCalls, fusedMultiplyAdd() ? 1 : 0);
  assert.equal(dw.simdCalls, 1);
  tf.dispose([x, w1, wd, b]);
});

test('convs the SIMD kernels do not cover stay with XNNPACK', () => {
  const x = tensor([1, 9, 9, 8], 7), x6 = tensor([1, 9, 9, 6], 8);
  const cases: Array<[string, () => tfType.Tensor]> = [
    ['3x3 conv', () => tf.fused.conv2d({ x: x as tfType.Tensor4D, filter: tensor([3, 3, 8, 8], 9) as tfType.Tensor4D, strides: 1, pad: 'same', bias: tensor([8], 10) })],
    ['1x1 conv, stride 2', () => tf.fused.conv2d({ x: x as tfType.Tensor4D, filter: tensor([1, 1, 8, 8], 11) as tfType.Tensor4D, strides: 2, pad: 'same', bias: tensor([8], 12) })],
    ['1x1 conv, 6 output channels', () => tf.fused.conv2d({ x: x as tfType.Tensor4D, filter: tensor([1, 1, 8, 6], 13) as tfType.Tensor4D, strides: 1, pad: 'valid', bias: tensor([6], 14) })],
    ['1x1 conv without bias', () => tf.fused.conv2d({ x: x as tfType.Tensor4D, filter: tensor([1, 1, 8, 8], 15) as tfType.Tensor4D, strides: 1, pad: 'valid', activation: 'relu' })],
    ['1x1 conv, sigmoid', () => tf.fused.conv2d({ x: x as tfType.Tensor4D, filter: tensor([1, 1, 8, 8], 16) as tfType.Tensor4D, strides: 1, pad: 'valid', bias: tensor([8], 17), activation: 'sigmoid' })],
    ['depthwise, 6 channels', () => tf.fused.depthwiseConv2d({ x: x6 as tfType.Tensor4D, filter: tensor([3, 3, 6, 1], 18) as tfType.Tensor4D, strides: 1, pad: 'same', bias: tensor([6], 19) })],
    ['depthwise 5x5', () => tf.fused.depthwiseConv2d({ x: x as tfType.Tensor4D, filter: tensor([5, 5, 8, 1], 20) as tfType.Tensor4D, strides: 1, pad: 'same', bias: tensor([8], 21) })],
    ['depthwise, multiplier 2', () => tf.fused.depthwiseConv2d({ x: x as tfType.Tensor4D, filter: tensor([3, 3, 8, 2], 22) as tfType.Tensor4D, strides: 1, pad: 'same', bias: tensor([16], 23) })],
  ];
  for (const [what, op] of cases) assert.equal(tf.tidy(() => run('simd', op)).simdCalls, 0, what);
  tf.dispose([x, x6]);
});

test('a MobileNetV2 inference plan gives the same predictions with the SIMD convs as with XNNPACK', () => {
  const model = buildMobileNetV2(tf, { alpha: 0.35, inputShape: [64, 64, 3], numClasses: 10, seed: 3 });
  const plan = inferencePlan(tf, model);
  const x = tensor([2, 64, 64, 3], 5);
  const simd = run('simd', () => plan.predict(x));
  const xnn = run('xnnpack', () => plan.predict(x));
  assert.ok(simd.simdCalls >= 30, `SIMD kernel calls: ${simd.simdCalls}`);
  assert.ok(relMaxError(simd.y, xnn.y) < 1e-4, `max relative error ${relMaxError(simd.y, xnn.y)}`);
  tf.dispose(x);
  plan.dispose();
  model.dispose();
});

test('where the CPU has FMA on x64, the convs multiply-add fused and the engine identity says so', () => {
  const fma = process.arch === 'x64' && /^flags\s*:.*\bfma\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
  if (fma) assert.equal(fusedMultiplyAdd(), true);
  assert.equal(/-fma\+/.test(engineIdentity('wasm')), fusedMultiplyAdd());
  assert.doesNotMatch(engineIdentity('cpu'), /fma/);
});

test('COMPRESS_WASM_FMA=0 turns the fused multiply-add off, and the engine identity with it', async () => {
  const script = `import('${new URL('../src/engine/backend.js', import.meta.url).href}').then((b) => console.log(b.engineIdentity('wasm')))`;
  const r = await execa(process.execPath, ['--input-type=module', '-e', script], { env: { COMPRESS_WASM_FMA: '0' } });
  assert.doesNotMatch(r.stdout, /-fma/);
  assert.match(r.stdout, /\+kernels\.\d+\+/);
});

test('the prebuilt conv modules in dist/ are the ones their text assembles to', async () => {
  const { assembleKernels, kernelsDigest, prebuilt } = await import('../src/engine/simd/module.js');
  for (const source of ['conv', 'conv-fma'] as const)
    for (const kind of ['plain', 'shared'] as const) {
      const files = prebuilt(kind, source);
      assert.equal(readFileSync(files.digest, 'utf8').trim(), kernelsDigest(kind, source), `${source}/${kind}: digest of the text the binary came from`);
      assert.deepEqual(new Uint8Array(readFileSync(files.wasm)), await assembleKernels(kind, source), `${source}/${kind}`);
    }
});

/**
 * In a child process (the engine's thread count is per process), every conv on compress's kernels: a
 * plan's predictions, digested, the parts its conv pool ran, and the engine identity.
 */
async function threadsChild(): Promise<void> {
  const { convPoolParts } = await import('../src/engine/simd/module.js');
  setInferenceConvs('simd');
  const model = buildMobileNetV2(tf, { alpha: 0.35, inputShape: [64, 64, 3], numClasses: 10, seed: 3 });
  const plan = inferencePlan(tf, model);
  const x = tensor([4, 64, 64, 3], 5);
  const y = plan.predict(x);
  const digest = createHash('sha256').update(new Uint8Array((y.dataSync() as Float32Array).buffer)).digest('hex');
  console.log(JSON.stringify({ digest, poolParts: convPoolParts(), identity: engineIdentity('wasm') }));
}

async function runThreadsChild(threads: string): Promise<{ digest: string; poolParts: number; identity: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT'));
  const r = await execa(process.execPath, [fileURLToPath(import.meta.url)], {
    env: { ...env, COMPRESS_TEST_CONVS_CHILD: '1', COMPRESS_WASM_THREADS: threads }, extendEnv: false, reject: false, all: true,
  });
  assert.equal(r.exitCode, 0, r.all);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { digest: string; poolParts: number; identity: string };
}

const threadRuns = () => Promise.all([runThreadsChild('1'), runThreadsChild('2')]);
let runs: ReturnType<typeof threadRuns> | undefined;

test('on 2 threads the conv kernels split their work over a worker and predict bit-identically to 1 thread', async () => {
  const [one, two] = await (runs ??= threadRuns());
  assert.equal(one.poolParts, 0);
  assert.ok(two.poolParts > 0, 'parts run by the worker thread');
  assert.equal(two.digest, one.digest);
});

test('the engine identity is the same on 1 and 2 threads (the convs compute the same bits)', async () => {
  const [one, two] = await (runs ??= threadRuns());
  assert.equal(two.identity, one.identity);
  assert.doesNotMatch(two.identity, /-dw/);
});
