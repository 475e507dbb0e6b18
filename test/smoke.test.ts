import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRng } from '../src/util/rng.js';

test('rng is deterministic', () => {
  const a = createRng(1), b = createRng(1);
  assert.equal(a(), b());
});
