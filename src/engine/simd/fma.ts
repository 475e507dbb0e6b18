/**
 * Whether this process's wasm multiplies-adds fused: relaxed SIMD's f32x4.relaxed_madd, lowered by V8
 * to one vfmadd on a CPU with FMA3. Kept apart from ./module.ts (no wabt) so that the engine identity
 * (src/engine/backend.ts) can ask it cheaply.
 */
import v8 from 'node:v8';

/**
 * A tiny relaxed-SIMD module: f(a, b, c) = lane 0 of f32x4.relaxed_madd(splat a, splat b, splat c).
 * (1 + 2^-23)(1 - 2^-23) - 1 is -2^-46 when fused, 0 when rounded after the multiply.
 */
const MADD_PROBE = Buffer.from('AGFzbQEAAAABCAFgA319fQF9AwIBAAcFAQFmAAAKFgEUACAA/RMgAf0TIAL9E/2FAv0fAAs=', 'base64');
let fused: boolean | undefined;

/**
 * Whether compress's conv kernels multiply-add fused (relaxed SIMD, lowered to FMA by the CPU), per
 * process. Node 20's V8 has relaxed SIMD behind --experimental-wasm-relaxed-simd: the flag is set
 * here, at run time (V8 reads it when a module is compiled, so it applies from then on, process-wide);
 * Node >= 22 has it on. False with COMPRESS_WASM_FMA=0, without relaxed SIMD, or where relaxed_madd
 * is not fused (a CPU without FMA: then the plain kernels compute the same bits).
 */
export function fusedMultiplyAdd(): boolean {
  if (fused !== undefined) return fused;
  fused = false;
  if (process.env.COMPRESS_WASM_FMA === '0') return fused;
  try {
    if (!WebAssembly.validate(MADD_PROBE)) v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    if (!WebAssembly.validate(MADD_PROBE)) return fused;
    const f = new WebAssembly.Instance(new WebAssembly.Module(MADD_PROBE)).exports.f as (a: number, b: number, c: number) => number;
    fused = f(Math.fround(1 + 2 ** -23), Math.fround(1 - 2 ** -23), -1) !== 0;
  } catch {
    fused = false;
  }
  return fused;
}
