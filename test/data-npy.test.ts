import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../src/errors/input-error.js';
import { encodeNpy, parseNpy, readNpy, type NpyData, type NpyDtype } from '../src/data/npy.js';

const dir = mkdtempSync(join(tmpdir(), 'compress-npy-'));

const samples: Array<[NpyDtype, NpyData]> = [
  ['f4', Float32Array.of(1.5, -2, 3.25, 0, 1e-8, 7)],
  ['f8', Float64Array.of(1.5, -2, 3.25, 0, 1e-300, 7)],
  ['u1', Uint8Array.of(0, 1, 2, 250, 255, 7)],
  ['i1', Int8Array.of(-128, -1, 0, 1, 127, 7)],
  ['u2', Uint16Array.of(0, 1, 65535, 3, 4, 7)],
  ['i2', Int16Array.of(-32768, -1, 0, 1, 32767, 7)],
  ['i4', Int32Array.of(-(2 ** 31), -1, 0, 1, 2 ** 31 - 1, 7)],
  ['i8', BigInt64Array.of(-(2n ** 40n), -1n, 0n, 1n, 2n ** 40n, 7n)],
  ['b1', Uint8Array.of(0, 1, 1, 0, 0, 1)],
];

for (const [dtype, data] of samples) {
  test(`npy round trip ${dtype}, versions 1-3`, () => {
    for (const version of [1, 2, 3] as const) {
      const p = join(dir, `${dtype}-v${version}.npy`);
      writeFileSync(p, encodeNpy(data, [2, 3], dtype, { version }));
      const a = readNpy(p);
      assert.equal(a.dtype, dtype);
      assert.deepEqual(a.shape, [2, 3]);
      assert.deepEqual(Array.from(a.data as ArrayLike<unknown>), Array.from(data as ArrayLike<unknown>));
    }
  });
}

test('npy header written by numpy (literal bytes) parses, incl. 1-D and scalar shapes', () => {
  const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
  const pad = 128 - 10 - header.length - 1;
  const h = Buffer.from(header + ' '.repeat(pad) + '\n', 'latin1');
  const bytes = Buffer.concat([Buffer.from([0x93]), Buffer.from('NUMPY'), Buffer.from([1, 0, h.length, 0]), h, Buffer.from(Float32Array.of(1, 2, 3).buffer)]);
  const a = parseNpy(bytes, 'x.npy');
  assert.deepEqual(a.shape, [3]);
  assert.deepEqual(Array.from(a.data as Float32Array), [1, 2, 3]);
  const s = parseNpy(encodeNpy(Float64Array.of(4), [], 'f8'), 's.npy');
  assert.deepEqual(s.shape, []);
  assert.equal(s.data[0], 4);
});

function rejects(bytes: Uint8Array, re: RegExp): void {
  const p = join(dir, `bad-${Math.random().toString(36).slice(2)}.npy`);
  writeFileSync(p, bytes);
  assert.throws(() => readNpy(p), (e: unknown) => e instanceof InputError && e.file === p && e.message.startsWith(p) && re.test(e.message));
}

function withHeader(text: string, body: Uint8Array): Uint8Array {
  const h = Buffer.from(text.padEnd(64 - 10 - 1, ' ') + '\n', 'latin1');
  return Buffer.concat([Buffer.from([0x93]), Buffer.from('NUMPY'), Buffer.from([1, 0, h.length, 0]), h, body]);
}

test('npy errors: fortran order, big-endian, truncated, bad magic, bad dtype/version', () => {
  const body = new Uint8Array(Float32Array.of(1, 2, 3, 4).buffer);
  rejects(withHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", body), /Fortran/);
  rejects(withHeader("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", body), /big-endian/);
  rejects(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", body.subarray(0, 10)), /truncated .npy data: .* needs 16 bytes, the file has 10/);
  rejects(withHeader("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }", body), /unsupported .npy dtype '<f2'/);
  rejects(withHeader("{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }", body), /unsupported .npy dtype/);
  rejects(withHeader("{'shape': (2,), }", body), /malformed/);
  rejects(Buffer.from('PK\x03\x04 an npz perhaps'), /bad magic/);
  const v9 = encodeNpy(Float32Array.of(1), [1], 'f4');
  v9[6] = 9;
  rejects(v9, /version 9\.0/);
  const full = encodeNpy(Float32Array.of(1, 2), [2], 'f4');
  rejects(full.subarray(0, 20), /truncated .npy header/);
});
