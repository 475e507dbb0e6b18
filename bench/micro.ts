/**
 * Micro-benchmarks of kernel building blocks on wasm (medians of many repetitions, variants side by side).
 * Usage: node dist/bench/micro.js [reps=30]
 */
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { originalWasmKernels } from '../src/engine/kernels/index.js';
import { f32, wasmKernel, type KernelImpl, type WasmBackend } from '../src/engine/kernels/util.js';

const reps = Number(process.argv[2] ?? 30);
const { tf } = await initEngine('wasm');
const backend = tf.backend() as unknown as WasmBackend;
const mm = originalWasmKernels.BatchMatMul;

function rand(shape: number[]): tfType.TensorInfo {
  const t = backend.makeOutput(shape, 'float32');
  const a = f32(backend, t);
  for (let i = 0; i < a.length; i++) a[i] = Math.random() - 0.5;
  return t;
}
function clone(t: tfType.TensorInfo): tfType.TensorInfo {
  const o = backend.makeOutput(t.shape, 'float32');
  f32(backend, o).set(f32(backend, t));
  return o;
}
const median = (a: number[]) => a.slice().sort((x, y) => x - y)[a.length >> 1];

function time(name: string, fn: () => void) {
  for (let i = 0; i < 3; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  console.log(name.padEnd(60) + median(ts).toFixed(2).padStart(8) + ' ms (min ' + Math.min(...ts).toFixed(2) + ')');
}

function matmulCase(label: string, M: number, K: number, N: number) {
  const a = rand([M, K]), b = rand([K, N]);
  time(`${label} mm [${M},${K}]x[${K},${N}] cached b`, () => backend.disposeData(mm({ inputs: { a, b }, backend, attrs: {} }).dataId));
  time(`${label} clone b only`, () => backend.disposeData(clone(b).dataId));
  time(`${label} mm fresh b (incl clone)`, () => {
    const b2 = clone(b);
    backend.disposeData(mm({ inputs: { a, b: b2 }, backend, attrs: {} }).dataId);
    backend.disposeData(b2.dataId);
  });
  backend.disposeData(a.dataId);
  backend.disposeData(b.dataId);
}

const which = process.argv[3] ?? 'all';
if (which === 'all' || which === 'mm') {
  matmulCase('wgrad2 cur', 500, 4096, 50);
  matmulCase('wgrad2 alt', 50, 4096, 500);
  matmulCase('dgrad2 cur', 500, 50, 4096);
  matmulCase('dgrad2 alt', 4096, 50, 500);
  matmulCase('dense fwd', 64, 800, 500);
  matmulCase('dense fwd^T', 500, 800, 64);
  matmulCase('dense dx', 64, 500, 800);
  matmulCase('dense dx^T', 800, 500, 64);
  matmulCase('dense dw', 800, 64, 500);
  matmulCase('wgrad1 cur', 25, 36864, 20);
  matmulCase('wgrad1 alt', 20, 36864, 25);
  matmulCase('fwd1 im2col', 36864, 25, 20);
  matmulCase('fwd2 im2col', 4096, 500, 50);
}

if (which === 'all' || which === 'conv') {
  const conv2d = wasmKernel(tf, 'Conv2D');
  const x = rand([64, 12, 12, 20]), w = rand([5, 5, 20, 50]);
  time('conv2 fwd xnnpack (cached w)', () => backend.disposeData(conv2d({ inputs: { x, filter: w }, backend, attrs: { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1] } }).dataId));
  time('conv2 fwd xnnpack (fresh w)', () => {
    const w2 = clone(w);
    backend.disposeData(conv2d({ inputs: { x, filter: w2 }, backend, attrs: { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1] } }).dataId);
    backend.disposeData(w2.dataId);
  });
  const x1 = rand([64, 28, 28, 1]), w1 = rand([5, 5, 1, 20]);
  time('conv1 fwd xnnpack (fresh w)', () => {
    const w2 = clone(w1);
    backend.disposeData(conv2d({ inputs: { x: x1, filter: w2 }, backend, attrs: { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1] } }).dataId);
    backend.disposeData(w2.dataId);
  });
  // im2col NHWC [N*oH*oW, KH*KW*C] by copyWithin on the heap (stride 1, valid)
  const im2col = (xt: tfType.TensorInfo, N: number, H: number, W: number, C: number, KH: number, KW: number) => {
    const oH = H - KH + 1, oW = W - KW + 1;
    const cols = backend.makeOutput([N * oH * oW, KH * KW * C], 'float32');
    const xs = f32(backend, xt), o = f32(backend, cols);
    const heap = new Float32Array(xs.buffer);
    const xo = xs.byteOffset >> 2, oo = o.byteOffset >> 2;
    const run = KW * C;
    let d = oo;
    for (let n = 0; n < N; n++)
      for (let oh = 0; oh < oH; oh++)
        for (let ow = 0; ow < oW; ow++)
          for (let kh = 0; kh < KH; kh++, d += run) {
            const s = xo + ((n * H + oh + kh) * W + ow) * C;
            heap.copyWithin(d, s, s + run);
          }
    return cols;
  };
  const im2colLoop = (xt: tfType.TensorInfo, N: number, H: number, W: number, C: number, KH: number, KW: number) => {
    const oH = H - KH + 1, oW = W - KW + 1;
    const cols = backend.makeOutput([N * oH * oW, KH * KW * C], 'float32');
    const xs = f32(backend, xt), o = f32(backend, cols);
    const run = KW * C;
    let d = 0;
    for (let n = 0; n < N; n++)
      for (let oh = 0; oh < oH; oh++)
        for (let ow = 0; ow < oW; ow++)
          for (let kh = 0; kh < KH; kh++) {
            const s = ((n * H + oh + kh) * W + ow) * C;
            for (let j = 0; j < run; j++) o[d++] = xs[s + j];
          }
    return cols;
  };
  time('im2col nhwc conv2 copyWithin', () => backend.disposeData(im2col(x, 64, 12, 12, 20, 5, 5).dataId));
  time('im2col nhwc conv2 loop', () => backend.disposeData(im2colLoop(x, 64, 12, 12, 20, 5, 5).dataId));
  time('im2col nhwc conv1 copyWithin', () => backend.disposeData(im2col(x1, 64, 28, 28, 1, 5, 5).dataId));
  time('im2col nhwc conv1 loop', () => backend.disposeData(im2colLoop(x1, 64, 28, 28, 1, 5, 5).dataId));
  const transpose = wasmKernel(tf, 'Transpose');
  const big = rand([4096, 500]);
  time('transpose [4096,500]', () => backend.disposeData(transpose({ inputs: { x: big }, backend, attrs: { perm: [1, 0] } }).dataId));
  const dy2 = rand([4096, 50]);
  time('transpose [4096,50]', () => backend.disposeData(transpose({ inputs: { x: dy2 }, backend, attrs: { perm: [1, 0] } }).dataId));
  // col2im NHWC: cols [N*oH*oW, KH*KW*C] -> dx [N,H,W,C]
  const col2im = (cols: tfType.TensorInfo, N: number, H: number, W: number, C: number, KH: number, KW: number) => {
    const oH = H - KH + 1, oW = W - KW + 1;
    const dxt = backend.makeOutput([N, H, W, C], 'float32');
    const dx = f32(backend, dxt), c = f32(backend, cols);
    dx.fill(0);
    const run = KW * C;
    let s = 0;
    for (let n = 0; n < N; n++)
      for (let oh = 0; oh < oH; oh++)
        for (let ow = 0; ow < oW; ow++)
          for (let kh = 0; kh < KH; kh++) {
            const d = ((n * H + oh + kh) * W + ow) * C;
            for (let j = 0; j < run; j++) dx[d + j] += c[s++];
          }
    return dxt;
  };
  time('col2im nhwc conv2 loop', () => backend.disposeData(col2im(big, 64, 12, 12, 20, 5, 5).dataId));
  time('current Conv2DBackpropInput conv2', () => {
    const dy = rand([64, 8, 8, 50]);
    backend.disposeData(
      wasmKernel(tf, 'Conv2DBackpropInput')({ inputs: { dy, filter: w }, backend, attrs: { strides: [1, 1], pad: 'valid', inputShape: [64, 12, 12, 20], dataFormat: 'NHWC', dilations: [1, 1] } }).dataId,
    );
    backend.disposeData(dy.dataId);
  });
  time('current Conv2DBackpropFilter conv2', () => {
    const dy = rand([64, 8, 8, 50]);
    backend.disposeData(
      wasmKernel(tf, 'Conv2DBackpropFilter')({ inputs: { x, dy }, backend, attrs: { strides: [1, 1], pad: 'valid', filterShape: [5, 5, 20, 50], dataFormat: 'NHWC', dilations: [1, 1] } }).dataId,
    );
    backend.disposeData(dy.dataId);
  });
  time('current Conv2DBackpropFilter conv1', () => {
    const dy = rand([64, 24, 24, 20]);
    backend.disposeData(
      wasmKernel(tf, 'Conv2DBackpropFilter')({ inputs: { x: x1, dy }, backend, attrs: { strides: [1, 1], pad: 'valid', filterShape: [5, 5, 1, 20], dataFormat: 'NHWC', dilations: [1, 1] } }).dataId,
    );
    backend.disposeData(dy.dataId);
  });
  const rnd = rand([64, 8, 8, 50]);
  time('  (rand [64,8,8,50] alone)', () => backend.disposeData(clone(rnd).dataId));
}
void (null as unknown as KernelImpl);

