import { test } from 'node:test';
import assert from 'node:assert/strict';
import { explainEngineFailure } from '../src/errors/engine-errors.js';

test("the wasm engine's abort on a full heap is reported as running out of memory, with what to change and the engine's text", () => {
  const m = explainEngineFailure('Aborted(). Build with -sASSERTIONS for more info.');
  assert.match(m, /^the wasm engine ran out of memory \(a wasm heap holds at most 4 GB\): lower the stage's batch size \(train\.batchSize/);
  assert.match(m, /\(engine: Aborted\(\)\. Build with -sASSERTIONS for more info\.\)$/);
  assert.equal(explainEngineFailure("layer 'x': kernel expects 3 channels"), "layer 'x': kernel expects 3 channels", 'other failures keep their message');
});
