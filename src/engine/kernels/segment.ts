import type * as tfType from '@tensorflow/tfjs';
import type { KernelArgs, WasmBackend } from './util.js';

/** UnsortedSegmentSum for wasm (the gradient of gather): out[ids[i]] += x[i]; ids out of range are dropped. */
export function makeSegmentKernels(_tf: typeof tfType) {
  function unsortedSegmentSum({ inputs, backend: b, attrs = {} }: KernelArgs): tfType.TensorInfo {
    const backend = b as WasmBackend;
    const { x, segmentIds } = inputs;
    const numSegments = attrs.numSegments as number;
    const idsSize = segmentIds.shape.reduce((a, s) => a * s, 1);
    const inner = x.shape.slice(segmentIds.shape.length).reduce((a, s) => a * s, 1);
    const outShape = [numSegments, ...x.shape.slice(segmentIds.shape.length)];
    const out = backend.makeOutput(outShape, x.dtype);
    const o = backend.typedArrayFromHeap(out), xs = backend.typedArrayFromHeap(x);
    const idsRaw = backend.typedArrayFromHeap(segmentIds);
    o.fill(0);
    for (let i = 0; i < idsSize; i++) {
      const id = idsRaw[i];
      if (id < 0 || id >= numSegments) continue;
      const src = i * inner, dst = id * inner;
      for (let j = 0; j < inner; j++) o[dst + j] += xs[src + j];
    }
    return out;
  }
  return { unsortedSegmentSum };
}