if (which === 'all' || which === 'slice') {
  const slice = wasmKernel(tf, 'Slice');
  const transpose = wasmKernel(tf, 'Transpose');
  const x = rand([64, 12, 12, 20]);
  const xT = transpose({ inputs: { x }, backend, attrs: { perm: [3, 0, 1, 2] } });
  time('transpose x conv2 -> [20,64,12,12]', () => backend.disposeData(transpose({ inputs: { x }, backend, attrs: { perm: [3, 0, 1, 2] } }).dataId));
  time('25 slices of xT [20,64,8,8]', () => {
    for (let kh = 0; kh < 5; kh++)
      for (let kw = 0; kw < 5; kw++) backend.disposeData(slice({ inputs: { x: xT }, backend, attrs: { begin: [0, 0, kh, kw], size: [20, 64, 8, 8] } }).dataId);
  });
  // JS build of cols^T [(kh,kw,ci), (n,oh,ow)] from xT, 8-wide runs
  const colsTjs = () => {
    const cols = backend.makeOutput([500, 4096], 'float32');
    const xs = f32(backend, xT), o = f32(backend, cols);
    let d = 0;
    for (let kh = 0; kh < 5; kh++)
      for (let kw = 0; kw < 5; kw++)
        for (let ci = 0; ci < 20; ci++)
          for (let n = 0; n < 64; n++)
            for (let oh = 0; oh < 8; oh++) {
              const s = ((ci * 64 + n) * 12 + oh + kh) * 12 + kw;
              o[d] = xs[s]; o[d + 1] = xs[s + 1]; o[d + 2] = xs[s + 2]; o[d + 3] = xs[s + 3];
              o[d + 4] = xs[s + 4]; o[d + 5] = xs[s + 5]; o[d + 6] = xs[s + 6]; o[d + 7] = xs[s + 7];
              d += 8;
            }
    return cols;
  };
  time('cols^T js unrolled 8', () => backend.disposeData(colsTjs().dataId));
  // JS tiled transpose [R,C] -> [C,R]
  const jsT = (t: tfType.TensorInfo) => {
    const [R, C] = t.shape;
    const o = backend.makeOutput([C, R], 'float32');
    const a = f32(backend, t), b = f32(backend, o);
    const B = 32;
    for (let r0 = 0; r0 < R; r0 += B)
      for (let c0 = 0; c0 < C; c0 += B) {
        const r1 = Math.min(R, r0 + B), c1 = Math.min(C, c0 + B);
        for (let r = r0; r < r1; r++) {
          let s = r * C + c0;
          for (let c = c0; c < c1; c++) b[c * R + r] = a[s++];
        }
      }
    return o;
  };
  const w = rand([800, 500]);
  time('wasm transpose [800,500]', () => backend.disposeData(transpose({ inputs: { x: w }, backend, attrs: { perm: [1, 0] } }).dataId));
  time('js tiled transpose [800,500]', () => backend.disposeData(jsT(w).dataId));
  const big = rand([4096, 500]);
  time('js tiled transpose [4096,500]', () => backend.disposeData(jsT(big).dataId));
  const dy1 = rand([36864, 20]);
  time('wasm transpose [36864,20]', () => backend.disposeData(transpose({ inputs: { x: dy1 }, backend, attrs: { perm: [1, 0] } }).dataId));
  time('js tiled transpose [36864,20]', () => backend.disposeData(jsT(dy1).dataId));
  // per-tap matmuls with cached b = dy
  const dy = rand([4096, 50]);
  const taps = [...Array(25).keys()].map(() => rand([20, 4096]));
  time('25 mm [20,4096]x[4096,50] same b', () => {
    for (const t of taps) backend.disposeData(mm({ inputs: { a: t, b: dy }, backend, attrs: {} }).dataId);
  });
  const all = rand([500, 4096]);
  time('1 mm [500,4096]x[4096,50] cached b', () => backend.disposeData(mm({ inputs: { a: all, b: dy }, backend, attrs: {} }).dataId));
}

