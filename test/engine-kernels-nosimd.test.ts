import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';

/**
 * The kernel and optimizer tests again with COMPRESS_WASM_SIMD=0: the JS and tfjs paths the SIMD
 * kernels replaced stay correct (they are what a runtime without wasm SIMD runs).
 */
test('kernel and optimizer tests pass with the SIMD kernels off (COMPRESS_WASM_SIMD=0)', async () => {
  const files = ['engine-kernels.test.js', 'engine-optimizers.test.js'].map((f) => fileURLToPath(new URL(f, import.meta.url)));
  // Without NODE_TEST_CONTEXT, or node:test refuses to run files from inside a test.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT'));
  const r = await execa(process.execPath, ['--test', ...files], { env: { ...env, COMPRESS_WASM_SIMD: '0' }, extendEnv: false, reject: false, all: true });
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all ?? '', /# fail 0/);
  assert.match(r.all ?? '', /SIMD kernels .* equal cpu/);
});