if (which === 'all' || which === 'wgradconv') {
  // Filter gradient as an XNNPACK conv: x^T [Ci,H,W,N] (batch Ci, channels N) convolved with
  // dy^T [oH,oW,N,Co] as the filter gives [Ci,KH,KW,Co]; transposed to [KH,KW,Ci,Co].
  const conv2d = wasmKernel(tf, 'Conv2D');
  const transpose = wasmKernel(tf, 'Transpose');
  const viaConv = (x: tfType.TensorInfo, dy: tfType.TensorInfo) => {
    const xt = transpose({ inputs: { x }, backend, attrs: { perm: [3, 1, 2, 0] } });
    const dyt = transpose({ inputs: { x: dy }, backend, attrs: { perm: [1, 2, 0, 3] } });
    const o = conv2d({ inputs: { x: xt, filter: dyt }, backend, attrs: { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1] } });
    const r = transpose({ inputs: { x: o }, backend, attrs: { perm: [1, 2, 0, 3] } });
    backend.disposeData(xt.dataId);
    backend.disposeData(dyt.dataId);
    backend.disposeData(o.dataId);
    return r;
  };
  for (const [label, xs, dys, fs] of [
    ['conv2', [64, 12, 12, 20], [64, 8, 8, 50], [5, 5, 20, 50]],
    ['conv1', [64, 28, 28, 1], [64, 24, 24, 20], [5, 5, 1, 20]],
  ] as const) {
    const x = rand([...xs]);
    const dy = rand([...dys]);
    const cur = () => wasmKernel(tf, 'Conv2DBackpropFilter')({ inputs: { x, dy }, backend, attrs: { strides: [1, 1], pad: 'valid', filterShape: [...fs], dataFormat: 'NHWC', dilations: [1, 1] } });
    const a = f32(backend, cur()).slice(), b = f32(backend, viaConv(x, dy)).slice();
    let d = 0, m = 0;
    for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(a[i])); }
    console.log(`${label} wgrad: conv formulation rel err ${(d / m).toExponential(1)}`);
    time(`${label} wgrad current (im2col + matmul)`, () => backend.disposeData(cur().dataId));
    time(`${label} wgrad as xnnpack conv (batch=Ci)`, () => backend.disposeData(viaConv(x, dy).dataId));
  }
}

if (which === 'all' || which === 'dgrad') {
  const orig = originalWasmKernels.Conv2DBackpropInput;
  const ours = wasmKernel(tf, 'Conv2DBackpropInput');
  const w = rand([5, 5, 20, 50]);
  const attrs = { strides: [1, 1], pad: 'valid', inputShape: [64, 12, 12, 20], dataFormat: 'NHWC', dilations: [1, 1] };
  for (const [label, k] of [['ours', ours], ['tfjs-wasm (xnnpack deconvolution)', orig]] as const) {
    if (!k) continue;
    time(`conv2 dgrad ${label}, fresh dy and w`, () => {
      const dy = rand([64, 8, 8, 50]);
      const w2 = clone(w);
      backend.disposeData(k({ inputs: { dy, filter: w2 }, backend, attrs }).dataId);
      backend.disposeData(dy.dataId);
      backend.disposeData(w2.dataId);
    });
  }
  const dy = rand([64, 8, 8, 50]);
  time('  (rand [64,8,8,50] + clone w alone)', () => {
    const d = rand([64, 8, 8, 50]);
    const w2 = clone(w);
    backend.disposeData(d.dataId);
    backend.disposeData(w2.dataId);
  });
  backend.disposeData(dy.dataId);
}
